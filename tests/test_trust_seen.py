"""The seen file of signed trees is what stops a rollback across processes: its update is
a rename, and a rename is durable only once its folder is fsynced (the fsync rule of
glarelite.fsutil). Without it a power cut can bring back the older generation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from glarelite import _trust, fsutil


def test_the_seen_file_is_replaced_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = fsutil.fsync_dir

    def record(path: str | os.PathLike[str]) -> None:
        synced.append(os.path.abspath(path))
        real(path)

    monkeypatch.setattr(fsutil, "fsync_dir", record)
    seen = tmp_path / "seen.json"
    _trust._save_seen(str(seen), {"/srv/tree": 7})
    assert json.loads(seen.read_text()) == {"trees": {"/srv/tree": 7}}
    assert str(tmp_path) in synced
    assert [p.name for p in tmp_path.iterdir()] == ["seen.json"]  # no temporary left


def test_an_unwritable_seen_folder_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(_trust.InvalidInput, match="cannot write the seen file"):
        _trust._save_seen(str(tmp_path / "missing" / "seen.json"), {"x": 1})
