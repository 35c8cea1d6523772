"""Reading a mirror tree at a disconnected site: a read-only catalog over the tree's
indexes, local or served over http(s).

``open_mirror`` reads the root index and one index per type (1 + types requests), checks
each type index against the sha256 the root index records (a tree read in the middle of
a publish is read again), and loads the show views into an in-memory SQLite database
with the catalog's own schema. Listing then runs the catalog's own query code
(``glarelite._query``), so filters, sort, ``latest`` and paging behave exactly as on the
catalog. Blob reads verify size and sha256 while streaming; a blob missing from the tree
or holding other bytes raises an error that names its path.

A tree is hostile until proven: its indexes are validated strictly
(``glarelite._treeread``) before a name from them makes a path, a local tree is walked
without following links, and over http every request stays under the base URL, is never
decompressed, and index reads are bounded in size and time (:class:`MirrorSettings`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import math
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, cast
from urllib.parse import unquote, urljoin

from . import _listing, _treeread, tree
from ._blobread import save_atomically
from ._db import Database
from ._http import _HEAD, _HTTPPool, _HTTPSPool
from ._trust import Trust
from ._values import prop_rows
from .errors import (
    Forbidden,
    GlareliteError,
    InvalidInput,
    NetworkError,
    NotFound,
    ReadOnly,
    RefusedLocation,
    TooLarge,
    VerificationError,
)
from .models import Artifact, Blob, Page
from .progress import Progress
from .settings import MIB, RetryPolicy
from .types import ArtifactType
from .urls import join_base

__all__ = ["MirrorCatalog", "MirrorSettings", "TreeFiles", "open_mirror", "open_tree_files"]

_CHUNK = 1 << 20
_INDEX_CHUNK = 64 * 1024  # index reads: small reads, so the deadline is checked often
_LOAD_ATTEMPTS = 5  # a publish in progress settles within a few rounds
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


@dataclass(frozen=True)
class MirrorSettings:
    """How :func:`open_mirror` reads a tree; every bound a hostile tree or server could
    otherwise stretch is here.

    ``timeout`` bounds connecting and each read of a socket (http). ``read_deadline``
    bounds, in total, the reading of a tree's indexes by ``open_mirror`` or ``refresh``
    (http; a read under way ends at most ``timeout`` later). ``retry`` is how failed
    requests are retried (``Retry-After`` capped at ``retry.max_retry_after``).
    ``max_redirects`` redirects are followed, and only to URLs under the tree's base URL
    — but for an external blob the tree marks as left at its origin (``redirect``), which
    may also be redirected to exactly that recorded origin URL (issue 20).
    ``max_root_index_bytes`` / ``max_index_bytes`` cap the root index and each type index.
    """

    timeout: float = 30.0
    read_deadline: float = 300.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(total=3))
    max_redirects: int = 5
    max_root_index_bytes: int = 16 * MIB
    max_index_bytes: int = 64 * MIB
    ca_certs: str | None = None
    user_agent: str = "glarelite-mirror-reader"

    def __post_init__(self) -> None:
        for name in ("timeout", "read_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInput(f"{name} must be a number of seconds > 0, not {value!r}")
        for name in ("max_redirects", "max_root_index_bytes", "max_index_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be an integer >= 0, not {value!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidInput("retry must be a glarelite.RetryPolicy")
        agent = self.user_agent
        if not isinstance(agent, str) or not agent.isprintable() or not agent.isascii():
            raise InvalidInput(f"user_agent must be printable ASCII, not {agent!r}")


# -- where the tree is ---------------------------------------------------------------------
class _Source:
    where: str

    def read(self, path: str, limit: int, deadline: float) -> bytes:
        """A small file's bytes; NotFound when absent, TooLarge past ``limit`` bytes
        (having read at most ``limit + 1``), NetworkError past ``deadline`` (monotonic)."""
        raise NotImplementedError

    def open(self, path: str, offset: int, length: int | None) -> IO[bytes]:
        """A raw stream of the file from ``offset``; NotFound when absent."""
        raise NotImplementedError

    def url(self, path: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        return None


def _missing(where: str, path: str) -> NotFound:
    return NotFound(
        f"mirror tree {where} has no {path}: the tree is incomplete "
        "(check it with glarelite mirror --check)"
    )


def _too_large(where: str, path: str, limit: int) -> TooLarge:
    return TooLarge(f"mirror tree {where}: {path} is larger than {limit} bytes; refused")


class _LocalSource(_Source):
    """A tree in a folder. Files are opened by walking from the root with openat, no
    component followed if it is a symlink, and only regular files are read: a link
    planted in a tree cannot make the reader serve a file from elsewhere."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()
        self.where = str(self.root)

    def _open_fd(self, path: str) -> int:
        parts = _treeread.check_segments(path)
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise _missing(self.where, path) from None
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                # O_NONBLOCK: opening a FIFO planted in the tree must not wait for a writer.
                kind = os.O_NONBLOCK if last else os.O_DIRECTORY
                flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | kind
                try:
                    child = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    raise self._refusal(exc, fd, part, "/".join(parts[: i + 1])) from None
                os.close(fd)
                fd = child
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise VerificationError(
                    f"mirror tree {self.where}: {path} is not a regular file; refused"
                )
            os.set_blocking(fd, True)
            opened, fd = fd, -1
            return opened
        finally:
            if fd >= 0:
                os.close(fd)

    def _refusal(self, exc: OSError, dir_fd: int, name: str, shown: str) -> GlareliteError:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link or exc.errno == errno.ELOOP:
            return VerificationError(
                f"mirror tree {self.where}: {shown} is a symbolic link; a tree's files and "
                "folders are never followed through links"
            )
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return _missing(self.where, shown)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return Forbidden(f"mirror tree {self.where}: cannot read {shown}: {exc.strerror}")
        return VerificationError(f"mirror tree {self.where}: cannot read {shown}: {exc.strerror}")

    def read(self, path: str, limit: int, deadline: float) -> bytes:
        fd = self._open_fd(path)
        try:
            if os.fstat(fd).st_size > limit:  # refused before reading a byte
                raise _too_large(self.where, path, limit)
            chunks: list[bytes] = []
            got = 0
            while got <= limit:  # the file may grow while we read it
                data = os.read(fd, min(_CHUNK, limit + 1 - got))
                if not data:
                    break
                chunks.append(data)
                got += len(data)
        except OSError as exc:
            raise VerificationError(
                f"mirror tree {self.where}: cannot read {path}: {exc.strerror}"
            ) from None
        finally:
            os.close(fd)
        if got > limit:
            raise _too_large(self.where, path, limit)
        return b"".join(chunks)

    def open(self, path: str, offset: int, length: int | None) -> IO[bytes]:
        f = os.fdopen(self._open_fd(path), "rb")
        if offset:
            f.seek(offset)
        return f

    def url(self, path: str) -> str:
        return self.root.joinpath(*_treeread.check_segments(path)).as_uri()


class _HttpBody:
    """A urllib3 response as a raw file: ``read`` and ``close`` (which frees the socket).
    A failure mid-body (a reset, a body cut short) is a NetworkError, never urllib3's own."""

    def __init__(self, response: Any, skip: int, url: str) -> None:
        self._response = response
        self._url = url
        # A server that ignored our Range sent the whole body: drop the leading bytes.
        while skip > 0:
            data = self.read(min(skip, _CHUNK))
            if not data:
                break
            skip -= len(data)

    def read(self, n: int = -1) -> bytes:
        import urllib3

        amount = n if n is not None and n >= 0 else None
        try:
            return cast(bytes, self._response.read(amount, decode_content=False))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise NetworkError(f"GET {self._url}: the body failed mid-way: {exc}") from None

    def close(self) -> None:
        self._response.close()
        self._response.release_conn()


class _HttpSource(_Source):
    """A tree served over http(s). Every request stays under the base URL: paths are
    built from validated names, and a redirect is followed only to a URL under the base
    (same scheme, host and port, path below the base's)."""

    def __init__(self, base_url: str, settings: MirrorSettings) -> None:
        import urllib3

        try:
            parsed = urllib3.util.parse_url(base_url)
        except urllib3.exceptions.LocationParseError as exc:
            raise InvalidInput(f"not a mirror tree URL: {base_url!r}: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidInput(f"a mirror tree URL is http(s)://host/path, not {base_url!r}")
        if parsed.query is not None or parsed.fragment is not None:
            raise InvalidInput(f"a mirror tree URL has no query or fragment: {base_url!r}")
        self.settings = settings
        self.base = base_url.rstrip("/")
        self.where = self.base
        self._origin = _origin_of(parsed)
        self._prefix = (parsed.path or "").rstrip("/") + "/"
        policy = settings.retry
        self._retry = urllib3.Retry(
            total=policy.total,
            backoff_factor=policy.backoff_factor,
            backoff_max=policy.backoff_max,
            backoff_jitter=policy.jitter,
            status_forcelist=policy.status_forcelist,
            allowed_methods=("GET", "HEAD"),
            raise_on_status=False,
            raise_on_redirect=False,
            respect_retry_after_header=policy.respect_retry_after,
            retry_after_max=math.ceil(policy.max_retry_after),
        )
        self._pool = urllib3.PoolManager(
            ca_certs=settings.ca_certs,
            retries=self._retry,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "identity"},
        )
        # The fetcher's connections: a watchdog cuts a response head (status line,
        # headers, 100 Continues) still arriving at the deadline; http.client would read
        # one sent at a trickle with a per-read timeout only, for hours.
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def url(self, path: str) -> str:
        # quoted once (join_base): a static server decodes the request line, and the file of
        # an encoded key is named with its '%' escapes
        return join_base(self.base, "/".join(_treeread.check_segments(path)))

    def _under_base(self, url: str) -> bool:
        import urllib3

        try:
            parsed = urllib3.util.parse_url(url)
        except urllib3.exceptions.LocationParseError:
            return False
        path = parsed.path or "/"
        plain = unquote(path)
        return (
            _origin_of(parsed) == self._origin
            and path.startswith(self._prefix)
            and plain.startswith(self._prefix)
            and not any(seg in (".", "..") for seg in plain.split("/"))
            and "\\" not in plain
            and "\x00" not in plain
        )

    def _get(
        self, path: str, headers: Mapping[str, str], deadline: float, redirect: str | None = None
    ) -> Any:
        """GET a tree file, following redirects under the base; ``redirect``: the origin
        URL the index records for a blob left there, the one URL off the base allowed."""
        import urllib3

        url = self.url(path)
        for _hop in range(self.settings.max_redirects + 1):
            wait = min(self.settings.timeout, _remaining(deadline, url))
            # a blob's body has no total deadline (its reader sets the pace), its head does
            head_by = min(deadline, time.monotonic() + self.settings.read_deadline)
            _HEAD.at = head_by
            try:
                resp = self._pool.request(
                    "GET",
                    url,
                    headers=dict(headers),
                    preload_content=False,
                    decode_content=False,
                    redirect=False,
                    timeout=urllib3.Timeout(connect=wait, read=wait),
                )
            except urllib3.exceptions.HTTPError as exc:
                if time.monotonic() >= head_by:
                    raise NetworkError(
                        f"GET {url}: the response head did not arrive before the deadline "
                        f"({self.settings.read_deadline:g} s)"
                    ) from None
                raise NetworkError(f"GET {url}: {exc}") from None
            finally:
                _HEAD.at = None
            if resp.status not in _REDIRECTS:
                break
            location = resp.headers.get("Location")
            resp.close()
            target = urljoin(url, location) if location else ""
            if target and redirect is not None and target == redirect:
                url = target  # exactly the recorded origin: the bytes are still verified
                continue
            if target and redirect is not None and not self._under_base(target):
                raise RefusedLocation(
                    f"GET {url}: redirected to {str(location)[:200]!r}, which is not the "
                    f"recorded origin {redirect[:200]!r} of this external blob; refused"
                )
            if not target or not self._under_base(target):
                raise RefusedLocation(
                    f"GET {url}: redirected to {str(location)[:200]!r}, outside the mirror "
                    f"tree at {self.base}; refused (a tree's files come from under its base URL)"
                )
            url = target
        else:
            raise NetworkError(
                f"GET {self.url(path)}: more than {self.settings.max_redirects} redirects"
            )
        if resp.status == 404:
            resp.close()
            raise _missing(self.where, path)
        if resp.status not in (200, 206):
            resp.close()
            raise NetworkError(f"GET {url}: HTTP {resp.status}")
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            # Never inflate: a small compressed body can expand to gigabytes.
            resp.close()
            raise NetworkError(
                f"GET {url}: served with Content-Encoding {encoding[:40]!r} although identity "
                "was asked for; refused"
            )
        return resp

    def read(self, path: str, limit: int, deadline: float) -> bytes:
        import urllib3

        resp = self._get(path, {"Cache-Control": "no-cache"}, deadline)
        url = self.url(path)
        try:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(self.where, path, limit)
            chunks: list[bytes] = []
            got = 0
            while got <= limit:
                _remaining(deadline, url)
                data = resp.read1(min(_INDEX_CHUNK, limit + 1 - got), decode_content=False)
                if not data:
                    break
                chunks.append(data)
                got += len(data)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            resp.close()
            raise NetworkError(f"GET {url}: {exc}") from None
        except BaseException:
            resp.close()
            raise
        if got > limit:
            resp.close()
            raise _too_large(self.where, path, limit)
        resp.release_conn()
        return b"".join(chunks)

    def open(
        self, path: str, offset: int, length: int | None, redirect: str | None = None
    ) -> IO[bytes]:
        headers: dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            if length != 0:
                headers["Range"] = f"bytes={offset}-{end}"
        resp = self._get(path, headers, math.inf, redirect)
        skip = offset if resp.status == 200 else 0
        if resp.status == 206 and not _range_starts_at(resp.headers.get("Content-Range"), offset):
            resp.close()
            raise NetworkError(
                f"GET {self.url(path)}: the server answered another range than bytes {offset}-"
            )
        return cast(IO[bytes], _HttpBody(resp, skip, self.url(path)))

    def close(self) -> None:
        self._pool.clear()


def _origin_of(parsed: Any) -> tuple[str, str, int]:
    scheme = (parsed.scheme or "").lower()
    port = parsed.port or (443 if scheme == "https" else 80)
    return scheme, (parsed.host or "").lower(), port


def _range_starts_at(value: str | None, offset: int) -> bool:
    """``Content-Range: bytes <offset>-<end>/<size>`` starts where we asked."""
    if not value or not value.startswith("bytes "):
        return False
    first = value[6:].partition("-")[0].strip()
    return first.isdigit() and int(first) == offset


def _remaining(deadline: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise NetworkError(
            f"GET {url}: reading the mirror tree's indexes took longer than its deadline; "
            "given up (a slow or stalling server; see MirrorSettings.read_deadline)"
        )
    return left


# -- the read-only catalog -----------------------------------------------------------------
class MirrorCatalog:
    """A read-only catalog over a mirror tree. Lists and gets artifacts like
    ``glarelite.Catalog`` (same filters, sort, ``latest`` and paging) and reads blobs
    verified; every write raises glarelite.ReadOnly."""

    def __init__(
        self, source: _Source, settings: MirrorSettings | None = None, trust: Trust | None = None
    ) -> None:
        self._source = source
        self._settings = settings or MirrorSettings()
        self._trust = trust
        self._db: Database | None = None
        self._artifacts: dict[str, Artifact] = {}
        self._types: dict[str, ArtifactType] = {}
        self.root = tree.RootIndex(generation=0, generated_at="")
        self.refresh()

    # -- lifetime ---------------------------------------------------------------------
    def __enter__(self) -> MirrorCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._source.close()

    @property
    def location(self) -> str:
        return self._source.where

    @property
    def path(self) -> str:
        """Where the tree is (as ``Catalog.path``: a tree can be mirrored onwards)."""
        return self._source.where

    @property
    def generation(self) -> int:
        return self.root.generation

    def refresh(self) -> None:
        """Read the tree's indexes again (after the site received a newer tree)."""
        root, types, loaded = self._read_indexes()
        db = Database(":memory:")
        artifacts: dict[str, Artifact] = {}
        where = tree.ROOT_INDEX
        try:
            with db.write() as conn:
                for atype in types.values():
                    conn.execute(
                        "INSERT INTO artifact_types (name, definition, created_at)"
                        " VALUES (?, ?, ?)",
                        (atype.name, atype.dumps(), root.generated_at),
                    )
                for item in loaded:
                    artifact = item.artifact
                    where = f"{tree.type_index_path(artifact.type_name)}: artifact {artifact.id}"
                    artifacts[artifact.id] = artifact
                    _insert(conn, item, types[artifact.type_name])
        except (sqlite3.Error, UnicodeError, ValueError) as exc:
            # Validation lets nothing through that the schema refuses (text that is not
            # Unicode, say); should it, the tree is still at fault, not the caller.
            db.close()
            raise InvalidInput(
                f"mirror tree {self._source.where}: {where} cannot be loaded: {exc}"
            ) from None
        except BaseException:
            db.close()
            raise
        old, self._db = self._db, db
        self.root, self._types, self._artifacts = root, types, artifacts
        if old is not None:
            old.close()

    def _read_indexes(
        self,
    ) -> tuple[tree.RootIndex, dict[str, ArtifactType], list[_treeread.Loaded]]:
        """Every index of the tree, validated; InvalidInput names the file at fault."""
        where = self._source.where
        try:
            return self._read_indexes_once()
        except InvalidInput as exc:
            if str(exc).startswith("mirror tree "):
                raise
            raise type(exc)(f"mirror tree {where}: {exc}") from None

    def _read_indexes_once(
        self,
    ) -> tuple[tree.RootIndex, dict[str, ArtifactType], list[_treeread.Loaded]]:
        settings = self._settings
        deadline = time.monotonic() + settings.read_deadline
        problem = ""
        for attempt in range(_LOAD_ATTEMPTS):
            try:
                raw = self._read_root(deadline)
            except NotFound:
                raise NotFound(
                    f"no mirror tree at {self._source.where}: {tree.ROOT_INDEX} is missing"
                ) from None
            root = tree.RootIndex.from_dict(_json(raw, tree.ROOT_INDEX))
            types = {
                n: _treeread.read_definition(n, e.definition, tree.ROOT_INDEX)
                for n, e in root.types.items()
            }
            loaded: list[_treeread.Loaded] = []
            seen: dict[str, str] = {}  # artifact id -> the index that listed it
            for type_name, entry in root.types.items():
                path = tree.type_index_path(type_name)
                if entry.index_size > settings.max_index_bytes:
                    raise _too_large(self._source.where, path, settings.max_index_bytes)
                try:  # never more than the root says it holds (+1 byte to see it is more)
                    data: bytes | None = self._source.read(path, entry.index_size, deadline)
                except TooLarge:
                    data = None
                if data is None or (len(data), hashlib.sha256(data).hexdigest()) != (
                    entry.index_size,
                    entry.index_sha256,
                ):
                    problem = f"{path} is not the one {tree.ROOT_INDEX} publishes"
                    break
                atype = types[type_name]
                for show in tree.check_type_index(_json(data, path), type_name):
                    item = _treeread.read_show(show, atype, path)
                    artifact = item.artifact
                    if artifact.id in seen:
                        raise InvalidInput(
                            f"{path}: artifact {artifact.id} is listed twice "
                            f"(also in {seen[artifact.id]})"
                        )
                    seen[artifact.id] = path
                    loaded.append(item)
            else:
                return root, types, loaded
            if attempt + 1 < _LOAD_ATTEMPTS:  # a sync is publishing: let it finish
                time.sleep(min(0.1 * (attempt + 1), max(0.0, deadline - time.monotonic())))
        raise VerificationError(
            f"mirror tree {self._source.where}: {problem} (read {_LOAD_ATTEMPTS} times); a sync "
            "may still be publishing, or the tree is damaged (check it)"
        )

    def _read_root(self, deadline: float) -> bytes:
        """The root index bytes: from index.signed.json, verified, when keys are trusted
        (read under the same bounds: the signed file holds the root, escaped, and its
        signatures)."""
        limit = self._settings.max_root_index_bytes
        if self._trust is None:
            return self._source.read(tree.ROOT_INDEX, limit, deadline)
        return self._trust.load_root(
            lambda p: io.BytesIO(self._source.read(p, 2 * limit + (1 << 16), deadline)),
            self.location,
        )

    def _conn(self) -> Database:
        if self._db is None:
            raise InvalidInput("this mirror catalog is closed")
        return self._db

    # -- reads (as on Catalog) -------------------------------------------------------------
    def types(self) -> list[ArtifactType]:
        return [self._types[n] for n in sorted(self._types)]

    def get_type(self, name: str) -> ArtifactType:
        atype = self._types.get(name)
        if atype is None:
            raise NotFound(f"no artifact type {name!r} in the mirror tree {self.location}")
        return atype

    def get(self, artifact_id: str) -> Artifact:
        artifact = self._artifacts.get(artifact_id) if isinstance(artifact_id, str) else None
        if artifact is None:
            raise NotFound(f"no artifact {artifact_id} in the mirror tree {self.location}")
        return artifact

    def list(
        self,
        type_name: str | None = None,
        *,
        filters: Sequence[str | tuple[str, str]] | Mapping[str, Any] = (),
        sort: str | Sequence[str] | None = None,
        limit: int | None = None,
        marker: str | None = None,
        latest: bool = False,
    ) -> Page:
        """A page of artifacts; the same semantics as ``Catalog.list`` (admin scope)."""
        atype = self.get_type(type_name) if type_name is not None else None
        return _listing.page(
            self._conn(),
            lambda _conn, rows: [self._artifacts[r[0]] for r in rows],
            type_name=type_name,
            atype=atype,
            owner=None,
            filters=filters,
            sort=sort,
            limit=limit,
            marker=marker,
            latest=latest,
        )

    def iter_all(self, type_name: str | None = None, **kwargs: Any) -> Iterator[Artifact]:
        return _listing.iter_all(self.list, type_name, **kwargs)

    def _blob(self, artifact_id: str, slot: str) -> Blob:
        blob = self.get(artifact_id).blob(slot)
        if blob is None:
            raise NotFound(f"artifact {artifact_id} has no blob {slot}")
        if blob.sha256 is None or blob.size is None:
            raise NotFound(f"blob {slot} of {artifact_id} has no recorded checksum")
        return blob

    def open_blob(
        self, artifact_id: str, slot: str, *, offset: int | None = None, length: int | None = None
    ) -> BinaryIO:
        """The blob's bytes from the tree. A whole read verifies size and sha256
        (ChecksumMismatch naming the file otherwise); a blob absent from the tree raises
        NotFound naming its path."""
        from ._verify import VerifyingReader

        blob = self._blob(artifact_id, slot)
        size = blob.size or 0
        start, count = _range(offset, length, size)
        path = blob.url.lstrip("/")
        if blob.redirect is not None and not isinstance(self._source, _HttpSource):
            # Only a web server with the tree's redirect rules answers for this blob.
            raise NotFound(
                f"blob {slot} of {artifact_id} is not in the mirror tree {self.location}: it "
                f"was left at its origin {blob.redirect[:200]!r} (mirror --externals=redirect); "
                "read the tree through its web server, which redirects there"
            )
        if isinstance(self._source, _HttpSource):
            raw = self._source.open(path, start, count, blob.redirect)
        else:
            raw = self._source.open(path, start, count)
        reader = VerifyingReader(
            raw,
            size=size,
            sha256=blob.sha256 or "",
            offset=start,
            length=count,
            name=self._source.url(path),
        )
        return cast(BinaryIO, reader)

    def open_blobs(
        self, slots: Iterable[tuple[str, str]]
    ) -> Generator[tuple[str, str, Callable[[], BinaryIO]], None, None]:
        """As :meth:`Catalog.open_blobs`: ``(artifact_id, slot, open)`` in the order given,
        each ``open()`` being :meth:`open_blob` (a tree's files need no pipelining)."""
        for artifact_id, slot in slots:
            yield artifact_id, slot, functools.partial(self.open_blob, artifact_id, slot)

    def download(
        self,
        artifact_id: str,
        slot: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Blob:
        """Write a blob to ``dest`` atomically, verified."""
        blob = self._blob(artifact_id, slot)
        save_atomically(
            lambda: self.open_blob(artifact_id, slot),
            dest,
            task=f"download {artifact_id}/{slot}",
            description=f"download {slot}",
            size=blob.size,
            progress=progress,
        )
        return blob

    def blob_url(self, artifact_id: str, slot: str) -> str:
        """Where the blob's bytes are: the tree's URL for it (file:// for a local tree)."""
        return self._source.url(self._blob(artifact_id, slot).url.lstrip("/"))

    # -- writes: refused -------------------------------------------------------------------
    def _read_only(self, what: str) -> NoReturn:
        raise ReadOnly(
            f"cannot {what}: {self.location} is a mirror tree, read-only; "
            "change the catalog it was mirrored from and mirror it again"
        )

    def define_type(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("define a type")

    def create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("create an artifact")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("update an artifact")

    def publish(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("publish an artifact")

    def activate(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("activate an artifact")

    def deactivate(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("deactivate an artifact")

    def reactivate(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("reactivate an artifact")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("delete an artifact")

    def upload(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("upload a blob")

    def add_location(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("add an external location")

    def remove_blob(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("remove a blob")

    def set_quota(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("set a quota")

    def check(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("re-validate external blobs (check the tree with mirror.check_tree)")

    def gc(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("collect garbage")


def _json(raw: bytes, path: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise InvalidInput(f"{path} is not a mirror index: JSON nested too deeply") from None


def _insert(conn: Any, item: _treeread.Loaded, atype: ArtifactType) -> None:
    """The catalog's rows for one artifact (no blob rows: listing never filters on them)."""
    artifact, version_key = item.artifact, item.version_key
    conn.execute(
        "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility,"
        " status, description, tags, properties, created_at, updated_at, activated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            artifact.id,
            artifact.type_name,
            artifact.name,
            artifact.version,
            version_key,
            artifact.owner,
            artifact.visibility,
            artifact.status,
            artifact.description,
            json.dumps(sorted(artifact.tags)),
            json.dumps(dict(artifact.properties), sort_keys=True),
            artifact.created_at,
            artifact.updated_at,
            artifact.activated_at,
        ),
    )
    if artifact.tags:
        conn.executemany(
            "INSERT INTO artifact_tags (artifact_id, tag) VALUES (?, ?)",
            [(artifact.id, t) for t in sorted(set(artifact.tags))],
        )
    rows = prop_rows(artifact.id, atype, item.props)
    if rows:
        conn.executemany(
            "INSERT INTO artifact_props (artifact_id, name, key, position, value)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )


def _range(offset: int | None, length: int | None, size: int) -> tuple[int, int | None]:
    start = 0 if offset is None else offset
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InvalidInput(f"offset must be a non-negative integer, not {offset!r}")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 0
    ):
        raise InvalidInput(f"length must be a non-negative integer, not {length!r}")
    if start > size:
        raise InvalidInput(f"offset {start} is past the end of the blob ({size} bytes)")
    if offset is None and length is None:
        return 0, None
    return start, size - start if length is None else min(length, size - start)


def open_mirror(
    location: str | os.PathLike[str],
    *,
    ca_certs: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    settings: MirrorSettings | None = None,
    trusted_keys: Iterable[Any] | None = None,
    seen_file: str | os.PathLike[str] | None = None,
) -> MirrorCatalog:
    """A read-only catalog over the mirror tree at ``location``: a folder, a ``file://``
    URL or an http(s) URL where a static web server serves the tree.

    ``settings`` bounds everything (see :class:`MirrorSettings`); ``ca_certs``,
    ``timeout`` and ``retries`` (retries of a request), when given, replace its values.

    With ``trusted_keys`` (public keys, ``.pub`` files or base64 text; see
    ``glarelite.signing``) only a tree whose ``index.signed.json`` is signed by one of
    them is read, and its root is taken from that file; ``seen_file`` records the
    highest generation seen per tree so that an older one is refused (SignatureError)."""
    settings = settings if settings is not None else MirrorSettings()
    if not isinstance(settings, MirrorSettings):
        raise InvalidInput("settings must be a glarelite.MirrorSettings")
    if ca_certs is not None:
        settings = replace(settings, ca_certs=ca_certs)
    if timeout is not None:
        settings = replace(settings, timeout=timeout)
    if retries is not None:
        settings = replace(settings, retry=replace(settings.retry, total=retries))
    text = os.fspath(location)
    trust = Trust.build(trusted_keys, seen_file)
    if text.startswith(("http://", "https://")):
        return MirrorCatalog(_HttpSource(text, settings), settings, trust)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise InvalidInput(f"a mirror tree is a folder or an http(s) URL, not {text!r}")
    return MirrorCatalog(_LocalSource(text), settings, trust)


class TreeFiles:
    """The files of a tree, raw, under the reader's rules (paths of plain names only, no
    link followed, requests only under the base URL, bounded sizes and time): what a
    mirror of a tree copies verbatim. Nothing here is parsed or trusted; verify it."""

    def __init__(self, source: _Source, settings: MirrorSettings) -> None:
        self._source = source
        self.settings = settings

    def __enter__(self) -> TreeFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        return self._source.where

    def read(self, path: str, limit: int | None = None) -> bytes:
        """A small file (an index) whole: NotFound when absent, TooLarge past ``limit``
        (default ``settings.max_index_bytes``), NetworkError past ``read_deadline``."""
        cap = self.settings.max_index_bytes if limit is None else limit
        deadline = time.monotonic() + self.settings.read_deadline
        return self._source.read(path, cap, deadline)

    def open(self, path: str) -> IO[bytes]:
        """A raw stream of a file (unverified: hash what you read)."""
        return self._source.open(path, 0, None)

    def close(self) -> None:
        self._source.close()


def open_tree_files(
    location: str | os.PathLike[str], *, settings: MirrorSettings | None = None
) -> TreeFiles:
    """Raw access to the files of the tree at ``location`` (a folder, ``file://`` or
    http(s) URL), read as :func:`open_mirror` reads them."""
    settings = settings if settings is not None else MirrorSettings()
    if not isinstance(settings, MirrorSettings):
        raise InvalidInput("settings must be a glarelite.MirrorSettings")
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return TreeFiles(_HttpSource(text, settings), settings)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise InvalidInput(f"a mirror tree is a folder or an http(s) URL, not {text!r}")
    return TreeFiles(_LocalSource(text), settings)
