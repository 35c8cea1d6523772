"""Rows of the catalog tables: read by name here, turned into typed rows and into the
immutable models readers get. The only module that knows the column order."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ._hashing import split_digest
from .models import Artifact, Blob, BlobValue
from .policy import Target
from .types import ArtifactType

ARTIFACT_COLUMNS = (
    "id, type_name, name, version, version_key, owner, visibility, status, description, "
    "tags, properties, created_at, updated_at, activated_at"
)
BLOB_COLUMNS = (
    "artifact_id, field, key, status, external, size, digest, checksums, content_type, "
    "location, final_url, etag, last_modified, verified_at, upstream, created_at, updated_at"
)


@dataclass(frozen=True)
class ArtifactRow:
    """One row of ``artifacts`` (``ARTIFACT_COLUMNS``); tags and properties still JSON."""

    id: str
    type_name: str
    name: str
    version: str
    version_key: str
    owner: str
    visibility: str
    status: str
    description: str
    tags: str
    properties: str
    created_at: str
    updated_at: str
    activated_at: str | None

    @classmethod
    def of(cls, row: Sequence[Any]) -> ArtifactRow:
        """From ``SELECT ARTIFACT_COLUMNS`` (or ``a.*``: the table has these columns first)."""
        return cls(*row[:14])

    def target(self) -> Target:
        """What a policy rule sees of this artifact."""
        return Target(self.id, self.type_name, self.owner, self.visibility, self.status)

    def tag_list(self) -> list[str]:
        tags: list[str] = json.loads(self.tags)
        return tags

    def props(self) -> dict[str, Any]:
        props: dict[str, Any] = json.loads(self.properties)
        return props


@dataclass(frozen=True)
class BlobRow:
    """One row of ``blobs`` (``BLOB_COLUMNS``)."""

    artifact_id: str
    field: str
    key: str
    status: str
    external: int
    size: int | None
    digest: str | None
    checksums: str
    content_type: str
    location: str | None
    final_url: str | None
    etag: str | None
    last_modified: str | None
    verified_at: str | None
    upstream: str
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, row: Sequence[Any]) -> BlobRow:
        return cls(*row[:17])

    def as_dict(self) -> dict[str, Any]:
        """Column name -> value (what a reservation keeps to put the blob back)."""
        return asdict(self)

    @property
    def slot(self) -> str:
        return f"{self.field}/{self.key}" if self.key else self.field


def artifact_row(conn: sqlite3.Connection, artifact_id: str) -> ArtifactRow | None:
    """The artifact's row unless it is missing or deleted."""
    row = conn.execute(
        f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = ? AND status != 'deleted'",
        (artifact_id,),
    ).fetchone()
    return None if row is None else ArtifactRow.of(row)


def blob_row(conn: sqlite3.Connection, artifact_id: str, field: str, key: str) -> BlobRow | None:
    row = conn.execute(
        f"SELECT {BLOB_COLUMNS} FROM blobs WHERE artifact_id = ? AND field = ? AND key = ?",
        (artifact_id, field, key),
    ).fetchone()
    return None if row is None else BlobRow.of(row)


def blob_rows_of(conn: sqlite3.Connection, artifact_id: str) -> list[BlobRow]:
    rows = conn.execute(
        f"SELECT {BLOB_COLUMNS} FROM blobs WHERE artifact_id = ? ORDER BY field, key",
        (artifact_id,),
    ).fetchall()
    return [BlobRow.of(r) for r in rows]


def blob_from_row(type_name: str, row: BlobRow | Sequence[Any]) -> Blob:
    b = row if isinstance(row, BlobRow) else BlobRow.of(row)
    return Blob(
        type_name=type_name,
        artifact_id=b.artifact_id,
        field=b.field,
        key=b.key,
        status=b.status,
        size=b.size,
        sha256=split_digest(b.digest)[1] if b.digest and b.status == "active" else None,
        checksums=json.loads(b.checksums) if b.checksums else {},
        content_type=b.content_type,
        external=bool(b.external),
        external_url=b.location if b.external else None,
        etag=b.etag,
        last_modified=b.last_modified,
        verified_at=b.verified_at,
        upstream=b.upstream,
        created_at=b.created_at,
        updated_at=b.updated_at,
    )


def artifact_from_row(
    row: ArtifactRow | Sequence[Any],
    atype: ArtifactType | None,
    blob_rows: Iterable[BlobRow | Sequence[Any]],
) -> Artifact:
    a = row if isinstance(row, ArtifactRow) else ArtifactRow.of(row)
    blobs: dict[str, BlobValue] = {}
    if atype is not None:
        blobs.update({f: None for f in atype.blobs})
        blobs.update({f: {} for f in atype.blob_dicts})
    for brow in blob_rows:
        blob = blob_from_row(a.type_name, brow)
        if blob.key:
            entries = blobs.get(blob.field)
            if not isinstance(entries, dict):
                entries = {}
                blobs[blob.field] = entries
            entries[blob.key] = blob
        else:
            blobs[blob.field] = blob
    return Artifact(
        id=a.id,
        type_name=a.type_name,
        name=a.name,
        version=a.version,
        owner=a.owner,
        visibility=a.visibility,
        status=a.status,
        description=a.description,
        tags=tuple(a.tag_list()),
        properties=a.props(),
        created_at=a.created_at,
        updated_at=a.updated_at,
        activated_at=a.activated_at,
        blobs=blobs,
    )


def blob_rows_for(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[BlobRow]]:
    """Blob rows of several artifacts in one query, grouped by artifact id."""
    out: dict[str, list[BlobRow]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for brow in conn.execute(
            f"SELECT {BLOB_COLUMNS} FROM blobs WHERE artifact_id IN ({marks}) ORDER BY field, key",
            chunk,
        ):
            blob = BlobRow.of(brow)
            out[blob.artifact_id].append(blob)
    return out
