"""The latency proxy the mirror benchmark puts in front of nginx (tests/fixtures/latency.py):
it holds each chunk ``delay`` in each direction without serialising chunks, forwards the
bytes intact both ways (half-close included), and stops."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator

import pytest

from tests.fixtures.latency import LatencyProxy

TIMEOUT = 30.0


class Server:
    """A threaded TCP server on loopback: ``echo`` sends back what it reads (and
    half-closes at EOF); otherwise it only collects what it reads."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.received = bytearray()
        self.ended = threading.Event()  # a connection saw its end (EOF or error)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += data
                if self.echo:
                    conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        self.ended.set()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._accepting.join(TIMEOUT)
        for t in self._threads:
            t.join(TIMEOUT)


@pytest.fixture
def echo() -> Iterator[Server]:
    server = Server(echo=True)
    yield server
    server.close()


@pytest.fixture
def sink() -> Iterator[Server]:
    server = Server(echo=False)
    yield server
    server.close()


def recv_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(65536):
        out += data
    return bytes(out)


def test_a_round_trip_takes_at_least_the_handshake_and_both_delays(echo: Server) -> None:
    delay = 0.05
    trace: deque[tuple[str, float, float, float, int]] = deque()
    with LatencyProxy("127.0.0.1", echo.port, delay=delay, trace=trace) as proxy:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as c:
            c.sendall(b"ping")
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"ping"
        # A lower bound only: load can make it slower, never faster.
        assert time.monotonic() - started >= 2 * delay + 2 * delay
    assert {t[0] for t in trace} == {"up", "down"}
    for _, read_at, due, written_at, nbytes in trace:
        assert due == pytest.approx(read_at + delay)
        assert written_at >= due
        assert nbytes > 0
    up = next(t for t in trace if t[0] == "up")
    down = next(t for t in trace if t[0] == "down")
    assert down[1] >= up[3]  # the answer could only be read after the request went out


def test_chunks_are_held_each_from_its_own_read_not_queued_behind_each_other(
    sink: Server,
) -> None:
    # Two chunks 0.25 s apart over a 1 s link: the second is read while the first is
    # still held, and leaves 0.25 s after it, not 1 s after it.
    trace: deque[tuple[str, float, float, float, int]] = deque()
    with (
        LatencyProxy("127.0.0.1", sink.port, delay=1.0, connect_delay=0, trace=trace) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as c,
    ):
        c.sendall(b"first")
        time.sleep(0.25)
        c.sendall(b"second")
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b""
    first, second = (t for t in trace if t[0] == "up")
    assert first[4] == len(b"first")
    assert second[4] == len(b"second")
    assert second[1] < first[3]  # read while the first was held
    assert second[2] - first[2] == pytest.approx(second[1] - first[1])
    # Queued behind the first one's delay, it would leave >= 1 s after it; held from its
    # own read, 0.25 s after it (the margin is the rest of the second).
    assert second[3] - first[3] < 1.0
    assert bytes(sink.received) == b"firstsecond"


def test_bytes_are_forwarded_intact_and_in_order_both_ways(echo: Server) -> None:
    payload = os.urandom(3 << 20)
    got: list[bytes] = []
    # Small chunks and a small window: thousands of chunks in flight, flow control on.
    with (
        LatencyProxy("127.0.0.1", echo.port, delay=0.002, chunk=4096, window=8) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as c,
    ):
        reader = threading.Thread(target=lambda: got.append(recv_all(c)), daemon=True)
        reader.start()
        for i in range(0, len(payload), 100_000):
            c.sendall(payload[i : i + 100_000])
        c.shutdown(socket.SHUT_WR)  # the half-close reaches the server, then comes back
        reader.join(TIMEOUT)
        assert not reader.is_alive()
    assert hashlib.sha256(bytes(echo.received)).digest() == hashlib.sha256(payload).digest()
    assert got and hashlib.sha256(got[0]).digest() == hashlib.sha256(payload).digest()


def test_a_target_that_refuses_closes_the_client_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])  # bound, never listening: connections refused
        with (
            LatencyProxy("127.0.0.1", dead, delay=0.01) as proxy,
            socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as c,
        ):
            c.sendall(b"hello")
            with contextlib.suppress(ConnectionResetError):
                assert c.recv(10) == b""


def test_a_client_reset_ends_the_connection_to_the_server(sink: Server) -> None:
    with LatencyProxy("127.0.0.1", sink.port, delay=0.01) as proxy:
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
        c.sendall(b"x")
        deadline = time.monotonic() + TIMEOUT
        while not sink.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.received == b"x"
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # linger 0: an RST, not a FIN
        assert sink.ended.wait(TIMEOUT)


def test_stop_closes_the_listener_and_every_open_connection(
    echo: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    proxy = LatencyProxy("127.0.0.1", echo.port, delay=0.01).start()
    port = proxy.port
    c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with c:
        c.sendall(b"x")
        assert c.recv(1) == b"x"  # the connection is up, end to end
        proxy.stop()
        with contextlib.suppress(ConnectionResetError):
            assert c.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert not proxy._thread.is_alive()
    proxy.stop()  # a second stop is harmless
    assert not caplog.records  # a connection cut by stop() is not an error of the loop
