"""Blob slots: the reservation protocol every blob write follows, and the release of
stored objects.

The order of steps is what keeps every record a promise about bytes:

1. *reserve* the slot (one transaction): the row goes to ``saving`` with an upload
   token naming this host and process; the blob it replaces is remembered in
   ``previous`` / ``previous_digest`` so a failure can put it back;
2. stream the bytes to a temporary object while hashing (no transaction held);
3. *record* the digest on the still-saving row — from now on the object is referenced,
   so no concurrent delete or gc may remove it;
4. move the temporary into its content-addressed place (or drop it: same bytes stored);
5. *activate* the row.

Stored objects are deleted only inside a write transaction that first checks nothing
references them (``release``), so a concurrent upload of the same bytes either sees the
object gone and writes it again, or is seen as a reference and keeps it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import quotas
from ._blobrules import check_writable
from ._db import utcnow
from ._names import split_slot
from ._rows import BLOB_COLUMNS, blob_from_row
from .errors import Conflict, InvalidInput, NotFound, TooLarge
from .fsutil import HOST, pid_alive
from .models import Blob

if TYPE_CHECKING:
    from ._http import Fetcher
    from ._store import BlobStore
    from .catalog import Catalog
    from .quotas import Quota
    from .types import ArtifactType

MAX_DICT_KEYS = 255
_HOST = HOST


# -- shared resources --------------------------------------------------------------
def store_of(cat: Catalog) -> BlobStore:
    st = cat._shared.get("store")
    if st is None:
        from ._store import BlobStore

        st = BlobStore(cat._get_setting("storage"), cat._storage_options)
        cat._shared["store"] = st
    return st


def fetcher_of(cat: Catalog) -> Fetcher:
    fetcher = cat._shared.get("fetcher")
    if fetcher is None:
        from dataclasses import replace

        from ._http import Fetcher

        http = cat.settings.http
        stored = tuple(cat._get_setting("allow_hosts", []))
        fetcher = Fetcher(replace(http, allow_hosts=tuple(http.allow_hosts) + stored))
        cat._shared["fetcher"] = fetcher
    return fetcher


# -- slot reservation --------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    artifact_id: str
    type_name: str
    field: str
    key: str
    token: str
    cap: int | None  # bytes this blob may still take (caps and quotas)
    previous_digest: str | None
    quota: Quota | None = None  # set when a quota, not a size cap, bounds ``cap``


def _new_token() -> str:
    # host and pid let gc tell an upload whose process died from one still running
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex}"


def token_is_dead(token: str | None) -> bool:
    if not token:
        return True
    host, _, rest = token.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False  # another machine's upload: only its age can tell
    return not pid_alive(int(pid_text))


def _reserve(
    cat: Catalog,
    artifact_id: str,
    slot: str,
    declared_size: int | None,
    *,
    internal: bool,
    replace: bool = True,
) -> _Slot:
    field_name, key = split_slot(slot)
    if declared_size is not None and (not isinstance(declared_size, int) or declared_size < 0):
        raise InvalidInput(f"size must be a non-negative integer, not {declared_size!r}")
    with cat._database.write() as conn:
        row = cat._owned_row(conn, artifact_id)
        atype = cat.get_type(row[1])
        check_writable(atype, row[7], field_name)
        _check_slot(atype, field_name, key)
        existing = conn.execute(
            f"SELECT {BLOB_COLUMNS}, upload_token FROM blobs "
            "WHERE artifact_id = ? AND field = ? AND key = ?",
            (artifact_id, field_name, key),
        ).fetchone()
        if existing is not None and existing[3] == "saving":
            raise Conflict(f"blob {slot} of {artifact_id} is being written by another upload")
        if existing is not None and not replace:
            raise Conflict(
                f"blob {slot} of {artifact_id} is already set; remove it first (or replace it)"
            )
        cap = _cap(cat, atype, field_name)
        if key:
            used, count = conn.execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blobs "
                "WHERE artifact_id = ? AND field = ? AND key != ?",
                (artifact_id, field_name, key),
            ).fetchone()
            if count >= MAX_DICT_KEYS:
                raise InvalidInput(f"blob dict {field_name!r} already holds {MAX_DICT_KEYS} keys")
            if cap is not None:
                cap = max(cap - used, 0)
        if declared_size is not None and cap is not None and declared_size > cap:
            raise TooLarge(f"blob {slot}: {declared_size} bytes is over the cap of {cap} bytes")
        binding = None
        if internal:  # external blobs hold no stored bytes
            left, quota = quotas.bytes_left(conn, row[1], row[5])
            if left is not None and quota is not None:
                # the blob this upload replaces is freed when it succeeds
                if existing is not None and not existing[4]:
                    left += existing[5] or 0
                if declared_size is not None and declared_size > left:
                    raise quotas.exceeded(quota, left, declared_size)
                if cap is None or left < cap:
                    cap, binding = left, quota
        token = _new_token()
        now = utcnow()
        previous_digest = None
        if existing is not None:
            previous = dict(
                zip(BLOB_COLUMNS.replace(" ", "").split(","), existing[:-1], strict=True)
            )
            if not existing[4]:
                previous_digest = existing[6]
            conn.execute(
                "UPDATE blobs SET status = 'saving', upload_token = ?, previous = ?, "
                "previous_digest = ?, reserved = ?, updated_at = ? "
                "WHERE artifact_id = ? AND field = ? AND key = ?",
                (
                    token,
                    json.dumps(previous),
                    previous_digest,
                    declared_size or 0,
                    now,
                    artifact_id,
                    field_name,
                    key,
                ),
            )
        else:
            conn.execute(
                "INSERT INTO blobs (artifact_id, field, key, status, upload_token, reserved, "
                "created_at, updated_at) VALUES (?, ?, ?, 'saving', ?, ?, ?, ?)",
                (artifact_id, field_name, key, token, declared_size or 0, now, now),
            )
    return _Slot(artifact_id, row[1], field_name, key, token, cap, previous_digest, binding)


def _check_slot(atype: ArtifactType, field_name: str, key: str) -> None:
    if field_name in atype.blobs:
        if key:
            raise InvalidInput(f"{field_name!r} is a blob field of {atype.name!r}, not a blob dict")
    elif field_name in atype.blob_dicts:
        if not key:
            raise InvalidInput(f"{field_name!r} is a blob dict: give 'field/key'")
    else:
        raise InvalidInput(f"type {atype.name!r} has no blob field {field_name!r}")


def _cap(cat: Catalog, atype: ArtifactType, field_name: str) -> int | None:
    caps = [c for c in (atype.blob_cap(field_name), cat.settings.max_blob_size) if c is not None]
    return min(caps) if caps else None


def _where(slot: _Slot) -> tuple[str, tuple[str, ...]]:
    return (
        "artifact_id = ? AND field = ? AND key = ? AND upload_token = ?",
        (slot.artifact_id, slot.field, slot.key, slot.token),
    )


def _record_digest(cat: Catalog, slot: _Slot, digest: str) -> None:
    where, params = _where(slot)
    with cat._database.write() as conn:
        cur = conn.execute(f"UPDATE blobs SET digest = ? WHERE {where}", (digest, *params))
        if cur.rowcount != 1:
            raise Conflict(f"upload to {slot.field} was abandoned meanwhile (gc); retry")


def _activate(cat: Catalog, slot: _Slot, values: dict[str, Any]) -> Blob:
    where, params = _where(slot)
    values = {**values, "status": "active", "upload_token": None, "previous": None, "reserved": 0}
    values["previous_digest"] = None
    values["updated_at"] = utcnow()
    assignments = ", ".join(f"{k} = ?" for k in values)
    with cat._database.write() as conn:
        cur = conn.execute(
            f"UPDATE blobs SET {assignments} WHERE {where}", (*values.values(), *params)
        )
        if cur.rowcount != 1:
            raise Conflict(f"upload to {slot.field} was abandoned meanwhile (gc); retry")
        conn.execute(
            "UPDATE artifacts SET updated_at = ? WHERE id = ?",
            (values["updated_at"], slot.artifact_id),
        )
        row = conn.execute(
            f"SELECT {BLOB_COLUMNS} FROM blobs WHERE artifact_id = ? AND field = ? AND key = ?",
            (slot.artifact_id, slot.field, slot.key),
        ).fetchone()
    return blob_from_row(slot.type_name, row)


def _abort(cat: Catalog, slot: _Slot) -> None:
    """Put the slot back as it was before the upload: the previous blob, or empty."""
    where, params = _where(slot)
    with cat._database.write() as conn:
        _restore(conn, where, params)


def _restore(conn: Any, where: str, params: tuple[Any, ...]) -> str | None:
    """Undo a saving row; returns the digest it had recorded (now maybe unreferenced)."""
    row = conn.execute(
        f"SELECT previous, digest, external FROM blobs WHERE {where}", params
    ).fetchone()
    if row is None:
        return None
    previous, digest, external = row
    if previous:
        old = json.loads(previous)
        cols = [c for c in old if c not in ("artifact_id", "field", "key")]
        assignments = ", ".join(f"{c} = ?" for c in cols)
        conn.execute(
            f"UPDATE blobs SET {assignments}, upload_token = NULL, previous = NULL, "
            f"previous_digest = NULL, reserved = 0 WHERE {where}",
            (*[old[c] for c in cols], *params),
        )
    else:
        conn.execute(f"DELETE FROM blobs WHERE {where}", params)
    return None if external else digest


def release(cat: Catalog, digests: Iterable[str | None]) -> tuple[int, int]:
    """Delete stored objects nothing references any more; returns (objects, bytes) freed.

    Each check-and-delete holds the write lock, so no upload can record a reference to
    the object between the check and the delete."""
    st = store_of(cat)
    removed = freed = 0
    for digest in sorted({d for d in digests if d}):
        with cat._database.write() as conn:
            # A saving row's recorded digest is a reference whatever its ``external``
            # says: that column is still the replaced blob's until the upload activates.
            if conn.execute(
                "SELECT 1 FROM blobs WHERE digest = ? AND external = 0 "
                "UNION ALL SELECT 1 FROM blobs WHERE status = 'saving' AND digest = ? "
                "UNION ALL SELECT 1 FROM blobs WHERE previous_digest = ? LIMIT 1",
                (digest, digest, digest),
            ).fetchone():
                continue
            try:
                freed += st.size(digest)
            except NotFound:
                continue
            st.delete(digest)
            removed += 1
    return removed, freed
