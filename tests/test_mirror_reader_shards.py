"""open_mirror over format 2 trees (issue 18 item 4): the root at open, then only the
shards a query needs, each verified against its pin; the disk cache of shards (verified
on every use); a pinned file gone; format 1 still read and an unknown format refused.

Trees are built with ``mirror.layout.render`` (from a catalog) or ``tests.treekit``."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import glarelite
from glarelite import tree
from mirror import layout
from tests import treekit
from tests.fixtures.origin import Origin
from tests.test_mirror_reader_hostile import FAST, spy_opens
from tests.test_mirror_support import LISTINGS, SELECTED, World, build_world, listing

IMAGES = treekit.IMAGES


def write_catalog_tree(catalog: glarelite.Catalog, data: dict[str, bytes], dest: Path) -> Path:
    """A format 2 tree of what the default selection publishes, built with layout.render
    (what the mirror writes, without the mirror): index files, artifact indexes, blobs."""
    types = {}
    for atype in catalog.types():
        shows = [a.to_dict() for a in catalog.iter_all(atype.name, filters=SELECTED)]
        types[atype.name] = (atype.to_json(), shows)
    files = layout.render(types)
    for _definition, shows in types.values():
        for show in shows:
            mark = {tree.MIRROR_KEY: {"format_version": 2, "generation": 1}}
            path = tree.artifact_index_path(show["type_name"], show["id"])
            files[path] = json.dumps({**show, **mark}).encode()
            for url in _blob_urls(show):
                files[url.lstrip("/")] = data[url]
    return treekit.write_tree(dest, files)


def _blob_urls(show: dict[str, Any]) -> list[str]:
    return [b["url"] for _f, _k, b in tree.iter_blob_entries(show)]


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    write_catalog_tree(w.catalog, w.data, tmp_path / "tree")
    yield w
    w.catalog.close()


# -- the same answers as the catalog --------------------------------------------------------
@pytest.mark.parametrize(("type_name", "filters", "sort", "latest"), LISTINGS)
def test_listings_match_the_catalog(
    world: World,
    tmp_path: Path,
    type_name: str | None,
    filters: list[str],
    sort: str | None,
    latest: bool,
) -> None:
    expected = listing(world.catalog, type_name, filters + SELECTED, sort, latest)
    with glarelite.open_mirror(tmp_path / "tree") as m:
        assert listing(m, type_name, filters, sort, latest) == expected
        assert listing(m, type_name, filters, sort, latest, limit=1) == expected  # paging
    with glarelite.open_mirror(tmp_path / "tree") as m:  # fresh: only what the query loads
        page = m.list(type_name, filters=filters, sort=sort, latest=latest, limit=1)
        assert page.total == len(expected)


def test_get_and_blobs_match_the_catalog(world: World, tmp_path: Path) -> None:
    with glarelite.open_mirror(tmp_path / "tree") as m:
        assert [t.name for t in m.types()] == ["charts", "images"]
        for label in ("a1", "a2", "b1", "chart"):
            artifact_id = world.ids[label]
            assert m.get(artifact_id).to_dict() == world.catalog.get(artifact_id).to_dict()
        for label in ("secret", "draft", "old"):
            with pytest.raises(glarelite.NotFound, match="no artifact"):
                m.get(world.ids[label])
        for bad in ("../..", "nope", str(uuid.uuid4()), 7):
            with pytest.raises(glarelite.NotFound):
                m.get(bad)  # type: ignore[arg-type]
        for url, data in world.published_urls().items():
            _, _, _, artifact_id, *slot = url.split("/")
            with m.open_blob(artifact_id, "/".join(slot)) as f:
                assert f.read() == data


def test_open_reads_the_root_only_and_a_name_lookup_one_shard(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    with spy_opens() as seen:
        m = glarelite.open_mirror(root)
    read = [p for p in seen if p.startswith(str(root))]
    assert [os.path.relpath(p, root) for p in read if os.path.isfile(p)] == [tree.ROOT_INDEX]
    with m, spy_opens() as seen:
        found = m.list("images", filters=["name=a"], latest=True)
        assert [a.version for a in found] == ["2.0.0"]
        files = [os.path.relpath(p, root) for p in seen if os.path.isfile(p)]
    shard = tree.shard_of("a")
    assert len(files) == 2
    assert files[0].startswith(f"artifacts/images/_buckets/{shard[0]}.")
    assert files[1].startswith(f"artifacts/images/_shards/{shard}.")


# -- request counting: root, bucket, shard, blob -------------------------------------------
def _many(count: int) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """A format 2 tree of ``count`` charts (names n0..), one 16-byte blob each."""
    files: dict[str, bytes] = {}
    shows = []
    for n in range(count):
        artifact_id = str(uuid.UUID(int=n + 1))
        data = f"blob {n:011d}".encode()
        blob = glarelite.Blob(
            type_name="charts",
            artifact_id=artifact_id,
            field="package",
            key="",
            status="active",
            size=len(data),
            sha256=treekit.sha(data),
        )
        shows.append(
            glarelite.Artifact(
                id=artifact_id,
                type_name="charts",
                name=f"n{n // 2}",  # two versions of each name
                version=f"1.{n % 2}.0",
                owner="alice",
                visibility="public",
                status="active",
                created_at=treekit.STAMP,
                updated_at=treekit.STAMP,
                blobs={"package": blob},
            ).to_dict()
        )
        files[tree.blob_path("charts", artifact_id, "package")] = data
    files.update(layout.render({"charts": (treekit.CHARTS.to_json(), shows)}))
    return files, shows


def test_a_name_lookup_makes_four_requests_and_a_cached_one_two(
    origin: Origin, tmp_path: Path
) -> None:
    files, _ = _many(3000)
    base = treekit.serve_tree(origin, "/tree", files)
    shard = tree.shard_of("n700")

    def lookup() -> list[str]:
        origin.reset()
        treekit.serve_tree(origin, "/tree", files)
        with glarelite.open_mirror(base, settings=FAST, cache_dir=tmp_path / "cache") as m:
            (latest,) = m.list("charts", filters=["name=n700"], latest=True)
            assert latest.version == "1.1.0"
            with m.open_blob(latest.id, "package") as f:
                assert f.read() == files[tree.blob_path("charts", latest.id, "package")]
        return [r.path.removeprefix("/tree/") for r in origin.requests]

    first = lookup()
    asked_fresh = [r.headers.get("cache-control") == "no-cache" for r in origin.requests]
    assert asked_fresh[:3] == [True, False, False]  # buckets and shards: any cache may serve
    assert len(first) == 4
    assert first[0] == tree.ROOT_INDEX
    assert first[1] == treekit.bucket_file(files, "charts", shard[0])
    assert first[2] == treekit.shard_file(files, "charts", shard)
    assert first[3].endswith("/package")
    assert sum(len(files[p]) for p in first) < 512 * 1024
    second = lookup()  # the same cache folder: the bucket and shard come from it
    assert second == [tree.ROOT_INDEX, first[3]]


def test_a_whole_type_listing_reads_every_shard_once(origin: Origin, tmp_path: Path) -> None:
    files, shows = _many(600)
    base = treekit.serve_tree(origin, "/tree", files)
    with glarelite.open_mirror(base, settings=FAST) as m:
        assert sorted(a.id for a in m.iter_all("charts")) == sorted(s["id"] for s in shows)
        assert len(list(m.iter_all("charts", filters=["name=n3"]))) == 2
        ids = [s["id"] for s in shows[:5]]
        assert [m.get(i).id for i in ids] == ids  # loaded: no request
    shard_gets = [r.path for r in origin.requests if "/_shards/" in r.path]
    assert len(shard_gets) == len(set(shard_gets)) == len({tree.shard_of(s["name"]) for s in shows})
    assert not [
        r for r in origin.requests if r.path.endswith("/index.json") and r.path.count("/") > 2
    ]


def test_get_reads_the_artifact_index_then_its_shard(origin: Origin) -> None:
    files, shows = _many(200)
    show = shows[77]
    files[tree.artifact_index_path("charts", show["id"])] = json.dumps(show).encode()
    base = treekit.serve_tree(origin, "/tree", files)
    with glarelite.open_mirror(base, settings=FAST) as m:
        assert m.get(show["id"]).name == show["name"]
    paths = [r.path.removeprefix("/tree/") for r in origin.requests]
    shard = tree.shard_of(show["name"])
    assert paths == [
        tree.ROOT_INDEX,
        tree.artifact_index_path("charts", show["id"]),
        treekit.bucket_file(files, "charts", shard[0]),
        treekit.shard_file(files, "charts", shard),
    ]


def test_an_artifact_index_that_lies_only_chooses_a_shard(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    """The artifact index is not pinned: a name pointing to another shard, or a show view
    that differs from the shard's, never makes get answer from the index."""
    files = treekit.render(seed2)
    first = seed2.shows("images")[0]
    chart = seed2.shows("charts")[0]
    # The chart's index claims the chart is named "ubuntu": the images' shard is read
    # for type charts, where no such shard exists; the chart is not found there.
    files[tree.artifact_index_path("charts", chart["id"])] = json.dumps(
        {**chart, "name": "ubuntu", "description": "forged"}
    ).encode()
    # The image's index says another description: get answers from the shard.
    files[tree.artifact_index_path("images", first["id"])] = json.dumps(
        {**first, "description": "forged"}
    ).encode()
    treekit.write_tree(tmp_path / "tree", files)
    with glarelite.open_mirror(tmp_path / "tree") as m:
        assert m.get(first["id"]).description == ""
        with pytest.raises(glarelite.NotFound):
            m.get(chart["id"])
        assert m.list("charts").items[0].id == chart["id"]  # the listing still finds it
        assert m.get(chart["id"]).description == ""


# -- pins, caps and hostile shards ------------------------------------------------------------
@pytest.fixture
def seed2() -> treekit.Tree:
    return treekit.build(2)


@pytest.mark.parametrize("kind", ["shard", "bucket"])
def test_a_file_that_does_not_match_its_pin_is_refused_naming_it(
    seed2: treekit.Tree, tmp_path: Path, kind: str
) -> None:
    files = treekit.render(seed2)
    shard = tree.shard_of("ubuntu")
    path = (
        treekit.shard_file(files, "images", shard)
        if kind == "shard"
        else treekit.bucket_file(files, "images", shard[0])
    )
    files[path] = files[path][:-1] + b" "  # one byte changed: parses, but not pinned
    treekit.write_tree(tmp_path / "tree", files)
    with glarelite.open_mirror(tmp_path / "tree") as m:
        assert len(m.list("charts")) == 1  # another type reads fine
        with pytest.raises(glarelite.ChecksumMismatch, match=path.replace(".", r"\.")):
            m.list("images", filters=["name=ubuntu"])
        with pytest.raises(glarelite.VerificationError, match=path.replace(".", r"\.")):
            list(m.iter_all())


def test_a_shard_holding_an_artifact_of_another_shard_is_refused(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    chart = seed2.shows("charts")[0]
    seed2.placed[chart["id"]] = "fff"  # "web" does not hash to fff
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with (
        glarelite.open_mirror(tmp_path / "tree") as m,
        pytest.raises(glarelite.InvalidInput, match="artifact of another shard"),
    ):
        m.list("charts")


def test_a_bucket_pinning_a_shard_of_another_bucket_is_refused(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    def steal(_type: str, bucket: str, doc: dict[str, Any]) -> None:
        (shard,) = doc["shards"]
        doc["shards"]["f" + shard[1:] if bucket != "f" else "0" + shard[1:]] = doc["shards"][shard]

    seed2.edits.append(("bucket", steal))
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with (
        glarelite.open_mirror(tmp_path / "tree") as m,
        pytest.raises(glarelite.InvalidInput, match="lists a shard of another bucket"),
    ):
        m.list("charts")


def test_a_root_pinning_a_million_buckets_is_refused(seed2: treekit.Tree, tmp_path: Path) -> None:
    ref = {"sha256": "0" * 64, "size": 10}
    seed2.root["types"]["images"]["buckets"] = {f"{n:x}": ref for n in range(100_000)}
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with pytest.raises(glarelite.InvalidInput, match="is not a bucket"):
        glarelite.open_mirror(tmp_path / "tree")
    seed2.root["types"]["images"]["buckets"] = {f"{n:x}": ref for n in range(10**6)}
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with pytest.raises(glarelite.TooLarge, match=r"index\.json is larger"):
        glarelite.open_mirror(tmp_path / "tree")


def test_a_huge_sparse_shard_is_never_read_past_its_pin(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    files = treekit.render(seed2)
    path = treekit.shard_file(files, "charts", tree.shard_of("web"))
    bucket = treekit.bucket_file(files, "charts", tree.shard_of("web")[0])
    treekit.write_tree(tmp_path / "tree", files)
    with open(tmp_path / "tree" / path, "r+b") as f:
        f.truncate(500 << 20)  # sparse: 500 MB that cost nothing
    real_read = os.read
    read: list[int] = []

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        read.append(len(data))
        return data

    with glarelite.open_mirror(tmp_path / "tree") as m:
        with (
            mock.patch("os.read", counting_read),
            pytest.raises(glarelite.VerificationError, match=path.replace(".", r"\.")),
        ):
            m.list("charts")
        assert sum(read) == len(files[bucket])  # the bucket only, not a byte of the shard
    # a pin larger than the cap is refused before the file is opened
    small = glarelite.MirrorSettings(max_shard_bytes=100)
    with (
        glarelite.open_mirror(tmp_path / "tree", settings=small) as m,
        spy_opens() as seen,
        pytest.raises(glarelite.TooLarge, match="larger than 100 bytes"),
    ):
        m.list("charts")
    assert not [p for p in seen if "/_shards/" in p]


def test_names_with_dot_dot_never_make_a_path(seed2: treekit.Tree, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(treekit.SECRET)
    show = seed2.shows("charts")[0]
    show["name"] = "../../../secret.txt"
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with spy_opens() as seen, glarelite.open_mirror(tmp_path / "tree") as m:
        (found,) = m.list("charts", filters=["name=../../../secret.txt"], latest=True)
        assert m.get(found.id).name == "../../../secret.txt"
    assert str(tmp_path / "secret.txt") not in seen
    assert all(p.startswith(str(tmp_path / "tree")) for p in seen if str(tmp_path) in p)


def test_a_slow_shard_is_cut_off_at_the_deadline(seed2: treekit.Tree, origin: Origin) -> None:
    files = treekit.render(seed2)
    base = treekit.serve_tree(origin, "/tree", files)
    path = treekit.shard_file(files, "images", tree.shard_of("ubuntu"))
    origin.add(f"/tree/{path}", data=files[path], trickle=0.05)
    limits = glarelite.MirrorSettings(timeout=2.0, read_deadline=1.0, retry=FAST.retry)
    with (
        glarelite.open_mirror(base, settings=limits) as m,
        pytest.raises(glarelite.NetworkError, match="deadline"),
    ):
        m.list("images")


# -- the cache folder ---------------------------------------------------------------------------
def test_a_cached_file_is_verified_every_time(
    seed2: treekit.Tree, origin: Origin, tmp_path: Path
) -> None:
    files = treekit.render(seed2)
    base = treekit.serve_tree(origin, "/tree", files)
    cache = tmp_path / "cache"
    path = treekit.shard_file(files, "images", tree.shard_of("ubuntu"))
    digest = path.rsplit(".", 2)[1]
    with glarelite.open_mirror(base, settings=FAST, cache_dir=cache) as m:
        assert len(m.list("images")) == 2
    assert (cache / digest).read_bytes() == files[path]
    flipped = bytearray(files[path])
    flipped[10] ^= 1
    (cache / digest).write_bytes(bytes(flipped))
    before = len(origin.requests_for(f"/tree/{path}"))
    with glarelite.open_mirror(base, settings=FAST, cache_dir=cache) as m:
        assert len(m.list("images")) == 2  # refetched, nothing reported
    assert len(origin.requests_for(f"/tree/{path}")) == before + 1
    assert (cache / digest).read_bytes() == files[path]  # and fixed


@pytest.mark.parametrize("planted", ["symlink", "fifo", "folder"])
def test_a_link_or_odd_file_planted_in_the_cache_is_never_followed(
    seed2: treekit.Tree, origin: Origin, tmp_path: Path, planted: str
) -> None:
    files = treekit.render(seed2)
    base = treekit.serve_tree(origin, "/tree", files)
    cache = tmp_path / "cache"
    cache.mkdir()
    path = treekit.shard_file(files, "images", tree.shard_of("ubuntu"))
    digest = path.rsplit(".", 2)[1]
    outside = tmp_path / "outside.json"
    outside.write_bytes(files[path])  # the right bytes, but not in the cache itself
    if planted == "symlink":
        (cache / digest).symlink_to(outside)
    elif planted == "fifo":
        os.mkfifo(cache / digest)
    else:
        (cache / digest).mkdir()
    with spy_opens() as seen, glarelite.open_mirror(base, settings=FAST, cache_dir=cache) as m:
        assert len(m.list("images")) == 2
    assert str(outside) not in seen
    assert len(origin.requests_for(f"/tree/{path}")) == 1  # fetched from the tree
    if planted != "folder":
        assert not (cache / digest).is_symlink() and (cache / digest).read_bytes() == files[path]


def test_the_cache_is_bounded(origin: Origin, tmp_path: Path) -> None:
    files, _ = _many(400)
    base = treekit.serve_tree(origin, "/tree", files)
    cache = tmp_path / "cache"
    limits = glarelite.MirrorSettings(cache_dir=str(cache), cache_max_bytes=20_000)
    with glarelite.open_mirror(base, settings=limits) as m:
        assert len(list(m.iter_all("charts"))) == 400
    assert sum(p.stat().st_size for p in cache.iterdir()) <= 20_000
    assert len(list(cache.iterdir())) > 3


# -- generations: refresh, a pinned file gone ------------------------------------------------
def _next_generation(seed: treekit.Tree) -> treekit.Tree:
    t = seed.copy()
    t.root["generation"] = 2
    t.shows("images")[1]["description"] = "second generation"
    return t


def test_a_pinned_shard_gone_makes_the_reader_read_the_root_again(
    seed2: treekit.Tree, origin: Origin
) -> None:
    first = treekit.render(seed2)
    base = treekit.serve_tree(origin, "/tree", first)
    m = glarelite.open_mirror(base, settings=FAST)
    with m:
        second = treekit.render(_next_generation(seed2))
        origin.reset()  # the grace period passed: only the new generation is served
        treekit.serve_tree(origin, "/tree", second)
        found = m.list("images", filters=["name=ubuntu"])
        assert m.generation == 2
        assert {a.description for a in found} == {"", "second generation"}
        # gone in the new generation too: a clear NotFound after one more root read
        origin.reset()
        shard = treekit.shard_file(second, "charts", tree.shard_of("web"))
        treekit.serve_tree(origin, "/tree", {p: d for p, d in second.items() if p != shard})
        with pytest.raises(glarelite.NotFound, match=r"even after reading index\.json again"):
            m.list("charts")
        assert len(origin.requests_for("/tree/index.json")) == 1


def test_refresh_drops_the_shards_of_another_generation(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with glarelite.open_mirror(tmp_path / "tree") as m:
        ubuntu = m.list("images", filters=["name=ubuntu"]).items
        second = _next_generation(seed2)
        treekit.write_tree(tmp_path / "tree", treekit.render(second))
        assert m.get(ubuntu[1].id).description == ""  # still the generation it read
        m.refresh()
        assert m.generation == 2
        assert m.get(ubuntu[1].id).description == "second generation"


# -- formats -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [1, 2])
def test_both_formats_read_the_same(tmp_path: Path, fmt: int) -> None:
    seed = treekit.build(fmt)
    treekit.write_tree(tmp_path / "tree", treekit.render(seed))
    with glarelite.open_mirror(tmp_path / "tree") as m:
        assert isinstance(m.root, tree.Root if fmt == 2 else tree.RootIndex)
        assert sorted(a.id for a in m.iter_all()) == sorted(
            s["id"] for t in ("charts", "images") for s in seed.shows(t)
        )


@pytest.mark.parametrize("version", [3, "2", None, True, 0])
def test_an_unknown_format_is_refused(tmp_path: Path, version: object) -> None:
    root = json.loads(treekit.render(treekit.build(2))[tree.ROOT_INDEX])
    root["format_version"] = version
    (tmp_path / "index.json").write_text(json.dumps(root))
    with pytest.raises(glarelite.InvalidInput, match=r"is not supported.*upgrade glarelite"):
        glarelite.open_mirror(tmp_path)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_shard_bytes": -1},
        {"max_bucket_bytes": 1.5},
        {"cache_max_bytes": True},
        {"cache_dir": ""},
    ],
)
def test_new_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(glarelite.InvalidInput):
        glarelite.MirrorSettings(**bad)


def test_a_shard_that_fails_to_load_leaves_nothing_half_loaded(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    """Two artifacts of one name, version and owner (the catalog's uniqueness) in a shard:
    InvalidInput, and the rows inserted before the failure are never listed."""
    shows = seed2.shows("images")
    clash = json.loads(json.dumps(shows[1]).replace("000000000002", "0000000000ff"))
    clash["version"] = shows[0]["version"]
    shows.append(clash)
    treekit.write_tree(tmp_path / "tree", treekit.render(seed2))
    with glarelite.open_mirror(tmp_path / "tree") as m:
        assert len(m.list("charts")) == 1
        for _ in range(2):
            with pytest.raises(glarelite.InvalidInput, match="cannot be loaded"):
                m.list("images")
        with pytest.raises(glarelite.InvalidInput, match="cannot be loaded"):
            m.get(shows[0]["id"])
        assert len(m.list("charts")) == 1


def test_a_signed_format_2_root_pins_buckets_and_shards(
    seed2: treekit.Tree, tmp_path: Path
) -> None:
    """With trusted keys the root comes from index.signed.json; a shard changed and
    re-pinned in an edited index.json (and bucket) fools only a reader without keys."""
    from glarelite import signing

    signing.generate_key(tmp_path / "hub")
    key = signing.load_signing_key(tmp_path / "hub")
    files = treekit.render(seed2)
    files[signing.SIGNED_INDEX] = signing.sign_root(files[tree.ROOT_INDEX], [key])
    seed2.shows("charts")[0]["description"] = "forged"
    forged = treekit.render(seed2)
    forged[signing.SIGNED_INDEX] = files[signing.SIGNED_INDEX]
    treekit.write_tree(tmp_path / "tree", forged)
    keys = [tmp_path / "hub.pub"]
    with glarelite.open_mirror(tmp_path / "tree") as m:  # fooled: what signing is for
        assert m.list("charts").items[0].description == "forged"
    with glarelite.open_mirror(tmp_path / "tree", trusted_keys=keys) as m:
        assert len(m.list("images")) == 2  # the images' files are the signed ones
        with pytest.raises(glarelite.NotFound, match="_buckets/"):  # the signed bucket is gone
            m.list("charts")
    treekit.write_tree(tmp_path / "tree", files)  # the signed generation's files are back
    with glarelite.open_mirror(tmp_path / "tree", trusted_keys=keys) as m:
        assert m.list("charts").items[0].description == ""


def test_a_served_shard_longer_than_its_pin_is_read_no_further(
    seed2: treekit.Tree, origin: Origin
) -> None:
    files = treekit.render(seed2)
    base = treekit.serve_tree(origin, "/tree", files)
    path = treekit.shard_file(files, "images", tree.shard_of("ubuntu"))
    from tests.fixtures.origin import PatternBody

    origin.add(f"/tree/{path}", data=PatternBody(64 << 30), chunked=True)  # endless
    with (
        glarelite.open_mirror(base, settings=FAST) as m,
        pytest.raises(glarelite.ChecksumMismatch, match=path.replace(".", r"\.")),
    ):
        m.list("images")


def test_a_name_in_filter_reads_the_shards_of_those_names_only(origin: Origin) -> None:
    files, _ = _many(400)
    base = treekit.serve_tree(origin, "/tree", files)
    with glarelite.open_mirror(base, settings=FAST) as m:
        found = m.list("charts", filters=["name=in:n1,n150"], sort="name:asc", latest=True)
        assert [(a.name, a.version) for a in found] == [("n1", "1.1.0"), ("n150", "1.1.0")]
        assert len(m.list(filters=["name=n7"])) == 2  # across types: the shard in each type
    shards = sorted(r.path.rsplit("/", 1)[1][:3] for r in origin.requests if "/_shards/" in r.path)
    assert shards == sorted({tree.shard_of("n1"), tree.shard_of("n150"), tree.shard_of("n7")})
