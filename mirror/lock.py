"""One sync per tree at a time: a non-blocking lock held for the whole run.

Local trees use ``flock`` on ``.glarelite-mirror/lock``: the kernel drops it when the
holder dies, so a killed run never blocks the next. The file also records the holder
(pid, host, start) for the "already running" message, and is emptied on a clean
release, so a non-empty file found by a new holder means the previous run died (its
temporaries are worth cleaning). Other destinations (s3://, …) have no flock: a lock
object naming pid and host; one left by a dead process of this host is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Any

from glarelite import LockedError, tree
from glarelite.fsutil import HOST, pid_alive, utcnow

from .dest import Dest, FsspecDest, LocalDest

LOCK = f"{tree.STATE_DIR}/lock"


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": HOST,
        "started": utcnow("seconds"),
        "token": uuid.uuid4().hex,
    }


def _describe(info: dict[str, Any] | None, where: str) -> str:
    if not info:
        return f"another mirror of {where} is already running"
    return (
        f"another mirror of {where} is already running "
        f"(pid {info.get('pid')} on {info.get('host')}, since {info.get('started')})"
    )


class TreeLock:
    """``acquire`` raises glarelite.LockedError when another run holds the tree.
    ``previous`` is the holder record a dead run left behind (None after a clean run)."""

    def __init__(self, dest: Dest) -> None:
        self.dest = dest
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None
        self._info = _holder()

    def acquire(self) -> TreeLock:
        if isinstance(self.dest, LocalDest):
            self._acquire_local(self.dest)
        elif isinstance(self.dest, FsspecDest):
            self._acquire_object(self.dest)
        return self

    def release(self) -> None:
        if isinstance(self.dest, LocalDest):
            fd, self._fd = self._fd, None
            if fd is not None:
                import fcntl

                try:
                    os.ftruncate(fd, 0)  # empty = released cleanly
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        elif isinstance(self.dest, FsspecDest):
            with contextlib.suppress(FileNotFoundError):
                self.dest.fs.rm(self.dest.full(LOCK))

    def __enter__(self) -> TreeLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- local: flock -----------------------------------------------------------------
    def _acquire_local(self, dest: LocalDest) -> None:
        import fcntl

        path = dest.abspath(LOCK)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _parse(os.pread(fd, 4096, 0))
            os.close(fd)
            raise LockedError(_describe(info, dest.url)) from None
        except BaseException:
            os.close(fd)
            raise
        self.previous = _parse(os.pread(fd, 4096, 0))
        data = json.dumps(self._info).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd

    # -- object stores: a lock object ---------------------------------------------------
    def _acquire_object(self, dest: FsspecDest) -> None:
        full = dest.full(LOCK)
        with contextlib.suppress(Exception):
            dest.fs.invalidate_cache(full)
        existing = _parse(dest.read_bytes(LOCK) or b"")
        if existing:
            mine = existing.get("host") == HOST
            if not mine or pid_alive(int(existing.get("pid", 0))):
                raise LockedError(
                    _describe(existing, dest.url)
                    + ("" if mine else f"; if that run is dead, remove {dest.url}/{LOCK}")
                )
            self.previous = existing
        dest.fs.pipe_file(full, json.dumps(self._info).encode())
        # No compare-and-swap here: read back to catch a racing writer that came second.
        with contextlib.suppress(Exception):
            dest.fs.invalidate_cache(full)
        back = _parse(dest.read_bytes(LOCK) or b"")
        if not back or back.get("token") != self._info["token"]:
            raise LockedError(_describe(back, dest.url))


def _parse(data: bytes) -> dict[str, Any] | None:
    data = data.strip(b"\0 \n")
    if not data:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return {"pid": "?", "host": "?", "started": "?"}
    return value if isinstance(value, dict) else None
