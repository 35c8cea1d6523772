"""Superseded index files kept for the grace period (issue 18): a file the new root pins
again is never removed as superseded, however the tree came back to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mirror
from tests.fixtures.origin import Origin
from tests.test_mirror_format2 import published_files
from tests.test_mirror_support import QUICK, World, build_world, sums_check


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def test_a_selection_narrowed_then_restored_within_the_grace_keeps_what_its_root_pins(
    world: World, tmp_path: Path
) -> None:
    """Narrowed, then back: the restored root pins the same buckets and shards as the
    first (content-addressed, still there within the grace period). A later run, past
    the grace period, must not remove them as superseded."""
    cat, dest = world.catalog, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    first = published_files(dest)
    assert mirror.sync(cat, str(dest), names=["a"], **QUICK).exit_code == 0
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    assert published_files(dest) == first  # the same files pinned again
    report = mirror.sync(cat, str(dest), **{**QUICK, "grace": 0})
    assert report.exit_code == 0
    assert published_files(dest) == first
    assert mirror.check_tree(str(dest)).ok
    assert sums_check(dest).returncode == 0
