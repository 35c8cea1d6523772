"""Concurrency around one tree and one catalog, with real processes and threads:

- three syncs of the same tree started at once: one works, the others get
  ``LockedError`` at once (they never wait and never write), and the tree verifies;
- a writer process creating, uploading, activating and publishing while syncs run over
  the same catalog: both succeed, no "database is locked", the tree verifies;
- a reader thread reading the tree through ``open_mirror`` while syncs publish new
  generations: every index it loads names only blobs that are complete and verify.

No sleeps decide an outcome: the first test holds the lock holder at a gate in the
origin's body until the others have finished; the second keeps its writer running until
the syncs are done.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import glarelite
import mirror
from tests.fixtures.origin import Origin
from tests.test_mirror_faults import REPO, WAIT, gated_world, kill, start_sync
from tests.test_mirror_support import (
    QUICK,
    define_types,
    open_catalog,
    sums_check,
    temporaries,
)


def verify_tree(dest: Path) -> glarelite.MirrorCatalog:
    """check_tree clean, tree.SUMS_CHECK clean, no temporary; returns an open reader."""
    assert mirror.check_tree(str(dest)).ok
    sums = sums_check(dest)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert temporaries(dest) == []
    return glarelite.open_mirror(str(dest))


def test_three_syncs_at_once_one_works_the_others_get_locked_error(
    tmp_path: Path, origin: Origin
) -> None:
    cat, body, big = gated_world(tmp_path, origin, size=4 << 20, threshold=1 << 20)
    dest = tmp_path / "tree"
    body.gate.clear()
    procs = [start_sync(tmp_path / "catalog.db", dest, segment_size=64 << 20) for _ in range(3)]
    results: dict[int, tuple[int, str, str]] = {}
    try:
        assert body.blocked.wait(WAIT), "no sync reached the gate"
        # The holder is parked inside the download: every other run must fail, now.
        holder = json.loads((dest / ".glarelite-mirror/lock").read_text())["pid"]
        for p in procs:
            if p.pid != holder:
                out, err = p.communicate(timeout=WAIT)
                results[p.pid] = (p.returncode, out.decode(), err.decode())
        body.gate.set()
        for p in procs:
            if p.pid == holder:
                out, err = p.communicate(timeout=WAIT)
                results[p.pid] = (p.returncode, out.decode(), err.decode())
    finally:
        body.gate.set()
        for p in procs:
            kill(p)
    assert holder in results and len(results) == 3
    for pid, (code, out, err) in results.items():
        if pid == holder:
            assert (code, out.strip()) == (0, "ok"), err
        else:
            assert code != 0 and out == ""
            assert f"LockedError: another mirror of {dest}" in err, err
            assert f"(pid {holder} on" in err
    with verify_tree(dest) as reader:
        assert [a.id for a in reader.iter_all()] == [big.id]
        with reader.open_blob(big.id, "file") as f:
            assert hashlib.sha256(f.read()).hexdigest() == body.sha256()
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do  # the one run did it all
    cat.close()


WRITER = """
import os, sys, glarelite
path, stop, minimum = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 0
with glarelite.open(path) as cat:
    while n < minimum or not os.path.exists(stop):
        a = cat.create("images", f"w{n}", version="1.0", properties={"os": "linux"})
        cat.upload(a.id, "file", os.urandom(2000) + b"%d" % n)
        cat.upload(a.id, "regions/eu", b"eu %d" % n)
        cat.activate(a.id)
        cat.publish(a.id)
        n += 1
        print(n, flush=True)
"""


def test_a_writer_process_and_syncs_share_the_catalog(tmp_path: Path) -> None:
    cat = open_catalog(tmp_path)
    define_types(cat)
    dest = tmp_path / "tree"
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "catalog.db"), str(stop), "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports = []
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "1"  # it is writing...
        # ...and keeps writing until told to stop: these syncs all overlap with it.
        for _ in range(4):
            reports.append(mirror.sync(cat, str(dest), workers=2, **QUICK))
        stop.touch()
        out, err = writer.communicate(timeout=WAIT)
    finally:
        stop.touch()
        kill(writer)
    assert writer.returncode == 0, err
    assert "locked" not in err.lower()
    written = int(out.split()[-1])
    for report in reports:
        assert report.exit_code == 0, report.failed
        assert not any("locked" in w.lower() for w in report.warnings)
    final = mirror.sync(cat, str(dest), workers=2, **QUICK)
    assert final.exit_code == 0, final.failed
    with verify_tree(dest) as reader:
        names = {a.name for a in reader.iter_all()}
        assert names == {f"w{i}" for i in range(written)}
        assert reader.generation >= 2
    print(f"\nwriter: {written} artifacts while 4 syncs ran; tree: {final.blobs} blobs")
    cat.close()


def test_a_reader_never_sees_an_index_naming_a_missing_or_partial_blob(tmp_path: Path) -> None:
    cat = open_catalog(tmp_path)
    define_types(cat)
    dest = tmp_path / "tree"

    def add(n: int) -> None:
        for i in range(3):
            a = cat.create("images", f"r{n}-{i}", version="1.0", properties={"os": "linux"})
            cat.upload(a.id, "file", os.urandom(200_000 + i))
            cat.upload(a.id, "regions/eu", b"eu " * (n + 1))
            cat.activate(a.id)
            cat.publish(a.id)

    add(0)
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    done = threading.Event()
    rounds: list[tuple[int, int]] = []  # (generation, blobs verified)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with glarelite.open_mirror(str(dest)) as reader:
                while True:
                    last = done.is_set()  # one full round after the last sync
                    reader.refresh()
                    verified = 0
                    for artifact in reader.iter_all():
                        for blob in artifact.iter_blobs():
                            slot = blob.url.split("/", 4)[4]
                            with reader.open_blob(artifact.id, slot) as f:
                                f.read()  # open_blob checks size and sha256 to the end
                            verified += 1
                    rounds.append((reader.generation, verified))
                    if last:
                        return
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    reader_thread = threading.Thread(target=read)
    reader_thread.start()
    try:
        for n in range(1, 6):
            add(n)
            assert mirror.sync(cat, str(dest), workers=2, **QUICK).exit_code == 0
    finally:
        done.set()
        reader_thread.join(timeout=WAIT)
    assert not reader_thread.is_alive()
    assert errors == [], errors
    assert rounds[-1] == (rounds[-1][0], 6 * 3 * 2)  # the last round saw everything
    generations = [g for g, _ in rounds]
    assert generations == sorted(generations)  # never an older tree after a newer one
    print(
        f"\nreader: {len(rounds)} rounds, {sum(v for _, v in rounds)} blob reads verified, "
        f"{len(set(generations))} generations seen"
    )
    with verify_tree(dest) as reader:
        assert len(list(reader.iter_all())) == 18
    cat.close()
