"""mirror.sync into a local folder: what the tree holds, what it never holds, incremental
reruns, pruning, dry runs, verification and the report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import glarelite
import mirror
from glarelite import tree
from mirror.dest import open_dest
from mirror.lock import TreeLock
from mirror.state import STATE
from tests.fixtures.origin import Origin
from tests.test_mirror_support import (
    NO_GRACE,
    QUICK,
    RecordingProgress,
    World,
    build_world,
    origin_gets,
    sha,
    sums_check,
    sums_text,
    temporaries,
    tree_files,
    type_views,
)


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def root_index(dest: Path) -> dict:
    return json.loads((dest / "index.json").read_text())


def type_ids(dest: Path, type_name: str) -> set[str]:
    return {a["id"] for a in type_views(dest, type_name)}


def test_tree_holds_every_selected_blob_at_its_internal_url(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    report = mirror.sync(world.catalog, str(dest), **QUICK)
    assert (report.exit_code, report.status, report.failed) == (0, "ok", [])
    assert (report.artifacts, report.blobs, report.generation) == (4, 6, 1)

    files = tree_files(dest)
    for url, data in world.published_urls().items():
        assert files[url.lstrip("/")] == data, url
    # Same bytes at two paths are stored once: a hard link.
    a1_us = dest / tree.blob_path("images", world.ids["a1"], "regions", "us")
    b1_file = dest / tree.blob_path("images", world.ids["b1"], "file")
    assert a1_us.stat().st_ino == b1_file.stat().st_ino
    assert sorted(c["how"] for c in report.copied).count("linked") == 1
    assert report.bytes_fetched == sum(len(d) for d in world.published_urls().values()) - len(
        b1_file.read_bytes()
    )

    # Indexes: root, per type (full show views), per artifact (show view + mirror key).
    root = root_index(dest)
    assert root["format_version"] == tree.FORMAT_VERSION
    assert root["counts"] == {
        "types": 2,
        "artifacts": 4,
        "blobs": 6,
        "bytes": sum(len(d) for d in world.published_urls().values()),
    }
    assert set(root["types"]) == {"images", "charts"}
    assert root["generation"] == 1 and root["types"]["images"]["artifacts"] == 3
    by_id = {a["id"]: a for a in type_views(dest, "images")}
    assert set(by_id) == {world.ids[k] for k in ("a1", "a2", "b1")}
    for artifact_id, show in by_id.items():
        assert show == world.catalog.get(artifact_id).to_dict()
        own = json.loads((dest / tree.artifact_index_path("images", artifact_id)).read_text())
        assert own.pop("mirror") == {"format_version": tree.FORMAT_VERSION, "generation": 1}
        assert own == show
    assert type_ids(dest, "charts") == {world.ids["chart"]}

    # tree.SUMS_CHECK in the tree checks every blob, the shard files and the bucket
    # files (so that it has a line to check even in a tree that publishes no artifact);
    # nothing else.
    sums = sums_text(dest).splitlines()
    shards = [str(p.relative_to(dest)) for p in sorted((dest / "artifacts").glob("*/_*/*.json"))]
    assert sorted(line.split("  ")[1] for line in sums) == sorted(
        [u.lstrip("/") for u in world.published_urls()] + shards
    )
    done = sums_check(dest)
    assert done.returncode == 0, done.stderr
    assert mirror.check_tree(str(dest)).ok


def test_nothing_unpublishable_leaks_into_the_tree(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    mirror.sync(world.catalog, str(dest), **QUICK)
    text = b"\n".join(tree_files(dest).values())
    hidden = [world.ids[k] for k in ("secret", "draft", "old")]
    for artifact_id in hidden:
        assert artifact_id.encode() not in text
        assert not (dest / "artifacts/images" / artifact_id).exists()
    for secret in (b"private bytes", b"draft bytes", b"old bytes", b"alice"):
        assert secret not in text
    # No storage location (a path, a bucket) appears anywhere in the tree.
    assert str(tmp_path / "blobs").encode() not in text
    assert b"blobs/sha256" not in text


def test_selection_by_type_tag_name_and_private_names(world: World, tmp_path: Path) -> None:
    ids = world.ids
    cat = world.catalog
    r = mirror.sync(cat, str(tmp_path / "t1"), types=["images"], tags=["linux"], **QUICK)
    assert r.exit_code == 0
    assert type_ids(tmp_path / "t1", "images") == {ids["a1"], ids["a2"]}
    assert set(root_index(tmp_path / "t1")["types"]) == {"images"}

    mirror.sync(cat, str(tmp_path / "t2"), names=["b", "c"], **QUICK)
    assert type_ids(tmp_path / "t2", "images") == {ids["b1"]}
    assert type_ids(tmp_path / "t2", "charts") == {ids["chart"]}

    # Private artifacts only by name; drafted and deactivated ones never.
    mirror.sync(cat, str(tmp_path / "t3"), include_private=["s", "d", "o"], **QUICK)
    assert type_ids(tmp_path / "t3", "images") == {ids["a1"], ids["a2"], ids["b1"], ids["secret"]}
    secret_file = tree.blob_path("images", ids["secret"], "file")
    assert (tmp_path / "t3" / secret_file).read_bytes() == b"private bytes"

    # names narrows the private names too
    mirror.sync(cat, str(tmp_path / "t4"), names=["a"], include_private=["s"], **QUICK)
    assert type_ids(tmp_path / "t4", "images") == {ids["a1"], ids["a2"]}

    with pytest.raises(glarelite.NotFound, match="no artifact type 'nope'"):
        mirror.sync(cat, str(tmp_path / "t5"), types=["nope"])


def test_rerun_with_nothing_to_do_fetches_zero_bytes(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    mirror.sync(world.catalog, str(dest), **QUICK)
    before = tree_files(dest)
    root_mtime = (dest / "index.json").stat().st_mtime_ns
    gets = len(origin_gets(world.origin))

    report = mirror.sync(world.catalog, str(dest), **QUICK)
    assert report.nothing_to_do and report.status == "nothing-to-do"
    assert (report.exit_code, report.copied, report.bytes, report.bytes_fetched) == (0, [], 0, 0)
    assert report.skipped == 6 and report.generation == 1
    assert len(origin_gets(world.origin)) == gets  # not one request upstream
    assert tree_files(dest) == before
    assert (dest / "index.json").stat().st_mtime_ns == root_mtime


def test_rerun_copies_only_what_changed(world: World, tmp_path: Path) -> None:
    cat, dest = world.catalog, tmp_path / "tree"
    mirror.sync(cat, str(dest), **QUICK)
    gets = len(origin_gets(world.origin))
    charts = root_index(dest)["types"]["charts"]

    # A metadata change: indexes rewritten, no blob read.
    cat.update(world.ids["a1"], description="now documented")
    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.published and report.copied == [] and report.bytes_fetched == 0
    assert report.generation == 2 and report.skipped == 6
    own = json.loads((dest / tree.artifact_index_path("images", world.ids["a1"])).read_text())
    assert own["description"] == "now documented" and own["mirror"]["generation"] == 2
    untouched = json.loads((dest / tree.artifact_index_path("images", world.ids["b1"])).read_text())
    assert untouched["mirror"]["generation"] == 1
    assert root_index(dest)["types"]["charts"] == charts  # its shards and buckets as they were
    assert len(origin_gets(world.origin)) == gets

    # A new artifact: only its blob is fetched.
    new = cat.create("charts", "n", version="1.0")
    world.external(new.id, "package", "/n.tgz", b"new chart" * 100)
    cat.activate(new.id)
    cat.publish(new.id)
    gets = len(origin_gets(world.origin))
    report = mirror.sync(cat, str(dest), **QUICK)
    assert [c["path"] for c in report.copied] == [tree.blob_path("charts", new.id, "package")]
    assert origin_gets(world.origin)[gets:] == ["/n.tgz"]
    assert type_ids(dest, "charts") == {world.ids["chart"], new.id}
    assert mirror.check_tree(str(dest)).ok


def test_deselected_artifacts_leave_the_indexes_and_delete_prunes_them(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    b1_dir = dest / "artifacts/images" / ids["b1"]
    a1_us = dest / tree.blob_path("images", ids["a1"], "regions", "us")

    # b1 (name "b") falls out of the selection; the catalog still publishes it.
    # (An artifact the catalog withdraws leaves without delete: tests/test_mirror_heal.py.)
    narrow = {"names": ["a", "c"], **QUICK}
    report = mirror.sync(cat, str(dest), **narrow)
    assert report.exit_code == 0 and report.retained == 2  # its blob and its index
    assert report.withdrawn == []
    assert ids["b1"] not in type_ids(dest, "images")
    assert ids["b1"] not in sums_text(dest)
    assert (b1_dir / "file").exists()  # kept until delete=True
    assert mirror.check_tree(str(dest)).ok

    report = mirror.sync(cat, str(dest), delete=True, **narrow)
    assert report.exit_code == 0 and report.prune.startswith("done")
    assert report.deleted == [
        tree.artifact_index_path("images", ids["b1"]),  # indexes first
        tree.blob_path("images", ids["b1"], "file"),
    ]
    assert not b1_dir.exists()
    assert a1_us.read_bytes() == world.data["/" + a1_us.relative_to(dest).as_posix()]
    assert mirror.check_tree(str(dest)).ok
    assert mirror.sync(cat, str(dest), delete=True, **narrow).nothing_to_do


def test_delete_never_touches_files_the_tree_did_not_write(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    foreign = {
        "README.txt": b"site notes",
        "artifacts/images/notes.txt": b"type notes",
        f"artifacts/images/{ids['b1']}/extra.txt": b"inside an artifact folder",
        f"artifacts/images/{ids['a2']}/file.orig": b"a look-alike",
        "other/deep/file.bin": b"another tool's data",
        f"artifacts/images/{ids['secret']}/file": b"not ours though it looks like a blob",
    }
    for rel, data in foreign.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    mirror.sync(cat, str(dest), **QUICK)
    cat.deactivate(ids["b1"])
    cat.deactivate(ids["a2"])
    report = mirror.sync(cat, str(dest), names=["b", "c"], delete=True, **QUICK)  # a1 deselected
    # a2 and b1 withdrawn (their blob and index each), a1 pruned (3 blobs, an index)
    assert report.exit_code == 0 and len(report.deleted) == 4
    assert sum(len(w["files"]) for w in report.withdrawn) == 4
    files = tree_files(dest)
    for rel, data in foreign.items():
        assert files[rel] == data, rel
    assert not (dest / tree.blob_path("images", ids["b1"], "file")).exists()
    assert (dest / "artifacts/images" / ids["b1"] / "extra.txt").exists()


def test_prune_refuses_to_empty_the_tree_and_respects_max_delete(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)

    report = mirror.sync(cat, str(dest), names=["a", "c"], delete=True, max_delete=1, **QUICK)
    assert report.exit_code == mirror.EXIT_PRUNE_REFUSED and report.status == "prune-refused"
    assert "max_delete=1" in report.prune and report.deleted == []
    assert len(report.would_delete) == 2
    assert (dest / tree.blob_path("images", ids["b1"], "file")).exists()

    # A selection that matches nothing while the catalog still publishes the tree's
    # artifacts (a typo?): refused whole, delete or not; nothing published or deleted.
    before = tree_files(dest)
    for options in ({}, {"delete": True}):
        report = mirror.sync(cat, str(dest), names=["no such name"], **options, **QUICK)
        assert report.exit_code == mirror.EXIT_PRUNE_REFUSED and report.status == "refused"
        assert "force" in report.refused and report.prune == "not asked"
        assert tree_files(dest) == before  # nothing published, nothing deleted

    report = mirror.sync(
        cat, str(dest), names=["no such name"], delete=True, force=True, **NO_GRACE
    )
    assert report.exit_code == 0 and report.artifacts == 0
    # no artifact left: no blob, no artifact index, no shard; one empty bucket per type
    files = sorted(p for p in tree_files(dest) if p.startswith("artifacts/"))
    assert [p.split("/")[:3] for p in files] == [
        ["artifacts", "charts", "_buckets"],
        ["artifacts", "images", "_buckets"],
    ]
    assert sums_check(dest).returncode == 0
    assert mirror.check_tree(str(dest)).ok


def test_dry_run_reports_and_changes_nothing(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    report = mirror.sync(cat, str(dest), dry_run=True, **QUICK)
    assert report.status == "dry-run" and not dest.exists()
    assert sorted(c["path"] for c in report.would_copy) == sorted(
        u.lstrip("/") for u in world.published_urls()
    )
    assert len(origin_gets(world.origin)) == 3  # the three registrations only

    mirror.sync(cat, str(dest), **QUICK)
    state = (dest / STATE).read_bytes()
    before = tree_files(dest)
    report = mirror.sync(cat, str(dest), names=["a", "c"], dry_run=True, delete=True, **QUICK)
    assert report.would_delete == [
        tree.artifact_index_path("images", ids["b1"]),
        tree.blob_path("images", ids["b1"], "file"),
    ]
    assert report.deleted == [] and report.would_copy == []
    assert tree_files(dest) == before
    assert (dest / STATE).read_bytes() == state


def test_changed_upstream_is_refused_and_reported_and_good_copies_stay(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids, origin = world.catalog, tmp_path / "tree", world.ids, world.origin
    mirror.sync(cat, str(dest), **QUICK)
    a2_file = dest / tree.blob_path("images", ids["a2"], "file")
    good = a2_file.read_bytes()

    # A new artifact whose upstream changes between registration and mirroring.
    new = cat.create("images", "n", version="1.0", properties={"os": "linux"})
    world.external(new.id, "file", "/n.img", b"registered bytes" * 100)
    cat.activate(new.id)
    cat.publish(new.id)
    origin.add("/n.img", data=b"tampered bytes!!" * 100, ranges=True)
    origin.add("/a2.img", data=b"changed too", ranges=True)  # a2 is mirrored already
    gets = len(origin_gets(origin))

    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.exit_code == mirror.EXIT_VERIFICATION and report.status == "failed"
    (failure,) = report.failed
    assert failure["path"] == tree.blob_path("images", new.id, "file")
    assert failure["error"] == "ChecksumMismatch" and "sha256" in failure["reason"]
    assert not (dest / failure["path"]).exists() and temporaries(dest) == []
    assert new.id not in type_ids(dest, "images")  # not published
    assert new.id not in sums_text(dest)
    assert a2_file.read_bytes() == good
    assert origin_gets(origin)[gets:] == ["/n.img"]  # the good copy was not re-fetched
    assert json.loads(json.dumps(report.to_dict()))["failed"] == report.failed

    # The tree's memory lost: files already in place are re-hashed and kept, not fetched.
    (dest / STATE).unlink()
    gets = len(origin_gets(origin))
    report = mirror.sync(cat, str(dest), **QUICK)
    assert a2_file.read_bytes() == good
    assert origin_gets(origin)[gets:] == ["/n.img"]  # only the failing one
    assert report.failed[0]["path"] == tree.blob_path("images", new.id, "file")
    assert ids["a2"] in type_ids(dest, "images")
    assert mirror.check_tree(str(dest)).ok


def test_verify_rehashes_reports_corruption_and_repair_replaces(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    a1_file = dest / tree.blob_path("images", ids["a1"], "file")
    good = a1_file.read_bytes()
    st = a1_file.stat()
    a1_file.write_bytes(bytes(b ^ 1 for b in good))  # same size, and the same mtime:
    os.utime(a1_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # only a re-hash can tell

    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do
    # The tree is the mirror's own (issue 16): other bytes there are replaced, reported.
    report = mirror.sync(cat, str(dest), verify=True, **QUICK)
    assert report.exit_code == 0 and report.failed == []
    assert "held different bytes" in report.repaired[0]["reason"]
    assert [r["path"] for r in report.repaired] == [a1_file.relative_to(dest).as_posix()]
    assert a1_file.read_bytes() == good
    assert ids["a1"] in type_ids(dest, "images")
    assert mirror.check_tree(str(dest)).ok


def test_a_missing_or_touched_file_is_noticed_without_verify(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    mirror.sync(cat, str(dest), **QUICK)
    gone = dest / tree.blob_path("charts", ids["chart"], "package")
    gone.unlink()
    touched = dest / tree.blob_path("images", ids["a2"], "file")
    os.utime(touched, ns=(1, 1))
    gets = len(origin_gets(world.origin))

    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.exit_code == 0
    assert [(r["path"], r["reason"]) for r in report.repaired] == [
        (gone.relative_to(dest).as_posix(), "was missing from the tree")
    ]
    assert origin_gets(world.origin)[gets:] == ["/c.tgz"]  # the touched one was re-hashed
    assert gone.read_bytes() == world.data["/" + gone.relative_to(dest).as_posix()]
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do


def test_flaky_upstream_is_retried_and_resumed(world: World, tmp_path: Path) -> None:
    origin = world.origin
    body = origin.add("/a2.img", data=world.data[f"/artifacts/images/{world.ids['a2']}/file"])
    # The pipelined GET, then the fetcher's budget (FAST: 2 retries) of which the last
    # succeeds: one budget, the mirror adds no retries of its own (test below).
    body.fail_first = [503, 503, 503]
    before = len(origin.requests_for("/a2.img"))  # the registration's
    origin.add(
        "/c.tgz",
        data=world.data[f"/artifacts/charts/{world.ids['chart']}/package"],
        ranges=True,
        etag=True,
        reset_after=2000,
    )
    report = mirror.sync(world.catalog, str(tmp_path / "tree"), workers=3, retries=3, backoff=0.01)
    assert report.exit_code == 0, report.failed
    assert len(origin.requests_for("/a2.img")) - before == 4
    assert len(origin.requests_for("/c.tgz")) >= 2  # the reset reply was followed by another


def test_mirror_does_not_multiply_the_fetchers_retries(world: World, tmp_path: Path) -> None:
    # One budget per blob: the fetcher's (FAST: 2 retries, 3 GETs), plus the one
    # pipelined GET of a batch. Before, the mirror retried each NetworkError `retries`
    # more times, each with a full budget of its own: 1 + 4 * 3 = 13 GETs here.
    origin = world.origin
    body = origin.add("/a2.img", data=world.data[f"/artifacts/images/{world.ids['a2']}/file"])
    body.fail_first = [503] * 100
    before = len(origin.requests_for("/a2.img"))  # the registration's
    report = mirror.sync(world.catalog, str(tmp_path / "tree"), workers=3, retries=3, backoff=0.01)
    assert report.exit_code == mirror.EXIT_NETWORK
    assert [f["error"] for f in report.failed] == ["NetworkError"]
    gets = len(origin.requests_for("/a2.img")) - before
    assert gets == world.catalog.settings.http.retry.total + 2


def test_unreachable_upstream_fails_with_the_network_code(world: World, tmp_path: Path) -> None:
    world.origin.add("/c.tgz", status=404)
    report = mirror.sync(world.catalog, str(tmp_path / "tree"), **QUICK)
    assert report.exit_code == mirror.EXIT_NETWORK
    assert [f["error"] for f in report.failed] == ["NetworkError"]
    assert set(root_index(tmp_path / "tree")["types"]) == {"images", "charts"}
    assert type_ids(tmp_path / "tree", "charts") == set()


def test_progress_reports_through_the_protocol(world: World, tmp_path: Path) -> None:
    progress = RecordingProgress()
    report = mirror.sync(world.catalog, str(tmp_path / "tree"), progress=progress, **QUICK)
    begins = [c for c in progress.calls if c[0] == "begin" and c[1] == "mirror"]
    assert begins and begins[0][2] == report.bytes_fetched
    assert progress.advanced("mirror") == report.bytes_fetched
    assert ("end", "mirror", True) in progress.calls


def test_a_held_lock_refuses_a_second_sync(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    lock = TreeLock(open_dest(str(dest), None, create=True)).acquire()
    try:
        with pytest.raises(glarelite.LockedError, match=f"already running.*pid {os.getpid()}"):
            mirror.sync(world.catalog, str(dest), **QUICK)
    finally:
        lock.release()
    assert mirror.sync(world.catalog, str(dest), **QUICK).exit_code == 0


def test_report_is_json_with_documented_fields(world: World, tmp_path: Path) -> None:
    report = mirror.sync(world.catalog, str(tmp_path / "tree"), **QUICK).to_dict()
    data = json.loads(json.dumps(report))
    for key in ("status", "exit_code", "copied", "skipped", "repaired", "failed", "deleted"):
        assert key in data
    assert data["bytes"] > 0 and data["seconds"] >= 0
    assert {c["path"] for c in data["copied"]} == {u.lstrip("/") for u in world.published_urls()}


def test_artifacts_with_many_blobs_and_workers(tmp_path: Path, origin: Origin) -> None:
    from tests.test_mirror_support import define_types, open_catalog

    cat = open_catalog(tmp_path)
    define_types(cat)
    expected = {}
    for n in range(12):
        a = cat.create("images", f"m{n}", properties={"os": "linux"})
        for key in ("x", "y", "z"):
            data = f"{n}-{key}".encode() * (n + 1)
            blob = cat.upload(a.id, f"regions/{key}", data)
            expected[blob.url.lstrip("/")] = data
        cat.activate(a.id)
        cat.publish(a.id)
    dest = tmp_path / "tree"
    report = mirror.sync(cat, str(dest), workers=5, **QUICK)
    assert report.exit_code == 0 and report.blobs == 36
    files = tree_files(dest)
    assert {p: files[p] for p in expected} == expected
    for path, data in expected.items():
        assert (dest / path).stat().st_size == len(data)
        assert sha(files[path]) == sha(data)
    shutil.rmtree(dest / "artifacts/images")
    report = mirror.sync(cat, str(dest), **QUICK)
    assert len(report.repaired) == 36 and mirror.check_tree(str(dest)).ok
    cat.close()


def test_check_flagging_a_changed_upstream_reaches_the_tree_without_verify(
    world: World, tmp_path: Path
) -> None:
    """check() marks a changed upstream on the artifact (updated_at moves), so the next
    incremental run republishes its index with the new state and keeps the good bytes."""
    cat, dest, ids, origin = world.catalog, tmp_path / "tree", world.ids, world.origin
    mirror.sync(cat, str(dest), **QUICK)
    blob_file = dest / tree.blob_path("images", ids["a2"], "file")
    good = blob_file.read_bytes()
    index_path = dest / tree.artifact_index_path("images", ids["a2"])
    assert json.loads(index_path.read_text())["blobs"]["file"]["upstream"] == "ok"
    stamps = {i: cat.get(i).updated_at for i in ids.values()}

    origin.add("/a2.img", data=b"changed upstream", ranges=True)
    states = {(r.artifact_id, r.slot): r.state for r in cat.check()}
    assert states[(ids["a2"], "file")] == "changed"
    assert cat.get(ids["a2"]).updated_at > stamps[ids["a2"]]
    unchanged = [i for (i, _), s in states.items() if s == "unchanged"]
    assert unchanged and all(cat.get(i).updated_at == stamps[i] for i in unchanged)

    gets = len(origin_gets(origin))
    report = mirror.sync(cat, str(dest), **QUICK)
    assert not report.nothing_to_do
    assert json.loads(index_path.read_text())["blobs"]["file"]["upstream"] == "changed"
    assert blob_file.read_bytes() == good  # the verified registered bytes stay served
    assert origin_gets(origin)[gets:] == []  # nothing fetched: the tree already holds them
    again = cat.get(ids["a2"]).updated_at
    cat.check()  # still changed: no transition, no new updated_at
    assert cat.get(ids["a2"]).updated_at == again
