"""Blob operations of a catalog: upload, external locations, reads, delete and gc.

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
references them (``_release``), so a concurrent upload of the same bytes either sees the
object gone and writes it again, or is seen as a reference and keeps it.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from . import quotas
from ._db import utcnow
from ._hashing import iter_source, make_digest, split_digest
from ._names import split_slot
from ._rows import BLOB_COLUMNS, blob_from_row
from .errors import (
    ChecksumMismatch,
    Conflict,
    IllegalTransition,
    InvalidInput,
    NetworkError,
    NotFound,
    TooLarge,
    UpstreamChanged,
)
from .models import Blob
from .progress import NULL_PROGRESS, Progress
from .urls import join_base

if TYPE_CHECKING:
    from ._http import Fetcher
    from ._store import BlobStore
    from .catalog import Catalog
    from .quotas import Quota
    from .types import ArtifactType

MAX_DICT_KEYS = 255
_HOST = socket.gethostname()


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
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _reserve(
    cat: Catalog, artifact_id: str, slot: str, declared_size: int | None, *, internal: bool
) -> _Slot:
    field_name, key = split_slot(slot)
    if declared_size is not None and (not isinstance(declared_size, int) or declared_size < 0):
        raise InvalidInput(f"size must be a non-negative integer, not {declared_size!r}")
    with cat._database.write() as conn:
        row = cat._owned_row(conn, artifact_id)
        atype = cat.get_type(row[1])
        if row[7] != "drafted":
            raise IllegalTransition(
                f"blobs of a {row[7]} artifact cannot change; only drafted artifacts accept blobs"
            )
        _check_slot(atype, field_name, key)
        existing = conn.execute(
            f"SELECT {BLOB_COLUMNS}, upload_token FROM blobs "
            "WHERE artifact_id = ? AND field = ? AND key = ?",
            (artifact_id, field_name, key),
        ).fetchone()
        if existing is not None and existing[3] == "saving":
            raise Conflict(f"blob {slot} of {artifact_id} is being written by another upload")
        cap = _cap(cat, atype)
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


def _cap(cat: Catalog, atype: ArtifactType) -> int | None:
    caps = [c for c in (atype.max_blob_size, cat.settings.max_blob_size) if c is not None]
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
            if conn.execute(
                "SELECT 1 FROM blobs WHERE digest = ? AND external = 0 "
                "UNION ALL SELECT 1 FROM blobs WHERE previous_digest = ? LIMIT 1",
                (digest, digest),
            ).fetchone():
                continue
            try:
                freed += st.size(digest)
            except NotFound:
                continue
            st.delete(digest)
            removed += 1
    return removed, freed


# -- upload ------------------------------------------------------------------------
def upload(
    cat: Catalog,
    artifact_id: str,
    slot_name: str,
    source: Any,
    *,
    content_type: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    algorithms: Iterable[str] = (),
    progress: Progress | None = None,
) -> Blob:
    progress = progress or NULL_PROGRESS
    expected = _check_sha256(sha256)
    chunks = iter_source(source)  # validates the source before anything is reserved
    slot = _reserve(cat, artifact_id, slot_name, size, internal=True)
    st = store_of(cat)
    task = f"upload {artifact_id}/{slot_name}"
    progress.begin(task, f"upload {slot_name}", size)
    try:
        written = st.write(
            chunks,
            max_size=slot.cap,
            expected_sha256=expected,
            extra_algorithms=tuple(algorithms),
            on_progress=lambda n: progress.advance(task, n),
            tag=slot.token.rsplit(":", 1)[-1],
        )
        try:
            if size is not None and written.size != size:
                raise ChecksumMismatch(
                    f"blob {slot_name}: declared {size} bytes but {written.size} arrived"
                )
            _record_digest(cat, slot, written.digest)
            st.commit(written)
        except BaseException:
            st.discard(written)
            raise
        blob = _activate(
            cat,
            slot,
            {
                "external": 0,
                "size": written.size,
                "digest": written.digest,
                "checksums": json.dumps(written.checksums, sort_keys=True),
                "content_type": content_type or "application/octet-stream",
                "location": None,
                "final_url": None,
                "etag": None,
                "last_modified": None,
                "verified_at": None,
                "upstream": "ok",
            },
        )
    except TooLarge as exc:
        progress.end(task, ok=False)
        _abort(cat, slot)
        if slot.quota is not None and slot.cap is not None:
            raise quotas.exceeded(slot.quota, slot.cap, None) from exc
        raise
    except BaseException:
        progress.end(task, ok=False)
        _abort(cat, slot)
        raise
    progress.end(task)
    if slot.previous_digest != written.digest:
        release(cat, [slot.previous_digest])
    return blob


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if isinstance(sha256, str) and sha256.startswith("sha256:"):
        sha256 = sha256[len("sha256:") :]
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise InvalidInput(f"sha256 must be 64 hexadecimal digits, not {sha256!r}")
    try:
        int(sha256, 16)
    except ValueError:
        raise InvalidInput(f"sha256 must be 64 hexadecimal digits, not {sha256!r}") from None
    return sha256.lower()


# -- external locations --------------------------------------------------------------
def add_location(
    cat: Catalog,
    artifact_id: str,
    slot_name: str,
    url: str,
    *,
    sha256: str | None = None,
    content_type: str | None = None,
    progress: Progress | None = None,
) -> Blob:
    from ._guard import check_url

    progress = progress or NULL_PROGRESS
    expected = _check_sha256(sha256)
    fetcher = fetcher_of(cat)
    check_url(url, fetcher.settings)  # refuse before reserving anything
    slot = _reserve(cat, artifact_id, slot_name, None, internal=False)
    task = f"register {artifact_id}/{slot_name}"
    progress.begin(task, f"register {slot_name}", None)
    try:
        reg = fetcher.register(
            url,
            expected_sha256=expected,
            max_size=slot.cap,
            progress=lambda n: progress.advance(task, n),
        )
        blob = _activate(
            cat,
            slot,
            {
                "external": 1,
                "size": reg.size,
                "digest": make_digest(reg.sha256),
                "checksums": "{}",
                "content_type": content_type or reg.content_type or "application/octet-stream",
                "location": url,
                "final_url": reg.final_url,
                "etag": reg.etag,
                "last_modified": reg.last_modified,
                "verified_at": utcnow(),
                "upstream": "ok",
            },
        )
    except BaseException:
        progress.end(task, ok=False)
        _abort(cat, slot)
        raise
    progress.end(task)
    release(cat, [slot.previous_digest])
    return blob


def remove_blob(cat: Catalog, artifact_id: str, slot_name: str) -> None:
    """Remove one blob (or blob-dict entry) from a drafted artifact."""
    field_name, key = split_slot(slot_name)
    with cat._database.write() as conn:
        row = cat._owned_row(conn, artifact_id)
        if row[7] != "drafted":
            raise IllegalTransition(f"blobs of a {row[7]} artifact cannot change")
        _check_slot(cat.get_type(row[1]), field_name, key)
        brow = conn.execute(
            "SELECT status, external, digest FROM blobs WHERE artifact_id = ? AND field = ? "
            "AND key = ?",
            (artifact_id, field_name, key),
        ).fetchone()
        if brow is None:
            raise NotFound(f"artifact {artifact_id} has no blob {slot_name}")
        if brow[0] == "saving":
            raise Conflict(f"blob {slot_name} is being written")
        conn.execute(
            "DELETE FROM blobs WHERE artifact_id = ? AND field = ? AND key = ?",
            (artifact_id, field_name, key),
        )
    if not brow[1]:
        release(cat, [brow[2]])


def delete_artifact(cat: Catalog, artifact_id: str, *, force: bool = False) -> None:
    from ._links import refuse_if_linked

    with cat._database.write() as conn:
        row = cat._owned_row(conn, artifact_id)
        cat._refuse_if_saving(conn, artifact_id, "delete the artifact")
        if not force:
            refuse_if_linked(conn, row[1], artifact_id)
        digests = [
            r[0]
            for r in conn.execute(
                "SELECT digest FROM blobs WHERE artifact_id = ? AND external = 0", (artifact_id,)
            )
        ]
        conn.execute("DELETE FROM artifacts WHERE id = ?", (artifact_id,))
    # outside the transaction: an interruption here leaves only unreferenced objects,
    # which gc removes
    release(cat, digests)


# -- reads -------------------------------------------------------------------------
def active_blob(cat: Catalog, artifact_id: str, slot_name: str) -> tuple[Blob, str]:
    """The active blob in a slot and its digest; Conflict while saving, NotFound if empty."""
    field_name, key = split_slot(slot_name)
    with cat._database.read() as conn:
        row = cat._visible_row(conn, artifact_id)
        _check_slot(cat.get_type(row[1]), field_name, key)
        brow = conn.execute(
            f"SELECT {BLOB_COLUMNS} FROM blobs WHERE artifact_id = ? AND field = ? AND key = ?",
            (artifact_id, field_name, key),
        ).fetchone()
    if brow is None:
        raise NotFound(f"artifact {artifact_id} has no blob {slot_name}")
    if brow[3] == "saving":
        raise Conflict(f"blob {slot_name} of {artifact_id} is still being written")
    return blob_from_row(row[1], brow), brow[6]


def open_blob(
    cat: Catalog,
    artifact_id: str,
    slot_name: str,
    *,
    offset: int | None = None,
    length: int | None = None,
) -> BinaryIO:
    from ._store import VerifyingReader

    blob, digest = active_blob(cat, artifact_id, slot_name)
    start, count = _range(offset, length, blob.size or 0)
    _, hexdigest = split_digest(digest)
    if not blob.external:
        raw = store_of(cat).open(digest, offset=start, length=count)
        reader = VerifyingReader(
            raw, size=blob.size or 0, sha256=hexdigest, offset=start, length=count
        )
        return cast(BinaryIO, reader)
    if blob.upstream == "changed":
        raise UpstreamChanged(
            f"blob {slot_name} of {artifact_id} changed upstream at {blob.external_url}; "
            "it is not served until its origin serves the registered bytes again (check)"
        )
    from ._cache import ReadCache

    cache = ReadCache.of(cat)
    if cache is not None:
        cached = cache.open(digest, offset=start, length=count)
        if cached is not None:
            return cast(BinaryIO, cached)
    body = _ChunkFile(fetcher_of(cat), blob.external_url or "", start, count)
    reader = VerifyingReader(
        body, size=blob.size or 0, sha256=hexdigest, offset=start, length=count
    )
    if cache is not None and start == 0 and count is None:
        return cast(BinaryIO, cache.tee(digest, reader))
    return cast(BinaryIO, reader)


def _range(offset: int | None, length: int | None, size: int) -> tuple[int, int | None]:
    start = 0 if offset is None else offset
    if not isinstance(start, int) or start < 0:
        raise InvalidInput(f"offset must be a non-negative integer, not {offset!r}")
    if length is not None and (not isinstance(length, int) or length < 0):
        raise InvalidInput(f"length must be a non-negative integer, not {length!r}")
    if start > size:
        raise InvalidInput(f"offset {start} is past the end of the blob ({size} bytes)")
    if offset is None and length is None:
        return 0, None
    count = size - start if length is None else min(length, size - start)
    return start, count


class _ChunkFile:
    """A file-like ``read`` over an external blob's HTTP body from byte ``start``, bounded
    to ``limit`` bytes when given.

    When the fetcher has to start the body over from byte 0 (the server ignored a Range
    request, or answered a resume with the whole body), the bytes already handed out are
    skipped in the new body; the sha256 check at the end of a whole read proves the two
    bodies agreed."""

    def __init__(self, fetcher: Fetcher, url: str, start: int, limit: int | None) -> None:
        self._next = start  # absolute offset of the next byte to hand out
        self._stream_pos = start  # absolute offset of the stream's next byte
        self._left = limit
        self._buffer = b""
        self._stream = fetcher.stream(url, offset=start, on_restart=self._restarted)
        self._chunks: Iterator[bytes] = iter(self._stream)

    def _restarted(self) -> None:
        self._stream_pos = 0
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        if self._left == 0:
            return b""
        want = n if n is not None and n >= 0 else 1 << 62
        if self._left is not None:
            want = min(want, self._left)
        while not self._buffer:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return b""
            chunk_start = self._stream_pos
            self._stream_pos += len(chunk)
            if self._stream_pos > self._next:
                self._buffer = chunk[max(self._next - chunk_start, 0) :]
        out, self._buffer = self._buffer[:want], self._buffer[want:]
        self._next += len(out)
        if self._left is not None:
            self._left -= len(out)
        return out

    def close(self) -> None:
        self._stream.close()


def download(
    cat: Catalog,
    artifact_id: str,
    slot_name: str,
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> Blob:
    """Write a blob to ``dest`` atomically: a temporary beside it, verified, then renamed."""
    progress = progress or NULL_PROGRESS
    blob, _ = active_blob(cat, artifact_id, slot_name)
    dest = os.fspath(dest)
    folder = os.path.dirname(os.path.abspath(dest))
    tmp = os.path.join(folder, f".{os.path.basename(dest)}.glarelite-{uuid.uuid4().hex}.part")
    task = f"download {artifact_id}/{slot_name}"
    progress.begin(task, f"download {slot_name}", blob.size)
    try:
        with open_blob(cat, artifact_id, slot_name) as src, open(tmp, "wb") as out:
            copy_stream(src, out, lambda n: progress.advance(task, n))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        progress.end(task, ok=False)
        with _suppress():
            os.unlink(tmp)
        raise
    progress.end(task)
    return blob


def copy_stream(src: IO[bytes], out: IO[bytes], on_chunk: Any = None, chunk: int = 1 << 20) -> int:
    total = 0
    while True:
        data = src.read(chunk)
        if not data:
            return total
        out.write(data)
        total += len(data)
        if on_chunk is not None:
            on_chunk(len(data))


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def resolve_url(cat: Catalog, artifact_id: str, slot_name: str) -> str:
    """What a client should fetch: the mirror's URL when the catalog knows a mirror base,
    else the external URL of an external blob, else the internal URL."""
    blob, _ = active_blob(cat, artifact_id, slot_name)
    if cat.settings.mirror_base_url:
        return join_base(cat.settings.mirror_base_url, blob.url)
    if blob.external and blob.external_url:
        return blob.external_url
    return blob.url


# -- check of external blobs -------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """What ``check`` found for one external blob."""

    artifact_id: str
    type_name: str
    slot: str
    url: str
    state: str  # 'unchanged' | 'changed' | 'unreachable'
    size: int | None
    sha256: str | None
    new_size: int | None = None
    new_sha256: str | None = None
    detail: str = ""
    method: str = "rehash"  # 'conditional' when a 304 answered

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class GcReport:
    uploads_abandoned: int = 0
    temporaries_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check(
    cat: Catalog, *, rehash: bool = False, progress: Progress | None = None
) -> list[CheckResult]:
    """Re-validate every active external blob visible to the caller."""
    progress = progress or NULL_PROGRESS
    fetcher = fetcher_of(cat)
    owner_clause = "" if cat.scope.admin else "AND (a.owner = ? OR a.visibility = 'public')"
    params: tuple[str, ...] = () if cat.scope.admin else (cat.scope.owner,)
    with cat._database.read() as conn:
        rows = conn.execute(
            "SELECT b.artifact_id, a.type_name, b.field, b.key, b.location, b.size, b.digest, "
            "b.etag, b.last_modified FROM blobs b JOIN artifacts a ON a.id = b.artifact_id "
            f"WHERE b.external = 1 AND b.status = 'active' {owner_clause} "
            "ORDER BY b.artifact_id, b.field, b.key",
            params,
        ).fetchall()
    results = []
    progress.begin("check", "check external blobs", len(rows))
    for artifact_id, type_name, field_name, key, location, size, digest, etag, lm in rows:
        slot = f"{field_name}/{key}" if key else field_name
        base = CheckResult(
            artifact_id, type_name, slot, location, "unchanged", size, split_digest(digest)[1]
        )
        result = _check_one(fetcher, base, etag, lm, rehash)
        upstream = "ok" if result.state == "unchanged" else result.state
        with cat._database.write() as conn:
            conn.execute(
                "UPDATE blobs SET upstream = ?, verified_at = CASE WHEN ? = 'ok' THEN ? "
                "ELSE verified_at END WHERE artifact_id = ? AND field = ? AND key = ?",
                (upstream, upstream, utcnow(), artifact_id, field_name, key),
            )
        results.append(result)
        progress.advance("check", 1)
    progress.end("check")
    return results


def _check_one(
    fetcher: Fetcher, base: CheckResult, etag: str | None, lm: str | None, rehash: bool
) -> CheckResult:
    """Conditional GET first (a 304 proves nothing changed), else a full re-hash."""
    try:
        if (
            not rehash
            and (etag or lm)
            and fetcher.revalidate(base.url, etag=etag, last_modified=lm)
        ):
            return replace(base, method="conditional")
        reg = fetcher.register(base.url)
    except (NetworkError, TooLarge, InvalidInput) as exc:
        return replace(base, state="unreachable", detail=str(exc))
    if reg.sha256 != base.sha256 or reg.size != base.size:
        return replace(
            base,
            state="changed",
            new_size=reg.size,
            new_sha256=reg.sha256,
            detail="the bytes served differ from the registered ones",
        )
    return base


# -- garbage collection ------------------------------------------------------------------
def gc(cat: Catalog, *, stale_after: float | None = None) -> GcReport:
    """Clean what interrupted uploads and deletes left: uploads stuck in ``saving`` whose
    process is gone (or older than ``stale_after`` seconds), their temporaries, and stored
    objects that nothing references."""
    from datetime import datetime, timedelta, timezone

    cat._require_admin("run gc")
    age = cat.settings.stale_after if stale_after is None else stale_after
    cutoff = (datetime.now(timezone.utc) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    report = GcReport()
    candidates: list[str | None] = []
    with cat._database.write() as conn:
        stuck = conn.execute(
            "SELECT artifact_id, field, key, upload_token, updated_at FROM blobs "
            "WHERE status = 'saving'"
        ).fetchall()
        live_tags = set()
        for artifact_id, field_name, key, token, updated_at in stuck:
            if token_is_dead(token) or updated_at < cutoff:
                where = "artifact_id = ? AND field = ? AND key = ? AND upload_token IS ?"
                candidates.append(_restore(conn, where, (artifact_id, field_name, key, token)))
                report.uploads_abandoned += 1
                report.details.append(f"abandoned upload {artifact_id}/{field_name}/{key}")
            elif token:
                live_tags.add(token.rsplit(":", 1)[-1])
    st = store_of(cat)
    cutoff_ts = datetime.now(timezone.utc).timestamp() - age
    for path, tag, modified in st.iter_temporaries():
        if tag in live_tags and (modified is None or modified >= cutoff_ts):
            continue
        st.remove_temporary(path)
        report.temporaries_removed += 1
    for digest, _size in st.iter_objects():
        candidates.append(digest)
    report.objects_removed, report.bytes_freed = release(cat, candidates)
    return report
