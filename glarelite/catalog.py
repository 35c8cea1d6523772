"""The catalog: artifact types, artifacts and their lifecycle, in one SQLite file.

A ``Catalog`` is a thin ``(core, scope)`` view: the core (``_core``) owns the database,
the store, the fetcher, the caches and the hooks; the scope says who is asking. Every
method is one transaction. Blob operations live in ``_blobops`` / ``_blobread`` and are
reached through the same object.

Who closes what: the catalog returned by :func:`open` owns its core, and closing it
(``close`` or leaving its ``with`` block) closes the core; a view made by
:meth:`Catalog.scoped` shares the core and its ``close`` does nothing to it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from . import (
    _blobops,
    _blobread,
    _blobrules,
    _journal,
    _links,
    _listing,
    _maintenance,
    _semver,
    quotas,
)
from ._core import CatalogSettings, Core
from ._db import Database, new_id, utcnow
from ._maintenance import CheckResult, GcReport
from ._rows import (
    ARTIFACT_COLUMNS,
    ArtifactRow,
    artifact_from_row,
    artifact_row,
    blob_rows_for,
    blob_rows_of,
)
from ._values import (
    check_description,
    check_name,
    check_owner,
    check_tags,
    coerce_property,
    empty_value,
    prop_rows,
)
from .errors import Conflict, Forbidden, IllegalTransition, InvalidInput, NotFound
from .hooks import HookEvent, Hooks, hooked, make_event
from .models import Artifact, Blob, Change, Page
from .policy import DEFAULT_RULES, Policy, Rule, Scope, Target
from .progress import Progress
from .quotas import Quota
from .types import ArtifactType, Property, make_type

_UNSET: Any = object()
_List = list  # the method Catalog.list shadows the builtin inside the class
STATUSES = ("drafted", "active", "deactivated", "deleted")
VISIBILITIES = ("private", "public")


class Catalog:
    """An artifact catalog in one SQLite file with blobs on fsspec storage."""

    def __init__(self, core: Core, scope: Scope, *, owns_core: bool = False) -> None:
        self._core = core
        self.scope = scope
        self._owns_core = owns_core

    @property
    def settings(self) -> CatalogSettings:
        return self._core.settings

    @property
    def hooks(self) -> Hooks:
        """Before/after hooks and upload wrappers of this catalog (see hooks.py); its
        scoped views share them."""
        return self._core.hooks

    # -- lifetime ------------------------------------------------------------------
    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the catalog: the database, the fetcher's connections. On a view made
        by :meth:`scoped` it does nothing: the view does not own the catalog."""
        if self._owns_core:
            self._core.close()

    @property
    def path(self) -> str:
        return self._core.database.path

    @property
    def storage(self) -> str:
        """The fsspec URL of the blob storage fixed at creation (never its options, which
        may hold credentials)."""
        return str(self._core.get_setting("storage"))

    def scoped(self, owner: str | None = None, *, admin: bool = False) -> Catalog:
        """A view of the same catalog acting for ``owner`` (or as admin). The view shares
        this catalog's core and never closes it."""
        scope = Scope(owner=owner or "admin", admin=True) if admin else Scope.of(owner or "")
        return Catalog(self._core, scope)

    # -- types -------------------------------------------------------------------
    def define_type(
        self,
        name: str | ArtifactType,
        *,
        blobs: Iterable[str] = (),
        blob_dicts: Iterable[str] = (),
        properties: Mapping[str, Property | str] | None = None,
        max_blob_size: int | None = None,
    ) -> ArtifactType:
        """Define an artifact type, or confirm an identical existing definition.

        Defining a type again with a *different* definition is a Conflict: artifacts
        already stored were validated against the old one."""
        atype = (
            name
            if isinstance(name, ArtifactType)
            else make_type(
                name,
                blobs=blobs,
                blob_dicts=blob_dicts,
                properties=properties,
                max_blob_size=max_blob_size,
            )
        )
        self._core.authorize("define_type", self.scope)
        text = atype.dumps()
        with self._core.database.write() as conn:
            row = conn.execute(
                "SELECT definition FROM artifact_types WHERE name = ?", (atype.name,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO artifact_types(name, definition, created_at) VALUES (?, ?, ?)",
                    (atype.name, text, utcnow()),
                )
            elif row[0] != text:
                raise Conflict(
                    f"type {atype.name!r} is already defined differently; "
                    f"existing definition: {row[0]}"
                )
        self._core.remember_type(atype)
        return atype

    def get_type(self, name: str) -> ArtifactType:
        return self._core.get_type(name)

    def types(self) -> _List[ArtifactType]:
        with self._core.database.read() as conn:
            rows = conn.execute("SELECT definition FROM artifact_types ORDER BY name").fetchall()
        return [ArtifactType.from_json(json.loads(r[0])) for r in rows]

    # -- reads -----------------------------------------------------------------
    def get(self, artifact_id: str) -> Artifact:
        """The artifact with this id, if the caller may see it (else NotFound)."""
        with self._core.database.read() as conn:
            row = self._core.visible_row(conn, self.scope, artifact_id)
            blob_rows = blob_rows_of(conn, artifact_id)
        return artifact_from_row(row, self._core.type_or_none(row.type_name), blob_rows)

    def list(
        self,
        type_name: str | None = None,
        *,
        filters: Sequence[str | tuple[str, str]] | Mapping[str, Any] = (),
        sort: str | Sequence[str] | None = None,
        limit: int | None = None,
        marker: str | None = None,
        latest: bool = False,
    ) -> Page:
        """A page of visible artifacts; see GLARE-SEMANTICS for filters, sort and paging.

        A non-admin scope is shown what the default policy lets it read: its own and
        public artifacts, none deactivated. A replaced ``get`` rule also applies to
        each item: the page is filled past what it hides, and its marker and total speak
        of readable artifacts only."""
        self._core.authorize("list", self.scope)
        atype = self.get_type(type_name) if type_name is not None else None
        policy = self._core.policy

        def materialize(conn: Any, rows: Sequence[Any]) -> _List[Artifact]:
            arows = [ArtifactRow.of(r) for r in rows]
            arows = [r for r in arows if policy.can_read(self.scope, r.target())]
            blobs = blob_rows_for(conn, [r.id for r in arows])
            return [
                artifact_from_row(r, self._core.type_or_none(r.type_name), blobs[r.id])
                for r in arows
            ]

        def one_page(limit: int | None, marker: str | None) -> Page:
            return _listing.page(
                self._core.database,
                materialize,
                type_name=type_name,
                atype=atype,
                owner=None if self.scope.admin else self.scope.owner,
                filters=filters,
                sort=sort,
                limit=limit,
                marker=marker,
                latest=latest,
            )

        if self.scope.admin or policy.rules["get"] is DEFAULT_RULES["get"]:
            return one_page(limit, marker)  # the query's scope is the rule: exact
        return _listing.narrowed_page(one_page, self._readable_marker, limit, marker)

    def iter_all(self, type_name: str | None = None, **kwargs: Any) -> Iterator[Artifact]:
        """Every matching artifact, page by page (the ``list`` keywords apply)."""
        return _listing.iter_all(self.list, type_name, **kwargs)

    # -- writes ----------------------------------------------------------------
    @hooked("create")
    def create(
        self,
        type_name: str,
        name: str,
        *,
        version: str | int | None = None,
        owner: str | None = None,
        visibility: str = "private",
        description: str | None = None,
        tags: Iterable[str] = (),
        properties: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Create a drafted, private artifact. ``owner`` may be given by an admin scope
        only (the default policy). ``visibility="public"`` is refused (InvalidInput, as
        Glare's 400): public implies active; activate, then publish."""
        atype = self.get_type(type_name)
        check_name(name)
        canonical, key = _semver.canonical(version)
        if owner is not None and not self.scope.admin and owner != self.scope.owner:
            raise Forbidden("only an admin scope may create artifacts for another owner")
        owner = check_owner(owner if owner is not None else self.scope.owner)
        if visibility not in VISIBILITIES:
            raise InvalidInput(f"visibility must be 'private' or 'public', not {visibility!r}")
        if visibility == "public":
            raise InvalidInput(
                "an artifact cannot be created public: public implies active "
                "(create it, activate it, then publish it)"
            )
        self._core.authorize(
            "create", self.scope, Target(None, type_name, owner, visibility, "drafted")
        )
        description = check_description(description)
        tag_list = check_tags(tags)
        props = self._initial_properties(atype, properties or {})
        artifact_id = new_id()
        now = utcnow()
        with self._core.database.write() as conn:
            quotas.check_create(conn, type_name, owner)
            _links.resolve(self._core, self.scope, conn, atype, props)
            conn.execute(
                f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'drafted', ?, ?, ?, ?, ?, NULL)",
                (
                    artifact_id,
                    type_name,
                    name,
                    canonical,
                    key,
                    owner,
                    visibility,
                    description,
                    json.dumps(tag_list),
                    json.dumps(props, sort_keys=True),
                    now,
                    now,
                ),
            )
            _journal.record(conn, artifact_id, type_name, now)  # no trigger: see schema.sql
            self._write_index_rows(conn, artifact_id, atype, tag_list, props)
        blobs: dict[str, Any] = {f: None for f in atype.blobs}
        blobs.update({f: {} for f in atype.blob_dicts})
        return Artifact(
            id=artifact_id,
            type_name=type_name,
            name=name,
            version=canonical,
            owner=owner,
            visibility=visibility,
            status="drafted",
            description=description,
            tags=tuple(tag_list),
            properties=props,
            created_at=now,
            updated_at=now,
            blobs=blobs,
        )

    @hooked("update")
    def update(
        self,
        artifact_id: str,
        *,
        name: str = _UNSET,
        version: str | int | None = _UNSET,
        description: str | None = _UNSET,
        visibility: str = _UNSET,
        tags: Iterable[str] = _UNSET,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        properties: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Change an artifact. Drafted artifacts accept any change; active ones only
        description, visibility (through the ``publish`` rule), tags and mutable
        properties; others none."""
        with self._core.database.write() as conn:
            row = self._core.authorized_row(conn, self.scope, artifact_id, "update")
            atype = self.get_type(row.type_name)
            status = row.status
            if status not in ("drafted", "active"):
                raise IllegalTransition(f"an artifact that is {status} cannot be changed")
            active = status == "active"
            sets: dict[str, Any] = {}
            if name is not _UNSET:
                if active and name != row.name:
                    raise IllegalTransition("the name of an active artifact cannot change")
                sets["name"] = check_name(name)
            if version is not _UNSET:
                canonical, key = _semver.canonical(version)
                if active and canonical != row.version:
                    raise IllegalTransition("the version of an active artifact cannot change")
                sets["version"], sets["version_key"] = canonical, key
            if description is not _UNSET:
                sets["description"] = check_description(description)
            if visibility is not _UNSET:
                sets["visibility"] = self._check_visibility_change(row, visibility)
            old_tags = row.tag_list()
            new_tags = old_tags if tags is _UNSET else check_tags(tags)
            new_tags = check_tags(
                (set(new_tags) | set(check_tags(add_tags))) - set(check_tags(remove_tags))
            )
            props = row.props()
            if properties is not None and not isinstance(properties, Mapping):
                raise InvalidInput(f"properties must be a mapping, not {properties!r}")
            if properties:
                for pname, value in properties.items():
                    prop = atype.properties.get(pname)
                    if prop is None:
                        raise InvalidInput(f"type {atype.name!r} has no property {pname!r}")
                    if active and not prop.mutable and value != props.get(pname):
                        raise IllegalTransition(
                            f"property {pname!r} is not mutable once the artifact is active"
                        )
                    coerced = coerce_property(atype, pname, value)
                    if coerced is None:
                        props.pop(pname, None)
                    else:
                        props[pname] = coerced
            sets["tags"] = json.dumps(new_tags)
            _links.resolve(self._core, self.scope, conn, atype, props)
            if active:
                _links.check_targets(conn, atype, props)
            sets["properties"] = json.dumps(props, sort_keys=True)
            sets["updated_at"] = utcnow()
            assignments = ", ".join(f"{k} = ?" for k in sets)
            conn.execute(
                f"UPDATE artifacts SET {assignments} WHERE id = ?", (*sets.values(), artifact_id)
            )
            conn.execute("DELETE FROM artifact_tags WHERE artifact_id = ?", (artifact_id,))
            conn.execute("DELETE FROM artifact_props WHERE artifact_id = ?", (artifact_id,))
            self._write_index_rows(conn, artifact_id, atype, new_tags, props)
        return self._committed(artifact_id)

    # The same change without update's hooks: publish runs its own (it is not an update).
    _update: Callable[..., Artifact] = inspect.unwrap(update)

    @hooked("publish")
    def publish(self, artifact_id: str) -> Artifact:
        """Make an active artifact public (a Conflict if a public twin exists); by
        default an admin's action."""
        return self._update(artifact_id, visibility="public")

    @hooked("activate")
    def activate(self, artifact_id: str) -> Artifact:
        """drafted -> active (every required property set, no blob saving);
        deactivated -> active; active -> active is a no-op."""
        return self._transition(artifact_id, "active")

    @hooked("deactivate")
    def deactivate(self, artifact_id: str) -> Artifact:
        return self._transition(artifact_id, "deactivated")

    @hooked("reactivate")
    def reactivate(self, artifact_id: str) -> Artifact:
        """deactivated -> active, without re-checking required properties."""
        with self._core.database.read() as conn:
            status = self._core.visible_row(conn, self.scope, artifact_id).status
        if status != "deactivated":
            raise IllegalTransition(f"only a deactivated artifact can be reactivated, not {status}")
        return self._transition(artifact_id, "active")

    def _transition(self, artifact_id: str, target: str) -> Artifact:
        with self._core.database.write() as conn:
            row = self._core.visible_row(conn, self.scope, artifact_id)
            status = row.status
            if target == "deactivated":
                action = "deactivate"
            else:
                action = "reactivate" if status == "deactivated" else "activate"
            self._core.policy.authorize(action, self.scope, row.target())
            if status == target:
                return self._committed(artifact_id)
            allowed = {
                ("drafted", "active"),
                ("active", "deactivated"),
                ("deactivated", "active"),
            }
            if (status, target) not in allowed:
                raise IllegalTransition(f"cannot go from {status} to {target}")
            self._core.refuse_if_saving(conn, artifact_id, f"change the status to {target}")
            now = utcnow()
            activated_at = row.activated_at
            if status == "drafted":
                atype = self.get_type(row.type_name)
                props = row.props()
                missing = [
                    n for n, p in sorted(atype.properties.items()) if p.required and n not in props
                ]
                if missing:
                    raise IllegalTransition(
                        f"cannot activate: required properties not set: {', '.join(missing)}"
                    )
                _blobrules.refuse_if_missing(conn, atype, artifact_id)
            if target == "active":
                activated_at = now  # Glare sets it on each activation
                _links.check_targets(conn, self.get_type(row.type_name), row.props())
            conn.execute(
                "UPDATE artifacts SET status = ?, updated_at = ?, activated_at = ? WHERE id = ?",
                (target, now, activated_at, artifact_id),
            )
        return self._committed(artifact_id)

    @hooked("delete")
    def delete(self, artifact_id: str, *, force: bool = False) -> None:
        """Delete an artifact: its records, and the stored bytes of its internal blobs that
        nothing else references. External blobs are records only: nothing is sent to
        their servers. Refused (Conflict) while active artifacts link to it, unless
        ``force``."""
        _blobops.delete_artifact(self._core, self.scope, artifact_id, force=force)

    # -- blobs -------------------------------------------------------------------
    @hooked("upload")
    def upload(
        self,
        artifact_id: str,
        slot: str,
        source: Any,
        *,
        content_type: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        algorithms: Iterable[str] = (),
        progress: Progress | None = None,
        md5: str | None = None,
        sha1: str | None = None,
    ) -> Blob:
        """Upload bytes into ``"field"`` or ``"field/key"`` of a drafted artifact.

        ``source``: a path, a binary file object or an iterable of bytes; streamed, hashed
        in the same pass, stored content-addressed. ``sha256``/``size``, when given, must
        match. ``algorithms``: extra checksums to record (e.g. ``("md5",)``; the type's
        ``checksums`` always are). ``md5``/``sha1``, when given, are recorded and must
        match. On any failure the slot is left as it was."""
        return _blobops.upload(
            self._core,
            self.scope,
            artifact_id,
            slot,
            source,
            content_type=content_type,
            sha256=sha256,
            size=size,
            algorithms=algorithms,
            progress=progress,
            md5=md5,
            sha1=sha1,
        )

    @hooked("add_location")
    def add_location(
        self,
        artifact_id: str,
        slot: str,
        url: str,
        *,
        sha256: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
        replace: bool = False,
        md5: str | None = None,
        sha1: str | None = None,
    ) -> Blob:
        """Register an external blob: download ``url`` once, record size, sha256, ETag,
        Last-Modified and the final URL. A given ``sha256``, ``md5`` or ``sha1`` must
        match (md5/sha1, and the type's ``checksums``, are computed in the same pass and
        recorded). A slot that already holds a blob is a Conflict (as in Glare) unless
        ``replace``."""
        return _blobops.add_location(
            self._core,
            self.scope,
            artifact_id,
            slot,
            url,
            sha256=sha256,
            content_type=content_type,
            progress=progress,
            replace=replace,
            md5=md5,
            sha1=sha1,
        )

    def remove_blob(self, artifact_id: str, slot: str) -> None:
        """Remove a blob or blob-dict entry from a drafted artifact."""
        _blobops.remove_blob(self._core, self.scope, artifact_id, slot)

    @hooked("download")
    def open_blob(
        self, artifact_id: str, slot: str, *, offset: int | None = None, length: int | None = None
    ) -> BinaryIO:
        """A stream of the blob's bytes. Reading a whole blob to the end verifies its size
        and sha256 (ChecksumMismatch otherwise); a ranged read (``offset``/``length``)
        cannot be verified and says so (``verified_on_eof`` is False)."""
        return _blobread.open_blob(
            self._core, self.scope, artifact_id, slot, offset=offset, length=length
        )

    def open_blobs(
        self, slots: Iterable[tuple[str, str]]
    ) -> Generator[tuple[str, str, Callable[[], BinaryIO]], None, None]:
        """Many whole blobs, fast: yields ``(artifact_id, slot, open)`` in the order given,
        where ``open()`` returns what :meth:`open_blob` would return (or raises what it
        would raise).

        External blobs are fetched with HTTP/1.1 pipelining, one connection per origin
        (``HttpSettings.pipeline_depth`` requests ahead); an answer that is not a plain
        200 (redirect, error, 429, chunked, broken connection) is fetched the ordinary
        way, with the guard and retries, when it is opened. Open and read (or skip) each
        item before taking the next; a pipelined stream that breaks midway raises
        NetworkError, and :meth:`open_blob` fetches it again with retries.

        The ``download`` hooks run for each item: the before hooks for all of them
        before anything is fetched (a veto makes that item's ``open()`` raise it), the
        after hooks when an item is opened.
        """
        if not self.hooks._busy("download"):
            return _blobread.open_blobs(self._core, self.scope, slots)
        return self._open_blobs_hooked(slots)

    def _open_blobs_hooked(
        self, slots: Iterable[tuple[str, str]]
    ) -> Generator[tuple[str, str, Callable[[], BinaryIO]], None, None]:
        hooks = self.hooks

        def event(artifact_id: str, slot: str) -> HookEvent:
            given = {"artifact_id": artifact_id, "slot": slot}
            return make_event("download", self, (artifact_id, slot), {}, given)

        def after(artifact_id: str, slot: str, opener: Callable[[], BinaryIO]) -> Any:
            def open_and_tell() -> BinaryIO:
                stream = opener()
                hooks.run_after(replace(event(artifact_id, slot), result=stream))
                return stream

            return open_and_tell

        items = _blobread.open_blobs(
            self._core, self.scope, slots, before=lambda a, s: hooks.run_before(event(a, s))
        )
        with contextlib.closing(items):
            for artifact_id, slot, opener in items:
                yield artifact_id, slot, after(artifact_id, slot, opener)

    @hooked("download")
    def download(
        self,
        artifact_id: str,
        slot: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Blob:
        """Write a blob to ``dest`` atomically, verified."""
        return _blobread.download(
            self._core, self.scope, artifact_id, slot, dest, progress=progress
        )

    def blob_url(self, artifact_id: str, slot: str) -> str:
        """What a client should fetch (see ``glarelite.urls``): the mirror's URL when the
        catalog has ``mirror_base_url``, else an external blob's URL, else the internal
        URL."""
        return _blobread.resolve_url(self._core, self.scope, artifact_id, slot)

    def check(
        self, *, rehash: bool = False, progress: Progress | None = None
    ) -> _List[CheckResult]:
        """Re-validate external blobs; a changed one is marked and no longer served."""
        return _maintenance.check(self._core, self.scope, rehash=rehash, progress=progress)

    def gc(self, *, stale_after: float | None = None) -> GcReport:
        """Clean abandoned uploads, temporaries and unreferenced stored objects."""
        return _maintenance.gc(self._core, self.scope, stale_after=stale_after)

    # -- quotas ------------------------------------------------------------------
    def set_quota(
        self,
        scope: str = "global",
        target: str = "",
        *,
        max_artifacts: int | None = None,
        max_bytes: int | None = None,
        owner: str | None = None,
    ) -> Quota:
        """Limit artifacts and stored bytes as Glare counts them, per owner: an owner's
        total (``"owner", "alice"``), each owner's of a type (``"type", "images"``) or
        one owner's of a type (``"type", "images", owner="alice"``), plus a catalog-wide
        cap (``"global"``). ``-1`` is unlimited; both None removes the quota. External
        blobs count toward the artifact count, not the stored bytes."""
        self._core.authorize("set_quota", self.scope)
        quota = Quota(scope, target, max_artifacts, max_bytes, owner)
        with self._core.database.write() as conn:
            if max_artifacts is None and max_bytes is None:
                conn.execute(
                    "DELETE FROM quotas WHERE scope = ? AND target = ?", (scope, quota.key)
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO quotas VALUES (?, ?, ?, ?)",
                    (scope, quota.key, max_artifacts, max_bytes),
                )
        return quota

    def quotas(self) -> _List[Quota]:
        with self._core.database.read() as conn:
            rows = conn.execute(
                "SELECT scope, target, max_artifacts, max_bytes FROM quotas ORDER BY scope, target"
            ).fetchall()
        found = [Quota.from_row(r) for r in rows]
        if self.scope.admin:
            return found
        # a non-admin reads the quotas that apply to it, not other owners' (their names)
        return [
            q
            for q in found
            if self._counts_only_me(q)
            or q.scope == "global"
            or (q.scope == "type" and q.owner is None)
        ]

    def usage(
        self, scope: str = "global", target: str = "", *, owner: str | None = None
    ) -> tuple[int, int]:
        """(artifacts, stored bytes) counted as the quota of that scope counts them; for
        a type quota without ``owner``, the fullest owner's."""
        quota = Quota(scope, target, owner=owner)
        if not self.scope.admin and not self._counts_only_me(quota):
            # others' counts would tell of their private artifacts (Glare: list_all_quotas
            # is the admin's, list_project_quotas the owner's own)
            raise Forbidden(
                f"owner {self.scope.owner!r} may read only its own usage "
                f"(usage('owner', {self.scope.owner!r}) or a type's with owner=)"
            )
        with self._core.database.read() as conn:
            return quotas.usage(conn, quota)

    def _counts_only_me(self, quota: Quota) -> bool:
        me = self.scope.owner
        return (quota.scope == "owner" and quota.target == me) or (
            quota.scope == "type" and quota.owner == me
        )

    # -- change journal ------------------------------------------------------------
    def serial(self) -> int:
        """The journal's newest serial (0 for a catalog never written to). Every write that
        changes what a mirror could publish raises it; remember it, then ask ``changes``."""
        return _journal.serial(self._core.database)

    def changes(self, since: int, *, limit: int = 1000) -> _List[Change]:
        """The artifacts changed after journal serial ``since``, oldest first, each once at
        its newest serial within the page. Page on with ``since=result[-1].serial``; an
        empty list means caught up. Raises JournalTrimmed when the journal no longer holds
        every change after ``since`` (then walk the whole catalog). Admin only."""
        self._core.authorize("journal", self.scope)
        return _journal.changes(self._core.database, since, limit)

    def trim_journal(self, *, before: int | None = None, keep: int | None = None) -> int:
        """Drop journal entries with a serial below ``before``, or all but the newest
        ``keep`` serials; returns how many went. A reader asking from an older serial gets
        JournalTrimmed. Admin only."""
        self._core.authorize("journal", self.scope)
        return _journal.trim(self._core.database, before, keep)

    # -- helpers ---------------------------------------------------------------
    def _readable_marker(self, marker: str) -> None:
        """NotFound unless the ``get`` rule lets this scope read ``marker``."""
        with self._core.database.read() as conn:
            self._core.visible_row(conn, self.scope, marker)

    def _committed(self, artifact_id: str) -> Artifact:
        """The artifact as a change just left it, read without the ``get`` rule: the
        change committed, and a rule may let a scope change what it cannot read."""
        with self._core.database.read() as conn:
            row = artifact_row(conn, artifact_id)
            if row is None:
                raise NotFound(f"no artifact {artifact_id}")
            blob_rows = blob_rows_of(conn, artifact_id)
        return artifact_from_row(row, self._core.type_or_none(row.type_name), blob_rows)

    def _check_visibility_change(self, row: ArtifactRow, visibility: str) -> str:
        if visibility not in VISIBILITIES:
            raise InvalidInput(f"visibility must be 'private' or 'public', not {visibility!r}")
        if visibility == row.visibility:
            return visibility
        # visibility changes only by publish (Glare: artifact:publish)
        self._core.policy.authorize("publish", self.scope, row.target())
        if visibility == "private":
            raise IllegalTransition("a public artifact cannot be made private again")
        if row.status != "active":
            raise IllegalTransition("only an active artifact can be made public")
        return visibility

    @staticmethod
    def _initial_properties(atype: ArtifactType, given: Mapping[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for pname, prop in atype.properties.items():
            value = empty_value(prop)
            if value is not None:
                props[pname] = value
        if not isinstance(given, Mapping):
            raise InvalidInput(f"properties must be a mapping, not {given!r}")
        for pname, value in given.items():
            coerced = coerce_property(atype, pname, value)
            if coerced is None:
                props.pop(pname, None)
            else:
                props[pname] = coerced
        return props

    @staticmethod
    def _write_index_rows(
        conn: sqlite3.Connection,
        artifact_id: str,
        atype: ArtifactType,
        tags: _List[str],
        props: dict[str, Any],
    ) -> None:
        if tags:
            conn.executemany(
                "INSERT INTO artifact_tags(artifact_id, tag) VALUES (?, ?)",
                [(artifact_id, t) for t in tags],
            )
        rows = prop_rows(artifact_id, atype, props)
        if rows:
            conn.executemany(
                "INSERT INTO artifact_props(artifact_id, name, key, position, value) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )


def open(
    path: str | Path,
    *,
    storage: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    owner: str | None = None,
    admin: bool | None = None,
    settings: CatalogSettings | None = None,
    allow_hosts: Iterable[str] = (),
    create: bool = True,
    policy: Policy | Mapping[str, Rule] | None = None,
) -> Catalog:
    """Open (or create) the catalog in ``path``.

    ``storage`` is fixed when the catalog is created (an fsspec URL; default: a folder
    ``<name>-blobs`` beside the catalog file, or ``memory://`` for ``:memory:``) and
    remembered by it. ``storage_options`` (credentials, endpoint) are never stored.
    ``owner`` opens the catalog in that owner's scope; without it, or with
    ``admin=True``, the scope is admin. ``allow_hosts`` adds hosts or CIDRs to the
    location guard's allow-list and is remembered. ``policy`` decides who may do what
    (``glarelite.policy``: Glare's rules by default; a ``Policy`` or a mapping of action
    to rule replaces some of them).
    """
    settings = settings or CatalogSettings()
    rules = Policy.of(policy)
    database = Database(
        path, busy_timeout=settings.busy_timeout, synchronous=settings.synchronous, create=create
    )
    try:
        if owner is not None and not admin:
            scope = Scope.of(owner)
        else:
            scope = Scope(owner=owner or "admin", admin=True)
        core = Core(database, settings=settings, storage_options=storage_options, policy=rules)
        stored = core.get_setting("storage")
        if stored is None:
            stored = storage or _default_storage(database.path)
            core.set_setting("storage", stored)
        elif storage is not None and storage.rstrip("/") != str(stored).rstrip("/"):
            raise Conflict(
                f"catalog {database.path} keeps its blobs in {stored}; storage is fixed at creation"
            )
        hosts = list(allow_hosts)
        if hosts:
            known = core.get_setting("allow_hosts", [])
            merged = sorted(set(known) | set(hosts))
            if merged != known:
                core.set_setting("allow_hosts", merged)
        # the catalog returned here owns the core: closing it closes the core
        return Catalog(core, scope, owns_core=True)
    except BaseException:
        database.close()
        raise


def _default_storage(path: str) -> str:
    if path == ":memory:":
        return f"memory://glarelite-{uuid.uuid4().hex}"
    p = Path(path).resolve()
    return str(p.parent / f"{p.stem}-blobs")
