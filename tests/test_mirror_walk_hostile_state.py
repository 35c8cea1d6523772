"""Hostile rows in the state a streaming walk reads page by page (issue 18): each is
refused when the state is opened, the state is rebuilt from the tree, and no file other
than the tree's own kinds is removed, however small the walk's pages."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mirror
from glarelite import tree
from mirror import state as mirror_state
from tests.fixtures.origin import Origin
from tests.test_mirror_support import NO_GRACE, World, build_world, sums_check, tree_files

walk = sys.modules["mirror.walk"]


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


Row = Callable[[sqlite3.Connection, dict[str, str]], None]


def _blob_of_another(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    # b1's file, said to be a1's: a withdrawal of b1 must not miss it, nor one of a1
    # remove it
    path = tree.blob_path("images", ids["b1"], "file")
    db.execute("UPDATE blobs SET artifact_id = ? WHERE path = ?", (ids["a1"], path))


def _type_not_identifier(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute("UPDATE artifacts SET type = '../../etc' WHERE id = ?", (ids["b1"],))


def _type_upper(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute("UPDATE artifacts SET type = 'Images' WHERE id = ?", (ids["a1"],))


def _index_of_three_parts(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute("INSERT INTO indexes VALUES ('artifacts/images/README.txt')")
    db.execute("INSERT INTO indexes VALUES ('artifacts/images/index.json')")


def _retired_blob(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute("INSERT INTO retired VALUES (?, 0)", (tree.blob_path("images", ids["a1"], "file"),))


def _retired_artifact_index(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute(
        "INSERT INTO retired VALUES (?, 0)", (tree.artifact_index_path("images", ids["a1"]),)
    )


def _retired_site_file(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute("INSERT INTO retired VALUES ('artifacts/images/_shards/README.txt', 0)")


def _artifact_id_not_an_id(db: sqlite3.Connection, ids: dict[str, str]) -> None:
    db.execute(
        "INSERT INTO artifacts SELECT '_shards', type, name, shard, fingerprint, linked "
        "FROM artifacts WHERE id = ?",
        (ids["a1"],),
    )


ROWS: dict[str, Row] = {
    "blob-of-another": _blob_of_another,
    "type-not-identifier": _type_not_identifier,
    "type-upper": _type_upper,
    "index-of-three-parts": _index_of_three_parts,
    "retired-blob": _retired_blob,
    "retired-artifact-index": _retired_artifact_index,
    "retired-site-file": _retired_site_file,
    "artifact-id-not-an-id": _artifact_id_not_an_id,
}

SITE_FILES = {
    "README.txt": b"site notes",
    "artifacts/images/README.txt": b"type notes",
    "artifacts/images/_shards/README.txt": b"shard notes",
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_a_hostile_state_row_is_rebuilt_from_the_tree_and_removes_no_site_file(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: str
) -> None:
    cat, ids, dest = world.catalog, world.ids, tmp_path / "tree"
    monkeypatch.setattr(walk, "PAGE", 1)
    monkeypatch.setattr(walk, "WINDOW", 1)
    assert mirror.sync(cat, str(dest), **NO_GRACE).exit_code == 0
    for path, data in SITE_FILES.items():
        (dest / path).write_bytes(data)
    db = sqlite3.connect(dest / mirror_state.STATE)
    with db:
        ROWS[row](db, {k: ids[k] for k in ("a1", "b1")})
    db.close()
    cat.deactivate(ids["b1"])
    cat.update(ids["a2"], add_tags=["after"])

    report = mirror.sync(cat, str(dest), delete=True, **NO_GRACE)

    assert report.exit_code == 0, report.failed
    assert any("rebuilt from the tree" in w for w in report.warnings), report.warnings
    assert [w["id"] for w in report.withdrawn] == [ids["b1"]]
    files = tree_files(dest)
    for path, data in SITE_FILES.items():
        assert files.get(path) == data, path
    assert tree.blob_path("images", ids["a1"], "file") in files
    assert not [p for p in files if ids["b1"] in p]
    checked = mirror.check_tree(str(dest))
    # the site's files under artifacts/ are the check's only faults (served, unlisted)
    assert sorted((f["path"], f["kind"]) for f in checked.faults) == [
        (p, "unlisted") for p in sorted(SITE_FILES) if p.startswith("artifacts/")
    ]
    assert sums_check(dest).returncode == 0
    # rebuilt: the next run finds nothing to do and a clean state
    again = mirror.sync(cat, str(dest), **NO_GRACE)
    assert again.exit_code == 0 and not any("rebuilt" in w for w in again.warnings)


def test_a_retired_row_naming_a_pinned_file_never_removes_it(world: World, tmp_path: Path) -> None:
    """A no-op run removes retired files that are due; a row naming a shard, bucket or
    sums file the current root pins is wrong: its row goes, the file stays."""
    cat, dest = world.catalog, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **NO_GRACE).exit_code == 0
    pinned = sorted(
        p
        for p in tree_files(dest)
        if "/_shards/" in p or "/_buckets/" in p or p.startswith(tree.SUMS_DIR + "/")
    )
    assert len(pinned) >= 4
    db = sqlite3.connect(dest / mirror_state.STATE)
    with db:
        db.executemany("INSERT INTO retired VALUES (?, 0)", [(p,) for p in pinned])
    db.close()

    report = mirror.sync(cat, str(dest), **NO_GRACE)

    assert (report.exit_code, report.mode) == (0, "no-op")
    assert all(p in tree_files(dest) for p in pinned)
    db = sqlite3.connect(dest / mirror_state.STATE)
    assert db.execute("SELECT count(*) FROM retired").fetchone() == (0,)
    db.close()
    assert mirror.check_tree(str(dest)).ok and sums_check(dest).returncode == 0


@pytest.mark.parametrize("then", ["no-op", "journal"])
def test_a_trigger_planted_in_the_state_makes_the_next_run_rebuild_it(
    world: World, tmp_path: Path, then: str
) -> None:
    """Runs that read part of the state (a no-op moving its scan, a journal run) refuse
    a file with a trigger too: the run walks and rebuilds the state in a new file."""
    cat, ids, dest = world.catalog, world.ids, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **NO_GRACE).exit_code == 0
    (dest / "README.txt").write_bytes(b"site notes")
    db = sqlite3.connect(dest / mirror_state.STATE)
    with db:
        db.execute(
            "CREATE TRIGGER plant AFTER INSERT ON blobs "
            "BEGIN INSERT OR IGNORE INTO indexes VALUES ('README.txt'); END"
        )
        db.execute("INSERT INTO retired VALUES ('artifacts/images/_shards/gone.json', 0)")
    db.close()
    if then == "journal":
        cat.update(ids["a2"], add_tags=["after"])

    report = mirror.sync(cat, str(dest), **NO_GRACE)

    assert (report.exit_code, report.mode) == (0, "walk"), report.warnings
    assert any("trigger" in w for w in report.warnings), report.warnings
    assert (dest / "README.txt").read_bytes() == b"site notes"
    db = sqlite3.connect(dest / mirror_state.STATE)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (
        0,
    )
    db.close()
    assert mirror.check_tree(str(dest)).ok
