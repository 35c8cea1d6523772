"""The full walk's memory (issue 18): what a first mirror holds per blob is bounded where
it can be. The copy jobs are made batch by batch, never all at once: at most the
batches in flight exist, whatever the number of blobs to fetch."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import pytest

import mirror
from mirror import copy as mirror_copy
from tests.test_mirror_support import define_types, open_catalog

BATCH = 16  # small batches (instead of BATCH_MAX): a small catalog shows the bound
COUNT = 200  # more blobs than one worker's batches in flight (4 x BATCH) hold


def _catalog_of(tmp_path: Path, count: int) -> Any:
    cat = open_catalog(tmp_path)
    define_types(cat)
    for n in range(count):
        a = cat.create("charts", f"chart-{n}", version="1.0")
        cat.upload(a.id, "package", f"package {n}".encode())
        cat.activate(a.id)
        cat.publish(a.id)
    return cat


def _count_alive_at_each_batch(monkeypatch: pytest.MonkeyPatch, kind: type) -> list[int]:
    """How many objects of ``kind`` exist each time a batch of copies starts."""
    alive: list[int] = []
    run_batch = mirror_copy.Copier.run_batch

    def counting(self: mirror_copy.Copier, jobs: list[mirror_copy.Job]) -> Any:
        alive.append(sum(isinstance(o, kind) for o in gc.get_objects()))
        return run_batch(self, jobs)

    monkeypatch.setattr(mirror_copy.Copier, "run_batch", counting)
    return alive


def test_copy_jobs_are_made_batch_by_batch_not_all_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = _catalog_of(tmp_path, COUNT)
    alive = _count_alive_at_each_batch(monkeypatch, mirror_copy.Job)
    monkeypatch.setattr(sys.modules["mirror.walk"], "BATCH_MAX", BATCH)
    try:
        report = mirror.sync(cat, str(tmp_path / "tree"), workers=1, fsync=False)
    finally:
        cat.close()
    assert (report.exit_code, report.failed, len(report.copied)) == (0, [], COUNT)
    assert len(alive) >= COUNT // BATCH  # the blobs went in batches
    # One worker: 4 tasks in flight, plus the batch being made.
    assert max(alive) <= 5 * BATCH < COUNT


def test_a_walk_holds_a_page_of_artifacts_not_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned a page at a time: while blobs are copied, no more than a page of planned
    artifacts (Item) exists; the rest are rows in the run's working tables."""
    from mirror import plan as mirror_plan

    page = 10
    cat = _catalog_of(tmp_path, 120)
    alive = _count_alive_at_each_batch(monkeypatch, mirror_plan.Item)
    monkeypatch.setattr(sys.modules["mirror.walk"], "PAGE", page)
    try:
        report = mirror.sync(cat, str(tmp_path / "tree"), workers=1, fsync=False)
    finally:
        cat.close()
    assert (report.exit_code, report.mode, report.copied_count, report.artifacts) == (
        0,
        "walk",
        120,
        120,
    )
    assert alive and max(alive) <= page


def test_a_walk_over_a_known_state_does_not_load_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun that must walk (verify) reads the state's rows page by page: the whole
    state is never loaded into memory (Store.load is for check and tools)."""
    from mirror import state as mirror_state

    cat = _catalog_of(tmp_path, 30)
    dest = str(tmp_path / "tree")
    try:
        first = mirror.sync(cat, dest, fsync=False)

        def refuse(self: Any) -> Any:
            raise AssertionError("the walk loaded the whole state")

        monkeypatch.setattr(mirror_state.Store, "load", refuse)
        again = mirror.sync(cat, dest, fsync=False, verify=True)
    finally:
        cat.close()
    assert (first.exit_code, again.exit_code, again.mode) == (0, 0, "walk")
    assert again.skipped == 30 and again.copied_count == 0 and not again.published


def test_the_report_lists_a_bounded_number_of_entries_and_counts_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first mirror of a million blobs does not keep a million report entries: each list
    stops at LIST_MAX, its count does not, and the CLI's summary says the count."""
    from typer.testing import CliRunner

    from glarelite.cli import app
    from mirror import report as mirror_report

    monkeypatch.setattr(mirror_report, "LIST_MAX", 5)
    cat = _catalog_of(tmp_path, 12)
    cat.close()
    result = CliRunner().invoke(
        app,
        ["--catalog", str(tmp_path / "catalog.db"), "mirror", str(tmp_path / "tree"), "--json"],
    )
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    assert (len(data["copied"]), data["copied_count"]) == (5, 12)


def test_the_exit_code_counts_errors_beyond_the_listed_failures() -> None:
    report = mirror.SyncReport(dest="t")
    for _ in range(mirror.report.LIST_MAX):
        report.add("failed", {"path": "p", "error": "NetworkError", "reason": "down"})
    assert report.exit_code == mirror.EXIT_NETWORK
    report.add("failed", {"path": "q", "error": "ChecksumMismatch", "reason": "changed"})
    assert len(report.failed) == mirror.report.LIST_MAX and report.failed_count > len(report.failed)
    assert report.exit_code == mirror.EXIT_VERIFICATION


def test_a_full_disk_under_the_working_tables_is_a_glarelite_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database or disk is full" from the walk's working tables (the temporary
    folder) or the state is StorageFull, not a raw sqlite3 error; the CLI says one line."""
    import sqlite3

    from typer.testing import CliRunner

    import glarelite
    from glarelite.cli import app
    from mirror import worktable

    cat = _catalog_of(tmp_path, 3)
    cat.close()

    def full(self: Any, rows: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(worktable.WorkTable, "add_items", full)
    with (
        glarelite.open(tmp_path / "catalog.db") as again,
        pytest.raises(glarelite.StorageFull, match="disk is full"),
    ):
        mirror.sync(again, str(tmp_path / "tree"), fsync=False)
    result = CliRunner().invoke(
        app, ["--catalog", str(tmp_path / "catalog.db"), "mirror", str(tmp_path / "tree2")]
    )
    assert result.exit_code != 0
    assert "disk is full" in result.output and "Traceback" not in result.output
