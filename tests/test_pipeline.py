"""HTTP/1.1 pipelining of many small external blobs (``Catalog.open_blobs``) against real
servers: the origin fixture (misbehaving on purpose), nginx, ``python -m http.server``,
a raw socket server for answers no HTTP library would send, and https.

Whatever the pipeline cannot take must come out of ``open()`` exactly as ``open_blob``
would give it: the same bytes, or the same error class.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import os
import random
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import glarelite
from glarelite.errors import (
    ChecksumMismatch,
    GlareliteError,
    InvalidInput,
    NetworkError,
    NotFound,
    RefusedLocation,
    UpstreamChanged,
)
from glarelite.settings import ALLOW_HOSTS_ENV
from tests.fixtures import static
from tests.fixtures.origin import Origin
from tests.fixtures.pki import tls_origin

FAST = glarelite.HttpSettings(
    retry=glarelite.RetryPolicy(total=3, backoff_factor=0.01, backoff_max=0.05, jitter=0.0),
    connect_timeout=5.0,
    read_timeout=10.0,
)
RETRY_ATTEMPTS = FAST.retry.total + 1  # requests the ordinary path makes for a 500 that stays
SLOTS_PER_ARTIFACT = 200  # a blob dict holds at most 255 keys


@pytest.fixture(autouse=True)
def _no_env_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_HOSTS_ENV, raising=False)


@pytest.fixture
def server() -> Iterator[Origin]:
    with Origin() as s:
        yield s


def open_catalog(
    root: Path,
    *,
    allow: tuple[str, ...] = ("127.0.0.1",),
    cache_dir: str | None = None,
    **http: Any,
) -> glarelite.Catalog:
    """A catalog in ``root`` (opened again when it exists) with an ``images`` type."""
    cat = glarelite.open(
        root / "c.db",
        storage=str(root / "blobs"),
        allow_hosts=list(allow),
        settings=glarelite.CatalogSettings(http=replace(FAST, **http), cache_dir=cache_dir),
    )
    try:
        cat.get_type("images")
    except NotFound:
        cat.define_type("images", blobs=["file"], blob_dicts=["regions"])
    return cat


@pytest.fixture
def cat(tmp_path: Path) -> Iterator[glarelite.Catalog]:
    with open_catalog(tmp_path) as c:
        yield c


class Slots:
    """Fresh blob-dict slots of a catalog, spread over as many artifacts as needed."""

    def __init__(self, cat: glarelite.Catalog) -> None:
        self.cat = cat
        self.n = 0
        self.artifact_id = ""

    def __call__(self) -> tuple[str, str]:
        if self.n % SLOTS_PER_ARTIFACT == 0:
            self.artifact_id = self.cat.create("images", f"p{self.n}").id
        slot = (self.artifact_id, f"regions/k{self.n}")
        self.n += 1
        return slot


def register(
    cat: glarelite.Catalog, base: str, paths: list[str], slots: Slots | None = None
) -> list[tuple[str, str]]:
    """Register ``base + path`` for each path in a fresh slot; the slots, in order."""
    slots = slots or Slots(cat)
    out = []
    for path in paths:
        slot = slots()
        cat.add_location(*slot, base + path)
        out.append(slot)
    return out


def blobs_on(
    server: Origin, prefix: str, n: int, seed: int = 1, sizes: tuple[int, int] = (500, 5000)
) -> dict[str, bytes]:
    """``n`` distinct random bodies (``sizes``: bounds in bytes) served at ``prefix<i>``."""
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        path = f"{prefix}{i}"
        out[path] = rng.randbytes(rng.randint(*sizes))
        server.add(path, data=out[path])
    return out


Result = bytes | GlareliteError


def read_batch(cat: glarelite.Catalog, slots: list[tuple[str, str]]) -> list[Result]:
    """Every item of one ``open_blobs`` run read to the end: its bytes or its error."""
    out: list[Result] = []
    for slot, (artifact_id, name, opener) in zip(slots, cat.open_blobs(slots), strict=True):
        assert (artifact_id, name) == slot
        try:
            with opener() as f:
                out.append(f.read())
        except GlareliteError as exc:
            out.append(exc)
    return out


def ordinary(cat: glarelite.Catalog, slot: tuple[str, str]) -> Result:
    """What ``open_blob`` gives for a slot, read to the end."""
    try:
        with cat.open_blob(*slot) as f:
            return f.read()
    except GlareliteError as exc:
        return exc


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def socket_inodes() -> set[str]:
    """The sockets this process holds (client and, the origin being in-process, server
    ends), by inode: numbers of closed fds are reused, inodes are not."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


# -- the plain case: one connection, one request per blob -----------------------------------
def test_many_small_blobs_share_one_connection_and_one_request_each(
    cat: glarelite.Catalog, server: Origin
) -> None:
    bodies = blobs_on(server, "/b", 300)
    paths = list(bodies)
    slots = register(cat, server.base_url, paths)
    before = (server.connections, len(server.requests))

    got = read_batch(cat, slots)

    assert got == [bodies[p] for p in paths]
    assert server.connections == before[0] + 1  # all 300 answers came over one connection
    new = server.requests[before[1] :]
    assert [r.path for r in new] == paths  # one GET each, sent in the order given
    assert {r.method for r in new} == {"GET"}
    first = new[0].headers
    assert first["host"] == f"127.0.0.1:{server.port}"
    assert first["accept-encoding"] == "identity"
    assert first["user-agent"].startswith("glarelite/")
    assert server.errors == []


def test_blobs_of_two_origins_interleaved(cat: glarelite.Catalog, tmp_path: Path) -> None:
    with Origin() as a, Origin() as b:
        on_a, on_b = blobs_on(a, "/a", 40, seed=2), blobs_on(b, "/b", 40, seed=3)
        slots = Slots(cat)
        items: list[tuple[tuple[str, str], bytes]] = []
        for (pa, da), (pb, db) in zip(on_a.items(), on_b.items(), strict=True):
            (sa,) = register(cat, a.base_url, [pa], slots)
            (sb,) = register(cat, b.base_url, [pb], slots)
            items += [(sa, da), (sb, db)]
        before = (a.connections, b.connections, len(a.requests), len(b.requests))
        got = read_batch(cat, [s for s, _ in items])
        assert got == [d for _, d in items]
        assert (a.connections, b.connections) == (before[0] + 1, before[1] + 1)
        assert [r.path for r in a.requests[before[2] :]] == list(on_a)
        assert [r.path for r in b.requests[before[3] :]] == list(on_b)


def test_empty_bodies_and_the_same_slot_twice(cat: glarelite.Catalog, server: Origin) -> None:
    bodies = blobs_on(server, "/f", 10)
    for path in ("/empty-a", "/empty-b"):
        server.add(path, data=b"")
        bodies[path] = b""
    slots = dict(zip(bodies, register(cat, server.base_url, list(bodies)), strict=True))
    order = ["/empty-a", "/f0", "/empty-b", "/empty-a", "/f1", "/f1", "/f2", *list(bodies)[3:]]
    n, conns = len(server.requests), server.connections
    assert read_batch(cat, [slots[p] for p in order]) == [bodies[p] for p in order]
    assert [r.path for r in server.requests[n:]] == order
    assert server.connections == conns + 1


def test_read_through_cache_serves_what_it_holds_and_fills_from_the_pipeline(
    tmp_path: Path, server: Origin
) -> None:
    bodies = blobs_on(server, "/c", 30)
    with open_catalog(tmp_path, cache_dir=str(tmp_path / "cache")) as cat:
        slots = register(cat, server.base_url, list(bodies))
        with cat.open_blob(*slots[3]) as f:  # one is in the cache before the batch
            assert f.read() == bodies["/c3"]
        n = len(server.requests)
        assert read_batch(cat, slots) == list(bodies.values())
        assert sorted(r.path for r in server.requests[n:]) == sorted(set(bodies) - {"/c3"})
        n = len(server.requests)
        assert read_batch(cat, slots) == list(bodies.values())  # all from the cache now
        assert server.requests[n:] == []


# -- real servers: nginx's keep-alive limit, http.server's HTTP/1.0 --------------------------
def start_nginx_logging(root: Path, keepalive_requests: int) -> static.StaticServer:
    """nginx over ``root`` as the fixture starts it, with nginx's default keep-alive limit
    and an access log naming each request's connection serial number."""

    def make(port: int) -> static.StaticServer:
        work = Path(tempfile.mkdtemp(prefix="glarelite-nginx-"))
        conf = static.NGINX_CONF.format(work=work, port=port, root=root.resolve(), autoindex="off")
        for old, new in (
            ("keepalive_requests 100000;", f"keepalive_requests {keepalive_requests};"),
            (
                "access_log off;",
                "log_format conn '$connection $connection_requests $request_uri';\n"
                f"    access_log {work}/access.log conn;",
            ),
        ):
            assert old in conf
            conf = conf.replace(old, new)
        (work / "nginx.conf").write_text(conf)
        log = work / "error.log"
        proc = subprocess.Popen(
            [static.NGINX, "-c", str(work / "nginx.conf"), "-p", str(work), "-e", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return static.StaticServer(proc, port, log, work)

    return static._start(make)


@pytest.mark.nginx
def test_nginx_closing_after_1000_requests_loses_nothing(
    cat: glarelite.Catalog, tmp_path: Path
) -> None:
    if not static.nginx_available():
        pytest.skip(f"nginx is not installed ({static.NGINX})")
    www = tmp_path / "www"
    www.mkdir()
    rng = random.Random(5)
    bodies = {}
    for i in range(1100):
        bodies[f"/n{i}.bin"] = rng.randbytes(rng.randint(200, 3000))
        (www / f"n{i}.bin").write_bytes(bodies[f"/n{i}.bin"])
    nginx = start_nginx_logging(www, keepalive_requests=1000)  # nginx's default
    try:
        slots = register(cat, nginx.url, list(bodies))
        access = Path(nginx.log).parent / "access.log"
        seen = len(access.read_text().splitlines())

        assert read_batch(cat, slots) == list(bodies.values())

        assert wait_for(lambda: len(access.read_text().splitlines()) >= seen + 1100)
        lines = [line.split() for line in access.read_text().splitlines()[seen:]]
        assert sorted(uri for _, _, uri in lines) == sorted(bodies)  # each asked for once
        # nginx closed the first connection after its 1000th answer; the pipeline went on
        # with the rest on a second one.
        assert sorted(Counter(conn for conn, _, _ in lines).values()) == [100, 1000]
    finally:
        nginx.stop()


def test_http10_server_closing_after_every_answer(
    cat: glarelite.Catalog, tmp_path: Path, http_server: Callable[[Path], str]
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    rng = random.Random(6)
    bodies = {}
    for i in range(40):
        bodies[f"/h{i}.bin"] = rng.randbytes(rng.randint(200, 3000))
        (www / f"h{i}.bin").write_bytes(bodies[f"/h{i}.bin"])
    base = http_server(www)  # python -m http.server: HTTP/1.0, one answer per connection
    slots = register(cat, base, list(bodies))
    assert read_batch(cat, slots) == list(bodies.values())


# -- misbehaviour in the middle of a batch --------------------------------------------------
@dataclass
class Odd:
    """One misbehaving item: how to register it and rig its route afterwards, and what
    ``open()`` must give. ``gets``: GETs of its path during the batch (None: not fixed).
    ``keeps``: the pipeline keeps its connection (so every neighbour is asked once).
    ``then_ok``: the pipelined read broke (NetworkError) and ``open_blob`` then succeeds."""

    rig: Callable[[Any], tuple[str, str]]
    expect: type[GlareliteError] | Callable[[bytes], bytes]
    gets: int | None
    keeps: bool
    then_ok: bool = False


class Rig:
    """What a rig function gets: the origin, the catalog, a fresh slot maker, the path
    and bytes of the odd item, and a second origin on 127.0.0.2 (never allowed)."""

    def __init__(
        self, server: Origin, cat: glarelite.Catalog, slots: Slots, path: str, data: bytes
    ) -> None:
        self.server, self.cat, self.slots, self.path, self.data = server, cat, slots, path, data
        self.other: Origin | None = None

    def register(self, **behaviour: Any) -> tuple[str, str]:
        self.server.add(self.path, data=self.data, **behaviour)
        (slot,) = register(self.cat, self.server.base_url, [self.path], self.slots)
        return slot

    def then(self, **behaviour: Any) -> None:
        """Re-add the route (fresh counters) with a behaviour for the batch."""
        self.server.add(self.path, data=self.data, **behaviour)


def _refused_redirect(r: Rig) -> tuple[str, str]:
    slot = r.register()
    assert r.other is not None
    r.other.add("/stolen", data=r.data)
    r.server.add(r.path, redirect=r.other.url("/stolen"))
    return slot


def _redirect(r: Rig) -> tuple[str, str]:
    r.server.add(r.path + "-target", data=r.data)
    r.server.add(r.path, redirect=r.path + "-target")  # relative Location
    (slot,) = register(r.cat, r.server.base_url, [r.path], r.slots)
    return slot


def _versions(r: Rig, later: bytes) -> tuple[str, str]:
    r.server.add(r.path, versions=[r.data, later])
    (slot,) = register(r.cat, r.server.base_url, [r.path], r.slots)
    return slot


def _marked_changed(r: Rig) -> tuple[str, str]:
    slot = r.register()
    r.server.add(r.path, data=b"something else entirely")
    [state] = {c.state for c in r.cat.check() if (c.artifact_id, c.slot) == slot}
    assert state == "changed"
    return slot


def _rigged(first: dict[str, Any], then: dict[str, Any]) -> Callable[[Rig], tuple[str, str]]:
    def rig(r: Rig) -> tuple[str, str]:
        slot = r.register(**first)
        if then:
            r.then(**then)
        return slot

    return rig


def _internal(r: Rig) -> tuple[str, str]:
    slot = r.slots()
    r.cat.upload(*slot, r.data)
    return slot


def _empty_slot(r: Rig) -> tuple[str, str]:
    return (r.cat.create("images", "empty").id, "file")


def _same(data: bytes) -> bytes:
    return data


def _gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


MID = {"ranges": True, "etag": True}
ODD: dict[str, Odd] = {
    "500 once": Odd(_rigged({}, {"fail_first": [500]}), _same, gets=2, keeps=True),
    "500 always": Odd(
        _rigged({}, {"fail_first": [500] * 40}), NetworkError, gets=1 + RETRY_ATTEMPTS, keeps=True
    ),
    "429 once": Odd(_rigged({}, {"fail_first": [429]}), _same, gets=2, keeps=True),
    "404": Odd(_rigged({}, {"status": 404}), NetworkError, gets=2, keeps=True),
    "relative redirect": Odd(_redirect, _same, gets=2, keeps=True),
    "redirect to a refused address": Odd(_refused_redirect, RefusedLocation, gets=2, keeps=True),
    "chunked": Odd(_rigged({"chunked": True}, {}), _same, gets=2, keeps=False),
    "gzip": Odd(_rigged({"gzip": True}, {}), _gzipped, gets=2, keeps=True),
    "no content-length": Odd(_rigged({"content_length": False}, {}), _same, gets=2, keeps=False),
    "reset mid-body": Odd(
        _rigged(MID, {**MID, "reset_after": 1000}), NetworkError, gets=1, keeps=False, then_ok=True
    ),
    "short body once": Odd(
        _rigged(MID, {**MID, "short_after": 1000}), NetworkError, gets=1, keeps=False, then_ok=True
    ),
    "short body always, ranges resume it": Odd(
        _rigged(MID, {**MID, "short_after": 1000, "times": None}),
        NetworkError,
        gets=1,
        keeps=False,
        then_ok=True,
    ),
    "short body always, no ranges": Odd(
        _rigged({}, {"short_after": 1000, "times": None}), NetworkError, gets=1, keeps=False
    ),
    "changed upstream, same size": Odd(
        lambda r: _versions(r, bytes(b ^ 1 for b in r.data)), ChecksumMismatch, gets=1, keeps=True
    ),
    "changed upstream, longer": Odd(
        lambda r: _versions(r, r.data + b"more"), ChecksumMismatch, gets=1, keeps=True
    ),
    "changed upstream, shorter": Odd(
        lambda r: _versions(r, r.data[:-10]), ChecksumMismatch, gets=1, keeps=True
    ),
    "marked changed by check": Odd(_marked_changed, UpstreamChanged, gets=0, keeps=True),
    "unknown artifact": Odd(lambda r: ("no-such-artifact", "file"), NotFound, gets=0, keeps=True),
    "empty slot": Odd(_empty_slot, NotFound, gets=0, keeps=True),
    "internal blob": Odd(_internal, _same, gets=0, keeps=True),
}


@pytest.mark.parametrize("kind", list(ODD))
def test_misbehaviour_in_the_middle_of_a_batch(
    kind: str, cat: glarelite.Catalog, server: Origin
) -> None:
    odd = ODD[kind]
    bodies = blobs_on(server, "/n", 20)
    paths = list(bodies)
    slots = Slots(cat)
    before = register(cat, server.base_url, paths[:10], slots)
    data = random.Random(kind).randbytes(3000)
    with Origin("127.0.0.2") as other:
        rig = Rig(server, cat, slots, "/odd", data)
        rig.other = other
        odd_slot = odd.rig(rig)
        after = register(cat, server.base_url, paths[10:], slots)
        n = len(server.requests)

        got = read_batch(cat, [*before, odd_slot, *after])

        batch = server.requests[n:]
        assert other.requests == []  # nothing ever reached the refused address
    assert got[:10] + got[11:] == list(bodies.values())  # the neighbours arrived intact
    asked = Counter(r.path for r in batch)
    if odd.gets is not None:
        assert asked["/odd"] == odd.gets, batch
    if odd.keeps:  # the odd answer was skipped on the same connection: nothing re-sent
        assert all(asked[p] == 1 for p in paths), asked
    else:
        assert all(asked[p] >= 1 for p in paths), asked

    result = got[10]
    if isinstance(odd.expect, type):
        assert isinstance(result, odd.expect), result
        again = ordinary(cat, odd_slot)
        if odd.then_ok:  # the ordinary path resumes what broke
            assert again == data
        else:  # the same outcome as the ordinary path
            assert type(result) is type(again), (result, again)
    else:
        assert result == odd.expect(data)
        assert ordinary(cat, odd_slot) == result
    assert server.errors == []


def test_every_misbehaviour_in_one_batch_some_side_by_side(
    cat: glarelite.Catalog, server: Origin
) -> None:
    """All of them in one batch, most next to each other: connections fail back to back,
    the pipeline gives up on the origin, and still every item is right."""
    bodies = blobs_on(server, "/n", 30)
    paths = list(bodies)
    slots = Slots(cat)
    items: list[tuple[tuple[str, str], Odd | None, bytes]] = []
    # check() first: it asks every registered blob once, which would use up the others' rigs
    kinds = sorted(ODD, key=lambda k: ODD[k].rig is not _marked_changed)
    with Origin("127.0.0.2") as other:
        for i, kind in enumerate(kinds):
            odd = ODD[kind]
            if i % 4 == 0:  # a plain neighbour now and then, adjacent odd ones otherwise
                (slot,) = register(cat, server.base_url, [paths[i]], slots)
                items.append((slot, None, bodies[paths[i]]))
            data = random.Random(kind).randbytes(3000)
            rig = Rig(server, cat, slots, f"/odd{i}", data)
            rig.other = other
            items.append((odd.rig(rig), odd, data))
        rest = register(cat, server.base_url, paths[len(ODD) :], slots)
        items += [(s, None, bodies[p]) for s, p in zip(rest, paths[len(ODD) :], strict=True)]

        got = read_batch(cat, [s for s, _, _ in items])

        assert other.requests == []
    for (slot, odd, data), result in zip(items, got, strict=True):
        if odd is None:
            assert result == data, slot
        elif odd.then_ok:  # broken in the pipeline, or (once it gave up) resumed
            assert result == data or isinstance(result, NetworkError), (slot, result)
        elif isinstance(odd.expect, type):
            assert isinstance(result, odd.expect), (slot, result)
        else:
            assert result == odd.expect(data), slot


def test_unreachable_origin_fails_like_open_blob_and_the_other_origin_is_served(
    cat: glarelite.Catalog, server: Origin
) -> None:
    live = blobs_on(server, "/l", 10)
    slots = Slots(cat)
    with Origin() as doomed:
        gone = blobs_on(doomed, "/g", 4)
        items = []
        for pl, pg in zip(list(live)[:4], gone, strict=True):
            items += register(cat, server.base_url, [pl], slots)
            items += register(cat, doomed.base_url, [pg], slots)
    # doomed is stopped: connections to its port are refused
    items += register(cat, server.base_url, list(live)[4:], slots)
    got = read_batch(cat, items)
    expected_live = iter(live.values())
    for i, result in enumerate(got):
        if i < 8 and i % 2:
            assert isinstance(result, NetworkError), result
            assert type(ordinary(cat, items[i])) is NetworkError
        else:
            assert result == next(expected_live)


# -- answers no HTTP library would send: a raw socket server ---------------------------------
class RawServer:
    """HTTP/1.1 on a raw socket: ``answers[path] = (bytes, close)`` is sent verbatim the
    first time that path is asked (then the connection is closed when ``close``); any
    other request gets a plain 200 of ``body(path)``."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answers: dict[str, tuple[bytes, bool]] = {}
        self.always: Callable[[bytes], bytes] | None = None  # every plain answer, rebuilt
        self.asked: list[str] = []
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @staticmethod
    def body(path: str) -> bytes:
        return hashlib.sha256(path.encode()).digest() * 40

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                self.asked.append(path)
                special = self.answers.pop(path, None)
                if special is not None:
                    conn.sendall(special[0])
                    if special[1]:
                        return
                    continue
                body = self.body(path)
                if self.always is not None:
                    conn.sendall(self.always(body))
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)


@pytest.fixture
def raw() -> Iterator[RawServer]:
    s = RawServer()
    yield s
    s.close()


def _ok(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra) + body


# kind -> (what the server sends for the odd path, whether it closes the connection after
# it, whether the pipeline takes that answer itself)
WEIRD: dict[str, tuple[Callable[[bytes], bytes], bool, bool]] = {
    "interim 100 before the 200": (
        lambda b: b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b),
        False,
        False,
    ),
    "conflicting content-lengths": (
        lambda b: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        False,
        False,
    ),
    "chunked with a content-length too": (
        lambda b: (
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(b)
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(b), b)
        ),
        False,
        False,
    ),
    "a content-length of unicode digits": (
        lambda b: b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\nhi",  # '²' in latin-1
        True,
        False,
    ),
    "not http at all": (lambda b: b"SSH-2.0-OpenSSH_9.6\r\n\r\n", True, False),
    "headers cut short": (lambda b: b"HTTP/1.1 200 OK\r\nContent-Len", True, False),
    "203 non-authoritative": (
        lambda b: _ok(b, b"203 Non-Authoritative Information"),
        False,
        True,
    ),
    "connection: close": (lambda b: _ok(b, extra=b"Connection: close\r\n"), True, True),
    "HTTP/1.0, closed after": (lambda b: _ok(b).replace(b"HTTP/1.1", b"HTTP/1.0", 1), True, True),
}


@pytest.mark.parametrize("kind", list(WEIRD))
def test_answers_off_the_beaten_track(kind: str, cat: glarelite.Catalog, raw: RawServer) -> None:
    build, close, taken = WEIRD[kind]
    paths = [f"/w{i}" for i in range(12)]
    slots = register(cat, raw.url(""), paths)  # registered while everything is plain
    raw.answers["/w5"] = (build(raw.body("/w5")), close)
    n = len(raw.asked)

    got = read_batch(cat, slots)

    assert got == [raw.body(p) for p in paths]
    asked = Counter(raw.asked[n:])
    if taken:  # the pipeline read the answer itself; a close cost nothing twice
        assert asked == Counter(paths)
    else:  # refused: asked again (pipeline on a new connection, or the ordinary way)
        assert asked["/w5"] >= 2 and all(asked[p] >= 1 for p in paths)


def test_a_server_that_always_answers_chunked_costs_a_bounded_number_of_requests(
    cat: glarelite.Catalog, raw: RawServer
) -> None:
    """Answers the narrow parser cannot take cost a socket and a resent window each: after
    a few the pipeline stops trying, so requests stay near one per blob."""
    paths = [f"/c{i}" for i in range(100)]
    slots = register(cat, raw.url(""), paths)

    def chunked(body: bytes) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    raw.always = chunked
    n = len(raw.asked)
    assert read_batch(cat, slots) == [raw.body(p) for p in paths]
    asked = len(raw.asked) - n
    # 100 by the ordinary path, plus what the pipeline sent before it gave up: at most
    # (failures allowed + 1) windows of 32.
    assert asked <= 100 + 3 * 32, asked


def test_items_opened_after_the_pipeline_moved_on_are_fetched_the_ordinary_way(
    cat: glarelite.Catalog, server: Origin
) -> None:
    """list(open_blobs(...)) then opening each: the pipeline already skipped the answers
    nobody opened, so each open() fetches its blob again instead of failing it."""
    bodies = blobs_on(server, "/o", 12)
    slots = register(cat, server.base_url, list(bodies))
    items = list(cat.open_blobs(slots))
    for (_, _, opener), want in zip(items, bodies.values(), strict=True):
        with opener() as f:
            assert f.read() == want


def test_a_body_the_pipeline_moved_past_midway_says_so(
    cat: glarelite.Catalog, server: Origin
) -> None:
    bodies = blobs_on(server, "/m", 3)
    slots = register(cat, server.base_url, list(bodies))
    opened = cat.open_blobs(slots)
    _, _, first = next(opened)
    reader = first()
    assert reader.read(10) == bodies["/m0"][:10]
    next(opened)  # the pipeline needs the next answer: the rest of the first is skipped
    with pytest.raises(NetworkError, match="moved on"):
        reader.read()
    opened.close()


def test_each_origin_connection_closes_after_its_last_answer(cat: glarelite.Catalog) -> None:
    """Many origins in one batch must not hold a socket each until the batch ends."""
    servers = [Origin().start() for _ in range(6)]
    try:
        slots: list[tuple[str, str]] = []
        make = Slots(cat)
        for i, srv in enumerate(servers):
            srv.add(f"/x{i}", data=b"blob %d" % i)
            slots += register(cat, srv.base_url, [f"/x{i}"], make)
        pooled = [srv.live for srv in servers]  # the ordinary fetcher's kept connections
        opened = cat.open_blobs(slots)
        for i, (_, _, opener) in enumerate(opened):
            with opener() as f:
                assert f.read() == b"blob %d" % i
            assert servers[i].connections == 2  # registration's, then the pipeline's
            # this origin's only answer is read: its connection is closed already
            assert wait_for(lambda i=i: servers[i].live == pooled[i]), i
        opened.close()
    finally:
        for srv in servers:
            srv.stop()


@pytest.mark.parametrize("agent", ["a\r\nX-Injected: 1", "nul\x00", "\u65e5\u672c"])
def test_a_user_agent_that_cannot_be_a_header_is_refused(agent: str) -> None:
    with pytest.raises(InvalidInput, match="user_agent"):
        glarelite.HttpSettings(user_agent=agent)


def test_a_latin1_user_agent_is_sent_as_the_ordinary_path_sends_it(
    tmp_path: Path, server: Origin
) -> None:
    bodies = blobs_on(server, "/u", 3)
    with open_catalog(tmp_path, user_agent="app (M\u00fcller)") as cat:
        slots = register(cat, server.base_url, list(bodies))
        n = len(server.requests)
        assert read_batch(cat, slots) == list(bodies.values())
    assert {r.headers["user-agent"] for r in server.requests[n:]} == {"app (M\u00fcller)"}


# -- pipeline_depth ----------------------------------------------------------------------
def test_depth_one_sends_nothing_ahead(tmp_path: Path, server: Origin) -> None:
    bodies = blobs_on(server, "/d", 20)
    with open_catalog(tmp_path, pipeline_depth=1) as cat:
        slots = register(cat, server.base_url, list(bodies))
        n, conns = len(server.requests), server.connections
        opened = cat.open_blobs(slots)
        for i, (_, _, opener) in enumerate(opened):
            # the answer to item i has been read; the request for i + 1 is not sent yet
            assert [r.path for r in server.requests[n:]] == list(bodies)[: i + 1]
            with opener() as f:
                assert f.read() == bodies[f"/d{i}"]
        assert server.connections == conns + 1


@pytest.mark.parametrize("depth", [4, 32])
def test_depth_bounds_the_requests_sent_ahead(tmp_path: Path, server: Origin, depth: int) -> None:
    bodies = blobs_on(server, "/d", 3 * depth, sizes=(100, 1000))  # the window fits the buffers
    with open_catalog(tmp_path, pipeline_depth=depth) as cat:
        slots = register(cat, server.base_url, list(bodies))
        n = len(server.requests)
        opened = cat.open_blobs(slots)
        _, _, first = next(opened)
        assert wait_for(lambda: len(server.requests) - n >= depth)
        time.sleep(0.2)
        assert len(server.requests) - n == depth  # the window, and not one more
        with first() as f:
            got = [f.read()]
        for _, _, opener in opened:
            with opener() as f:
                got.append(f.read())
        assert got == list(bodies.values())
        assert [r.path for r in server.requests[n:]] == list(bodies)


def test_a_deep_window_of_long_requests_does_not_stall(tmp_path: Path, server: Origin) -> None:
    """The window is written with a blocking send while no answer is read. When the
    unanswered requests exceed what the socket buffers hold, the server stops reading
    them (it waits to write answers nobody reads) and both ends stall until the read
    timeout; the pipeline then drops the connection and re-sends. Requests in flight
    must stay within the buffers, whatever ``pipeline_depth`` allows: here 100 requests
    of 60 KB (6 MB; the same as 1024 requests of 6 KB)."""
    body = random.Random(4).randbytes(100_000)
    paths = [f"/{i}-" + "x" * 60_000 for i in range(100)]
    for path in paths:
        server.add(path, data=body)
    with open_catalog(tmp_path, pipeline_depth=1024, read_timeout=2.0) as cat:
        slots = register(cat, server.base_url, paths)
        n, conns = len(server.requests), server.connections
        assert read_batch(cat, slots) == [body] * len(paths)
        assert server.connections == conns + 1  # no timeout, no reconnection
        assert [r.path for r in server.requests[n:]] == paths  # nothing sent twice


@pytest.mark.parametrize("bad", [0, -1, 1025, 2000, True, False])
def test_bad_pipeline_depth_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="pipeline_depth"):
        glarelite.HttpSettings(pipeline_depth=bad)


@pytest.mark.parametrize("good", [1, 1024])
def test_pipeline_depth_limits_are_accepted(good: int) -> None:
    assert glarelite.HttpSettings(pipeline_depth=good).pipeline_depth == good


# -- consumers that do not read everything ---------------------------------------------------
def test_unread_and_partly_read_items_leave_the_rest_intact(
    cat: glarelite.Catalog, server: Origin
) -> None:
    bodies = blobs_on(server, "/p", 30)
    big = random.Random(9).randbytes(200_000)  # more than the pipeline drains to keep a socket
    for i in (8, 12):
        bodies[f"/p{i}"] = big
        server.add(f"/p{i}", data=big)
    slots = register(cat, server.base_url, list(bodies))
    conns = server.connections
    partly = {3: 100, 8: 10}  # item -> bytes read; 5 and 12 are not opened at all
    for i, (_, _, opener) in enumerate(cat.open_blobs(slots)):
        if i in (5, 12):
            continue
        with opener() as f:
            if i in partly:
                assert f.read(partly[i]) == bodies[f"/p{i}"][: partly[i]]
            else:
                assert f.read() == bodies[f"/p{i}"], i
    # The small rests (3, 5) were skipped on the connection; each big rest (8, 12) cost it.
    assert server.connections == conns + 3


def test_dropping_a_connection_ourselves_never_makes_the_pipeline_give_up(
    cat: glarelite.Catalog, server: Origin
) -> None:
    """Big rests left unread, back to back (each the first answer on its connection, more
    of them than the failures allowed per origin), each cost a connection, but the
    pipeline keeps going: no item goes through the ordinary fetcher instead."""
    bodies = blobs_on(server, "/d", 30)
    big = random.Random(11).randbytes(200_000)
    skipped = (2, 3, 4, 5, 6)
    for i in skipped:
        bodies[f"/d{i}"] = big
        server.add(f"/d{i}", data=big)
    slots = register(cat, server.base_url, list(bodies))
    conns, n = server.connections, len(server.requests)
    for i, (_, _, opener) in enumerate(cat.open_blobs(slots)):
        with opener() as f:
            if i in skipped:
                assert f.read(10) == big[:10]
            else:
                assert f.read() == bodies[f"/d{i}"], i
    # One connection to start, one after each drop; a pipeline that gave up would have
    # left the rest to the ordinary fetcher's single pooled connection (6, not 7).
    assert server.connections == conns + 1 + len(skipped)
    assert {r.path for r in server.requests[n:]} == set(bodies)


def test_closing_the_generator_early_closes_the_connection(
    cat: glarelite.Catalog, server: Origin
) -> None:
    bodies = blobs_on(server, "/e", 100)
    slots = register(cat, server.base_url, list(bodies))
    gc.collect()
    live, sockets, conns = server.live, socket_inodes(), server.connections
    opened = cat.open_blobs(slots)
    for i in range(5):
        _, _, opener = next(opened)
        with opener() as f:
            assert f.read() == bodies[f"/e{i}"]
    assert server.connections == conns + 1 and server.live == live + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        opened.close()
        del opened, opener
        gc.collect()
    # closed by the pipeline itself, not left to the garbage collector
    assert not [w for w in caught if f"{server.port})" in str(w.message)]
    assert wait_for(lambda: server.live == live), "the server still holds the connection"
    assert wait_for(lambda: not socket_inodes() - sockets), "a socket was left open"
    # and the catalog pipelines again
    assert read_batch(cat, slots) == list(bodies.values())
    assert server.connections == conns + 2
    assert wait_for(lambda: server.live == live)
    assert wait_for(lambda: not socket_inodes() - sockets)


# -- https ---------------------------------------------------------------------------------
@pytest.fixture
def tls_server(pki: Path) -> Iterator[Origin]:
    with tls_origin(pki, "localhost") as s:
        yield s


def test_https_pipelined_with_the_certificate_checked(
    tmp_path: Path, pki: Path, tls_server: Origin
) -> None:
    bodies = blobs_on(tls_server, "/s", 60)
    base = f"https://localhost:{tls_server.port}"
    with open_catalog(tmp_path, allow=("localhost",), ca_certs=str(pki / "ca.pem")) as cat:
        slots = register(cat, base, list(bodies))
        n, conns = len(tls_server.requests), tls_server.connections
        assert read_batch(cat, slots) == list(bodies.values())
        new = tls_server.requests[n:]
        assert [r.path for r in new] == list(bodies)
        assert {r.headers["host"] for r in new} == {f"localhost:{tls_server.port}"}
        assert tls_server.connections == conns + 1

    # The same catalog trusting another CA: every item fails as open_blob fails, and no
    # request is ever sent over the unverified connections.
    with open_catalog(tmp_path, allow=("localhost",), ca_certs=str(pki / "rogue.pem")) as cat:
        n = len(tls_server.requests)
        got = read_batch(cat, slots[:5])
        for result in got:
            assert isinstance(result, NetworkError) and "certificate" in str(result), result
        again = ordinary(cat, slots[0])
        assert isinstance(again, NetworkError) and "certificate" in str(again)
        assert tls_server.requests[n:] == []
