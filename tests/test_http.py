"""The fetcher of external blobs against a misbehaving origin on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import random
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glarelite import _guard
from glarelite._http import Fetcher, parse_retry_after
from glarelite.errors import ChecksumMismatch, InvalidInput, NetworkError, RefusedLocation, TooLarge
from glarelite.settings import ALLOW_HOSTS_ENV, HttpSettings, RetryPolicy
from tests.fixtures.origin import Origin, PatternBody
from tests.fixtures.pki import tls_origin

RETRY = RetryPolicy(total=3, backoff_factor=0.01, backoff_max=1.0, jitter=0.0)
SETTINGS = HttpSettings(
    allow_hosts=("127.0.0.1",),
    retry=RETRY,
    connect_timeout=5.0,
    read_timeout=5.0,
    chunk_size=64 * 1024,
)
DATA = random.Random(7).randbytes(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sleeps(list[float]):
    """Stands in for time.sleep: records what the fetcher waited, waits not at all."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(autouse=True)
def _no_env_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_HOSTS_ENV, raising=False)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fetcher(sleeps: Sleeps) -> Iterator[Fetcher]:
    with Fetcher(SETTINGS, sleep=sleeps) as f:
        yield f


def fetch_all(f: Fetcher, url: str, offset: int = 0) -> tuple[bytes, int]:
    """The bytes a consumer keeps (resetting on restart), and the restarts seen."""
    kept = bytearray()
    restarts = 0
    base = offset

    def restart() -> None:
        nonlocal restarts, base
        restarts += 1
        base = 0
        kept.clear()

    with f.stream(url, offset=offset, on_restart=restart) as body:
        for chunk in body:
            kept += chunk
        assert body.position == base + len(kept) and body.restarts == restarts
    return bytes(kept), restarts


# -- the plain case ---------------------------------------------------------------------
def test_register_records_size_sha256_and_no_validators(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a.bin", data=DATA, content_type="application/x-thing")
    reg = fetcher.register(origin.url("/a.bin"))
    assert (reg.size, reg.sha256) == (len(DATA), SHA)
    assert (reg.etag, reg.last_modified) == (None, None)
    assert reg.final_url == origin.url("/a.bin")
    assert reg.content_type == "application/x-thing"
    [req] = origin.requests
    assert req.headers["host"] == f"127.0.0.1:{origin.port}"
    assert req.headers["accept-encoding"] == "identity"
    assert req.headers["user-agent"].startswith("glarelite/")
    assert "range" not in req.headers


def test_register_records_etag_and_last_modified(origin: Origin, fetcher: Fetcher) -> None:
    route = origin.add("/a.bin", data=DATA, etag='"v1"', last_modified=True)
    reg = fetcher.register(origin.url("/a.bin"))
    assert reg.etag == '"v1"'
    assert reg.last_modified is not None and reg.last_modified.endswith("GMT")
    assert route.hits == 1


def test_empty_body(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/empty", data=b"")
    reg = fetcher.register(origin.url("/empty"))
    assert (reg.size, reg.sha256) == (0, sha(b""))


@pytest.mark.parametrize("framing", ["close-delimited", "chunked"])
def test_no_content_length(origin: Origin, fetcher: Fetcher, framing: str) -> None:
    if framing == "chunked":
        origin.add("/n", data=DATA, chunked=True)
    else:
        origin.add("/n", data=DATA, content_length=False)
    reg = fetcher.register(origin.url("/n"))
    assert (reg.size, reg.sha256) == (len(DATA), SHA)


def test_progress_reports_every_byte(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a.bin", data=DATA)
    seen: list[int] = []
    fetcher.register(origin.url("/a.bin"), progress=seen.append)
    assert sum(seen) == len(DATA) and all(n > 0 for n in seen)


def test_connection_reused_between_registrations(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a.bin", data=DATA)
    for _ in range(3):
        assert fetcher.register(origin.url("/a.bin")).sha256 == SHA
    assert len(origin.requests) == 3


# -- resume -------------------------------------------------------------------------------
def test_reset_mid_body_resumes_with_range(
    origin: Origin, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    origin.add("/r", data=DATA, etag=True, ranges=True, reset_after=100_000, times=1)
    reg = fetcher.register(origin.url("/r"))
    assert (reg.size, reg.sha256) == (len(DATA), SHA)
    first, second = origin.requests
    assert first.range is None
    assert second.range is not None and second.range.startswith("bytes=")
    start = int(second.range[6:].rstrip("-"))
    assert 0 < start <= 100_000
    assert second.headers["if-range"] == reg.etag
    assert sleeps == []  # urllib3's Retry: the first retry is immediate
    origin.add("/r", data=DATA, etag=True, ranges=True, reset_after=100_000, times=1)
    with fetcher.stream(origin.url("/r")) as body:
        assert b"".join(body) == DATA
        assert body.attempts == 2  # the resume drew on the retry budget


def test_reset_resume_uses_last_modified_when_no_etag(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/r", data=DATA, last_modified=True, ranges=True, reset_after=150_000)
    reg = fetcher.register(origin.url("/r"))
    assert reg.sha256 == SHA
    assert origin.requests[1].headers["if-range"] == reg.last_modified


def test_repeated_resets_each_resume(origin: Origin, sleeps: Sleeps) -> None:
    origin.add("/r", data=DATA, etag=True, ranges=True, reset_after=60_000, times=None)
    with Fetcher(replace(SETTINGS, retry=replace(RETRY, total=10)), sleep=sleeps) as f:
        reg = f.register(origin.url("/r"))
    assert reg.sha256 == SHA
    ranges = [r.range for r in origin.requests]
    assert ranges[0] is None and all(r is not None for r in ranges[1:])
    assert len(ranges) == 5  # 300_000 bytes, 60_000 per reply


def test_resets_exhaust_the_budget(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/r", data=DATA, ranges=True, reset_after=1000, times=None)
    with pytest.raises(NetworkError, match=r"giving up after 4 attempt\(s\)"):
        fetcher.register(origin.url("/r"))
    assert len(origin.requests) == 4


def test_server_answering_200_to_range_restarts_from_zero(origin: Origin, fetcher: Fetcher) -> None:
    for path in ("/r", "/r2"):
        origin.add(path, data=DATA, etag=True, ranges=False, reset_after=100_000, times=1)
    assert fetcher.register(origin.url("/r")).sha256 == SHA
    assert origin.requests[1].range is not None  # asked for a range, got the whole body
    kept, restarts = fetch_all(fetcher, origin.url("/r2"))
    assert (kept, restarts) == (DATA, 1)


def test_changed_content_during_resume_restarts(origin: Origin, fetcher: Fetcher) -> None:
    # If-Range carries the old ETag; the origin now has other bytes and sends them all.
    new = DATA[::-1]
    origin.add("/v", versions=[DATA, new], etag=True, ranges=True, reset_after=100_000)
    kept, restarts = fetch_all(fetcher, origin.url("/v"))
    assert (kept, restarts) == (new, 1)
    assert origin.requests[1].range is not None


def test_wrong_content_range_restarts(origin: Origin, fetcher: Fetcher) -> None:
    # A 206 whose Content-Range starts elsewhere is not spliced in.
    origin.add("/w", data=DATA, ranges=True, bad_ranges=True, reset_after=100_000)
    kept, restarts = fetch_all(fetcher, origin.url("/w"))
    assert kept == DATA and restarts == 1
    assert origin.requests[-1].range is None  # the last try asked for everything


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    size=st.integers(min_value=1, max_value=200_000),
    cut=st.floats(min_value=0.0, max_value=0.999),
    ranges=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_reset_offsets_give_the_right_hash(
    origin: Origin, size: int, cut: float, ranges: bool, seed: int
) -> None:
    data = random.Random(seed).randbytes(size)
    path = f"/h{next(_paths)}"
    origin.add(path, data=data, etag=True, ranges=ranges, reset_after=int(size * cut))
    with Fetcher(replace(SETTINGS, chunk_size=16 * 1024), sleep=Sleeps()) as f:
        reg = f.register(origin.url(path))
    assert (reg.size, reg.sha256) == (size, sha(data))


_paths = itertools.count()


# -- short bodies -----------------------------------------------------------------------
def test_short_body_once_is_resumed(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/s", data=DATA, etag=True, ranges=True, short_after=123_456, times=1)
    assert fetcher.register(origin.url("/s")).sha256 == SHA
    assert origin.requests[1].range == "bytes=123456-"


def test_short_body_that_cannot_be_resumed_fails(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/s", data=DATA, short_after=1000, times=None)
    with pytest.raises(NetworkError) as info:
        fetcher.register(origin.url("/s"))
    message = str(info.value)
    assert origin.url("/s") in message and "4 attempt(s)" in message
    assert "1000" in message  # where it broke off
    assert len(origin.requests) == 4


def test_short_body_is_never_returned_silently(origin: Origin) -> None:
    origin.add("/s", data=DATA, short_after=1000, times=None)
    no_retry = replace(SETTINGS, retry=replace(RETRY, total=0))
    with Fetcher(no_retry) as f, f.stream(origin.url("/s")) as body, pytest.raises(NetworkError):
        b"".join(body)


# -- retries ------------------------------------------------------------------------------
def test_500_then_200(origin: Origin, fetcher: Fetcher, sleeps: Sleeps) -> None:
    origin.add("/f", data=DATA, fail_first=[500, 502])
    assert fetcher.register(origin.url("/f")).sha256 == SHA
    assert len(origin.requests) == 3
    # urllib3's Retry backoff, no jitter configured: the first retry is immediate, the
    # n-th waits backoff_factor * 2 ** (n - 1)
    assert sleeps == [0.02]


def test_backoff_is_capped_and_jittered(origin: Origin, sleeps: Sleeps) -> None:
    policy = replace(RETRY, total=4, backoff_factor=1.0, backoff_max=2.5, jitter=0.5)
    origin.add("/f", data=b"x", fail_first=[503] * 4)
    with Fetcher(replace(SETTINGS, retry=policy), sleep=sleeps) as f:
        f.register(origin.url("/f"))
    assert len(sleeps) == 3  # the first of the 4 retries is immediate
    assert 2.0 <= sleeps[0] <= 2.5 and sleeps[0] != 2.0  # 2 s plus jitter, capped
    assert sleeps[1:] == [2.5, 2.5]


def test_429_honours_retry_after_seconds(origin: Origin, fetcher: Fetcher, sleeps: Sleeps) -> None:
    origin.add("/busy", data=DATA, fail_first=[429], retry_after="1")
    assert fetcher.register(origin.url("/busy")).sha256 == SHA
    assert sleeps == [1.0]
    assert len(origin.requests) == 2


def test_retry_after_is_capped(origin: Origin, sleeps: Sleeps) -> None:
    origin.add("/busy", data=DATA, fail_first=[503], retry_after="3600")
    capped = replace(SETTINGS, retry=replace(RETRY, max_retry_after=2.0))
    with Fetcher(capped, sleep=sleeps) as f:
        assert f.register(origin.url("/busy")).sha256 == SHA
    assert sleeps == [2.0]


def test_retry_after_http_date(origin: Origin, fetcher: Fetcher, sleeps: Sleeps) -> None:
    origin.add("/busy", data=DATA, fail_first=[429], retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert fetcher.register(origin.url("/busy")).sha256 == SHA
    assert sleeps == []  # a date in the past: retry at once
    assert (parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") or 0) > 1e9
    assert parse_retry_after(" 7 ") == 7.0 and parse_retry_after("soon") is None


def test_retry_after_ignored_when_not_respected(origin: Origin, sleeps: Sleeps) -> None:
    origin.add("/busy", data=DATA, fail_first=[429], retry_after="20")
    policy = replace(RETRY, respect_retry_after=False)
    with Fetcher(replace(SETTINGS, retry=policy), sleep=sleeps) as f:
        f.register(origin.url("/busy"))
    assert sleeps == []  # the backoff instead of the 20 s asked: the first retry is immediate


def test_retries_exhausted(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/down", data=DATA, fail_first=[503] * 10)
    with pytest.raises(NetworkError) as info:
        fetcher.register(origin.url("/down"))
    assert "giving up after 4 attempt(s)" in str(info.value)
    assert "HTTP 503" in str(info.value) and origin.url("/down") in str(info.value)
    assert len(origin.requests) == 4


@pytest.mark.parametrize("status", [400, 403, 404, 410, 501])
def test_client_errors_fail_at_once(
    origin: Origin, fetcher: Fetcher, sleeps: Sleeps, status: int
) -> None:
    origin.add("/x", data=DATA, status=status)
    with pytest.raises(NetworkError, match=f"HTTP {status}"):
        fetcher.register(origin.url("/x"))
    assert len(origin.requests) == 1 and sleeps == []


def test_connection_refused_is_retried_then_fails(fetcher: Fetcher, sleeps: Sleeps) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError, match=r"after 4 attempt\(s\).*NewConnectionError"):
        fetcher.register(f"http://127.0.0.1:{port}/x")
    assert sleeps == [0.02, 0.04]  # 3 retries: immediate, then urllib3's backoff


# -- redirects ----------------------------------------------------------------------------
def test_redirect_chain_followed_and_final_url_recorded(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/r1", redirect="/r2", redirect_status=301)
    origin.add("/r2", redirect="r3?x=1", redirect_status=307)  # relative to /r2
    origin.add("/r3", redirect=origin.url("/data"), redirect_status=308)
    origin.add("/data", data=DATA)
    reg = fetcher.register(origin.url("/r1"))
    assert reg.sha256 == SHA and reg.final_url == origin.url("/data")
    assert [r.path for r in origin.requests] == ["/r1", "/r2", "/r3?x=1", "/data"]


def test_too_many_redirects(origin: Origin, fetcher: Fetcher) -> None:
    for i in range(7):
        origin.add(f"/hop{i}", redirect=f"/hop{i + 1}")
    origin.add("/hop7", data=DATA)
    with pytest.raises(RefusedLocation, match="more than 5 redirects"):
        fetcher.register(origin.url("/hop0"))
    assert len(origin.requests) == 6
    origin.add("/loop", redirect="/loop")
    with pytest.raises(RefusedLocation, match="redirects"):
        fetcher.register(origin.url("/loop"))


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://10.1.2.3/x", "private"),
        ("http://[::1]/x", "loopback"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http://user:pw@127.0.0.1/", "userinfo"),
    ],
)
def test_redirect_into_refused_location(
    origin: Origin, fetcher: Fetcher, location: str, reason: str
) -> None:
    origin.add("/evil", redirect=location)
    with pytest.raises(RefusedLocation, match=reason):
        fetcher.register(origin.url("/evil"))
    assert len(origin.requests) == 1  # refused before any connection to the next hop


def test_redirect_without_location(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/nowhere", redirect="")
    with pytest.raises(NetworkError, match="without a Location"):
        fetcher.register(origin.url("/nowhere"))


# -- encodings, validators, size, checksum -----------------------------------------------
def test_gzip_reply_is_hashed_as_served(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/gz", data=DATA, gzip=True)
    reg = fetcher.register(origin.url("/gz"))
    served = gzip.compress(DATA, mtime=0)
    assert (reg.size, reg.sha256) == (len(served), sha(served))
    with fetcher.stream(origin.url("/gz")) as body:
        assert body.content_encoding == "gzip" and b"".join(body) == served


def test_revalidate_unchanged_and_changed(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/v", versions=[DATA, DATA, DATA[::-1]], etag=True, last_modified=True)
    reg = fetcher.register(origin.url("/v"))
    assert fetcher.revalidate(origin.url("/v"), etag=reg.etag, last_modified=reg.last_modified)
    assert origin.requests[-1].headers["if-none-match"] == reg.etag
    # The third reply is other bytes, with another ETag: not proven unchanged.
    assert not fetcher.revalidate(origin.url("/v"), etag=reg.etag, last_modified=None)
    again = fetcher.register(origin.url("/v"))
    assert again.sha256 == sha(DATA[::-1]) and again.etag != reg.etag


def test_revalidate_with_last_modified_only(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/v", data=DATA, last_modified=True)
    reg = fetcher.register(origin.url("/v"))
    assert reg.etag is None
    assert fetcher.revalidate(origin.url("/v"), etag=None, last_modified=reg.last_modified)
    assert "if-modified-since" in origin.requests[-1].headers
    assert not fetcher.revalidate(
        origin.url("/v"), etag=None, last_modified="Mon, 01 Jan 2001 00:00:00 GMT"
    )


def test_revalidate_against_a_server_without_conditionals(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/v", data=DATA, etag=True, conditional=False)
    reg = fetcher.register(origin.url("/v"))
    assert not fetcher.revalidate(origin.url("/v"), etag=reg.etag, last_modified=None)
    assert not fetcher.revalidate(origin.url("/v"), etag=None, last_modified=None)
    assert len(origin.requests) == 2  # no validator, no request


def test_max_size_with_content_length(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/big", data=DATA)
    with pytest.raises(TooLarge, match="declares 300000 bytes"):
        fetcher.register(origin.url("/big"), max_size=len(DATA) - 1)
    assert fetcher.register(origin.url("/big"), max_size=len(DATA)).size == len(DATA)


def test_max_size_without_content_length(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/big", data=PatternBody(64 << 20), chunked=True)
    seen: list[int] = []
    with pytest.raises(TooLarge, match="larger than the limit of 100000"):
        fetcher.register(origin.url("/big"), max_size=100_000, progress=seen.append)
    assert sum(seen) <= 100_000 + SETTINGS.chunk_size  # stopped early, not at 64 MiB


def test_expected_sha256(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a", data=DATA)
    assert fetcher.register(origin.url("/a"), expected_sha256=SHA.upper()).sha256 == SHA
    assert fetcher.register(origin.url("/a"), expected_sha256=f"sha256:{SHA}").size == len(DATA)
    with pytest.raises(ChecksumMismatch, match=f"expected {'0' * 64}"):
        fetcher.register(origin.url("/a"), expected_sha256="0" * 64)
    with pytest.raises(InvalidInput):
        fetcher.register(origin.url("/a"), expected_sha256="nope")


# -- the stream API ---------------------------------------------------------------------
def test_stream_attributes_and_offset(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a", data=DATA, etag=True, last_modified=True, ranges=True)
    with fetcher.stream(origin.url("/a"), offset=1000) as body:
        assert (body.status, body.position, body.content_length) == (206, 1000, len(DATA))
        assert body.etag is not None and body.last_modified is not None
        assert b"".join(body) == DATA[1000:]
        assert body.position == len(DATA)
    assert origin.requests[-1].range == "bytes=1000-"


def test_stream_offset_on_a_server_without_ranges(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a", data=DATA)
    kept, restarts = fetch_all(fetcher, origin.url("/a"), offset=1000)
    assert (kept, restarts) == (DATA, 1)


def test_stream_offset_at_the_end(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a", data=DATA, ranges=True)
    with fetcher.stream(origin.url("/a"), offset=len(DATA)) as body:
        assert list(body) == [] and body.content_length == len(DATA)


def test_stream_conditional_304(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/a", data=DATA, etag='"e"')
    with fetcher.stream(origin.url("/a"), headers={"If-None-Match": '"e"'}) as body:
        assert body.status == 304 and list(body) == []


def test_stream_refuses_headers_it_owns(origin: Origin, fetcher: Fetcher) -> None:
    with pytest.raises(InvalidInput, match="Range"):
        fetcher.stream(origin.url("/a"), headers={"Range": "bytes=0-1"})
    assert origin.requests == []


def test_abandoned_stream_does_not_break_the_fetcher(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/big", data=PatternBody(8 << 20))
    with fetcher.stream(origin.url("/big")) as body:
        next(body)
    assert fetcher.register(origin.url("/big")).size == 8 << 20


# -- the vetted address is what gets connected to ----------------------------------------
def test_connects_to_the_vetted_address_with_the_original_host_header(
    origin: Origin, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first answer is loopback (allowed), every later one a private address: a
    # rebinding DNS. The fetcher must connect to what the guard vetted, never re-resolve.
    answers: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: str, *args: object, **kw: object) -> object:
        if host == "origin.test":
            answers.append(host)
            ip = "127.0.0.1" if len(answers) == 1 else "10.255.255.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, origin.port))]
        return real(host, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_guard.socket, "getaddrinfo", rebinding)
    origin.add("/a", data=DATA)
    with Fetcher(replace(SETTINGS, connect_timeout=1.0), sleep=sleeps) as f:
        reg = f.register(f"http://origin.test:{origin.port}/a")
    assert reg.sha256 == SHA and answers == ["origin.test"]
    assert origin.requests[0].headers["host"] == f"origin.test:{origin.port}"
    assert sleeps == []


def test_ipv6_loopback_when_allowed(sleeps: Sleeps) -> None:
    try:
        server = Origin(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server, Fetcher(replace(SETTINGS, allow_hosts=("::1",)), sleep=sleeps) as f:
        server.add("/a", data=DATA)
        assert f.register(server.url("/a")).sha256 == SHA
        assert server.requests[0].headers["host"] == f"[::1]:{server.port}"
    with Fetcher(SETTINGS) as f, pytest.raises(RefusedLocation, match="loopback"):
        f.register(server.url("/a"))


# -- https: SNI and certificate checked against the name, connection to the IP --------------
def test_https_checks_the_certificate_against_the_url_host(
    pki: Path, origin: Origin, sleeps: Sleeps
) -> None:
    tls_settings = replace(SETTINGS, allow_hosts=("localhost",), ca_certs=str(pki / "ca.pem"))
    with tls_origin(pki, "localhost") as server, Fetcher(tls_settings, sleep=sleeps) as f:
        server.add("/a", data=DATA)
        url = f"https://localhost:{server.port}/a"
        assert f.register(url).sha256 == SHA
        assert server.requests[0].headers["host"] == f"localhost:{server.port}"
        # https -> http is a downgrade, refused even when both hosts are allowed
        origin.add("/plain", data=DATA)
        server.add("/down", redirect=f"http://localhost:{origin.port}/plain")
        with pytest.raises(RefusedLocation, match="https to http"):
            f.register(f"https://localhost:{server.port}/down")
    assert origin.requests == []


def test_https_wrong_certificate_fails_without_retries(pki: Path, sleeps: Sleeps) -> None:
    tls_settings = replace(SETTINGS, allow_hosts=("localhost",), ca_certs=str(pki / "ca.pem"))
    with tls_origin(pki, "other.test") as server, Fetcher(tls_settings, sleep=sleeps) as f:
        server.add("/a", data=DATA)
        with pytest.raises(NetworkError, match="certificate"):
            f.register(f"https://localhost:{server.port}/a")
        assert server.requests == [] and sleeps == []
