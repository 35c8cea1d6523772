"""A streaming walk killed (SIGKILL) at any point (planning a page, copying a batch,
publishing artifact indexes, a shard or the root, saving the state, withdrawing,
pruning) leaves a tree the next clean run finishes: it passes ``check_tree`` and
``sha256sum -c``, publishes exactly what the catalog selects, and leaves no temporary."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import glarelite
import mirror
from glarelite import tree
from tests.test_mirror_support import (
    NO_GRACE,
    define_types,
    open_catalog,
    sums_check,
    temporaries,
    type_views,
)

REPO = Path(__file__).resolve().parent.parent

# Runs one walk (delete: withdrawals and prunes too) in a subprocess, with tiny pages;
# SIGKILLs itself before the Nth call of one function (argv: target, n), or never.
WALKER = """
import os, signal, sys
import glarelite, mirror
from mirror import copy, dest as mdest, prune, publish, report, state
walk, msync = sys.modules["mirror.walk"], sys.modules["mirror.sync"]
walk.PAGE, walk.WINDOW, walk.BATCH_MAX, report.LIST_MAX = 3, 2, 2, 2
owner, name = {
    "plan": (walk.Walk, "_plan_page"),
    "copy": (copy.Copier, "run_batch"),
    "index": (publish, "write_artifact_indexes"),
    "save": (state.Store, "save"),
    "write": (mdest.LocalDest, "write_file"),
    "delete": (mdest.LocalDest, "delete"),
    "prune": (prune, "apply"),
    "retire": (msync._Run, "_remove_retired"),
    "none": (None, None),
}[sys.argv[4]]
if owner is not None:
    original = getattr(owner, name)
    calls = [0]
    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(sys.argv[5]):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    setattr(owner, name, killing)
catalog = glarelite.open(sys.argv[1], storage=sys.argv[3])
walking = sys.argv[6] == "walk"
report = mirror.sync(catalog, sys.argv[2], workers=2, backoff=0.01, retries=1, grace=0,
                     delete=walking, force=walking, fsync=False)
assert report.mode == sys.argv[6], report.mode
print(report.exit_code, report.mode, file=sys.stderr)
print(report.exit_code)
"""

COUNT = 40


def walker(
    cat_dir: Path, dest: Path, target: str, n: int, mode: str = "walk"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WALKER,
            str(cat_dir / "catalog.db"),
            str(dest),
            str(cat_dir / "blobs"),
            target,
            str(n),
            mode,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _change(cat: glarelite.Catalog, rng: random.Random, round_: int) -> None:
    """Withdrawals, changes and new artifacts: work for every step of a walk."""
    active = [a for a in cat.iter_all("images") if a.status == "active"]
    gone = rng.sample(active, 3)
    for a in gone:
        cat.deactivate(a.id)
    for a in rng.sample([a for a in active if a not in gone], 3):
        cat.update(a.id, add_tags=[f"r{round_}"])
    for n in range(3):
        a = cat.create("images", f"new-{round_}-{n}", version="1.0", properties={"os": "x"})
        cat.upload(a.id, "file", os.urandom(2000 + n))
        cat.upload(a.id, "regions/eu", f"shared {n}".encode() * 30)
        cat.activate(a.id)
        cat.publish(a.id)


KILLS = [
    ("plan", 2),
    ("plan", 9),
    ("copy", 1),
    ("copy", 3),
    ("index", 1),
    ("save", 1),
    ("save", 3),
    ("write", 5),
    ("write", 20),
    ("delete", 1),
    ("delete", 4),
    ("prune", 1),
    ("retire", 1),
]


def _catalog(tmp_path: Path) -> tuple[glarelite.Catalog, Path]:
    cat = open_catalog(tmp_path)
    define_types(cat)
    for n in range(COUNT):
        a = cat.create("images", f"img-{n}", version="1.0", properties={"os": "linux"})
        cat.upload(a.id, "file", os.urandom(1000 + n))
        cat.activate(a.id)
        cat.publish(a.id)
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), fsync=False, **NO_GRACE).exit_code == 0
    return cat, dest


def _kill(tmp_path: Path, dest: Path, target: str, n: int, mode: str = "walk") -> bool:
    """Whether the run was killed (else it must have ended well)."""
    proc = walker(tmp_path, dest, target, n, mode)
    out, err = proc.communicate(timeout=300)
    if proc.returncode == -signal.SIGKILL:
        return True
    assert proc.returncode == 0 and out.strip() == b"0", err.decode()[-2000:]
    return False


def _finished(cat: glarelite.Catalog, dest: Path) -> None:
    """A clean run finishes the tree: whole, checked, nothing left behind."""
    report = mirror.sync(cat, str(dest), delete=True, fsync=False, **NO_GRACE)
    assert report.exit_code == 0, (report.failed, report.prune)
    assert not any("rebuilt" in w for w in report.warnings), report.warnings
    checked = mirror.check_tree(str(dest))
    assert checked.ok, checked.faults
    done = sums_check(dest)
    assert done.returncode == 0, done.stdout + done.stderr
    assert temporaries(dest) == []
    views = {v["id"]: v for v in type_views(dest, "images")}
    want = {a.id: a.to_dict() for a in cat.iter_all("images") if a.status == "active"}
    assert views == want
    # every blob the tree holds is one the indexes name (nothing left behind)
    named = {
        tree.blob_path("images", v["id"], f, k)
        for v in views.values()
        for f, k, _ in tree.iter_blob_entries(v)
    }
    held = {
        p.relative_to(dest).as_posix()
        for p in (dest / "artifacts" / "images").glob("*/**/*")
        if p.is_file() and p.name != tree.INDEX_NAME and "/_" not in p.as_posix()
    }
    assert held == named
    again = mirror.sync(cat, str(dest), fsync=False, **NO_GRACE)
    assert again.exit_code == 0 and again.nothing_to_do


@pytest.mark.parametrize(("target", "n"), KILLS)
def test_a_walk_killed_at_one_point_is_finished_by_the_next_run(
    tmp_path: Path, target: str, n: int
) -> None:
    cat, dest = _catalog(tmp_path)
    try:
        _change(cat, random.Random(n), 0)
        assert _kill(tmp_path, dest, target, n)
        _finished(cat, dest)
    finally:
        cat.close()


@pytest.mark.parametrize(("target", "n"), [("write", 3), ("save", 1), ("delete", 1)])
def test_a_journal_run_killed_at_one_point_is_finished_by_the_next_run(
    tmp_path: Path, target: str, n: int
) -> None:
    """The same for a run driven by the journal (withdrawals, changes, new artifacts):
    the next run walks (the state says incomplete) and finishes it."""
    cat, dest = _catalog(tmp_path)
    try:
        _change(cat, random.Random(n), 0)
        assert _kill(tmp_path, dest, target, n, mode="journal")
        _finished(cat, dest)
    finally:
        cat.close()


@pytest.mark.slow
def test_a_walk_killed_again_and_again_is_finished_by_the_next_run(tmp_path: Path) -> None:
    cat, dest = _catalog(tmp_path)
    rng = random.Random(18)
    try:
        killed = 0
        for round_, (target, n) in enumerate(KILLS):
            _change(cat, rng, round_)
            killed += _kill(tmp_path, dest, target, n)
        for attempt in range(3):  # and at a random moment
            _change(cat, rng, 100 + attempt)
            proc = walker(tmp_path, dest, "none", 0)
            try:
                proc.wait(timeout=rng.uniform(0.3, 1.5))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=300)
        assert killed >= len(KILLS) - 2  # nearly every kill point was reached
        _finished(cat, dest)
    finally:
        cat.close()


# -- what a killed run leaves, made directly ---------------------------------------------
def test_an_artifact_index_the_state_never_recorded_goes_with_its_withdrawal(
    tmp_path: Path,
) -> None:
    """A run killed after writing a new artifact's index.json, before saving its row:
    when the artifact is withdrawn before the next run, its index goes with its blobs."""
    import sqlite3

    from mirror import state as mirror_state

    cat, dest = _catalog(tmp_path)
    try:
        victim = next(iter(cat.iter_all("images")))
        index = tree.artifact_index_path("images", victim.id)
        db = sqlite3.connect(dest / mirror_state.STATE)
        with db:
            db.execute("DELETE FROM indexes WHERE path = ?", (index,))
        db.close()
        cat.deactivate(victim.id)
        report = mirror.sync(cat, str(dest), verify=True, fsync=False, **NO_GRACE)
        assert [w["id"] for w in report.withdrawn] == [victim.id]
        assert index in report.withdrawn[0]["files"]
        assert not (dest / index).exists()
        _finished(cat, dest)
    finally:
        cat.close()


def test_a_sums_file_of_a_shard_no_root_pins_is_removed_by_the_next_walk(
    tmp_path: Path,
) -> None:
    """A run killed after writing a new shard's sums file, before its state named the
    shard: when the next run does not publish that shard, the sums file goes (else
    ``sha256sum -c`` reads lines of files no root publishes)."""
    cat, dest = _catalog(tmp_path)
    try:
        folder = dest / tree.SUMS_DIR / "images"
        taken = {p.name for p in folder.iterdir()}
        free = next(f"{n:03x}" for n in range(4096) if f"{n:03x}" not in taken)
        (folder / free).write_bytes((folder / sorted(taken - {tree.TYPE_SUMS})[0]).read_bytes())
        cat.update(next(iter(cat.iter_all("images"))).id, add_tags=["after"])
        mirror.sync(cat, str(dest), verify=True, fsync=False, **NO_GRACE)
        assert not (folder / free).exists()
        _finished(cat, dest)
    finally:
        cat.close()
