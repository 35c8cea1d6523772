"""Where a tree is written: a local folder (os calls: O_EXCL temporaries, fsync, rename,
hard links) or any other fsspec URL (a temporary object, then a server-side move).

Every write goes through a temporary beside its final path whose name no tree path can
have (see ``glarelite.tree.temporary_name``); the final path only ever appears whole.

Small files may be committed *deferred* (group commit): the temporary is written and
closed, and ``flush`` later makes a whole batch durable with one ``syncfs`` before
renaming each into place. Thousands of 4 KiB blobs then cost one flush instead of
thousands of fsyncs, with the same guarantee: data is durable before its final name
exists, and ``sync_dirs`` makes the names durable before any index names them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import mmap
import os
import posixpath
import re
import stat
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, cast

from glarelite import DestinationError, InvalidInput, tree
from glarelite.fsutil import HOST, pid_alive

_CHUNK = 1 << 20


# Temporary names: a random prefix per process (a reused pid cannot collide with what a
# killed run left) and a counter (uuid4 per file measured ~5% of a many-small-blob run).
_PREFIX = uuid.uuid4().hex[:8]
_COUNTER = itertools.count()


def _token() -> str:
    return f"{_PREFIX}{next(_COUNTER):08x}"


def temp_path(path: str) -> str:
    """A unique temporary path beside ``path`` (relative, '/'-separated)."""
    folder, _, name = path.rpartition("/")
    tmp = tree.temporary_name(name, HOST, os.getpid(), _token())
    return f"{folder}/{tmp}" if folder else tmp


class Temp:
    """A temporary being written; ``commit`` makes it the final path, ``discard`` drops it."""

    path: str  # the final path (relative to the tree root)
    temp: str = ""  # where the bytes are until commit (relative; "" where not a file)
    random_access: bool = False  # pwrite/pread/preallocate available

    def write(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        raise NotImplementedError

    def preadinto(self, buffer: bytearray | memoryview, offset: int) -> int:
        raise NotImplementedError

    def preallocate(self, size: int) -> None:
        return None

    def hash_range(self, h: Any, offset: int, length: int, buffer: memoryview) -> None:
        """Feed bytes ``offset .. offset+length`` of the temporary to hash ``h``."""
        end = offset + length
        while offset < end:
            got = self.preadinto(buffer[: min(len(buffer), end - offset)], offset)
            if got <= 0:
                raise OSError(f"short read of the temporary for {self.path}")
            h.update(buffer[:got])
            offset += got

    def start_writeback(self, offset: int, length: int) -> None:
        """Start writing a finished range to disk now (no wait), so that the fsync of
        ``commit`` has only the tail left to wait for."""
        return None

    def commit(self, defer: bool = False) -> tuple[int, int]:
        """Make the temporary the final path (``defer``: at the destination's next
        ``flush``); returns the file's (size, mtime_ns)."""
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError

    def keep(self) -> None:
        """Stop writing but leave the temporary in place (a partial download to resume);
        where that is not possible, discard it."""
        self.discard()


class Dest:
    """The operations the mirror needs from a destination. Paths are relative to the
    tree root and use '/'."""

    url: str
    local: bool = False

    def stat(self, path: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of a file, None when absent (mtime_ns 0 where unknown)."""
        raise NotImplementedError

    def open_read(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes | None:
        """A small file's content (indexes, state), None when absent."""
        try:
            with self.open_read(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def new_temp(self, path: str) -> Temp:
        raise NotImplementedError

    def adopt_temp(self, path: str, existing: str) -> Temp:
        """A temporary for ``path`` continuing the file ``existing`` (local trees only)."""
        raise NotImplementedError

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, defer: bool = False
    ) -> tuple[int, str]:
        """Write ``path`` atomically from ``chunks``; returns (size, sha256)."""
        temp = self.new_temp(path)
        try:
            digest = hashlib.sha256()
            size = 0
            for chunk in chunks:
                temp.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            temp.commit(defer=defer)
        except BaseException:
            temp.discard()
            raise
        return size, digest.hexdigest()

    def link(self, source: str, path: str) -> bool:
        """Make ``path`` hold the same bytes as ``source`` without reading them through
        this process (hard link, server-side copy); False when not possible here."""
        return False

    def delete(self, path: str) -> bool:
        raise NotImplementedError

    def remove_empty_dirs(self, paths: Iterable[str]) -> None:
        return None

    def iter_temporaries(self) -> Iterator[tuple[str, str, int]]:
        """(path, host, pid) of every temporary in the tree (walks the whole tree)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make every deferred commit durable and final."""
        return None

    def sync_dirs(self) -> None:
        """Make the renames so far durable (before an index may name them)."""
        return None

    def close(self) -> None:
        """Release what the destination keeps open (idempotent)."""
        return None


# -- local folders ---------------------------------------------------------------------
# Nothing under the root is reached through a path string: each folder is opened one
# component at a time from the root with O_NOFOLLOW, and files are made, opened,
# renamed and deleted relative to that folder's descriptor. A link planted anywhere
# below the root (by another user, or a race) is refused, never followed. The root
# itself may be a link: the caller chose it.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def _planted(path: str, what: str = "a symbolic link") -> DestinationError:
    error = DestinationError(
        f"refused: {path} is {what}; the mirror never follows a link it did not create "
        "below its destination (remove it, or put the real folder or file there)"
    )
    error.errno = errno.ELOOP
    return error


def _open_regular(name: str, dir_fd: int, flags: int, where: str, mode: int = 0o644) -> int:
    """Open ``name`` in ``dir_fd`` without following a link; refuse anything that is not
    a regular file (a FIFO is opened non-blocking, so it cannot make this wait)."""
    try:
        fd = os.open(name, flags | _NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _planted(where) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _planted(where, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class LocalTemp(Temp):
    random_access = True

    def __init__(self, dest: LocalDest, path: str, existing: str | None = None) -> None:
        self.path = path
        self._dest = dest
        self._folder, _, self._name = path.rpartition("/")
        self._read_fd: int | None = None
        self._fd: int | None = None
        self._dir: int | None = None  # the final path's folder
        self._tdir: int | None = None  # the temporary's, when another one (adopted)
        if existing is not None:  # a partial download left by an earlier run
            self.temp = existing
            temp_folder, _, self._tmpname = existing.rpartition("/")
            try:
                self._dir = dest.open_folder(self._folder, create=True)
                if temp_folder != self._folder:  # the same bytes, once needed elsewhere
                    self._tdir = dest.open_folder(temp_folder, create=False)
                where = dest.abspath(existing)
                fd = _open_regular(self._tmpname, self._temp_dir(), os.O_WRONLY, where)
                if os.fstat(fd).st_nlink != 1:  # a hard link to someone else's file
                    os.close(fd)
                    raise _planted(where, "a file with other names (hard links)")
            except BaseException:
                self._close()
                raise
            self._fd = fd
            return
        self.temp = temp_path(path)
        self._tmpname = self.temp.rpartition("/")[2]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for attempt in (1, 2):
            self._dir = dest.open_folder(self._folder, create=True)
            try:
                self._fd = os.open(self._tmpname, flags | _NOFOLLOW, 0o644, dir_fd=self._dir)
                return
            except FileNotFoundError:  # the folder went away since it was opened
                self._close()
                if attempt == 2:
                    raise
            except BaseException:
                self._close()
                raise

    def _temp_dir(self) -> int:
        folder = self._tdir if self._tdir is not None else self._dir
        if folder is None:
            raise ValueError(f"temporary for {self.path} is closed")
        return folder

    def _wfd(self) -> int:
        if self._fd is None:
            raise ValueError(f"temporary for {self.path} is closed")
        return self._fd

    def _rfd(self) -> int:
        if self._read_fd is None:
            where = self._dest.abspath(self.temp)
            self._read_fd = _open_regular(self._tmpname, self._temp_dir(), os.O_RDONLY, where)
        return self._read_fd

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._wfd(), view)
            view = view[n:]

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._wfd(), view, offset)
            view = view[n:]
            offset += n

    def preadinto(self, buffer: bytearray | memoryview, offset: int) -> int:
        return os.preadv(self._rfd(), [buffer], offset)

    def preallocate(self, size: int) -> None:
        # Reserving the blocks up front measured ~1.5x faster writes on ext4 (bench) and
        # fails early on a full disk; not every file system can do it.
        if size > 0 and hasattr(os, "posix_fallocate"):
            with contextlib.suppress(OSError):
                os.posix_fallocate(self._wfd(), 0, size)

    def hash_range(self, h: Any, offset: int, length: int, buffer: memoryview) -> None:
        # Hash the page cache in place through a window mapping: no copy into a buffer
        # (~0.1 s per GiB here), and the window is unmapped at once, so RSS stays flat.
        read_fd = self._rfd()
        if os.fstat(read_fd).st_size < offset + length or not length:
            super().hash_range(h, offset, length, buffer)  # never map past the end (SIGBUS)
            return
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            mapped = mmap.mmap(
                read_fd, offset + length - aligned, access=mmap.ACCESS_READ, offset=aligned
            )
        except (OSError, ValueError):  # a file system that cannot map (some FUSE mounts)
            super().hash_range(h, offset, length, buffer)
            return
        # The pages were written by this run a moment ago (page cache): a read error
        # through the mapping, which would be a SIGBUS, needs them evicted and unreadable.
        with mapped, memoryview(mapped) as view:
            h.update(view[offset - aligned :])

    def start_writeback(self, offset: int, length: int) -> None:
        if self._dest.fsync and self._fd is not None:
            sync_file_range(self._fd, offset, length)

    def _close(self, folder: bool = True) -> None:
        fds = [self._fd, self._read_fd] + ([self._dir, self._tdir] if folder else [])
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._read_fd = None
        if folder:
            self._dir = self._tdir = None

    def commit(self, defer: bool = False) -> tuple[int, int]:
        fd = self._wfd()
        try:
            info = os.fstat(fd)  # a rename keeps the mtime: this is the final file's
            if defer:
                self._close()
                self._dest.defer(self.path, self.temp)
                return info.st_size, info.st_mtime_ns
            if self._dest.fsync:
                os.fsync(fd)
        finally:
            self._close(folder=False)
        # Both names relative to the folders this temporary was made or found in: a
        # link swapped in for a folder meanwhile is not followed.
        os.replace(self._tmpname, self._name, src_dir_fd=self._temp_dir(), dst_dir_fd=self._dir)
        self._close()
        self._dest.renamed(self._folder)
        return info.st_size, info.st_mtime_ns

    def discard(self) -> None:
        self._close(folder=False)
        try:
            if self._dir is None:  # committed or deferred: remove it by its path
                with contextlib.suppress(OSError):
                    self._dest.delete(self.temp)
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmpname, dir_fd=self._temp_dir())
        finally:
            self._close()

    def keep(self) -> None:
        self._close()


class LocalDest(Dest):
    local = True

    def __init__(self, root: str, *, create: bool, fsync: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self.url = self.root
        if create:
            os.makedirs(self.root, exist_ok=True)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Top folders kept open (relative path -> descriptor), see ``_reach``.
        self._folders: dict[str, int] = {}
        self._caches = [self._folders]  # every cache made, for the finalizer
        self._finalizer = weakref.finalize(self, _close_folders, self._caches)
        # Folders (relative) whose entries changed since the last sync_dirs.
        self._dirty: set[str] = set()
        # Deferred commits: final path -> temporary holding its complete bytes (relative).
        self._pending: dict[str, str] = {}
        self._flushing: dict[str, str] = {}
        if create:
            # Refuse a planted link before the run begins, with the path in the message
            # (every operation below refuses it anyway).
            for top in (tree.ARTIFACTS, tree.STATE_DIR, f"{tree.STATE_DIR}/partial"):
                with contextlib.suppress(FileNotFoundError):
                    os.close(self.open_folder(top, create=False))

    def abspath(self, path: str) -> str:
        """``path`` as a string under the root, for messages (never opened as such)."""
        if not path:
            return self.root
        _check_path(path)
        return f"{self.root}/{path}" if os.sep == "/" else os.path.join(self.root, *path.split("/"))

    def open_folder(self, folder: str, *, create: bool) -> int:
        """A descriptor of ``folder`` (relative, "" the root) reached one component at a
        time from the root without following a link; with ``create`` missing folders are
        made. FileNotFoundError when absent (or a file stands in the way), and
        DestinationError naming the path when a component is a link. The caller closes
        it."""
        if folder:
            _check_path(folder)
        try:
            fd, owned = self._reach(folder, create)
        except FileNotFoundError:
            if not create or not self._folders:
                raise
            # A cached folder was removed behind the run: start again from the root.
            self._forget_folders()
            fd, owned = self._reach(folder, create)
        return fd if owned else os.dup(fd)

    def _reach(self, folder: str, create: bool) -> tuple[int, bool]:
        """(descriptor, whether the caller owns it): the top folders (the root, its
        children and grandchildren: ``artifacts/<type>``) stay open for the life of this
        object, so a blob's folder is one or two ``openat`` away, not five."""
        folders = self._folders
        cached = folders.get(folder)
        if cached is not None:
            return cached, False
        parts = folder.split("/") if folder else []
        depth = min(len(parts), _KEEP_DEPTH)
        done = "/".join(parts[:depth])
        while depth and done not in folders:
            depth -= 1
            done = "/".join(parts[:depth])
        fd = folders.get(done)
        owned = False
        if fd is None:  # the root itself, first use
            fd = os.open(self.root, _DIR_FLAGS)
            owned = True
            if self._keep("", fd):
                owned = False
        try:
            for index in range(depth, len(parts)):
                part = parts[index]
                where = f"{done}/{part}" if done else part
                try:
                    nxt = self._open_child(fd, part, where, create)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                        self.renamed(done)  # the new entry lives in its parent
                    nxt = self._open_child(fd, part, where, create)
                if owned:
                    os.close(fd)
                fd, owned, done = nxt, True, where
                if index < _KEEP_DEPTH and self._keep(where, fd):
                    owned = False
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return fd, owned

    def _keep(self, folder: str, fd: int) -> bool:
        """Cache ``fd`` as ``folder``'s; False when the cache is full or another thread
        cached it first (the caller then keeps and closes its own)."""
        with self._lock:
            if folder in self._folders or len(self._folders) >= _KEEP_MAX:
                return False
            self._folders[folder] = fd
            return True

    def _forget_folders(self) -> None:
        # Another thread may be using one of the old ones right now: they are left to
        # the finalizer rather than closed under it.
        with self._lock:
            self._folders = {}
            self._caches.append(self._folders)

    def close(self) -> None:
        """Close the folders kept open (also done when the object is collected); a
        later operation opens them again."""
        with self._lock:
            _close_folders(self._caches)

    def _open_child(self, fd: int, part: str, where: str, create: bool) -> int:
        try:
            return os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _planted(f"{self.root}/{where}") from None
            if exc.errno != errno.ENOTDIR:
                raise
            try:
                link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                link = False
            if link:
                raise _planted(f"{self.root}/{where}") from None
            if create:
                raise
            # a file where a folder should be: nothing below it exists
            raise FileNotFoundError(errno.ENOENT, "not a folder", where) from None

    def renamed(self, folder: str) -> None:
        with self._lock:
            self._dirty.add(folder)

    def _current(self, path: str) -> str:
        """Where ``path``'s bytes are now: its deferred temporary, else the path."""
        with self._lock:
            return self._pending.get(path) or self._flushing.get(path) or path

    def defer(self, path: str, tmp: str) -> None:
        with self._lock:
            self._pending[path] = tmp

    def stat(self, path: str) -> tuple[int, int] | None:
        current = self._current(path)
        folder, _, name = current.rpartition("/")
        try:
            fd = self.open_folder(folder, create=False)
        except FileNotFoundError:
            return None
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return info.st_size, info.st_mtime_ns

    def open_read(self, path: str) -> BinaryIO:
        current = self._current(path)
        folder, _, name = current.rpartition("/")
        fd = self.open_folder(folder, create=False)
        try:
            file_fd = _open_regular(name, fd, os.O_RDONLY, self.abspath(path))
        except NotADirectoryError:
            raise FileNotFoundError(path) from None
        finally:
            os.close(fd)
        return open(file_fd, "rb")

    def listdir(self, folder: str) -> list[str]:
        """The names in ``folder``; [] when it is absent."""
        try:
            fd = self.open_folder(folder, create=False)
        except FileNotFoundError:
            return []
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def new_temp(self, path: str) -> Temp:
        _check_path(path)
        return LocalTemp(self, path)

    def adopt_temp(self, path: str, existing: str) -> Temp:
        """A temporary for ``path`` continuing the file ``existing`` (a partial download)."""
        _check_path(path)
        _check_path(existing)
        return LocalTemp(self, path, existing)

    def link(self, source: str, path: str) -> bool:
        _check_path(path)
        folder, _, name = path.rpartition("/")
        tmpname = temp_path(path).rpartition("/")[2]
        dst = self.open_folder(folder, create=True)
        try:
            # Under the lock: a flush cannot rename a deferred source away meanwhile.
            with self._lock:
                deferred = self._pending.get(source) or self._flushing.get(source)
                src_folder, _, src_name = (deferred or source).rpartition("/")
                src = self.open_folder(src_folder, create=False)
                try:
                    # follow_symlinks=False: link a link itself, never what it points to
                    os.link(
                        src_name, tmpname, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False
                    )
                except OSError as exc:
                    refused = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)
                    if exc.errno in refused:
                        return False
                    raise
                finally:
                    os.close(src)
                if not stat.S_ISREG(os.stat(tmpname, dir_fd=dst, follow_symlinks=False).st_mode):
                    os.unlink(tmpname, dir_fd=dst)
                    raise _planted(self.abspath(source))
                if deferred:  # the source is not durable yet: neither is this name
                    self._pending[path] = f"{folder}/{tmpname}" if folder else tmpname
                    return True
            try:
                os.replace(tmpname, name, src_dir_fd=dst, dst_dir_fd=dst)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmpname, dir_fd=dst)
                raise
        finally:
            os.close(dst)
        self.renamed(folder)
        return True

    def delete(self, path: str) -> bool:
        folder, _, name = path.rpartition("/")
        try:
            fd = self.open_folder(folder, create=False)
        except FileNotFoundError:
            return False
        try:
            os.unlink(name, dir_fd=fd)  # unlink never follows a link: it removes the link
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)
        self.renamed(folder)
        return True

    def remove_empty_dirs(self, paths: Iterable[str]) -> None:
        """Remove the folders of ``paths`` that are now empty, deepest first, never the
        tree's own top folders; a folder holding anything else stays."""
        keep = {"", tree.ARTIFACTS}
        folders: set[str] = set()
        for p in paths:
            _check_path(p)
            folder = p.rpartition("/")[0]
            while folder not in keep:
                folders.add(folder)
                folder = folder.rpartition("/")[0]
        for folder in sorted(folders, key=len, reverse=True):
            parent, _, name = folder.rpartition("/")
            # not empty (something else lives there), gone, or a planted link: it stays
            with contextlib.suppress(OSError):
                fd = self.open_folder(parent, create=False)
                try:
                    os.rmdir(name, dir_fd=fd)
                finally:
                    os.close(fd)
                self.renamed(parent)

    def iter_temporaries(self) -> Iterator[tuple[str, str, int]]:
        # os.walk does not descend into links; whatever is found is deleted through
        # ``delete``, which refuses a path through a link.
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != tree.STATE_DIR]
            for name in files:
                found = tree.is_temporary_name(name)
                if found:
                    rel = os.path.relpath(os.path.join(folder, name), self.root)
                    yield rel.replace(os.sep, "/"), found[0], found[1]

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._flushing.update(batch)
            if not batch:
                return
            try:
                if self.fsync and not syncfs(self.root):
                    for tmp in batch.values():
                        self._fsync_file(tmp)
                by_folder: dict[tuple[str, str], list[tuple[str, str]]] = {}
                for path, tmp in batch.items():
                    folder, _, name = path.rpartition("/")
                    tmp_folder, _, tmpname = tmp.rpartition("/")
                    by_folder.setdefault((tmp_folder, folder), []).append((tmpname, name))
                with self._lock:
                    for (tmp_folder, folder), renames in by_folder.items():
                        fd = self.open_folder(folder, create=False)
                        try:
                            src = fd
                            if tmp_folder != folder:
                                src = self.open_folder(tmp_folder, create=False)
                            try:
                                for tmpname, name in renames:
                                    os.replace(tmpname, name, src_dir_fd=src, dst_dir_fd=fd)
                            finally:
                                if src != fd:
                                    os.close(src)
                        finally:
                            os.close(fd)
                        self._dirty.add(folder)
                        self._dirty.add(tmp_folder)
            finally:
                with self._lock:
                    for path in batch:
                        self._flushing.pop(path, None)

    def _fsync_file(self, path: str) -> None:
        folder, _, name = path.rpartition("/")
        dir_fd = self.open_folder(folder, create=False)
        try:
            fd = _open_regular(name, dir_fd, os.O_RDONLY, self.abspath(path))
        finally:
            os.close(dir_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_dirs(self) -> None:
        self.flush()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        if not self.fsync or not dirty:
            return
        # Thousands of new artifact folders: one syncfs beats an fsync per folder.
        if len(dirty) > 16 and syncfs(self.root):
            return
        for folder in sorted(dirty, key=len, reverse=True):
            try:
                fd = self.open_folder(folder, create=False)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)


_KEEP_DEPTH = 2  # folders kept open: the root, its children, artifacts/<type>
_KEEP_MAX = 512  # at most this many (one per type, in practice)


def _close_folders(caches: list[dict[str, int]]) -> None:
    for cache in caches:
        for fd in cache.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        cache.clear()


# An empty, '.' or '..' component, or a NUL: never a path inside the tree.
_BAD_PATH = re.compile(r"(?:\A|/)\.{0,2}(?:/|\Z)|\x00")


def _check_path(path: str) -> None:
    """A relative '/'-separated path with no empty, '.' or '..' component."""
    if not isinstance(path, str) or not path or _BAD_PATH.search(path):
        raise InvalidInput(f"not a path inside the tree: {path!r}")


# -- any other fsspec file system ----------------------------------------------------------
class FsspecTemp(Temp):
    def __init__(self, dest: FsspecDest, path: str) -> None:
        self.path = path
        self._dest = dest
        self._tmp = temp_path(path)
        self._file: Any = dest.fs.open(dest.full(self._tmp), "wb")
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._size += len(data)

    def commit(self, defer: bool = False) -> tuple[int, int]:
        self._file.close()
        # An object store has no rename: the final key appears whole by a server-side copy.
        self._dest.fs.mv(self._dest.full(self._tmp), self._dest.full(self.path))
        return self._size, 0

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(Exception):
            self._dest.fs.rm(self._dest.full(self._tmp))


class FsspecDest(Dest):
    def __init__(self, fs: Any, root: str, url: str, *, create: bool) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        if create:
            with contextlib.suppress(Exception):  # object stores have no folders to make
                fs.makedirs(self.root, exist_ok=True)

    def full(self, path: str) -> str:
        if path.startswith("/") or ".." in path.split("/"):
            raise InvalidInput(f"not a path inside the tree: {path!r}")
        return f"{self.root}/{path}" if path else self.root

    def stat(self, path: str) -> tuple[int, int] | None:
        try:
            info = self.fs.info(self.full(path))
        except (FileNotFoundError, OSError):
            return None
        if info.get("type") == "directory":
            return None
        return int(info["size"]), 0

    def open_read(self, path: str) -> BinaryIO:
        full = self.full(path)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(full)
        return cast(BinaryIO, self.fs.open(full, "rb"))

    def new_temp(self, path: str) -> Temp:
        return FsspecTemp(self, path)

    def link(self, source: str, path: str) -> bool:
        try:
            self.fs.copy(self.full(source), self.full(path))
        except (FileNotFoundError, NotImplementedError):
            return False
        return True

    def delete(self, path: str) -> bool:
        try:
            self.fs.rm(self.full(path))
        except FileNotFoundError:
            return False
        return True

    def iter_temporaries(self) -> Iterator[tuple[str, str, int]]:
        try:
            found = self.fs.find(self.root)
        except FileNotFoundError:
            return
        for full in found:
            name = posixpath.basename(full)
            hit = tree.is_temporary_name(name)
            if hit:
                yield full[len(self.root) + 1 :], hit[0], hit[1]


def open_dest(
    url: str, storage_options: Mapping[str, Any] | None, *, create: bool, fsync: bool = True
) -> Dest:
    """A folder path or ``file://`` URL is local; any other URL goes through fsspec.
    ``fsync`` False (local only) skips flushing data before each rename: still safe
    against a killed process, not against power loss."""
    if "://" not in url or url.startswith("file://"):
        path = url[len("file://") :] if url.startswith("file://") else url
        return LocalDest(path, create=create, fsync=fsync)
    from fsspec.core import url_to_fs

    try:
        fs, root = url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:  # the package of that protocol is not installed
        if url.startswith(("s3://", "s3a://")):
            message = (
                f"the mirror tree {url} needs S3 support, which is not installed: "
                "pip install 'glarelite[s3]' (it adds s3fs)"
            )
        else:
            message = f"unusable destination {url!r}: {exc}"
        raise InvalidInput(message) from exc
    except ValueError as exc:  # an unknown protocol
        raise InvalidInput(f"unusable destination {url!r}: {exc}") from exc
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return LocalDest(root, create=create, fsync=fsync)
    return FsspecDest(fs, root, url, create=create)


_SYNCFS: Any = None


def syncfs(folder: str) -> bool:
    """Flush the whole file system holding ``folder`` (Linux ``syncfs``); False when the
    call is not available here."""
    global _SYNCFS
    if _SYNCFS is None:
        try:
            import ctypes

            _SYNCFS = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _SYNCFS = False
    if _SYNCFS is False:
        return False
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bool(_SYNCFS(fd) == 0)
    finally:
        os.close(fd)


_SYNC_FILE_RANGE: Any = None
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback, do not wait


def sync_file_range(fd: int, offset: int, length: int) -> None:
    """Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start writeback of a range
    without waiting for it; nothing where the call does not exist (it is only a hint:
    durability still comes from fsync)."""
    global _SYNC_FILE_RANGE
    if _SYNC_FILE_RANGE is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            _SYNC_FILE_RANGE = fn
        except (OSError, AttributeError):
            _SYNC_FILE_RANGE = False
    if _SYNC_FILE_RANGE is not False:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def temporary_is_abandoned(host: str, pid: int) -> bool:
    """A temporary written by a process of this host that no longer runs."""
    return host == tree.host_label(HOST) and not pid_alive(pid)


def read_chunks(f: BinaryIO, size: int = _CHUNK) -> Iterator[bytes]:
    while data := f.read(size):
        yield data
