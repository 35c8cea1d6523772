"""The million-artifact benchmark (issue 18): the mirror and the offline reader at scale.

Builds (once, cached in ``--work``) a catalog of N artifacts of one type, each with one
16-byte internal blob, created -> uploaded -> activated -> published through the public
API, then measures, each run a child process under GNU time (start-up included, peak RSS)
with the code under test (``--code DIR`` first on every child's PYTHONPATH):

  build    build time and artifacts/s (not judged); creates/s with the change journal
           beside the same creates without it (bench/catalog.py's comparison; >= 0.90x).
  mirror   ``glarelite --catalog DB mirror TREE`` into a tree on tmpfs (else disk):
           first mirror (RSS <= 300 MiB); no-op rerun (<= 1 s, <= 100 MiB); rerun after
           one artifact's description changed, and after its blob changed (<= 1.5 s,
           <= 150 MiB, <= 2 MiB written into the tree besides the blob). References in
           the same run: raw sqlite3 (the journal's newest serial; a full scan of
           ``artifacts``) and ``cp -a`` of the first tree.
  edge     the tree served by nginx on loopback with an access log: a child process
           ``open_mirror(URL)`` + ``list(type, filters=["name=X"], latest=True)`` + read
           the blob whole: requests and bytes counted from nginx's log (<= 5 requests,
           <= 512 KiB, <= 0.3 s, <= 80 MiB); beside one ``curl`` process fetching the same
           URLs. Again with a ``cache_dir``: the second run.
  list     a child iterating ``iter_all(type)`` over ``open_mirror(tree)`` (<= 150 MiB).

    python bench/scale.py --artifacts 1000000 [--work /work/bench-data] [--code DIR]
    python bench/scale.py --artifacts 100000 --only mirror,edge
    python bench/scale.py --scale 2000          # smoke run (< 1 min)

The load average is printed first: the machine may be shared. Every figure is one run
(the build is long; the reruns are cheap and repeatable with ``--only``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
TYPE = "items"
VERSIONS = 4  # versions per name: "latest X" has something to choose from
PHASES = ("build", "mirror", "edge", "list")
TARGETS = {
    "first_rss": 300,
    "noop_s": 1.0,
    "noop_rss": 100,
    "one_s": 1.5,
    "one_rss": 150,
    "one_written_mib": 2.0,
    "edge_requests": 5,
    "edge_kib": 512,
    "edge_s": 0.3,
    "edge_rss": 80,
    "list_rss": 150,
    "journal_ratio": 0.90,
}


def name_of(i: int) -> str:
    return f"pkg-{i // VERSIONS:07d}"


def version_of(i: int) -> str:
    return f"1.{i % VERSIONS}.0"


def blob_of(i: int, generation: int = 0) -> bytes:
    return b"%08d%08d" % (i, generation)  # 16 bytes, distinct per artifact


# -- child modes: run with the code under test ---------------------------------------------
def child_build(a: dict[str, Any]) -> None:
    """Worker ``start`` of ``step``: artifacts i = start, start+step, ... below n."""
    if not a["durable"]:
        # The cached fixture does not need to survive a power loss: without fsync the
        # build is CPU-bound (as eatmydata would make it); --durable-build measures with.
        os.fsync = lambda fd: None
    import glarelite

    log = open(a["log"], "a", buffering=1)  # noqa: SIM115 - the child's lifetime
    with glarelite.open(a["db"], create=False) as cat:
        t0 = time.perf_counter()
        done = 0
        for i in range(a["start"], a["n"], a["step"]):
            art = cat.create(TYPE, name_of(i), version=version_of(i), description="bench")
            cat.upload(art.id, "file", blob_of(i))
            cat.activate(art.id)
            cat.publish(art.id)
            done += 1
            if done % 20_000 == 0:
                rate = done / (time.perf_counter() - t0)
                print(f"worker {a['start']}: {done:,} done, {rate:,.0f}/s", file=log)
    print(json.dumps({"done": done}))


def child_define(a: dict[str, Any]) -> None:
    import glarelite

    with glarelite.open(a["db"], storage=a["storage"]) as cat:
        cat.define_type(TYPE, blobs=["file"], properties={"note": "string"})
    print(json.dumps({"serial": 0}))


def child_change(a: dict[str, Any]) -> None:
    """Change one artifact through the API: its description, or its blob (an active
    artifact's blob is immutable unless the field is: then a new version replaces it)."""
    import glarelite

    with glarelite.open(a["db"], create=False) as cat:
        page = cat.list(TYPE, filters=[f"name={a['name']}"], latest=True)
        art = page.items[0]
        if a["what"] == "description":
            cat.update(art.id, description=f"changed at {time.time()}")
            out = {"id": art.id, "blob_bytes": 0}
        else:
            # The type's blob field is not mutable: a changed blob is a new version of
            # the name (the way Glare publishes new bytes), created -> uploaded ->
            # activated -> published.
            new = cat.create(TYPE, a["name"], version=f"2.{int(time.time())}.0")
            cat.upload(new.id, "file", blob_of(0, int(time.time())))
            cat.activate(new.id)
            cat.publish(new.id)
            out = {"id": new.id, "blob_bytes": 16}
        out["serial"] = cat.serial()
    print(json.dumps(out))


def child_edge(a: dict[str, Any]) -> None:
    import glarelite

    started = time.perf_counter()
    kwargs = {"cache_dir": a["cache_dir"]} if a.get("cache_dir") else {}
    with glarelite.open_mirror(a["url"], **kwargs) as m:
        page = m.list(TYPE, filters=[f"name={a['name']}"], latest=True)
        art = page.items[0]
        size = 0
        with m.open_blob(art.id, "file") as f:
            while chunk := f.read(1 << 16):
                size += len(chunk)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "id": art.id, "version": art.version, "size": size}))


def child_list(a: dict[str, Any]) -> None:
    import glarelite

    started = time.perf_counter()
    count = 0
    with glarelite.open_mirror(a["url"]) as m:
        for _ in m.iter_all(TYPE):
            count += 1
    print(json.dumps({"seconds": time.perf_counter() - started, "count": count}))


CHILDREN = {
    "build": child_build,
    "define": child_define,
    "change": child_change,
    "edge": child_edge,
    "list": child_list,
}


# -- measuring child processes -----------------------------------------------------------
@dataclass(frozen=True)
class Timed:
    seconds: float  # spawn to exit
    rss_mib: float  # peak, from GNU time
    cpu_s: float  # user + system
    write_bytes: int  # /proc/<pid>/io of the child: bytes it caused to be written
    stdout: str

    def fig(self) -> str:
        return f"{self.seconds:.2f} s, {self.rss_mib:.0f} MiB, {self.cpu_s:.2f} s CPU"

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return out


class Runner:
    """Runs children with ``code`` first on PYTHONPATH."""

    def __init__(self, code: Path) -> None:
        self.code = code
        self.env = dict(os.environ, GLARELITE_ALLOW_HOSTS="127.0.0.1")
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(code), os.environ.get("PYTHONPATH")])
        )
        self.env.pop("GLARELITE_CATALOG", None)

    def timed(self, cmd: list[str], *, check: bool = True) -> Timed:
        """GNU time for RSS and CPU; the child's write_bytes through a wrapper that reads
        its own /proc/self/io after the command (``sh`` waits: the shell's io counts its
        waited-for children, so the figure is the command's)."""
        with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
            with tempfile.NamedTemporaryFile("r", suffix=".io") as io:
                wrapped = [
                    "/usr/bin/time", "-f", "%U %S %M", "-o", stats.name,
                    "sh", "-c", '"$@"; rc=$?; cat /proc/$$/io > "$0"; exit $rc', io.name, *cmd,
                ]  # fmt: skip
                started = time.perf_counter()
                out = subprocess.run(
                    wrapped, capture_output=True, text=True, check=False, env=self.env
                )
                seconds = time.perf_counter() - started
                if check and out.returncode != 0:
                    raise SystemExit(
                        f"{' '.join(cmd[:4])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}"
                    )
                user, system, rss_kib = map(float, stats.read().strip().splitlines()[-1].split())
                io_text = io.read()
        written = re.search(r"^write_bytes: (\d+)", io_text, re.M)
        return Timed(
            seconds, rss_kib / 1024, user + system, int(written.group(1)) if written else -1,
            out.stdout + (f"\n{out.stderr}" if out.returncode else ""),
        )  # fmt: skip

    def child(self, what: str, **kwargs: Any) -> Timed:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what]
        return self.timed([*cmd, json.dumps(kwargs)])

    def glarelite(self, *args: str) -> Timed:
        script = Path(sys.executable).with_name("glarelite")
        base = [str(script)] if script.exists() else [sys.executable, "-m", "glarelite.cli"]
        return self.timed([*base, *args])

    def git_head(self) -> str:
        out = subprocess.run(
            ["git", "-C", str(self.code), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()[:100] or "(not a git checkout)"


def schema_version(code: Path) -> int:
    text = (code / "glarelite" / "_db.py").read_text()
    found = re.search(r"^SCHEMA_VERSION = (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def verdict(value: float, target: float) -> str:
    return f"[target <= {target:g}: {'met' if value <= target else 'MISSED'}]"


# -- build ----------------------------------------------------------------------------------
def build(run: Runner, work: Path, n: int, workers: int, durable: bool) -> Path:
    """The catalog of n artifacts, reused when a complete one is in ``work``."""
    folder = work / f"catalog-{n}-schema{schema_version(run.code)}"
    db = folder / "catalog.db"
    done = folder / "complete.json"
    if done.exists():
        info = json.loads(done.read_text())
        say(
            f"build: reusing {db} ({n:,} artifacts, built in {info['seconds']:.0f} s = "
            f"{n / info['seconds']:,.0f}/s with {info['workers']} workers)"
        )
        return db
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run.child("define", db=str(db), storage=str(folder / "blobs"))
    log = folder / "build.log"
    say(f"build: {n:,} artifacts into {db} with {workers} worker process(es); log {log}")
    started = time.perf_counter()
    env = run.env
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, str(Path(__file__).resolve()), "--child", "build"),
                json.dumps(
                    {"db": str(db), "n": n, "start": j, "step": workers, "log": str(log)}
                    | {"durable": durable}
                ),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for j in range(workers)
    ]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - started
    if any(codes):
        raise SystemExit(f"build failed: worker exit codes {codes}; see {log}")
    info = {"n": n, "seconds": seconds, "workers": workers, "durable": durable}
    done.write_text(json.dumps(info))
    say(f"build: {n:,} artifacts in {seconds:.0f} s = {n / seconds:,.0f} artifacts/s")
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, help="smoke run: this many artifacts")
    parser.add_argument("--work", type=Path, default=Path("/work/bench-data"))
    parser.add_argument("--code", type=Path, default=REPO)
    parser.add_argument("--only", default=",".join(PHASES))
    parser.add_argument("--workers", type=int, default=2, help="build processes")
    parser.add_argument("--durable-build", action="store_true", help="build with fsync")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        CHILDREN[args.child](json.loads(args.args))
        return
    n = args.scale or args.artifacts
    run = Runner(args.code.resolve())
    say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"code under test: {run.code} ({run.git_head()})")
    args.work.mkdir(parents=True, exist_ok=True)
    build(run, args.work, n, args.workers, args.durable_build)


if __name__ == "__main__":
    main()
