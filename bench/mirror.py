"""Benchmark: the mirror against what a site would otherwise run, each figure beside its
reference in the same run, as a ratio, with peak RSS. nginx on loopback is the origin.

  (a) one 1 GiB external blob: ``glarelite mirror`` through the CLI (process start-up
      included, every byte verified) beside ``curl -s -o FILE URL`` alone
      (target: <= 1.0 x curl) and beside ``curl -s -o FILE URL && sha256sum FILE``, the
      verified way a user would do it. Also ``mirror.sync`` timed in-process: parallel
      ranges (default), one stream (max_segments=1), and without fsync.
  (b) 2,000 external blobs of 4 KiB (workers=8) through the CLI, beside
      ``rclone copy --http-url URL :http: DEST --transfers 8`` (rclone's http backend
      lists nginx's autoindex) (target: <= 1.0 x rclone); ``mirror.sync`` in-process too.
  (c) a rerun with nothing to do over 100,000 mirrored blobs (target: <= 2 s).
  (d) the 2,000 blobs of (b) from an origin 40 ms away: nginx behind a latency proxy
      (tests/fixtures/latency.py, in this process) that holds every chunk 20 ms in each
      direction and a new connection one round trip; the CLI beside the same
      ``rclone copy --transfers 8`` through the same proxy (target: <= 0.2 x rclone).
      The kernel here has no netem: the proxy delays chunks, not requests, so a client
      that pipelines gains what it would gain on a real link.

Every timed run is a child process under GNU time (its peak RSS and CPU time), timed
from spawn to exit, except the ``mirror.sync`` variants, which are timed around the call
(interpreter start-up excluded). Each figure is the best of ``--rounds``; the page cache
is warm for every contender alike (the origin files are read before timing).

    python bench/mirror.py                 # full size (needs ~3 GiB of disk, minutes)
    python bench/mirror.py --scale 0.01    # a smoke run, one round (< 1 min)
    python bench/mirror.py --only a,d

The first line printed is the load average: on a shared machine a CPU-bound contender
(the mirror hashes every byte) loses more wall time than a latency-bound one (rclone in
(d) mostly waits), so each figure also carries its CPU time (user + system).

Mirror runs use ``fsync=True`` (the default: data flushed before each rename) unless
reported as "nofsync"; curl and rclone do not fsync. rclone is needed for (b) and (d)
(Debian: ``apt-get install -y rclone``); the tests do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.latency import LatencyProxy  # noqa: E402 - after the path line
from tests.fixtures.static import start_nginx  # noqa: E402

MIB = 1 << 20
TARGETS = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 0.2}
DELAY = 0.02  # (d): seconds each way, a 40 ms round trip
RCLONE_HINT = (
    "rclone is needed for (b) and (d): `apt-get install -y rclone` (Debian/Ubuntu), or see "
    "https://rclone.org/install/; or run --only a,c"
)


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


@dataclass(frozen=True)
class Timed:
    seconds: float  # spawn to exit
    rss_mib: float  # peak
    cpu_s: float  # user + system
    stdout: str

    def figures(self) -> dict[str, float]:
        return {"seconds": self.seconds, "rss_mib": self.rss_mib, "cpu_s": self.cpu_s}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Timed:
    """Wall time, peak RSS, CPU time and stdout of a command, measured by
    GNU time: the RSS of a process forked from this (large) one would count our pages.
    For ``sh -c``, the peak of the largest process the shell waited for."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        started = time.perf_counter()
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", "-o", stats.name, *cmd],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        seconds = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        user, system, rss_kib = map(float, stats.read().strip().splitlines()[-1].split())
    return Timed(seconds, rss_kib / 1024, user + system, out.stdout)


def run_mirror(catalog: Path, dest: Path, **options: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--catalog", str(catalog), "--dest", str(dest)]
    t = timed([*cmd, "--options", json.dumps(options)])
    result: dict[str, Any] = json.loads(t.stdout.strip().splitlines()[-1])
    result["rss_mib"] = t.rss_mib
    result["cpu_s"] = t.cpu_s  # the whole process's, start-up included
    if result["report"]["exit_code"] != 0:
        raise SystemExit(f"mirror run failed: {result['report']}")
    return result


def glarelite_cmd() -> list[str]:
    """The ``glarelite`` console script beside this interpreter, else ``-m``."""
    script = Path(sys.executable).with_name("glarelite")
    return [str(script)] if script.exists() else [sys.executable, "-m", "glarelite.cli"]


def run_cli(catalog: Path, dest: Path, *options: str) -> dict[str, Any]:
    """``glarelite --catalog DB mirror DEST``, spawn to exit, with this checkout's code.
    Exit code 0 means every selected blob is in the tree and verified (``timed`` stops
    the benchmark on any other)."""
    env = dict(os.environ, GLARELITE_ALLOW_HOSTS="127.0.0.1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [*glarelite_cmd(), "--catalog", str(catalog), "mirror", str(dest), *options]
    return timed(cmd, env).figures()


def run_tool(cmd: list[str]) -> dict[str, Any]:
    return timed(cmd).figures()


def rclone_copy(url: str, dest: Path, config: Path) -> dict[str, Any]:
    cmd = ["rclone", "copy", "--http-url", url, ":http:", str(dest), "--transfers", "8"]
    return run_tool([*cmd, "--config", str(config)])


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: r["seconds"])


# -- setup ----------------------------------------------------------------------------
class Nginx:
    """The tests' nginx (tests/fixtures/static.py) over ``root``."""

    def __init__(self, root: Path) -> None:
        self._server = start_nginx(root, autoindex=True)  # rclone's http backend lists

    def url(self, path: str) -> str:
        return self._server.url + path

    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self._server.port

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
    cat.publish(artifact.id)  # public implies active: publish is its own step
    cat.close()
    warm(big)
    curl, curl_sha, cli, ranged, streamed, nofsync = [], [], [], [], [], []
    out = work / "curl.out"
    url = nginx.url("/big.bin")
    q_out, q_url = shlex.quote(str(out)), shlex.quote(url)
    verified = f"curl -s -o {q_out} {q_url} && sha256sum {q_out}"
    for _ in range(rounds):
        curl.append(run_tool(["curl", "-s", "-o", str(out), url]))
        out.unlink()
        curl_sha.append(run_tool(["sh", "-c", verified]))
        out.unlink()
        rm(work / "tree-a")
        cli.append(run_cli(work / "a.db", work / "tree-a"))
        rm(work / "tree-a")
        ranged.append(run_mirror(work / "a.db", work / "tree-a"))
        rm(work / "tree-a")
        streamed.append(run_mirror(work / "a.db", work / "tree-a", max_segments=1))
        rm(work / "tree-a")
        nofsync.append(run_mirror(work / "a.db", work / "tree-a", fsync=False))
        rm(work / "tree-a")
    big.unlink()
    c, cs, cl = best(curl), best(curl_sha), best(cli)
    m, s, n = best(ranged), best(streamed), best(nofsync)
    return {
        "size_mib": size / MIB,
        "curl": c,
        "curl_sha256sum": cs,
        "cli": cl,
        "sync": m,
        "sync_one_stream": s,
        "sync_nofsync": n,
        "ratio": cl["seconds"] / c["seconds"],
        "ratio_curl_sha256sum": cl["seconds"] / cs["seconds"],
        "ratio_sync": m["seconds"] / c["seconds"],
        "ratio_one_stream": s["seconds"] / c["seconds"],
        "ratio_nofsync": n["seconds"] / c["seconds"],
    }


def small_set(work: Path, www: Path, name: str, base_url: str, count: int) -> Path:
    """``count`` files of 4 KiB under ``www/small`` (made once) and a catalog ``name``
    with one active public artifact per file, registered at ``base_url/small/...``."""
    small = www / "small"
    if not small.is_dir():
        small.mkdir()
        for n in range(count):
            (small / f"f{n:06d}.bin").write_bytes(os.urandom(4096))
    db = work / f"{name}.db"
    cat = new_catalog(db, str(work / f"{name}-blobs"))
    for n in range(count):
        artifact = cat.create("items", f"s{n}")
        cat.add_location(artifact.id, "file", f"{base_url}/small/f{n:06d}.bin")
        cat.activate(artifact.id)
        cat.publish(artifact.id)  # public implies active: publish is its own step
    cat.close()
    return db


def compare_small(
    work: Path,
    db: Path,
    base_url: str,
    count: int,
    rounds: int,
    workers: int,
    out: Path,
    proxy: LatencyProxy | None = None,
) -> dict[str, Any]:
    """rclone, the CLI and ``mirror.sync`` (fsync on and off) over the set, best of rounds.
    With ``proxy``: the TCP connections each of rclone and the CLI opened (last round)."""
    rclone, cli, synced, nofsync = [], [], [], []
    connections: dict[str, int] = {}
    for _ in range(rounds):
        rm(out / "rclone")
        before = proxy.connections if proxy else 0
        rclone.append(rclone_copy(base_url + "/small/", out / "rclone", work / "rclone.conf"))
        connections["rclone"] = (proxy.connections if proxy else 0) - before
        rm(out / "tree")
        before = proxy.connections if proxy else 0
        cli.append(run_cli(db, out / "tree", "--workers", str(workers)))
        connections["cli"] = (proxy.connections if proxy else 0) - before
        rm(out / "tree")
        synced.append(run_mirror(db, out / "tree", workers=workers))
        rm(out / "tree")
        nofsync.append(run_mirror(db, out / "tree", workers=workers, fsync=False))
        rm(out / "tree")
    copied = len(list((out / "rclone").iterdir()))
    if copied != count:
        raise SystemExit(f"rclone copied {copied} files, expected {count}")
    rm(out / "rclone")
    r, c, m, n = best(rclone), best(cli), best(synced), best(nofsync)
    return {
        **({"connections": connections} if proxy else {}),
        "blobs": count,
        "out": str(out),
        "rclone": r,
        "cli": c,
        "sync": m,
        "sync_nofsync": n,
        "ratio": c["seconds"] / r["seconds"],
        "ratio_sync": m["seconds"] / r["seconds"],
        "ratio_nofsync": n["seconds"] / r["seconds"],
    }


def bench_small(
    work: Path, www: Path, nginx: Nginx, count: int, rounds: int, workers: int, out: Path
) -> dict[str, Any]:
    db = small_set(work, www, "b", nginx.url(""), count)
    return compare_small(work, db, nginx.url(""), count, rounds, workers, out)


def bench_far(
    work: Path, www: Path, nginx: Nginx, count: int, rounds: int, workers: int, out: Path
) -> dict[str, Any]:
    host, port = nginx.address()
    proxy = LatencyProxy(host, port, delay=0.0).start()
    try:
        # Registering downloads each blob once: done with the link at 0 ms.
        db = small_set(work, www, "d", proxy.url, count)
        proxy.delay = DELAY
        result = compare_small(work, db, proxy.url, count, rounds, workers, out, proxy)
    finally:
        proxy.stop()
    result["delay_ms"] = DELAY * 1000
    return result


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
        cat.publish(artifact.id)  # public implies active: publish is its own step
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
    parser.add_argument(
        "--rounds", type=int, default=None, help="best of N (default: 3; 1 with --scale < 1)"
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--only", default="a,b,c,d", help="which benchmarks, e.g. a,d")
    parser.add_argument("--tmp", default=None, help="work folder (default: a new temp dir)")
    parser.add_argument(
        "--out",
        default=None,
        help="where (b) and (d) write the mirror tree and rclone's copy (default: the work "
        "folder); a tmpfs such as /dev/shm takes the disk out of the comparison",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.rounds is None:
        args.rounds = 3 if args.scale >= 1 else 1
    only = set(args.only.split(","))
    if only - set(TARGETS):
        raise SystemExit(f"--only: unknown benchmark(s) {sorted(only - set(TARGETS))}")
    for tool in ("/usr/sbin/nginx", "/usr/bin/time", "curl", "sha256sum"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed for this benchmark")
    if only & {"b", "d"} and not shutil.which("rclone"):
        raise SystemExit(RCLONE_HINT)
    work = Path(args.tmp or tempfile.mkdtemp(prefix="glarelite-bench-mirror-"))
    work.mkdir(parents=True, exist_ok=True)
    www = work / "www"
    www.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else work
    out.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(www)
    results: dict[str, Any] = {
        "scale": args.scale,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        if "a" in only:
            size = max(MIB, int((1 << 30) * args.scale))
            results["a"] = bench_big(work, www, nginx, size, args.rounds)
            report({"a": results["a"]}, table_only=True)
        small = max(10, int(2000 * args.scale))
        if "b" in only:
            results["b"] = bench_small(work, www, nginx, small, args.rounds, args.workers, out)
            report({"b": results["b"]}, table_only=True)
        if "d" in only:
            results["d"] = bench_far(work, www, nginx, small, args.rounds, args.workers, out)
            report({"d": results["d"]}, table_only=True)
        if "c" in only:
            count = max(100, int(100_000 * args.scale))
            results["c"] = bench_noop(work, www, nginx, count, args.rounds, args.workers)
    finally:
        nginx.stop()
        if not args.tmp:
            rm(work)
    results["loadavg_end"] = os.getloadavg()
    report(results)


def fig(run: dict[str, Any]) -> str:
    return f"{run['seconds']:.2f} s ({run['rss_mib']:.0f} MiB, {run['cpu_s']:.2f} s CPU)"


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f}x [target <= {target}x: {'met' if ratio <= target else 'MISSED'}]"


def report(results: dict[str, Any], table_only: bool = False) -> None:
    lines = []
    if "loadavg_start" in results:
        lines.append(
            "load average at start / end: "
            + " / ".join(
                " ".join(f"{x:.1f}" for x in results[k])
                for k in ("loadavg_start", "loadavg_end")
                if k in results
            )
        )
    a = results.get("a")
    if a:
        lines.append(
            f"(a) {a['size_mib']:.0f} MiB: glarelite mirror (CLI) {fig(a['cli'])} vs "
            f"curl -o {fig(a['curl'])} = {verdict(a['ratio'], TARGETS['a'])}; "
            f"vs curl -o && sha256sum {fig(a['curl_sha256sum'])} = "
            f"{a['ratio_curl_sha256sum']:.2f}x"
        )
        lines.append(
            f"    mirror.sync in-process: {fig(a['sync'])} = {a['ratio_sync']:.2f}x curl; "
            f"one stream {fig(a['sync_one_stream'])} = {a['ratio_one_stream']:.2f}x; "
            f"without fsync {fig(a['sync_nofsync'])} = {a['ratio_nofsync']:.2f}x"
        )
    for key, what in (("b", "on loopback"), ("d", f"{2 * DELAY * 1000:.0f} ms away")):
        r = results.get(key)
        if r:
            lines.append(
                f"({key}) {r['blobs']} x 4 KiB {what} into {r['out']}: glarelite mirror (CLI) "
                f"{fig(r['cli'])} vs rclone copy --transfers 8 {fig(r['rclone'])} = "
                f"{verdict(r['ratio'], TARGETS[key])}"
            )
            lines.append(
                f"    mirror.sync in-process: {fig(r['sync'])} = {r['ratio_sync']:.2f}x; "
                f"without fsync {fig(r['sync_nofsync'])} = {r['ratio_nofsync']:.2f}x"
                + (
                    f"; TCP connections through the proxy: {r['connections']}"
                    if "connections" in r
                    else ""
                )
            )
    c = results.get("c")
    if c:
        met = "met" if c["noop"]["seconds"] <= TARGETS["c"] else "MISSED"
        lines.append(
            f"(c) no-op over {c['blobs']} blobs: {fig(c['noop'])} "
            f"[target <= {TARGETS['c']} s: {met}]; "
            f"setup: catalog {c['catalog_build_s']:.0f} s, first mirror "
            f"{c['initial_mirror_s']:.0f} s (fsync off); a rerun after one artifact "
            f"changed {fig(c['one_change'])}"
        )
    print("\n".join(lines), flush=True)
    if not table_only:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
