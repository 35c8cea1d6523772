"""What a reader has loaded of one format 2 generation: the buckets and shards its
queries needed, in a temporary on-disk SQLite database with the catalog's schema (so
the catalog's own query code lists them) plus each artifact's show view.

One ``ShardView`` per root read: a new generation gets a new view (content-addressed
files make a shard of the old one still valid, but a fresh start is simpler and the
disk cache makes it cheap). A file the root pins that is gone raises ``Gone`` for the
reader to read the root again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _query, _treeread, tree
from ._db import Database
from ._treeshards import ShardFetcher, parse_json
from ._treesource import MirrorSettings, _Source
from ._values import prop_rows
from .errors import (
    Conflict,
    Forbidden,
    GlareliteError,
    InvalidInput,
    NotFound,
    TooLarge,
    VerificationError,
)
from .models import Artifact
from .types import ArtifactType

__all__ = ["ShardView", "insert_rows", "name_shards"]

_BATCH = 500  # ids bound per statement (SQLite's default limit is far above)


def name_shards(filters: Any, atype: ArtifactType | None) -> set[str] | None:
    """The shards a listing's filters confine it to: those of the names an ``and`` name
    filter (eq/in) allows; None when the filters allow any name (every shard)."""
    for f in _query.parse_filters(filters, atype):
        if f.combiner == "and" and f.field == "name" and f.op in ("eq", "in"):
            try:
                return {tree.shard_of(str(v)) for v in f.values}
            except InvalidInput:
                raise InvalidInput("filter name: not valid Unicode text") from None
    return None


class ShardView:
    def __init__(
        self,
        root: tree.Root,
        types: Mapping[str, ArtifactType],
        source: _Source,
        settings: MirrorSettings,
        fetch: ShardFetcher,
    ) -> None:
        self.root = root
        self.types = dict(types)
        self._source = source
        self._settings = settings
        self._fetch = fetch
        self.db = self._new_db()
        self._buckets: dict[tuple[str, str], tree.Bucket] = {}
        self._shards: set[tuple[str, str]] = set()
        self.complete: set[str] = set()  # types whose every shard is loaded

    @property
    def location(self) -> str:
        return self._source.where

    def close(self) -> None:
        self.db.close()

    def _new_db(self) -> Database:
        db = Database("", synchronous="OFF")  # a private temporary file SQLite deletes
        try:
            # No rollback journal: a shard that fails to load drops the whole database
            # (_reset), so a half-inserted shard is never read; loads ~1/3 faster.
            db.conn.execute("PRAGMA journal_mode = OFF")
            db.conn.execute("PRAGMA cache_size = -32768")  # 32 MiB: pages spill to disk
            with db.write() as conn:
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                ).fetchall():
                    conn.execute(f'DROP TRIGGER "{name}"')  # no change journal here
                conn.execute(
                    "CREATE TABLE mirror_shows (id TEXT PRIMARY KEY, path TEXT NOT NULL,"
                    " body TEXT NOT NULL)"
                )
                for atype in self.types.values():
                    conn.execute(
                        "INSERT INTO artifact_types (name, definition, created_at)"
                        " VALUES (?, ?, ?)",
                        (atype.name, atype.dumps(), self.root.generated_at),
                    )
        except BaseException:
            db.close()
            raise
        return db

    def _reset(self) -> None:
        old, self.db = self.db, self._new_db()
        self._shards, self.complete = set(), set()
        old.close()

    # -- loading --------------------------------------------------------------------------
    def load(self, type_names: Iterable[str], shards: set[str] | None) -> None:
        """Load the given shards (None: every shard) of each type, unless loaded."""
        for name in type_names:
            if name in self.types and name not in self.complete:
                self._load_type(name, shards)

    def _bucket(self, type_name: str, bucket: str) -> tree.Bucket | None:
        entry = self.root.types[type_name]
        if bucket not in entry.buckets:
            return None
        found = self._buckets.get((type_name, bucket))
        if found is None:
            found = self._fetch.bucket(entry, bucket)
            self._buckets[(type_name, bucket)] = found
        return found

    def _load_type(self, type_name: str, wanted: set[str] | None) -> None:
        for bucket in sorted(self.root.types[type_name].buckets):
            if wanted is not None and not any(s[0] == bucket for s in wanted):
                continue
            found = self._bucket(type_name, bucket)
            if found is None:
                continue
            for shard in sorted(found.shards):
                if (wanted is None or shard in wanted) and (type_name, shard) not in self._shards:
                    self._load_shard(type_name, found.shards[shard])
        if wanted is not None:  # shards no bucket lists hold nothing: loaded, empty
            self._shards.update((type_name, s) for s in wanted)
        else:
            self.complete.add(type_name)

    def _load_shard(self, type_name: str, ref: tree.ShardRef) -> None:
        atype = self.types[type_name]
        path = where = ref.path(type_name)
        try:
            path, items = self._fetch.shard(atype, ref)
            try:
                with self.db.write() as conn:
                    _check_unique(conn, path, [item.artifact.id for item, _ in items])
                    conn.executemany(
                        "INSERT INTO mirror_shows (id, path, body) VALUES (?, ?, ?)",
                        [(item.artifact.id, path, body) for item, body in items],
                    )
                    for item, _body in items:
                        where = f"{path}: artifact {item.artifact.id}"
                        insert_rows(conn, item, atype)
            except BaseException:
                self._reset()  # no journal to roll back: start again from nothing
                raise
        except InvalidInput as exc:
            if str(exc).startswith("mirror tree "):
                raise
            raise InvalidInput(f"mirror tree {self.location}: {exc}") from None
        except Conflict as exc:  # the catalog's uniqueness (name, version per owner)
            raise InvalidInput(
                f"mirror tree {self.location}: {where} cannot be loaded: {exc}"
            ) from None
        except GlareliteError:
            raise
        except (sqlite3.Error, UnicodeError, ValueError) as exc:
            raise InvalidInput(
                f"mirror tree {self.location}: {where} cannot be loaded: {exc}"
            ) from None
        self._shards.add((type_name, ref.shard))

    # -- reading ----------------------------------------------------------------------------
    def stored(self, artifact_id: str) -> Artifact | None:
        """A loaded artifact, validated again from its stored show view."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT s.path, s.body, a.type_name FROM mirror_shows s"
                " JOIN artifacts a ON a.id = s.id WHERE s.id = ?",
                (artifact_id,),
            ).fetchone()
        if row is None:
            return None
        return _treeread.read_show(json.loads(row[1]), self.types[row[2]], row[0]).artifact

    def shard_named_by(self, type_name: str, artifact_id: str) -> str | None:
        """The shard of the name artifacts/<type>/<id>/index.json gives, if any: the file
        is not pinned by hash, so it only chooses which (verified) shard to read."""
        path = tree.artifact_index_path(type_name, _treeread.check_artifact_id(artifact_id))
        deadline = time.monotonic() + self._settings.read_deadline
        try:
            data = parse_json(
                self._source.read(path, self._settings.max_shard_bytes, deadline), path
            )
        except (NotFound, TooLarge, InvalidInput, VerificationError, Forbidden):
            return None
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str):
            return None
        try:
            return tree.shard_of(name)
        except InvalidInput:
            return None

    def materialize(self, conn: Any, rows: Sequence[Any]) -> list[Artifact]:
        """The artifacts of a page's rows (id, type_name, ...), from their show views."""
        stored: dict[str, tuple[str, str]] = {}
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), _BATCH):  # one query per batch, not one per row
            chunk = ids[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            for ident, path, body in conn.execute(
                f"SELECT id, path, body FROM mirror_shows WHERE id IN ({marks})", chunk
            ):
                stored[ident] = (path, body)
        out = []
        for r in rows:
            path, body = stored[r[0]]
            out.append(_treeread.read_show(json.loads(body), self.types[r[1]], path).artifact)
        return out


def _check_unique(conn: Any, path: str, ids: list[str]) -> None:
    """An artifact listed twice, in this shard or in one loaded before: InvalidInput."""
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        marks = ",".join("?" * len(chunk))
        other = conn.execute(
            f"SELECT id, path FROM mirror_shows WHERE id IN ({marks}) LIMIT 1", chunk
        ).fetchone()
        if other is not None:
            raise InvalidInput(f"{path}: artifact {other[0]} is listed twice (also in {other[1]})")
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise InvalidInput(f"{path}: artifact {twice} is listed twice")


def insert_rows(conn: Any, item: _treeread.Loaded, atype: ArtifactType) -> None:
    """The catalog's rows for one artifact (no blob rows: listing never filters on them)."""
    artifact, version_key = item.artifact, item.version_key
    conn.execute(
        "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility,"
        " status, description, tags, properties, created_at, updated_at, activated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            artifact.id,
            artifact.type_name,
            artifact.name,
            artifact.version,
            version_key,
            artifact.owner,
            artifact.visibility,
            artifact.status,
            artifact.description,
            json.dumps(sorted(artifact.tags)),
            json.dumps(dict(artifact.properties), sort_keys=True),
            artifact.created_at,
            artifact.updated_at,
            artifact.activated_at,
        ),
    )
    if artifact.tags:
        conn.executemany(
            "INSERT INTO artifact_tags (artifact_id, tag) VALUES (?, ?)",
            [(artifact.id, t) for t in sorted(set(artifact.tags))],
        )
    rows = prop_rows(artifact.id, atype, item.props)
    if rows:
        conn.executemany(
            "INSERT INTO artifact_props (artifact_id, name, key, position, value)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
