"""Content-addressed storage of internal blob bytes on any fsspec URL.

Layout under the storage root::

    blobs/sha256/ab/cdef…   one object per distinct content (first two hex digits = folder)
    tmp/<uuid4>[.<tag>]     uploads in flight (the tag names the upload that owns it)

An upload is two steps so the catalog can record the digest in between: ``write`` streams
the bytes into a unique temporary object while hashing them, ``commit`` moves the
temporary into place (or drops it when the same bytes are already stored). No final path
ever holds partial bytes: on a local disk the temporary is fsynced and renamed; on an
object store the final key appears whole through one server-side copy.

Hashing overlaps the writing: on a local disk a second thread writes (or, for a file on
the same file system, copies in the kernel, the copy then being hashed as it grows); on S3
up to ``_PARTS_IN_FLIGHT`` multipart parts upload at once while the next is hashed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import stat
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol, cast

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from ._hashing import (
    CHUNK,
    SHA256,
    BytesLike,
    Hasher,
    PathChunks,
    as_bytes,
    iter_source,
    make_digest,
    parse_sha256,
    split_digest,
)
from .errors import ChecksumMismatch, InvalidInput, NotFound, TooLarge

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["BlobStore", "Temporary", "VerifyingReader", "Written"]

# Protocols where a "directory" is only a key prefix: no makedirs round trips there.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az", "adl", "oss"})
# Multipart part size on object stores: the buffer one upload holds in memory. s3fs's
# default is 50 MiB; 16 MiB still allows 160 GiB objects within S3's 10,000 parts.
_OBJECT_STORE_BLOCK = 16 * CHUNK
# Parts uploading at once on S3 while the next one fills. Memory is bounded whatever the
# object's size: about (_PARTS_IN_FLIGHT + 1) parts, twice that over plain http, where
# aiohttp copies each body once more.
_PARTS_IN_FLIGHT = 4
# Local disk: bytes hashed but not yet written that the writer thread may lag behind.
_WRITE_BEHIND = 8 * CHUNK
# Local disk, path sources: bytes per in-kernel copy call (the hashing follows behind),
# and how far the copy may run ahead of the hashing (which reads from the page cache).
_COPY_STEP = 8 * CHUNK
_COPY_LEAD = 512 * CHUNK
# A failed in-kernel copy with one of these falls back to a plainer way of copying.
_COPY_UNSUPPORTED = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}
    | {errno.EPERM, errno.ETXTBSY, errno.ENOTSOCK}
)
_TEMP_NAME = re.compile(r"([0-9a-f]{32})(?:\.([A-Za-z0-9_-]{1,64}))?")
_TAG = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_HEX62 = re.compile(r"[0-9a-f]{62}")


class _RawFile(Protocol):
    """What VerifyingReader needs of the file it wraps (readinto is used when present)."""

    def read(self, n: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


class Temporary(NamedTuple):
    """A temporary object: an upload in flight, or garbage left by a dead one."""

    path: str
    tag: str | None  # as given to ``write``: lets gc spare the temporaries of live uploads
    modified: float | None  # POSIX timestamp; None where the backend does not say


@dataclass(frozen=True)
class Written:
    """Bytes hashed and stored under a temporary name, not yet committed."""

    digest: str
    size: int
    checksums: dict[str, str]
    temp_path: str
    direct: bool = False  # written straight to its content address (see write_direct)

    @property
    def sha256(self) -> str:
        return split_digest(self.digest)[1]


class BlobStore:
    """Internal blob bytes, content-addressed, on a local folder, memory:// or s3://…."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput("storage URL must be a non-empty string")
        try:
            fs, root = url_to_fs(url, **dict(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise InvalidInput(f"unusable storage URL: {exc}") from exc
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self.fs = fs
        self.root: str = root.rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        self._memory = isinstance(fs, MemoryFileSystem)
        self._object_store = bool(_OBJECT_STORES.intersection(protocols))
        # s3fs: parts are uploaded concurrently through its client (see _S3Upload).
        self._s3 = self._object_store and callable(getattr(fs, "call_s3", None))
        if self._object_store and not self.root:
            raise InvalidInput("an object-store URL must name a bucket (s3://bucket/prefix)")
        self._blobs = self._join("blobs", SHA256)
        self._tmp = self._join("tmp")

    def __repr__(self) -> str:  # never the storage options: they may hold credentials
        return f"BlobStore(protocol={self._protocol!r}, root={self.root!r})"

    @property
    def _protocol(self) -> str:
        p = self.fs.protocol
        return str(p[0] if isinstance(p, (tuple, list)) else p)

    def _join(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # -- paths ---------------------------------------------------------------------------

    def object_path(self, digest: str) -> str:
        """Storage-internal path of an object; for the store and its tests, never readers."""
        algorithm, hexdigest = split_digest(digest)
        if algorithm != SHA256:
            raise InvalidInput(f"the store addresses objects by sha256, not {algorithm}")
        return f"{self._blobs}/{hexdigest[:2]}/{hexdigest[2:]}"

    def _new_temp_path(self, tag: str | None) -> str:
        if tag is None:
            return f"{self._tmp}/{uuid.uuid4().hex}"
        return f"{self._tmp}/{uuid.uuid4().hex}.{tag}"

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        chunks: Iterable[BytesLike] | BytesLike,
        *,
        max_size: int | None = None,
        expected_sha256: str | None = None,
        extra_algorithms: Iterable[str] = (),
        on_progress: Callable[[int], None] | None = None,
        tag: str | None = None,
    ) -> Written:
        """Stream ``chunks`` into a new temporary object, hashing in the same pass.

        ``expected_sha256`` is bare hex or ``sha256:<hex>``. Raises TooLarge as soon as more
        than ``max_size`` bytes arrive and ChecksumMismatch at the end; on any exception the
        temporary is removed. ``on_progress`` gets the byte count so far after each chunk.
        ``tag`` (letters, digits, ``_``, ``-``; up to 64) is kept in the temporary's name and
        reported by ``iter_temporaries``.
        """
        if tag is not None and (not isinstance(tag, str) or not _TAG.fullmatch(tag)):
            raise InvalidInput(f"upload tag must be 1-64 of [A-Za-z0-9_-], got {tag!r}")
        expected = None if expected_sha256 is None else parse_sha256(expected_sha256)
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
        ):
            raise InvalidInput(f"max_size must be a non-negative integer, got {max_size!r}")
        hasher = Hasher(extra_algorithms)
        source: Iterator[object]
        data: object = chunks  # callers are not always typed: check what really came
        if isinstance(data, str):
            raise InvalidInput("blob data must be bytes, got text")
        if isinstance(data, (bytes, bytearray, memoryview)):
            source = iter_source(data)
        else:
            source = iter(chunks)
        temp = self._new_temp_path(tag)
        try:
            if self._local:
                self._write_local(temp, source, hasher, max_size, on_progress)
            else:
                self._write_fs(temp, source, hasher, max_size, on_progress)
            if expected is not None and hasher.sha256_hex != expected:
                raise ChecksumMismatch(
                    f"uploaded bytes have sha256:{hasher.sha256_hex}, "
                    f"expected sha256:{expected} ({hasher.size} bytes read)"
                )
        except BaseException:
            # Also on KeyboardInterrupt: a temporary nobody will commit is only garbage.
            with contextlib.suppress(Exception):
                self._remove(temp)
            raise
        finally:
            close = getattr(source, "close", None)
            if callable(close):  # release a generator's file even when we stopped early
                with contextlib.suppress(Exception):
                    close()
        return Written(hasher.digest, hasher.size, hasher.checksums(), temp)

    @staticmethod
    def _feed(
        source: Iterator[object],
        hasher: Hasher,
        max_size: int | None,
        on_progress: Callable[[int], None] | None,
        sink: Callable[[bytes], object],
    ) -> None:
        for chunk in source:
            data = as_bytes(chunk)
            if not data:
                continue
            if max_size is not None and hasher.size + len(data) > max_size:
                raise TooLarge(f"blob exceeds the size cap of {max_size} bytes")
            hasher.update(data)
            sink(data)
            if on_progress is not None:
                on_progress(hasher.size)

    def _write_local(
        self,
        temp: str,
        source: Iterator[object],
        hasher: Hasher,
        max_size: int | None,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        os.makedirs(os.path.dirname(temp), exist_ok=True)
        with open(temp, "xb") as f:
            # Hashing runs here while another thread writes (and fsyncs) the temporary:
            # sha256 alone takes about as long as the copy, so the two overlap.
            src = source.open() if isinstance(source, PathChunks) and not source.started else None
            if src is not None and _same_file_system(src.fileno(), f.fileno()):
                # A file: copied in the kernel, then the temporary itself is hashed as it
                # grows, so the digest is that of the bytes stored, not of the source.
                _copy_and_hash(src.fileno(), f.fileno(), temp, hasher, max_size, on_progress)
            else:
                _write_behind(source, f, hasher, max_size, on_progress, self._feed)

    def _write_fs(
        self,
        temp: str,
        source: Iterator[object],
        hasher: Hasher,
        max_size: int | None,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        if not self._object_store:
            self.fs.makedirs(self._tmp, exist_ok=True)
        out = self._object_writer(temp)
        try:
            self._feed(source, hasher, max_size, on_progress, out.write)
            out.commit()
        except BaseException:
            out.abort()
            raise

    def _object_writer(self, path: str) -> _ObjectWriter:
        """A writer whose ``commit`` makes ``path`` appear whole and ``abort`` leaves nothing."""
        if self._s3:
            return _S3Upload(self.fs, path, _OBJECT_STORE_BLOCK, _PARTS_IN_FLIGHT)
        kwargs: dict[str, Any] = {}
        if self._object_store:
            kwargs["block_size"] = _OBJECT_STORE_BLOCK
        return _FsspecWriter(self.fs.open(path, "wb", **kwargs))

    @property
    def writes_direct(self) -> bool:
        """Whether a known digest saves a copy: on object stores a rename is a server-side
        copy of every byte, so ``write_direct`` uploads to the content address itself."""
        return self._object_store

    def write_direct(
        self,
        chunks: Iterable[BytesLike],
        *,
        expected_sha256: str,
        max_size: int | None = None,
        extra_algorithms: Iterable[str] = (),
        on_progress: Callable[[int], None] | None = None,
    ) -> Written:
        """Upload bytes whose sha256 is known in advance straight to their content address.

        The caller must have recorded the digest in the catalog first (so no gc removes
        the object before it is referenced). The multipart upload is completed only when
        the streamed bytes hash to ``expected_sha256``; otherwise it is aborted and no
        object appears. When the object already exists the bytes are only hashed."""
        expected = parse_sha256(expected_sha256)
        final = self.object_path(make_digest(expected))
        hasher = Hasher(extra_algorithms)
        source = iter(chunks)
        exists = self._info(final) is not None
        out: _ObjectWriter | None = None
        try:
            if not exists:
                out = self._object_writer(final)
            self._feed(source, hasher, max_size, on_progress, out.write if out else len)
            if hasher.sha256_hex != expected:
                raise ChecksumMismatch(
                    f"uploaded bytes have sha256:{hasher.sha256_hex}, "
                    f"expected sha256:{expected} ({hasher.size} bytes read)"
                )
            if out is not None:
                out.commit()  # completes the upload: the object appears whole
        except BaseException:
            if out is not None:
                out.abort()  # abort the multipart upload: nothing appears
            raise
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        if out is not None:
            self.fs.invalidate_cache(final)
        return Written(hasher.digest, hasher.size, hasher.checksums(), final, direct=True)

    def commit(self, written: Written) -> None:
        """Move a written temporary into place, or drop it when the object already exists.

        Idempotent: committing again after success is a no-op.
        """
        if written.direct:
            return
        final = self.object_path(written.digest)
        temp = written.temp_path
        self._check_temp_path(temp)
        if self._local:
            self._commit_local(written, final)
            return
        existing = self._info(final)
        if existing is not None and existing.get("size") == written.size:
            self._remove(temp)  # the same bytes are stored once
            return
        if self._info(temp) is None:
            raise NotFound(f"upload of {written.digest} is gone (discarded or collected)")
        if not self._object_store:
            self.fs.makedirs(self.fs._parent(final), exist_ok=True)
        # On object stores this is a server-side copy, then a delete: the final key
        # appears whole or not at all.
        self.fs.mv(temp, final)
        self.fs.invalidate_cache(final)
        self.fs.invalidate_cache(temp)

    def _commit_local(self, written: Written, final: str) -> None:
        temp = written.temp_path
        try:
            existing: int | None = os.stat(final).st_size
        except FileNotFoundError:
            existing = None
        if existing == written.size:
            self._remove(temp)  # the same bytes are stored once
            return
        # A final object of another size is damaged; the verified upload replaces it.
        if not os.path.isfile(temp):
            raise NotFound(f"upload of {written.digest} is gone (discarded or collected)")
        parent = os.path.dirname(final)
        created = not os.path.isdir(parent)
        os.makedirs(parent, exist_ok=True)
        os.replace(temp, final)  # atomic: readers see no object or the whole object
        _fsync_dir(parent)
        if created:
            _fsync_dir(os.path.dirname(parent))

    def discard(self, written: Written) -> None:
        """Remove an uncommitted temporary (missing is fine)."""
        if written.direct:
            return  # already at its content address, where others may reference it
        self._check_temp_path(written.temp_path)
        self._remove(written.temp_path)

    # -- reading -------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        final = self.object_path(digest)
        if self._local:
            return os.path.isfile(final)
        info = self._info(final)
        return info is not None and info.get("type") == "file"

    def size(self, digest: str) -> int:
        final = self.object_path(digest)
        if self._local:
            try:
                return os.stat(final).st_size
            except FileNotFoundError:
                raise NotFound(f"blob {digest} is not in the store") from None
        info = self._info(final)
        if info is None or info.get("type") != "file":
            raise NotFound(f"blob {digest} is not in the store")
        return int(info["size"])

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A raw readable file positioned at ``offset``; the caller stops after ``length``.

        ``length`` only tunes read-ahead on object stores. Nothing is verified here: wrap
        the file in a VerifyingReader (see ``reader``) to check size and sha256.
        """
        _check_range(offset, length)
        final = self.object_path(digest)
        f: IO[bytes] | _BufferReader
        try:
            if self._local:
                f = open(final, "rb")  # noqa: SIM115 - returned to the caller, who closes it
            elif self._memory:
                # MemoryFileSystem hands out the stored object itself, with one shared
                # position; a view gives each reader its own.
                f = _BufferReader(self.fs.open(final, "rb").getbuffer())
            else:
                self.fs.invalidate_cache(final)
                kwargs: dict[str, Any] = {}
                if self._object_store:
                    want = _OBJECT_STORE_BLOCK if length is None else length
                    kwargs["block_size"] = max(CHUNK, min(want, _OBJECT_STORE_BLOCK))
                f = self.fs.open(final, "rb", **kwargs)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        if offset:
            try:
                f.seek(offset)
            except BaseException:
                f.close()
                raise
        return cast(BinaryIO, f)

    def reader(
        self, digest: str, size: int, *, offset: int = 0, length: int | None = None
    ) -> VerifyingReader:
        """Open ``digest`` through a VerifyingReader that checks ``size`` (the record's) and
        the sha256 the digest names; a partial range is not verified."""
        f = self.open(digest, offset, length)
        return VerifyingReader(f, size=size, sha256=digest, offset=offset, length=length)

    # -- deleting and listing (for garbage collection) ------------------------------------

    def delete(self, digest: str) -> None:
        """Remove an object; a missing one is fine."""
        self._remove(self.object_path(digest))

    def iter_objects(self) -> Iterator[tuple[str, int]]:
        """Every stored object as ``(digest, size)``, sorted by digest; stray names skipped."""
        if self._local:
            yield from self._iter_objects_local()
            return
        for path, info in self._find(self._blobs):
            rel = path[len(self._blobs) + 1 :].split("/")
            hexdigest = _hex_of(rel)
            if hexdigest is not None and info.get("type", "file") == "file":
                yield make_digest(hexdigest), int(info.get("size") or 0)

    def _iter_objects_local(self) -> Iterator[tuple[str, int]]:
        try:
            folders = sorted(e.name for e in os.scandir(self._blobs) if e.is_dir())
        except FileNotFoundError:
            return
        for folder in folders:
            try:
                entries = sorted(os.scandir(os.path.join(self._blobs, folder)), key=_name)
            except FileNotFoundError:
                continue
            for entry in entries:
                hexdigest = _hex_of([folder, entry.name])
                if hexdigest is None or not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):  # deleted while listing
                    yield make_digest(hexdigest), entry.stat(follow_symlinks=False).st_size

    def iter_temporaries(self) -> Iterator[Temporary]:
        """Uploads in flight or abandoned, as ``Temporary(path, tag, modified)``.

        Names this store did not write are not listed, so gc never removes them.
        """
        if self._local:
            try:
                entries = sorted(os.scandir(self._tmp), key=_name)
            except FileNotFoundError:
                return
            for entry in entries:
                match = _TEMP_NAME.fullmatch(entry.name)
                if match is None or not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):  # committed while listing
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                    yield Temporary(f"{self._tmp}/{entry.name}", match[2], mtime)
            return
        for path, info in self._find(self._tmp):
            match = _TEMP_NAME.fullmatch(path.rpartition("/")[2])
            if match is not None and info.get("type", "file") == "file":
                yield Temporary(path, match[2], _modified(info))

    def remove_temporary(self, path: str) -> None:
        """Remove one temporary found by ``iter_temporaries`` (missing is fine)."""
        self._check_temp_path(path)
        self._remove(path)

    # -- helpers -------------------------------------------------------------------------

    def _check_temp_path(self, path: str) -> None:
        # The gc passes paths back; never let it delete anything outside tmp/.
        prefix, _, name = path.rpartition("/") if isinstance(path, str) else ("", "", "")
        if prefix != self._tmp or not _TEMP_NAME.fullmatch(name):
            raise InvalidInput(f"not a temporary of this store: {path!r}")

    def _info(self, path: str) -> dict[str, Any] | None:
        # s3fs answers info/exists from its listing cache when it can: drop it first, as
        # another process may have written or deleted the object since.
        self.fs.invalidate_cache(path)
        try:
            return cast(dict[str, Any], self.fs.info(path))
        except FileNotFoundError:
            return None

    def _find(self, path: str) -> list[tuple[str, dict[str, Any]]]:
        self.fs.invalidate_cache(path)
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(cast(dict[str, dict[str, Any]], found).items())

    def _remove(self, path: str) -> None:
        if self._local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        finally:
            self.fs.invalidate_cache(path)


# -- writers -------------------------------------------------------------------------------


class _ObjectWriter(Protocol):
    """Bytes on their way to one object: ``commit`` makes it appear whole, ``abort`` leaves
    nothing (and never raises)."""

    def write(self, data: bytes, /) -> object: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class _FsspecWriter:
    """A file fsspec opened for writing (memory://, object stores other than S3)."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.write = f.write

    def commit(self) -> None:
        self._f.close()

    def abort(self) -> None:
        # close() would upload what was buffered; discard() aborts a multipart upload.
        discard = getattr(self._f, "discard", None)
        if callable(discard):
            with contextlib.suppress(Exception):
                discard()
        with contextlib.suppress(Exception):
            self._f.close()


class _S3Upload:
    """One S3 object uploaded in parts of ``part_size``, up to ``in_flight`` at once.

    ``write`` only keeps the bytes for the part being filled; a full part goes to a small
    thread pool (through s3fs's ``call_s3``) while the caller reads and hashes the next
    one, so memory is bounded by the parts in flight whatever the object's size. Part
    numbers are fixed in ``write``'s order, whatever order the uploads finish in. An
    object smaller than one part is a single ``put_object`` at ``commit``; a larger one
    appears only when ``commit`` completes the multipart upload. ``abort`` waits for the
    parts in flight, then aborts the multipart upload, so no part outlives it.
    """

    def __init__(self, fs: Any, path: str, part_size: int, in_flight: int) -> None:
        if part_size < 5 * CHUNK or in_flight < 1:
            raise ValueError("S3 parts are at least 5 MiB, and one at least must be in flight")
        self._fs = fs
        self._path = path
        bucket, key, _ = fs.split_path(path)
        self._where = {"Bucket": bucket, "Key": key}
        self._part_size = part_size
        self._in_flight_max = in_flight
        # Views of the (immutable) bytes written: joined once, when the part is sent.
        self._pieces: list[memoryview] = []
        self._filled = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future[dict[str, Any]]] = deque()
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1

    def write(self, data: BytesLike, /) -> None:
        if not isinstance(data, bytes):  # a view must not change under us
            data = bytes(data)
        view = memoryview(data)
        while view.nbytes:
            take = min(self._part_size - self._filled, view.nbytes)
            self._pieces.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled >= self._part_size:
                self._send_part()

    def _take_part(self) -> bytes:
        # bytes, not a bytearray: aiohttp would copy a bytearray once more, and s3fs's
        # retries send the same object again (a stream would be at its end by then).
        body = b"".join(self._pieces)
        self._pieces, self._filled = [], 0
        return body

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._call("create_multipart_upload")["UploadId"]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._in_flight_max, thread_name_prefix="glarelite-s3-part"
            )
        # A free slot first, then the part's bytes: one part less in memory meanwhile.
        while len(self._in_flight) >= self._in_flight_max:
            self._parts.append(self._in_flight.popleft().result())  # raises a part's error
        for future in self._in_flight:  # a later part that failed: stop now, not at the end
            if future.done() and future.exception() is not None:
                future.result()
        number, self._next_part = self._next_part, self._next_part + 1
        self._in_flight.append(self._pool.submit(self._upload_part, number, self._take_part()))

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        out = self._call("upload_part", UploadId=self._upload_id, PartNumber=number, Body=body)
        part: dict[str, Any] = {"PartNumber": number, "ETag": out["ETag"]}
        if "ChecksumSHA256" in out:  # as s3fs does: only present when asked for
            part["ChecksumSHA256"] = out["ChecksumSHA256"]
        return part

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._fs.call_s3(method, **self._where, **kwargs))

    def commit(self) -> None:
        if self._upload_id is None:
            self._call("put_object", Body=self._take_part())
        else:
            if self._filled:
                self._send_part()  # the last part may be short
            while self._in_flight:
                self._parts.append(self._in_flight.popleft().result())
            self._call(
                "complete_multipart_upload",
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=_part_number)},
            )
            self._upload_id = None
        self._shutdown()
        self._fs.invalidate_cache(self._path)

    def abort(self) -> None:
        self._pieces, self._filled = [], 0
        for future in self._in_flight:
            future.cancel()
        # A part still uploading when the upload is aborted could be stored after the
        # abort (S3 says so): wait for every part first, failed or not.
        while True:
            try:
                wait_futures(self._in_flight)
                break
            except BaseException:  # KeyboardInterrupt: the parts must still finish first
                continue
        self._in_flight.clear()
        self._shutdown()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(Exception):
                self._call("abort_multipart_upload", UploadId=upload_id)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _part_number(part: Mapping[str, Any]) -> int:
    return int(part["PartNumber"])


class _Handoff:
    """Chunks from the thread that hashes to the thread that writes them.

    At most ``budget`` bytes wait (one chunk always may). An error of the writer is raised
    to the producer at its next ``put`` or at ``close``."""

    def __init__(self, budget: int) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._budget = budget
        self._closed = False  # the producer has no more chunks
        self.stopped = False  # the producer gave up: the writer drops what is left
        self._done = False  # the writer wrote and synced everything
        self._error: BaseException | None = None

    def put(self, data: bytes) -> None:
        with self._cond:
            while self._queued >= self._budget and self._error is None:
                self._cond.wait()
            self._raise_error()
            self._chunks.append(data)
            self._queued += len(data)
            self._cond.notify_all()

    def take(self) -> bytes | None:
        """The next chunk; None once closed and drained, or stopped."""
        with self._cond:
            while not self._chunks and not self._closed and not self.stopped:
                self._cond.wait()
            if self.stopped or not self._chunks:
                return None
            data = self._chunks.popleft()
            self._queued -= len(data)
            self._cond.notify_all()
            return data

    def close(self) -> None:
        """No more chunks: wait until the writer is done, raising its error."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while not self._done and self._error is None:
                self._cond.wait()
            self._raise_error()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._chunks.clear()
            self._queued = 0
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done = error is None
            self._error = error
            self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _write_behind(
    source: Iterator[object],
    f: BinaryIO,
    hasher: Hasher,
    max_size: int | None,
    on_progress: Callable[[int], None] | None,
    feed: Callable[..., None],
) -> None:
    """Hash each chunk here while a thread writes the chunks (the same bytes objects) to
    ``f`` and fsyncs it; returns once the bytes are durable."""
    handoff = _Handoff(_WRITE_BEHIND)

    def writer() -> None:
        try:
            while (data := handoff.take()) is not None:
                f.write(data)
            if not handoff.stopped:
                f.flush()
                os.fsync(f.fileno())  # durable before the catalog records the digest
        except BaseException as exc:
            handoff.finish(exc)
        else:
            handoff.finish()

    thread = threading.Thread(target=writer, name="glarelite-write", daemon=True)
    thread.start()
    try:
        feed(source, hasher, max_size, on_progress, handoff.put)
        handoff.close()
    except BaseException:
        handoff.stop()
        raise
    finally:
        thread.join()


class _Copied:
    """How far a copying thread and the hashing thread behind it got.

    The hashing never overtakes the copy; the copy keeps at most ``lead`` bytes ahead, so
    what is read back is still in the page cache however large the file."""

    def __init__(self, lead: int) -> None:
        self._cond = threading.Condition()
        self._lead = lead
        self._copied = 0
        self._hashed = 0
        self._done = False
        self._error: BaseException | None = None
        self.stopped = False

    def advance(self, copied: int) -> None:
        """The copier's progress; waits while it is ``lead`` bytes ahead of the hashing."""
        with self._cond:
            self._copied = copied
            self._cond.notify_all()
            while copied - self._hashed >= self._lead and not self.stopped:
                self._cond.wait()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done = True
            self._error = error
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def wait_beyond(self, hashed: int) -> int:
        """Bytes copied so far, once more than ``hashed`` (or all, synced, when done)."""
        with self._cond:
            self._hashed = hashed
            self._cond.notify_all()
            while self._copied <= hashed and not self._done and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            return self._copied


def _copy_and_hash(
    src: int,
    dst: int,
    temp: str,
    hasher: Hasher,
    max_size: int | None,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Copy the file ``src`` into ``dst`` (the temporary ``temp``) in a thread, in the
    kernel where possible; meanwhile read back and hash what the temporary holds.

    Hashing the temporary, not the source, makes the digest that of the stored bytes even
    when the source changes meanwhile. The copy stops one byte past ``max_size``.
    """
    copied = _Copied(_COPY_LEAD)
    limit = None if max_size is None else max_size + 1

    def copier() -> None:
        try:
            copy = _FileCopier(src, dst)
            total = 0
            while not copied.stopped:
                want = _COPY_STEP if limit is None else min(_COPY_STEP, limit - total)
                n = copy(want) if want > 0 else 0
                if n == 0:
                    break
                total += n
                copied.advance(total)
            if not copied.stopped and (limit is None or total < limit):
                os.fsync(dst)  # durable before the catalog records the digest
        except BaseException as exc:
            copied.finish(exc)
        else:
            copied.finish()

    thread = threading.Thread(target=copier, name="glarelite-copy", daemon=True)
    thread.start()
    try:
        with open(temp, "rb", buffering=0) as back:
            buffer = memoryview(bytearray(CHUNK))
            pos = 0
            while (end := copied.wait_beyond(pos)) > pos:
                n = back.readinto(buffer[: min(CHUNK, end - pos)])
                if not n:
                    raise OSError(f"temporary {temp} shrank while it was written")
                if max_size is not None and hasher.size + n > max_size:
                    raise TooLarge(f"blob exceeds the size cap of {max_size} bytes")
                hasher.update(buffer[:n])
                pos += n
                if on_progress is not None:
                    on_progress(hasher.size)
            if os.fstat(dst).st_size != pos:
                raise OSError(f"temporary {temp} changed while it was written")
    except BaseException:
        copied.stop()
        raise
    finally:
        thread.join()


def _same_file_system(src: int, dst: int) -> bool:
    """Whether ``src`` is a regular file on the file system of ``dst``: there an in-kernel
    copy is well supported, while files of /proc and the like (size 0, content anyway) are
    elsewhere and must be read."""
    source = os.fstat(src)
    return stat.S_ISREG(source.st_mode) and source.st_dev == os.fstat(dst).st_dev


class _FileCopier:
    """``copier(n)`` copies up to ``n`` bytes from the current offset of ``src`` to that of
    ``dst`` and returns how many (0 at the end): copy_file_range, else sendfile, else
    read and write, falling back when the kernel or file system refuses one."""

    def __init__(self, src: int, dst: int) -> None:
        self._src, self._dst = src, dst
        self._ways: list[Callable[[int], int]] = []
        if hasattr(os, "copy_file_range"):
            self._ways.append(self._copy_file_range)
        if hasattr(os, "sendfile") and sys.platform.startswith("linux"):  # file to file
            self._ways.append(self._sendfile)
        self._ways.append(self._read_write)

    def __call__(self, count: int) -> int:
        while True:
            try:
                return self._ways[0](count)
            except OSError as exc:
                if len(self._ways) == 1 or exc.errno not in _COPY_UNSUPPORTED:
                    raise
                # Nothing was copied by the failed call: offsets are where they were.
                self._ways.pop(0)

    def _copy_file_range(self, count: int) -> int:
        return os.copy_file_range(self._src, self._dst, count)

    def _sendfile(self, count: int) -> int:
        return os.sendfile(self._dst, self._src, None, count)

    def _read_write(self, count: int) -> int:
        data = os.read(self._src, count)
        view = memoryview(data)
        while view.nbytes:
            view = view[os.write(self._dst, view) :]
        return len(data)


class VerifyingReader(io.RawIOBase):
    """Reads through ``raw``, hashing as bytes pass; at EOF the size and sha256 must match.

    Raises ChecksumMismatch (naming what differs) as soon as more bytes than ``size``
    arrive, when the last expected byte completes a wrong sha256, or at an early EOF. A
    reader for a partial range (``offset``/``length``) cannot verify the hash:
    ``verified_on_eof`` is False and it only checks that the range is not cut short.
    ``raw`` must already be positioned at ``offset``; closing the reader closes ``raw``.
    """

    def __init__(
        self,
        raw: _RawFile,
        *,
        size: int,
        sha256: str,
        offset: int = 0,
        length: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        _check_range(offset, length)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"size must be a non-negative integer, got {size!r}")
        self._raw = raw
        self._size = size
        self._expected_hex = parse_sha256(sha256)
        self.name = name or make_digest(self._expected_hex)
        self.offset = offset
        self.verified_on_eof = offset == 0 and (length is None or length >= size)
        # A partial reader stops at the end of its range, within the recorded size.
        end = size if length is None else min(size, offset + length)
        self._limit = max(0, end - offset)
        self._hash = hashlib.sha256() if self.verified_on_eof else None
        self._pos = 0
        self._eof = False
        self._failure: str | None = None
        self.verified = False

    @property
    def bytes_read(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        if self._failure is not None:
            raise ChecksumMismatch(self._failure)
        if self._eof:
            return 0
        view = memoryview(buffer).cast("B")
        if self._hash is None:
            view = view[: self._limit - self._pos]
        if not len(view):
            if self._hash is None and self._pos >= self._limit:
                self._eof = True
            return 0
        n = self._read_raw(view)
        if n is None:
            return None
        if n == 0:
            self._eof = True
            self._check_eof()
            return 0
        self._pos += n
        if self._hash is not None:
            if self._pos > self._size:
                self._fail(f"more bytes than the recorded size of {self._size}")
            self._hash.update(view[:n])
            if self._pos == self._size:
                # Check now, so a consumer never receives the last chunk of bad bytes.
                self._check_hash()
        return n

    def _check_hash(self) -> None:
        assert self._hash is not None
        got = self._hash.hexdigest()
        if got != self._expected_hex:
            self._fail(
                f"sha256 of the bytes read is sha256:{got}, recorded sha256:{self._expected_hex}"
            )

    def _read_raw(self, view: memoryview) -> int | None:
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            return cast("int | None", readinto(view))
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _check_eof(self) -> None:
        if self._hash is not None:
            if self._pos != self._size:
                self._fail(f"read {self._pos} bytes, recorded size {self._size}")
            self._check_hash()  # again: an empty object never reached the check above
            self.verified = True
        elif self._pos < self._limit:
            self._fail(
                f"the object ends before byte {self.offset + self._limit} "
                f"({self._pos} bytes of the range read), recorded size {self._size}"
            )

    def _fail(self, what: str) -> None:
        self._failure = f"blob {self.name}: {what}"
        raise ChecksumMismatch(self._failure)

    def readall(self) -> bytes:
        # RawIOBase's default reads 8 KiB at a time.
        return b"".join(self.iter_chunks())

    def iter_chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The bytes in chunks; the last ``next`` raises if verification fails."""
        while data := self.read(chunk_size):
            yield data

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()


class _BufferReader(io.RawIOBase):
    """A seekable reader over a memoryview with its own position (memory:// objects)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view: memoryview | None = view.cast("B")
        self._pos = 0

    def _buf(self) -> memoryview:
        if self._view is None:
            raise ValueError("I/O operation on closed file")
        return self._view

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        data = self._buf()
        out = memoryview(buffer).cast("B")
        n = max(0, min(len(out), len(data) - self._pos))
        out[:n] = data[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf())}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._view is not None:
            self._view.release()  # let the stored object be replaced or grown again
            self._view = None
        super().close()


def _check_range(offset: int, length: int | None) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be a non-negative integer, got {offset!r}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise InvalidInput(f"length must be a non-negative integer, got {length!r}")
    if length is not None and length < 0:
        raise InvalidInput(f"length must be a non-negative integer, got {length!r}")


def _hex_of(parts: list[str]) -> str | None:
    if len(parts) == 2 and _HEX2.fullmatch(parts[0]) and _HEX62.fullmatch(parts[1]):
        return parts[0] + parts[1]
    return None


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _modified(info: Mapping[str, Any]) -> float | None:
    """Modification time (POSIX) from an fsspec info dict; key and type vary by backend."""
    for key in ("LastModified", "mtime", "modified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime):
            if value.tzinfo is None:  # naive times from object stores are UTC
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _fsync_dir(path: str) -> None:
    # Makes a rename durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
