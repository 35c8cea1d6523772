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
the same file system, copies in the kernel, the copy then being hashed as it grows: see
``_localwrite``); on S3 up to ``_PARTS_IN_FLIGHT`` multipart parts upload at once while
the next is hashed (``_objectwrite``). Reads are verified by ``_verify.VerifyingReader``.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, BinaryIO, NamedTuple, cast

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
from ._localwrite import copy_and_hash, same_file_system, write_behind
from ._objectwrite import FsspecWriter, ObjectWriter, S3Upload
from ._verify import BufferReader, VerifyingReader, check_range
from .errors import ChecksumMismatch, InvalidInput, NotFound, TooLarge
from .fsutil import fsync_dir

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
_TEMP_NAME = re.compile(r"([0-9a-f]{32})(?:\.([A-Za-z0-9_-]{1,64}))?")
_TAG = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_HEX62 = re.compile(r"[0-9a-f]{62}")


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
        # s3fs: parts are uploaded concurrently through its client (see S3Upload).
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
            if src is not None and same_file_system(src.fileno(), f.fileno()):
                # A file: copied in the kernel, then the temporary itself is hashed as it
                # grows, so the digest is that of the bytes stored, not of the source.
                copy_and_hash(src.fileno(), f.fileno(), temp, hasher, max_size, on_progress)
            else:
                write_behind(source, f, hasher, max_size, on_progress, self._feed)

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

    def _object_writer(self, path: str) -> ObjectWriter:
        """A writer whose ``commit`` makes ``path`` appear whole and ``abort`` leaves nothing."""
        if self._s3:
            return S3Upload(self.fs, path, _OBJECT_STORE_BLOCK, _PARTS_IN_FLIGHT)
        kwargs: dict[str, Any] = {}
        if self._object_store:
            kwargs["block_size"] = _OBJECT_STORE_BLOCK
        return FsspecWriter(self.fs.open(path, "wb", **kwargs))

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
        out: ObjectWriter | None = None
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
        fsync_dir(parent)  # the data was fsynced as it was written (_localwrite)
        if created:
            fsync_dir(os.path.dirname(parent))

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
        check_range(offset, length)
        final = self.object_path(digest)
        f: IO[bytes] | BufferReader
        try:
            if self._local:
                f = open(final, "rb")  # noqa: SIM115 - returned to the caller, who closes it
            elif self._memory:
                # MemoryFileSystem hands out the stored object itself, with one shared
                # position; a view gives each reader its own.
                f = BufferReader(self.fs.open(final, "rb").getbuffer())
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

    def iter_multipart_uploads(self) -> Iterator[tuple[str, str, float | None]]:
        """S3 multipart uploads in progress under the storage root, as (path, upload id,
        initiated timestamp): a process killed mid-upload leaves one behind, and its parts
        are billed until it is aborted. Nothing elsewhere."""
        if not self._s3:
            return
        bucket, prefix, _ = self.fs.split_path(self.root)
        base = f"{prefix}/" if prefix else ""
        # Only the two folders this store writes: a bucket shared with other software
        # (a root without prefix) must not lose their uploads.
        for folder in ("tmp/", "blobs/"):
            where = {"Bucket": bucket, "Prefix": base + folder}
            marker: dict[str, str] = {}
            while True:
                page = self.fs.call_s3("list_multipart_uploads", **where, **marker)
                for upload in page.get("Uploads", []) or []:
                    initiated = upload.get("Initiated")
                    when = initiated.timestamp() if isinstance(initiated, datetime) else None
                    yield f"{bucket}/{upload['Key']}", str(upload["UploadId"]), when
                if not page.get("IsTruncated"):
                    break
                marker = {
                    "KeyMarker": page.get("NextKeyMarker", ""),
                    "UploadIdMarker": page.get("NextUploadIdMarker", ""),
                }

    def temporary_tag(self, path: str) -> str | None:
        """The tag in a temporary's name (None for any other path)."""
        match = _TEMP_NAME.fullmatch(path.rpartition("/")[2])
        return match[2] if match is not None else None

    def abort_multipart_upload(self, path: str, upload_id: str) -> None:
        """Abort one upload found by ``iter_multipart_uploads`` (gone already is fine)."""
        bucket, key, _ = self.fs.split_path(path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)

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
