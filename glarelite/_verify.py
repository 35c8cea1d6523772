"""Verified reads: a reader that hashes the bytes passing through it and raises
ChecksumMismatch as soon as they cannot be the recorded blob (too many, cut short, or a
wrong sha256 once the last byte arrives); ranged readers check their bounds."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, cast

from ._hashing import CHUNK, make_digest, parse_sha256
from .errors import ChecksumMismatch, InvalidInput

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["VerifyingReader"]


class RawFile(Protocol):
    """What VerifyingReader needs of the file it wraps (readinto is used when present)."""

    def read(self, n: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


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
        raw: RawFile,
        *,
        size: int,
        sha256: str,
        offset: int = 0,
        length: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        check_range(offset, length)
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


class BufferReader(io.RawIOBase):
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


def check_range(offset: int, length: int | None) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be a non-negative integer, got {offset!r}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise InvalidInput(f"length must be a non-negative integer, got {length!r}")
    if length is not None and length < 0:
        raise InvalidInput(f"length must be a non-negative integer, got {length!r}")
