"""Hostile destination folders (issue 13, items 3, 4 and 12): links planted under DEST are
never followed (nothing written, deleted or truncated through them), the lock refuses a
file that is not its own, names read from the tree's own files are validated before a
path is built, and ``mirror --check`` reports a malformed tree as faults (exit 5)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import glarelite
import mirror
from glarelite import DestinationError, cli, tree
from mirror.dest import LocalDest, open_dest
from mirror.lock import TreeLock
from mirror.state import STATE
from tests import tree2kit
from tests.test_cli import (
    Run,
    env_fixture,
    new_id,
    ok,
    one_line_error,
    ready_fixture,
    run_fixture,
)
from tests.test_mirror_support import QUICK, define_types, open_catalog

__all__ = ["env_fixture", "ready_fixture", "run_fixture"]

SECRET = b"-----BEGIN PRIVATE KEY----- not for the mirror\n"


def small_world(root: Path) -> tuple[glarelite.Catalog, dict[str, str]]:
    """Two public images (a plain blob and a blob dict each) and a chart, all internal."""
    cat = open_catalog(root)
    define_types(cat)
    ids = {}
    for label, name in (("a", "alpha"), ("b", "beta")):
        art = cat.create("images", name, version="1.0", properties={"os": "linux"})
        cat.upload(art.id, "file", f"{label} file bytes".encode() * 50)
        cat.upload(art.id, "regions/us", f"{label} us bytes".encode() * 30)
        ids[label] = art.id
    chart = cat.create("charts", "c", version="1.0")
    cat.upload(chart.id, "package", b"chart bytes" * 40)
    ids["chart"] = chart.id
    for artifact_id in ids.values():
        cat.activate(artifact_id)
        cat.publish(artifact_id)
    return cat, ids


@pytest.fixture
def world(tmp_path: Path) -> Any:
    cat, ids = small_world(tmp_path / "cat")
    yield cat, ids
    cat.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside DEST holding a file nobody may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "id_rsa").write_bytes(SECRET)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# -- item 3: links planted in DEST ------------------------------------------------------
def test_a_symlinked_artifacts_folder_is_refused_and_receives_nothing(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    cat, _ = world
    dest = tmp_path / "tree"
    dest.mkdir()
    (dest / tree.ARTIFACTS).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with pytest.raises(DestinationError) as caught:
        mirror.sync(cat, str(dest), **QUICK)
    assert "artifacts" in str(caught.value) and "link" in str(caught.value)
    assert snapshot(outside) == before
    assert sorted(os.listdir(outside)) == ["id_rsa"]  # not even a temporary or a folder
    assert (dest / tree.ARTIFACTS).is_symlink()  # refused, not replaced


def test_a_symlinked_type_folder_receives_nothing(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    cat, _ = world
    dest = tmp_path / "tree"
    (dest / tree.ARTIFACTS).mkdir(parents=True)
    (dest / tree.ARTIFACTS / "images").symlink_to(outside, target_is_directory=True)
    try:
        report = mirror.sync(cat, str(dest), **QUICK)
    except DestinationError as exc:
        assert "images" in str(exc)
    else:  # the blobs below the link failed, one by one
        assert report.exit_code != 0 and report.failed
    assert sorted(os.listdir(outside)) == ["id_rsa"]


def test_prune_never_deletes_through_a_symlinked_artifact_folder(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    cat, ids = world
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    # b's folder is moved outside the tree and a link put in its place.
    folder = dest / tree.ARTIFACTS / "images" / ids["b"]
    moved = outside / "b"
    shutil.move(str(folder), moved)
    folder.symlink_to(moved, target_is_directory=True)
    before = snapshot(outside)
    assert "file" in {p.split("/")[-1] for p in before}

    cat.deactivate(ids["b"])
    with pytest.raises(DestinationError) as caught:
        mirror.sync(cat, str(dest), delete=True, **QUICK)
    assert ids["b"] in str(caught.value)
    assert snapshot(outside) == before
    assert folder.is_symlink()


def test_a_symlinked_state_folder_receives_no_state_lock_or_partial(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    cat, _ = world
    dest = tmp_path / "tree"
    dest.mkdir()
    (dest / tree.STATE_DIR).symlink_to(outside, target_is_directory=True)
    with pytest.raises(DestinationError) as caught:
        mirror.sync(cat, str(dest), **QUICK)
    assert tree.STATE_DIR in str(caught.value)
    assert sorted(os.listdir(outside)) == ["id_rsa"]

    # The lock alone, too.
    target = open_dest(str(dest), None, create=False)
    with pytest.raises(DestinationError):
        TreeLock(target).acquire()
    assert sorted(os.listdir(outside)) == ["id_rsa"]


def test_a_symlinked_partial_folder_is_not_written_or_listed_through(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    cat, _ = world
    dest = tmp_path / "tree"
    (dest / tree.STATE_DIR).mkdir(parents=True)
    (dest / tree.STATE_DIR / "partial").symlink_to(outside, target_is_directory=True)
    (outside / ("0" * 64 + ".json")).write_text("{}")
    before = snapshot(outside)
    with pytest.raises(DestinationError):
        mirror.sync(cat, str(dest), **QUICK)
    assert snapshot(outside) == before


def test_local_dest_operations_refuse_links_below_the_root(tmp_path: Path, outside: Path) -> None:
    dest = open_dest(str(tmp_path / "tree"), None, create=True)
    assert isinstance(dest, LocalDest)
    dest.write_file("artifacts/t/a/file", [b"mine"])
    (tmp_path / "tree/artifacts/t/b").symlink_to(outside, target_is_directory=True)
    victim = "artifacts/t/b/id_rsa"
    for call in (
        lambda: dest.write_file("artifacts/t/b/new", [b"x"]),
        lambda: dest.delete(victim),
        lambda: dest.stat(victim),
        lambda: dest.read_bytes(victim),
        lambda: dest.link("artifacts/t/a/file", "artifacts/t/b/linked"),
        lambda: dest.link(victim, "artifacts/t/a/stolen"),
    ):
        with pytest.raises(DestinationError, match="artifacts/t/b"):
            call()
    dest.remove_empty_dirs([victim])  # quietly leaves it
    dest.sync_dirs()
    assert snapshot(outside) == {"id_rsa": SECRET}
    assert not (tmp_path / "tree/artifacts/t/a/stolen").exists()

    # A link at a file's own path is never read through either.
    (tmp_path / "tree/artifacts/t/a/key").symlink_to(outside / "id_rsa")
    with pytest.raises(DestinationError, match="artifacts/t/a/key"):
        dest.read_bytes("artifacts/t/a/key")
    assert dest.stat("artifacts/t/a/key") is None
    # A FIFO is refused at once, not waited on.
    os.mkfifo(tmp_path / "tree/artifacts/t/a/fifo")
    with pytest.raises(DestinationError, match="not a regular file"):
        dest.read_bytes("artifacts/t/a/fifo")


def test_folders_kept_open_are_released(world: Any, tmp_path: Path) -> None:
    cat, _ = world
    dest = tmp_path / "tree"

    def open_in_tree() -> list[str]:
        """This process's descriptors of anything in the tree (not the others: a test
        run's worker closes its own now and then)."""
        found = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target == str(dest) or target.startswith(f"{dest}/"):
                    found.append(target)
        return found

    for _ in range(3):
        mirror.sync(cat, str(dest), verify=True, **QUICK)
        assert mirror.check_tree(str(dest)).ok
        assert open_in_tree() == []
    target = open_dest(str(dest), None, create=False)
    assert target.stat(tree.blob_path("images", world[1]["a"], "file")) is not None
    assert open_in_tree()  # the root, artifacts and artifacts/images stay open
    target.close()
    assert open_in_tree() == []
    assert target.stat(tree.ROOT_INDEX) is not None  # usable again after close
    target.close()
    target.close()
    assert open_in_tree() == []


@pytest.mark.parametrize("where", [tree.ARTIFACTS, tree.STATE_DIR, f"{tree.STATE_DIR}/lock"])
def test_cli_mirror_into_a_planted_link_is_one_line_exit_1(
    where: str, ready: Run, tmp_path: Path, outside: Path
) -> None:
    artifact_id = new_id(ready, "ubuntu", "--set", "os=linux")
    ok(ready("upload", artifact_id, "file", "-", input=b"disk bytes"))
    ok(ready("activate", artifact_id))
    ok(ready("publish", artifact_id))
    dest = tmp_path / "tree"
    (dest / where).parent.mkdir(parents=True, exist_ok=True)
    target = outside / "id_rsa" if where.endswith("lock") else outside
    (dest / where).symlink_to(target)
    err = one_line_error(ready("mirror", str(dest)), 1)
    assert where in err and "link" in err
    assert sorted(os.listdir(outside)) == ["id_rsa"]
    assert (outside / "id_rsa").read_bytes() == SECRET


def test_a_folder_swapped_for_a_link_mid_write_is_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    """The race: the folder is verified, then replaced by a link before the rename. The
    rename happens in the folder that was verified (now moved aside), never in the
    link's target."""
    dest = open_dest(str(tmp_path / "tree"), None, create=True)
    root = tmp_path / "tree"
    temp = dest.new_temp("artifacts/t/a/file")
    temp.write(b"blob bytes")
    (root / "artifacts/t/a").rename(root / "artifacts/t/moved")
    (root / "artifacts/t/a").symlink_to(outside, target_is_directory=True)
    temp.commit()
    assert sorted(os.listdir(outside)) == ["id_rsa"]
    assert (root / "artifacts/t/moved/file").read_bytes() == b"blob bytes"
    with pytest.raises(DestinationError):
        dest.write_file("artifacts/t/a/file", [b"x"])
    assert sorted(os.listdir(outside)) == ["id_rsa"]


def test_an_adopted_temporary_may_sit_in_another_folder_but_not_be_a_hard_link(
    tmp_path: Path, outside: Path
) -> None:
    dest = open_dest(str(tmp_path / "tree"), None, create=True)
    for defer in (False, True):
        first = dest.new_temp(f"artifacts/t/a{defer:d}/file")
        first.pwrite(b"half ", 0)
        first.keep()  # a partial download left for the next run
        # The same bytes are now wanted at another artifact's path: resumed there.
        again = dest.adopt_temp(f"artifacts/t/b{defer:d}/file", first.temp)
        again.pwrite(b"whole", 5)
        assert again.commit(defer=defer)[0] == 10
        dest.sync_dirs()
        assert (tmp_path / f"tree/artifacts/t/b{defer:d}/file").read_bytes() == b"half whole"
        assert not (tmp_path / "tree" / first.temp).exists()

    # A hard link to someone's file planted under a temporary's name is not written to.
    planted = dest.new_temp("artifacts/t/c/file")
    planted.discard()
    os.link(outside / "id_rsa", tmp_path / "tree" / planted.temp)
    with pytest.raises(DestinationError, match="hard links"):
        dest.adopt_temp("artifacts/t/c/file", planted.temp)
    assert (outside / "id_rsa").read_bytes() == SECRET


# -- item 4: the lock file ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder", "fifo"])
def test_the_lock_never_truncates_a_file_it_did_not_create(
    kind: str, tmp_path: Path, outside: Path
) -> None:
    dest = tmp_path / "tree"
    (dest / tree.STATE_DIR).mkdir(parents=True)
    lock = dest / tree.STATE_DIR / "lock"
    victim = outside / "id_rsa"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(DestinationError, match="lock"):
        TreeLock(open_dest(str(dest), None, create=False)).acquire()
    assert victim.read_bytes() == SECRET


def test_the_lock_still_works_on_its_own_file(tmp_path: Path) -> None:
    target = open_dest(str(tmp_path / "tree"), None, create=True)
    with TreeLock(target) as held:
        assert held.previous is None
        with pytest.raises(glarelite.LockedError):
            TreeLock(target).acquire()
    with TreeLock(target) as again:
        assert again.previous is None  # released cleanly


# -- names from the tree's own records ----------------------------------------------------
def test_a_hostile_state_file_cannot_make_prune_delete_what_the_tree_did_not_write(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    cat, ids = world
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    (dest / "README.txt").write_bytes(b"site notes")
    db = sqlite3.connect(dest / STATE)
    sums = tree.type_sums_path("images")
    for path in [tree.ROOT_INDEX, tree.SUMS, sums, f"{tree.STATE_DIR}/lock", "README.txt"]:
        db.execute("INSERT INTO indexes VALUES (?)", (path,))
    for path in ["../outside/id_rsa", "artifacts//x"]:
        db.execute("INSERT INTO blobs VALUES (?, ?, ?, 1, 1)", (path, ids["b"], "0" * 64))
    db.commit()
    db.close()
    cat.deactivate(ids["b"])
    report = mirror.sync(cat, str(dest), delete=True, **QUICK)
    assert report.exit_code == 0
    assert any("state.sqlite" in w for w in report.warnings), report.warnings
    for name in (tree.ROOT_INDEX, sums, "README.txt"):
        assert (dest / name).is_file(), name
    assert (outside / "id_rsa").read_bytes() == SECRET
    assert mirror.check_tree(str(dest)).ok


def test_a_state_file_with_a_trigger_is_rebuilt_not_written_through(
    world: Any, tmp_path: Path
) -> None:
    """A walk writes to the state and queries it after checking it: a trigger planted in
    it could add rows the check never saw (here: name a site file for pruning). The file
    is refused and rebuilt anew, its trigger gone."""
    cat, ids = world
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    (dest / "README.txt").write_bytes(b"site notes")
    db = sqlite3.connect(dest / STATE)
    db.execute(
        "CREATE TRIGGER plant AFTER INSERT ON blobs "
        "BEGIN INSERT OR IGNORE INTO indexes VALUES ('README.txt'); END"
    )
    db.execute("DELETE FROM blobs")  # every blob is re-hashed and recorded again
    db.commit()
    db.close()
    cat.deactivate(ids["b"])
    report = mirror.sync(cat, str(dest), delete=True, **QUICK)
    assert report.exit_code == 0
    assert any("state.sqlite" in w and "trigger" in w for w in report.warnings), report.warnings
    assert (dest / "README.txt").read_bytes() == b"site notes"
    db = sqlite3.connect(dest / STATE)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (
        0,
    )
    db.close()
    assert mirror.check_tree(str(dest)).ok


def test_partial_records_name_only_temporaries_of_blobs(tmp_path: Path) -> None:
    from mirror import partial

    dest = open_dest(str(tmp_path / "tree"), None, create=True)
    keep = tmp_path / "tree" / tree.STATE_DIR / ".keep.glarelite-tmp.host.1.0123abcd"
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"not a blob temporary")
    sha = "a" * 64
    record = {"temp": keep.relative_to(tmp_path / "tree").as_posix(), "size": 20}
    dest.write_file(partial.path_of(sha), [json.dumps({**record, "sha256": sha}).encode()])
    dest.write_file(f"{partial.PARTIAL_DIR}/not-a-sha.json", [b"{}"])
    assert partial.load(dest, sha, 20) is None
    assert keep.read_bytes() == b"not a blob temporary"
    assert set(partial.recorded(dest)) <= {sha}


# -- mirror --check: no link followed, malformed trees are faults -------------------------
def built_tree(world: Any, tmp_path: Path, v2: bool = True) -> Path:
    cat, _ = world
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    if v2:
        tree2kit.to_format2(dest)  # until the writer writes format 2
    assert mirror.check_tree(str(dest)).ok
    return dest


def test_check_reports_a_symlinked_blob_as_a_fault(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    _, ids = world
    dest = built_tree(world, tmp_path)
    blob = dest / tree.blob_path("images", ids["a"], "file")
    copy = outside / "same-bytes"
    copy.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(copy)
    report = mirror.check_tree(str(dest))
    assert not report.ok and report.exit_code == cli.EXIT_VERIFICATION
    assert [f["path"] for f in report.faults] == [tree.blob_path("images", ids["a"], "file")]


def test_check_reports_a_symlinked_artifacts_folder_as_a_fault(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    dest = built_tree(world, tmp_path)
    shutil.move(str(dest / tree.ARTIFACTS), outside / "copy")
    (dest / tree.ARTIFACTS).symlink_to(outside / "copy", target_is_directory=True)
    report = mirror.check_tree(str(dest))
    assert not report.ok and report.exit_code == cli.EXIT_VERIFICATION
    assert report.files == 0  # no blob was read through the link


def test_check_never_walks_a_symlinked_sums_or_type_folder(
    world: Any, tmp_path: Path, outside: Path
) -> None:
    dest = built_tree(world, tmp_path)
    (outside / "secret-name").write_text("x")
    for folder in (dest / tree.SUMS_DIR / "charts", dest / "artifacts" / "charts"):
        shutil.move(str(folder), outside / f"moved-{folder.parent.name}")
        folder.symlink_to(outside, target_is_directory=True)
    report = mirror.check_tree(str(dest))
    assert not report.ok and report.exit_code == cli.EXIT_VERIFICATION
    paths = [f["path"] for f in report.faults]
    assert f"{tree.SUMS_DIR}/charts" in paths and "artifacts/charts" in paths
    assert not any("secret-name" in p or "moved-" in p for p in paths), paths


def reseal(dest: Path) -> None:
    """Format 2: the mutations below pin what they write (``tree2kit.repin``), so that a
    hostile edit is not caught by a checksum alone; the root pins itself."""


def first_shard(dest: Path) -> tuple[str, dict[str, Any]]:
    """(name, parsed content) of the first shard of type images, as pinned."""
    _, buckets = tree2kit.pins(dest, "images")
    ref = next(r for b in sorted(buckets) for r in sorted(buckets[b].shards.values(), key=str))
    data: dict[str, Any] = json.loads((dest / ref.path("images")).read_bytes())
    return ref.shard, data


def images_index(dest: Path) -> dict[str, Any]:
    return first_shard(dest)[1]


def put_images_index(dest: Path, data: Any, sealed: bool = True) -> None:
    """Write the first shard of images anew (pinned all the way up when ``sealed``)."""
    shard = first_shard(dest)[0]
    raw = json.dumps(data).encode() if not isinstance(data, bytes) else data
    if sealed:
        tree2kit.repin(dest, "images", shard, data=raw)
    else:
        _, buckets = tree2kit.pins(dest, "images")
        (dest / buckets[tree.bucket_of(shard)].shards[shard].path("images")).write_bytes(raw)


def add_sums_lines(dest: Path, lines: str) -> None:
    """Lines appended to the first shard's sums file, pinned."""
    shard = first_shard(dest)[0]
    text = (dest / tree.shard_sums_path("images", shard)).read_text()
    tree2kit.repin(dest, "images", shard, sums=(text + lines).encode())


def hostile_id(dest: Path, outside: Path) -> None:
    # The id climbs out of the tree: its blob would be <tree>/../outside/id_rsa.
    data = images_index(dest)
    show = data["artifacts"][0]
    show["id"] = "../../.."
    show["blobs"] = {
        "outside": {
            "id_rsa": {
                "url": "/artifacts/images/../../../outside/id_rsa",
                "status": "active",
                "size": len(SECRET),
                "sha256": hashlib.sha256(SECRET).hexdigest(),
            }
        }
    }
    put_images_index(dest, data)
    digest = hashlib.sha256(SECRET).hexdigest()
    add_sums_lines(dest, tree.sums_line(digest, "artifacts/images/../../../outside/id_rsa"))


def hostile_field_and_key(dest: Path, outside: Path) -> None:
    data = images_index(dest)
    show = next(s for s in data["artifacts"] if s["blobs"].get("regions"))
    show["blobs"][".."] = show["blobs"].pop("file")
    show["blobs"]["regions"] = {"../../x": show["blobs"]["regions"]["us"], "a/b": {}}
    put_images_index(dest, data)


def hostile_type_name(dest: Path, outside: Path) -> None:
    root = json.loads((dest / tree.ROOT_INDEX).read_text())
    root["types"]["../../outside"] = root["types"]["images"]
    root["types"]["a/b"] = root["types"]["charts"]
    (dest / tree.ROOT_INDEX).write_text(json.dumps(root))


def hostile_sums(dest: Path, outside: Path) -> None:
    digest = hashlib.sha256(SECRET).hexdigest()
    paths = ("../outside/id_rsa", "/etc/passwd", "artifacts/images/x/../../../../x")
    add_sums_lines(dest, "".join(tree.sums_line(digest, p) for p in paths))


def hostile_bucket(dest: Path, outside: Path) -> None:
    """A bucket (pinned by the root) naming shards that climb out of the tree."""
    root = tree2kit.root_of(dest)
    entry = root["types"]["images"]
    name = sorted(entry["buckets"])[0]
    ref = {"sha256": "0" * 64, "size": 1, "artifacts": 0, "blobs": 0, "bytes": 0}
    bucket = {
        "format_version": 2,
        "type": "images",
        "bucket": name,
        "shards": {"../../outside": {**ref, "sums": ref}, f"{name}00": {**ref, "sums": "x"}},
    }
    raw = json.dumps(bucket).encode()
    sha = hashlib.sha256(raw).hexdigest()
    (dest / tree.bucket_path("images", name, sha)).write_bytes(raw)
    entry["buckets"][name] = {"sha256": sha, "size": len(raw)}
    (dest / tree.ROOT_INDEX).write_text(json.dumps(root))


def wrong_shard_shapes(dest: Path, outside: Path) -> None:
    data = images_index(dest)
    data["artifacts"] = ["not an object", 7, None, [1]]
    put_images_index(dest, data)


def wrong_shapes(dest: Path, outside: Path) -> None:
    """Artifacts of the right shard (their name hashes to it), malformed otherwise."""
    data = images_index(dest)
    name = data["artifacts"][0]["name"]
    data["artifacts"] = [
        {**item, "name": name, "type_name": "images"}
        for item in [
            {"id": 5, "blobs": {}},
            {"id": "x1", "blobs": "not a dict"},
            {"id": "x2", "blobs": {"file": "not a dict"}},
            {"id": "x3", "blobs": {"file": {"url": 1, "status": [], "size": "big", "sha256": {}}}},
            {"id": "x4", "blobs": {"regions": {"us": "nope", "eu": {"size": [1]}}}},
            {"id": "x5", "blobs": {"regions": {"us": {"size": 1e400, "url": "/x"}}}},
            {"id": "x6", "blobs": {"file": {"url": "/x", "status": "active", "size": -3}}},
            {"id": "x7", "blobs": [1, 2]},
        ]
    ]
    put_images_index(dest, data)


def deep_type_index(dest: Path, outside: Path) -> None:
    put_images_index(dest, ("[" * 200_000 + "]" * 200_000).encode())


def deep_root_index(dest: Path, outside: Path) -> None:
    (dest / tree.ROOT_INDEX).write_text('{"a":' * 100_000 + "1" + "}" * 100_000)


def deep_artifact_index(dest: Path, outside: Path) -> None:
    data = images_index(dest)
    path = dest / tree.artifact_index_path("images", data["artifacts"][0]["id"])
    path.write_text("[" * 200_000 + "]" * 200_000)


def bad_json_everywhere(dest: Path, outside: Path) -> None:
    for path in [*dest.rglob("index.json"), *dest.rglob("_*/*.json")]:
        if path.parent != dest:
            path.write_bytes(b"\xff\xfe{not json")


def wrong_root_shapes(dest: Path, outside: Path) -> None:
    root = json.loads((dest / tree.ROOT_INDEX).read_text())
    root["types"]["images"] = ["not", "an", "entry"]
    root["types"]["charts"] = {"buckets": "nope", "definition": 3}
    root["counts"] = "text"
    (dest / tree.ROOT_INDEX).write_text(json.dumps(root))


def root_is_a_list(dest: Path, outside: Path) -> None:
    (dest / tree.ROOT_INDEX).write_text("[1, 2, 3]")


def binary_sums(dest: Path, outside: Path) -> None:
    tree2kit.repin(dest, "images", first_shard(dest)[0], sums=os.urandom(4000))
    (dest / tree.type_sums_path("charts")).write_bytes(os.urandom(4000))


MALFORMED = [
    hostile_id,
    hostile_field_and_key,
    hostile_type_name,
    hostile_sums,
    hostile_bucket,
    wrong_shard_shapes,
    wrong_shapes,
    deep_type_index,
    deep_root_index,
    deep_artifact_index,
    bad_json_everywhere,
    wrong_root_shapes,
    root_is_a_list,
    binary_sums,
]


@pytest.mark.parametrize("mutate", MALFORMED, ids=[m.__name__ for m in MALFORMED])
def test_check_of_a_malformed_tree_reports_faults_and_exits_5(
    mutate: Any, world: Any, tmp_path: Path, outside: Path, run: Run
) -> None:
    dest = built_tree(world, tmp_path)
    mutate(dest, outside)
    reseal(dest)
    report = mirror.check_tree(str(dest))
    assert not report.ok and report.exit_code == cli.EXIT_VERIFICATION
    assert all(isinstance(f["path"], str) and f["detail"] for f in report.faults)
    # Nothing outside the tree was read as a blob: its bytes never count as checked.
    assert report.bytes <= sum(len(v) for v in snapshot(dest).values())
    assert all("outside" not in f["path"] or f["kind"] == "invalid" for f in report.faults)

    result = run("mirror", str(dest), "--check", "--json")
    assert result.exit_code == cli.EXIT_VERIFICATION, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert json.loads(result.stdout)["status"] == "faults"
    assert (outside / "id_rsa").read_bytes() == SECRET


def test_sync_over_deeply_nested_indexes_rewrites_them(world: Any, tmp_path: Path) -> None:
    cat, ids = world
    dest = built_tree(world, tmp_path, v2=False)  # the writer's own format
    deep = "[" * 200_000 + "]" * 200_000
    (dest / tree.ROOT_INDEX).write_text(deep)
    (dest / tree.artifact_index_path("images", ids["a"])).write_text(deep)
    report = mirror.sync(cat, str(dest), verify=True, repair=True, **QUICK)
    assert report.exit_code == 0, report
    assert mirror.check_tree(str(dest)).ok


# -- fuzz: any mutation of a valid tree's indexes is a report, never an exception ----------
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.sampled_from(["..", "../..", "/", "a/b", "", ".", "x" * 300, "\x00", "images"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node reached by following ``path`` (indexes modulo the children)."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return replacement
    if isinstance(value, dict):
        keys = sorted(value)
        key = keys[path[0] % len(keys)]
        if len(path) == 1 and isinstance(replacement, str):  # rename the key instead
            value = {(replacement if k == key else k): v for k, v in value.items()}
            return value
        value[key] = _mutate(value[key], path[1:], replacement)
        return value
    i = path[0] % len(value)
    value[i] = _mutate(value[i], path[1:], replacement)
    return value


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    cat, _ = small_world(root / "cat")
    try:
        assert mirror.sync(cat, str(root / "tree"), **QUICK).exit_code == 0
        tree2kit.to_format2(root / "tree")  # until the writer writes format 2
    finally:
        cat.close()
    return root / "tree"


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(which="images", path=[0], replacement=[None], sealed=False)
@example(which="images", path=[0, 0, 4, 0], replacement="../..", sealed=True)  # an id
@example(which="root", path=[5, 0], replacement="..", sealed=True)  # a type name
@given(
    which=st.sampled_from(["root", "images", "artifact"]),
    path=st.lists(st.integers(0, 50), min_size=0, max_size=6),
    replacement=JSON_VALUES,
    sealed=st.booleans(),
)
def test_fuzz_check_never_raises_on_a_mutated_tree(
    pristine: Path, tmp_path: Path, which: str, path: list[int], replacement: Any, sealed: bool
) -> None:
    dest = tmp_path / f"t{os.urandom(4).hex()}"
    shutil.copytree(pristine, dest, symlinks=True)
    if which == "images":  # a shard, pinned again up to the root when sealed
        mutated = _mutate(images_index(dest), path, replacement)
        put_images_index(dest, json.dumps(mutated).encode(), sealed=sealed)
    else:
        if which == "root":
            target = dest / tree.ROOT_INDEX
        else:
            target = next(p for p in (dest / "artifacts/images").glob("*/index.json"))
        target.write_text(json.dumps(_mutate(json.loads(target.read_text()), path, replacement)))
    report = mirror.check_tree(str(dest))  # any exception at all fails the test
    assert report.exit_code in (0, cli.EXIT_VERIFICATION)
    shutil.rmtree(dest)


def test_a_state_path_with_a_dot_key_segment_is_not_a_blob_path() -> None:
    """Blob-dict keys are free text since issue 17 (``..`` is a valid key); in a path
    they are encoded, so a raw ``..`` or a non-canonical spelling is never a blob path."""
    from mirror._paths import is_blob_path

    base = "artifacts/images/01234567-89ab-7cde-8f01-23456789abcd/regions"
    assert is_blob_path(f"{base}/{glarelite.encode_key('..')}")
    assert is_blob_path(f"{base}/{glarelite.encode_key('RegionOne')}")
    for segment in ("..", ".", "%2e%2e", "%2E%2E", "RegionOne", "a b", ""):
        assert not is_blob_path(f"{base}/{segment}"), segment
