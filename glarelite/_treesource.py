"""Where a mirror tree is, for its reader: a folder walked without following links, or a
base URL whose requests never leave it; every read bounded in size and time
(:class:`MirrorSettings`). :mod:`glarelite.mirror_reader` builds the read-only catalog on
top; this module only fetches a tree's bytes.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urljoin

from . import _treeread
from ._http import _HEAD, _HTTPPool, _HTTPSPool
from .errors import (
    Forbidden,
    GlareliteError,
    InvalidInput,
    NetworkError,
    NotFound,
    RefusedLocation,
    TooLarge,
    VerificationError,
)
from .settings import MIB, RetryPolicy
from .urls import join_base

_CHUNK = 1 << 20
_INDEX_CHUNK = 64 * 1024  # index reads: small reads, so the deadline is checked often
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


@dataclass(frozen=True)
class MirrorSettings:
    """How :func:`open_mirror` reads a tree; every bound a hostile tree or server could
    otherwise stretch is here.

    ``timeout`` bounds connecting and each read of a socket (http). ``read_deadline``
    bounds, in total, the reading of a tree's indexes by ``open_mirror`` or ``refresh``
    and (format 2) the reading of each bucket or shard file (http; a read under way ends
    at most ``timeout`` later). ``retry`` is how failed
    requests are retried (``Retry-After`` capped at ``retry.max_retry_after``).
    ``max_redirects`` redirects are followed, and only to URLs under the tree's base URL
    — but for an external blob the tree marks as left at its origin (``redirect``), which
    may also be redirected to exactly that recorded origin URL (issue 20).
    ``max_root_index_bytes`` / ``max_index_bytes`` cap the root index and each type index
    (format 1); ``max_bucket_bytes`` / ``max_shard_bytes`` each bucket and shard file
    (format 2; a file is also never read past the size its parent pins).
    ``cache_dir``: a folder where the bucket and shard files of format 2 trees are kept by
    sha256 for later readers (verified on every use, never trusted), at most
    ``cache_max_bytes`` (oldest access evicted first). None (the default): no cache.
    """

    timeout: float = 30.0
    read_deadline: float = 300.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(total=3))
    max_redirects: int = 5
    max_root_index_bytes: int = 16 * MIB
    max_index_bytes: int = 64 * MIB
    max_bucket_bytes: int = 4 * MIB
    max_shard_bytes: int = 64 * MIB
    cache_dir: str | None = None
    cache_max_bytes: int = 1024 * MIB
    ca_certs: str | None = None
    user_agent: str = "glarelite-mirror-reader"

    def __post_init__(self) -> None:
        for name in ("timeout", "read_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInput(f"{name} must be a number of seconds > 0, not {value!r}")
        for name in (
            "max_redirects",
            "max_root_index_bytes",
            "max_index_bytes",
            "max_bucket_bytes",
            "max_shard_bytes",
            "cache_max_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be an integer >= 0, not {value!r}")
        if self.cache_dir is not None:
            if isinstance(self.cache_dir, os.PathLike):
                object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
            if (
                not isinstance(self.cache_dir, str)
                or not self.cache_dir
                or "\x00" in self.cache_dir
            ):
                raise InvalidInput(f"cache_dir must be a folder path, not {self.cache_dir!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidInput("retry must be a glarelite.RetryPolicy")
        agent = self.user_agent
        if not isinstance(agent, str) or not agent.isprintable() or not agent.isascii():
            raise InvalidInput(f"user_agent must be printable ASCII, not {agent!r}")


# -- where the tree is ---------------------------------------------------------------------
class _Source:
    where: str

    def read(self, path: str, limit: int, deadline: float, immutable: bool = False) -> bytes:
        """A small file's bytes; NotFound when absent, TooLarge past ``limit`` bytes
        (having read at most ``limit + 1``), NetworkError past ``deadline`` (monotonic).
        ``immutable``: a content-addressed file, which any cache on the way may serve."""
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

    def read(self, path: str, limit: int, deadline: float, immutable: bool = False) -> bytes:
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

    def read(self, path: str, limit: int, deadline: float, immutable: bool = False) -> bytes:
        import urllib3

        # A mutable index (the root) is asked fresh past any cache; a content-addressed
        # bucket or shard may come from any cache: its name is its hash, verified anyway.
        headers = {} if immutable else {"Cache-Control": "no-cache"}
        resp = self._get(path, headers, deadline)
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
