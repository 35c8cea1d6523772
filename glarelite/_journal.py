"""The change journal: writing a create's entry, reading it, trimming it, and the schema
migrations that add it (1 -> 2) and take the create's entry out of a trigger (3 -> 4).

The journal (table ``changes``) is written by triggers in schema.sql, so no update, delete
or blob write can forget it; a create writes its own entry with :func:`record` (a trigger
on the artifact insert cost ~8% of creates/s: see schema.sql), and
tests/test_journal.py checks that every insert into ``artifacts`` does. A serial is the
rowid, max + 1, allocated inside the write transaction; SQLite admits one writer at a
time, so a reader's snapshot holding serial N+1 also holds N: paging on by the last
serial seen never skips a change that commits later. Trimming never deletes the newest
row, so max + 1 never goes back.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import InvalidInput, JournalTrimmed, NotFound
from .models import Change

if TYPE_CHECKING:
    import sqlite_utils

    from ._db import Database

# settings key: every change after this serial is still in the journal (0: all of them)
SINCE_KEY = "journal_since"
MAX_LIMIT = 100_000
# rows deleted per trim transaction: the write lock is never held for long
TRIM_CHUNK = 20_000

# The objects of schema.sql that make the journal (schema version 2, less the insert
# trigger that version 4 dropped).
JOURNAL_OBJECTS = (
    "changes",
    "journal_artifact_update",
    "journal_artifact_delete",
    "journal_blob_insert",
    "journal_blob_update",
    "journal_blob_delete",
)
_CREATES = re.compile(r"CREATE\s+(?:TABLE|TRIGGER|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)


def add_journal(db: sqlite_utils.Database, statements: list[str], now: Callable[[], str]) -> None:
    """Migration 1 -> 2: create the journal from schema.sql's own statements (so a migrated
    catalog is exactly a new one), then journal every existing artifact once, so that
    ``changes(0)`` still names every artifact, as on a catalog that always had it."""
    for statement in statements:
        match = _CREATES.match(statement)
        if match and match.group(1) in JOURNAL_OBJECTS:
            db.execute(statement)
    db.execute(
        "INSERT INTO changes (artifact_id, type_name, at) "
        "SELECT id, type_name, ? FROM artifacts ORDER BY created_at, id",
        (now(),),
    )


def drop_insert_trigger(db: sqlite_utils.Database) -> None:
    """Migration 3 -> 4: a create journals itself (:func:`record`); the trigger of
    versions 2 and 3 would give it a second entry. The entries, the trim floor and the
    serial stay."""
    db.execute("DROP TRIGGER IF EXISTS journal_artifact_insert")


def record(conn: sqlite3.Connection, artifact_id: str, type_name: str, at: str) -> None:
    """The journal entry of a create, in its write transaction, after the artifact row.
    ``at``: the artifact's updated_at, as the triggers stamp theirs."""
    conn.execute(
        "INSERT INTO changes (artifact_id, type_name, at) VALUES (?, ?, ?)",
        (artifact_id, type_name, at),
    )


def _check_serial(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be an integer >= 0, not {value!r}")
    return value


def _missing_journal(database: Database, exc: sqlite3.OperationalError) -> Exception:
    if "no such table" in str(exc):
        return NotFound(
            f"catalog {database.path} has no change journal (schema version 1): "
            "open it once writable to migrate it"
        )
    return exc


def _serial(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(serial) FROM changes").fetchone()
    return int(row[0]) if row[0] is not None else 0


def _since(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (SINCE_KEY,)).fetchone()
    return int(json.loads(row[0])) if row else 0


def serial(database: Database) -> int:
    try:
        with database.read() as conn:
            return _serial(conn)
    except sqlite3.OperationalError as exc:
        raise _missing_journal(database, exc) from exc


def changes(database: Database, since: object, limit: object) -> list[Change]:
    start = _check_serial(since, "since")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    try:
        with database.read() as conn:  # one snapshot: floor, serial and rows agree
            rows = conn.execute(
                "SELECT serial, artifact_id, type_name, at FROM changes WHERE serial > ? "
                "ORDER BY serial LIMIT ?",
                (start, limit),
            ).fetchall()
            floor, current = _since(conn), _serial(conn)
    except sqlite3.OperationalError as exc:
        raise _missing_journal(database, exc) from exc
    if start < floor:
        raise JournalTrimmed(
            f"the change journal of {database.path} was trimmed: it holds the changes after "
            f"serial {floor}, not those after {start}; walk the whole catalog instead"
        )
    if start > current:
        raise JournalTrimmed(
            f"serial {start} is beyond the catalog's serial {current} (another catalog, or "
            "one restored from a backup?); walk the whole catalog instead"
        )
    # Each artifact once, at its newest serial in this page: the last entry's serial is the
    # page's high-water mark, from which the next page goes on.
    newest: dict[str, Change] = {}
    for serial_, artifact_id, type_name, at in rows:
        newest.pop(artifact_id, None)
        newest[artifact_id] = Change(serial_, artifact_id, type_name, at)
    return list(newest.values())


def trim(database: Database, before: object, keep: object) -> int:
    if (before is None) == (keep is None):
        raise InvalidInput("trim_journal takes exactly one of before= and keep=")
    before_n = None if before is None else _check_serial(before, "before")
    keep_n = 0 if keep is None else _check_serial(keep, "keep")
    removed = 0
    target: int | None = None  # fixed by the first transaction: writers cannot prolong it
    while True:
        with database.write() as conn:
            if target is None:
                current = _serial(conn)
                target = before_n if before_n is not None else current - keep_n + 1
                # the newest row stays: it carries the serial (see schema.sql)
                target = min(target, current)
            floor = _since(conn)
            if target - 1 <= floor:
                return removed
            step = min(target - 1, floor + TRIM_CHUNK)
            # the floor moves with the rows in one transaction: a reader never finds rows
            # missing under a floor that still promises them
            removed += conn.execute("DELETE FROM changes WHERE serial <= ?", (step,)).rowcount
            conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (SINCE_KEY, json.dumps(step)),
            )
