"""What readers get back: artifacts, their blobs and pages of a listing.

These are immutable snapshots. ``to_dict()`` is the *show view* — the JSON the CLI prints
with ``--json`` and the mirror writes as ``index.json`` — and never reveals where
internal bytes are stored: blobs carry their internal URL only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from .urls import internal_url


@dataclass(frozen=True)
class Blob:
    """One blob: a blob field's value or one entry of a blob dict (``key != ""``)."""

    type_name: str
    artifact_id: str
    field: str
    key: str
    status: str  # 'saving' | 'active'
    size: int | None
    sha256: str | None  # hex, without the algorithm tag
    checksums: Mapping[str, str] = dc_field(default_factory=dict)
    content_type: str = "application/octet-stream"
    external: bool = False
    external_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    verified_at: str | None = None
    upstream: str = "ok"  # external: 'ok' | 'changed' | 'unreachable'
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def slot(self) -> str:
        return f"{self.field}/{self.key}" if self.key else self.field

    @property
    def url(self) -> str:
        """The internal URL ``/artifacts/{type}/{id}/{field}[/{key}]``."""
        return internal_url(self.type_name, self.artifact_id, self.field, self.key)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "status": self.status,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "external": self.external,
        }
        if self.checksums:
            out["checksums"] = dict(self.checksums)
        if self.external:
            out["external_url"] = self.external_url
            out["etag"] = self.etag
            out["last_modified"] = self.last_modified
            out["verified_at"] = self.verified_at
            out["upstream"] = self.upstream
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, type_name: str, artifact_id: str, field: str, key: str
    ) -> Blob:
        return cls(
            type_name=type_name,
            artifact_id=artifact_id,
            field=field,
            key=key,
            status=data.get("status", "active"),
            size=data.get("size"),
            sha256=data.get("sha256"),
            checksums=dict(data.get("checksums") or {}),
            content_type=data.get("content_type", "application/octet-stream"),
            external=bool(data.get("external", False)),
            external_url=data.get("external_url"),
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
            verified_at=data.get("verified_at"),
            upstream=data.get("upstream", "ok"),
        )


BlobValue = Blob | Mapping[str, Blob] | None


@dataclass(frozen=True)
class Artifact:
    id: str
    type_name: str
    name: str
    version: str
    owner: str
    visibility: str
    status: str
    description: str = ""
    tags: tuple[str, ...] = ()
    properties: Mapping[str, Any] = dc_field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    activated_at: str | None = None
    blobs: Mapping[str, BlobValue] = dc_field(default_factory=dict)

    @property
    def url(self) -> str:
        return internal_url(self.type_name, self.id)

    def iter_blobs(self) -> Iterator[Blob]:
        """Every blob of the artifact, blob-dict entries included, in a stable order."""
        for name in sorted(self.blobs):
            value = self.blobs[name]
            if isinstance(value, Blob):
                yield value
            elif value:
                for key in sorted(value):
                    yield value[key]

    def blob(self, slot: str) -> Blob | None:
        field_name, _, key = slot.partition("/")
        value = self.blobs.get(field_name)
        if isinstance(value, Blob):
            return None if key else value
        if value and key:
            return value.get(key)
        return None

    def to_dict(self) -> dict[str, Any]:
        blobs: dict[str, Any] = {}
        for name in sorted(self.blobs):
            value = self.blobs[name]
            if value is None or isinstance(value, Blob):
                blobs[name] = value.to_dict() if value else None
            else:
                blobs[name] = {k: value[k].to_dict() for k in sorted(value)}
        return {
            "id": self.id,
            "type_name": self.type_name,
            "name": self.name,
            "version": self.version,
            "owner": self.owner,
            "visibility": self.visibility,
            "status": self.status,
            "description": self.description,
            "tags": list(self.tags),
            "properties": dict(self.properties),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "activated_at": self.activated_at,
            "url": self.url,
            "blobs": blobs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Artifact:
        type_name, artifact_id = data["type_name"], data["id"]
        blobs: dict[str, BlobValue] = {}
        for name, value in (data.get("blobs") or {}).items():
            if value is None:
                blobs[name] = None
            elif "url" in value and "status" in value and not _is_blob_dict(value):
                blobs[name] = Blob.from_dict(
                    value, type_name=type_name, artifact_id=artifact_id, field=name, key=""
                )
            else:
                blobs[name] = {
                    k: Blob.from_dict(
                        v, type_name=type_name, artifact_id=artifact_id, field=name, key=k
                    )
                    for k, v in value.items()
                }
        return cls(
            id=artifact_id,
            type_name=type_name,
            name=data["name"],
            version=data["version"],
            owner=data["owner"],
            visibility=data["visibility"],
            status=data["status"],
            description=data.get("description", ""),
            tags=tuple(data.get("tags", ())),
            properties=dict(data.get("properties") or {}),
            created_at=data.get("created_at", ""),
            updated_at=data.get("updated_at", ""),
            activated_at=data.get("activated_at"),
            blobs=blobs,
        )


def _is_blob_dict(value: Mapping[str, Any]) -> bool:
    return all(isinstance(v, Mapping) for v in value.values())


@dataclass(frozen=True)
class Page:
    """One page of a listing. ``total`` (the count ignoring paging) is computed on first
    access: counting a large catalog costs more than fetching a page."""

    items: list[Artifact]
    next_marker: str | None
    _count: Callable[[], int] = dc_field(repr=False, compare=False)

    @property
    def total(self) -> int:
        cached = self.__dict__.get("_total")
        if cached is None:
            cached = self._count()
            object.__setattr__(self, "_total", cached)
        return int(cached)

    def __iter__(self) -> Iterator[Artifact]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Change:
    """One entry of the catalog's change journal (``Catalog.changes``): artifact
    ``artifact_id`` of type ``type_name`` changed (created, updated, changed status or
    blobs, deleted) at journal serial ``serial``, UTC time ``at`` (as the write stamped
    it). What it is now, or that it is gone, the catalog tells (``get`` raises NotFound
    for a deleted one)."""

    serial: int
    artifact_id: str
    type_name: str
    at: str
