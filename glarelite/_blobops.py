"""Blob writes of a catalog: upload, external locations, removal and artifact delete.
Every write follows the slot protocol of ``_slots``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import quotas
from ._blobrules import check_writable
from ._db import utcnow
from ._hashing import Hasher, iter_source, make_digest, split_digest
from ._names import split_slot
from ._slots import (
    _abort,
    _activate,
    _check_slot,
    _record_digest,
    _reserve,
    fetcher_of,
    release,
    store_of,
)
from .errors import ChecksumMismatch, Conflict, InvalidInput, NotFound, TooLarge
from .models import Blob
from .progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from .catalog import Catalog


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
    md5: str | None = None,
    sha1: str | None = None,
) -> Blob:
    progress = progress or NULL_PROGRESS
    expected = _check_sha256(sha256)
    algorithms = _check_algorithms(algorithms)
    expected_extra = _check_extra(md5=md5, sha1=sha1)
    _check_content_type(content_type)
    chunks = iter_source(source)  # validates the source before anything is reserved
    slot = _reserve(cat, artifact_id, slot_name, size, internal=True)
    # the digests the type asks for, beside those asked for by this call
    algorithms = tuple(
        dict.fromkeys((*algorithms, *cat.get_type(slot.type_name).checksums, *expected_extra))
    )
    st = store_of(cat)
    task = f"upload {artifact_id}/{slot_name}"
    progress.begin(task, f"upload {slot_name}", size)
    advance = _Deltas(progress, task)
    try:
        if st.writes_direct and expected is None and isinstance(source, (str, os.PathLike)):
            # one local read to learn the digest saves a server-side copy of every byte
            expected = _hash_file(source)
        if st.writes_direct and expected is not None:
            _record_digest(cat, slot, make_digest(expected))  # referenced before it exists
            written = st.write_direct(
                chunks,
                expected_sha256=expected,
                max_size=slot.cap,
                extra_algorithms=tuple(algorithms),
                on_progress=advance,
            )
        else:
            written = st.write(
                chunks,
                max_size=slot.cap,
                expected_sha256=expected,
                extra_algorithms=tuple(algorithms),
                on_progress=advance,
                tag=slot.token.rsplit(":", 1)[-1],
            )
        try:
            if size is not None and written.size != size:
                raise ChecksumMismatch(
                    f"blob {slot_name}: declared {size} bytes but {written.size} arrived"
                )
            _verify_extra(slot_name, expected_extra, written.checksums)
            if not written.direct:
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


class _Deltas:
    """Turns the store's running byte count into the progress protocol's increments."""

    def __init__(self, progress: Progress, task: str) -> None:
        self._progress, self._task, self._seen = progress, task, 0

    def __call__(self, total: int) -> None:
        self._progress.advance(self._task, total - self._seen)
        self._seen = total


def _hash_file(path: str | os.PathLike[str]) -> str:
    hasher = Hasher()
    for chunk in iter_source(path):
        hasher.update(chunk)
    return hasher.sha256_hex


def _check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    if isinstance(algorithms, str):  # "md5" would iterate as letters
        algorithms = (algorithms,)
    if not isinstance(algorithms, Iterable):
        raise InvalidInput(f"algorithms must be a list of hash names, not {algorithms!r}")
    names = tuple(algorithms)
    Hasher(names)  # refuses unknown names before anything is reserved
    return names


def _check_extra(*, md5: str | None, sha1: str | None) -> dict[str, str]:
    """The md5/sha1 a caller expects, as lower-case hex by algorithm (validated now,
    before anything is reserved)."""
    out: dict[str, str] = {}
    for algorithm, value in (("md5", md5), ("sha1", sha1)):
        if value is not None:
            if isinstance(value, str) and value.lower().startswith(algorithm + ":"):
                value = value[len(algorithm) + 1 :]
            out[algorithm] = split_digest(make_digest(value, algorithm))[1]
    return out


def _verify_extra(slot_name: str, expected: dict[str, str], computed: Mapping[str, str]) -> None:
    for algorithm, want in expected.items():
        got = computed.get(algorithm)
        if got != want:
            raise ChecksumMismatch(f"blob {slot_name}: {algorithm} is {got}, expected {want}")


def _check_content_type(content_type: str | None) -> None:
    # it is served as a header (mirrors, downloads): text, one line, of a sane length
    if content_type is not None and (
        not isinstance(content_type, str)
        or len(content_type) > 255
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in content_type)
    ):
        raise InvalidInput(
            f"content_type must be one line of at most 255 characters, not {content_type!r}"
        )


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
    replace: bool = False,
    md5: str | None = None,
    sha1: str | None = None,
) -> Blob:
    from ._guard import check_url

    progress = progress or NULL_PROGRESS
    expected = _check_sha256(sha256)
    expected_extra = _check_extra(md5=md5, sha1=sha1)
    _check_content_type(content_type)
    fetcher = fetcher_of(cat)
    check_url(url, fetcher.settings)  # refuse before reserving anything
    slot = _reserve(cat, artifact_id, slot_name, None, internal=False, replace=replace)
    task = f"register {artifact_id}/{slot_name}"
    progress.begin(task, f"register {slot_name}", None)
    extra = tuple(dict.fromkeys((*cat.get_type(slot.type_name).checksums, *expected_extra)))
    try:
        reg = fetcher.register(
            url,
            expected_sha256=expected,
            max_size=slot.cap,
            progress=lambda n: progress.advance(task, n),
            extra_algorithms=extra,
        )
        _verify_extra(slot_name, expected_extra, reg.checksums)
        blob = _activate(
            cat,
            slot,
            {
                "external": 1,
                "size": reg.size,
                "digest": make_digest(reg.sha256),
                "checksums": json.dumps(dict(reg.checksums), sort_keys=True),
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
        check_writable(cat.get_type(row[1]), row[7], field_name, removing=True)
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
        # a mutable blob may go from an active artifact: a mirror must see it changed
        conn.execute("UPDATE artifacts SET updated_at = ? WHERE id = ?", (utcnow(), artifact_id))
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
