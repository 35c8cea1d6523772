"""The change journal (issue 18 item 1): every write that changes what a mirror could
publish gets a serial, readers page through "what changed since N", trimming is signalled,
concurrent writers leave no gap, and a version-1 catalog migrates with its history."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, example, given, settings

import glarelite
from glarelite import _db, _journal
from glarelite.errors import (
    Conflict,
    Forbidden,
    GlareliteError,
    IllegalTransition,
    InvalidInput,
    JournalTrimmed,
    NotFound,
)

V1_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "schema_v1.sql"
FAST = glarelite.HttpSettings(
    retry=glarelite.RetryPolicy(total=1, backoff_factor=0.01, backoff_max=0.05, jitter=0.0),
    connect_timeout=2.0,
    read_timeout=5.0,
)


def changed_since(cat: glarelite.Catalog, since: int, limit: int = 1000) -> dict[str, int]:
    """artifact id -> newest serial, over every page after ``since``."""
    out: dict[str, int] = {}
    while True:
        page = cat.changes(since, limit=limit)
        if not page:
            return out
        serials = [c.serial for c in page]
        assert serials == sorted(serials) and serials[0] > since
        assert len({c.artifact_id for c in page}) == len(page)  # each artifact once a page
        out.update({c.artifact_id: c.serial for c in page})
        since = page[-1].serial


def journal_rows(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT serial, artifact_id FROM changes ORDER BY serial").fetchall()
    finally:
        conn.close()


def open_with_origin(tmp_path: Path) -> glarelite.Catalog:
    cat = glarelite.open(
        tmp_path / "c.db",
        storage=str(tmp_path / "blobs"),
        allow_hosts=["127.0.0.1"],
        settings=glarelite.CatalogSettings(http=FAST),
    )
    cat.define_type(
        "images",
        blobs=["file"],
        blob_dicts=["regions"],
        properties={"os": "string", "min_ram": glarelite.Property("integer", mutable=True)},
    )
    return cat


def test_each_write_kind_bumps_the_serial_and_names_the_artifact(tmp_path: Path, origin) -> None:  # type: ignore[no-untyped-def]
    with open_with_origin(tmp_path) as cat:
        each_write_kind(cat, origin)


def each_write_kind(cat: glarelite.Catalog, origin: Any) -> None:
    assert cat.serial() == 0 and cat.changes(0) == []
    bystander = cat.create("images", "bystander", properties={"os": "linux"})
    origin.add("/x.bin", data=b"external")
    art: dict[str, Any] = {}

    def create() -> None:
        art["a"] = cat.create("images", "a", version="1.0.0", properties={"os": "linux"})

    steps = [
        ("create", create),
        ("update", lambda: cat.update(art["a"].id, description="new text", add_tags=["x"])),
        ("upload", lambda: cat.upload(art["a"].id, "file", b"internal bytes")),
        ("upload to a dict", lambda: cat.upload(art["a"].id, "regions/eu", b"eu")),
        ("add_location", lambda: cat.add_location(art["a"].id, "regions/us", origin.url("/x.bin"))),
        ("remove_blob", lambda: cat.remove_blob(art["a"].id, "regions/eu")),
        ("activate", lambda: cat.activate(art["a"].id)),
        ("publish", lambda: cat.publish(art["a"].id)),
        ("update active", lambda: cat.update(art["a"].id, properties={"min_ram": 4})),
        ("deactivate", lambda: cat.deactivate(art["a"].id)),
        ("reactivate", lambda: cat.reactivate(art["a"].id)),
        ("delete", lambda: cat.delete(art["a"].id)),
    ]
    for what, step in steps:
        before = cat.serial()
        step()
        assert cat.serial() > before, what
        page = cat.changes(before)
        assert [(c.artifact_id, c.type_name) for c in page] == [(art["a"].id, "images")], what
        assert page[-1].serial == cat.serial(), what
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", page[-1].at), what
    assert bystander.id in changed_since(cat, 0)
    assert bystander.id not in changed_since(cat, 1)
    with pytest.raises(NotFound):  # the journal names it; the catalog says it is gone
        cat.get(art["a"].id)


def test_check_journals_an_upstream_change_and_its_fix_not_a_plain_reverify(
    tmp_path: Path,
    origin,  # type: ignore[no-untyped-def]
) -> None:
    # hit 0 registers; checks see: the same bytes, other bytes, the registered bytes again
    origin.add("/m", versions=[b"one", b"one", b"two", b"one"])
    with open_with_origin(tmp_path) as cat:
        a = cat.create("images", "a")
        cat.add_location(a.id, "file", origin.url("/m"))
        cat.activate(a.id)

        before = cat.serial()
        assert [r.state for r in cat.check()] == ["unchanged"]
        assert cat.serial() == before  # only verified_at moved: nothing to publish
        assert [r.state for r in cat.check()] == ["changed"]
        assert [c.artifact_id for c in cat.changes(before)] == [a.id]
        assert cat.get(a.id).blob("file").upstream == "changed"
        fixed_from = cat.serial()
        assert [r.state for r in cat.check()] == ["unchanged"]
        assert [c.artifact_id for c in cat.changes(fixed_from)] == [a.id]
        assert cat.get(a.id).blob("file").upstream == "ok"


def test_a_refused_write_adds_nothing(catalog) -> None:  # type: ignore[no-untyped-def]
    cat = catalog
    a = cat.create("images", "a", version="1.0.0", properties={"os": "linux"})
    cat.upload(a.id, "file", b"bytes")
    cat.activate(a.id)
    alice = cat.scoped("alice")
    mine = alice.create("images", "mine", properties={"os": "linux"})
    rows = journal_rows(Path(cat.path))
    refused = [
        (Conflict, lambda: cat.create("images", "a", version="1.0.0", properties={"os": "x"})),
        (InvalidInput, lambda: cat.create("images", "b", properties={"os": 3})),
        (InvalidInput, lambda: cat.update(a.id, properties={"nope": 1})),
        (IllegalTransition, lambda: cat.update(a.id, name="renamed")),
        (IllegalTransition, lambda: cat.upload(a.id, "file", b"other")),
        (IllegalTransition, lambda: cat.reactivate(a.id)),
        (NotFound, lambda: alice.update(a.id, description="not mine")),
        (NotFound, lambda: cat.scoped("bob").delete(mine.id)),
        (NotFound, lambda: cat.remove_blob(mine.id, "file")),
        (InvalidInput, lambda: cat.upload(mine.id, "nofield", b"x")),
        (Conflict, lambda: cat.define_type("images", blobs=["other"])),
    ]
    for kind, call in refused:
        with pytest.raises(kind):
            call()
    assert journal_rows(Path(cat.path)) == rows


def test_a_failed_upload_journals_what_readers_could_see(catalog) -> None:  # type: ignore[no-untyped-def]
    """An upload whose bytes do not match is refused after it reserved the slot: readers
    could see the slot saving, so the journal names the artifact (never a missed state),
    and the artifact ends as it was."""
    a = catalog.create("images", "a", properties={"os": "linux"})
    view = catalog.get(a.id).to_dict()
    before = catalog.serial()
    with pytest.raises(GlareliteError):
        catalog.upload(a.id, "file", b"bytes", sha256="0" * 64)
    assert catalog.get(a.id).to_dict() == view
    assert set(changed_since(catalog, before)) <= {a.id}


def test_reading_and_trimming_the_journal_is_admin_only(catalog) -> None:  # type: ignore[no-untyped-def]
    alice = catalog.scoped("alice")
    alice.create("images", "mine", properties={"os": "linux"})
    assert alice.serial() == catalog.serial() == 1
    with pytest.raises(Forbidden):
        alice.changes(0)
    with pytest.raises(Forbidden):
        alice.trim_journal(keep=0)
    assert len(catalog.changes(0)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"since": -1}, "since"),
        ({"since": True}, "since"),
        ({"since": "0"}, "since"),
        ({"since": 0, "limit": 0}, "limit"),
        ({"since": 0, "limit": _journal.MAX_LIMIT + 1}, "limit"),
        ({"since": 0, "limit": 2.5}, "limit"),
    ],
)
def test_changes_refuses_bad_arguments(catalog, kwargs: dict[str, Any], match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=match):
        catalog.changes(**kwargs)


def test_trim_signals_readers_behind_it_and_serials_are_never_reused(catalog) -> None:  # type: ignore[no-untyped-def]
    ids = [catalog.create("images", f"a{i}", properties={"os": "x"}).id for i in range(10)]
    assert catalog.serial() == 10
    for bad in ({}, {"before": 3, "keep": 3}, {"before": -1}, {"keep": "2"}, {"keep": False}):
        with pytest.raises(InvalidInput):
            catalog.trim_journal(**bad)
    assert catalog.trim_journal(before=4) == 3  # serials 1..3 go
    assert [c.artifact_id for c in catalog.changes(3)] == ids[3:]
    for behind in (0, 1, 2):
        with pytest.raises(JournalTrimmed, match="walk the whole catalog"):
            catalog.changes(behind)
    assert catalog.trim_journal(before=2) == 0  # already gone
    assert catalog.trim_journal(keep=2) == 5  # all but serials 9 and 10
    with pytest.raises(JournalTrimmed):
        catalog.changes(7)
    assert [c.serial for c in catalog.changes(8)] == [9, 10]
    assert catalog.trim_journal(keep=0) == 1  # the newest entry stays: it holds the serial
    assert catalog.changes(10) == [] and catalog.serial() == 10
    assert [c.serial for c in catalog.changes(9)] == [10]
    with pytest.raises(JournalTrimmed):
        catalog.changes(8)
    # a serial beyond the catalog's: another catalog, or one restored from a backup
    with pytest.raises(JournalTrimmed, match="beyond"):
        catalog.changes(11)
    with pytest.raises(LookupError):  # the builtin it also is
        catalog.changes(5)
    assert catalog.trim_journal(before=10**9) == 0  # clamped to the newest serial
    assert journal_rows(Path(catalog.path)) == [(10, ids[9])]
    # the next write continues after 10
    catalog.update(ids[0], description="after the trim")
    assert [(c.serial, c.artifact_id) for c in catalog.changes(10)] == [(11, ids[0])]


def test_trim_goes_in_bounded_transactions(catalog, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_journal, "TRIM_CHUNK", 3)
    for i in range(10):
        catalog.create("images", f"a{i}", properties={"os": "x"})
    commits = []
    real_write = catalog._core.database.write

    def counting_write():  # type: ignore[no-untyped-def]
        commits.append(1)
        return real_write()

    monkeypatch.setattr(catalog._core.database, "write", counting_write)
    assert catalog.trim_journal(keep=1) == 9
    assert len(commits) == 3 + 1  # 3 + 3 + 3 rows, then one that finds nothing left
    assert [c.serial for c in catalog.changes(9)] == [10]


def test_trim_keeps_what_was_newest_when_it_began_while_writers_go_on(
    catalog,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_journal, "TRIM_CHUNK", 2)
    for i in range(6):
        catalog.create("images", f"a{i}", properties={"os": "x"})
    real_write = catalog._core.database.write
    with glarelite.open(catalog.path) as other:  # another connection writes between chunks
        made = []

        def write_between():  # type: ignore[no-untyped-def]
            assert len(made) < 20, "trim_journal chases the writers"  # fail, never hang
            made.append(other.create("images", f"b{len(made)}", properties={"os": "x"}).id)
            return real_write()

        monkeypatch.setattr(catalog._core.database, "write", write_between)
        # b0 (serial 7) commits before the first transaction, which fixes the target:
        # keep 6 and 7, drop 1..5, in 3 transactions (2, 2, 1) and one that finds it done
        assert catalog.trim_journal(keep=2) == 5  # not chasing b1.. as they commit
    monkeypatch.undo()
    assert len(made) == 4
    assert [c.serial for c in catalog.changes(5)] == [6, 7, 8, 9, 10]


def test_blob_trigger_watches_every_column_but_verified_at(tmp_path: Path) -> None:
    """A column added to blobs later must be journaled too (or excluded on purpose)."""
    glarelite.open(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(blobs)")}
    sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'journal_blob_update'"
    ).fetchone()[0]
    conn.close()
    watched = set(re.findall(r"old\.(\w+) IS NOT new\.\1", sql))
    assert watched == columns - {"verified_at"}


def test_a_create_is_one_journal_entry_and_no_trigger_runs_on_the_artifact_insert(
    catalog,  # type: ignore[no-untyped-def]
) -> None:
    """A create writes the artifact, its tags and its properties in one transaction: one
    serial step, stamped with the artifact's own time. The create writes it itself: a
    trigger on the artifact insert makes SQLite keep a statement journal for every create
    (pages copied, a temporary file when it spills), ~8% of creates/s."""
    conn = sqlite3.connect(catalog.path)
    try:
        on_artifacts = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'artifacts'"
        ).fetchall()
    finally:
        conn.close()
    assert on_artifacts  # updates and deletes are journaled by triggers
    assert [name for name, sql in on_artifacts if re.search(r"\bINSERT\s+ON\b", sql, re.I)] == []
    kinds = [
        {"os": "linux"},
        {"os": "bsd", "arch": ["x86", "arm"], "labels": {"a": "1", "b": "2"}, "min_ram": 3},
    ]
    for i, props in enumerate(kinds * 3):
        before = journal_rows(Path(catalog.path))
        art = catalog.create("images", f"a{i}", tags=["t1", "t2", "t3"][: i % 4], properties=props)
        added = journal_rows(Path(catalog.path))[len(before) :]
        assert added == [(catalog.serial(), art.id)]
        assert catalog.changes(added[0][0] - 1) == [
            glarelite.Change(added[0][0], art.id, "images", art.updated_at)
        ]


def test_every_insert_into_artifacts_writes_the_journal() -> None:
    """The journal of a create is written by the code that inserts the artifact (see the
    test above), so each function of glarelite that inserts into ``artifacts`` calls
    ``_journal.record`` in the same transaction. The mirror reader's scratch databases
    (_shardview) have no journal: their rows are a copy of a tree, not a change."""
    import ast

    insert = re.compile(r"INSERT\s+(?:OR\s+\w+\s+)?INTO\s+artifacts\b", re.I)
    package = Path(_journal.__file__).resolve().parent
    found: dict[str, bool] = {}
    for source in sorted(package.rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            nodes = list(ast.walk(fn))
            if not any(
                isinstance(n, ast.Constant) and isinstance(n.value, str) and insert.search(n.value)
                for n in nodes
            ):
                continue
            journals = any(
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr == "record"
                and isinstance(n.func.value, ast.Name)
                and n.func.value.id == "_journal"
                for n in nodes
            )
            found[f"{source.relative_to(package)}:{fn.name}"] = journals
    assert found.pop("_shardview.py:insert_rows") is False  # scratch: no journal there
    assert found == {"catalog.py:create": True}


# -- migration -----------------------------------------------------------------------


def make_v1_catalog(path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A catalog made by the version-1 code path (schema 1, no migrations), with data."""
    with monkeypatch.context() as m:
        m.setattr(_db, "schema_text", lambda: V1_SCHEMA.read_text(encoding="utf-8"))
        m.setattr(_db, "SCHEMA_VERSION", 1)
        m.setattr(_db, "MIGRATIONS", {})
        m.setattr(_journal, "record", lambda *args: None)  # version 1 had no journal
        with glarelite.open(path, storage=store) as cat:
            cat.define_type("images", blobs=["file"])
            cat.define_type("charts", blobs=["file"])
            ids = []
            for i in range(5):
                a = cat.create("images" if i % 2 else "charts", f"a{i}")
                cat.upload(a.id, "file", f"bytes {i}".encode())
                ids.append(a.id)
            cat.activate(ids[0])
            cat.delete(ids[4])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert (
        conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'changes'").fetchone()[0] == 0
    )
    conn.close()
    return ids[:4]


def schema_of(path: Path) -> set[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return {
            (kind, name, re.sub(r"\s+", " ", sql or ""))
            for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
        }
    finally:
        conn.close()


def test_a_version_1_catalog_migrates_with_every_artifact_in_the_journal(
    tmp_path: Path, memory_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    ids = make_v1_catalog(path, memory_store, monkeypatch)
    with glarelite.open(path) as cat:
        views = {i: cat.get(i).to_dict() for i in ids}
        page = cat.changes(0)
        # every live artifact once, oldest first, as on a catalog that always had a journal
        assert [c.artifact_id for c in page] == ids
        assert [c.serial for c in page] == [1, 2, 3, 4]
        assert [c.type_name for c in page] == ["charts", "images", "charts", "images"]
        assert cat.serial() == 4
        assert cat.open_blob(ids[1], "file").read() == b"bytes 1"
        cat.update(ids[2], description="after the migration")
        assert [c.artifact_id for c in cat.changes(4)] == [ids[2]]
    with glarelite.open(path) as cat:  # reopening does not migrate again
        assert cat.serial() == 5
        assert {i: cat.get(i).to_dict() for i in ids if i != ids[2]} == {
            i: v for i, v in views.items() if i != ids[2]
        }
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION
    conn.close()
    glarelite.open(tmp_path / "new.db").close()
    assert schema_of(path) == schema_of(tmp_path / "new.db")


def test_a_version_1_catalog_opened_read_only_says_it_has_no_journal(
    tmp_path: Path, memory_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    make_v1_catalog(path, memory_store, monkeypatch)
    database = _db.Database(path, readonly=True)  # read-only opens never migrate
    try:
        for call in (lambda: _journal.serial(database), lambda: _journal.changes(database, 0, 9)):
            with pytest.raises(NotFound, match="no change journal"):
                call()
    finally:
        database.close()
    glarelite.open(path).close()  # migrates
    database = _db.Database(path, readonly=True)
    try:
        assert _journal.serial(database) == 4
    finally:
        database.close()


V3_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "schema_v3.sql"


def test_a_version_3_catalog_migrates_keeping_its_journal_and_creates_add_one_entry(
    tmp_path: Path, memory_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions 2 and 3 journaled a create by a trigger on the artifact insert; version 4
    by the create itself. The migration drops the trigger (else every create would be
    journaled twice) and keeps every entry, the trim floor and the serial."""
    path = tmp_path / "v3.db"
    with monkeypatch.context() as m:
        m.setattr(_db, "schema_text", lambda: V3_SCHEMA.read_text(encoding="utf-8"))
        m.setattr(_db, "SCHEMA_VERSION", 3)
        m.setattr(_db, "MIGRATIONS", {})
        m.setattr(_journal, "record", lambda *args: None)  # version 3: the trigger did it
        with glarelite.open(path, storage=memory_store) as cat:
            cat.define_type("images", blobs=["file"])
            ids = [cat.create("images", f"a{i}").id for i in range(4)]
            cat.upload(ids[1], "file", b"bytes")
            cat.update(ids[0], description="changed")
            assert cat.trim_journal(before=3) == 2
            before = [(c.serial, c.artifact_id, c.at) for c in cat.changes(2)]
            serial = cat.serial()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'journal_artifact_insert'"
    ).fetchone() == (1,)
    conn.close()
    assert serial > 4 and len(before) == 4

    with glarelite.open(path, storage=memory_store) as cat:
        assert cat.serial() == serial
        assert [(c.serial, c.artifact_id, c.at) for c in cat.changes(2)] == before
        with pytest.raises(JournalTrimmed):
            cat.changes(1)
        rows = journal_rows(path)
        new = cat.create("images", "after")
        assert journal_rows(path) == [*rows, (serial + 1, new.id)]
        assert cat.open_blob(ids[1], "file").read() == b"bytes"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION == 4
    conn.close()
    glarelite.open(tmp_path / "new.db").close()
    assert schema_of(path) == schema_of(tmp_path / "new.db")


# -- many writers ------------------------------------------------------------------

WRITER = """
import sys, glarelite
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with glarelite.open(path) as cat:
    for i in range(n):
        a = cat.create("t", f"{tag}-{i}", version="1.0")
        if i % 3 == 0:
            cat.update(a.id, description=f"touched by {tag}")
        if i % 7 == 0:
            cat.delete(a.id)
print("ok")
"""


def test_concurrent_writer_processes_leave_no_gap_a_reader_could_skip(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with glarelite.open(path) as cat:
        cat.define_type("t")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{k}", "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    seen: set[str] = set()
    since = 0
    polls = 0
    with glarelite.open(path) as reader:
        deadline = time.monotonic() + 300
        # follow the journal while the writers run, small pages, from the last serial seen
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            page = reader.changes(since, limit=7)
            if page:
                assert page[0].serial > since
                seen.update(c.artifact_id for c in page)
                since = page[-1].serial
            polls += 1
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err
            assert out.strip() == "ok"
        seen.update(changed_since(reader, since))
        final = reader.serial()
    rows = journal_rows(path)
    assert [s for s, _ in rows] == list(range(1, final + 1))  # allocated without a gap
    assert seen == {a for _, a in rows}  # the follower, paging on, missed none
    assert len(seen) == 450
    assert polls > 1


# -- a random sequence of writes is fully reflected ------------------------------------

SLOTS = ("file", "regions/eu")
OPS = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 3), st.sampled_from(["1.0", "2.0"])),
    st.tuples(st.just("update"), st.integers(0, 2), st.text("abc", max_size=3)),
    st.tuples(st.just("tags"), st.integers(0, 2), st.lists(st.sampled_from("xyz"), max_size=2)),
    st.tuples(st.just("ram"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(
        st.sampled_from(["activate", "deactivate", "reactivate", "publish"]), st.integers(0, 2)
    ),
    st.tuples(st.just("delete"), st.integers(0, 2)),
    st.tuples(st.just("upload"), st.integers(0, 2), st.sampled_from(SLOTS), st.binary(max_size=3)),
    st.tuples(st.just("remove_blob"), st.integers(0, 2), st.sampled_from(SLOTS)),
    st.tuples(st.just("bad_upload"), st.integers(0, 2), st.sampled_from(SLOTS)),
)


def show_views(cat: glarelite.Catalog, ids: list[str]) -> dict[str, Any]:
    """The show view of every artifact ever created (None once gone). verified_at is left
    out on purpose: check() refreshing it alone is not journaled (see schema.sql)."""
    views: dict[str, Any] = {}
    for artifact_id in ids:
        try:
            view = cat.get(artifact_id).to_dict()
        except NotFound:
            views[artifact_id] = None
            continue
        views[artifact_id] = re.sub(r'"verified_at": "[^"]*"', "", repr(view))
    return views


def apply(cat: glarelite.Catalog, ids: list[str], op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "create":
        ids.append(cat.create("images", f"n{op[1]}", version=op[2], properties={"os": "l"}).id)
        return
    if not ids:
        return
    target = ids[op[1] % len(ids)]
    if kind == "update":
        cat.update(target, description=op[2])
    elif kind == "tags":
        cat.update(target, tags=op[2])
    elif kind == "ram":
        cat.update(target, properties={"min_ram": op[2]})
    elif kind in ("activate", "deactivate", "reactivate", "publish", "delete"):
        getattr(cat, kind)(target)
    elif kind == "upload":
        cat.upload(target, op[2], op[3])
    elif kind == "remove_blob":
        cat.remove_blob(target, op[2])
    elif kind == "bad_upload":
        cat.upload(target, op[2], b"xyz", sha256="0" * 64)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(OPS, max_size=25), page=st.integers(1, 4))
# a write that touches only the blobs table (remove_blob does not bump updated_at)
@example(
    ops=[("create", 0, "1.0"), ("upload", 0, "file", b"a"), ("remove_blob", 0, "file")], page=1
)
def test_a_random_sequence_of_writes_is_fully_reflected(ops: list[Any], page: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = f"memory://journal-{uuid.uuid4().hex}"
        with glarelite.open(Path(tmp) / "c.db", storage=store) as cat:
            cat.define_type(
                "images",
                blobs=["file"],
                blob_dicts=["regions"],
                properties={"os": "string", "min_ram": glarelite.Property("integer", mutable=True)},
            )
            ids: list[str] = []
            # (serial, views) remembered before every operation
            marks = []
            last = cat.serial()
            for op in ops:
                marks.append((cat.serial(), show_views(cat, ids)))
                with contextlib.suppress(GlareliteError):
                    apply(cat, ids, op)
                assert cat.serial() >= last  # never goes back
                last = cat.serial()
            now = show_views(cat, ids)
            for serial, views in marks:
                changed = {i for i in now if views.get(i, "absent") != now[i]}
                journaled = changed_since(cat, serial, limit=page)
                assert changed <= set(journaled), (serial, changed - set(journaled))
                assert all(s <= last for s in journaled.values())


@pytest.fixture
def tiny_catalog(tmp_path: Path, memory_store: str) -> Iterator[glarelite.Catalog]:
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as cat:
        cat.define_type("t")
        yield cat


def test_changes_pages_each_artifact_once_at_its_newest_serial(tiny_catalog) -> None:  # type: ignore[no-untyped-def]
    cat = tiny_catalog
    a = cat.create("t", "a").id  # 1
    b = cat.create("t", "b").id  # 2
    cat.update(a, description="x")  # 3
    c = cat.create("t", "c").id  # 4
    cat.update(b, description="y")  # 5
    assert [(x.serial, x.artifact_id) for x in cat.changes(0)] == [(3, a), (4, c), (5, b)]
    assert [(x.serial, x.artifact_id) for x in cat.changes(0, limit=3)] == [(2, b), (3, a)]
    assert [(x.serial, x.artifact_id) for x in cat.changes(3, limit=3)] == [(4, c), (5, b)]
    assert cat.changes(5) == []
