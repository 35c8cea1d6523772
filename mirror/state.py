"""The tree's own memory: ``.glarelite-mirror/state.sqlite`` (SQLite, through sqlite-utils).

It records every file the tree wrote (so pruning never touches anything else), each blob
file's sha256, size and mtime (so a rerun skips a blob on one ``lstat`` instead of
re-hashing it), what the last publish contained (artifacts with their fingerprints, the
shards of each type with their sha256) and the journal serial it published, so that a
rerun with nothing to do is recognised from a few ``meta`` rows (:func:`Store.head`).

Tables: ``meta`` (key -> JSON value), ``artifacts`` (published: id, type, name, shard,
fingerprint), ``blobs`` (path, artifact id, sha256, size, mtime_ns), ``indexes``
(artifact index files written), ``shards`` (type, shard, the ShardRef fields) and
``retired`` (superseded files and when, removed after the grace period). Every row read
back is hostile input: a name that is not a path of the tree's own kind voids the file.

A publish is one transaction (after the root index); checkpoints during long copies
commit blob rows only. A remote tree (S3) has no local file to open: the file is
downloaded to a temporary, updated, and uploaded after the root, beside a small
``head.json`` (the meta rows) from which a no-op run decides without the download.
A ``state.json`` (format 1) is read once for the upgrade, then removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from glarelite import tree

from . import _recovery as recovery
from ._paths import check_artifact_id, is_blob_path, is_index_path
from .dest import Dest
from .scan import valid_blob_path

STATE = f"{tree.STATE_DIR}/state.sqlite"
STATE_V1 = f"{tree.STATE_DIR}/state.json"  # format 1: read once for the upgrade
HEAD = f"{tree.STATE_DIR}/head.json"  # remote trees: the meta rows, for a no-op run
STATE_VERSION = 2
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SHARD = re.compile(rf"[0-9a-f]{{{tree.SHARD_DIGITS}}}\Z")
_PINNED_SHARD = "SELECT 1 FROM shards WHERE type = ? AND shard = ?"
_CONTENT = re.compile(r"[0-9a-f]{1,3}\.[0-9a-f]{64}\.json\Z")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS artifacts (id TEXT PRIMARY KEY, type TEXT NOT NULL, "
    "name TEXT NOT NULL, shard TEXT NOT NULL, fingerprint TEXT NOT NULL, "
    "linked INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS blobs (path TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, "
    "sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS blobs_artifact ON blobs (artifact_id)",
    "CREATE TABLE IF NOT EXISTS indexes (path TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS shards (type TEXT NOT NULL, shard TEXT NOT NULL, "
    "sha256 TEXT NOT NULL, size INTEGER NOT NULL, sums_sha256 TEXT NOT NULL, "
    "sums_size INTEGER NOT NULL, artifacts INTEGER NOT NULL, blobs INTEGER NOT NULL, "
    "bytes INTEGER NOT NULL, PRIMARY KEY (type, shard))",
    "CREATE TABLE IF NOT EXISTS retired (path TEXT PRIMARY KEY, since REAL NOT NULL)",
)


class Tracked(dict[str, Any]):
    """A dict that remembers which keys changed, so a save writes only those rows."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.dirty: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        self.dirty.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.dirty.add(key)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self.dirty.add(key)
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


class TrackedSet(set[str]):
    """A set that remembers which members changed."""

    def __init__(self, items: Iterable[str] = ()) -> None:
        super().__init__(items)
        self.dirty: set[str] = set()

    def add(self, item: str) -> None:
        self.dirty.add(item)
        super().add(item)

    def discard(self, item: object) -> None:
        if isinstance(item, str):
            self.dirty.add(item)
        super().discard(item)


@dataclass
class Published:
    """What the current root index publishes."""

    generation: int = 0
    catalog: str = ""  # digest of the catalog's location
    selection: str = ""  # signature of the selection options (and the externals mode)
    serial: int = -1  # the catalog journal serial published (-1: unknown, walk)
    complete: bool = False  # the run published every selected artifact
    root_sha256: str = ""  # of the root index bytes published
    types: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> RootType dict
    artifacts: dict[str, list[str]] = field(default_factory=dict)  # id -> [type, fingerprint]
    names: dict[str, str] = field(default_factory=dict)  # id -> name (its shard)
    linked: set[str] = field(default_factory=set)  # ids published because of a link
    selected: dict[str, int] = field(default_factory=dict)  # type -> selected artifacts
    generated_at: str = ""
    retained: int = 0  # files the tree wrote that the indexes no longer name
    scan_cursor: str = ""  # the blob path the bounded lstat scan goes on from


@dataclass
class State:
    # path -> [sha256, size, mtime_ns]: every blob file the tree wrote and still holds
    blobs: dict[str, list[Any]] = field(default_factory=Tracked)
    # artifact index files the tree wrote and still holds
    indexes: set[str] = field(default_factory=TrackedSet)
    published: Published = field(default_factory=Published)
    # (type, shard) -> ShardRef of the published shards
    shards: dict[tuple[str, str], tree.ShardRef] = field(default_factory=dict)
    retired: dict[str, float] = field(default_factory=dict)  # superseded path -> since
    problem: str = ""  # why an unreadable state was ignored
    legacy: bool = False  # read from a format 1 state.json (the upgrade)
    rewrite: bool = False  # the file is rewritten whole by the next save (upgrade, recovery)
    _loaded_artifacts: dict[str, list[str]] | None = None
    _loaded_names: dict[str, str] | None = None
    _loaded_linked: set[str] | None = None
    partial: bool = False  # only the rows of what changed (a journal run)
    _loaded_shards: dict[tuple[str, str], tree.ShardRef] | None = None
    _loaded_retired: dict[str, float] | None = None
    _saved_meta: dict[str, Any] | None = None


def is_retirable_path(path: object) -> bool:
    """A superseded file a tree may hold for a grace period: a content-addressed bucket
    or shard file, or a format 1 type index or SHA256SUMS."""
    if path == tree.SUMS:
        return True
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == tree.SUMS_DIR:
        try:
            tree.check_identifier(parts[1], "type")
        except ValueError:
            return False
        return parts[2] == tree.TYPE_SUMS or _shard_ok(parts[2])
    if len(parts) == 3 and is_index_path(path):
        return True
    if len(parts) != 4 or parts[0] != tree.ARTIFACTS or parts[2] not in ("_shards", "_buckets"):
        return False
    try:
        tree.check_identifier(parts[1], "type")
    except ValueError:
        return False
    return bool(_CONTENT.match(parts[3]))


def _meta_values(state: State) -> dict[str, Any]:
    p = state.published
    return {
        "state_version": STATE_VERSION,
        "generation": p.generation,
        "catalog": p.catalog,
        "selection": p.selection,
        "serial": p.serial,
        "complete": p.complete,
        "root_sha256": p.root_sha256,
        "types": p.types,
        "selected": p.selected,
        "generated_at": p.generated_at,
        "retained": p.retained,
        "scan_cursor": p.scan_cursor,
    }


@dataclass
class Head:
    """The few meta values a no-op run decides from."""

    generation: int = 0
    catalog: str = ""
    selection: str = ""
    serial: int = -1
    complete: bool = False
    root_sha256: str = ""
    retained: int = 0
    scan_cursor: str = ""
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    selected: dict[str, int] = field(default_factory=dict)


def _head_of(meta: dict[str, Any]) -> Head:
    """A Head from meta values, every one checked (ValueError when malformed)."""
    if meta.get("state_version") != STATE_VERSION:
        raise ValueError(f"state version {meta.get('state_version')!r}")

    def integer(key: str, minimum: int = 0) -> int:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"meta {key} is not an integer")
        return value

    def text(key: str) -> str:
        value = meta.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"meta {key} is not text")
        return value

    types = meta.get("types", {})
    selected = meta.get("selected", {})
    if not isinstance(types, dict) or not isinstance(selected, dict):
        raise ValueError("meta types or selected is not an object")
    for name, entry in types.items():
        tree.RootType.from_dict(name, entry)  # InvalidInput is a ValueError
    root_sha = text("root_sha256")
    if root_sha and not _HEX64.match(root_sha):
        raise ValueError("meta root_sha256 is not a digest")
    cursor = text("scan_cursor")
    if cursor and not is_blob_path(cursor):
        raise ValueError("meta scan_cursor is not a blob path")
    return Head(
        generation=integer("generation"),
        catalog=text("catalog"),
        selection=text("selection"),
        serial=integer("serial", -1),
        complete=bool(meta.get("complete")),
        root_sha256=root_sha,
        retained=integer("retained"),
        scan_cursor=cursor,
        types={str(k): dict(v) for k, v in types.items()},
        selected={str(k): int(v) for k, v in selected.items()},
    )


class Store:
    """The state file of one tree, opened for a run (or a read)."""

    def __init__(self, dest: Dest, *, writable: bool = True) -> None:
        self.dest = dest
        self.writable = writable
        self._db: sqlite3.Connection | None = None
        self._temp: str | None = None  # remote: the local copy
        self._scratch = False  # a dry run's rebuilt state: never written into the tree
        self._unsent = False  # remote: saved locally, not uploaded yet
        self.rows_read = 0  # rows fetched from the file (tests count the no-op's)

    # -- opening --------------------------------------------------------------------------
    def _local_path(self, create: bool) -> str | None:
        """The state file's path in a local tree, its folder reached without following a
        link (DestinationError for a planted one); None when absent and not ``create``."""
        dest = self.dest
        try:
            fd = dest.open_folder(tree.STATE_DIR, create=create)  # type: ignore[attr-defined]
        except FileNotFoundError:
            return None
        os.close(fd)
        path = str(dest.abspath(STATE))  # type: ignore[attr-defined]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path if create else None
        import stat as stat_module

        if not stat_module.S_ISREG(st.st_mode):
            from .dest import _planted

            raise _planted(STATE, "not a regular file")
        return path

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        path: str | None
        if self._scratch:
            path = self._temp
            assert path is not None
        elif self.dest.local:
            path = self._local_path(create)
            if path is None:
                return None
        else:
            raw = self.dest.read_bytes(STATE)
            if raw is None and not create:
                return None
            fd, path = tempfile.mkstemp(prefix="glarelite-state-", suffix=".sqlite")
            with os.fdopen(fd, "wb") as f:
                f.write(raw or b"")
            self._temp = path
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA trust_schema = OFF")
        # Reads go through the plain connection: sqlite_utils.Database scans the installed
        # plugins when it is made (~75 ms), too much for a no-op run; save() uses it.
        self._db = conn
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> Iterator[tuple[Any, ...]]:
        assert self._db is not None
        for row in self._db.execute(sql, tuple(params)):
            self.rows_read += 1
            yield row

    # -- reading --------------------------------------------------------------------------
    def head(self) -> Head | None:
        """The meta values, from O(1) rows (a remote tree: its head.json); None when
        there is no usable state (then the run walks)."""
        try:
            if not self.dest.local:
                raw = self.dest.read_bytes(HEAD)
                if raw is None or len(raw) > 1 << 20:
                    return None
                data = json.loads(raw)
                if not isinstance(data, dict):
                    return None
                return _head_of(data)
            if self.dest.stat(STATE_V1) is not None:
                return None  # the upgrade: walk
            db = self._connect(create=False)
            if db is None:
                return None
            meta = {k: json.loads(v) for k, v in self._rows("SELECT key, value FROM meta")}
            return _head_of(meta)
        except (ValueError, TypeError, RecursionError, sqlite3.Error):
            return None

    def read_blobs(self, after: str, limit: int) -> list[tuple[str, str, int, int]]:
        """Up to ``limit`` blob rows after path ``after`` (the bounded scan), checked."""
        db = self._connect(create=False)
        if db is None:
            return []
        out = []
        for path, sha, size, mtime in self._rows(
            "SELECT path, sha256, size, mtime_ns FROM blobs WHERE path > ? ORDER BY path LIMIT ?",
            (after, limit),
        ):
            if not valid_blob_path(path) or type(size) is not int or type(mtime) is not int:
                raise ValueError(f"bad blob row {str(path)[:200]!r}")
            out.append((path, str(sha), size, mtime))
        return out

    def retired_due(self, now: float, grace: float) -> bool:
        """Whether a superseded file is due for removal (one row)."""
        if not self.dest.local:
            return False  # remote: the next run with work removes them
        db = self._connect(create=False)
        if db is None:
            return False
        try:
            rows = list(self._rows("SELECT min(since) FROM retired"))
        except sqlite3.Error:
            return False
        since = rows[0][0] if rows else None
        return isinstance(since, (int, float)) and now - since >= grace

    def load_partial(self, ids: Iterable[str], types: Iterable[str]) -> State:
        """The rows of artifacts ``ids`` only (their artifact rows, blob rows and index
        files), the meta values and the retired files: a journal run's state. The
        caller adds the shard rows it touches (:meth:`shard_refs`)."""
        db = self._connect(create=False)
        if db is None:
            raise ValueError("no state")
        p = self._published()
        wanted = sorted(set(ids))
        blobs = Tracked()
        indexes = TrackedSet()
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            marks = ",".join("?" * len(chunk))
            for artifact_id, type_name, name, _shard, fp, linked in self._rows(
                "SELECT id, type, name, shard, fingerprint, linked FROM artifacts "
                f"WHERE id IN ({marks})",
                chunk,
            ):
                check_artifact_id(artifact_id)
                tree.check_identifier(type_name, "type")
                p.artifacts[artifact_id] = [type_name, str(fp)]
                p.names[artifact_id] = str(name)
                if linked:
                    p.linked.add(artifact_id)
            for path, sha, size, mtime in self._rows(
                f"SELECT path, sha256, size, mtime_ns FROM blobs WHERE artifact_id IN ({marks})",
                chunk,
            ):
                if not is_blob_path(path) or str(path).split("/")[2] not in chunk:
                    raise ValueError(f"not a blob path of its artifact: {str(path)[:200]!r}")
                if not isinstance(sha, str) or not all(
                    isinstance(n, int) and not isinstance(n, bool) for n in (size, mtime)
                ):
                    raise ValueError(f"bad record for {path}")
                dict.__setitem__(blobs, path, [sha, size, mtime])
            paths = [tree.artifact_index_path(t, i) for t in types for i in chunk]
            for start2 in range(0, len(paths), 400):
                part = paths[start2 : start2 + 400]
                marks2 = ",".join("?" * len(part))
                for (path,) in self._rows(
                    f"SELECT path FROM indexes WHERE path IN ({marks2})",
                    part,
                ):
                    set.add(indexes, path)
        retired: dict[str, float] = {}
        for path, since in self._rows("SELECT path, since FROM retired"):
            if not is_retirable_path(path) or not isinstance(since, (int, float)):
                raise ValueError(f"not a retirable path: {str(path)[:200]!r}")
            retired[path] = float(since)
        state = State(blobs=blobs, indexes=indexes, published=p, retired=retired)
        state.partial = True
        return _fresh(state)

    def shard_refs(self, type_name: str, bucket: str) -> dict[str, tree.ShardRef]:
        """The published shards of one bucket of a type (at most 256 rows)."""
        out: dict[str, tree.ShardRef] = {}
        for row in self._rows(
            "SELECT shard, sha256, size, sums_sha256, sums_size, artifacts, blobs, bytes "
            "FROM shards WHERE type = ? AND shard >= ? AND shard < ?",
            (type_name, bucket, bucket + "g"),
        ):
            data = {
                "sha256": row[1],
                "size": row[2],
                "sums": {"sha256": row[3], "size": row[4]},
                "artifacts": row[5],
                "blobs": row[6],
                "bytes": row[7],
            }
            ref = tree.ShardRef.from_dict(row[0], data, "state")
            if tree.bucket_of(ref.shard) == bucket:
                out[ref.shard] = ref
        return out

    def open_walk(self, *, dry_run: bool) -> State:
        """The state of a walk, light: the meta values, the shards and the retired files
        in memory; the blob, index and artifact rows stay in the file, checked here row
        by row (hostile input) but not kept, and the walk reads them page by page
        (:meth:`blob_records`, joins through :attr:`connection`). A state that must be
        rebuilt (first run, format 1 upgrade, unreadable file) is rebuilt as
        :meth:`load` does and written first: into a scratch file on a dry run, which
        writes nothing into the tree. ``State.legacy`` stays set for an upgrade."""
        state: State | None = None
        if self.dest.read_bytes(STATE_V1) is None:
            try:
                db = self._connect(create=False)
                if db is not None:
                    state = self._load(db, light=True)
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                state = None
            except sqlite3.Error:
                state = None
        if state is not None:
            return state
        full = self.load()
        legacy, problem = full.legacy, full.problem
        if dry_run:
            self._use_scratch()
        self.save(full)
        db = self._connect(create=False)
        assert db is not None
        state = self._load(db, light=True)
        state.legacy, state.problem = legacy, problem
        return state

    def _use_scratch(self) -> None:
        """From now on, read and write a temporary copy (a dry run rebuilding the state)."""
        self.close()
        fd, path = tempfile.mkstemp(prefix="glarelite-state-", suffix=".sqlite")
        os.close(fd)
        self._temp = path
        self._scratch = True

    @property
    def connection(self) -> sqlite3.Connection:
        """The open state file (a walk attaches its working tables to it)."""
        db = self._connect(create=True)
        assert db is not None
        return db

    def blob_records(self, paths: Iterable[str]) -> dict[str, list[Any]]:
        """path -> [sha256, size, mtime_ns] of those of ``paths`` the state records."""
        db = self._connect(create=False)
        out: dict[str, list[Any]] = {}
        if db is None:
            return out
        wanted = list(paths)
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            marks = ",".join("?" * len(chunk))
            for path, sha, size, mtime in self._rows(
                f"SELECT path, sha256, size, mtime_ns FROM blobs WHERE path IN ({marks})", chunk
            ):
                out[path] = [sha, size, mtime]
        return out

    def load(self) -> State:
        """Everything, for a run with work (or ``check``); a malformed file or a format 1
        ``state.json`` -> recovered as today (from the json, or from the tree)."""
        raw_v1 = self.dest.read_bytes(STATE_V1)
        if raw_v1 is not None:
            return _fresh(_load_v1(self.dest, raw_v1))
        try:
            db = self._connect(create=False)
            if db is None:  # a first run, or a tree whose state was lost
                state = State(rewrite=True)
                _adopt_root(self.dest, state)
                return _fresh(state)
            return self._load(db)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            problem = f"{STATE} was unreadable ({exc}); rebuilt from the tree"
        except sqlite3.Error as exc:
            problem = f"{STATE} was unreadable ({exc}); rebuilt from the tree"
        self.close()
        state = State(problem=problem, rewrite=True)
        _recover(self.dest, state)
        _adopt_root(self.dest, state)
        return _fresh(state)

    def pinned(self, path: str, types: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether the root the state records pins ``path`` (a bucket or shard file, or
        a sums file of one of its shards or types): ``types`` are its RootType dicts."""
        parts = path.split("/")
        try:
            if len(parts) == 3 and parts[0] == tree.SUMS_DIR:
                if parts[2] == tree.TYPE_SUMS:
                    return parts[1] in types
                return any(self._rows(_PINNED_SHARD, (parts[1], parts[2])))
            if len(parts) == 4 and parts[0] == tree.ARTIFACTS and is_retirable_path(path):
                prefix, sha = parts[3].split(".")[:2]
                if parts[2] == "_shards":
                    return any(
                        self._rows(_PINNED_SHARD + " AND sha256 = ?", (parts[1], prefix, sha))
                    )
                entry = types.get(parts[1])
                if entry is None:
                    return False
                bucket = tree.RootType.from_dict(parts[1], entry).buckets.get(prefix)
                return bucket is not None and bucket.sha256 == sha
        except (ValueError, sqlite3.Error):
            return True  # cannot tell: keep the file
        return False

    def _published(self) -> Published:
        """What the meta rows say the tree publishes (a file with triggers or views is
        refused: runs write to it and read it back after checking it)."""
        for (kind,) in self._rows(
            "SELECT type FROM sqlite_master WHERE type IN ('trigger', 'view') LIMIT 1"
        ):
            raise ValueError(f"the file holds a {kind}, which this mirror never writes")
        meta = {k: json.loads(v) for k, v in self._rows("SELECT key, value FROM meta")}
        head = _head_of(meta)
        return Published(
            generation=head.generation,
            catalog=head.catalog,
            selection=head.selection,
            serial=head.serial,
            complete=head.complete,
            root_sha256=head.root_sha256,
            types=head.types,
            selected=head.selected,
            generated_at=str(meta.get("generated_at", "")),
            retained=head.retained,
            scan_cursor=head.scan_cursor,
        )

    def _load(self, db: sqlite3.Connection, *, light: bool = False) -> State:
        """The state in the file, every row checked; ``light``: the blob, index and
        artifact rows are checked but not kept (a walk reads them from the file). A file
        with triggers or views is refused: a walk writes to it and queries it after
        checking it, and a trigger could add rows the check never saw."""
        p = self._published()
        for artifact_id, type_name, name, _shard, fp, linked in self._rows(
            "SELECT id, type, name, shard, fingerprint, linked FROM artifacts"
        ):
            check_artifact_id(artifact_id)
            tree.check_identifier(type_name, "type")
            if not isinstance(name, str) or not isinstance(fp, str):
                raise ValueError(f"bad artifact row {str(artifact_id)[:200]!r}")
            if light:
                continue
            p.artifacts[artifact_id] = [type_name, fp]
            p.names[artifact_id] = name
            if linked:
                p.linked.add(artifact_id)
        blobs = Tracked()
        for path, artifact_id, sha, size, mtime in self._rows(
            "SELECT path, artifact_id, sha256, size, mtime_ns FROM blobs"
        ):
            if not is_blob_path(path) or str(path).split("/")[2] != artifact_id:
                raise ValueError(f"not a blob path: {str(path)[:200]!r}")
            if not isinstance(sha, str) or not all(
                isinstance(n, int) and not isinstance(n, bool) for n in (size, mtime)
            ):
                raise ValueError(f"bad record for {path}")
            if not light:
                dict.__setitem__(blobs, path, [sha, size, mtime])
        indexes = TrackedSet()
        for (path,) in self._rows("SELECT path FROM indexes"):
            if not is_index_path(path) or len(str(path).split("/")) != 4:
                raise ValueError(f"not an index path: {str(path)[:200]!r}")
            if not light:
                set.add(indexes, path)
        shards: dict[tuple[str, str], tree.ShardRef] = {}
        for row in self._rows(
            "SELECT type, shard, sha256, size, sums_sha256, sums_size, artifacts, blobs, bytes "
            "FROM shards"
        ):
            type_name, shard = row[0], row[1]
            tree.check_identifier(type_name, "type")
            data = {
                "sha256": row[2],
                "size": row[3],
                "sums": {"sha256": row[4], "size": row[5]},
                "artifacts": row[6],
                "blobs": row[7],
                "bytes": row[8],
            }
            shards[(type_name, shard)] = tree.ShardRef.from_dict(shard, data, "state")
        retired: dict[str, float] = {}
        for path, since in self._rows("SELECT path, since FROM retired"):
            if not is_retirable_path(path) or not isinstance(since, (int, float)):
                raise ValueError(f"not a retirable path: {str(path)[:200]!r}")
            retired[path] = float(since)
        state = State(blobs=blobs, indexes=indexes, published=p, shards=shards, retired=retired)
        state.partial = light
        return _fresh(state)

    # -- writing --------------------------------------------------------------------------
    def save(
        self,
        state: State,
        *,
        upload: bool = True,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Write what changed since the load or the last save, in one transaction (with
        ``also``'s writes: a walk replacing the artifact rows from its working tables); a
        remote tree: upload the file, then head.json (``upload=False``: later)."""
        if (
            also is None
            and not state.rewrite
            and not _dirty(state)
            and _meta_values(state) == state._saved_meta
        ):
            if upload and self._unsent:
                self._upload(state)
            return  # nothing changed since the load or the last save: nothing written
        if state.rewrite:
            self._new_file()
        conn = self._connect(create=True)
        assert conn is not None
        db = sqlite_utils.Database(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            if state.rewrite:
                for table in ("meta", "artifacts", "blobs", "indexes", "shards", "retired"):
                    db.table(table).delete_where()
                state._loaded_artifacts = {}
                state._loaded_names = {}
                state._loaded_shards = {}
                state._loaded_retired = {}
                state._loaded_linked = set()
                _all_dirty(state)
            self._write(conn, state)
            if also is not None:
                also(conn)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        state.rewrite = False
        _fresh(state)
        if self._scratch:
            return  # a dry run's copy: nothing goes into the tree
        self._unsent = not self.dest.local
        if upload:
            self._upload(state)
        if state.legacy:
            self.dest.delete(STATE_V1)
            state.legacy = False

    def _new_file(self) -> None:
        """A state rebuilt is written into a new file: nothing of an unreadable (or
        hostile: triggers, views, other tables) one is kept."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._temp is not None:  # remote, or a dry run's scratch copy
            with open(self._temp, "wb"):
                pass
        else:
            for suffix in ("-wal", "-shm", "-journal", ""):
                self.dest.delete(STATE + suffix)

    def _upload(self, state: State) -> None:
        """A remote tree: the file, then head.json."""
        if not self._unsent:
            return
        assert self._temp is not None
        with open(self._temp, "rb") as f:
            self.dest.write_file(STATE, iter(lambda: f.read(1 << 20), b""))
        head = json.dumps(_meta_values(state), sort_keys=True).encode()
        self.dest.write_file(HEAD, [head])
        self._unsent = False

    def _write(self, conn: sqlite3.Connection, state: State) -> None:
        p = state.published
        conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v, sort_keys=True)) for k, v in _meta_values(state).items()],
        )
        blobs = state.blobs
        dirty = sorted(getattr(blobs, "dirty", set()))
        # generators, not lists: a first mirror of a million blobs writes them all
        conn.executemany(
            "DELETE FROM blobs WHERE path = ?", ((k,) for k in dirty if k not in blobs)
        )
        conn.executemany(
            "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?, ?)",
            (
                (k, k.split("/")[2], blobs[k][0], blobs[k][1], blobs[k][2])
                for k in dirty
                if k in blobs
            ),
        )
        indexes = state.indexes
        dirty = sorted(getattr(indexes, "dirty", set()))
        conn.executemany(
            "DELETE FROM indexes WHERE path = ?", [(k,) for k in dirty if k not in indexes]
        )
        conn.executemany(
            "INSERT OR IGNORE INTO indexes VALUES (?)", [(k,) for k in dirty if k in indexes]
        )
        old, new = state._loaded_artifacts or {}, p.artifacts
        old_names = state._loaded_names or {}
        old_linked = state._loaded_linked or set()
        if old is not new or old_names is not p.names or old_linked != p.linked:
            conn.executemany(
                "DELETE FROM artifacts WHERE id = ?", [(k,) for k in old if k not in new]
            )

            def rows() -> Iterator[tuple[Any, ...]]:
                for k, (type_name, fp) in new.items():
                    name = p.names.get(k, "")
                    if (
                        old.get(k) != [type_name, fp]
                        or old_names.get(k) != name
                        or (k in old_linked) != (k in p.linked)
                    ):
                        yield (k, type_name, name, tree.shard_of(name), fp, k in p.linked)

            conn.executemany("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?)", rows())
        old_shards = state._loaded_shards or {}
        conn.executemany(
            "DELETE FROM shards WHERE type = ? AND shard = ?",
            [k for k in old_shards if k not in state.shards],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    t,
                    s,
                    r.file.sha256,
                    r.file.size,
                    r.sums.sha256,
                    r.sums.size,
                    r.artifacts,
                    r.blobs,
                    r.bytes,
                )
                for (t, s), r in state.shards.items()
                if old_shards.get((t, s)) != r
            ],
        )
        old_retired = state._loaded_retired or {}
        conn.executemany(
            "DELETE FROM retired WHERE path = ?",
            [(k,) for k in old_retired if k not in state.retired],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO retired VALUES (?, ?)",
            [(k, v) for k, v in sorted(state.retired.items()) if old_retired.get(k) != v],
        )


def _all_dirty(state: State) -> None:
    if isinstance(state.blobs, Tracked):
        state.blobs.dirty = set(state.blobs)
    if isinstance(state.indexes, TrackedSet):
        state.indexes.dirty = set(state.indexes)


def _fresh(state: State) -> State:
    """Mark what is in memory as what the file holds (after a load or a save)."""
    if not isinstance(state.blobs, Tracked):
        state.blobs = Tracked(state.blobs)
    if not isinstance(state.indexes, TrackedSet):
        state.indexes = TrackedSet(state.indexes)
    if state.rewrite:
        _all_dirty(state)
        return state
    state.blobs.dirty = set()
    state.indexes.dirty = set()
    state._loaded_artifacts = state.published.artifacts
    state._loaded_names = state.published.names
    state._loaded_linked = set(state.published.linked)
    state._loaded_shards = dict(state.shards)
    state._loaded_retired = dict(state.retired)
    state._saved_meta = json.loads(json.dumps(_meta_values(state)))
    return state


def _dirty(state: State) -> bool:
    return bool(
        getattr(state.blobs, "dirty", True)
        or getattr(state.indexes, "dirty", True)
        or state.published.artifacts is not state._loaded_artifacts
        or state.published.names is not state._loaded_names
        or state.published.linked != state._loaded_linked
        or state.shards != state._loaded_shards
        or state.retired != state._loaded_retired
    )


def load(dest: Dest) -> State:
    """The whole state, read only (``mirror.check`` and tools)."""
    store = Store(dest, writable=False)
    try:
        return store.load()
    finally:
        store.close()


def remove(dest: Dest) -> None:
    """Remove the state (a tree taken over by another writer). SQLite's sidecars go first:
    a -wal left beside a state.sqlite created later would be replayed into it."""
    for path in (*(STATE + s for s in ("-wal", "-shm", "-journal")), STATE, HEAD, STATE_V1):
        dest.delete(path)


# -- a state to rebuild: format 1 (state.json, the upgrade), or from the tree itself ---------
def _load_v1(dest: Dest, raw: bytes) -> State:
    try:
        v1 = recovery.read_v1(raw)
        state = State(
            blobs=Tracked(v1.blobs),
            indexes=TrackedSet(v1.indexes),
            published=Published(complete=False, **v1.published),  # the upgrade walks
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        state = State(problem=f"{STATE_V1} was unreadable ({exc}); rebuilt from the tree")
        _recover(dest, state)
    state.legacy = state.rewrite = True
    return state


def _recover(dest: Dest, state: State) -> None:
    """What the tree published, read back from its own indexes (``mirror._recovery``)."""
    found = recovery.published_by_tree(dest)
    if found is None:
        return  # then only what the catalog selects is known
    for path in found.indexes:
        state.indexes.add(path)
    state.blobs.update(found.blobs)
    state.published.artifacts.update(found.artifacts)


def _adopt_root(dest: Dest, state: State) -> None:
    """The shards and types a format 2 root in the tree pins, so that the next publish
    supersedes them instead of leaving them behind."""
    pinned = recovery.pinned_by_root(dest)
    if pinned is not None:
        state.shards, state.published.types = pinned


def _shard_ok(shard: object) -> bool:
    return isinstance(shard, str) and bool(_SHARD.match(shard))
