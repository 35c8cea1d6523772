"""Read-through cache of external blobs: the first whole read keeps a verified copy,
later reads come from it. Copies are named by digest, written atomically, and the least
recently used are evicted beyond the size cap."""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._hashing import split_digest
from .fsutil import replace

if TYPE_CHECKING:
    from .catalog import Catalog


class ReadCache:
    def __init__(self, folder: str | os.PathLike[str], max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def of(cls, cat: Catalog) -> ReadCache | None:
        if not cat.settings.cache_dir:
            return None
        cache = cat._shared.get("cache")
        if cache is None:
            cache = cls(cat.settings.cache_dir, cat.settings.cache_max_bytes)
            cat._shared["cache"] = cache
        return cache

    def _path(self, digest: str) -> Path:
        algo, hexdigest = split_digest(digest)
        return self.folder / algo / hexdigest[:2] / hexdigest[2:]

    def open(self, digest: str, *, offset: int, length: int | None) -> Any:
        from ._verify import VerifyingReader

        path = self._path(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        os.utime(path)  # mtime is the recency the eviction goes by
        size = os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        return VerifyingReader(
            handle, size=size, sha256=split_digest(digest)[1], offset=offset, length=length
        )

    def tee(self, digest: str, reader: Any) -> _Tee:
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _Tee(self, reader, path)

    def evict(self, keep: Path | None = None) -> None:
        entries = []
        for p in self.folder.rglob("*"):
            if p.is_file() and not p.name.endswith(".part"):
                st = p.stat()
                entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            total -= size


class _Tee(io.RawIOBase):
    """Passes a verifying reader's bytes through and keeps a copy; the copy is published
    only when the reader reached its end (where it verifies size and sha256)."""

    def __init__(self, cache: ReadCache, reader: Any, path: Path) -> None:
        super().__init__()
        self._cache = cache
        self._reader = reader
        self._path = path
        self._tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
        self._out: Any = self._tmp.open("wb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._reader.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if n:
            self._out.write(data)
        elif self._out is not None:  # verified end of stream
            self._out.close()
            self._out = None
            replace(self._tmp, self._path, durable=False)  # a cache: fetched again if lost
            self._cache.evict(keep=self._path)
        return n

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        self._reader.close()
        super().close()
