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


def test_copy_jobs_are_made_batch_by_batch_not_all_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = open_catalog(tmp_path)
    define_types(cat)
    for n in range(COUNT):
        a = cat.create("charts", f"chart-{n}", version="1.0")
        cat.upload(a.id, "package", f"package {n}".encode())
        cat.activate(a.id)
        cat.publish(a.id)
    alive: list[int] = []
    run_batch = mirror_copy.Copier.run_batch

    def counting(self: mirror_copy.Copier, jobs: list[mirror_copy.Job]) -> Any:
        alive.append(sum(isinstance(o, mirror_copy.Job) for o in gc.get_objects()))
        return run_batch(self, jobs)

    monkeypatch.setattr(mirror_copy.Copier, "run_batch", counting)
    monkeypatch.setattr(sys.modules["mirror.walk"], "BATCH_MAX", BATCH)
    try:
        report = mirror.sync(cat, str(tmp_path / "tree"), workers=1, fsync=False)
    finally:
        cat.close()
    assert (report.exit_code, report.failed, len(report.copied)) == (0, [], COUNT)
    assert len(alive) >= COUNT // BATCH  # the blobs went in batches
    # One worker: 4 tasks in flight, plus the batch being made.
    assert max(alive) <= 5 * BATCH < COUNT
