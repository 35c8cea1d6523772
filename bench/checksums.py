"""What md5 and sha1 beside sha256 cost (issue 17), beside the coreutils timed in the
same run.

A 1 GiB file (incompressible) is hashed by glarelite's one-pass ``Hasher`` with sha256
alone, and with sha256 + md5 + sha1 (what a type with ``checksums=("md5", "sha1")``
records for every blob); beside ``sha256sum``, ``md5sum`` and ``sha1sum`` of the same
file. The file is read once untimed first so every contender reads from the page cache.
Each figure is the best of --repeat runs, the contenders taking turns.

Usage: python bench/checksums.py [--mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glarelite._hashing import Hasher, iter_source


def make_file(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for i in range(mib):
            f.write(i.to_bytes(8, "big") + block[8:])


def hash_with(path: Path, extra: tuple[str, ...]) -> Callable[[], None]:
    def run() -> None:
        hasher = Hasher(extra)
        for chunk in iter_source(path):
            hasher.update(chunk)

    return run


def tool(name: str, path: Path) -> Callable[[], None]:
    def run() -> None:
        subprocess.run([name, str(path)], check=True, stdout=subprocess.DEVNULL)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glarelite-bench-") as tmp:
        path = Path(tmp) / "blob.bin"
        make_file(path, args.mib)
        tool("cat", path)()  # warm the page cache
        contenders = {
            "glarelite sha256": hash_with(path, ()),
            "glarelite sha256+md5+sha1": hash_with(path, ("md5", "sha1")),
            "sha256sum": tool("sha256sum", path),
            "md5sum": tool("md5sum", path),
            "sha1sum": tool("sha1sum", path),
        }
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(args.repeat):
            for name, run in contenders.items():
                started = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - started)
    base = best["glarelite sha256"]
    print(f"{args.mib} MiB, best of {args.repeat}:")
    for name, seconds in best.items():
        rate = args.mib / seconds
        print(f"  {name:28s} {seconds:6.2f} s  {rate:7.0f} MiB/s  {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
