"""Blob reads of a catalog: verified streams (internal, external pass-through, cached),
ranged reads, atomic downloads and URL resolution."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from ._hashing import split_digest
from ._names import split_slot
from ._rows import blob_from_row, blob_row
from ._slots import _check_slot
from .errors import Conflict, GlareliteError, InvalidInput, NotFound, UpstreamChanged
from .fsutil import atomic_file
from .models import Blob
from .progress import NULL_PROGRESS, Progress
from .urls import join_base

if TYPE_CHECKING:
    from ._cache import ReadCache
    from ._core import Core
    from ._http import Fetcher
    from ._pipeline import PipelinedBody
    from .policy import Scope


# -- reads -------------------------------------------------------------------------
def active_blob(core: Core, scope: Scope, artifact_id: str, slot_name: str) -> tuple[Blob, str]:
    """The active blob in a slot and its digest, if the policy lets ``scope`` download it;
    Conflict while saving, NotFound if empty."""
    field_name, key = split_slot(slot_name)
    with core.database.read() as conn:
        row = core.authorized_row(conn, scope, artifact_id, "download")
        _check_slot(core.get_type(row.type_name), field_name, key)
        brow = blob_row(conn, artifact_id, field_name, key)
    if brow is None:
        raise NotFound(f"artifact {artifact_id} has no blob {slot_name}")
    if brow.status == "saving" or brow.digest is None:
        raise Conflict(f"blob {slot_name} of {artifact_id} is still being written")
    return blob_from_row(row.type_name, brow), brow.digest


def open_blob(
    core: Core,
    scope: Scope,
    artifact_id: str,
    slot_name: str,
    *,
    offset: int | None = None,
    length: int | None = None,
) -> BinaryIO:
    from ._verify import VerifyingReader

    blob, digest = active_blob(core, scope, artifact_id, slot_name)
    start, count = _range(offset, length, blob.size or 0)
    _, hexdigest = split_digest(digest)
    if not blob.external:
        raw = core.store.open(digest, offset=start, length=count)
        reader = VerifyingReader(
            raw, size=blob.size or 0, sha256=hexdigest, offset=start, length=count
        )
        return cast(BinaryIO, reader)
    refuse_if_changed(blob)
    cache = core.cache
    if cache is not None:
        cached = cache.open(digest, offset=start, length=count)
        if cached is not None:
            return cast(BinaryIO, cached)
    body = _ChunkFile(core.fetcher, blob.external_url or "", start, count)
    reader = VerifyingReader(
        body, size=blob.size or 0, sha256=hexdigest, offset=start, length=count
    )
    if cache is not None and start == 0 and count is None:
        return cast(BinaryIO, cache.tee(digest, reader))
    return cast(BinaryIO, reader)


def refuse_if_changed(blob: Blob) -> None:
    """A blob ``check`` found changed upstream is handed out by no path (stream, range,
    pipeline, URL) until ``check`` finds its origin serving the registered bytes again."""
    if blob.upstream == "changed":
        raise UpstreamChanged(
            f"blob {blob.slot} of {blob.artifact_id} changed upstream at {blob.external_url}; "
            "it is not served until its origin serves the registered bytes again (check)"
        )


BlobOpener = Callable[[], BinaryIO]


def open_blobs(
    core: Core,
    scope: Scope,
    slots: Iterable[tuple[str, str]],
    *,
    before: Callable[[str, str], None] | None = None,
) -> Generator[tuple[str, str, BlobOpener], None, None]:
    """(artifact id, slot, open) for each slot, in the order given; ``open()`` returns
    what :func:`open_blob` would (or raises what it would raise).

    Whole external blobs not served from the read cache are fetched through one HTTP/1.1
    pipeline per origin; an answer the pipeline cannot take is fetched the ordinary way
    when it is opened. Open each stream (or skip it) before taking the next item: the
    pipeline delivers answers in order, and an unread rest is skipped. ``before(id,
    slot)`` runs for each item first (the download hooks); what it raises is what that
    item's ``open()`` raises, and that item is not fetched.
    """
    items = list(slots)
    vetoes: dict[int, Exception] = {}
    if before is not None:  # outside the snapshot: a hook may use the catalog
        for i, (artifact_id, slot) in enumerate(items):
            try:
                before(artifact_id, slot)
            except Exception as exc:  # a hook's veto may be any exception
                vetoes[i] = exc
    found: list[tuple[Blob, str] | Exception] = []
    with core.database.read():  # one snapshot for the batch
        for i, (artifact_id, slot) in enumerate(items):
            if i in vetoes:
                found.append(vetoes[i])
                continue
            try:
                found.append(active_blob(core, scope, artifact_id, slot))
            except GlareliteError as exc:
                found.append(exc)
    cache = core.cache
    urls: dict[int, str] = {}  # item -> URL, for the whole external blobs to pipeline
    for i, record in enumerate(found):
        if isinstance(record, Exception):
            continue
        blob, digest = record
        if not blob.external or blob.upstream == "changed" or not blob.external_url:
            continue
        if cache is not None and cache._path(digest).exists():
            continue  # the cache serves it; no request needed
        urls[i] = blob.external_url
    answers = core.fetcher.pipeline(urls.values()).answers()
    try:
        for i, (artifact_id, slot) in enumerate(items):
            record = found[i]
            if isinstance(record, Exception):
                yield artifact_id, slot, _raiser(record)
                continue
            body = next(answers) if i in urls else None
            if body is None:
                yield artifact_id, slot, _ordinary(core, scope, artifact_id, slot)
                continue
            blob, digest = record
            yield (
                artifact_id,
                slot,
                _piped(core, scope, artifact_id, slot, body, blob, digest, cache),
            )
    finally:
        answers.close()


def _raiser(exc: Exception) -> BlobOpener:
    def raise_it() -> BinaryIO:
        raise exc

    return raise_it


def _ordinary(core: Core, scope: Scope, artifact_id: str, slot: str) -> BlobOpener:
    return lambda: open_blob(core, scope, artifact_id, slot)


def _piped(
    core: Core,
    scope: Scope,
    artifact_id: str,
    slot: str,
    body: PipelinedBody,
    blob: Blob,
    digest: str,
    cache: ReadCache | None,
) -> BlobOpener:
    """The pipelined answer, verified (and teed into the read cache); once the pipeline
    has moved past it unopened, the ordinary path instead."""
    from ._verify import VerifyingReader

    def open_stream() -> BinaryIO:
        if body.superseded and not body.opened:
            return open_blob(core, scope, artifact_id, slot)
        body.opened = True
        reader: Any = VerifyingReader(body, size=blob.size or 0, sha256=split_digest(digest)[1])
        if cache is not None:
            reader = cache.tee(digest, reader)
        return cast(BinaryIO, reader)

    return open_stream


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
    core: Core,
    scope: Scope,
    artifact_id: str,
    slot_name: str,
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> Blob:
    """Write a blob to ``dest`` atomically: a temporary beside it, verified, then renamed."""
    blob, _ = active_blob(core, scope, artifact_id, slot_name)
    save_atomically(
        lambda: open_blob(core, scope, artifact_id, slot_name),
        dest,
        task=f"download {artifact_id}/{slot_name}",
        description=f"download {slot_name}",
        size=blob.size,
        progress=progress,
    )
    return blob


def save_atomically(
    open_stream: Callable[[], IO[bytes]],
    dest: str | os.PathLike[str],
    *,
    task: str,
    description: str,
    size: int | None,
    progress: Progress | None,
) -> None:
    """Copy a (verifying) stream to ``dest`` through a temporary beside it, renamed only
    after the stream reached its verified end (durably: the fsync rule of fsutil)."""
    progress = progress or NULL_PROGRESS
    progress.begin(task, description, size)
    try:
        with open_stream() as src, atomic_file(dest) as out:
            copy_stream(src, out, lambda n: progress.advance(task, n))
    except BaseException:
        progress.end(task, ok=False)
        raise
    progress.end(task)


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


def resolve_url(core: Core, scope: Scope, artifact_id: str, slot_name: str) -> str:
    """What a client should fetch: the mirror's URL when the catalog knows a mirror base,
    else the external URL of an external blob, else the internal URL."""
    blob, _ = active_blob(core, scope, artifact_id, slot_name)
    refuse_if_changed(blob)  # a redirect to it would hand out the changed bytes
    base = core.settings.mirror_base_url
    if base:
        return join_base(base, blob.url)
    if blob.external and blob.external_url:
        return blob.external_url
    return blob.url
