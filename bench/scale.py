"""The million-artifact benchmark (issue 18): the mirror and the offline reader at scale.

Builds (once, cached in ``--work`` by N and the schema version) a catalog of N artifacts
of one type (4 versions per name), each with one 16-byte internal blob, created ->
uploaded -> activated -> published through the public API by ``--workers`` processes
(each API call is its own transaction; without fsync, as eatmydata would, unless
``--durable-build``: the fixture need not survive a power loss). Then measures, each run
a child process under GNU time (start-up included, peak RSS) with the code under test
(``--code DIR`` first on every child's PYTHONPATH; the harness itself uses only the
public API and the CLI):

  build    build time and artifacts/s (not judged); creates/s with the change journal
           beside the same creates without it (bench/catalog.py --compare-journal; >= 0.90x).
  mirror   ``glarelite --catalog DB mirror TREE`` into a tree on tmpfs when it has the
           room and the inodes (3 an artifact), else on disk (the first mirror there runs
           with os.fsync a no-op unless ``--first-fsync``: it would time the disk):
           first mirror (RSS <= 300 MiB); no-op reruns (<= 1 s, <= 100 MiB), also with
           ``--scan 0`` when the CLI has it; reruns after one artifact's description
           changed, its blob replaced, a new version of its name published (<= 1.5 s,
           <= 150 MiB, <= 2 MiB written into the tree besides the blob: new and changed
           served files by a snapshot of the tree taken outside the timed window, plus
           the 4 KiB pages that changed in the writer's state files; /proc io wchar of the
           run beside it). Each rerun's ``--report`` says how it found its work (mode,
           scanned). References in the same run: the CLI's start-up (``--help``), raw
           sqlite3 (the journal's newest serial; a full scan of ``artifacts``) and
           ``cp -a`` of the first tree (when there is room for a copy).
  edge     the tree served by nginx on loopback with an access log: a child process
           ``open_mirror(URL)`` + ``list(type, filters=["name=X"], latest=True)`` + read
           the blob whole: requests and bytes counted from nginx's log (<= 5 requests,
           <= 512 KiB, <= 0.3 s, <= 80 MiB); beside one ``curl`` process fetching the same
           URLs. Again with a ``cache_dir``, twice: the second run.
  list     a child iterating ``iter_all(type)`` over ``open_mirror`` of the local tree
           and of nginx's URL (``--list-via``) (<= 150 MiB).

    python bench/scale.py --artifacts 100000,1000000 [--work /work/bench-data] [--code DIR]
    python bench/scale.py --artifacts 100000 --only mirror,edge
    python bench/scale.py --scale 2000          # smoke run (< 1 min)

The load average is printed first: the machine may be shared, so every figure carries
its CPU time too. Every figure is one run (the build is long; the reruns are cheap and
repeatable with ``--only``). The reruns change the cached catalog (one artifact's
description and blob, one new version per run). Trees stay in place for ``--only
edge,list``; remove them (``/dev/shm/glarelite-bench``, ``--work``/tree-N) when done.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
        # A mutable blob field: the "blob changed" rerun replaces an active artifact's bytes.
        field = glarelite.BlobField(mutable=True)
        cat.define_type(glarelite.ArtifactType(TYPE, blobs=("file",), blob_options={"file": field}))
    print(json.dumps({"serial": 0}))


def child_change(a: dict[str, Any]) -> None:
    """Change one artifact through the API: its description, its blob (the field is
    mutable), or publish a new version of its name."""
    import glarelite

    with glarelite.open(a["db"], create=False) as cat:
        page = cat.list(TYPE, filters=[f"name={a['name']}"], latest=True)
        art = page.items[0]
        if a["what"] == "description":
            cat.update(art.id, description=f"changed at {time.time()}")
            out = {"id": art.id, "blob_bytes": 0}
        elif a["what"] == "blob":
            cat.upload(art.id, "file", blob_of(0, int(time.time())))
            out = {"id": art.id, "blob_bytes": 16}
        else:
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
    write_bytes: int  # /proc/<pid>/io of the child: bytes it sent to the block layer
    wchar: int  # ... and bytes it passed to write() (tmpfs has no block layer)
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
        with (
            tempfile.NamedTemporaryFile("r", suffix=".time") as stats,
            tempfile.NamedTemporaryFile("r", suffix=".io") as io,
        ):
            wrapped = [
                    "/usr/bin/time", "-f", "%U %S %M", "-o", stats.name,
                    "sh", "-c", '"$@"; rc=$?; cat /proc/$$/io > "$0"; exit $rc', io.name, *cmd,
                ]  # fmt: skip
            started = time.perf_counter()
            out = subprocess.run(wrapped, capture_output=True, text=True, check=False, env=self.env)
            seconds = time.perf_counter() - started
            if check and out.returncode != 0:
                raise SystemExit(
                    f"{' '.join(cmd[:4])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}"
                )
            user, system, rss_kib = map(float, stats.read().strip().splitlines()[-1].split())
            io_text = io.read()
        counters = {k: int(v) for k, v in re.findall(r"^(\w+): (\d+)$", io_text, re.M)}
        return Timed(
            seconds, rss_kib / 1024, user + system, counters.get("write_bytes", -1),
            counters.get("wchar", -1), out.stdout + (f"\n{out.stderr}" if out.returncode else ""),
        )  # fmt: skip

    def child(self, mode: str, **kwargs: Any) -> Timed:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
        return self.timed([*cmd, json.dumps(kwargs)])

    def glarelite(self, *args: str, fsync: bool = True) -> Timed:
        """The CLI; ``fsync=False``: with os.fsync a no-op (what eatmydata does), for a
        first mirror of a big tree on disk, which would otherwise time the disk."""
        script = Path(sys.executable).with_name("glarelite")
        base = [str(script)] if script.exists() else [sys.executable, "-m", "glarelite.cli"]
        if not fsync:
            # -P: no current folder first on sys.path, or it would shadow --code
            base = [sys.executable, "-P", "-c", NOFSYNC_CLI]
        return self.timed([*base, *args])

    def git_head(self) -> str:
        out = subprocess.run(
            ["git", "-C", str(self.code), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()[:100] or "(not a git checkout)"


NOFSYNC_CLI = (
    "import os, sys; os.fsync = lambda fd: None; sys.argv[0] = 'glarelite'; "
    "from glarelite.cli import app; sys.exit(app())"
)


def schema_version(code: Path) -> int:
    text = (code / "glarelite" / "_db.py").read_text()
    found = re.search(r"^SCHEMA_VERSION = (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def verdict(value: float, target: float, unit: str = "") -> str:
    return f"[target <= {target:g}{unit}: {'met' if value <= target else 'MISSED'}]"


# -- build ----------------------------------------------------------------------------------
def build(run: Runner, work: Path, n: int, workers: int, durable: bool) -> tuple[Path, float]:
    """The catalog of n artifacts, reused when a complete one is in ``work``."""
    folder = work / f"catalog-{n}-schema{schema_version(run.code)}"
    db = folder / "catalog.db"
    done = folder / "complete.json"
    if done.exists():
        info = json.loads(done.read_text())
        say(
            f"build: reusing {db} ({n:,} artifacts, built in {info['seconds']:.0f} s = "
            f"{n / info['seconds']:,.0f}/s with {info['workers']} workers, "
            f"{'with' if info['durable'] else 'without'} fsync)"
        )
        return db, n / info["seconds"]
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
    return db, n / seconds


# -- tree snapshots: what a run wrote ------------------------------------------------------
Snapshot = dict[str, tuple[int, int, int]]  # path -> (size, mtime_ns, inode)


def snapshot(root: Path) -> Snapshot:
    """Every file below ``root`` (outside any timed window)."""
    files: Snapshot = {}
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    st = e.stat(follow_symlinks=False)
                    files[e.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return files


STATE = "/.glarelite-mirror/"  # the writer's own state: not served, changed in place
PAGE = 4096


def read_state(root: Path) -> dict[str, bytes]:
    """The writer's state files (outside the timed window), to count the pages a run
    changed in them: a file rewritten in place is not a file written whole."""
    folder = root / STATE.strip("/")
    if not folder.is_dir():
        return {}
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def pages_changed(old: bytes, new: bytes) -> int:
    """Bytes of the 4 KiB pages of ``new`` that differ from ``old`` (growth included)."""
    a, b = memoryview(old), memoryview(new)
    changed = sum(
        len(b[i : i + PAGE]) for i in range(0, len(b), PAGE) if b[i : i + PAGE] != a[i : i + PAGE]
    )
    return changed


@dataclass(frozen=True)
class Diff:
    new: int
    changed: int
    removed: int
    served_bytes: int  # sizes of the new and changed files outside the state folder
    state_bytes: int  # pages changed in the writer's state files (new files: whole)
    state_files: int  # the state files' sizes (what a whole rewrite would cost)
    biggest: list[tuple[int, str]]


def diff(root: Path, before: Snapshot, after: Snapshot, state: dict[str, bytes]) -> Diff:
    new = [p for p in after if p not in before]
    changed = [p for p in after if p in before and after[p] != before[p]]
    served = sorted(((after[p][0], p) for p in new + changed if STATE not in p), reverse=True)
    state_paths = [p for p in new + changed if STATE in p]
    state_bytes = 0
    for p in state_paths:
        with open(p, "rb") as f:
            state_bytes += pages_changed(state.get(p, b""), f.read())
    return Diff(
        len(new),
        len(changed),
        sum(1 for p in before if p not in after),
        sum(size for size, _ in served),
        state_bytes,
        sum(after[p][0] for p in state_paths),
        [(size, os.path.relpath(p, root)) for size, p in served[:4]],
    )


# -- phases ---------------------------------------------------------------------------------
def room(path: Path) -> int:
    """Bytes that can still be written below ``path``: on tmpfs, also bounded by the
    memory available (tmpfs pages are memory)."""
    free = shutil.disk_usage(path).free
    if str(path).startswith("/dev/shm"):
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = min(free, int(info["MemAvailable"].split()[0]) * 1024)
    return free


def tree_place(work: Path, n: int) -> Path:
    """tmpfs when /dev/shm and the memory both have room for the tree (~12 KiB an
    artifact: a page for the blob, one for its index.json, the folders, the indexes)
    with 2 GiB to spare, and inodes for it (three an artifact: its folder, index.json and
    blob; tmpfs has a fixed number); else the disk under ``work``."""
    shm = Path("/dev/shm")
    if (
        shm.is_dir()
        and room(shm) > n * 12 * 1024 + 2 * 1024 * MIB
        and os.statvfs(shm).f_favail > n * 3.2 + 200_000
    ):
        return shm / "glarelite-bench" / f"tree-{n}"
    return work / f"tree-{n}"


def mirror_phase(
    run: Runner,
    db: Path,
    tree: Path,
    n: int,
    first_fsync: bool,
    reuse: bool,
    results: dict[str, Any],
) -> None:
    fs = "tmpfs" if str(tree).startswith("/dev/shm") else "disk"
    # On tmpfs fsync costs nothing; on disk the first mirror of a big tree would time the
    # disk's fsyncs (two an artifact): without them, unless --first-fsync.
    first_fsync = first_fsync or fs == "tmpfs"
    say(f"mirror: tree {tree} ({fs}{'' if first_fsync else '; first mirror without fsync'})")
    results["tree"] = f"{tree} ({fs})"
    reuse = reuse and (tree / "index.json").exists()
    if reuse:
        say("  (--reuse-tree: the 'first mirror' below is a run over the tree already there)")
    else:
        shutil.rmtree(tree, ignore_errors=True)
    tree.parent.mkdir(parents=True, exist_ok=True)
    cli = ["--catalog", str(db), "mirror", str(tree)]

    # References: raw sqlite3, start-up included like ours.
    serial = run.timed(["sqlite3", str(db), "SELECT max(serial) FROM changes"])
    scan = run.timed(["sh", "-c", f"sqlite3 '{db}' 'SELECT * FROM artifacts' > /dev/null"])
    start = run.glarelite("--help")
    say(f"  ref glarelite --help (CLI start-up):     {start.fig()}")
    results["ref_startup"] = start.seconds
    say(f"  ref sqlite3 max(serial) of the journal:  {serial.fig()}")
    say(f"  ref sqlite3 full scan of artifacts:      {scan.fig()}")
    results["ref_serial"] = serial.seconds
    results["ref_scan"] = scan.seconds

    first = run.glarelite(*cli, fsync=first_fsync)
    files = snapshot(tree)
    size = sum(v[0] for v in files.values())
    results["first"] = {"seconds": first.seconds, "rss": first.rss_mib, "cpu": first.cpu_s}
    say(
        f"  first mirror:  {first.fig()}  {verdict(first.rss_mib, TARGETS['first_rss'], ' MiB')}"
        f"  ({len(files):,} files, {size / MIB:,.0f} MiB)  = {first.seconds / scan.seconds:.1f}x "
        "the sqlite3 full scan"
    )
    copy = tree.with_name(tree.name + ".cp")
    if not reuse and room(tree.parent) > size + len(files) * 5 * 1024 + 2 * 1024 * MIB:
        cp = run.timed(["cp", "-a", str(tree), str(copy)])
        shutil.rmtree(copy, ignore_errors=True)
        results["ref_cp"] = cp.seconds
        say(
            f"  ref cp -a of the tree: {cp.fig()}  -> first mirror = "
            f"{first.seconds / cp.seconds:.1f}x cp"
        )
    else:
        say("  ref cp -a: skipped (no room for a second tree)")

    report = tree.parent / f"report-{n}.json"

    def rerun(*extra: str) -> tuple[Timed, str]:
        """A rerun through the CLI with ``--report`` (small for a rerun; not given to the
        first mirror, whose report lists every blob): how it found its work."""
        t = run.glarelite(*cli, "--report", str(report), *extra)
        r = json.loads(report.read_text())
        how = ", ".join(
            f"{k} {len(r[k]) if isinstance(r[k], list) else r[k]}"
            for k in ("mode", "status", "scanned", "skipped", "copied", "repaired", "warnings")
            if k in r and r[k] not in ("", [])
        )
        return t, how

    noop, how = rerun()
    results["noop"] = {"seconds": noop.seconds, "rss": noop.rss_mib, "cpu": noop.cpu_s}
    say(
        f"  no-op rerun:   {noop.fig()}  {verdict(noop.seconds, TARGETS['noop_s'], ' s')} "
        f"{verdict(noop.rss_mib, TARGETS['noop_rss'], ' MiB')}  = "
        f"{noop.seconds / serial.seconds:.1f}x sqlite3 max(serial), "
        f"{noop.seconds / start.seconds:.1f}x the CLI's start-up"
    )
    say(f"      report: {how}")
    noop, how = rerun()
    results["noop2"] = {"seconds": noop.seconds, "rss": noop.rss_mib, "cpu": noop.cpu_s}
    say(f"  no-op rerun, 2nd: {noop.fig()}; report: {how}")
    has_scan = "--scan" in run.glarelite("mirror", "--help").stdout
    if has_scan:
        noop, how = rerun("--scan", "0")
        results["noop_scan0"] = {"seconds": noop.seconds, "rss": noop.rss_mib, "cpu": noop.cpu_s}
        say(f"  no-op rerun --scan 0 (no lstat of blob files): {noop.fig()}; report: {how}")
    victim = name_of(n // 3)
    before = snapshot(tree)  # the change children do not touch the tree
    variants = ["description", "blob", "version"] + (["description --scan 0"] if has_scan else [])
    for variant in variants:
        what, *extra = variant.split(" ", 1)
        change = run.child("change", db=str(db), name=victim, what=what).result()
        state = read_state(tree)
        one, how = rerun(*" ".join(extra).split())
        what = what if not extra else "description_scan0"
        after = snapshot(tree)
        d = diff(tree, before, after, state)
        before = after
        served = d.served_bytes - change["blob_bytes"]
        besides = served + d.state_bytes
        results[f"one_{what}"] = {
            "seconds": one.seconds,
            "rss": one.rss_mib,
            "cpu": one.cpu_s,
            "written_besides_blob": besides,
            "served_besides_blob": served,
            "state_pages_bytes": d.state_bytes,
            "state_files_bytes": d.state_files,
            "files_new": d.new,
            "files_changed": d.changed,
            "files_removed": d.removed,
            "proc_write_bytes": one.write_bytes,
            "proc_wchar": one.wchar,
        }
        label = {
            "description": "description",
            "blob": "blob replaced",
            "version": "new version",
            "description_scan0": "description, --scan 0",
        }
        say(
            f"  one artifact's {label[what]:21}: {one.fig()}  "
            f"{verdict(one.seconds, TARGETS['one_s'], ' s')} "
            f"{verdict(one.rss_mib, TARGETS['one_rss'], ' MiB')}"
        )
        say(
            f"      written into the tree besides the blob: {besides / 1024:,.1f} KiB "
            f"{verdict(besides / MIB, TARGETS['one_written_mib'], ' MiB')} = served files "
            f"{served / 1024:,.1f} KiB + state pages changed {d.state_bytes / 1024:,.1f} KiB "
            f"(state files {d.state_files / 1024:,.0f} KiB); files new {d.new}, changed "
            f"{d.changed}, removed {d.removed}"
        )
        say(
            f"      /proc io of the run: wchar {one.wchar / 1024:,.0f} KiB "
            f"{verdict(one.wchar / MIB, TARGETS['one_written_mib'], ' MiB')} (every write() "
            f"anywhere, stdout included), write_bytes {one.write_bytes / 1024:,.0f} KiB "
            f"(block layer: tmpfs has none; this is on disk, outside the tree)"
        )
        say("      biggest: " + ", ".join(f"{p} {s / 1024:,.1f} KiB" for s, p in d.biggest))
        say(f"      report: {how}")
    noop, how = rerun()
    results["noop_after"] = {"seconds": noop.seconds, "rss": noop.rss_mib, "cpu": noop.cpu_s}
    say(f"  no-op rerun after the changes: {noop.fig()}; report: {how}")


# -- nginx with an access log ---------------------------------------------------------------
LOG_FORMAT = "log_format bench '$status $body_bytes_sent $bytes_sent \"$request\"';"


class Nginx:
    def __init__(self, root: Path) -> None:
        sys.path.insert(0, str(REPO))
        from tests.fixtures import static

        self.work = Path(tempfile.mkdtemp(prefix="glarelite-bench-nginx-"))
        self.log = self.work / "access.log"
        conf = static.NGINX_CONF.replace(
            "    access_log off;\n",
            f"    {LOG_FORMAT}\n    access_log {self.log} bench;\n",
        )
        if conf == static.NGINX_CONF:
            raise SystemExit("tests/fixtures/static.py's nginx config changed: update bench")
        port = static._free_port()
        path = self.work / "nginx.conf"
        path.write_text(
            conf.format(work=self.work, port=port, root=root.resolve(), autoindex="off")
        )
        proc = subprocess.Popen(
            [static.NGINX, "-c", str(path), "-p", str(self.work), "-e", str(self.work / "err")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.server = static.StaticServer(proc, port, self.work / "err", self.work)
        if not self.server.wait_ready():
            self.server.stop()
            raise SystemExit("nginx did not start")
        self.url = self.server.url

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def since(self, mark: int) -> list[tuple[int, int, int, str]]:
        """(status, body bytes, bytes sent, path) of each request logged after ``mark``."""
        with self.log.open() as f:
            f.seek(mark)
            lines = f.read().splitlines()
        out = []
        for line in lines:
            status, body, sent, request = line.split(" ", 3)
            out.append((int(status), int(body), int(sent), request.strip('"').split(" ")[1]))
        return out

    def stop(self) -> None:
        self.server.stop()


def edge_phase(run: Runner, tree: Path, n: int, nginx: Nginx, results: dict[str, Any]) -> None:
    name = name_of(n // 2 + 1)
    say(f"edge: open_mirror({nginx.url}) + list(name={name}, latest) + read the blob")

    def once(label: str, key: str, **extra: Any) -> list[tuple[int, int, int, str]]:
        mark = nginx.mark()
        t = run.child("edge", url=nginx.url, name=name, **extra)
        time.sleep(0.05)  # nginx writes its log line as the response ends
        got = nginx.since(mark)
        inner = t.result()
        sent = sum(r[2] for r in got)
        body = sum(r[1] for r in got)
        results[key] = {
            "seconds": t.seconds,
            "in_process_s": inner["seconds"],
            "rss": t.rss_mib,
            "requests": len(got),
            "bytes_sent": sent,
            "body_bytes": body,
        }
        say(
            f"  {label}: {t.fig()} (in-process {inner['seconds']:.3f} s) "
            f"{verdict(t.seconds, TARGETS['edge_s'], ' s')} "
            f"{verdict(t.rss_mib, TARGETS['edge_rss'], ' MiB')}; "
            f"{len(got)} requests {verdict(len(got), TARGETS['edge_requests'])}, "
            f"{sent / 1024:,.1f} KiB sent ({body / 1024:,.1f} KiB bodies) "
            f"{verdict(sent / 1024, TARGETS['edge_kib'], ' KiB')}"
        )
        for status, b, _, path in got:
            say(f"      {status} {b:>9,} {path}")
        return got

    got = once("no cache       ", "edge")
    urls = [nginx.url + path for status, _, _, path in got if status == 200]
    if urls:
        cmd = ["curl", "-s", "--fail"]
        for u in urls:
            cmd += ["-o", "/dev/null", u]
        curl = run.timed(cmd)
        results["edge_curl"] = curl.seconds
        say(
            f"  ref one curl of the same {len(urls)} URLs: {curl.fig()}  -> "
            f"open_mirror = {results['edge']['seconds'] / curl.seconds:.1f}x curl"
        )
    with tempfile.TemporaryDirectory(prefix="glarelite-bench-cache-") as cache:
        try:
            once("cache, 1st run ", "edge_cache1", cache_dir=cache)
            once("cache, 2nd run ", "edge_cache2", cache_dir=cache)
        except SystemExit as e:
            if "cache_dir" not in str(e):
                raise
            say("  cache_dir: not supported by the code under test (open_mirror has no cache_dir)")


def list_phase(
    run: Runner, tree: Path, nginx: Nginx | None, via: set[str], results: dict[str, Any]
) -> None:
    for label, where in (("local tree", str(tree)), ("nginx", nginx.url if nginx else None)):
        if where is None or label.split()[0] not in via:
            continue
        t = run.child("list", url=where)
        r = t.result()
        results[f"list_{label.split()[0]}"] = {"seconds": t.seconds, "rss": t.rss_mib}
        say(
            f"list: iter_all({TYPE}) over open_mirror({label}): {r['count']:,} artifacts in "
            f"{t.fig()}  {verdict(t.rss_mib, TARGETS['list_rss'], ' MiB')}"
        )


def journal_phase(run: Runner, creates: int, rounds: int) -> None:
    """bench/catalog.py's comparison, with the code under test."""
    t = run.timed(
        [
            *(sys.executable, str(run.code / "bench" / "catalog.py"), "--compare-journal"),
            *("--creates", str(creates), "--rounds", str(rounds)),
        ]
    )
    for line in t.stdout.rstrip().splitlines():
        say(f"  {line}")


SUMMARY: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("build, artifacts/s", lambda r: f"{r['build_rate']:,.0f}"),
    ("first mirror", lambda r: f"{r['first']['seconds']:.1f} s {r['first']['rss']:.0f} MiB"),
    ("no-op rerun", lambda r: f"{r['noop']['seconds']:.2f} s {r['noop']['rss']:.0f} MiB"),
    *(
        (
            f"one change: {what[4:]}",
            lambda r, w=what: (
                f"{r[w]['seconds']:.2f} s {r[w]['rss']:.0f} MiB "
                f"{r[w]['written_besides_blob'] / 1024:,.0f} KiB"
            ),
        )
        for what in ("one_description", "one_blob", "one_version", "one_description_scan0")
    ),
    *(
        (
            f"edge{label}",
            lambda r, k=key: (
                f"{r[k]['seconds']:.2f} s {r[k]['rss']:.0f} MiB "
                f"{r[k]['requests']} req {r[k]['bytes_sent'] / 1024:,.0f} KiB"
            ),
        )
        for label, key in (("", "edge"), (", cache 2nd run", "edge_cache2"))
    ),
    (
        "list, local tree",
        lambda r: f"{r['list_local']['seconds']:.1f} s {r['list_local']['rss']:.0f} MiB",
    ),
    (
        "list, nginx",
        lambda r: f"{r['list_nginx']['seconds']:.1f} s {r['list_nginx']['rss']:.0f} MiB",
    ),
]


def summary(all_results: dict[int, dict[str, Any]]) -> None:
    """The figures of every size side by side, so the growth is visible."""
    sizes = sorted(all_results)
    say("\nsummary " + " | ".join(f"{n:>30,}" for n in sizes))
    for label, cell in SUMMARY:
        cells = []
        for n in sizes:
            try:
                cells.append(f"{cell(all_results[n]):>30}")
            except KeyError:
                cells.append(f"{'-':>30}")
        say(f"  {label:28} " + " | ".join(cells))


def run_size(run: Runner, args: argparse.Namespace, n: int, only: set[str]) -> dict[str, Any]:
    say(f"\n=== {n:,} artifacts ===")
    results: dict[str, Any] = {"n": n, "loadavg_start": os.getloadavg()}
    db, results["build_rate"] = build(run, args.work, n, args.workers, args.durable_build)
    tree = args.tree_root / f"tree-{n}" if args.tree_root else tree_place(args.work, n)
    if "mirror" in only:
        mirror_phase(run, db, tree, n, args.first_fsync, args.reuse_tree, results)
    elif not (tree / "index.json").exists() and only & {"edge", "list"}:
        raise SystemExit(f"no tree at {tree}: run --only mirror first")
    nginx = Nginx(tree) if only & {"edge", "list"} else None
    try:
        if "edge" in only and nginx:
            edge_phase(run, tree, n, nginx, results)
        if "list" in only:
            list_phase(run, tree, nginx, set(args.list_via.split(",")), results)
    finally:
        if nginx:
            nginx.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--artifacts", default="1000000", help="catalog size(s), comma-separated: 100000,1000000"
    )
    parser.add_argument("--scale", type=int, help="smoke run: this many artifacts")
    parser.add_argument("--work", type=Path, default=Path("/work/bench-data"))
    parser.add_argument("--code", type=Path, default=REPO, help="code under test (a checkout)")
    parser.add_argument("--only", default=",".join(PHASES), help=f"of {','.join(PHASES)}")
    parser.add_argument("--workers", type=int, default=2, help="build processes")
    parser.add_argument("--durable-build", action="store_true", help="build with fsync")
    parser.add_argument(
        "--journal-creates", type=int, default=20_000, help="0: skip the journal comparison"
    )
    parser.add_argument("--journal-rounds", type=int, default=5)
    parser.add_argument(
        "--list-via", default="local,nginx", help="where the list phase reads: local,nginx"
    )
    parser.add_argument(
        "--tree-root", type=Path, help="where the trees go (default: tmpfs if room, else --work)"
    )
    parser.add_argument(
        "--reuse-tree", action="store_true", help="keep a tree already there (no cp -a)"
    )
    parser.add_argument(
        "--first-fsync", action="store_true", help="fsync in the first mirror on disk too"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        CHILDREN[args.child](json.loads(args.args))
        return
    sizes = [args.scale] if args.scale else [int(x) for x in args.artifacts.split(",")]
    only = set(args.only.split(","))
    if only - set(PHASES):
        raise SystemExit(f"--only: unknown phase(s) {sorted(only - set(PHASES))}")
    run = Runner(args.code.resolve())
    say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"code under test: {run.code} ({run.git_head()})")
    args.work.mkdir(parents=True, exist_ok=True)
    if "build" in only and args.journal_creates:
        say("creates/s with the journal vs without (bench/catalog.py --compare-journal):")
        journal_phase(run, args.journal_creates, args.journal_rounds)
    all_results = {n: run_size(run, args, n, only) for n in sizes}
    summary(all_results)
    say(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"code": run.git_head(), "sizes": all_results}, indent=1))


if __name__ == "__main__":
    main()
