"""Fetching external blobs: one urllib3 fetcher, guarded, retrying, resuming.

Every hop of every request is vetted by the location guard (:mod:`._guard`) and the
connection goes to the address the guard vetted, with the original host name in the
Host header, SNI and certificate check. The request loop (redirects, retries, resumes)
is ours, because each redirect hop must pass the guard before any connection is made
and a resume must draw on the same budget as a failed request; the budget itself (its
count, backoff, jitter, Retry-After parsing) is a urllib3 ``Retry``.

Registrations (``register``, ``revalidate``) also have a total deadline that grows with
the bytes received (``HttpSettings.deadline_base`` and ``min_rate``): checked between
reads, and for the response head by a watchdog that shuts the socket down, since
http.client reads a head sent at a trickle (or endless ``100 Continue``) without end.

Content-Encoding: we ask for ``identity``. A server that compresses anyway (gzip) is
taken at its word as raw bytes: nothing is decoded, so the recorded size and sha256 are
those of the bytes served, which is what a later check or mirror copy will see again.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.response import HTTPResponse
from urllib3.util.ssl_match_hostname import CertificateError

from ._guard import ParsedTarget, check_url
from ._hashing import Hasher, parse_sha256
from .errors import ChecksumMismatch, InvalidInput, NetworkError, RefusedLocation, TooLarge
from .settings import HttpSettings, RetryPolicy

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["BodyStream", "Fetcher", "ProgressCallback", "Registration"]

log = logging.getLogger("glarelite.http")

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just received (negative after a restart from zero)."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_OK = frozenset({200, 203})
_CONDITIONAL = ("if-none-match", "if-modified-since")
_OURS = frozenset({"host", "range", "accept-encoding"})  # the fetcher owns these headers
_CROSS_ORIGIN_DROP = frozenset({"authorization", "cookie", "proxy-authorization"})
_SMALL_BODY = 64 * 1024  # error/redirect bodies up to this size are drained to keep the socket
_HASH_QUEUE_DEPTH = 4  # chunks in flight between the socket and the hashing thread
# Whatever can go wrong on the wire once a request is under way.
_TRANSPORT_ERRORS = (Urllib3Error, http.client.HTTPException, OSError)


@dataclass(frozen=True)
class Registration:
    """What registering an external location recorded about its bytes."""

    size: int
    sha256: str  # hex
    etag: str | None
    last_modified: str | None
    final_url: str
    content_type: str | None
    checksums: Mapping[str, str] = field(default_factory=dict)  # extra algorithms asked for


@dataclass(frozen=True)
class _ContentRange:
    start: int
    end: int
    total: int | None


class _Deadline:
    """The total time one registration may take: ``deadline_base`` seconds plus one
    second per ``min_rate`` bytes received (see :class:`HttpSettings`)."""

    def __init__(self, url: str, settings: HttpSettings) -> None:
        self.url = url
        self.base = settings.deadline_base
        self.min_rate = settings.min_rate
        self.start = time.monotonic()
        self.received = 0  # over every attempt: a resume does not start the clock again

    def at(self) -> float:
        """The deadline, in ``time.monotonic()`` seconds."""
        return self.start + self.base + self.received / self.min_rate

    def remaining(self) -> float:
        return self.at() - time.monotonic()

    def error(self, detail: str = "") -> NetworkError:
        elapsed = time.monotonic() - self.start
        return NetworkError(
            f"GET {self.url}: past its deadline after {elapsed:.1f} s and {self.received} "
            f"bytes (a registration may take {self.base:g} s plus 1 s per "
            f"{self.min_rate:g} bytes: HttpSettings deadline_base, min_rate)"
            + (f"; last: {detail}" if detail else "")
        )

    def check(self) -> None:
        if self.remaining() <= 0:
            raise self.error()


# The deadline of the response head being read in this thread (None: untimed). The
# connection classes below arm a watchdog with it: http.client reads a status line and
# headers sent at a trickle, or 100 Continue after 100 Continue, without ever timing out.
_HEAD = threading.local()


def _cut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, not SSLSocket's (which would drop its SSL object
    # under the reading thread): the blocked read sees end-of-file and fails.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _timed_head(sock: socket.socket | None, get: Callable[[], HTTPResponse]) -> HTTPResponse:
    deadline: float | None = getattr(_HEAD, "at", None)
    if deadline is None or sock is None:
        return get()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (sock,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return get()
    finally:
        watchdog.cancel()


class _TimedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        return _timed_head(self.sock, super().getresponse)


class _TimedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 does
        return _timed_head(self.sock, super().getresponse)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _TimedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TimedHTTPSConnection


class _Counted(Exception):
    """A failed attempt as urllib3's Retry counts it (the reason is ours to tell)."""


def _retry_of(policy: RetryPolicy) -> urllib3.Retry:
    """The urllib3 Retry that keeps the count and computes the waits of one fetch."""
    return urllib3.Retry(
        total=policy.total,
        connect=None,
        read=None,
        redirect=None,  # redirects are followed by hand (each hop vetted) and capped apart
        status=None,
        other=None,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=policy.status_forcelist,
        backoff_factor=policy.backoff_factor,
        backoff_max=policy.backoff_max,
        backoff_jitter=policy.jitter,
        raise_on_redirect=False,
        raise_on_status=False,
        respect_retry_after_header=policy.respect_retry_after,
        retry_after_max=math.ceil(policy.max_retry_after),  # and capped exactly in _delay
    )


class _Budget:
    """The retry budget of one fetch, kept by a urllib3 ``Retry`` (its count, backoff,
    jitter and Retry-After parsing): failed requests and resumes of the body draw on it,
    so a blob costs at most ``policy.total + 1`` requests however it fails."""

    def __init__(
        self,
        url: str,
        policy: RetryPolicy,
        sleep: Callable[[float], None],
        deadline: _Deadline | None = None,
    ) -> None:
        self.url = url
        self.policy = policy
        self.sleep = sleep
        self.deadline = deadline
        self.retry = _retry_of(policy)

    @property
    def retries(self) -> int:
        return len(self.retry.history)

    @property
    def attempts(self) -> int:
        return self.retries + 1  # the first request is under way when a budget exists

    def failed(self, reason: str, retry_after: str | None = None) -> None:
        """Count a failed attempt; wait before the next, or raise when none is left."""
        if self.deadline is not None and self.deadline.remaining() <= 0:
            raise self.deadline.error(reason)
        try:
            self.retry = self.retry.increment("GET", self.url, error=_Counted(reason))
        except MaxRetryError:
            raise NetworkError(
                f"GET {self.url}: giving up after {self.attempts} attempt(s); last: {reason}"
            ) from None
        delay = self._delay(retry_after)
        if self.deadline is not None and delay >= self.deadline.remaining():
            raise self.deadline.error(f"{reason}; the next try would be after the deadline")
        log.debug("GET %s: %s; retry %d in %.2fs", self.url, reason, self.retries, delay)
        if delay > 0:
            self.sleep(delay)

    def _delay(self, retry_after: str | None) -> float:
        if retry_after is not None and self.policy.respect_retry_after:
            seconds = parse_retry_after(retry_after, self.retry)
            if seconds is not None:
                return min(seconds, self.policy.max_retry_after)
        return self.retry.get_backoff_time()


_UNCAPPED = urllib3.Retry(retry_after_max=2**62)  # the parser alone: callers cap


def parse_retry_after(value: str, retry: urllib3.Retry | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP date), or None
    when it is neither (urllib3's parser)."""
    try:
        return float((retry or _UNCAPPED).parse_retry_after(value))
    except (InvalidHeader, OverflowError, ValueError):
        return None


def _parse_content_range(value: str | None) -> _ContentRange | None:
    # "bytes 100-199/1000" or "bytes 100-199/*"; anything else is not a usable answer.
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not (first.isdigit() and last.isdigit()):
        return None
    if total != "*" and not total.isdigit():
        return None
    start, end = int(first), int(last)
    if end < start:
        return None
    return _ContentRange(start, end, None if total == "*" else int(total))


def _unsatisfied_total(value: str | None) -> int | None:
    # "bytes */1000" of a 416 reply: the full size of the representation.
    if value and value.strip().lower().startswith("bytes */"):
        total = value.strip()[8:]
        return int(total) if total.isdigit() else None
    return None


def _is_certificate_error(exc: BaseException) -> bool:
    # A certificate that does not verify will not verify on a retry either.
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (ssl.SSLCertVerificationError, CertificateError)):
            return True
        todo.extend(a for a in e.args if isinstance(a, BaseException))
        todo.extend(c for c in (e.__cause__, e.__context__) if c is not None)
    return False


def _discard(resp: urllib3.BaseHTTPResponse) -> None:
    """Be done with a response whose body we do not want; keep the socket if cheap."""
    try:
        remaining = getattr(resp, "length_remaining", None)
        if remaining is not None and remaining <= _SMALL_BODY:
            resp.drain_conn()
        else:
            resp.close()
    except _TRANSPORT_ERRORS:
        resp.close()
    finally:
        resp.release_conn()


class Fetcher:
    """Fetches external locations; one urllib3 pool manager per fetcher.

    Thread-safe: several threads may fetch through one fetcher. ``sleep`` is how the
    fetcher waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or HttpSettings()
        self._sleep = sleep
        self._user_agent = self.settings.effective_user_agent()  # metadata lookup: once
        self._timeout = urllib3.Timeout(
            connect=self.settings.connect_timeout, read=self.settings.read_timeout
        )
        self._pools = urllib3.PoolManager(
            num_pools=16,
            maxsize=16,  # mirror workers share one fetcher: keep their connections
            retries=False,
            timeout=self._timeout,
            ca_certs=self.settings.ca_certs,
        )
        # Pools whose connections time the response head of a registration.
        self._pools.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def close(self) -> None:
        self._pools.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- public API ----------------------------------------------------------------
    def stream(
        self,
        url: str,
        *,
        offset: int = 0,
        headers: Mapping[str, str] | None = None,
        max_size: int | None = None,
        on_restart: Callable[[], None] | None = None,
        timed: bool = False,
    ) -> BodyStream:
        """GET ``url`` and return its body as a :class:`BodyStream` (use it in ``with``).

        The request (redirects, retries) is made before this returns, so status and
        headers are known; the body is read as the stream is iterated, resuming with
        Range after a dropped connection. ``offset`` asks for the bytes from there on;
        if the server sends the whole body instead, ``on_restart`` is called. It is
        also called whenever a resume has to start over from byte 0: whoever hashes the
        chunks must then reset. ``headers`` may add e.g. If-None-Match (a 304 reply
        gives ``status == 304`` and no chunks) or If-Range (with ``offset``).
        ``timed`` puts the whole fetch under the registration deadline (``deadline_base``
        plus bytes received / ``min_rate``): NetworkError once it passes.
        """
        if offset < 0:
            raise InvalidInput(f"offset must be >= 0, not {offset}")
        if max_size is not None and max_size < 0:
            raise InvalidInput(f"max_size must be >= 0, not {max_size}")
        extra = dict(headers or {})
        clash = sorted(k for k in extra if k.lower() in _OURS)
        if clash:
            raise InvalidInput(f"headers set by the fetcher itself cannot be given: {clash}")
        deadline = _Deadline(url, self.settings) if timed else None
        body = BodyStream(self, url, offset, extra, max_size, on_restart, deadline)
        try:
            body._start()
        except BaseException:
            body.close()
            raise
        return body

    def pipeline(self, urls: Iterable[str]) -> Pipeline:
        """Plain GETs of many URLs, pipelined per origin; see :mod:`glarelite._pipeline`.
        Answers the pipeline cannot take come back as None: fetch those with
        :meth:`stream`."""
        from ._pipeline import Pipeline

        return Pipeline(self.settings, self._user_agent, urls)

    def register(
        self,
        url: str,
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
        progress: ProgressCallback | None = None,
        extra_algorithms: tuple[str, ...] = (),
    ) -> Registration:
        """Download ``url`` once, hashing it on the fly (nothing is written anywhere).

        Raises ChecksumMismatch when ``expected_sha256`` (hex or ``sha256:<hex>``) is
        given and differs, TooLarge past ``max_size``, NetworkError, RefusedLocation.
        """
        expected = parse_sha256(expected_sha256) if expected_sha256 is not None else None
        hasher = _HashThread(extra_algorithms)
        try:
            with self.stream(url, max_size=max_size, on_restart=hasher.reset, timed=True) as body:
                reported = 0
                for chunk in body:
                    hasher.feed(chunk)
                    if progress is not None:
                        progress(body.position - reported)
                        reported = body.position
                size, sha256 = hasher.finish()
        finally:
            hasher.abort()
        if size != body.position:  # the hashing thread saw other bytes than we counted
            raise NetworkError(f"GET {url}: hashed {size} bytes but received {body.position}")
        if expected is not None and sha256 != expected:
            raise ChecksumMismatch(
                f"{url}: the {size} bytes served have sha256 {sha256}, expected {expected}"
            )
        return Registration(
            size=size,
            sha256=sha256,
            etag=body.etag,
            last_modified=body.last_modified,
            final_url=body.final_url,
            content_type=body.content_type,
            checksums=hasher.checksums(),
        )

    def revalidate(self, url: str, *, etag: str | None, last_modified: str | None) -> bool:
        """Conditional GET: True when the server answers 304 Not Modified.

        False means "not proven unchanged" (a 200, or no validator to send): the body is
        not read, and the caller re-hashes with :meth:`register`. Only a 304 counts, so
        a server that ignores conditional requests never passes a changed blob off as
        unchanged. Errors raise as for :meth:`register`.
        """
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if not headers:
            return False
        with self.stream(url, headers=headers, timed=True) as body:
            return body.status == 304

    # -- one request, with redirects and retries --------------------------------------
    def _open(
        self,
        url: str,
        headers: Mapping[str, str],
        budget: _Budget,
        *,
        ranged: bool,
    ) -> tuple[urllib3.BaseHTTPResponse, ParsedTarget]:
        """The final response for ``url`` (redirects followed, retryable failures retried).

        Returns only statuses the caller can use: 200/203, 206 and 416 when ``ranged``,
        304 when conditional; everything else raises.
        """
        conditional = any(k.lower() in _CONDITIONAL for k in headers)
        wanted = _OK | ({206, 416} if ranged else set()) | ({304} if conditional else set())
        hop_headers = dict(headers)
        current = url
        previous: ParsedTarget | None = None
        hops = 0
        while True:
            target = check_url(current, self.settings)
            if previous is not None and target.origin != previous.origin:
                if previous.scheme == "https" and target.scheme == "http":
                    raise RefusedLocation(f"refusing redirect from https to http: {current!r}")
                hop_headers = {
                    k: v for k, v in hop_headers.items() if k.lower() not in _CROSS_ORIGIN_DROP
                }
            if budget.deadline is not None:
                budget.deadline.check()  # redirects draw on no budget but take time
            try:
                resp = self._send(target, hop_headers, budget.deadline)
            except _TRANSPORT_ERRORS as exc:
                if _is_certificate_error(exc):
                    raise NetworkError(
                        f"GET {current}: TLS certificate check failed: {exc}"
                    ) from exc
                budget.failed(f"{current}: {type(exc).__name__}: {exc}")
                continue
            status = resp.status
            if status in _REDIRECTS:
                location = resp.headers.get("Location")
                _discard(resp)
                if not location:
                    raise NetworkError(f"GET {current}: HTTP {status} without a Location")
                hops += 1
                if hops > self.settings.max_redirects:
                    raise RefusedLocation(
                        f"refusing {url!r}: more than {self.settings.max_redirects} redirects"
                    )
                previous, current = target, urljoin(target.url, location)
                continue
            if status in wanted:
                return resp, target
            reason = f"{current}: HTTP {status} {resp.reason or ''}".rstrip()
            if status in self.settings.retry.status_forcelist:
                retry_after = resp.headers.get("Retry-After")
                _discard(resp)
                budget.failed(reason, retry_after)
                continue
            _discard(resp)
            raise NetworkError(f"GET {reason}")

    def _send(
        self, target: ParsedTarget, headers: Mapping[str, str], deadline: _Deadline | None
    ) -> urllib3.BaseHTTPResponse:
        request_headers = {
            "Host": target.host_header,
            "User-Agent": self._user_agent,
            "Accept-Encoding": "identity",
            **headers,
        }
        kwargs: dict[str, str] | None = None
        if target.scheme == "https":
            # Connect to the vetted IP but present and verify the name from the URL.
            name = target.host.rstrip(".")
            kwargs = {"server_hostname": name, "assert_hostname": name}
        # Try each vetted address in turn before counting the attempt as failed.
        for i, address in enumerate(target.addresses):
            pool = self._pools.connection_from_host(
                address, target.port, target.scheme, pool_kwargs=kwargs
            )
            _HEAD.at = None if deadline is None else deadline.at()
            try:
                return pool.urlopen(
                    "GET",
                    target.request_target,
                    headers=request_headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                    release_conn=False,
                    timeout=self._timeout,
                )
            except ConnectTimeoutError:  # includes NewConnectionError (refused, unreachable)
                if i == len(target.addresses) - 1:
                    raise
            finally:
                _HEAD.at = None
        raise AssertionError("unreachable: the guard never returns an empty address list")


class BodyStream:
    """The body of one GET, as an iterator of byte chunks; a context manager.

    Attributes describe the current reply: ``final_url`` (after redirects), ``status``
    (200, 206 when resumed or asked with an offset, 304 on a conditional hit),
    ``etag``, ``last_modified``, ``content_type``, ``content_encoding``,
    ``content_length`` (the full size when known, also after a 206), ``position`` (the
    offset of the next byte), ``restarts`` (times the body started over from byte 0)
    and ``attempts`` (requests made, redirects excepted).
    """

    def __init__(
        self,
        fetcher: Fetcher,
        url: str,
        offset: int,
        headers: dict[str, str],
        max_size: int | None,
        on_restart: Callable[[], None] | None,
        deadline: _Deadline | None = None,
    ) -> None:
        self._fetcher = fetcher
        self.url = url
        self.final_url = url
        self.status = 0
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.content_type: str | None = None
        self.content_encoding: str | None = None
        self.content_length: int | None = None
        self.position = offset
        self.restarts = 0
        self._headers = headers
        self._max_size = max_size
        self._on_restart = on_restart
        self._chunk_size = fetcher.settings.chunk_size
        self._deadline = deadline
        self._budget = _Budget(url, fetcher.settings.retry, fetcher._sleep, deadline)
        self._resp: urllib3.BaseHTTPResponse | None = None
        self._ranges_broken = False
        self._chunks: Iterator[bytes] | None = None

    @property
    def attempts(self) -> int:
        return self._budget.attempts

    # -- iteration and lifetime --------------------------------------------------------
    def __iter__(self) -> BodyStream:
        return self

    def __next__(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._read()
        return next(self._chunks)

    def __enter__(self) -> BodyStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Abandon whatever is left of the body (the connection is not reused)."""
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()
            resp.release_conn()

    # -- internals ---------------------------------------------------------------------
    def _start(self) -> None:
        headers = dict(self._headers)
        ranged = self.position > 0
        if ranged:
            headers["Range"] = f"bytes={self.position}-"
        resp, target = self._fetcher._open(self.url, headers, self._budget, ranged=ranged)
        if not self._adopt(resp, target):
            self._ranges_broken = True
            self._resume("the server answered the Range request with another range")

    def _read(self) -> Iterator[bytes]:
        while self._resp is not None:
            try:
                # read1: one socket read, so bytes received before a reset are kept
                # (read(n) would drop a partly filled chunk with the exception).
                data = self._resp.read1(self._chunk_size, decode_content=False)
            except _TRANSPORT_ERRORS as exc:
                self._resume(f"connection lost at byte {self.position}: {exc}")
                continue
            if not data:
                if self.content_length is not None and self.position < self.content_length:
                    self._resume(f"body ended at byte {self.position} of {self.content_length}")
                    continue
                resp, self._resp = self._resp, None
                resp.release_conn()
                self.content_length = self.position
                return
            self.position += len(data)
            if self._deadline is not None:
                self._deadline.received += len(data)
                if self._deadline.remaining() <= 0:
                    self.close()
                    raise self._deadline.error()
            if self._max_size is not None and self.position > self._max_size:
                self.close()
                raise TooLarge(f"{self.url} is larger than the limit of {self._max_size} bytes")
            yield data

    def _resume(self, reason: str) -> None:
        """Continue the body after a failure: Range from ``position``, or from zero."""
        self.close()
        while True:
            self._budget.failed(reason)
            # Conditional headers were for the first reply only; a resume needs the body.
            headers = {
                k: v
                for k, v in self._headers.items()
                if k.lower() not in _CONDITIONAL and k.lower() != "if-range"
            }
            ranged = self.position > 0 and not self._ranges_broken
            if ranged:
                headers["Range"] = f"bytes={self.position}-"
                validator = self._if_range()
                if validator is not None:
                    headers["If-Range"] = validator
            resp, target = self._fetcher._open(self.final_url, headers, self._budget, ranged=ranged)
            if self._adopt(resp, target, resuming=True):
                return
            # A 206 for another range or another representation: start over from zero.
            self._ranges_broken = True
            reason = "the server answered the Range request with another range"

    def _if_range(self) -> str | None:
        # If-Range takes a strong ETag or a date; a weak ETag would never match.
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def _continues(self, rng: _ContentRange, etag: str | None, resuming: bool) -> bool:
        """Whether a 206 carries exactly the bytes after ``position`` of the same body."""
        if rng.start != self.position:
            return False
        if not resuming:
            return True
        known = rng.total is not None and self.content_length is not None
        if known and rng.total != self.content_length:
            return False
        return etag is None or self.etag is None or etag == self.etag

    def _adopt(
        self, resp: urllib3.BaseHTTPResponse, target: ParsedTarget, *, resuming: bool = False
    ) -> bool:
        """Make ``resp`` the current reply; False if it is a 206 we cannot continue with."""
        h = resp.headers
        status = resp.status
        if status == 416:
            total = _unsatisfied_total(h.get("Content-Range"))
            _discard(resp)
            if total is not None and total == self.position:  # nothing left to read
                self.final_url, self.status, self.content_length = target.url, 416, total
                return True
            raise NetworkError(
                f"GET {target.url}: HTTP 416 for bytes from {self.position} (size {total})"
            )
        if status == 206:
            rng = _parse_content_range(h.get("Content-Range"))
            if rng is None or not self._continues(rng, h.get("ETag"), resuming):
                _discard(resp)
                return False
            total = rng.total
        else:
            if status in _OK and self.position > 0:
                # The whole body again (Range ignored, or If-Range saw a change).
                self.position = 0
                self.restarts += 1
                if self._on_restart is not None:
                    self._on_restart()
            total = _content_length(resp)
        if status == 206 and resuming:
            # Keep what the first reply said unless this one says more.
            self.etag = h.get("ETag", self.etag)
            self.last_modified = h.get("Last-Modified", self.last_modified)
        else:
            self.etag = h.get("ETag")
            self.last_modified = h.get("Last-Modified")
            self.content_type = h.get("Content-Type")
            self.content_encoding = h.get("Content-Encoding")
        self.final_url = target.url
        self.status = status
        if status == 304:
            _discard(resp)
            return True
        if total is not None:
            self.content_length = total
        if self._max_size is not None and total is not None and total > self._max_size:
            _discard_unread(resp)
            raise TooLarge(
                f"{target.url} declares {total} bytes, more than the limit of {self._max_size}"
            )
        self._resp = resp
        return True


def _content_length(resp: urllib3.BaseHTTPResponse) -> int | None:
    if resp.headers.get("Transfer-Encoding", "").lower().strip() not in ("", "identity"):
        return None  # chunked: any Content-Length is to be ignored
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.strip().isdigit() else None


def _discard_unread(resp: urllib3.BaseHTTPResponse) -> None:
    resp.close()
    resp.release_conn()


class _HashThread:
    """sha256 in a second thread, fed through a small bounded queue.

    hashlib releases the GIL while hashing large buffers, so the socket is read while the
    previous chunk is hashed; the queue bounds memory to a few chunks.
    """

    _RESET = object()
    _STOP = object()

    def __init__(self, extra_algorithms: tuple[str, ...] = ()) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_HASH_QUEUE_DEPTH)
        self._extra = extra_algorithms  # md5, sha1 ... in the same pass, when asked
        self._hash = Hasher(extra_algorithms)
        self._size = 0
        self._thread = threading.Thread(target=self._run, name="glarelite-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if item is self._RESET:
                self._hash = Hasher(self._extra)
                self._size = 0
            elif isinstance(item, bytes):
                self._hash.update(item)
                self._size += len(item)

    def feed(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def reset(self) -> None:
        # Queued, not immediate: chunks before the restart must be hashed (and dropped)
        # before the reset, in order.
        self._queue.put(self._RESET)

    def finish(self) -> tuple[int, str]:
        self._queue.put(self._STOP)
        self._thread.join()
        return self._size, self._hash.sha256_hex

    def checksums(self) -> dict[str, str]:
        """Hex digests of the extra algorithms (after :meth:`finish`)."""
        return self._hash.checksums()

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()
