"""The tree is the mirror's own (issue 16): local damage is repaired from the catalog,
never answered by publishing less; and withdrawal (issue 15): what the catalog no longer
publishes leaves every tree on the next sync, without ``delete``."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

import glarelite
import mirror
from glarelite import tree
from tests.fixtures.origin import Origin
from tests.test_mirror_support import (
    QUICK,
    World,
    build_world,
    origin_gets,
    sums_check,
    sums_text,
    type_views,
)


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def type_ids(dest: Path, type_name: str) -> set[str]:
    return {a["id"] for a in type_views(dest, type_name)}


def sums_ok(dest: Path) -> bool:
    return sums_check(dest).returncode == 0


def flip_one_byte(path: Path) -> None:
    with path.open("r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


# -- self-healing ------------------------------------------------------------------------
def test_a_damaged_hard_linked_file_is_repaired_and_both_artifacts_stay(
    world: World, tmp_path: Path
) -> None:
    """The issue's reproduction: two public artifacts with identical bytes (one inode),
    one byte flipped → both paths get good bytes back, both stay published."""
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    a1_us = dest / tree.blob_path("images", ids["a1"], "regions", "us")
    b1_file = dest / tree.blob_path("images", ids["b1"], "file")
    assert a1_us.stat().st_ino == b1_file.stat().st_ino
    good = b1_file.read_bytes()
    generation = json.loads((dest / "index.json").read_text())["generation"]

    flip_one_byte(b1_file)
    assert a1_us.read_bytes() != good  # the shared inode: both paths are damaged

    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.failed) == (0, [])
    assert sorted(r["path"] for r in report.repaired) == sorted(
        p.relative_to(dest).as_posix() for p in (a1_us, b1_file)
    )
    assert all("different bytes" in r["reason"] for r in report.repaired)
    assert a1_us.read_bytes() == good and b1_file.read_bytes() == good
    assert {ids["a1"], ids["b1"]} <= type_ids(dest, "images")
    assert report.artifacts == 4
    assert sums_ok(dest)
    assert mirror.check_tree(str(dest)).ok
    assert json.loads((dest / "index.json").read_text())["generation"] == generation
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do


def test_damage_hidden_from_stat_is_repaired_by_verify(world: World, tmp_path: Path) -> None:
    """Same size and mtime: only a re-hash (verify) can tell, and it repairs."""
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    b1_file = dest / tree.blob_path("images", ids["b1"], "file")
    a1_us = dest / tree.blob_path("images", ids["a1"], "regions", "us")
    good = b1_file.read_bytes()
    st = b1_file.stat()
    flip_one_byte(b1_file)
    os.utime(b1_file, ns=(st.st_atime_ns, st.st_mtime_ns))

    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do  # documented: stat only
    report = mirror.sync(cat, str(dest), verify=True, **QUICK)
    assert (report.exit_code, report.failed) == (0, [])
    assert len(report.repaired) == 2
    assert b1_file.read_bytes() == good and a1_us.read_bytes() == good
    assert sums_ok(dest)


def test_unrepairable_damage_keeps_the_artifact_published(world: World, tmp_path: Path) -> None:
    """Bytes that cannot be obtained again: the artifact stays in every index as the
    previous generation published it, the run reports the failure."""
    cat, dest, ids, origin = world.catalog, tmp_path / "tree", world.ids, world.origin
    mirror.sync(cat, str(dest), **QUICK)
    before = {t: type_ids(dest, t) for t in ("images", "charts")}
    sums_before = sums_text(dest)
    a2_file = dest / tree.blob_path("images", ids["a2"], "file")
    chart_file = dest / tree.blob_path("charts", ids["chart"], "package")
    flip_one_byte(a2_file)
    chart_file.unlink()
    origin.add("/a2.img", data=b"other bytes now", ranges=True)  # upstream changed
    origin.add("/c.tgz", status=503)  # upstream down

    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.exit_code == mirror.EXIT_VERIFICATION
    assert sorted(f["path"] for f in report.failed) == sorted(
        p.relative_to(dest).as_posix() for p in (a2_file, chart_file)
    )
    assert {t: type_ids(dest, t) for t in ("images", "charts")} == before
    assert sums_text(dest) == sums_before
    assert report.artifacts == 4
    assert (dest / tree.artifact_index_path("images", ids["a2"])).exists()

    # The damage stays visible: check reports it, the next run tries again.
    check = mirror.check_tree(str(dest))
    assert {f["path"] for f in check.faults} == {
        a2_file.relative_to(dest).as_posix(),
        chart_file.relative_to(dest).as_posix(),
    }
    again = mirror.sync(cat, str(dest), **QUICK)
    assert not again.nothing_to_do and again.exit_code == mirror.EXIT_VERIFICATION


def test_check_reports_blob_files_no_index_names(world: World, tmp_path: Path) -> None:
    """--check both ways: what the index promises, and what the tree holds."""
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    stray = dest / "artifacts/images" / ids["secret"] / "file"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"served, though no index names it")
    report = mirror.check_tree(str(dest))
    assert [(f["path"], f["kind"]) for f in report.faults] == [
        (stray.relative_to(dest).as_posix(), "unlisted")
    ]
    assert report.exit_code == 5


# -- withdrawal ---------------------------------------------------------------------------
def test_a_deactivated_artifact_is_withdrawn_without_delete(world: World, tmp_path: Path) -> None:
    """The issue 15 test: one of two artifacts sharing identical bytes is deactivated."""
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    a1_us = dest / tree.blob_path("images", ids["a1"], "regions", "us")
    good = a1_us.read_bytes()
    b1_dir = dest / "artifacts/images" / ids["b1"]

    cat.deactivate(ids["b1"])
    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.exit_code == 0
    assert [(w["id"], w["reason"]) for w in report.withdrawn] == [(ids["b1"], "deactivated")]
    assert sorted(report.withdrawn[0]["files"]) == [
        tree.blob_path("images", ids["b1"], "file"),
        tree.artifact_index_path("images", ids["b1"]),
    ]
    assert not b1_dir.exists()
    assert a1_us.read_bytes() == good  # the other's file, same bytes, intact
    assert ids["b1"] not in sums_text(dest)
    assert ids["b1"] not in type_ids(dest, "images")
    assert report.retained == 0
    assert sums_ok(dest)
    assert mirror.check_tree(str(dest)).ok
    with glarelite.open_mirror(dest) as m:
        assert ids["b1"] not in {a.id for a in m.iter_all("images")}
        assert ids["a1"] in {a.id for a in m.iter_all("images")}
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do


def test_deleted_and_private_artifacts_are_withdrawn_deselected_ones_retained(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    cat.deactivate(ids["chart"])
    cat.delete(ids["chart"])
    # Glare's API cannot make a public artifact private; a catalog edited by hand can.
    conn = sqlite3.connect(cat.path)
    with conn:
        conn.execute("UPDATE artifacts SET visibility='private' WHERE id=?", (ids["a2"],))
    conn.close()

    # b1 falls out of the selection (tag): retained, since delete was not asked.
    report = mirror.sync(cat, str(dest), tags=["linux"], **QUICK)
    assert report.exit_code == 0
    assert {(w["id"], w["reason"]) for w in report.withdrawn} == {
        (ids["chart"], "deleted"),
        (ids["a2"], "made private"),
    }
    for label in ("chart", "a2"):
        assert not any(ids[label] in p for p in _all_files(dest)), label
    assert (dest / tree.blob_path("images", ids["b1"], "file")).exists()
    assert report.retained == 2  # b1's blob and index
    assert sums_ok(dest)

    report = mirror.sync(cat, str(dest), tags=["linux"], delete=True, **QUICK)
    assert report.exit_code == 0 and report.withdrawn == []
    assert not (dest / "artifacts/images" / ids["b1"]).exists()


def test_a_retained_artifact_deactivated_later_is_withdrawn(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    mirror.sync(cat, str(dest), tags=["linux"], **QUICK)  # b1 retained
    assert (dest / tree.blob_path("images", ids["b1"], "file")).exists()
    cat.deactivate(ids["b1"])
    report = mirror.sync(cat, str(dest), tags=["linux"], **QUICK)
    assert [w["id"] for w in report.withdrawn] == [ids["b1"]]
    assert not (dest / "artifacts/images" / ids["b1"]).exists()


def test_everything_withdrawn_publishes_an_empty_tree_without_refusal(
    world: World, tmp_path: Path
) -> None:
    """Plain mirror, nothing selected because everything was deactivated: no "prune
    refused", no exit 10; the summary's generation is the one published."""
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    for label in ("a1", "a2", "b1", "chart"):
        cat.deactivate(ids[label])
    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.prune, report.artifacts) == (0, "not asked", 0)
    assert len(report.withdrawn) == 4 and report.published
    assert sums_ok(dest)
    assert mirror.check_tree(str(dest)).ok


def test_a_catalog_that_knows_none_of_the_tree_is_refused(
    world: World, tmp_path: Path, origin: Origin
) -> None:
    """Every published artifact unknown to the catalog: a wrong catalog, not a mass
    withdrawal. Refused (exit 10), nothing changed; force goes ahead."""
    dest = tmp_path / "tree"
    mirror.sync(world.catalog, str(dest), **QUICK)
    other_root = tmp_path / "other"
    other_root.mkdir()
    other = build_world(other_root, origin)
    try:
        before = _all_files(dest)
        report = mirror.sync(other.catalog, str(dest), **QUICK)
        assert report.exit_code == mirror.EXIT_PRUNE_REFUSED and report.status == "refused"
        assert "force" in report.refused and "prune" not in report.refused
        assert report.prune == "not asked" and not report.published
        assert _all_files(dest) == before
        report = mirror.sync(other.catalog, str(dest), force=True, **QUICK)
        assert report.exit_code == 0 and len(report.withdrawn) == 4
        assert sums_ok(dest)
    finally:
        other.catalog.close()


def test_dry_run_lists_what_would_be_withdrawn(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    cat.deactivate(ids["b1"])
    before = _all_files(dest)
    report = mirror.sync(cat, str(dest), dry_run=True, **QUICK)
    assert [(w["id"], w["reason"]) for w in report.withdrawn] == [(ids["b1"], "deactivated")]
    assert _all_files(dest) == before
    assert not report.nothing_to_do
    assert origin_gets(world.origin)  # (the world registered its externals)


def _all_files(root: Path) -> dict[str, bytes]:
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".glarelite-mirror"]
        for name in files:
            p = Path(folder, name)
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def test_files_of_a_selected_artifact_that_failed_are_not_called_unselected(
    world: World, tmp_path: Path
) -> None:
    cat, dest, origin = world.catalog, tmp_path / "tree", world.origin
    new = cat.create("images", "n", version="1.0", properties={"os": "linux"})
    world.upload(new.id, "file", b"good internal bytes")
    world.external(new.id, "regions/eu", "/n-eu.img", b"registered" * 100)
    cat.activate(new.id)
    cat.publish(new.id)
    origin.add("/n-eu.img", data=b"other bytes" * 100)
    report = mirror.sync(cat, str(dest), **QUICK)
    assert [f["path"] for f in report.failed] == [tree.blob_path("images", new.id, "regions", "eu")]
    assert report.retained == 0  # its copied file is selected, not "kept for --delete"
