"""The blob-field options of a type (Glare's BlobAttribute options) applied to one
artifact: which fields may change in which status, and which must be set to activate."""

from __future__ import annotations

from typing import Any

from .errors import IllegalTransition
from .types import ArtifactType


def check_writable(
    atype: ArtifactType, status: str, field_name: str, *, removing: bool = False
) -> None:
    """Blobs change on drafted artifacts; a mutable field also on an active one (Glare's
    mutable blobs), except that a required one cannot be removed there."""
    if status == "drafted":
        return
    options = atype.blob_field(field_name)
    if status == "active" and options.mutable:
        if removing and options.required:
            raise IllegalTransition(
                f"blob field {field_name!r} is required: it can be replaced but not removed "
                "while the artifact is active"
            )
        return
    raise IllegalTransition(
        f"blobs of an artifact that is {status} cannot change; only drafted artifacts "
        "accept blobs (and active ones, in fields declared mutable)"
    )


def missing_required(conn: Any, atype: ArtifactType, artifact_id: str) -> list[str]:
    """The required blob fields that hold no active blob (a blob dict: no entry)."""
    required = atype.required_blobs()
    if not required:
        return []
    held = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT field FROM blobs WHERE artifact_id = ? AND status = 'active'",
            (artifact_id,),
        )
    }
    return [n for n in required if n not in held]


def refuse_if_missing(conn: Any, atype: ArtifactType, artifact_id: str) -> None:
    missing = missing_required(conn, atype, artifact_id)
    if missing:
        raise IllegalTransition(f"cannot activate: required blobs not set: {', '.join(missing)}")
