"""Benchmark: registering an external blob vs ``curl -s URL | sha256sum``.

Starts nginx (a foreground child with a generated config in a temporary directory,
listening on a free 127.0.0.1 port, sendfile on) serving a generated file, then times,
best of N each in the same run:

  (a) ``curl -s URL | sha256sum``
  (b) ``Fetcher.register(URL)`` (127.0.0.1 allowed), in a child process that also
      reports its peak RSS (``resource.getrusage``)

and prints both times, throughputs, the ratio curl_pipe_time / register_time (target
>= 2.0) and register's peak RSS (target < 100 MiB), after checking that all sha256 agree.

    python bench/register.py                 # 1 GiB
    python bench/register.py --size-mib 64   # a smoke run

Exit status: 0, or 1 when a digest differs (or, with --check, when a target is missed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.static import nginx_available, start_nginx

MIB = 1024 * 1024
RATIO_TARGET = 2.0
RSS_TARGET_MIB = 100.0

# One foreground process (no master/worker split): stopping the child stops nginx, and
# files are read with the child's own permissions.


def generate(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256."""
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(MIB, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def time_curl(url: str) -> tuple[float, str]:
    """Seconds for ``curl -s URL | sha256sum`` (both processes), and the digest."""
    start = time.perf_counter()
    curl = subprocess.Popen(["curl", "-s", "--fail", url], stdout=subprocess.PIPE)
    summer = subprocess.Popen(["sha256sum"], stdin=curl.stdout, stdout=subprocess.PIPE)
    assert curl.stdout is not None
    curl.stdout.close()  # sha256sum owns the read end now
    out, _ = summer.communicate()
    if curl.wait() != 0 or summer.returncode != 0:
        raise SystemExit(f"curl | sha256sum failed ({curl.returncode}, {summer.returncode})")
    return time.perf_counter() - start, out.split()[0].decode()


def child(url: str, repeat: int) -> None:
    """Run in a fresh interpreter: register ``repeat`` times, print JSON (times, RSS)."""
    import resource

    from glarelite._http import Fetcher
    from glarelite.settings import HttpSettings

    def rss_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    base = rss_mib()
    times, digests = [], set()
    with Fetcher(HttpSettings(allow_hosts=("127.0.0.1",))) as fetcher:
        for _ in range(repeat):
            start = time.perf_counter()
            reg = fetcher.register(url)
            times.append(time.perf_counter() - start)
            digests.add(reg.sha256)
    result = {"times": times, "sha256": sorted(digests), "base_rss": base, "peak_rss": rss_mib()}
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, best kept")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeat)
        return 0
    for tool in ("curl", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    if not nginx_available():
        raise SystemExit("nginx is not installed (Debian: apt-get install nginx-light)")

    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="glarelite-bench-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "root"
        root.mkdir()
        print(f"generating {args.size_mib} MiB ...", flush=True)
        expected = generate(root / "blob.bin", size)
        with start_nginx(root) as nginx:
            url = f"{nginx.url}/blob.bin"
            curl_runs = [time_curl(url) for _ in range(args.repeat)]
            proc = subprocess.run(
                [sys.executable, __file__, "--child", url, "--repeat", str(args.repeat)],
                capture_output=True,
                text=True,
                check=False,
            )
        if proc.returncode != 0:
            raise SystemExit(f"register child failed:\n{proc.stderr}")
        reg = json.loads(proc.stdout.strip().splitlines()[-1])

    curl_best = min(t for t, _ in curl_runs)
    reg_best = min(reg["times"])
    ratio = curl_best / reg_best
    digests = {d for _, d in curl_runs} | set(reg["sha256"])
    same = digests == {expected}
    mib = size / MIB
    print(f"size                 {args.size_mib} MiB, best of {args.repeat}")
    print(f"curl | sha256sum     {curl_best:7.3f} s  {mib / curl_best:8.1f} MiB/s")
    print(f"Fetcher.register     {reg_best:7.3f} s  {mib / reg_best:8.1f} MiB/s")
    ok_ratio = ratio >= RATIO_TARGET
    ok_rss = reg["peak_rss"] < RSS_TARGET_MIB
    print(f"ratio curl/register  {ratio:7.2f}    target >= {RATIO_TARGET}: {_ok(ok_ratio)}")
    print(
        f"register peak RSS    {reg['peak_rss']:7.1f} MiB (interpreter + imports "
        f"{reg['base_rss']:.1f} MiB)  target < {RSS_TARGET_MIB:.0f}: {_ok(ok_rss)}"
    )
    print(f"sha256 equal         {_ok(same)}  {expected}")
    if not same:
        print(f"digests seen: {sorted(digests)}", file=sys.stderr)
        return 1
    return 1 if args.check and not (ok_ratio and ok_rss) else 0


def _ok(flag: bool) -> str:
    return "ok" if flag else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
