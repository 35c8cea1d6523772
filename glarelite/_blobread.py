"""Blob reads of a catalog: verified streams (internal, external pass-through, cached),
ranged reads, atomic downloads and URL resolution."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from ._hashing import split_digest
from ._names import split_slot
from ._rows import BLOB_COLUMNS, blob_from_row
from ._slots import _check_slot, fetcher_of, store_of
from .errors import Conflict, GlareliteError, InvalidInput, NotFound, UpstreamChanged
from .fsutil import atomic_file
from .models import Blob
from .progress import NULL_PROGRESS, Progress
from .urls import join_base

if TYPE_CHECKING:
    from ._cache import ReadCache
    from ._http import Fetcher
    from ._pipeline import PipelinedBody
    from .catalog import Catalog


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
    from ._verify import VerifyingReader

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


BlobOpener = Callable[[], BinaryIO]


def open_blobs(
    cat: Catalog, slots: Iterable[tuple[str, str]]
) -> Generator[tuple[str, str, BlobOpener], None, None]:
    """(artifact id, slot, open) for each slot, in the order given; ``open()`` returns
    what :func:`open_blob` would (or raises what it would raise).

    Whole external blobs not served from the read cache are fetched through one HTTP/1.1
    pipeline per origin; an answer the pipeline cannot take is fetched the ordinary way
    when it is opened. Open each stream (or skip it) before taking the next item: the
    pipeline delivers answers in order, and an unread rest is skipped.
    """
    items = list(slots)
    found: list[tuple[Blob, str] | GlareliteError] = []
    with cat._database.read():  # one snapshot for the batch
        for artifact_id, slot in items:
            try:
                found.append(active_blob(cat, artifact_id, slot))
            except GlareliteError as exc:
                found.append(exc)
    from ._cache import ReadCache

    cache = ReadCache.of(cat)
    urls: dict[int, str] = {}  # item -> URL, for the whole external blobs to pipeline
    for i, record in enumerate(found):
        if isinstance(record, GlareliteError):
            continue
        blob, digest = record
        if not blob.external or blob.upstream == "changed" or not blob.external_url:
            continue
        if cache is not None and cache._path(digest).exists():
            continue  # the cache serves it; no request needed
        urls[i] = blob.external_url
    answers = fetcher_of(cat).pipeline(urls.values()).answers()
    try:
        for i, (artifact_id, slot) in enumerate(items):
            record = found[i]
            if isinstance(record, GlareliteError):
                yield artifact_id, slot, _raiser(record)
                continue
            body = next(answers) if i in urls else None
            if body is None:
                yield artifact_id, slot, _ordinary(cat, artifact_id, slot)
                continue
            blob, digest = record
            yield artifact_id, slot, _piped(cat, artifact_id, slot, body, blob, digest, cache)
    finally:
        answers.close()


def _raiser(exc: GlareliteError) -> BlobOpener:
    def raise_it() -> BinaryIO:
        raise exc

    return raise_it


def _ordinary(cat: Catalog, artifact_id: str, slot: str) -> BlobOpener:
    return lambda: open_blob(cat, artifact_id, slot)


def _piped(
    cat: Catalog,
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
            return open_blob(cat, artifact_id, slot)
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
    cat: Catalog,
    artifact_id: str,
    slot_name: str,
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> Blob:
    """Write a blob to ``dest`` atomically: a temporary beside it, verified, then renamed."""
    blob, _ = active_blob(cat, artifact_id, slot_name)
    save_atomically(
        lambda: open_blob(cat, artifact_id, slot_name),
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


def resolve_url(cat: Catalog, artifact_id: str, slot_name: str) -> str:
    """What a client should fetch: the mirror's URL when the catalog knows a mirror base,
    else the external URL of an external blob, else the internal URL."""
    blob, _ = active_blob(cat, artifact_id, slot_name)
    if cat.settings.mirror_base_url:
        return join_base(cat.settings.mirror_base_url, blob.url)
    if blob.external and blob.external_url:
        return blob.external_url
    return blob.url
