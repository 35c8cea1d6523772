"""A registration's total deadline: an origin that trickles its body or its headers, or
sends 100 Continue without end, cannot keep add_location running (issue 13 #8).

The deadlines here are tiny (``deadline_base`` 0.5 s, ``min_rate`` 1000 bytes/s) and the
origin's delays are a few seconds in all, so a fetch that ignored the deadline would
succeed in the end and the test would fail, not hang."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite
from glarelite._http import Fetcher
from glarelite.errors import InvalidInput, NetworkError
from glarelite.settings import HttpSettings, RetryPolicy
from tests.fixtures.origin import Origin

RETRY = RetryPolicy(total=3, backoff_factor=0.01, backoff_max=1.0, jitter=0.0)
SETTINGS = HttpSettings(
    allow_hosts=("127.0.0.1",),
    retry=RETRY,
    connect_timeout=5.0,
    read_timeout=5.0,
    min_rate=1000,
    deadline_base=0.5,
)
DATA = random.Random(8).randbytes(300_000)
SMALL = b"s" * 150  # 7.5 s at 0.05 s per byte: far past the 0.5 s + 0.15 s allowed


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fetcher(sleeps: Sleeps) -> Iterator[Fetcher]:
    with Fetcher(SETTINGS, sleep=sleeps) as f:
        yield f


def test_body_at_a_trickle(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/slow", data=SMALL, trickle=0.05)
    with pytest.raises(NetworkError, match="deadline"):
        fetcher.register(origin.url("/slow"))


def test_headers_at_a_trickle(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/slowhead", data=b"x", trickle_head=0.05)  # ~150 header bytes: 7.5 s
    with pytest.raises(NetworkError, match="deadline"):
        fetcher.register(origin.url("/slowhead"))
    assert len(origin.requests_for("/slowhead")) == 1  # the deadline is not retried


def test_endless_100_continue(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/cont", data=b"x", continues=150, continue_delay=0.05)
    with pytest.raises(NetworkError, match="deadline"):
        fetcher.register(origin.url("/cont"))


def test_retry_after_past_the_deadline_is_not_waited(
    origin: Origin, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    origin.add("/busy", data=b"x", fail_first=[503], retry_after="10")
    with pytest.raises(NetworkError, match="deadline"):
        fetcher.register(origin.url("/busy"))
    assert sleeps == []  # gave up at once rather than sleeping past the deadline


def test_a_fast_body_is_not_cut(origin: Origin, fetcher: Fetcher) -> None:
    origin.add("/fast", data=DATA)  # 300 kB: the deadline grows with the bytes received
    assert fetcher.register(origin.url("/fast")).size == len(DATA)


def test_streams_for_readers_have_no_deadline(origin: Origin, fetcher: Fetcher) -> None:
    # A consumer reading slowly (a web client) is not a slow origin: only registration
    # and re-validation are timed.
    origin.add("/slow", data=b"abcdefghijklmnopqrst", trickle=0.05)  # 1 s in all
    with fetcher.stream(origin.url("/slow")) as body:
        assert b"".join(body) == b"abcdefghijklmnopqrst"


def test_settings_are_validated() -> None:
    with pytest.raises(InvalidInput):
        HttpSettings(min_rate=0)
    with pytest.raises(InvalidInput):
        HttpSettings(deadline_base=-1)


def test_add_location_with_a_trickling_origin(tmp_path: Path, origin: Origin) -> None:
    settings = glarelite.CatalogSettings(http=SETTINGS)
    origin.add("/slowhead", data=b"x", trickle_head=0.05)
    with glarelite.open(tmp_path / "c.db", settings=settings) as cat:
        cat.define_type("t", blobs=["file"])
        art = cat.create("t", "a")
        with pytest.raises(NetworkError, match="deadline"):
            cat.add_location(art.id, "file", origin.url("/slowhead"))
        assert cat.get(art.id).blob("file") is None
