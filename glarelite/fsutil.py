"""Small file, process and time helpers, one definition each, shared by the library and
the mirror (which may use only glarelite's public names, hence a public module).

The fsync rule, for every file written to its final name through a temporary:

- the temporary is created beside the final name (same folder, so the same filesystem:
  the rename is atomic) and removed when anything fails;
- ``durable=True`` (the default): the data is fsynced *before* the rename, and the folder
  holding the final name is fsynced *after* it, so after a power loss the final name
  holds either the old bytes or all the new ones, and the rename itself is not lost;
- ``durable=False``: neither fsync. Still atomic against a killed process (a reader sees
  the old file or the whole new one), not against a power loss. For what can be fetched
  again (a read cache) or when the caller makes it durable another way (the mirror's
  batched ``syncfs``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import BinaryIO, Literal

__all__ = ["HOST", "atomic_file", "fsync_dir", "fsync_file", "pid_alive", "replace", "utcnow"]

HOST = socket.gethostname()
"""This machine's name, recorded beside a pid so another process can tell whether the
writer may still run (:func:`pid_alive` answers only for this host)."""


def utcnow(timespec: Literal["microseconds", "seconds"] = "microseconds") -> str:
    """The current UTC time as ISO 8601 with a ``Z``: ``2026-01-02T03:04:05.123456Z``
    (the catalog's timestamps: they sort as text), or to the second with
    ``timespec="seconds"`` (what a mirror tree records)."""
    now = datetime.now(timezone.utc)
    if timespec == "seconds":
        return now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of *this* host may still run. Only a process known to be
    gone is dead: one owned by another user, or a pid that is not a positive number, is
    taken as alive (a lock or upload is never stolen on a guess)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:  # no such pid can exist
        return False
    return True


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the renames in folder ``path`` durable. Best effort: not every platform or
    filesystem can open or fsync a folder, and there is nothing better to do then."""
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


def replace(
    temporary: str | os.PathLike[str], final: str | os.PathLike[str], *, durable: bool = True
) -> None:
    """Rename a finished ``temporary`` to ``final`` (same folder), by the fsync rule."""
    if durable:
        fsync_file(temporary)
    os.replace(temporary, final)
    if durable:
        fsync_dir(os.path.dirname(os.path.abspath(final)))


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike[str], *, durable: bool = True) -> Iterator[BinaryIO]:
    """Write ``final`` through a temporary beside it: yields the temporary open for
    binary writing; when the block ends without an exception it is renamed to ``final``
    by the fsync rule, and otherwise removed (``final`` is untouched)."""
    target = os.path.abspath(os.fspath(final))
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.glarelite-{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "xb") as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(folder)
