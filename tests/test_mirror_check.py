"""mirror.check_tree: a clean tree passes; every kind of damage is a fault naming its
path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import mirror
from glarelite import tree
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    mirror.sync(w.catalog, str(tmp_path / "tree"), **QUICK)
    yield w
    w.catalog.close()


def test_a_clean_tree_passes(world: World, tmp_path: Path) -> None:
    report = mirror.check_tree(str(tmp_path / "tree"))
    assert report.ok and report.exit_code == 0
    assert (report.generation, report.artifacts, report.files) == (1, 4, 6)
    assert report.bytes == sum(len(d) for d in world.published_urls().values())
    assert json.loads(json.dumps(report.to_dict()))["status"] == "ok"


def corrupt_blob(w: World, dest: Path) -> str:
    path = tree.blob_path("images", w.ids["a1"], "file")
    data = (dest / path).read_bytes()
    (dest / path).write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    return path


def missing_blob(w: World, dest: Path) -> str:
    path = tree.blob_path("images", w.ids["b1"], "file")
    (dest / path).unlink()
    return path


def truncated_blob(w: World, dest: Path) -> str:
    path = tree.blob_path("charts", w.ids["chart"], "package")
    (dest / path).write_bytes((dest / path).read_bytes()[:10])
    return path


def edited_artifact_index(w: World, dest: Path) -> str:
    path = tree.artifact_index_path("images", w.ids["a2"])
    (dest / path).write_text((dest / path).read_text().replace('"name":"a"', '"name":"z"'))
    return path


def edited_type_index(w: World, dest: Path) -> str:
    path = tree.type_index_path("charts")
    (dest / path).write_bytes((dest / path).read_bytes() + b"\n")
    return path


def extra_sums_line(w: World, dest: Path) -> str:
    (dest / tree.SUMS).write_text((dest / tree.SUMS).read_text() + "0" * 64 + "  artifacts/x\n")
    return "artifacts/x"


def missing_root_index(w: World, dest: Path) -> str:
    (dest / tree.ROOT_INDEX).unlink()
    return tree.ROOT_INDEX


DAMAGE: dict[str, tuple[Callable[[World, Path], str], str]] = {
    "corrupt blob": (corrupt_blob, "sha256-mismatch"),
    "missing blob": (missing_blob, "missing"),
    "truncated blob": (truncated_blob, "size-mismatch"),
    "edited artifact index": (edited_artifact_index, "index-mismatch"),
    "edited type index": (edited_type_index, "index-mismatch"),
    "extra SHA256SUMS line": (extra_sums_line, "unreferenced"),
    "missing root index": (missing_root_index, "missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_a_fault_naming_the_path(world: World, tmp_path: Path, damage: str) -> None:
    dest = tmp_path / "tree"
    make, kind = DAMAGE[damage]
    path = make(world, dest)
    report = mirror.check_tree(str(dest))
    assert not report.ok and report.exit_code == mirror.EXIT_VERIFICATION
    assert (path, kind) in [(f["path"], f["kind"]) for f in report.faults], report.faults


def test_temporaries_are_a_warning_not_a_fault(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    folder = dest / "artifacts/images" / world.ids["a1"]
    name = tree.temporary_name("file", "otherhost", 1, "0123456789abcdef")
    (folder / name).write_bytes(b"partial")
    report = mirror.check_tree(str(dest))
    assert report.ok and "temporaries" in report.warnings[0]
