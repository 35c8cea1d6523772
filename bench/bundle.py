"""Bundle benchmark: export and import a tree holding one large blob, each beside
``tar cf`` / ``tar xf`` of the same tree, with the peak memory of each step (its own
process, ``ru_maxrss``). Target: memory flat in the blob's size (bounded by a chunk),
export and import within a small factor of plain tar, which neither hashes nor fsyncs.

Usage: python bench/bundle.py [--mib 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_STEP = """
import resource, sys, time
from pathlib import Path
import mirror
root = Path(sys.argv[1])
t = time.monotonic()
if sys.argv[2] == "export":
    mirror.export_bundle(root / "hub", root / "b.tar")
else:
    mirror.import_bundle(root / "b.tar", root / "site")
print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def make_tree(root: Path, mib: int) -> None:
    import glarelite
    import mirror

    cat = glarelite.open(root / "catalog.db", storage=str(root / "blobs"))
    cat.define_type("images", blobs=["file"])
    artifact = cat.create("images", "big", version="1.0")
    with open(root / "big.bin", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    with open(root / "big.bin", "rb") as f:
        cat.upload(artifact.id, "file", f)
    cat.activate(artifact.id)
    cat.publish(artifact.id)
    assert mirror.sync(cat, str(root / "hub")).exit_code == 0
    cat.close()


def step(root: Path, name: str) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", _STEP, str(root), name], env=env, check=True, capture_output=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_tree(root, args.mib)
        export_s, export_rss = step(root, "export")
        import_s, import_rss = step(root, "import")
        tar_c = timed(["tar", "cf", str(root / "plain.tar"), "-C", str(root / "hub"), "."])
        (root / "plain").mkdir()
        tar_x = timed(["tar", "xf", str(root / "plain.tar"), "-C", str(root / "plain")])
        print(f"blob {args.mib} MiB")
        print(f"export {export_s:.2f}s (tar cf {tar_c:.2f}s), peak {export_rss} MiB")
        print(f"import {import_s:.2f}s (tar xf {tar_x:.2f}s), peak {import_rss} MiB")


if __name__ == "__main__":
    main()
