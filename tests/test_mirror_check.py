"""mirror.check_tree: a clean tree passes; every kind of damage is a fault naming its
path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import mirror
from glarelite import tree
from tests import tree2kit
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    mirror.sync(w.catalog, str(tmp_path / "tree"), **QUICK)
    tree2kit.to_format2(tmp_path / "tree")  # until the writer writes format 2
    yield w
    w.catalog.close()


def test_a_clean_tree_passes(world: World, tmp_path: Path) -> None:
    report = mirror.check_tree(str(tmp_path / "tree"))
    assert report.ok and report.exit_code == 0
    assert (report.generation, report.artifacts, report.files) == (1, 4, 6)
    assert report.bytes == sum(len(d) for d in world.published_urls().values())
    assert json.loads(json.dumps(report.to_dict()))["status"] == "ok"


def corrupt_blob(w: World, dest: Path) -> str:
    path = tree.blob_path("images", w.ids["a1"], "file")
    data = (dest / path).read_bytes()
    (dest / path).write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    return path


def missing_blob(w: World, dest: Path) -> str:
    path = tree.blob_path("images", w.ids["b1"], "file")
    (dest / path).unlink()
    return path


def truncated_blob(w: World, dest: Path) -> str:
    path = tree.blob_path("charts", w.ids["chart"], "package")
    (dest / path).write_bytes((dest / path).read_bytes()[:10])
    return path


def edited_artifact_index(w: World, dest: Path) -> str:
    path = tree.artifact_index_path("images", w.ids["a2"])
    (dest / path).write_text((dest / path).read_text().replace('"name":"a"', '"name":"z"'))
    return path


def shard_of(w: World, dest: Path, label: str, type_name: str = "images") -> tree.ShardRef:
    show = json.loads((dest / tree.artifact_index_path(type_name, w.ids[label])).read_bytes())
    return tree2kit.shard_ref(dest, type_name, show["name"])


def edited_bucket(w: World, dest: Path) -> str:
    """A bucket file that is not the one the root pins (the type index of format 1)."""
    root = tree.Root.from_dict(tree2kit.root_of(dest))
    path = root.types["charts"].bucket_path(next(iter(root.types["charts"].buckets)))
    (dest / path).write_bytes((dest / path).read_bytes() + b"\n")
    return path


def edited_shard(w: World, dest: Path) -> str:
    """A shard file that is not the one its bucket pins."""
    path = shard_of(w, dest, "chart", "charts").path("charts")
    (dest / path).write_bytes((dest / path).read_bytes().replace(b'"charts"', b'"charts" '))
    return path


def extra_sums_line(w: World, dest: Path) -> str:
    """A sums file (pinned as it is) listing a file its shard does not name."""
    ref = shard_of(w, dest, "a1")
    sums = (dest / tree.shard_sums_path("images", ref.shard)).read_bytes()
    tree2kit.repin(dest, "images", ref.shard, sums=sums + b"0" * 64 + b"  artifacts/x\n")
    return "artifacts/x"


def sums_missing_a_blob(w: World, dest: Path) -> str:
    """A sums file (pinned as it is) without a blob its shard names."""
    ref = shard_of(w, dest, "a1")
    path = tree.blob_path("images", w.ids["a1"], "file")
    sums_path = dest / tree.shard_sums_path("images", ref.shard)
    lines = [ln for ln in sums_path.read_text().splitlines(True) if not ln.endswith(f"  {path}\n")]
    tree2kit.repin(dest, "images", ref.shard, sums="".join(lines).encode())
    return path


def edited_sums_file(w: World, dest: Path) -> str:
    """A sums file that is not the one its bucket pins."""
    path = tree.shard_sums_path("images", shard_of(w, dest, "b1").shard)
    (dest / path).write_bytes((dest / path).read_bytes() + b"\n")
    return path


def edited_type_sums(w: World, dest: Path) -> str:
    path = tree.type_sums_path("images")
    (dest / path).write_bytes(b"")
    return path


def stray_sums_file(w: World, dest: Path) -> str:
    """A file in SHA256SUMS.d that no bucket pins: `sha256sum -c` would read it."""
    path = f"{tree.SUMS_DIR}/images/notes.txt"
    (dest / path).write_text("0" * 64 + "  index.json\n")
    return path


def stray_sums_type(w: World, dest: Path) -> str:
    path = f"{tree.SUMS_DIR}/gone/fff"
    (dest / path).parent.mkdir()
    (dest / path).write_text("")
    return path


def unlisted_file(w: World, dest: Path) -> str:
    path = f"artifacts/images/{w.ids['a1']}/extra"
    (dest / path).write_bytes(b"x")
    return path


def malformed_shard_name(w: World, dest: Path) -> str:
    path = "artifacts/images/_shards/12.json"
    (dest / path).write_bytes(b"{}")
    return path


def missing_root_index(w: World, dest: Path) -> str:
    (dest / tree.ROOT_INDEX).unlink()
    return tree.ROOT_INDEX


DAMAGE: dict[str, tuple[Callable[[World, Path], str], str]] = {
    "corrupt blob": (corrupt_blob, "sha256-mismatch"),
    "missing blob": (missing_blob, "missing"),
    "truncated blob": (truncated_blob, "size-mismatch"),
    "edited artifact index": (edited_artifact_index, "index-mismatch"),
    "edited bucket": (edited_bucket, "index-mismatch"),
    "edited shard": (edited_shard, "index-mismatch"),
    "extra sums line": (extra_sums_line, "unreferenced"),
    "sums file missing a blob": (sums_missing_a_blob, "not-in-sums"),
    "edited sums file": (edited_sums_file, "index-mismatch"),
    "edited type sums index": (edited_type_sums, "index-mismatch"),
    "stray file in SHA256SUMS.d": (stray_sums_file, "stray"),
    "stray folder in SHA256SUMS.d": (stray_sums_type, "stray"),
    "unlisted file": (unlisted_file, "unlisted"),
    "malformed shard file name": (malformed_shard_name, "unlisted"),
    "missing root index": (missing_root_index, "missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_a_fault_naming_the_path(world: World, tmp_path: Path, damage: str) -> None:
    dest = tmp_path / "tree"
    make, kind = DAMAGE[damage]
    path = make(world, dest)
    report = mirror.check_tree(str(dest))
    assert not report.ok and report.exit_code == mirror.EXIT_VERIFICATION
    assert (path, kind) in [(f["path"], f["kind"]) for f in report.faults], report.faults


def test_temporaries_are_a_warning_not_a_fault(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    folder = dest / "artifacts/images" / world.ids["a1"]
    name = tree.temporary_name("file", "otherhost", 1, "0123456789abcdef")
    (folder / name).write_bytes(b"partial")
    report = mirror.check_tree(str(dest))
    assert report.ok and "temporaries" in report.warnings[0]


def test_superseded_buckets_and_shards_are_counted_not_faults(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    ref = shard_of(world, dest, "a1")
    old_shard = dest / ref.path("images")
    root = tree.Root.from_dict(tree2kit.root_of(dest))
    old_bucket = dest / root.types["images"].bucket_path(tree.bucket_of(ref.shard))
    # a new generation: a new shard file (and so a new bucket), the old ones kept
    data = old_shard.read_bytes() + b" "
    sha = hashlib.sha256(data).hexdigest()
    sums_path = dest / tree.shard_sums_path("images", ref.shard)
    sums = sums_path.read_text().replace(
        tree.sums_line(ref.file.sha256, ref.path("images")),
        tree.sums_line(sha, tree.shard_path("images", ref.shard, sha)),
    )
    tree2kit.repin(
        dest, "images", ref.shard, data=data, sums="".join(sorted(sums.splitlines(True))).encode()
    )
    assert old_shard.exists() and old_bucket.exists()
    report = mirror.check_tree(str(dest))
    assert report.ok, report.faults
    assert report.superseded == 2 and report.to_dict()["superseded"] == 2
    assert tree2kit.sums_check(dest).returncode == 0


def test_the_documented_site_check_passes_on_a_clean_tree(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    done = tree2kit.sums_check(dest)
    assert done.returncode == 0, done.stderr
    # and it reads every published file: a blob changed behind its back fails it
    corrupt_blob(world, dest)
    assert tree2kit.sums_check(dest).returncode != 0


def test_an_unknown_format_is_one_fault_naming_it(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    root = tree2kit.root_of(dest)
    root["format_version"] = 99
    (dest / tree.ROOT_INDEX).write_text(json.dumps(root))
    report = mirror.check_tree(str(dest))
    assert [(f["path"], f["kind"]) for f in report.faults] == [
        (tree.ROOT_INDEX, "unsupported-format")
    ]
    assert "99" in report.faults[0]["detail"]


def test_a_format_1_tree_is_still_checked_with_a_note(tmp_path: Path) -> None:
    dest = tmp_path / "v1"
    tree2kit.synth_tree_v1(dest, 12)
    report = mirror.check_tree(str(dest))
    assert report.ok and report.artifacts == 12 and report.files == 12
    assert "upgrades it" in " ".join(report.warnings)
    (dest / tree.type_index_path("images")).write_bytes(b"{}")
    faults = mirror.check_tree(str(dest)).faults
    assert (tree.type_index_path("images"), "index-mismatch") in [
        (f["path"], f["kind"]) for f in faults
    ]


def test_cli_check_of_a_format_2_tree(tmp_path: Path) -> None:
    from tests.test_mirror_from import cli

    dest = tmp_path / "tree"
    shows = tree2kit.synth_tree(dest, 20)
    tree2kit.change_one(dest, shows, 5, 2)  # the previous bucket and shard stay
    done = cli("mirror", str(dest), "--check", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "ok" and data["superseded"] == 2 and data["artifacts"] == 20
    assert "2 superseded bucket and shard files" in done.stderr
    (dest / tree.SUMS_DIR / "images" / "stray").write_text("")
    bad = cli("mirror", str(dest), "--check")
    assert bad.returncode == mirror.EXIT_VERIFICATION and "stray" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_format_1_type_index_kept_after_the_upgrade_is_superseded(tmp_path: Path) -> None:
    """The upgrade keeps the format 1 type index (and SHA256SUMS) for the grace period."""
    dest = tmp_path / "tree"
    shows = tree2kit.synth_tree_v1(dest, 10)
    kept = (dest / tree.type_index_path("images")).read_bytes()
    tree2kit.upgrade(dest, {"images": shows}, 2)
    (dest / tree.type_index_path("images")).write_bytes(kept)
    report = mirror.check_tree(str(dest))
    assert report.ok and report.superseded == 1, report.faults
