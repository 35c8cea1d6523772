"""A walk's working tables: what this run selected, in a temporary SQLite file attached to
the state's connection (as ``run``), so that a walk of a million artifacts holds one page
of them in memory, and withdrawal, pruning and publishing are joins against the state's
own tables instead of sets in memory.

Tables (all scratch, gone with the run):

- ``items``: each selected artifact — where its show view is in the type's spool, its
  name and shard, fingerprint, why it cannot be published (``problem``), whether it is
  left out (``withheld``, redirect mode), came only through a link (``linked``), its
  redirect rules, and ``bad`` (a blob of it is not in the tree, verified, after the copy);
- ``paths``: each blob file a selected artifact names, with its bytes and ``good`` (in the
  tree and verified in this run);
- ``kept``, ``kept_paths``: an artifact left as the previous generation published it
  (its new bytes could not be had), with its previous show view and blob files;
- ``pub``: the artifacts the new root publishes (the state's ``artifacts`` table is
  replaced from it in the publishing transaction);
- ``links``: artifact ids selected artifacts link to (selected in turn when they qualify).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from glarelite import tree

SCHEMA = (
    "CREATE TABLE run.items (id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL, "
    "shard TEXT NOT NULL, fingerprint TEXT NOT NULL, offset INTEGER NOT NULL, "
    "length INTEGER NOT NULL, problem TEXT NOT NULL, error TEXT NOT NULL, "
    "withheld INTEGER NOT NULL, linked INTEGER NOT NULL, redirects TEXT, "
    "bad INTEGER NOT NULL DEFAULT 0, pub INTEGER NOT NULL DEFAULT 0)",
    # action: 0 skip (the state and one lstat vouch for it), 1 re-hash, 2 fetch; missing:
    # a fetch the state said the tree had; slot/external: where to read it (action > 0)
    "CREATE TABLE run.paths (path TEXT PRIMARY KEY, id TEXT NOT NULL, sha256 TEXT NOT NULL, "
    "size INTEGER NOT NULL, action INTEGER NOT NULL, missing INTEGER NOT NULL, "
    "slot TEXT, external INTEGER, label TEXT, reason TEXT, good INTEGER NOT NULL)",
    "CREATE TABLE run.groups (sha256 TEXT NOT NULL, size INTEGER NOT NULL)",
    "CREATE TABLE run.held (id TEXT PRIMARY KEY, type TEXT NOT NULL, published INTEGER NOT NULL)",
    "CREATE TABLE run.kept (id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL, "
    "shard TEXT NOT NULL, fingerprint TEXT NOT NULL, offset INTEGER NOT NULL, "
    "length INTEGER NOT NULL, linked INTEGER NOT NULL, redirects TEXT)",
    "CREATE INDEX run.kept_order ON kept (type, shard, name, id)",
    "CREATE TABLE run.kept_paths (path TEXT PRIMARY KEY, id TEXT NOT NULL, "
    "sha256 TEXT NOT NULL, size INTEGER NOT NULL)",
    "CREATE INDEX run.kept_paths_id ON kept_paths (id)",
    "CREATE TABLE run.pub (id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL, "
    "shard TEXT NOT NULL, fingerprint TEXT NOT NULL, linked INTEGER NOT NULL)",
    "CREATE TABLE run.links (id TEXT PRIMARY KEY, tried INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE run.failed (path TEXT PRIMARY KEY)",
)
# Made once the planning is done: one sort each instead of upkeep on every insert.
INDEXES = (
    "CREATE INDEX run.items_order ON items (type, shard, name, id)",
    "CREATE INDEX run.paths_id ON paths (id)",
    "CREATE INDEX run.paths_sha ON paths (sha256, action, good)",
    "CREATE INDEX run.paths_action ON paths (action, path)",
)

SKIP, CHECK, FETCH = 0, 1, 2  # paths.action
CHUNK = 400  # parameters per IN (...) list: well under SQLite's limit


class WorkTable:
    """The ``run`` database of one walk, attached to ``conn`` (the state's connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        fd, self.path = tempfile.mkstemp(prefix="glarelite-walk-", suffix=".sqlite")
        os.close(fd)
        conn.execute("ATTACH DATABASE ? AS run", (self.path,))
        # Scratch data: a crash loses nothing the next run needs.
        conn.execute("PRAGMA run.journal_mode = OFF")
        conn.execute("PRAGMA run.synchronous = OFF")
        conn.execute("PRAGMA temp_store = FILE")
        for statement in SCHEMA:
            conn.execute(statement)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("DETACH DATABASE run")
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    # -- filling ----------------------------------------------------------------------------
    def add_items(self, rows: Iterable[Sequence[Any]]) -> None:
        """(id, type, name, fingerprint, offset, length, problem, error, withheld, linked,
        redirects) per artifact; the same artifact twice (overlapping queries) is kept once."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO run.items (id, type, name, shard, fingerprint, offset, "
            "length, problem, error, withheld, linked, redirects) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((r[0], r[1], r[2], tree.shard_of(r[2]), *r[3:10], _json(r[10])) for r in rows),
        )

    def add_paths(self, rows: Iterable[Sequence[Any]]) -> None:
        """(path, artifact id, sha256, size, action, missing, slot, external, label) of each
        blob file named; a skipped one is good already."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO run.paths (path, id, sha256, size, action, missing, slot, "
            "external, label, good) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((*r, int(r[4] == SKIP)) for r in rows),
        )

    def planned(self) -> None:
        """The planning is done: index what the later steps look up."""
        for statement in INDEXES:
            self.conn.execute(statement)

    def add_failed(self, path: str) -> None:
        """A blob file this run could not put in the tree (it is not good)."""
        self.conn.execute("INSERT OR IGNORE INTO run.failed VALUES (?)", (path,))

    def checked(self) -> None:
        """The re-hashing is done: what is still to re-hash matched (the rest became
        fetches)."""
        self.conn.execute("UPDATE run.paths SET good = 1 WHERE action = ?", (CHECK,))

    def add_links(self, ids: Iterable[str]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO run.links (id) VALUES (?)", ((i,) for i in ids)
        )

    def pending_links(self) -> list[str]:
        """Link targets not selected yet and not tried, marked tried (each is looked up
        once, however many artifacts link to it)."""
        rows = self.conn.execute(
            "SELECT id FROM run.links WHERE tried = 0 AND id NOT IN (SELECT id FROM run.items) "
            "ORDER BY id LIMIT 1000"
        ).fetchall()
        ids = [r[0] for r in rows]
        self.conn.executemany("UPDATE run.links SET tried = 1 WHERE id = ?", ((i,) for i in ids))
        return ids

    def good_paths(self, shas: Sequence[str]) -> dict[str, str]:
        """sha256 -> a tree path verified in this run holding those bytes."""
        out: dict[str, str] = {}
        for chunk in chunks(shas):
            marks = ",".join("?" * len(chunk))
            for sha, path in self.conn.execute(
                f"SELECT sha256, min(path) FROM run.paths WHERE sha256 IN ({marks}) AND good = 1 "
                "GROUP BY sha256",
                chunk,
            ):
                out[sha] = path
        return out

    def finish_copies(self) -> None:
        """The copies are done: every fetch that did not fail is good; mark the artifacts
        a blob of which is not in the tree."""
        self.conn.execute(
            "UPDATE run.paths SET good = 1 WHERE action = ? "
            "AND path NOT IN (SELECT path FROM run.failed)",
            (FETCH,),
        )
        self.conn.execute(
            "UPDATE run.items SET bad = 1 WHERE id IN (SELECT id FROM run.paths WHERE good = 0)"
        )

    # -- reading ----------------------------------------------------------------------------
    def count(self, table: str, where: str = "1", params: Sequence[Any] = ()) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM run.{table} WHERE {where}", params)
        return int(row.fetchone()[0])


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _json(value: Any) -> str | None:
    return json.dumps(value, separators=(",", ":")) if value else None
