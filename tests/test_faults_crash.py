"""Proof under crashes: a process SIGKILLed anywhere in upload, add_location or delete
leaves a catalog that opens, whose records are promises about bytes, and that ``gc``
plus a rerun of the same operation bring to the state of an uninterrupted run.

Every run forks a real process from ``tests/faults/forkserver.py`` and kills it either
at one of its *kill points* — every durable step of the operation: before and after each
COMMIT, each move/drop/delete of a stored object, a rename before its directory fsync,
a few source chunks; each point is killed in its own run — or after a seeded random
delay within the operation's measured duration. After each kill the test checks:

1. the catalog opens; every active internal blob reads to the end through ``open_blob``
   (which verifies size and sha256); every external record is the one its URL gives;
2. no object at a content-addressed path holds partial bytes: every stored object is
   re-hashed and compared with its name, and nothing but objects and temporaries exists
   under the storage root;
3. after ``gc`` (the killed pid is dead, so its ``saving`` rows are abandoned at once)
   nothing is saving, no temporary is left, no object is unreferenced, and every slot
   holds either what it held before the operation or what it holds after it;
4. a rerun of the operation reaches exactly the state of an uninterrupted run (same
   artifacts, blobs, sizes and sha256s; the same stored objects), and a second ``gc``
   finds nothing to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import glarelite
from glarelite import _blobops
from tests.faults import scenarios
from tests.fixtures.origin import Origin, PatternBody

REPO = Path(__file__).resolve().parents[1]
SEED = 20240607  # the random kill delays; change it to explore other points
LINE_TIMEOUT = 120.0  # a safety net against a hung child, not a timing assertion
BIG_EXTERNAL = 16 << 20  # the external body a child is killed while downloading
SMALL_EXTERNAL = b"a small external body\n" * 500


# -- the fork server ---------------------------------------------------------------------
@dataclass
class Outcome:
    code: int  # exit code, or minus the signal number
    labels: list[str] = field(default_factory=list)  # kill points passed (completed runs)
    seconds: float = 0.0  # from "ready" to "done" as seen here (completed runs)

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


class ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.forkserver"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # its own process group: the server and its children
        )
        self._buffer = b""

    def stop(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()  # the server exits once its last child is reaped
        try:
            self.proc.wait(timeout=LINE_TIMEOUT)
        except subprocess.TimeoutExpired:  # a child hung after a failure: end the group
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stdout.close()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def _line(self) -> tuple[str, int, str]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], LINE_TIMEOUT)
            if not ready:
                raise AssertionError("the fork server said nothing for too long")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the fork server exited ({self.proc.wait()})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        word, pid, rest = [*line.decode().split(" ", 2), "", ""][:3]
        return word, int(pid), rest

    def run(self, request: dict[str, Any], *, delay: float | None = None) -> Outcome:
        """Fork a child for ``request``; SIGKILL it ``delay`` seconds after it is ready."""
        self._send(json.dumps(request))
        word = ""
        while word not in ("ready", "error"):  # the child may speak before the server
            word, pid, rest = self._line()
        if word == "error":
            self._send("reap")
            while self._line()[0] != "exit":
                pass
            raise AssertionError(f"the child failed before its operation: {rest}")
        start = time.monotonic()
        if delay is not None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still this child's
        self._send("reap")
        outcome, error = Outcome(code=0), None
        while True:
            word, _, rest = self._line()
            if word == "done":
                outcome.labels = json.loads(rest)
                outcome.seconds = time.monotonic() - start
            elif word == "error":
                error = rest
            elif word == "exit":
                outcome.code = int(rest)
                break
            # "forked" may come after "ready": nothing to do with it
        if error is not None:
            raise AssertionError(f"the operation failed in the child: {error}")
        return outcome


@pytest.fixture(scope="module")
def forkserver() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.stop()


@pytest.fixture
def urls(origin: Origin) -> dict[str, Any]:
    origin.add("/big.bin", data=PatternBody(BIG_EXTERNAL, seed=7))
    origin.add("/small.bin", data=SMALL_EXTERNAL)
    return {"big_url": origin.url("/big.bin"), "small_url": origin.url("/small.bin")}


# -- checks ------------------------------------------------------------------------------
def stored(store: Any) -> tuple[set[str], list[str]]:
    """(digests of the objects, temporaries) under the storage root, after re-hashing every
    object against its name and refusing any other file."""
    fs = store.fs
    fs.invalidate_cache()
    objects: set[str] = set()
    temporaries: list[str] = []
    try:
        paths = sorted(fs.find(store.root))
    except FileNotFoundError:
        paths = []
    for path in paths:
        rel = path[len(store.root) + 1 :].split("/")
        if rel[0] == "tmp" and len(rel) == 2:
            temporaries.append(rel[1])
            continue
        assert rel[:2] == ["blobs", "sha256"] and len(rel) == 4, f"stray file {path}"
        h = hashlib.sha256()
        with fs.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == rel[2] + rel[3], f"partial or wrong bytes at {path}"
        objects.add(h.hexdigest())
    return objects, temporaries


def check_records(cat: glarelite.Catalog, externals: dict[str, tuple[int, str]]) -> None:
    """Every active internal blob reads to the end, verified; every external record is
    what its URL serves."""
    for art in cat.iter_all(scenarios.TYPE):
        for blob in art.iter_blobs():
            if blob.status != "active":
                continue
            if blob.external:
                assert (blob.size, blob.sha256) == externals[blob.external_url or ""]
                continue
            h, n = hashlib.sha256(), 0
            with cat.open_blob(art.id, blob.slot) as f:  # raises ChecksumMismatch
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
            assert (n, h.hexdigest()) == (blob.size, blob.sha256)


def referenced(state: dict[tuple[str, str], tuple[Any, ...]]) -> set[str]:
    return {v[3] for v in state.values() if v[0] == "active" and not v[1]}


@dataclass
class Scenario:
    name: str
    tmp: Path
    ctx: dict[str, Any]
    storage: Any = None  # run name -> (s3 URL, options); None: a local folder
    externals: dict[str, tuple[int, str]] = field(default_factory=dict)
    before: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    after: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    after_objects: set[str] = field(default_factory=set)

    @property
    def local(self) -> bool:
        return self.storage is None

    def prepare(self, run: str) -> tuple[Path, dict[str, Any]]:
        """A catalog in the state the operation starts from. On a local folder every run
        reuses one path (the catalog remembers its storage URL), restored from a copy made
        after the first setup: a setup costs dozens of fsyncs, a copy none."""
        setup, _ = scenarios.SCENARIOS[self.name]
        if not self.local:
            url, options = self.storage(run)
            path = self.tmp / run / "c.db"
            path.parent.mkdir()
            with glarelite.open(
                path, storage=url, storage_options=options, allow_hosts=["127.0.0.1"]
            ) as cat:
                setup(cat, self.ctx)
            return path, options
        work, template = self.tmp / "work", self.tmp / "template"
        if not template.exists():
            work.mkdir()
            with glarelite.open(
                work / "c.db", storage=str(work / "blobs"), allow_hosts=["127.0.0.1"]
            ) as cat:
                setup(cat, self.ctx)
            shutil.copytree(work, template)
        else:
            shutil.rmtree(work)
            shutil.copytree(template, work)
        return work / "c.db", {}

    def request(self, path: Path, options: dict[str, Any], kill_at: int | None) -> Any:
        return {
            "scenario": self.name,
            "path": str(path),
            "options": options,
            "ctx": self.ctx,
            "kill_at": kill_at,
        }

    def reference(self, server: ForkServer) -> Outcome:
        path, options = self.prepare("reference")
        with glarelite.open(path, storage_options=options) as cat:
            self.before = scenarios.slots(cat)
        outcome = server.run(self.request(path, options, None))
        assert outcome.code == 0
        with glarelite.open(path, storage_options=options) as cat:
            self.after = scenarios.slots(cat)
            check_records(cat, self.externals)
            objects, temporaries = stored(cat._core.store)
        assert temporaries == [] and objects == referenced(self.after)
        assert self.after != self.before
        self.after_objects = objects
        return outcome

    def check(self, path: Path, options: dict[str, Any], what: str) -> None:
        _, op = scenarios.SCENARIOS[self.name]
        with glarelite.open(path, storage_options=options) as cat:  # 1. it opens
            store = cat._core.store
            stored(store)  # 2. no partial object at a final path
            check_records(cat, self.externals)  # 1. records keep their promise
            saving = sum(v[0] == "saving" for v in scenarios.slots(cat).values())
            report = cat.gc()  # 3. the killed pid is dead: its uploads are abandoned now,
            assert report.uploads_abandoned == saving, what  # not hours later (stale_after)
            state = scenarios.slots(cat)
            objects, temporaries = stored(store)
            assert all(v[0] != "saving" for v in state.values()), what
            assert temporaries == [], what
            assert objects == referenced(state), f"{what}: unreferenced or missing objects"
            for key in set(state) | set(self.before) | set(self.after):
                assert state.get(key) in (self.before.get(key), self.after.get(key)), (
                    f"{what}: {key} is {state.get(key)}, neither before nor after"
                )
            check_records(cat, self.externals)
            op(cat, self.ctx)  # 4. the rerun converges
            assert scenarios.slots(cat) == self.after, what
            assert stored(store) == (self.after_objects, []), what
            report = cat.gc()
            assert report.to_dict() == glarelite.GcReport().to_dict(), what


def crash_runs(
    server: ForkServer,
    scenario: Scenario,
    *,
    random_runs: int,
    only: Callable[[str], bool] | None = None,
) -> tuple[int, int]:
    """Kill the operation at each of its kill points (those whose label passes ``only``)
    and after ``random_runs`` seeded random delays; returns (kill-point runs, random runs
    that were killed)."""
    reference = scenario.reference(server)
    points = [k for k, label in enumerate(reference.labels, 1) if only is None or only(label)]
    for k in points:
        path, options = scenario.prepare(f"step-{k}")
        outcome = server.run(scenario.request(path, options, k))
        what = f"{scenario.name}: killed at point {k} ({reference.labels[k - 1]})"
        assert outcome.killed, what
        scenario.check(path, options, what)
    rng = random.Random(f"{scenario.name}-{SEED}")
    killed = 0
    for i in range(random_runs):
        delay = rng.uniform(0.0, reference.seconds)
        path, options = scenario.prepare(f"random-{i}")
        outcome = server.run(scenario.request(path, options, None), delay=delay)
        killed += outcome.killed
        scenario.check(path, options, f"{scenario.name}: killed after {delay * 1000:.1f} ms")
    return len(points), killed


def externals_of(urls: dict[str, Any]) -> dict[str, tuple[int, str]]:
    big = PatternBody(BIG_EXTERNAL, seed=7)
    return {
        urls["big_url"]: (BIG_EXTERNAL, big.sha256()),
        urls["small_url"]: (len(SMALL_EXTERNAL), hashlib.sha256(SMALL_EXTERNAL).hexdigest()),
    }


# -- the tests ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["upload", "add_location", "delete"])
def test_sigkill_anywhere_then_gc_and_rerun_converge(
    name: str, forkserver: ForkServer, urls: dict[str, Any], tmp_path: Path
) -> None:
    scenario = Scenario(name, tmp_path, urls, externals=externals_of(urls))
    steps, killed = crash_runs(forkserver, scenario, random_runs=10)
    assert steps >= 10
    print(f"{name}: {steps} kill points, {killed} random kills")


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
def test_sigkill_during_upload_to_s3_then_gc_and_rerun_converge(
    forkserver: ForkServer, urls: dict[str, Any], tmp_path: Path, seaweedfs: Any
) -> None:
    prefix = f"crash-{uuid.uuid4().hex}"

    def storage(run: str) -> tuple[str, dict[str, Any]]:
        return seaweedfs.url(f"{prefix}/{run}"), seaweedfs.storage_options

    scenario = Scenario("upload", tmp_path, urls, storage, externals_of(urls))
    try:
        # the steps that differ on an object store: moves (server-side copies) and direct
        # writes to the content address; the random delays land in the streamed source
        steps, killed = crash_runs(
            forkserver,
            scenario,
            random_runs=2,
            only=lambda label: label.startswith("before store."),
        )
        print(f"upload on s3: {steps} kill points, {killed} random kills")
    finally:
        fs = seaweedfs.other_fs
        fs.invalidate_cache()
        with contextlib.suppress(FileNotFoundError):
            fs.rm(f"{seaweedfs.bucket}/{prefix}", recursive=True)


# -- an interleaving found while placing the kill points ---------------------------------
def test_gc_between_commit_and_activate_keeps_bytes_replacing_an_external_blob(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Internal bytes uploaded into a slot that held an external blob are referenced from
    the moment their digest is recorded: a gc (here: another catalog object, as another
    process would run it) that runs before the upload activates must not delete them."""
    origin.add("/ext.bin", data=SMALL_EXTERNAL)
    path, payload = tmp_path / "c.db", b"internal bytes that replace an external blob"
    with glarelite.open(path, storage=str(tmp_path / "blobs"), allow_hosts=["127.0.0.1"]) as cat:
        cat.define_type("images", blobs=["file"])
        a = cat.create("images", "a")
        cat.add_location(a.id, "file", origin.url("/ext.bin"))
        activate = _blobops._activate

        def gc_first(*args: Any, **kwargs: Any) -> Any:
            with glarelite.open(path) as other:
                other.gc()
            return activate(*args, **kwargs)

        monkeypatch.setattr(_blobops, "_activate", gc_first)
        blob = cat.upload(a.id, "file", [payload])
        assert (blob.external, blob.sha256) == (False, hashlib.sha256(payload).hexdigest())
        with cat.open_blob(a.id, "file") as f:
            assert f.read() == payload
