"""The catalog's core: the one object that owns the database, the blob store, the fetcher,
the read cache, the type cache, the hooks and the policy, and the only thing that closes
them.

A ``Catalog`` is a ``(core, scope)`` view. The helper modules (``_blobops``,
``_blobread``, ``_slots``, ``_maintenance``, ``_links``) take the core and the scope
explicitly; the policy checks every operation starts with (may this scope read it? do
it?) live here, in one place.

Ownership: the catalog returned by ``glarelite.open`` owns its core and closes it;
views made by ``Catalog.scoped`` share it and never close it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._db import Database
from ._rows import ArtifactRow, artifact_row
from .errors import Conflict, InvalidInput, NotFound
from .hooks import Hooks
from .policy import Policy, Scope, Target
from .settings import HttpSettings
from .types import ArtifactType

if TYPE_CHECKING:
    from ._cache import ReadCache
    from ._http import Fetcher
    from ._store import BlobStore


@dataclass(frozen=True)
class CatalogSettings:
    """Immutable catalog options.

    ``synchronous``: SQLite's NORMAL (durable across process crashes, the default) or
    FULL (also across power loss, slower commits). ``max_blob_size``: catalog-wide cap
    per blob and per blob dict, bytes. ``stale_after``: seconds after which ``gc`` treats
    an upload still ``saving`` (and its temporary) as abandoned.
    """

    busy_timeout: float = 60.0
    synchronous: str = "NORMAL"
    max_blob_size: int | None = None
    stale_after: float = 6 * 3600.0
    http: HttpSettings = field(default_factory=HttpSettings)
    cache_dir: str | None = None
    cache_max_bytes: int = 10 * 2**30
    mirror_base_url: str | None = None


class Core:
    """What every view of one catalog shares. Store, fetcher and cache are made on first
    use: most processes never fetch, and importing their libraries costs time."""

    def __init__(
        self,
        database: Database,
        *,
        settings: CatalogSettings,
        storage_options: Mapping[str, Any] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.hooks = Hooks()
        self.policy = policy or Policy()
        self._storage_options = dict(storage_options or {})
        self._types: dict[str, ArtifactType] = {}
        self._store: BlobStore | None = None
        self._fetcher: Fetcher | None = None
        self._cache: ReadCache | None = None

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            fetcher.close()
        self.database.close()

    # -- shared resources ------------------------------------------------------------
    @property
    def store(self) -> BlobStore:
        if self._store is None:
            from ._store import BlobStore

            self._store = BlobStore(self.get_setting("storage"), self._storage_options)
        return self._store

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            from ._http import Fetcher

            http = self.settings.http
            stored = tuple(self.get_setting("allow_hosts", []))
            self._fetcher = Fetcher(replace(http, allow_hosts=tuple(http.allow_hosts) + stored))
        return self._fetcher

    @property
    def cache(self) -> ReadCache | None:
        """The read-through cache of external blobs, when the settings name a folder."""
        if not self.settings.cache_dir:
            return None
        if self._cache is None:
            from ._cache import ReadCache

            self._cache = ReadCache(self.settings.cache_dir, self.settings.cache_max_bytes)
        return self._cache

    # -- catalog settings stored in the file ----------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        with self.database.read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.database.write() as conn:
            conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # -- types -------------------------------------------------------------------------
    def get_type(self, name: str) -> ArtifactType:
        if not isinstance(name, str):
            raise InvalidInput(f"type name must be a string, not {name!r}")
        cached = self._types.get(name)
        if cached is not None:
            return cached
        with self.database.read() as conn:
            row = conn.execute(
                "SELECT definition FROM artifact_types WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no artifact type {name!r}; define it first")
        atype = ArtifactType.from_json(json.loads(row[0]))
        self._types[name] = atype
        return atype

    def remember_type(self, atype: ArtifactType) -> None:
        self._types[atype.name] = atype

    def type_or_none(self, name: str) -> ArtifactType | None:
        try:
            return self.get_type(name)
        except NotFound:
            return None

    # -- the policy checks every operation starts with -------------------------------
    def visible_row(self, conn: sqlite3.Connection, scope: Scope, artifact_id: str) -> ArtifactRow:
        """The artifact's row if the policy lets ``scope`` read it (``get``), else
        NotFound."""
        if not isinstance(artifact_id, str):
            raise InvalidInput(f"artifact id must be a string, not {artifact_id!r}")
        row = artifact_row(conn, artifact_id)
        if row is None or not self.policy.can_read(scope, row.target()):
            # never 'forbidden' here: that would reveal that the artifact exists
            raise NotFound(f"no artifact {artifact_id}")
        return row

    def authorized_row(
        self, conn: sqlite3.Connection, scope: Scope, artifact_id: str, action: str
    ) -> ArtifactRow:
        """The artifact's row if the policy lets ``scope`` do ``action`` on it: NotFound
        if it may not read it, Forbidden if it may read it but not do ``action``."""
        row = self.visible_row(conn, scope, artifact_id)
        self.policy.authorize(action, scope, row.target())
        return row

    def authorize(self, action: str, scope: Scope, target: Target | None = None) -> None:
        """Forbidden unless the policy lets ``scope`` do ``action`` (on ``target``)."""
        self.policy.authorize(action, scope, target)

    @staticmethod
    def refuse_if_saving(conn: sqlite3.Connection, artifact_id: str, what: str) -> None:
        saving = conn.execute(
            "SELECT field, key FROM blobs WHERE artifact_id = ? AND status = 'saving' LIMIT 1",
            (artifact_id,),
        ).fetchone()
        if saving:
            slot = f"{saving[0]}/{saving[1]}" if saving[1] else saving[0]
            raise Conflict(f"cannot {what}: blob {slot} is still being written")
