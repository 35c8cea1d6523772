"""Faults with real processes: a sync SIGKILLed in the middle of a large download, two
syncs of the same tree at once, and the stale lock a killed run leaves behind.

The upstream body is gated: registration reads it whole, then the gate closes and the
origin stops sending after a threshold, so the mirror subprocess is reliably caught in
the middle of the download (no sleeps, no timing assumptions).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import glarelite
import mirror
from glarelite import tree
from tests.fixtures.origin import Origin, PatternBody
from tests.test_mirror_support import FAST, QUICK, define_types, open_catalog, temporaries

REPO = Path(__file__).resolve().parent.parent
WAIT = 120.0  # generous bound for a subprocess to reach the gate on a loaded machine

SYNC = """
import sys
import glarelite, mirror
catalog = glarelite.open(sys.argv[1])
report = mirror.sync(catalog, sys.argv[2], workers=2, segment_size=int(sys.argv[3]), backoff=0.01)
print(report.status)
"""


class GatedBody(PatternBody):
    """A generated body that, while ``gate`` is clear, stops before byte ``threshold``
    and sets ``blocked``."""

    def __init__(self, size: int, threshold: int) -> None:
        super().__init__(size, seed=7)
        self.threshold = threshold
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        pos = start
        for piece in super().chunks(start, end):
            if pos + len(piece) > self.threshold and not self.gate.is_set():
                self.blocked.set()
                self.gate.wait()
            yield piece
            pos += len(piece)


def start_sync(catalog: Path, dest: Path, segment_size: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", SYNC, str(catalog), str(dest), str(segment_size)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def gated_world(tmp_path: Path, origin: Origin, size: int, threshold: int):  # type: ignore[no-untyped-def]
    cat = open_catalog(tmp_path)
    define_types(cat)
    body = GatedBody(size, threshold)
    origin.add("/big.img", data=body, ranges=True, etag=True)
    big = cat.create("images", "big", version="1.0", properties={"os": "linux"})
    cat.add_location(big.id, "file", origin.url("/big.img"))
    cat.upload(big.id, "regions/eu", b"small internal blob")
    cat.activate(big.id)
    cat.publish(big.id)
    return cat, body, big


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.slow
def test_killed_mid_download_resumes_and_never_exposes_a_partial_file(
    tmp_path: Path, origin: Origin
) -> None:
    cat, body, big = gated_world(tmp_path, origin, size=48 << 20, threshold=8 << 20)
    dest = tmp_path / "tree"
    final = dest / tree.blob_path("images", big.id, "file")
    seen_at_final: list[int] = []
    watching = threading.Event()

    def watch() -> None:  # a partial file at the final path would show here
        while not watching.wait(0.002):
            with contextlib.suppress(FileNotFoundError):
                seen_at_final.append(final.stat().st_size)

    body.gate.clear()
    proc = start_sync(tmp_path / "catalog.db", dest, segment_size=8 << 20)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert body.blocked.wait(WAIT), "the mirror never reached the gate"
        assert not final.exists()
        # The bytes so far sit in a temporary beside the final path.
        assert any(
            t.startswith(final.parent.relative_to(dest).as_posix()) for t in temporaries(dest)
        )
        kill(proc)
    finally:
        body.gate.set()
        watching.set()
        watcher.join()
        kill(proc)
    assert seen_at_final == []
    holder = json.loads((dest / ".glarelite-mirror/lock").read_text())
    assert holder["pid"] == proc.pid  # the dead run's lock is still there...

    left = set(temporaries(dest))
    record = partial_record(dest)  # the big one's, if its progress was recorded in time
    report = mirror.sync(cat, str(dest), segment_size=8 << 20, **QUICK)  # ...and taken over
    assert report.exit_code == 0, report.failed
    removed = left - ({record["temp"]} if record else set())
    if removed:  # every temporary the killed run left is either removed or resumed
        assert f"removed {len(removed)} temporaries" in " ".join(report.warnings)
    assert temporaries(dest) == [] and partial_record(dest) is None
    h = hashlib.sha256()
    with open(final, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == body.sha256() and final.stat().st_size == 48 << 20
    assert mirror.check_tree(str(dest)).ok
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do
    cat.close()


def test_a_second_sync_gets_locked_error_and_a_killed_holder_does_not_block(
    tmp_path: Path, origin: Origin
) -> None:
    cat, body, big = gated_world(tmp_path, origin, size=4 << 20, threshold=1 << 20)
    dest = tmp_path / "tree"
    body.gate.clear()
    proc = start_sync(tmp_path / "catalog.db", dest, segment_size=64 << 20)
    try:
        assert body.blocked.wait(WAIT), "the first sync never reached the gate"
        with pytest.raises(glarelite.LockedError, match=f"already running \\(pid {proc.pid} on"):
            mirror.sync(cat, str(dest), **QUICK)
        # A dry run takes no lock: it may look while a sync runs.
        assert mirror.sync(cat, str(dest), dry_run=True, **QUICK).exit_code == 0
        kill(proc)
    finally:
        body.gate.set()
        kill(proc)
    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.exit_code == 0 and temporaries(dest) == []
    assert (dest / tree.blob_path("images", big.id, "file")).stat().st_size == 4 << 20
    cat.close()


def test_a_finished_sync_releases_the_lock(tmp_path: Path, origin: Origin) -> None:
    cat, _, _ = gated_world(tmp_path, origin, size=1 << 20, threshold=1 << 30)
    dest = tmp_path / "tree"
    proc = start_sync(tmp_path / "catalog.db", dest, segment_size=64 << 20)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "ok"
    assert (dest / ".glarelite-mirror/lock").read_bytes() == b""  # released cleanly
    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.nothing_to_do and report.warnings == []
    cat.close()


def partial_record(dest: Path) -> dict | None:
    found = list((dest / ".glarelite-mirror/partial").glob("*.json"))
    return json.loads(found[0].read_text()) if found else None


def range_starts(origin: Origin, since: int) -> list[int]:
    """Where the GETs of /big.img after request ``since`` started (0: no Range)."""
    starts = []
    for r in origin.requests[since:]:
        if r.method == "GET" and r.path == "/big.img":
            rng = r.headers.get("range") or "bytes=0-"
            starts.append(int(rng.removeprefix("bytes=").split("-")[0]))
    return starts


@pytest.mark.slow
def test_a_killed_download_is_resumed_by_the_next_run_not_started_over(
    tmp_path: Path, origin: Origin
) -> None:
    """MIRROR-NOTES 7: the killed run recorded which bytes its temporary holds; the next
    run adopts that temporary and asks only for the rest (Range), then verifies it all."""
    size, seg = 48 << 20, 8 << 20  # 4 segments of 12 MiB; only the first passes the gate
    cat, body, big = gated_world(tmp_path, origin, size=size, threshold=8 << 20)
    dest = tmp_path / "tree"
    final = dest / tree.blob_path("images", big.id, "file")
    body.gate.clear()
    proc = start_sync(tmp_path / "catalog.db", dest, segment_size=seg)
    try:
        assert body.blocked.wait(WAIT), "the mirror never reached the gate"
        # The hashing thread records progress every segment_size / 2 (4 MiB) of bytes.
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            record = partial_record(dest)
            if record and record["segments"][0][2] >= 4 << 20:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"no partial record of 4 MiB: {partial_record(dest)}")
        kill(proc)
    finally:
        body.gate.set()
        kill(proc)
    record = partial_record(dest)
    assert record is not None and record["sha256"] == body.sha256() and record["size"] == size
    kept = record["segments"][0][2]
    assert (dest / record["temp"]).stat().st_size == size  # preallocated, holes and all

    since = len(origin.requests)
    report = mirror.sync(cat, str(dest), segment_size=seg, **QUICK)
    assert report.exit_code == 0, report.failed
    starts = range_starts(origin, since)
    assert starts and 0 not in starts  # nothing was fetched from byte 0 again
    assert min(starts) == kept  # segment 0 went on where the record said
    big_path = final.relative_to(dest).as_posix()
    others = sum(c["size"] for c in report.copied if c["path"] != big_path)
    assert report.bytes_fetched == size - kept + others  # the report counts what came only
    assert temporaries(dest) == [] and partial_record(dest) is None
    h = hashlib.sha256()
    with open(final, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == body.sha256()
    assert mirror.check_tree(str(dest)).ok
    cat.close()


def test_kept_bytes_that_do_not_make_the_blob_are_fetched_again_from_zero(
    tmp_path: Path, origin: Origin
) -> None:
    """A record is never trusted: corrupt the kept temporary, and the resumed copy fails
    its sha256, is dropped and fetched whole; the run still succeeds."""
    size, seg = 8 << 20, 1 << 20
    cat, body, big = gated_world(tmp_path, origin, size=size, threshold=1 << 40)
    dest = tmp_path / "tree"
    dest.mkdir()
    # A run that gave up halfway, as recorded (a partial of half the bytes, then garbage).
    folder = dest / tree.blob_path("images", big.id, "file").rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    temp = folder / tree.temporary_name("file", "somehost", 1, "0123456789abcdef")
    data = b"".join(body.chunks())
    temp.write_bytes(data[: size // 4] + b"X" * (size - size // 4))  # 2 "kept" segments
    partials = dest / ".glarelite-mirror/partial"
    partials.mkdir(parents=True)
    step = size // 4
    segments = [[i * step, (i + 1) * step, step if i < 2 else 0] for i in range(4)]
    relative = temp.relative_to(dest).as_posix()
    record = {"temp": relative, "size": size, "sha256": body.sha256(), "segments": segments}
    (partials / f"{body.sha256()}.json").write_text(json.dumps(record))

    since = len(origin.requests)
    report = mirror.sync(cat, str(dest), segment_size=seg, max_segments=4, **QUICK)
    assert report.exit_code == 0, report.failed
    starts = range_starts(origin, since)
    assert 2 * step in starts and 0 in starts  # resumed first, then fetched from zero
    final = dest / tree.blob_path("images", big.id, "file")
    assert hashlib.sha256(final.read_bytes()).hexdigest() == body.sha256()
    assert temporaries(dest) == [] and partial_record(dest) is None
    cat.close()


def test_a_download_cut_off_for_good_keeps_its_bytes_for_the_next_run(
    tmp_path: Path, origin: Origin
) -> None:
    """The upstream stalls every answer past 3 MiB: the run fails that blob but keeps the
    bytes it got (and says so); once the upstream answers again, the next run asks only
    for what is missing."""
    size, seg = 8 << 20, 1 << 20
    cat, body, big = gated_world(tmp_path, origin, size=size, threshold=3 << 20)
    dest = tmp_path / "tree"
    body.gate.clear()  # past 3 MiB nothing more comes: every attempt times out there
    impatient = glarelite.open(
        tmp_path / "catalog.db",
        settings=glarelite.CatalogSettings(http=replace(FAST, read_timeout=0.3)),
    )
    report = mirror.sync(impatient, str(dest), segment_size=seg, max_segments=2, **QUICK)
    impatient.close()
    body.gate.set()
    assert report.exit_code != 0
    assert [f["path"] for f in report.failed] == [tree.blob_path("images", big.id, "file")]
    assert any("partial downloads" in w for w in report.warnings)
    record = partial_record(dest)
    assert record is not None and sum(f for _, _, f in record["segments"]) > 0

    since = len(origin.requests)
    report = mirror.sync(cat, str(dest), segment_size=seg, max_segments=2, **QUICK)
    assert report.exit_code == 0, report.failed
    starts = range_starts(origin, since)
    kept = record["segments"][0][2]
    assert 0 < kept <= 3 << 20 and record["segments"][1][2] == 0
    assert sorted(starts) == [kept, 4 << 20]  # segment 0 from its mark, 1 from its start
    assert temporaries(dest) == [] and partial_record(dest) is None
    final = dest / tree.blob_path("images", big.id, "file")
    assert hashlib.sha256(final.read_bytes()).hexdigest() == body.sha256()
    cat.close()
