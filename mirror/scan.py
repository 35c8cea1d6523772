"""The bounded lstat scan of a run that finds nothing else to do: are the blob files the
state records still there with the size and mtime it recorded?

One ``lstat`` per blob, without following a link: each type folder is reached once the
safe way (``LocalDest.open_folder``, no link followed), then each artifact folder (and a
blob dict's folder) is checked to be a real folder before the file in it is checked to be
a regular file. A path from the state is hostile input: a blob path of the common shape
is checked by one pattern, any other by the full rules (``_paths.is_blob_path``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Sequence
from time import monotonic

from ._paths import is_blob_path
from .dest import Dest

_SIMPLE = re.compile(
    r"artifacts/[a-z][a-z0-9_]{0,62}/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[a-z][a-z0-9_]{0,62}\Z"
)


def valid_blob_path(path: object) -> bool:
    """``_paths.is_blob_path``, the common shape by one pattern first."""
    return isinstance(path, str) and (bool(_SIMPLE.match(path)) or is_blob_path(path))


def deadline(seconds: float | None) -> float | None:
    """The ``monotonic()`` time a scan of at most ``seconds`` stops at (None: no bound)."""
    return None if seconds is None else monotonic() + seconds


def unchanged(
    dest: Dest, rows: Sequence[tuple[str, str, int, int]], deadline: float | None = None
) -> int | None:
    """How many of the (path, sha256, size, mtime_ns) rows, from the first, were checked
    and found as recorded: all of them, or fewer when ``deadline`` (see :func:`deadline`)
    passed first; None as soon as one file is missing or changed."""
    open_folder = getattr(dest, "open_folder", None)
    if not dest.local or open_folder is None:
        same = all(dest.stat(path) == (size, mtime) for path, _, size, mtime in rows)
        return len(rows) if same else None
    folders: dict[str, int] = {}
    try:
        for done, (path, _sha, size, mtime) in enumerate(rows):
            if deadline is not None and monotonic() > deadline:
                return done
            if not valid_blob_path(path):
                return None
            parts = path.split("/")
            fd = folders.get(parts[1])
            if fd is None:
                try:
                    fd = folders[parts[1]] = open_folder(f"{parts[0]}/{parts[1]}", create=False)
                except FileNotFoundError:
                    return None
            try:
                for depth in range(3, len(parts)):  # the artifact folder, a blob dict's
                    info = os.stat("/".join(parts[2:depth]), dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISDIR(info.st_mode):
                        return None
                info = os.stat("/".join(parts[2:]), dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISREG(info.st_mode) or (info.st_size, info.st_mtime_ns) != (
                size,
                mtime,
            ):
                return None
        return len(rows)
    finally:
        for fd in folders.values():
            with contextlib.suppress(OSError):
                os.close(fd)
