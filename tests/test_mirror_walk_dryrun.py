"""A dry run walks (issue 18) and writes nothing: whatever state the tree holds (none, a
format 1 ``state.json``, an unreadable or hostile ``state.sqlite``), the tree is byte for
byte what it was, and the run's temporaries (working tables, a rebuilt state's scratch
copy) are gone after it."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mirror
from glarelite import tree
from mirror import report as mirror_report
from mirror import state as mirror_state
from tests.fixtures.origin import Origin
from tests.test_mirror_format2 import mtimes, to_format1
from tests.test_mirror_support import QUICK, World, build_world

walk = sys.modules["mirror.walk"]


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def snapshot(dest: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the tree, its state included: bytes and mtime."""
    times = mtimes(dest)
    return {p: ((dest / p).read_bytes(), m) for p, m in times.items()}


def _no_state(dest: Path) -> None:
    for path in dest.glob(".glarelite-mirror/state.sqlite*"):
        path.unlink()


def _corrupt(dest: Path) -> None:
    (dest / mirror_state.STATE).write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)


def _trigger(dest: Path) -> None:
    conn = sqlite3.connect(dest / mirror_state.STATE)
    conn.execute("CREATE TRIGGER t AFTER INSERT ON blobs BEGIN DELETE FROM artifacts; END")
    conn.commit()
    conn.close()


def _retired_blob(dest: Path) -> None:
    conn = sqlite3.connect(dest / mirror_state.STATE)
    (path,) = conn.execute("SELECT path FROM blobs LIMIT 1").fetchone()
    conn.execute("INSERT INTO retired VALUES (?, 0)", (path,))
    conn.commit()
    conn.close()


SITUATIONS: dict[str, Callable[[Path], None]] = {
    "as-written": lambda dest: None,
    "no-state": _no_state,
    "format1": to_format1,
    "corrupt": _corrupt,
    "trigger": _trigger,
    "retired-blob": _retired_blob,
}


@pytest.mark.parametrize("situation", sorted(SITUATIONS))
@pytest.mark.parametrize("delete", [False, True])
def test_a_dry_run_changes_no_byte_and_leaves_no_temporary(
    world: World,
    tmp_path: Path,
    origin: Origin,
    monkeypatch: pytest.MonkeyPatch,
    situation: str,
    delete: bool,
) -> None:
    cat, dest = world.catalog, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    SITUATIONS[situation](dest)
    # something for the dry run to report: a change, a withdrawal, a lost file
    cat.update(world.ids["a1"], add_tags=["dry"])
    cat.deactivate(world.ids["b1"])
    (dest / tree.blob_path("charts", world.ids["chart"], "package")).unlink()
    before = snapshot(dest)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(walk, "PAGE", 1)
    monkeypatch.setattr(walk, "WINDOW", 1)
    monkeypatch.setattr(mirror_report, "LIST_MAX", 1)

    report = mirror.sync(cat, str(dest), dry_run=True, delete=delete, force=True, **QUICK)

    assert report.dry_run and report.would_copy_count >= 1
    assert snapshot(dest) == before
    assert sorted(p.name for p in temp.iterdir()) == []

    # ... and it said what the run does
    real = mirror.sync(cat, str(dest), delete=delete, force=True, **QUICK)
    assert real.exit_code == 0, real.failed
    assert real.copied_count + real.repaired_count == report.would_copy_count
    assert sorted(w["id"] for w in real.withdrawn) == sorted(w["id"] for w in report.withdrawn)
    if situation != "no-state":  # a lost state does not know what the tree published
        assert [w["id"] for w in report.withdrawn] == [world.ids["b1"]]
    if delete:
        assert sorted(real.deleted) == sorted(report.would_delete)
    assert sorted(p.name for p in temp.iterdir()) == []
