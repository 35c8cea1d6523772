"""The SQLite connection: schema application and migration, WAL, busy timeout, and one
transaction per logical operation.

Writers always start with ``BEGIN IMMEDIATE``: a deferred transaction that later needs
the write lock fails at once with "database is locked" instead of waiting, which is the
classic way concurrent writers lose writes. With IMMEDIATE the busy timeout applies.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from ._journal import add_journal, drop_insert_trigger
from .errors import Conflict, GlareliteError, InvalidInput, NotFound, StorageFull
from .fsutil import utcnow as utcnow  # the catalog modules take it from here

SCHEMA_VERSION = 4

if TYPE_CHECKING:
    import sqlite_utils


def _add_journal(db: sqlite_utils.Database) -> None:
    add_journal(db, _statements(schema_text()), utcnow)


def _newest_first(db: sqlite_utils.Database) -> None:
    """Schema 2 -> 3: the listing's created_at indexes rebuilt from schema.sql's own
    statements, id descending so that read backwards they are the default order, newest
    first (schema.sql says why). Safe to run on any schema."""
    for statement in _statements(schema_text()):
        match = re.match(r"CREATE INDEX IF NOT EXISTS (\w+) ", statement)
        if match and match.group(1) in ("artifacts_by_type_created", "artifacts_by_created"):
            db.execute(f"DROP INDEX IF EXISTS {match.group(1)}")
            db.execute(statement)


# Forward migrations: MIGRATIONS[n] turns a version-n catalog into version n+1, given a
# sqlite_utils.Database over the connection, inside the transaction that bumps the
# version: its table.transform() does SQLite's create-copy-drop-rename dance for a column
# change. sqlite-utils is imported only when a step runs (~50 ms, a third of the cost of
# `import glarelite`). tests/test_migrations.py runs synthetic steps.
# 1 -> 2: the change journal (see _journal.add_journal; tests/test_journal.py).
# 2 -> 3: listing indexes that read as the default order (tests/test_query_paging.py).
# 3 -> 4: a create writes its own journal entry (see _journal.drop_insert_trigger).
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _add_journal,
    2: _newest_first,
    3: drop_insert_trigger,
}


def schema_text() -> str:
    """schema.sql as shipped: inside the wheel it is ``glarelite/schema.sql``; in an
    editable checkout it stays at the repository root."""
    from importlib import resources  # lazily: only a new catalog needs it

    packaged = resources.files("glarelite").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def new_id() -> str:
    """A UUID version 7: 48 bits of Unix milliseconds, then random bits. Ids made one
    after another land at the end of every B-tree keyed by artifact id (artifacts, tags,
    properties, blobs) instead of at random pages: bench/catalog.py measured ~25% more
    creates per second than with uuid4."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | ((rand >> 62) & 0xFFF) << 64
        | 0b10 << 62
        | rand & ((1 << 62) - 1)
    )
    return str(uuid.UUID(int=value))


class Database:
    """One connection shared by the threads of a process (mirror workers read through it),
    serialised by a lock; other processes coordinate through SQLite's own locking."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 60.0,
        synchronous: str = "NORMAL",
        create: bool = True,
        readonly: bool = False,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not create and not Path(self.path).exists():
            raise NotFound(f"no catalog at {self.path}; create one first (glarelite init)")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidInput(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if self.path != ":memory:" and create and not readonly:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        uri = self.path
        if readonly:
            uri = f"file:{Path(self.path).resolve()}?mode=ro"
        try:
            conn = sqlite3.connect(
                uri,
                timeout=busy_timeout,
                isolation_level=None,  # we issue BEGIN ourselves
                check_same_thread=False,
                uri=readonly,
            )
        except sqlite3.Error as exc:
            raise InvalidInput(f"cannot open catalog {self.path}: {exc}") from exc
        self.conn = conn
        self.lock = threading.RLock()
        try:
            with _storage_errors(self.path):
                self._setup(busy_timeout, synchronous, readonly)
        except BaseException:
            conn.close()
            raise

    def _setup(self, busy_timeout: float, synchronous: str, readonly: bool) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # The default 2 MB page cache made cold listings of a large catalog 10-50x slower.
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            # WAL lets readers run beside one writer; NORMAL sync is durable against process
            # crashes (the WAL is fsynced at checkpoints), FULL also against power loss.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            # Checkpoints fsync; at the default 1,000 pages a create-heavy load checkpoints
            # every ~80 commits and spends most of its time there. 4,000 pages (16 MiB of
            # WAL) measured ~1.5x more creates/s (bench/catalog.py).
            conn.execute("PRAGMA wal_autocheckpoint = 4000")
            self._migrate()

    def _migrate(self) -> None:
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise GlareliteError(
                    f"catalog {self.path} has schema version {version}; this glarelite knows "
                    f"up to {SCHEMA_VERSION}: upgrade glarelite"
                )
            if version == 0:
                for statement in _statements(schema_text()):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            if version == SCHEMA_VERSION:
                return
        import sqlite_utils  # only when a step runs: see MIGRATIONS

        # SQLite's procedure for changing a table (what sqlite-utils' transform does):
        # foreign keys off, which cannot change inside a transaction, so that rebuilding a
        # referenced table fires no ON DELETE CASCADE; checked before the commit.
        self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self.write() as conn:
                # read again: another process may have migrated since
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                db = sqlite_utils.Database(conn)
                while version < SCHEMA_VERSION:
                    step = MIGRATIONS.get(version)
                    if step is None:
                        raise GlareliteError(
                            f"catalog {self.path} has schema version {version} and this "
                            "glarelite has no migration from it"
                        )
                    step(db)
                    version += 1
                    conn.execute(f"PRAGMA user_version = {version}")
                if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise GlareliteError(
                        f"migrating catalog {self.path} broke a foreign key; nothing changed"
                    )
        finally:
            self.conn.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error.
        A full or failing disk raises StorageFull (see :func:`_storage_errors`)."""
        with self.lock, _storage_errors(self.path):
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except sqlite3.IntegrityError as exc:
                _rollback(conn)
                raise Conflict(_integrity_message(exc)) from exc
            except UnicodeEncodeError as exc:
                _rollback(conn)
                raise _not_unicode(exc) from None
            except BaseException:
                _rollback(conn)
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)  # a COMMIT that failed may leave the transaction open
                    raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read snapshot across several statements."""
        with self.lock:
            conn = self.conn
            if conn.in_transaction:  # nested inside a write: already consistent
                yield conn
                return
            with _storage_errors(self.path):
                conn.execute("BEGIN")
                try:
                    yield conn
                except UnicodeEncodeError as exc:
                    raise _not_unicode(exc) from None
                finally:
                    if self.conn.in_transaction:  # a failing disk may have ended it
                        conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


# SQLite's primary result codes for a full disk and an I/O failure (extended codes keep
# them in the low byte).
_SQLITE_IOERR = 10
_SQLITE_FULL = 13


def _is_storage_failure(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_IOERR, _SQLITE_FULL)
    text = str(exc).lower()  # older Pythons: only the message tells
    return "disk is full" in text or "disk i/o error" in text


@contextmanager
def _storage_errors(path: str) -> Iterator[None]:
    """A full or failing disk under the catalog file becomes StorageFull."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not _is_storage_failure(exc):
            raise
        raise StorageFull(
            f"catalog {path}: {exc} (its disk is full or failing; the operation was not "
            "done and what was committed before is intact): free space there and retry"
        ) from exc


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (it does on some full-disk and I/O errors);
    # a ROLLBACK failing on a broken disk must not hide the error that led here.
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split schema.sql into statements; executescript would commit our transaction."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        stripped = line.split("--", 1)[0]
        buf += stripped
        if stripped.rstrip().endswith(";") and sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _not_unicode(exc: UnicodeEncodeError) -> InvalidInput:
    # A str with a lone surrogate passes every isinstance check but cannot be bound.
    return InvalidInput(f"text is not valid Unicode: {exc.object[exc.start : exc.end]!r}")


def _integrity_message(exc: sqlite3.IntegrityError) -> str:
    text = str(exc)
    if "artifacts_unique_public" in text or (
        "UNIQUE" in text and "artifacts.type_name, artifacts.name, artifacts.version" in text
    ):
        return "a public artifact with this type, name and version already exists"
    if "UNIQUE" in text and "artifacts" in text:
        return "an artifact with this type, owner, name and version already exists"
    return f"conflicting write: {text}"
