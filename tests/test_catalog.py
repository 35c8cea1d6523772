"""The catalog: types, artifacts, lifecycle, ownership and the schema file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import glarelite
from glarelite import _db
from glarelite.errors import (
    Conflict,
    Forbidden,
    GlareliteError,
    IllegalTransition,
    InvalidInput,
    NotFound,
)

ROOT = Path(__file__).resolve().parent.parent


def test_open_creates_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with glarelite.open(path) as cat:
        assert cat.types() == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"artifacts", "blobs", "artifact_types", "artifact_props", "artifact_tags"} <= tables


def test_default_storage_is_a_folder_beside_the_catalog(tmp_path: Path) -> None:
    with glarelite.open(tmp_path / "glarelite.db") as cat:
        assert cat._core.get_setting("storage") == str(tmp_path / "glarelite-blobs")


def test_storage_is_fixed_at_creation(tmp_path: Path) -> None:
    glarelite.open(tmp_path / "c.db", storage="memory://one").close()
    with pytest.raises(Conflict, match="fixed at creation"):
        glarelite.open(tmp_path / "c.db", storage="memory://two")


def test_open_without_create_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no catalog"):
        glarelite.open(tmp_path / "missing.db", create=False)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    glarelite.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {_db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(GlareliteError, match="upgrade glarelite"):
        glarelite.open(path)


def test_migration_path_runs_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.db"
    glarelite.open(path).close()
    ran = []

    def step(db: object) -> None:
        ran.append(db)
        db.execute("ALTER TABLE artifacts ADD COLUMN extra TEXT")  # type: ignore[attr-defined]

    monkeypatch.setattr(_db, "SCHEMA_VERSION", _db.SCHEMA_VERSION + 1)
    monkeypatch.setitem(_db.MIGRATIONS, _db.SCHEMA_VERSION - 1, step)
    glarelite.open(path).close()
    assert len(ran) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
    cols = [r[1] for r in conn.execute("PRAGMA table_info(artifacts)")]
    assert "extra" in cols


def test_wheel_ships_schema_and_uses_it(tmp_path: Path) -> None:
    """An installed wheel (not only an editable checkout) finds schema.sql."""
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("glarelite-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert "glarelite/schema.sql" in zf.namelist()
        assert "glarelite/py.typed" in zf.namelist()
        assert any(n.startswith("mirror/") for n in zf.namelist())
        zf.extractall(site)
    code = (
        "import glarelite, sys; from glarelite import _db;"
        f"assert glarelite.__file__.startswith({str(site)!r}), glarelite.__file__;"
        "assert 'CREATE TABLE' in _db.schema_text();"
        f"glarelite.open({str(tmp_path / 'w.db')!r}).close()"
    )
    subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        check=True,
        cwd=tmp_path,
    )


# -- types ------------------------------------------------------------------------------
def test_define_type_persists_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with glarelite.open(path) as cat:
        t = cat.define_type("images", blobs=["file"], properties={"os": "string"})
        assert cat.define_type("images", blobs=["file"], properties={"os": "string"}) == t
        with pytest.raises(Conflict, match="already defined differently"):
            cat.define_type("images", blobs=["file", "kernel"])
    with glarelite.open(path) as cat:
        assert cat.get_type("images") == t
        assert [x.name for x in cat.types()] == ["images"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Images"},
        {"name": "../x"},
        {"name": "a/b"},
        {"name": ""},
        {"name": "ok", "blobs": ["index.json"]},
        {"name": "ok", "blobs": ["name"]},
        {"name": "ok", "blobs": ["f"], "blob_dicts": ["f"]},
        {"name": "ok", "properties": {"p": "float"}},
    ],
)
def test_bad_type_definitions_are_refused(catalog: glarelite.Catalog, kwargs: dict) -> None:
    name = kwargs.pop("name")
    with pytest.raises(InvalidInput):
        catalog.define_type(name, **kwargs)


def test_unknown_type_is_not_found(catalog: glarelite.Catalog) -> None:
    with pytest.raises(NotFound, match="no artifact type"):
        catalog.create("nope", "x")


# -- create / get -------------------------------------------------------------------------
def test_create_defaults_and_get(catalog: glarelite.Catalog) -> None:
    a = catalog.create("images", "ubuntu")
    assert (a.status, a.visibility, a.version, a.owner) == ("drafted", "private", "0.0.0", "admin")
    assert a.description == "" and a.tags == () and a.properties == {"arch": [], "labels": {}}
    assert a.blobs == {"file": None, "regions": {}}
    got = catalog.get(a.id)
    assert got == a
    assert got.to_dict()["url"] == f"/artifacts/images/{a.id}"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("1", "1.0.0"),
        ("1.2", "1.2.0"),
        ("1-beta", "1.0.0-beta"),
        ("1.2.3.4", "1.2.3+4"),
        (None, "0.0.0"),
    ],
)
def test_versions_are_coerced(
    catalog: glarelite.Catalog, given: str | None, canonical: str
) -> None:
    assert catalog.create("images", "n", version=given).version == canonical


@pytest.mark.parametrize("bad", ["", "-1", "invalid", "1.0.0-01"])
def test_bad_versions_are_refused(catalog: glarelite.Catalog, bad: str) -> None:
    with pytest.raises(InvalidInput, match="version"):
        catalog.create("images", "n", version=bad)
    assert catalog.list("images").items == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "x" * 256},
        {"description": "d" * 4097},
        {"tags": ["a,b"]},
        {"tags": ["a/b"]},
        {"tags": [""]},
        {"properties": {"unknown": 1}},
        {"properties": {"min_ram": "lots"}},
        {"properties": {"min_ram": True}},
        {"properties": {"ratio": "nan"}},
        {"properties": {"secure": "maybe"}},
        {"properties": {"arch": "x86"}},
        {"properties": {"arch": list(range(256))}},
        {"properties": {"labels": {"": "x"}}},
        {"visibility": "shared"},
    ],
)
def test_bad_input_writes_nothing(catalog: glarelite.Catalog, kwargs: dict) -> None:
    name = kwargs.pop("name", "n")
    with pytest.raises(InvalidInput):
        catalog.create("images", name, **kwargs)
    assert catalog.list("images").total == 0


def test_uniqueness_private_per_owner_public_global(catalog: glarelite.Catalog) -> None:
    catalog.create("images", "u", version="1.0", owner="alice")
    with pytest.raises(Conflict):
        catalog.create("images", "u", version="1.0.0", owner="alice")  # 1.0 == 1.0.0
    b = catalog.create("images", "u", version="1.0", owner="bob")
    catalog.create("images", "u", version="1.0.0+b1", owner="alice")  # build is identity
    catalog.update(b.id, properties={"os": "linux"})
    catalog.activate(b.id)
    catalog.publish(b.id)
    a2 = catalog.create("images", "u", version="1.0", owner="carol")  # public twin: fine
    catalog.update(a2.id, properties={"os": "linux"})
    catalog.activate(a2.id)
    with pytest.raises(Conflict, match="public artifact"):
        catalog.publish(a2.id)
    assert catalog.get(a2.id).visibility == "private"


# -- lifecycle ------------------------------------------------------------------------------
def test_lifecycle_transitions(catalog: glarelite.Catalog) -> None:
    a = catalog.create("images", "u")
    with pytest.raises(IllegalTransition, match="required properties not set: os"):
        catalog.activate(a.id)
    with pytest.raises(IllegalTransition):
        catalog.deactivate(a.id)
    with pytest.raises(IllegalTransition):
        catalog.reactivate(a.id)
    catalog.update(a.id, properties={"os": ""})  # "" counts as set
    act = catalog.activate(a.id)
    assert act.status == "active" and act.activated_at
    assert catalog.activate(a.id).status == "active"  # no-op
    assert catalog.deactivate(a.id).status == "deactivated"
    with pytest.raises(IllegalTransition):
        catalog.update(a.id, properties={"min_ram": 1})  # deactivated refuses even mutable
    assert catalog.reactivate(a.id).status == "active"
    catalog.delete(a.id)
    with pytest.raises(NotFound):
        catalog.get(a.id)
    with pytest.raises(NotFound):
        catalog.activate(a.id)


def test_active_artifacts_freeze_name_version_and_immutable_properties(
    catalog: glarelite.Catalog,
) -> None:
    a = catalog.create("images", "u", version="1", properties={"os": "linux", "ratio": 1.5})
    catalog.activate(a.id)
    for change in ({"name": "v"}, {"version": "2"}):
        with pytest.raises(IllegalTransition):
            catalog.update(a.id, **change)
    with pytest.raises(IllegalTransition, match="ratio"):
        catalog.update(a.id, properties={"ratio": 2.0})
    updated = catalog.update(
        a.id, description="new", add_tags=["t1", "t2"], properties={"min_ram": 512}
    )
    assert updated.description == "new" and updated.tags == ("t1", "t2")
    assert updated.properties["min_ram"] == 512
    assert catalog.update(a.id, remove_tags=["t1"]).tags == ("t2",)
    catalog.update(a.id, name="u", version="1.0.0")  # unchanged values are fine


def test_setting_property_to_none(catalog: glarelite.Catalog) -> None:
    a = catalog.create("images", "u", properties={"arch": ["x"], "labels": {"k": "v"}, "ratio": 2})
    b = catalog.update(a.id, properties={"arch": None, "labels": None, "ratio": None})
    assert b.properties == {"arch": [], "labels": {}}


def test_publish_rules(catalog: glarelite.Catalog) -> None:
    a = catalog.create("images", "u", properties={"os": "x"})
    with pytest.raises(IllegalTransition, match="active"):
        catalog.publish(a.id)
    catalog.activate(a.id)
    assert catalog.publish(a.id).visibility == "public"
    with pytest.raises(IllegalTransition, match="private again"):
        catalog.update(a.id, visibility="private")


# -- ownership ---------------------------------------------------------------------------
def test_scopes_see_own_plus_public(catalog: glarelite.Catalog) -> None:
    alice, bob = catalog.scoped("alice"), catalog.scoped("bob")
    a = alice.create("images", "a", properties={"os": "x"})
    b = bob.create("images", "b")
    assert a.owner == "alice"
    assert [x.id for x in alice.list("images").items] == [a.id]
    with pytest.raises(NotFound):
        alice.get(b.id)  # invisible: never "forbidden"
    with pytest.raises(NotFound):
        alice.update(b.id, description="x")
    alice.activate(a.id)
    catalog.publish(a.id)  # publishing is an admin's action (Glare's artifact:publish)
    assert bob.get(a.id).id == a.id
    with pytest.raises(Forbidden):
        bob.update(a.id, description="x")
    with pytest.raises(Forbidden):
        bob.delete(a.id)
    with pytest.raises(Forbidden):
        bob.create("images", "c", owner="alice")
    assert {x.id for x in catalog.list("images").items} == {a.id, b.id}  # admin sees all
    with pytest.raises(Forbidden):
        alice.define_type("other")


def test_closing_a_scoped_view_leaves_the_parent_open(tmp_path: Path) -> None:
    """Issue 15 item 7: the catalog returned by open() owns its core; a scoped view (one
    per request, as docs/embedding.md recommends) does not, and closing it is harmless."""
    with glarelite.open(tmp_path / "c.db") as cat:
        cat.define_type("images", blobs=["file"])
        with cat.scoped("alice") as alice:
            a = alice.create("images", "a")
        alice.close()  # twice: still nothing closed
        assert cat.get(a.id).owner == "alice"
        assert cat.scoped("alice").get(a.id).id == a.id
        with cat.scoped(admin=True) as admin:
            admin.upload(a.id, "file", [b"bytes"])
        with cat.open_blob(a.id, "file") as f:
            assert f.read() == b"bytes"
    with pytest.raises(sqlite3.ProgrammingError):
        cat.get(a.id)  # the owner's close did close it
