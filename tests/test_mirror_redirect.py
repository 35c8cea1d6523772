"""``mirror --externals=redirect`` (issue 20): external blobs stay at their origin; the tree
lists them as before and carries an nginx map include that answers their internal URLs
with a redirect to the verified origin URL; the reader follows exactly that redirect and
still verifies size and sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import urllib3

import glarelite
import mirror
from glarelite import tree
from tests.fixtures.origin import Origin
from tests.fixtures.static import nginx_available, start_nginx
from tests.test_cli import (  # the CLI fixtures: env, run, ready
    Run,
    env_fixture,
    new_id,
    ok,
    one_line_error,
    ready_fixture,
    run_fixture,
)
from tests.test_mirror_support import QUICK, World, build_world, sums_check, sums_text, type_views

__all__ = ["env_fixture", "ready_fixture", "run_fixture"]

INCLUDE = "redirects.nginx.conf"

needs_nginx = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed")


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def _externals(w: World) -> dict[str, str]:
    """Internal URL -> origin URL of every published external blob."""
    out = {}
    published = w.published_urls()
    for label in ("a1", "a2", "chart"):
        for blob in w.catalog.get(w.ids[label]).iter_blobs():
            if blob.external and blob.url in published:
                out[blob.url] = str(blob.external_url)
    return out


def _location(base: str, url: str) -> tuple[int, str]:
    http = urllib3.PoolManager()
    resp = http.request("GET", base + url, redirect=False, retries=False)
    return resp.status, resp.headers.get("Location", "")


def test_redirect_tree_lists_externals_without_copying_them(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    report = mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    assert not report.failed
    externals = _externals(world)
    assert len(externals) == 3
    for url, origin_url in externals.items():
        assert not (root / url.lstrip("/")).exists()  # not copied
        artifact_id = url.split("/")[3]
        kind = url.split("/")[2]
        show = json.loads((root / tree.artifact_index_path(kind, artifact_id)).read_text())
        slot = url.split("/", 4)[4]
        field, _, key = slot.partition("/")
        entry = show["blobs"][field][key] if key else show["blobs"][field]
        assert entry["redirect"] == origin_url
        assert entry["sha256"] == hashlib.sha256(world.data[url]).hexdigest()
        assert entry["size"] == len(world.data[url])
    sums = sums_text(root)
    for url in externals:
        assert url.lstrip("/") not in sums  # only what the tree holds
    for url in set(world.published_urls()) - set(externals):
        assert url.lstrip("/") in sums
    # sha256sum -c checks what the tree holds, and passes
    checked = sums_check(root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = (root / INCLUDE).read_text()
    assert "map $uri $glarelite_redirect" in rules
    for url, origin_url in externals.items():
        assert f'"{url}" "{origin_url}";' in rules
    # copy stays the default: a copy run into another tree holds every external blob
    mirror.sync(world.catalog, str(tmp_path / "copy"), **QUICK)
    assert all((tmp_path / "copy" / u.lstrip("/")).is_file() for u in externals)
    assert not (tmp_path / "copy" / INCLUDE).exists()


@needs_nginx
def test_nginx_redirects_and_the_reader_follows_verified(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    externals = _externals(world)
    with start_nginx(root, redirects=root / INCLUDE) as server:
        for url, origin_url in externals.items():
            assert _location(server.url, url) == (302, origin_url)
        internal = next(u for u in world.published_urls() if u not in externals)
        assert _location(server.url, internal)[0] == 200
        before = len(world.origin.requests)
        with glarelite.open_mirror(server.url) as reader:
            for url, data in world.published_urls().items():
                _, _, _, artifact_id, *slot = url.split("/")
                with reader.open_blob(artifact_id, "/".join(slot)) as f:
                    assert f.read() == data
            # a range of a redirected blob too
            url = next(iter(externals))
            _, _, _, artifact_id, *slot = url.split("/")
            with reader.open_blob(artifact_id, "/".join(slot), offset=5, length=7) as f:
                assert f.read() == world.data[url][5:12]
        assert len(world.origin.requests) > before  # the bytes came from the origin


def test_blob_changed_upstream_is_not_redirected_to(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    a2 = world.ids["a2"]
    url = f"/artifacts/images/{a2}/file"
    origin_url = _externals(world)[url]
    world.origin.add("/a2.img", data=b"other bytes entirely", etag=True, last_modified=True)
    world.catalog.check(rehash=True)
    assert world.catalog.get(a2).blob("file").upstream == "changed"

    report = mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    failed = [f for f in report.failed if a2 in f["path"]]
    assert failed and "changed upstream" in failed[0]["reason"]
    rules = (root / INCLUDE).read_text()
    assert url not in rules and origin_url not in rules
    assert a2 not in {a["id"] for a in type_views(root, "images")}
    with glarelite.open_mirror(root) as reader:
        with pytest.raises(glarelite.NotFound):
            reader.get(a2)
        assert reader.get(world.ids["a1"])  # the others stay


@needs_nginx
def test_tampered_redirect_fails_at_the_reader(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    externals = _externals(world)
    a2_url = f"/artifacts/images/{world.ids['a2']}/file"
    chart_origin = externals[f"/artifacts/charts/{world.ids['chart']}/package"]
    b1_url = f"/artifacts/images/{world.ids['b1']}/file"
    rules = (root / INCLUDE).read_text()
    include = tmp_path / "tampered.conf"
    # 1. to another origin URL (other bytes): not the recorded origin, refused
    original = f'"{a2_url}" "{externals[a2_url]}";'
    include.write_text(rules.replace(original, f'"{a2_url}" "{chart_origin}";'))
    with start_nginx(root, redirects=include) as server:
        assert _location(server.url, a2_url) == (302, chart_origin)
        with (
            glarelite.open_mirror(server.url) as reader,
            pytest.raises(glarelite.RefusedLocation, match="recorded origin"),
        ):
            reader.open_blob(world.ids["a2"], "file").read()
    # 2. to another file under the tree's base: followed, and the bytes fail verification
    include.write_text(rules.replace(original, f'"{a2_url}" "{b1_url}";'))
    with (
        start_nginx(root, redirects=include) as server,
        glarelite.open_mirror(server.url) as reader,
        pytest.raises(glarelite.ChecksumMismatch),
        reader.open_blob(world.ids["a2"], "file") as f,
    ):
        while f.read(65536):
            pass


def test_internal_blob_redirected_off_base_is_still_refused(
    world: World, tmp_path: Path, origin: Origin
) -> None:
    """The issue 13 rule stays for what the index does not mark as redirected."""
    root = tmp_path / "tree"
    mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    b1_url = f"/artifacts/images/{world.ids['b1']}/file"
    include = tmp_path / "evil.conf"
    include.write_text(
        "map_hash_bucket_size 128;\n"
        'map $uri $glarelite_redirect {\n    default "";\n'
        f'    "{b1_url}" "{origin.url("/a2.img")}";\n}}\n'
    )
    if not nginx_available():
        pytest.skip("nginx is not installed")
    with (
        start_nginx(root, redirects=include) as server,
        glarelite.open_mirror(server.url) as reader,
        pytest.raises(glarelite.RefusedLocation, match="outside the mirror"),
    ):
        reader.open_blob(world.ids["b1"], "file").read()


def test_a_redirected_blob_in_a_local_tree_is_named_missing(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    with (
        glarelite.open_mirror(root) as reader,
        pytest.raises(glarelite.NotFound, match="redirect"),
    ):
        reader.open_blob(world.ids["a2"], "file")


def test_switching_modes_rewrites_the_tree(world: World, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    mirror.sync(world.catalog, str(root), **QUICK)
    assert not mirror.sync(world.catalog, str(root), **QUICK).copied
    report = mirror.sync(world.catalog, str(root), externals="redirect", **QUICK)
    assert not report.nothing_to_do and (root / INCLUDE).is_file()
    assert mirror.sync(world.catalog, str(root), externals="redirect", **QUICK).nothing_to_do
    report = mirror.sync(world.catalog, str(root), **QUICK)
    assert not report.nothing_to_do and not (root / INCLUDE).exists()
    with glarelite.open_mirror(root) as reader:
        for url, data in world.published_urls().items():
            _, _, _, artifact_id, *slot = url.split("/")
            with reader.open_blob(artifact_id, "/".join(slot)) as f:
                assert f.read() == data


def test_externals_option_is_validated() -> None:
    with pytest.raises(glarelite.InvalidInput, match="externals"):
        mirror.SyncOptions(externals="link")
    assert mirror.SyncOptions().externals == "copy"


def test_cli_externals_redirect_and_check(ready: Run, tmp_path: Path) -> None:
    artifact_id = new_id(ready, "remote", "--set", "os=linux")
    with Origin() as server:
        server.add("/r", data=b"remote bytes")
        ok(ready("add-location", artifact_id, "file", server.url("/r")))
        ok(ready("activate", artifact_id))
        ok(ready("publish", artifact_id))
        root = tmp_path / "t"
        ok(ready("mirror", str(root), "--externals=redirect"))
        assert not (root / f"artifacts/images/{artifact_id}/file").exists()
        rules = (root / INCLUDE).read_text()
        assert f'"/artifacts/images/{artifact_id}/file" "{server.url("/r")}";' in rules
        # the tree checks clean: a redirected blob is no missing file, no SHA256SUMS line
        ok(ready("mirror", str(root), "--check"))
    err = one_line_error(ready("mirror", str(tmp_path / "u"), "--externals=link"), 2)
    assert "externals must be one of copy, redirect" in err
    err = one_line_error(ready("mirror", str(root), "--check", "--externals=redirect"), 2)
    assert "--externals" in err
