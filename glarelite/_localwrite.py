"""Local-disk writes of the blob store: a write-behind thread so hashing and writing
overlap, and in-kernel copies (copy_file_range, sendfile) of path sources hashed as they
grow."""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ._hashing import CHUNK, Hasher
from .errors import TooLarge

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


def write_behind(
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


def copy_and_hash(
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


def same_file_system(src: int, dst: int) -> bool:
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
