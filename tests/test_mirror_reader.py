"""glarelite.open_mirror over a local tree: the same listings as the catalog, verified
blob reads that name what is missing or wrong, and no writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
)


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    mirror.sync(w.catalog, str(tmp_path / "tree"), **QUICK)
    yield w
    w.catalog.close()


@pytest.fixture
def reader(world: World, tmp_path: Path) -> glarelite.MirrorCatalog:
    with glarelite.open_mirror(tmp_path / "tree") as m:
        yield m


@pytest.mark.parametrize(("type_name", "filters", "sort", "latest"), LISTINGS)
def test_listings_match_the_catalog(
    world: World,
    reader: glarelite.MirrorCatalog,
    type_name: str | None,
    filters: list[str],
    sort: str | None,
    latest: bool,
) -> None:
    expected = listing(world.catalog, type_name, filters + SELECTED, sort, latest)
    assert listing(reader, type_name, filters, sort, latest) == expected
    assert listing(reader, type_name, filters, sort, latest, limit=1) == expected  # paging
    page = reader.list(type_name, filters=filters, sort=sort, latest=latest, limit=1)
    assert page.total == len(expected)


def test_artifacts_and_types_are_the_catalogs(
    world: World, reader: glarelite.MirrorCatalog
) -> None:
    assert [t.name for t in reader.types()] == ["charts", "images"]
    assert reader.get_type("images") == world.catalog.get_type("images")
    for label in ("a1", "a2", "b1", "chart"):
        artifact_id = world.ids[label]
        assert reader.get(artifact_id).to_dict() == world.catalog.get(artifact_id).to_dict()
    for label in ("secret", "draft", "old"):
        with pytest.raises(glarelite.NotFound, match="no artifact"):
            reader.get(world.ids[label])
    with pytest.raises(glarelite.NotFound, match="no artifact type 'nope'"):
        reader.list("nope")
    with pytest.raises(glarelite.InvalidInput):
        reader.list("images", filters=["size=gt:1"])
    assert reader.generation == 1


def test_blobs_read_verified_ranged_and_downloaded(
    world: World, reader: glarelite.MirrorCatalog, tmp_path: Path
) -> None:
    for url, data in world.published_urls().items():
        _, _, _, artifact_id, *slot = url.split("/")
        with reader.open_blob(artifact_id, "/".join(slot)) as f:
            assert f.read() == data
        assert (
            reader.blob_url(artifact_id, "/".join(slot)) == (tmp_path / "tree" / url[1:]).as_uri()
        )
    a1 = world.ids["a1"]
    eu = world.data[f"/artifacts/images/{a1}/regions/eu"]
    with reader.open_blob(a1, "regions/eu", offset=100, length=50) as f:
        assert f.read() == eu[100:150]
    blob = reader.download(a1, "regions/eu", tmp_path / "eu.bin")
    assert (tmp_path / "eu.bin").read_bytes() == eu and blob.size == len(eu)
    with pytest.raises(glarelite.NotFound, match="has no blob regions/xx"):
        reader.open_blob(a1, "regions/xx")


def test_a_missing_or_corrupt_blob_raises_an_error_naming_it(world: World, tmp_path: Path) -> None:
    a1, b1 = world.ids["a1"], world.ids["b1"]
    missing = tree.blob_path("images", a1, "file")
    (tmp_path / "tree" / missing).unlink()
    corrupt = tmp_path / "tree" / tree.blob_path("charts", world.ids["chart"], "package")
    good = corrupt.read_bytes()
    corrupt.write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])  # always other bytes (b"X" was not)
    with glarelite.open_mirror(tmp_path / "tree") as m:
        with pytest.raises(glarelite.NotFound, match=missing):
            m.open_blob(a1, "file")
        with (
            pytest.raises(glarelite.ChecksumMismatch, match=f"{world.ids['chart']}/package"),
            m.open_blob(world.ids["chart"], "package") as f,
        ):
            f.read()
        with m.open_blob(b1, "file") as f:  # the others still read fine
            assert f.read() == world.data[f"/artifacts/images/{b1}/file"]


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("create", ("images", "x")),
        ("update", ("id",)),
        ("upload", ("id", "file", b"x")),
        ("add_location", ("id", "file", "http://x")),
        ("activate", ("id",)),
        ("deactivate", ("id",)),
        ("delete", ("id",)),
        ("define_type", ("t",)),
        ("remove_blob", ("id", "file")),
        ("set_quota", ()),
        ("gc", ()),
    ],
)
def test_writes_are_refused_read_only(
    reader: glarelite.MirrorCatalog, method: str, args: tuple[object, ...]
) -> None:
    with pytest.raises(glarelite.ReadOnly, match="mirror tree, read-only"):
        getattr(reader, method)(*args)


def test_a_shard_that_the_root_does_not_publish_is_refused(world: World, tmp_path: Path) -> None:
    (path,) = (tmp_path / "tree" / "artifacts" / "charts" / "_shards").iterdir()
    path.write_bytes(path.read_bytes() + b" ")
    m = glarelite.open_mirror(tmp_path / "tree")  # lazy: it reads the root only
    with m, pytest.raises(glarelite.VerificationError, match=r"artifacts/charts/_shards/"):
        m.list("charts")


def test_refresh_sees_the_next_generation(world: World, tmp_path: Path) -> None:
    with glarelite.open_mirror(tmp_path / "tree") as m:
        # The reader is lazy: it reads shards as queries need them. Once read, an artifact
        # stays as that generation published it until refresh, although the next
        # generation withdrew it (its files are gone at once: withdrawn means gone).
        assert m.get(world.ids["b1"])
        world.catalog.deactivate(world.ids["b1"])
        mirror.sync(world.catalog, str(tmp_path / "tree"), **QUICK)
        assert m.get(world.ids["b1"])  # still the generation it read
        assert [a.id for a in m.list("images", filters=["name=b"])] == [world.ids["b1"]]
        m.refresh()
        assert m.generation == 2
        with pytest.raises(glarelite.NotFound):
            m.get(world.ids["b1"])


def test_private_artifacts_mirrored_by_name_are_listed(world: World, tmp_path: Path) -> None:
    mirror.sync(world.catalog, str(tmp_path / "t2"), include_private=["s"], **QUICK)
    with glarelite.open_mirror(f"file://{tmp_path / 't2'}") as m:
        assert m.get(world.ids["secret"]).visibility == "private"
        assert [a.name for a in m.list("images", filters=["visibility=private"])] == ["s"]


def test_not_a_tree(tmp_path: Path) -> None:
    with pytest.raises(glarelite.NotFound, match="no mirror tree"):
        glarelite.open_mirror(tmp_path)
    with pytest.raises(glarelite.InvalidInput, match="folder or an http"):
        glarelite.open_mirror("s3://bucket/tree")
    (tmp_path / "index.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(glarelite.InvalidInput, match="format 99 is not supported"):
        glarelite.open_mirror(tmp_path)


def test_a_tree_can_be_mirrored_onwards(world: World, tmp_path: Path) -> None:
    """A site can pass its tree on to a further site: the reader is a catalog source."""
    with glarelite.open_mirror(tmp_path / "tree") as first:
        report = mirror.sync(first, str(tmp_path / "second"), **QUICK)  # type: ignore[arg-type]
        assert report.exit_code == 0 and report.artifacts == 4
        assert mirror.sync(first, str(tmp_path / "second"), **QUICK).nothing_to_do  # type: ignore[arg-type]
    with glarelite.open_mirror(tmp_path / "second") as second:
        for url, data in world.published_urls().items():
            _, _, _, artifact_id, *slot = url.split("/")
            with second.open_blob(artifact_id, "/".join(slot)) as f:
                assert f.read() == data
    assert mirror.check_tree(str(tmp_path / "second")).ok
