"""External blobs through the catalog: registration records a promise about the bytes,
the guard refuses what it must before anything is recorded, reads stream and verify
(with a read-through cache), check catches changed upstreams, delete sends nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite
from glarelite.errors import (
    ChecksumMismatch,
    Conflict,
    IllegalTransition,
    NetworkError,
    RefusedLocation,
    TooLarge,
    UpstreamChanged,
)

FAST = glarelite.HttpSettings(
    retry=glarelite.RetryPolicy(total=3, backoff_factor=0.01, backoff_max=0.05, jitter=0.0),
    connect_timeout=2.0,
    read_timeout=5.0,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_catalog(tmp_path: Path, **settings: object) -> glarelite.Catalog:
    cat = glarelite.open(
        tmp_path / "c.db",
        storage=str(tmp_path / "blobs"),
        allow_hosts=["127.0.0.1"],
        settings=glarelite.CatalogSettings(http=FAST, **settings),  # type: ignore[arg-type]
    )
    cat.define_type("images", blobs=["file"], blob_dicts=["regions"], max_blob_size=1 << 20)
    return cat


@pytest.fixture
def cat(tmp_path: Path) -> Iterator[glarelite.Catalog]:
    with open_catalog(tmp_path) as c:
        yield c


def test_register_records_size_sha_validators_and_final_url(cat, origin) -> None:  # type: ignore[no-untyped-def]
    data = b"external bytes" * 1000
    origin.add("/final.bin", data=data, etag=True, last_modified=True)
    origin.add("/start", redirect="/final.bin")
    a = cat.create("images", "a")
    blob = cat.add_location(a.id, "regions/eu", origin.url("/start"), sha256=sha(data))
    assert (blob.size, blob.sha256, blob.external) == (len(data), sha(data), True)
    assert blob.external_url == origin.url("/start")
    assert blob.etag and blob.last_modified and blob.verified_at
    assert blob.url == f"/artifacts/images/{a.id}/regions/eu"
    with cat._database.read() as conn:
        (final,) = conn.execute("SELECT final_url FROM blobs").fetchone()
    assert final == origin.url("/final.bin")
    assert cat.blob_url(a.id, "regions/eu") == origin.url("/start")
    with cat.open_blob(a.id, "regions/eu") as f:
        assert f.read() == data
    # nothing was stored: an external blob is a record only
    from glarelite import _slots

    assert list(_slots.store_of(cat).iter_objects()) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:1/x",
        "http://[::1]/x",
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
    ],
)
def test_refused_urls_record_nothing(tmp_path: Path, url: str) -> None:
    with glarelite.open(tmp_path / "c.db", storage=str(tmp_path / "b")) as cat:
        cat.define_type("images", blobs=["file"])
        a = cat.create("images", "a")
        with pytest.raises(RefusedLocation):
            cat.add_location(a.id, "file", url)
        assert cat.get(a.id).blob("file") is None


def test_redirect_into_private_address_is_refused(cat, origin) -> None:  # type: ignore[no-untyped-def]
    origin.add("/evil", redirect="http://169.254.169.254/latest/meta-data/")
    a = cat.create("images", "a")
    with pytest.raises(RefusedLocation):
        cat.add_location(a.id, "file", origin.url("/evil"))
    assert cat.get(a.id).blob("file") is None


def test_failures_leave_the_slot_as_it_was(cat, origin) -> None:  # type: ignore[no-untyped-def]
    origin.add("/good", data=b"good")
    origin.add("/other", data=b"other")
    origin.add("/big", data=b"x" * ((1 << 20) + 1))
    origin.add("/short", data=b"0123456789" * 100, short_after=10, times=None)
    a = cat.create("images", "a")
    cat.add_location(a.id, "file", origin.url("/good"))
    # replacing the blob (Glare: a Conflict unless asked for) fails: the old one stays
    with pytest.raises(ChecksumMismatch):
        cat.add_location(a.id, "file", origin.url("/other"), sha256=sha(b"nope"), replace=True)
    with pytest.raises(TooLarge):
        cat.add_location(a.id, "file", origin.url("/big"), replace=True)
    with pytest.raises(NetworkError):
        cat.add_location(a.id, "file", origin.url("/short"), replace=True)
    with pytest.raises(NetworkError):
        cat.add_location(a.id, "file", "http://127.0.0.1:9/closed", replace=True)
    with pytest.raises(Conflict, match="already set"):
        cat.add_location(a.id, "file", origin.url("/other"))
    blob = cat.get(a.id).blob("file")
    assert blob is not None and blob.sha256 == sha(b"good") and blob.status == "active"


def test_flaky_origins_still_register_right(cat, origin) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 2000
    origin.add("/reset", data=data, ranges=True, etag=True, reset_after=100_000, times=1)
    origin.add("/flaky", data=data, fail_first=[500, 503])
    a = cat.create("images", "a")
    assert cat.add_location(a.id, "regions/a", origin.url("/reset")).sha256 == sha(data)
    assert any(r.range == "bytes=100000-" for r in origin.requests_for("/reset"))
    assert cat.add_location(a.id, "regions/b", origin.url("/flaky")).sha256 == sha(data)


def test_external_blobs_are_immutable_once_active_and_delete_sends_nothing(cat, origin) -> None:  # type: ignore[no-untyped-def]
    origin.add("/x", data=b"x")
    a = cat.create("images", "a")
    cat.add_location(a.id, "file", origin.url("/x"))
    cat.activate(a.id)
    with pytest.raises(IllegalTransition):
        cat.add_location(a.id, "file", origin.url("/x"))
    before = len(origin.requests)
    cat.delete(a.id)
    assert len(origin.requests) == before


def test_check_reports_unchanged_changed_unreachable(cat, origin) -> None:  # type: ignore[no-untyped-def]
    origin.add("/stable", data=b"stable", etag=True)
    origin.add("/moving", versions=[b"one", b"two", b"two", b"two"])
    origin.add("/gone", data=b"gone")
    a = cat.create("images", "a")
    cat.add_location(a.id, "regions/stable", origin.url("/stable"))
    cat.add_location(a.id, "regions/moving", origin.url("/moving"))
    cat.add_location(a.id, "regions/gone", origin.url("/gone"))
    origin.add("/gone", data=b"gone", fail_first=[404] * 10)
    results = {r.slot: r for r in cat.check()}
    assert results["regions/stable"].state == "unchanged"
    assert results["regions/stable"].method == "conditional"
    moving = results["regions/moving"]
    assert moving.state == "changed"
    assert (moving.sha256, moving.new_sha256) == (sha(b"one"), sha(b"two"))
    assert results["regions/gone"].state == "unreachable"
    # a changed blob is never silently served
    with pytest.raises(UpstreamChanged):
        cat.open_blob(a.id, "regions/moving")
    assert cat.get(a.id).blob("regions/moving").upstream == "changed"
    rehashed = {r.slot: r for r in cat.check(rehash=True)}
    assert rehashed["regions/stable"].method == "rehash"


def test_a_changed_body_fails_verification_while_streaming(cat, origin) -> None:  # type: ignore[no-untyped-def]
    origin.add("/v", versions=[b"registered", b"tampered!!"])
    a = cat.create("images", "a")
    cat.add_location(a.id, "file", origin.url("/v"))
    with pytest.raises(ChecksumMismatch), cat.open_blob(a.id, "file") as f:
        f.read()


def test_read_through_cache(tmp_path: Path, origin) -> None:  # type: ignore[no-untyped-def]
    data = b"cache me" * 5000
    origin.add("/c", data=data, ranges=True)
    with open_catalog(tmp_path, cache_dir=str(tmp_path / "cache"), cache_max_bytes=100_000) as cat:
        a = cat.create("images", "a")
        cat.add_location(a.id, "file", origin.url("/c"))
        n = len(origin.requests_for("/c"))
        for _ in range(3):
            with cat.open_blob(a.id, "file") as f:
                assert f.read() == data
        assert len(origin.requests_for("/c")) == n + 1  # only the first read went out
        with cat.open_blob(a.id, "file", offset=10, length=5) as f:
            assert f.read() == data[10:15]
        assert len(origin.requests_for("/c")) == n + 1
        cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
        assert len(cached) == 1 and cached[0].read_bytes() == data


def test_ranged_read_of_external_blob(cat, origin) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 40
    origin.add("/r", data=data, ranges=True)
    origin.add("/norange", data=data, ranges=False)
    a = cat.create("images", "a")
    cat.add_location(a.id, "regions/r", origin.url("/r"))
    cat.add_location(a.id, "regions/n", origin.url("/norange"))
    for slot in ("regions/r", "regions/n"):  # a server ignoring Range still gives the range
        with cat.open_blob(a.id, slot, offset=1000, length=300) as f:
            assert f.read() == data[1000:1300]


def test_mirror_base_url_resolves_every_blob(tmp_path: Path, origin) -> None:  # type: ignore[no-untyped-def]
    origin.add("/x", data=b"x")
    with open_catalog(tmp_path, mirror_base_url="http://mirror.site/") as cat:
        a = cat.create("images", "a")
        cat.add_location(a.id, "file", origin.url("/x"))
        cat.upload(a.id, "regions/eu", [b"y"])
        assert cat.blob_url(a.id, "file") == f"http://mirror.site/artifacts/images/{a.id}/file"
        assert cat.blob_url(a.id, "regions/eu").endswith(f"/artifacts/images/{a.id}/regions/eu")
