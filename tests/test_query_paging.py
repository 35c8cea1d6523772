"""Keyset paging in the default order (``created_at`` descending, ``id`` ascending) when
many artifacts share one ``created_at`` (a bulk import, a clock with coarse ticks): every
page is an index range scan, whatever its place in the tie, and paging stays exact with
deletes between pages. Reported: at 1,000,000 artifacts with one timestamp, each page
sorted the whole tie group in a temporary B-tree, so ``iter_all`` made no headway."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glarelite
from glarelite import _db
from glarelite._query import select_page
from glarelite.types import make_type
from tests.fixtures.rows import new_db, ts
from tests.test_journal import schema_of

THING = make_type("thing")
OTHER = make_type("other")
INSERT = (
    "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility,"
    " status, created_at, updated_at) VALUES (?, ?, ?, '0.0.0', '', ?, ?, ?, ?, ?)"
)


def fill(conn: sqlite3.Connection, tied: int, *, spread: int = 0) -> None:
    """``tied`` artifacts of type thing sharing one created_at, ``spread`` more with
    their own (older and newer ones), a few of type other, some deleted or private."""
    rows = []
    for i in range(tied + spread):
        at = ts(1000) if i < tied else ts(i % 2 * 2000 + i)
        status = "deleted" if i % 17 == 0 else "active"
        visibility = "private" if i % 5 == 0 else "public"
        rows.append((str(uuid.uuid4()), "thing", f"n{i}", "alice", visibility, status, at, at))
    rows += [(str(uuid.uuid4()), "other", f"o{i}", "bob", "public", "active", ts(1000), ts(1000))
             for i in range(20)]  # fmt: skip
    conn.executemany(INSERT, rows)


class Recorder:
    """Runs the page queries on ``conn`` and keeps each statement that reads rows."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.queries: list[tuple[str, list[Any]]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        if "ORDER BY" in sql:
            self.queries.append((sql, list(params)))
        return self.conn.execute(sql, params)


def walk(
    conn: Any, *, type_name: str | None, owner: str | None, limit: int, sort: str | None = None
) -> Iterator[tuple[list[str], str | None]]:
    marker = None
    while True:
        rows, marker = select_page(
            conn,
            type_name=type_name,
            atype=None,
            owner=owner,
            filters=[],
            sort=sort,
            limit=limit,
            marker=marker,
            latest=False,
        )
        yield [r[0] for r in rows], marker
        if marker is None:
            return


def reference(conn: sqlite3.Connection, type_name: str | None, owner: str | None) -> list[str]:
    """The default order computed in Python from every row (GLARE-SEMANTICS.md)."""
    rows = conn.execute(
        "SELECT id, type_name, owner, visibility, status, created_at FROM artifacts"
    ).fetchall()
    keep = [
        r
        for r in rows
        if r[4] != "deleted"
        and (type_name is None or r[1] == type_name)
        and (owner is None or ((r[2] == owner or r[3] == "public") and r[4] != "deactivated"))
    ]
    keep.sort(key=lambda r: r[0])  # id ascending within one created_at ...
    keep.sort(key=lambda r: r[5], reverse=True)  # ... created_at descending (stable)
    return [r[0] for r in keep]


def plan(conn: sqlite3.Connection, sql: str, params: list[Any]) -> str:
    return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize(("type_name", "owner"), [("thing", None), ("thing", "bob"), (None, None)])
def test_every_default_order_page_is_an_index_range_scan(
    type_name: str | None, owner: str | None
) -> None:
    conn = new_db(THING, OTHER)
    fill(conn, 600, spread=60)
    spy = Recorder(conn)
    walked = [i for got, _ in walk(spy, type_name=type_name, owner=owner, limit=50) for i in got]
    assert walked == reference(conn, type_name, owner)
    index = "artifacts_by_type_created" if type_name else "artifacts_by_created"
    assert len(spy.queries) > 5
    for sql, params in spy.queries:
        p = plan(conn, sql, params)
        assert f"USING INDEX {index}" in p or f"USING COVERING INDEX {index}" in p, p
        assert "TEMP B-TREE" not in p, p  # no sort at all, not even of one tie group


def page_steps(tied: int, position: float, limit: int = 100) -> int:
    """SQLite VM instructions (in thousands) one default-order page costs that starts
    ``position`` of the way into a tie group of ``tied`` artifacts: work, not time."""
    conn = new_db(THING, OTHER)
    fill(conn, tied)
    full = reference(conn, "thing", None)
    marker = full[int(position * (len(full) - limit - 1))] if position else None
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 1000)
    select_page(
        conn,
        type_name="thing",
        atype=None,
        owner=None,
        filters=[],
        sort=None,
        limit=limit,
        marker=marker,
        latest=False,
    )
    conn.set_progress_handler(None, 0)
    return steps[0]


@pytest.mark.parametrize("position", [0.0, 0.5, 0.99])
def test_a_page_costs_the_same_whatever_the_size_of_the_tie(position: float) -> None:
    small, large = page_steps(500, position), page_steps(8000, position)
    assert large <= small * 2 + 5, (small, large)


# -- exactness ----------------------------------------------------------------------------


@st.composite
def catalogs(draw: st.DrawFn) -> list[tuple[str, str, str, str, str, int]]:
    """Artifacts (id, type, owner, visibility, status, created_at second) whose created_at
    is one of very few values: most of them tie."""
    n = draw(st.integers(0, 40))
    seconds = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    return [
        (
            f"{i:03d}-{draw(st.sampled_from('abc'))}",
            draw(st.sampled_from(["thing", "thing", "other"])),
            draw(st.sampled_from(["alice", "bob"])),
            draw(st.sampled_from(["public", "private"])),
            draw(st.sampled_from(["active", "active", "drafted", "deactivated", "deleted"])),
            draw(st.sampled_from(seconds)),
        )
        for i in range(n)
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    artifacts=catalogs(),
    type_name=st.sampled_from(["thing", None]),
    owner=st.sampled_from([None, "bob"]),
    limit=st.integers(1, 6),
    sort=st.sampled_from([None, "created_at", "created_at:asc"]),
    data=st.data(),
)
def test_paging_is_exact_through_ties_with_deletes_between_pages(
    artifacts: list[tuple[str, str, str, str, str, int]],
    type_name: str | None,
    owner: str | None,
    limit: int,
    sort: str | None,
    data: st.DataObject,
) -> None:
    conn = new_db(THING, OTHER)
    conn.executemany(
        INSERT,
        [(i, t, f"n{i}", o, v, s, ts(at), ts(at)) for i, t, o, v, s, at in artifacts],
    )

    def expected() -> list[str]:
        order = reference(conn, type_name, owner)
        if sort == "created_at:asc":  # id stays ascending within a tie
            at = dict(conn.execute("SELECT id, created_at FROM artifacts").fetchall())
            order = sorted(sorted(order), key=lambda i: at[i])
        return order

    survivors = set(expected())  # what no delete touched is listed exactly once
    seen: list[str] = []
    marker = None
    while True:
        before = expected()
        start = before.index(marker) + 1 if marker is not None else 0
        rows, marker = select_page(
            conn,
            type_name=type_name,
            atype=None,
            owner=owner,
            filters=[],
            sort=sort,
            limit=limit,
            marker=marker,
            latest=False,
        )
        got = [r[0] for r in rows]
        # the rows strictly after the marker in the full order, as the catalog is now
        assert got == before[start : start + limit]
        assert marker == (got[-1] if len(got) == limit else None)
        seen += got
        if marker is None:
            break
        # deletes between pages (never the marker: a deleted marker is NotFound)
        for victim in data.draw(st.lists(st.sampled_from(before), max_size=3, unique=True)):
            if victim == marker:
                continue
            survivors.discard(victim)
            if data.draw(st.booleans()):
                conn.execute("DELETE FROM artifacts WHERE id = ?", (victim,))
            else:
                conn.execute("UPDATE artifacts SET status = 'deleted' WHERE id = ?", (victim,))
    assert len(seen) == len(set(seen))
    assert survivors <= set(seen)


# -- migration ----------------------------------------------------------------------------

V2_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "schema_v2.sql"


def created_index_columns(path: Path) -> dict[str, list[tuple[str, int]]]:
    """(column, descending) of each created_at index of the catalog at ``path``."""
    conn = sqlite3.connect(path)
    try:
        return {
            name: [(r[2], r[3]) for r in conn.execute(f"PRAGMA index_xinfo({name})") if r[5]]
            for name in ("artifacts_by_type_created", "artifacts_by_created")
        }
    finally:
        conn.close()


def test_a_version_2_catalog_migrates_to_newest_first_indexes(
    tmp_path: Path, memory_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:  # made by the version-2 code path
        m.setattr(_db, "schema_text", lambda: V2_SCHEMA.read_text(encoding="utf-8"))
        m.setattr(_db, "SCHEMA_VERSION", 2)
        m.setattr(_db, "MIGRATIONS", {k: v for k, v in _db.MIGRATIONS.items() if k < 2})
        with glarelite.open(path, storage=memory_store) as cat:
            cat.define_type("images")
            ids = [cat.create("images", f"a{i}").id for i in range(30)]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.execute("UPDATE artifacts SET created_at = ?", (ts(0),))  # one tie
    conn.commit()
    serial = conn.execute("SELECT max(serial) FROM changes").fetchone()[0]
    conn.close()
    assert created_index_columns(path)["artifacts_by_created"] == [("created_at", 0), ("id", 0)]

    with glarelite.open(path) as cat:
        assert [a.id for a in cat.iter_all("images", limit=7)] == sorted(ids)
        assert cat.serial() == serial  # the migration changed no artifact
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _db.SCHEMA_VERSION == 4
    conn.close()
    assert created_index_columns(path) == {
        "artifacts_by_type_created": [("type_name", 0), ("created_at", 0), ("id", 1)],
        "artifacts_by_created": [("created_at", 0), ("id", 1)],
    }
    glarelite.open(tmp_path / "new.db").close()
    assert schema_of(path) == schema_of(tmp_path / "new.db")
