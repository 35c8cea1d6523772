"""Rows of the catalog tables turned into the immutable models readers get."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ._hashing import split_digest
from .models import Artifact, Blob, BlobValue
from .types import ArtifactType

ARTIFACT_COLUMNS = (
    "id, type_name, name, version, version_key, owner, visibility, status, description, "
    "tags, properties, created_at, updated_at, activated_at"
)
BLOB_COLUMNS = (
    "artifact_id, field, key, status, external, size, digest, checksums, content_type, "
    "location, final_url, etag, last_modified, verified_at, upstream, created_at, updated_at"
)


def blob_from_row(type_name: str, row: Sequence[Any]) -> Blob:
    (
        artifact_id,
        field,
        key,
        status,
        external,
        size,
        digest,
        checksums,
        content_type,
        location,
        _final_url,
        etag,
        last_modified,
        verified_at,
        upstream,
        created_at,
        updated_at,
    ) = row
    return Blob(
        type_name=type_name,
        artifact_id=artifact_id,
        field=field,
        key=key,
        status=status,
        size=size,
        sha256=split_digest(digest)[1] if digest and status == "active" else None,
        checksums=json.loads(checksums) if checksums else {},
        content_type=content_type,
        external=bool(external),
        external_url=location if external else None,
        etag=etag,
        last_modified=last_modified,
        verified_at=verified_at,
        upstream=upstream,
        created_at=created_at,
        updated_at=updated_at,
    )


def artifact_from_row(
    row: Sequence[Any], atype: ArtifactType | None, blob_rows: Iterable[Sequence[Any]]
) -> Artifact:
    (
        artifact_id,
        type_name,
        name,
        version,
        _version_key,
        owner,
        visibility,
        status,
        description,
        tags,
        properties,
        created_at,
        updated_at,
        activated_at,
    ) = row[:14]
    blobs: dict[str, BlobValue] = {}
    if atype is not None:
        blobs.update({f: None for f in atype.blobs})
        blobs.update({f: {} for f in atype.blob_dicts})
    for brow in blob_rows:
        blob = blob_from_row(type_name, brow)
        if blob.key:
            entries = blobs.get(blob.field)
            if not isinstance(entries, dict):
                entries = {}
                blobs[blob.field] = entries
            entries[blob.key] = blob
        else:
            blobs[blob.field] = blob
    return Artifact(
        id=artifact_id,
        type_name=type_name,
        name=name,
        version=version,
        owner=owner,
        visibility=visibility,
        status=status,
        description=description,
        tags=tuple(json.loads(tags)),
        properties=json.loads(properties),
        created_at=created_at,
        updated_at=updated_at,
        activated_at=activated_at,
        blobs=blobs,
    )


def blob_rows_for(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[Any]]:
    """Blob rows of several artifacts in one query, grouped by artifact id."""
    out: dict[str, list[Any]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for brow in conn.execute(
            f"SELECT {BLOB_COLUMNS} FROM blobs WHERE artifact_id IN ({marks}) ORDER BY field, key",
            chunk,
        ):
            out[brow[0]].append(brow)
    return out
