"""The streaming walk crossing many pages (issue 18): with tiny ``walk.PAGE``,
``walk.WINDOW`` and ``report.LIST_MAX``, a few dozen artifacts cross dozens of pages,
windows and list limits. Whatever the paging, a run must publish the same tree as one
page holding everything: withdrawals, artifacts kept as the previous generation had
them, renamed ones, links whose target is planned in a later page (or only through a
link), and artifacts two selection queries both return."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import tree
from mirror import report as mirror_report
from tests.fixtures.origin import Origin
from tests.test_mirror_support import FAST, NO_GRACE, sums_check, tree_files, type_views

walk = sys.modules["mirror.walk"]

IMAGES = 30
CHARTS = 8


def _root_without_time(raw: bytes) -> Any:
    data = json.loads(raw)
    data.pop("generated_at", None)
    return data


def _comparable(root: Path) -> dict[str, Any]:
    """The tree's files, the root's timestamp aside (the two trees are written at
    different moments)."""
    files: dict[str, Any] = dict(tree_files(root))
    for name in (tree.ROOT_INDEX,):
        if name in files:
            files[name] = _root_without_time(files[name])
    return files


def _open(path: Path) -> glarelite.Catalog:
    return glarelite.open(
        path / "catalog.db",
        storage=str(path / "blobs"),
        allow_hosts=["127.0.0.1"],
        settings=glarelite.CatalogSettings(http=FAST),
    )


class Site:
    """One catalog mirrored into two trees: ``small`` with tiny pages, ``big`` with one
    page for everything."""

    def __init__(self, tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.origin = origin
        self.monkeypatch = monkeypatch
        self.cat = _open(tmp_path)
        self.small = tmp_path / "small"
        self.big = tmp_path / "big"
        self.ids: dict[str, str] = {}

    def sync_both(self, **options: Any) -> tuple[mirror.SyncReport, mirror.SyncReport]:
        with self.monkeypatch.context() as m:
            m.setattr(walk, "PAGE", 3)
            m.setattr(walk, "WINDOW", 2)
            m.setattr(walk, "BATCH_MAX", 2)
            m.setattr(mirror_report, "LIST_MAX", 2)
            small = mirror.sync(self.cat, str(self.small), workers=2, **NO_GRACE, **options)
        with self.monkeypatch.context() as m:
            m.setattr(walk, "PAGE", 100_000)
            m.setattr(walk, "WINDOW", 100_000)
            big = mirror.sync(self.cat, str(self.big), workers=2, **NO_GRACE, **options)
        return small, big

    def reopen_with(self, change: Callable[[sqlite3.Connection], None]) -> None:
        """Change the catalog's database behind its back (what a catalog restored from
        elsewhere, or a tree mirrored onwards, may show)."""
        self.cat.close()
        conn = sqlite3.connect(self.tmp / "catalog.db")
        with conn:
            change(conn)
        conn.close()
        self.cat = _open(self.tmp)


# A change moves updated_at (the mirror's fingerprint of an artifact follows it).
LATER = "updated_at = '2099' || substr(updated_at, 5)"


def _same(
    site: Site, small: mirror.SyncReport, big: mirror.SyncReport, damaged: tuple[str, ...] = ()
) -> None:
    for report in (small, big):
        assert report.mode == "walk"
    keys = (
        "exit_code",
        "copied_count",
        "repaired_count",
        "failed_count",
        "artifacts",
        "blobs",
        "skipped",
        "retained",
        "generation",
    )
    assert {k: getattr(small, k) for k in keys} == {k: getattr(big, k) for k in keys}
    assert sorted(w["id"] for w in small.withdrawn) == sorted(w["id"] for w in big.withdrawn)
    assert sorted(small.deleted) == sorted(big.deleted)
    assert _comparable(site.small) == _comparable(site.big)
    faults = {}
    for root in (site.small, site.big):
        checked = mirror.check_tree(str(root))
        faults[root.name] = [(f["path"], f["kind"]) for f in checked.faults]
    # a file whose bytes could not be had again stays damaged (or missing), and only it
    for found in faults.values():
        assert sorted({p for p, _ in found}) == sorted(damaged), faults
    if not damaged:
        for root in (site.small, site.big):
            done = sums_check(root)
            assert done.returncode == 0, done.stdout + done.stderr


def _build(site: Site) -> None:
    cat, origin = site.cat, site.origin
    cat.define_type("images", blobs=["file"], blob_dicts=["regions"])
    cat.define_type("charts", blobs=["package"], properties={"image": glarelite.Property("link")})
    for n in range(IMAGES):
        # every fifth one is left out by the tag filter: it comes only through a link
        tags = ["other"] if n % 5 == 4 else ["sel"]
        a = cat.create("images", f"img-{n:02d}", version="1.0", tags=tags)
        site.ids[f"img{n}"] = a.id
        cat.upload(a.id, "file", f"image {n}".encode() * 40)
        if n % 3 == 0:  # external: can be made to fail at the origin
            origin.add(f"/ext-{n}", data=f"external {n}".encode() * 50, etag=True)
            cat.add_location(a.id, "regions/eu", origin.url(f"/ext-{n}"))
        if n % 7 == 0:  # the same bytes as another artifact's blob
            cat.upload(a.id, "regions/us", b"shared" * 100)
        cat.activate(a.id)
        if n % 10 != 9:
            cat.publish(a.id)
    for n in range(IMAGES):
        if n % 10 == 9:  # private, selected by name; one of them only via a link
            site.ids[f"priv{n}"] = site.ids[f"img{n}"]
    for n in range(CHARTS):
        # links reach forward and back across the pages of images
        target = site.ids[f"img{(n * 5 + 4) % IMAGES}"]
        c = cat.create(
            "charts", f"chart-{n}", version="1.0", tags=["sel"], properties={"image": target}
        )
        site.ids[f"chart{n}"] = c.id
        cat.upload(c.id, "package", f"chart {n}".encode() * 30)
        cat.activate(c.id)
        cat.publish(c.id)


SELECTION: dict[str, Any] = {
    "tags": ["sel"],
    # img-09 is private and named; img-03 is public and named too: both queries return it
    "include_private": ["img-09", "img-03"],
}


def test_paged_walks_publish_the_same_tree_as_one_page(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(tmp_path, origin, monkeypatch)
    _build(site)
    try:
        # 1. first mirror
        small, big = site.sync_both(**SELECTION)
        _same(site, small, big)
        assert small.exit_code == 0 and len(small.copied) == 2 < small.copied_count
        views = {v["id"] for v in type_views(site.small, "images")}
        assert site.ids["img9"] in views  # private, named
        assert site.ids["img4"] in views  # only through a link
        assert site.ids["img19"] not in views  # private, not named

        # 2. withdrawals across pages; one external blob gone at the origin for an
        # artifact that changed (kept as before); a tree file damaged whose bytes cannot
        # be had again (kept as before)
        cat = site.cat
        for n in (1, 8, 14, 22):
            cat.deactivate(site.ids[f"img{n}"])
        cat.update(site.ids["img6"], add_tags=["changed"])
        origin.add("/ext-6", status=404)
        origin.add("/ext-12", status=500)
        damaged = tree.blob_path("images", site.ids["img12"], "regions", "eu")
        lost = tree.blob_path("images", site.ids["img6"], "regions", "eu")
        for root in (site.small, site.big):
            (root / lost).unlink()
            (root / damaged).write_bytes(b"damaged")
        small, big = site.sync_both(delete=True, verify=True, **SELECTION)
        _same(site, small, big, damaged=(damaged, lost))
        assert small.failed_count >= 2 and small.exit_code != 0
        views = {v["id"]: v for v in type_views(site.small, "images")}
        assert site.ids["img6"] in views and "changed" not in views[site.ids["img6"]]["tags"]
        assert site.ids["img12"] in views
        assert site.ids["img1"] not in views and site.ids["img8"] not in views

        # 3. the origin is back; two artifacts renamed behind the catalog's back (their
        # shard moves); the selection changes
        origin.add("/ext-6", data=b"external 6" * 50, etag=True)
        origin.add("/ext-12", data=b"external 12" * 50, etag=True)
        renamed = [site.ids["img2"], site.ids["img16"]]

        def rename(conn: sqlite3.Connection) -> None:
            for i, artifact_id in enumerate(renamed):
                conn.execute(
                    f"UPDATE artifacts SET name = ?, {LATER} WHERE id = ?",
                    (f"renamed-{i}", artifact_id),
                )

        site.reopen_with(rename)
        small, big = site.sync_both(delete=True, verify=True, **SELECTION)
        _same(site, small, big)
        assert small.exit_code == 0, small.failed
        names = {v["id"]: v["name"] for v in type_views(site.small, "images")}
        assert names[renamed[0]] == "renamed-0" and names[renamed[1]] == "renamed-1"

        # 4. a narrower selection, pruned
        small, big = site.sync_both(delete=True, force=True, tags=["sel"])
        _same(site, small, big)
        views = {v["id"] for v in type_views(site.small, "images")}
        assert site.ids["img9"] not in views and site.ids["img3"] in views
    finally:
        site.cat.close()


def test_a_renamed_artifact_kept_as_before_is_published_once_under_its_old_name(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed (its shard moves) while its new bytes cannot be had: it stays as the
    previous generation published it, in the previous name's shard only; paged or not."""
    site = Site(tmp_path, origin, monkeypatch)
    _build(site)
    try:
        small, big = site.sync_both(**SELECTION)
        _same(site, small, big)
        moved = [site.ids["img3"], site.ids["img15"], site.ids["img21"]]  # external blobs
        for n in (3, 15, 21):
            origin.add(f"/ext-{n}", status=404)

        def rename(conn: sqlite3.Connection) -> None:
            for artifact_id in moved:
                conn.execute(
                    f"UPDATE artifacts SET name = 'zz-' || name, {LATER} WHERE id = ?",
                    (artifact_id,),
                )

        site.reopen_with(rename)
        lost = [tree.blob_path("images", a, "regions", "eu") for a in moved]
        for root in (site.small, site.big):
            for path in lost:
                (root / path).unlink()
        small, big = site.sync_both(delete=True, **SELECTION)
        _same(site, small, big, damaged=tuple(lost))
        assert small.failed_count == 3
        for root in (site.small, site.big):
            views = type_views(root, "images")
            ids = [v["id"] for v in views]
            assert len(ids) == len(set(ids))
            names = {v["id"]: v["name"] for v in views}
            assert [names[a] for a in moved] == ["img-03", "img-15", "img-21"]
    finally:
        site.cat.close()


def _stored(site: Site, data: bytes) -> Path:
    """The catalog's own stored file holding ``data``."""
    found = [p for p in (site.tmp / "blobs").rglob("*") if p.is_file() and p.read_bytes() == data]
    assert len(found) == 1
    return found[0]


def test_switching_to_redirect_and_back_across_pages_publishes_the_same_tree(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copy, then redirect mode (an artifact kept as before: its internal blob cannot be
    had; one withheld: its origin's bytes changed), then copy again: paged or not, the
    same tree, every time whole."""
    site = Site(tmp_path, origin, monkeypatch)
    _build(site)
    try:
        small, big = site.sync_both(**SELECTION)
        _same(site, small, big)

        cat = site.cat
        data = b"image 5" * 40
        stored = _stored(site, data)
        aside = tmp_path / "aside"
        stored.rename(aside)
        cat.update(site.ids["img5"], add_tags=["changed"])
        lost = tree.blob_path("images", site.ids["img5"], "file")
        for root in (site.small, site.big):
            (root / lost).unlink()
        origin.add("/ext-18", data=b"other bytes entirely", etag=True)
        cat.check(rehash=True)
        small, big = site.sync_both(externals="redirect", **SELECTION)
        _same(site, small, big, damaged=(lost,))
        assert small.failed_count == 2
        views = {v["id"]: v for v in type_views(site.small, "images")}
        assert "changed" not in views[site.ids["img5"]]["tags"]  # as before
        assert site.ids["img18"] not in views  # withheld: no redirect to other bytes
        redirected = [
            b for v in views.values() for _f, _k, b in tree.iter_blob_entries(v) if "redirect" in b
        ]
        assert redirected

        aside.rename(stored)
        small, big = site.sync_both(delete=True, **SELECTION)
        _same(site, small, big)
        views = {v["id"]: v for v in type_views(site.small, "images")}
        assert "changed" in views[site.ids["img5"]]["tags"]
        assert not [
            b for v in views.values() for _f, _k, b in tree.iter_blob_entries(v) if "redirect" in b
        ]
    finally:
        site.cat.close()


def test_bytes_already_in_the_tree_are_linked_from_another_page_not_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New artifacts holding bytes another artifact's file already has, planned in other
    pages (one a page) and windows: hard-linked from the tree, nothing fetched."""
    from tests.test_mirror_support import define_types, open_catalog

    monkeypatch.setattr(walk, "PAGE", 1)
    monkeypatch.setattr(walk, "WINDOW", 1)
    cat = open_catalog(tmp_path)
    define_types(cat)
    data = b"the same bytes" * 300
    try:
        for n in range(5):
            a = cat.create("charts", f"c{n}", version="1.0")
            cat.upload(a.id, "package", data if n == 2 else f"own {n}".encode())
            cat.activate(a.id)
            cat.publish(a.id)
        dest = tmp_path / "tree"
        assert mirror.sync(cat, str(dest), fsync=False, **NO_GRACE).exit_code == 0
        for name in ("a-first", "z-last"):  # planned before and after the holder
            a = cat.create("charts", name, version="1.0")
            cat.upload(a.id, "package", data)
            cat.activate(a.id)
            cat.publish(a.id)
        report = mirror.sync(cat, str(dest), fsync=False, delete=True, **NO_GRACE)
    finally:
        cat.close()
    assert (report.exit_code, report.mode, report.bytes_fetched) == (0, "walk", 0)
    assert [c["how"] for c in report.copied] == ["linked", "linked"]
    assert mirror.check_tree(str(dest)).ok


def test_a_format1_upgrade_in_pages_keeps_an_artifact_as_before_and_withdraws(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The format 1 -> 2 upgrade, one artifact a page: one changed artifact whose bytes
    cannot be had stays as the format 1 tree had it (its index rewritten in format 2),
    one deactivated is withdrawn; the lost file is the check's only fault."""
    from tests.test_mirror_format2 import to_format1
    from tests.test_mirror_support import QUICK, build_world

    w = build_world(tmp_path, origin)
    cat, dest, a2 = w.catalog, tmp_path / "tree", w.ids["a2"]
    try:
        assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
        to_format1(dest)
        cat.update(a2, add_tags=["later"])
        origin.add("/a2.img", status=404)
        lost = tree.blob_path("images", a2, "file")
        (dest / lost).unlink()
        cat.deactivate(w.ids["b1"])
        monkeypatch.setattr(walk, "PAGE", 1)
        monkeypatch.setattr(walk, "WINDOW", 1)
        report = mirror.sync(cat, str(dest), **NO_GRACE)
    finally:
        cat.close()
    assert (report.mode, report.kept) == ("walk", [a2])
    assert [x["id"] for x in report.withdrawn] == [w.ids["b1"]]
    faults = mirror.check_tree(str(dest)).faults
    assert [(f["path"], f["kind"]) for f in faults] == [(lost, "missing")]
    views = {v["id"]: v for v in type_views(dest, "images")}
    assert views[a2]["tags"] == ["linux"]
    own = json.loads((dest / tree.artifact_index_path("images", a2)).read_text())
    assert own["mirror"]["format_version"] == tree.FORMAT_VERSION and own["tags"] == ["linux"]
