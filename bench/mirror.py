"""Benchmark: ``mirror.sync`` against the tools a site would otherwise use, nginx on
loopback as the origin, all in the same run.

  (a) one 1 GiB external blob mirrored, beside ``curl -s -o FILE URL``
      (target: mirror <= 0.55 x curl). Mirror variants: parallel ranges (default) and one
      stream (max_segments=1).
  (b) 2,000 external blobs of 4 KiB mirrored (workers=8), beside
      ``rclone copy --http-url URL :http: DEST --transfers 8`` (rclone's http backend
      lists nginx's autoindex) (target: mirror <= 0.35 x rclone).
  (c) a rerun with nothing to do over 100,000 mirrored blobs (target: <= 2 s).

Every timed run is a child process under GNU time, so each figure comes with that
process's peak RSS.
Mirror runs are timed around ``mirror.sync`` (interpreter start-up excluded); curl and
rclone from spawn to exit. Each measurement is the best of ``--rounds``; the page cache
is warm for every contender alike (the origin files are read before timing).

    python bench/mirror.py                 # full size (needs ~3 GiB of disk, minutes)
    python bench/mirror.py --scale 0.01    # a smoke run
    python bench/mirror.py --only a,c

Mirror runs use ``fsync=True`` (the default: data flushed before each rename) unless
reported as "nofsync"; curl and rclone do not fsync.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.static import start_nginx  # noqa: E402 - after the path line

MIB = 1 << 20
TARGETS = {"a": 0.55, "b": 0.35, "c": 2.0}


# -- child mode: one mirror.sync, timed, with peak RSS -----------------------------------
def child(args: argparse.Namespace) -> None:
    import glarelite
    import mirror

    options = json.loads(args.options)
    catalog = glarelite.open(args.catalog, allow_hosts=["127.0.0.1"])
    started = time.perf_counter()
    report = mirror.sync(catalog, args.dest, **options)
    seconds = time.perf_counter() - started
    summary = {
        k: v
        for k, v in report.to_dict().items()
        if k in ("status", "exit_code", "skipped", "bytes", "bytes_fetched", "artifacts", "blobs")
    }
    summary["copied"] = len(report.copied)
    summary["failed"] = report.failed[:3]
    print(json.dumps({"seconds": seconds, "report": summary}))


def timed(cmd: list[str]) -> tuple[float, float, str, str]:
    """(seconds spawn to exit, peak RSS MiB, stdout, stderr) of a command, measured by
    GNU time: the RSS of a process forked from this (large) one would count our pages."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        started = time.perf_counter()
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", stats.name, *cmd],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        rss_kib = float(stats.read().strip().splitlines()[-1])
    return seconds, rss_kib / 1024, out.stdout, out.stderr


def run_mirror(catalog: Path, dest: Path, **options: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--catalog", str(catalog), "--dest", str(dest)]
    _, rss, stdout, _ = timed([*cmd, "--options", json.dumps(options)])
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["rss_mib"] = rss
    if result["report"]["exit_code"] != 0:
        raise SystemExit(f"mirror run failed: {result['report']}")
    return result


def run_tool(cmd: list[str]) -> dict[str, Any]:
    seconds, rss, _, _ = timed(cmd)
    return {"seconds": seconds, "rss_mib": rss}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: r["seconds"])


# -- setup ----------------------------------------------------------------------------
class Nginx:
    """The tests' nginx (tests/fixtures/static.py) over ``root``."""

    def __init__(self, root: Path) -> None:
        self._server = start_nginx(root, autoindex=True)  # rclone's http backend lists

    def url(self, path: str) -> str:
        return self._server.url + path

    def stop(self) -> None:
        self._server.stop()


def new_catalog(path: Path, storage: str) -> Any:
    import glarelite

    cat = glarelite.open(path, storage=storage, allow_hosts=["127.0.0.1"])
    cat.define_type("items", blobs=["file"])
    return cat


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(16 * MIB):
            pass


def rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- the three benchmarks ---------------------------------------------------------------
def bench_big(work: Path, www: Path, nginx: Nginx, size: int, rounds: int) -> dict[str, Any]:
    big = www / "big.bin"
    with big.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(16 * MIB, left))
            f.write(block)
            left -= len(block)
    cat = new_catalog(work / "a.db", str(work / "a-blobs"))
    artifact = cat.create("items", "big")
    cat.add_location(artifact.id, "file", nginx.url("/big.bin"))
    cat.activate(artifact.id)
    cat.publish(artifact.id)
    cat.close()
    warm(big)
    curl, ranged, streamed, nofsync = [], [], [], []
    out = work / "curl.out"
    for _ in range(rounds):
        curl.append(run_tool(["curl", "-s", "-o", str(out), nginx.url("/big.bin")]))
        out.unlink()
        rm(work / "tree-a")
        ranged.append(run_mirror(work / "a.db", work / "tree-a"))
        rm(work / "tree-a")
        streamed.append(run_mirror(work / "a.db", work / "tree-a", max_segments=1))
        rm(work / "tree-a")
        nofsync.append(run_mirror(work / "a.db", work / "tree-a", fsync=False))
        rm(work / "tree-a")
    big.unlink()
    c, m, s, n = best(curl), best(ranged), best(streamed), best(nofsync)
    return {
        "size_mib": size / MIB,
        "curl": c,
        "mirror": m,
        "mirror_one_stream": s,
        "mirror_nofsync": n,
        "ratio": m["seconds"] / c["seconds"],
        "ratio_one_stream": s["seconds"] / c["seconds"],
        "ratio_nofsync": n["seconds"] / c["seconds"],
    }


def bench_small(
    work: Path, www: Path, nginx: Nginx, count: int, rounds: int, workers: int, out: Path
) -> dict[str, Any]:
    small = www / "small"
    small.mkdir()
    cat = new_catalog(work / "b.db", str(work / "b-blobs"))
    for n in range(count):
        name = f"f{n:06d}.bin"
        (small / name).write_bytes(os.urandom(4096))
        artifact = cat.create("items", f"s{n}")
        cat.add_location(artifact.id, "file", nginx.url(f"/small/{name}"))
        cat.activate(artifact.id)
        cat.publish(artifact.id)
    cat.close()
    rclone, synced, nofsync = [], [], []
    for _ in range(rounds):
        rm(out / "rclone")
        cmd = ["rclone", "copy", "--http-url", nginx.url("/small/"), ":http:", str(out / "rclone")]
        rclone.append(run_tool([*cmd, "--transfers", "8", "--config", str(work / "rclone.conf")]))
        rm(out / "tree-b")
        synced.append(run_mirror(work / "b.db", out / "tree-b", workers=workers))
        rm(out / "tree-b")
        nofsync.append(run_mirror(work / "b.db", out / "tree-b", workers=workers, fsync=False))
    copied = len(list((out / "rclone").iterdir()))
    if copied != count:
        raise SystemExit(f"rclone copied {copied} files, expected {count}")
    rm(out / "rclone")
    rm(out / "tree-b")
    r, m, n = best(rclone), best(synced), best(nofsync)
    return {
        "blobs": count,
        "rclone": r,
        "mirror": m,
        "mirror_nofsync": n,
        "ratio": m["seconds"] / r["seconds"],
        "ratio_nofsync": n["seconds"] / r["seconds"],
    }


def bench_noop(
    work: Path, www: Path, nginx: Nginx, count: int, rounds: int, workers: int
) -> dict[str, Any]:
    import mirror

    # External blobs of 64 bytes each (distinct): registering one costs a GET (~1.6 ms
    # here), while a stored upload costs an fsync'd store write (~5 ms); the rerun
    # measured reads no blob either way.
    started = time.perf_counter()
    folder = www / "noop"
    folder.mkdir()
    cat = new_catalog(work / "c.db", str(work / "c-blobs"))
    for n in range(count):
        name = f"{n:07d}.bin"
        (folder / name).write_bytes(b"%08d" % n * 8)
        artifact = cat.create("items", f"n{n}")
        cat.add_location(artifact.id, "file", nginx.url(f"/noop/{name}"))
        cat.activate(artifact.id)
        cat.publish(artifact.id)
    built = time.perf_counter() - started
    started = time.perf_counter()
    first = mirror.sync(cat, str(work / "tree-c"), workers=workers, fsync=False)
    mirrored = time.perf_counter() - started
    if first.exit_code != 0 or first.blobs != count:
        raise SystemExit(f"initial mirror failed: {first.failed[:3]}")
    cat.close()
    runs = [run_mirror(work / "c.db", work / "tree-c") for _ in range(rounds)]
    for r in runs:
        if r["report"]["status"] != "nothing-to-do" or r["report"]["bytes_fetched"]:
            raise SystemExit(f"the rerun was not a no-op: {r['report']}")
    # For scale: a rerun after one artifact changed walks the whole catalog.
    cat = new_catalog(work / "c.db", str(work / "c-blobs"))
    one = next(iter(cat.iter_all("items", limit=1)))
    cat.update(one.id, description="changed")
    cat.close()
    full = run_mirror(work / "c.db", work / "tree-c")
    return {
        "blobs": count,
        "catalog_build_s": built,
        "initial_mirror_s": mirrored,
        "noop": best(runs),
        "one_change": full,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size/count multiplier")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--only", default="a,b,c")
    parser.add_argument("--tmp", default=None, help="work folder (default: a new temp dir)")
    parser.add_argument(
        "--out",
        default=None,
        help="where (b) writes the mirror tree and rclone's copy (default: the work folder); "
        "a tmpfs such as /dev/shm takes the disk out of the comparison",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    for tool in ("/usr/sbin/nginx", "/usr/bin/time", "curl", "rclone"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed for this benchmark")
    only = set(args.only.split(","))
    work = Path(args.tmp or tempfile.mkdtemp(prefix="glarelite-bench-mirror-"))
    work.mkdir(parents=True, exist_ok=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    nginx = Nginx(www)
    results: dict[str, Any] = {"scale": args.scale, "rounds": args.rounds, "cpus": os.cpu_count()}
    try:
        if "a" in only:
            size = max(MIB, int((1 << 30) * args.scale))
            results["a"] = bench_big(work, www, nginx, size, args.rounds)
            report({"a": results["a"]}, table_only=True)
        if "b" in only:
            count = max(10, int(2000 * args.scale))
            out = Path(args.out) if args.out else work
            out.mkdir(parents=True, exist_ok=True)
            results["b"] = bench_small(work, www, nginx, count, args.rounds, args.workers, out)
            results["b"]["out"] = str(out)
            report({"b": results["b"]}, table_only=True)
        if "c" in only:
            count = max(100, int(100_000 * args.scale))
            results["c"] = bench_noop(work, www, nginx, count, args.rounds, args.workers)
    finally:
        nginx.stop()
        if not args.tmp:
            rm(work)
    report(results)


def report(results: dict[str, Any], table_only: bool = False) -> None:
    lines = []
    a = results.get("a")
    if a:
        lines.append(
            f"(a) {a['size_mib']:.0f} MiB: curl {a['curl']['seconds']:.2f} s "
            f"({a['curl']['rss_mib']:.0f} MiB RSS); mirror {a['mirror']['seconds']:.2f} s "
            f"({a['mirror']['rss_mib']:.0f} MiB) ratio {a['ratio']:.2f} [target <= "
            f"{TARGETS['a']}]; one stream {a['mirror_one_stream']['seconds']:.2f} s "
            f"ratio {a['ratio_one_stream']:.2f}; without fsync "
            f"{a['mirror_nofsync']['seconds']:.2f} s ratio {a['ratio_nofsync']:.2f}"
        )
    b = results.get("b")
    if b:
        lines.append(
            f"(b) {b['blobs']} x 4 KiB into {b['out']}: rclone {b['rclone']['seconds']:.2f} s "
            f"({b['rclone']['rss_mib']:.0f} MiB); mirror {b['mirror']['seconds']:.2f} s "
            f"({b['mirror']['rss_mib']:.0f} MiB) ratio {b['ratio']:.2f} [target <= "
            f"{TARGETS['b']}]; without fsync {b['mirror_nofsync']['seconds']:.2f} s "
            f"ratio {b['ratio_nofsync']:.2f}"
        )
    c = results.get("c")
    if c:
        lines.append(
            f"(c) no-op over {c['blobs']} blobs: {c['noop']['seconds']:.2f} s "
            f"({c['noop']['rss_mib']:.0f} MiB) [target <= {TARGETS['c']} s]; "
            f"setup: catalog {c['catalog_build_s']:.0f} s, first mirror "
            f"{c['initial_mirror_s']:.0f} s (fsync off); a rerun after one artifact "
            f"changed {c['one_change']['seconds']:.2f} s ({c['one_change']['rss_mib']:.0f} MiB)"
        )
    print("\n".join(lines), flush=True)
    if not table_only:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
