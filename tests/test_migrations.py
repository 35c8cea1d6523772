"""sqlite-utils does the catalog's schema migrations, and only they load it: ``import
glarelite`` stays cheap (the heavy libraries load when first used; bench-free check: the
modules, not the milliseconds)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import glarelite
from glarelite import _db

ROOT = Path(__file__).resolve().parent.parent

# Loaded on first use, never by `import glarelite`: each costs 5-50 ms of start-up.
LAZY = ("sqlite_utils", "urllib3", "fsspec", "s3fs", "rich", "typer", "importlib.metadata",
        "glarelite.tree", "glarelite.mirror_reader")  # fmt: skip


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_import_glarelite_loads_no_heavy_library() -> None:
    loaded = _modules_after("import glarelite")
    assert "glarelite.catalog" in loaded
    assert sorted(m for m in LAZY if m in loaded) == []
    # the lazily loaded public names still resolve, and are listed
    names = _modules_after("import glarelite\nfrom glarelite import tree, MirrorCatalog\n"
                           "assert set(glarelite.__all__) <= set(dir(glarelite))")  # fmt: skip
    assert {"glarelite.tree", "glarelite.mirror_reader"} <= names


def test_opening_a_current_catalog_does_not_load_sqlite_utils(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    glarelite.open(path).close()  # created at the current version
    loaded = _modules_after(f"import glarelite\nglarelite.open({str(path)!r}).close()")
    assert "sqlite_utils" not in loaded


def _downgrade(path: Path) -> None:
    glarelite.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {_db.SCHEMA_VERSION}")
    conn.close()


def test_a_migration_step_works_with_sqlite_utils(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite_utils

    path = tmp_path / "c.db"
    _downgrade(path)
    with glarelite.open(path) as cat:
        cat.define_type("images", blobs=["file"])
        art = cat.create("images", "a", description="kept")

    def step(db: sqlite_utils.Database) -> None:
        assert isinstance(db, sqlite_utils.Database)
        db.table("artifacts").add_column("extra", str)
        # transform: SQLite's create-copy-drop-rename, done by sqlite-utils, here on a
        # table that artifacts reference (foreign keys are off while steps run)
        types = db.table("artifact_types")
        types.add_column("extra", str)
        types.transform(types={"extra": int})

    monkeypatch.setattr(_db, "SCHEMA_VERSION", _db.SCHEMA_VERSION + 1)
    monkeypatch.setitem(_db.MIGRATIONS, _db.SCHEMA_VERSION - 1, step)
    with glarelite.open(path) as cat:
        assert cat.get(art.id).description == "kept"
        assert cat.get_type("images").blobs == ("file",)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
    assert "extra" in {r[1] for r in conn.execute("PRAGMA table_info(artifacts)")}
    columns = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(artifact_types)")}
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    assert columns["extra"] == "INTEGER"


def test_a_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite_utils

    path = tmp_path / "c.db"
    _downgrade(path)
    with glarelite.open(path) as cat:
        cat.define_type("images", blobs=["file"])
    old_version = _db.SCHEMA_VERSION

    def step(db: sqlite_utils.Database) -> None:
        db.table("quotas").transform(drop={"max_bytes"})
        db.execute("DELETE FROM artifact_types")
        raise RuntimeError("a step that breaks halfway")

    monkeypatch.setattr(_db, "SCHEMA_VERSION", old_version + 1)
    monkeypatch.setitem(_db.MIGRATIONS, old_version, step)
    with pytest.raises(RuntimeError, match="halfway"):
        glarelite.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == old_version
    assert "max_bytes" in {r[1] for r in conn.execute("PRAGMA table_info(quotas)")}
    assert conn.execute("SELECT count(*) FROM artifact_types").fetchone()[0] == 1
    conn.close()
    monkeypatch.undo()
    with glarelite.open(path) as cat:  # the catalog still works
        assert cat.get_type("images").blobs == ("file",)


def test_a_missing_step_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.db"
    _downgrade(path)
    monkeypatch.setattr(_db, "SCHEMA_VERSION", _db.SCHEMA_VERSION + 1)
    with pytest.raises(glarelite.GlareliteError, match="no migration"):
        glarelite.open(path)
