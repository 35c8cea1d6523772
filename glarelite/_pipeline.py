"""HTTP/1.1 pipelining of plain GETs: the fast path for many small external blobs.

Through urllib3 one small GET costs ~300 µs of Python on a 2-core machine, ten times what
the bytes of a 4 KiB blob cost; threads do not help (the time is spent holding the GIL).
Pipelining writes the next requests before the answers arrive and reads the answers with
a deliberately narrow parser: only ``200``/``203`` with a ``Content-Length`` and no
transfer or content coding is taken (~15 µs each). Anything else — a redirect, an error
status, 429, a chunked body, a connection that cannot be made or that breaks — hands the
item back as ``None``, and the caller fetches it the ordinary way (:class:`Fetcher`: the
guard on every hop, retries with backoff, Range resume). So the pipeline never decides
an outcome the ordinary path would decide differently.

Connections go only to the addresses the guard vetted, with the URL's host in the Host
header, SNI and the certificate check, exactly as the ordinary path.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
from collections import deque
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import IO, cast

from ._guard import ParsedTarget, check_url
from .errors import GlareliteError, NetworkError
from .settings import HttpSettings

_MAX_HEAD = 64 * 1024  # status line and headers of one answer
_DRAIN_MAX = 64 * 1024  # an unread rest up to this size is skipped to keep the connection
_MAX_FAILURES = 2  # broken connections per origin before everything left goes the slow way
_READ_BUFFER = 256 * 1024
# Requests written and not answered: they must fit in the socket buffers. The window is
# written with a blocking send while no answer is read; a server that stops reading them
# (it waits to write answers nobody reads) would stall both ends until the read timeout.
_MAX_INFLIGHT_BYTES = 32 * 1024


@dataclass
class _Request:
    index: int
    target: ParsedTarget
    wire: bytes


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = cast(io.BufferedReader, sock.makefile("rb", buffering=_READ_BUFFER))
        self.answered = 0  # complete answers read from this connection
        self.dead = False
        self.ours = False  # we dropped it (an answer not worth reading), not the server

    def close(self) -> None:
        self.dead = True
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class PipelinedBody:
    """The body of one pipelined answer: exactly ``length`` bytes, read in order.

    Read it to the end (or close it) before asking the pipeline for the next answer;
    an early EOF or a broken connection raises :class:`NetworkError`, and so does a read
    after the pipeline moved on (``superseded``): its bytes are gone from the connection.
    """

    def __init__(self, conn: _Connection, length: int, url: str, last: bool) -> None:
        self._conn = conn
        self.length = length
        self.left = length
        self.url = url
        self._last = last  # the connection closes after this answer (server's or our call)
        self.opened = False  # set by whoever hands the body out
        self.superseded = False  # the pipeline moved on with bytes of this body unread

    def readinto(self, buffer: memoryview | bytearray) -> int:
        view = memoryview(buffer)
        if self.superseded:
            raise NetworkError(
                f"GET {self.url}: the pipeline moved on to the next answer before this body "
                "was read to its end; open the blob again",
                retryable=True,  # a pipelined request has no retries of its own
            )
        if not self.left or not len(view):
            return 0
        view = view[: min(len(view), self.left)]
        try:
            n = self._conn.rfile.readinto(view)
        except (OSError, ValueError) as exc:
            self._conn.close()
            raise NetworkError(
                f"GET {self.url}: connection broke in the body: {exc}", retryable=True
            ) from exc
        if not n:
            self._conn.close()
            raise NetworkError(
                f"GET {self.url}: connection closed {self.left} bytes before the end "
                f"of the {self.length}-byte body",
                retryable=True,
            )
        self.left -= n
        if not self.left:
            self._finished()
        return int(n)

    def read(self, n: int = -1) -> bytes:
        want = self.left if n is None or n < 0 else min(n, self.left)
        buf = bytearray(want)
        got = 0
        view = memoryview(buf)
        while got < want:
            k = self.readinto(view[got:])
            got += k
            if n is not None and n >= 0:
                break
        return bytes(buf[:got])

    def _finished(self) -> None:
        self._conn.answered += 1
        if self._last:
            self._conn.close()

    def abandon(self) -> None:
        """The pipeline is closing: an unread rest can no longer be read."""
        if self.left:
            self.superseded = True

    def supersede(self) -> None:
        """The pipeline needs the next answer: skip what is unread of this one."""
        if self.left:
            self.close()
            self.superseded = True

    def close(self) -> None:
        """Give the connection back: skip a small unread rest, else drop the connection."""
        if not self.left or self._conn.dead:
            return
        if self.left > _DRAIN_MAX:
            self._conn.ours = True
            self._conn.close()
            return
        with contextlib.suppress(GlareliteError):
            while self.left:
                if not self.readinto(bytearray(min(self.left, 65536))):
                    break

    def __enter__(self) -> PipelinedBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _OriginPipe:
    """The requests to one origin (scheme, host, port) and the connection they share."""

    def __init__(self, settings: HttpSettings, user_agent: str, depth: int) -> None:
        self.settings = settings
        self.user_agent = user_agent
        self.depth = depth
        self.pending: deque[_Request] = deque()  # not written to any connection yet
        self.inflight: deque[_Request] = deque()  # written; answers come in this order
        self.conn: _Connection | None = None
        self.body: PipelinedBody | None = None
        self.failures = 0
        self.unusable = 0  # answers the narrow parser could not take without a new socket
        self.given_up = False

    def add(self, index: int, target: ParsedTarget) -> None:
        # Latin-1 like http.client; HttpSettings refuses control characters in user_agent.
        wire = (
            f"GET {target.request_target} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            f"User-Agent: {self.user_agent}\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode("latin-1")
        self.pending.append(_Request(index, target, wire))
        self.depth = max(1, min(self.depth, _MAX_INFLIGHT_BYTES // len(wire)))

    def close(self) -> None:
        if self.body is not None:
            self.body.abandon()
            self.body = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def answer(self, index: int) -> PipelinedBody | None:
        """The body for request ``index`` (the oldest one not answered yet), or None when
        the ordinary path must fetch it."""
        if self.body is not None:
            self.body.supersede()
            self.body = None
        while not self.given_up:
            conn = self._connection()
            if conn is None:
                continue
            head = self.inflight[0]
            assert head.index == index, "answers are asked for in request order"
            try:
                status, headers = _read_head(conn.rfile)
            except _Closed:
                self._dropped(conn, failure=conn.answered == 0)
                continue
            except (OSError, ValueError, _BadAnswer):
                self._dropped(conn, failure=True)
                continue
            self.inflight.popleft()
            last = headers.get("connection", "").lower() == "close"
            done = not self.pending and not self.inflight  # the origin's last request
            length = _usable_length(status, headers)
            if length is not None:
                self.body = PipelinedBody(conn, length, head.target.url, last or done)
                if length == 0:
                    self.body._finished()
                return self.body
            # Not a plain answer: skip it if that is cheap and safe, else drop the socket.
            skip = _plain_length(headers)
            if skip is not None and skip <= _DRAIN_MAX and not last:
                try:
                    _skip(conn.rfile, skip)
                    conn.answered += 1
                except (OSError, ValueError, _Closed):
                    self._dropped(conn, failure=True)
            else:
                # Our call, not the server failing; but a server that answers so every
                # time would cost a socket and a resent window per request: stop trying.
                conn.answered += 1
                conn.ours = True
                self._dropped(conn, failure=False)
                self.unusable += 1
                if self.unusable > _MAX_FAILURES:
                    self.given_up = True
            if done:
                self.close()
            return None
        # Given up: this one, like everything after it, goes the ordinary way.
        self._forget(index)
        return None

    def _forget(self, index: int) -> None:
        for queue in (self.inflight, self.pending):
            if queue and queue[0].index == index:
                queue.popleft()
                return

    def _connection(self) -> _Connection | None:
        """The live connection with the head request written to it (None after a failed
        attempt that used up a try)."""
        conn = self.conn
        if conn is not None and conn.dead:
            self._dropped(conn, failure=conn.answered == 0 and not conn.ours)
            conn = None
        if conn is None:
            if not self.pending:
                raise AssertionError("no request waits for an answer")
            try:
                conn = self.conn = _Connection(self._connect(self.pending[0].target))
            except (OSError, ssl.SSLError, ValueError):
                self._fail()
                return None
        # Top the window up only once it is half empty: one send per half window, not
        # one per answer (on loopback each send also runs the receiver's TCP work).
        if self.inflight and len(self.inflight) > self.depth // 2:
            return conn
        wires = []
        while self.pending and len(self.inflight) < self.depth:
            request = self.pending.popleft()
            self.inflight.append(request)
            wires.append(request.wire)
        if wires:
            try:
                conn.sock.sendall(b"".join(wires))
            except OSError:
                self._dropped(conn, failure=True)
                return None
        return conn

    def _connect(self, target: ParsedTarget) -> socket.socket:
        last: OSError | None = None
        for address in target.addresses:
            try:
                sock = socket.create_connection(
                    (address, target.port), timeout=self.settings.connect_timeout
                )
            except OSError as exc:
                last = exc
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(self.settings.read_timeout)
                if target.scheme == "https":
                    context = ssl.create_default_context(cafile=self.settings.ca_certs)
                    sock = context.wrap_socket(sock, server_hostname=target.host.rstrip("."))
            except BaseException:
                sock.close()
                raise
            return sock
        assert last is not None
        raise last

    def _dropped(self, conn: _Connection, *, failure: bool) -> None:
        """The connection is gone: what was written to it and not answered is sent again
        on the next one. A close after some answers is the server's keep-alive limit; a
        connection that failed before answering anything counts against the origin; one
        we dropped ourselves counts for nothing."""
        conn.close()
        if self.conn is conn:
            self.conn = None
        if self.body is not None and self.body._conn is conn:
            self.body = None
        self.pending.extendleft(reversed(self.inflight))
        self.inflight.clear()
        if conn.ours and not failure:
            return
        if conn.answered == 0 and not failure:
            failure = True
        if failure:
            self._fail()
        elif conn.answered == 1:
            self.depth = 1  # closes after every answer (HTTP/1.0 style): stop sending ahead

    def _fail(self) -> None:
        self.failures += 1
        if self.failures > _MAX_FAILURES:
            self.given_up = True
            self.close()


class _Closed(Exception):
    """The connection ended cleanly before an answer started."""


class _BadAnswer(Exception):
    """Not parseable as an HTTP/1.x answer."""


def _read_head(rfile: IO[bytes]) -> tuple[int, dict[str, str]]:
    line = rfile.readline(_MAX_HEAD)
    if not line:
        raise _Closed()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _BadAnswer(line[:80])
    status = int(parts[1])
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        line = rfile.readline(_MAX_HEAD)
        size += len(line)
        if not line or size > _MAX_HEAD or not line.endswith(b"\n"):
            raise _BadAnswer("headers cut short or too long")
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadAnswer(line[:80])
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        if key not in headers:
            headers[key] = text
        elif key == "content-length":
            if headers[key] != text:  # request smuggling territory: never guess
                raise _BadAnswer("conflicting Content-Length headers")
        else:
            headers[key] = f"{headers[key]}, {text}"
    if 100 <= status < 200:
        raise _BadAnswer("interim answers are not expected for a plain GET")
    return status, headers


def _plain_length(headers: dict[str, str]) -> int | None:
    """The body length when it is delimited by Content-Length alone."""
    if "transfer-encoding" in headers:
        return None
    value = headers.get("content-length", "")
    # isdigit() alone admits "²" and other digits int() refuses.
    return int(value) if value.isascii() and value.isdigit() else None


def _usable_length(status: int, headers: dict[str, str]) -> int | None:
    if status not in (200, 203):
        return None
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ("", "identity"):
        return None
    return _plain_length(headers)


def _skip(rfile: IO[bytes], n: int) -> None:
    while n:
        data = rfile.read(min(n, 65536))
        if not data:
            raise _Closed()
        n -= len(data)


class Pipeline:
    """GETs of many URLs, answered in the order given, pipelined per origin.

    Iterate :meth:`answers` in order: each is a :class:`PipelinedBody` or None (fetch that
    URL the ordinary way). Finish a body before taking the next answer.
    """

    def __init__(self, settings: HttpSettings, user_agent: str, urls: Iterable[str]) -> None:
        self._pipes: dict[tuple[str, str, int], _OriginPipe] = {}
        self._order: list[_OriginPipe | None] = []
        depth = settings.pipeline_depth
        vetted: dict[tuple[str, str], tuple[str, int, tuple[str, ...]]] = {}
        for index, url in enumerate(urls):
            try:  # one lookup and one vetting per origin for the whole batch
                target = check_url(url, settings, vetted=vetted)
            except (GlareliteError, OSError):
                self._order.append(None)  # the ordinary path says why, with its retries
                continue
            pipe = self._pipes.get(target.origin)
            if pipe is None:
                pipe = self._pipes[target.origin] = _OriginPipe(settings, user_agent, depth)
            pipe.add(index, target)
            self._order.append(pipe)

    def answers(self) -> Generator[PipelinedBody | None, None, None]:
        try:
            for index, pipe in enumerate(self._order):
                yield None if pipe is None else pipe.answer(index)
        finally:
            self.close()

    def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
