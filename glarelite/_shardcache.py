"""The reader's disk cache of a format 2 tree's bucket and shard files, by sha256.

A flat folder of files named by their sha256. Content-addressed files never change, so
a cached file serves every later reader (another process, the next day) of any tree that
pins it. Nothing in the folder is trusted: a file is read only through a descriptor
opened without following a link (O_NOFOLLOW, relative to the folder), only if it is a
regular file of exactly the pinned size, and its sha256 is checked on every read; a file
that fails is removed and fetched again. Writes are atomic (a temporary in the folder,
then a rename), so a reader never sees half a file.

The cache is bounded: past ``max_bytes``, files are evicted oldest access first (a hit
refreshes the file's mtime). The bound is kept by this process's own count after one
scan of the folder; processes sharing a folder may overshoot it briefly, each one
trimming back to it on its next write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat

from .errors import InvalidInput

__all__ = ["ShardCache"]

_NAME = re.compile(r"[0-9a-f]{64}\Z")
_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class ShardCache:
    def __init__(self, folder: str | os.PathLike[str], max_bytes: int) -> None:
        self.folder = os.fspath(folder)
        self.max_bytes = max_bytes
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            self._fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise InvalidInput(f"cannot use the cache folder {self.folder}: {exc}") from None
        self._total: int | None = None  # bytes in the folder, counted on the first write

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def get(self, sha256: str, size: int) -> bytes | None:
        """The cached file's bytes when they are exactly ``size`` bytes hashing to
        ``sha256``; None otherwise (a file that is not is removed)."""
        if not _NAME.match(sha256) or self._fd < 0:
            return None
        try:
            fd = os.open(sha256, _READ, dir_fd=self._fd)
        except OSError:  # absent, or a link / FIFO planted in the folder
            self._discard(sha256)
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                data = None
            else:
                os.set_blocking(fd, True)
                data = _read_upto(fd, size)
        except OSError:
            data = None
        finally:
            os.close(fd)
        if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            self._discard(sha256)
            return None
        with contextlib.suppress(OSError):  # mark the access for eviction
            os.utime(sha256, dir_fd=self._fd, follow_symlinks=False)
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Store verified bytes (best effort: a full or read-only disk only costs a refetch)."""
        if not _NAME.match(sha256) or self._fd < 0 or len(data) > self.max_bytes:
            return
        tmp = f".{sha256}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self._fd,
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, sha256, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self._fd)
            return
        self._account(len(data))

    def _discard(self, name: str) -> None:
        with contextlib.suppress(OSError):
            if not stat.S_ISDIR(os.stat(name, dir_fd=self._fd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=self._fd)

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        with contextlib.suppress(OSError), os.scandir(self._fd) as it:
            for entry in it:
                if not _NAME.match(entry.name):
                    continue
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    out.append((info.st_mtime, info.st_size, entry.name))
        return out

    def _account(self, added: int) -> None:
        if self._total is None:
            self._total = sum(size for _, size, _ in self._entries())
        else:
            self._total += added
        if self._total <= self.max_bytes:
            return
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _mtime, size, name in entries:
            if total <= self.max_bytes * 0.9:  # trim below the bound: no scan per write
                break
            self._discard(name)
            total -= size
        self._total = total


def _read_upto(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got <= size:
        data = os.read(fd, min(1 << 20, size + 1 - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)
