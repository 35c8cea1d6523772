"""The tree served by static web servers — python -m http.server and nginx — resolves
every internal URL with the original bytes, and open_mirror over the served URL lists
and reads exactly what the catalog would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import urllib3

import glarelite
import mirror
from glarelite import tree
from tests.fixtures.origin import Origin
from tests.test_mirror_support import (
    LISTINGS,
    QUICK,
    SELECTED,
    World,
    build_world,
    listing,
    sha,
    sums_check,
)


@pytest.fixture(params=["http_server", "nginx_server"])
def serve(request: pytest.FixtureRequest) -> Callable[[Path], str]:
    start: Callable[[Path], str] = request.getfixturevalue(request.param)
    return start


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def test_served_tree_resolves_internal_urls_and_reads_like_the_catalog(
    world: World, tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    dest = tmp_path / "tree"
    assert mirror.sync(world.catalog, str(dest), **QUICK).exit_code == 0
    assert sums_check(dest).returncode == 0
    base = serve(dest)
    http = urllib3.PoolManager(retries=False)

    # Every internal URL: the original bytes, byte for byte.
    for url, data in world.published_urls().items():
        reply = http.request("GET", base + url)
        assert reply.status == 200, url
        assert reply.data == data and sha(reply.data) == sha(data)
    for url in (
        "/index.json",
        "/" + _first_shard(dest, "images"),
        f"/artifacts/images/{world.ids['a1']}/index.json",
    ):
        reply = http.request("GET", base + url)
        assert reply.headers["Content-Type"].startswith("application/json"), url
        json.loads(reply.data)
    hidden = f"/artifacts/images/{world.ids['secret']}/file"
    assert http.request("GET", base + hidden).status == 404

    # The reader over HTTP: the same listings, verified reads, ranged reads.
    with glarelite.open_mirror(base) as reader:
        for type_name, filters, sort, latest in LISTINGS:
            expected = listing(world.catalog, type_name, filters + SELECTED, sort, latest)
            assert listing(reader, type_name, filters, sort, latest) == expected
        for url, data in world.published_urls().items():
            _, _, _, artifact_id, *slot = url.split("/")
            with reader.open_blob(artifact_id, "/".join(slot)) as f:
                assert f.read() == data
            assert reader.blob_url(artifact_id, "/".join(slot)) == base + url
        a2 = world.ids["a2"]
        whole = world.data[f"/artifacts/images/{a2}/file"]
        with reader.open_blob(a2, "file", offset=1000, length=3000) as f:
            assert f.read() == whole[1000:4000]

        # A blob gone from the served tree is named, not silently skipped.
        (dest / tree.blob_path("images", a2, "file")).unlink()
        with pytest.raises(glarelite.NotFound, match=f"{a2}/file"):
            reader.open_blob(a2, "file")


def _first_shard(dest: Path, type_name: str) -> str:
    """The path of a shard file the tree's root pins (through its bucket)."""
    entry = tree.Root.from_dict(json.loads((dest / tree.ROOT_INDEX).read_bytes())).types[type_name]
    bucket = sorted(entry.buckets)[0]
    raw = (dest / entry.bucket_path(bucket)).read_bytes()
    shards = tree.Bucket.from_dict(json.loads(raw), type_name, bucket).shards
    return shards[sorted(shards)[0]].path(type_name)
