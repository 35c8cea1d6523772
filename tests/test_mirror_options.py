"""``mirror.sync(catalog, dest, options=SyncOptions(...))``: one frozen value holds a run's
options; keyword arguments remain a thin convenience over it."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

import glarelite
import mirror
from mirror import SyncOptions
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def test_sync_takes_a_frozen_options_value() -> None:
    params = inspect.signature(mirror.sync).parameters
    assert list(params)[:3] == ["catalog", "dest", "options"]
    assert "workers" not in params  # the options live in SyncOptions, once
    options = SyncOptions(types=["images"], workers=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.workers = 3  # type: ignore[misc]
    assert options.types == ("images",)  # a list given is kept as a tuple
    assert SyncOptions(types=(t for t in ["a", "b"])).types == ("a", "b")
    assert SyncOptions(names="one").names == "one"  # a lone name stays one name


def test_options_are_validated_when_built() -> None:
    with pytest.raises(glarelite.InvalidInput, match="workers"):
        SyncOptions(workers=0)
    with pytest.raises(glarelite.InvalidInput, match="types"):
        SyncOptions(types=5)  # type: ignore[arg-type]


def test_a_run_with_options_equals_one_with_keywords(world: World, tmp_path: Path) -> None:
    options = SyncOptions(types=["images"], workers=2, **QUICK)  # type: ignore[arg-type]
    by_options = mirror.sync(world.catalog, str(tmp_path / "a"), options=options)
    by_keywords = mirror.sync(world.catalog, str(tmp_path / "b"), types=["images"], **QUICK)
    assert by_options.exit_code == by_keywords.exit_code == 0
    assert (by_options.artifacts, by_options.blobs) == (by_keywords.artifacts, by_keywords.blobs)
    assert by_options.artifacts > 0


def test_keywords_override_the_options(world: World, tmp_path: Path) -> None:
    base = SyncOptions(**QUICK)  # type: ignore[arg-type]
    report = mirror.sync(world.catalog, str(tmp_path / "t"), base, dry_run=True)
    assert report.dry_run and not (tmp_path / "t" / "index.json").exists()
    assert not base.dry_run  # the value given is untouched


def test_an_unknown_keyword_is_refused(world: World, tmp_path: Path) -> None:
    with pytest.raises(glarelite.InvalidInput, match="unknown sync option"):
        mirror.sync(world.catalog, str(tmp_path / "t"), wokers=2)
    with pytest.raises(glarelite.InvalidInput, match="SyncOptions"):
        mirror.sync(world.catalog, str(tmp_path / "t"), {"workers": 2})  # type: ignore[arg-type]
    assert not (tmp_path / "t").exists()


def test_grace_and_scan_are_validated() -> None:
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(glarelite.InvalidInput, match="grace"):
            mirror.SyncOptions(grace=bad)  # type: ignore[arg-type]
    for bad_scan in (-1, 1.5, True):
        with pytest.raises(glarelite.InvalidInput, match="scan"):
            mirror.SyncOptions(scan=bad_scan)  # type: ignore[arg-type]
    assert (mirror.SyncOptions().grace, mirror.SyncOptions().scan) == (3600.0, 20_000)
