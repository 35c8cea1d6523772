"""Bundles (issue 20): a tree generation carried across an air gap in one tar file.

Export full → import into an empty folder → served, `sha256sum -c`, read back; an
incremental bundle applies and withdraws; a corrupt or out-of-order bundle is refused
with the site unchanged; a signed tree's bundle is accepted by an edge that trusts the
hub's key; hostile tar members are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import signing, tree
from mirror import bundle as bundle_mod
from tests import tree2kit
from tests.fixtures.origin import Origin
from tests.fixtures.static import start_http_server
from tests.test_mirror_support import QUICK, SELECTED, World, build_world, listing, tree_files


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def sync(world: World, dest: Path, *sign: Path) -> mirror.SyncReport:
    report = mirror.sync(world.catalog, str(dest), sign_key=[str(k) for k in sign] or None, **QUICK)
    assert report.exit_code == 0, report.to_dict()
    return report


def add_artifact(world: World, name: str) -> str:
    cat = world.catalog
    artifact = cat.create("images", name, version="1.0", properties={"os": "linux"})
    cat.upload(artifact.id, "file", name.encode() * 100)
    cat.activate(artifact.id)
    cat.publish(artifact.id)
    return artifact.id


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``root``, state folder included: path -> (kind, sha256)."""
    out: dict[str, tuple[str, str]] = {}
    if not root.exists():
        return out
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[Path(folder, name).relative_to(root).as_posix()] = ("dir", "")
        for name in files:
            p = Path(folder, name)
            rel = p.relative_to(root).as_posix()
            if rel == ".glarelite-mirror/lock":  # the lock holder record changes per run
                continue
            out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def blob_member_offset(path: Path) -> tuple[str, int, int]:
    """(name, data offset, size) of the largest blob member of an uncompressed bundle."""
    with tarfile.open(path) as tar:
        found = [
            (m.name, m.offset_data, m.size)
            for m in tar.getmembers()
            if m.name.startswith("artifacts/") and not tree2kit.is_index_file(m.name)
        ]
    return max(found, key=lambda f: f[2])


def ids(path: Path | str) -> list[str]:
    with glarelite.open_mirror(path) as m:
        return listing(m, None, [], None, False)


# -- the round trip -------------------------------------------------------------------------
def test_full_bundle_round_trip_served_checked_and_read(world: World, tmp_path: Path) -> None:
    hub, site, bundle = tmp_path / "hub", tmp_path / "site", tmp_path / "full.tar"
    sync(world, hub)
    report = mirror.export_bundle(hub, bundle)
    assert report.generation == 1 and report.base_generation is None and not report.warnings
    names = members(bundle)
    assert names[0] == bundle_mod.MANIFEST
    assert names[-1] == tree.ROOT_INDEX  # publish order: the root last, after the sums
    assert names[-2] in (tree.SUMS, tree.type_sums_path("images"), tree.type_sums_path("charts"))
    assert [bundle_mod._rank(n) for n in names[1:]] == sorted(
        bundle_mod._rank(n) for n in names[1:]
    )
    manifest = bundle_mod.bundle_manifest(bundle)
    assert manifest["generation"] == 1 and manifest["base"] is None
    hub_files = tree_files(hub)
    assert set(manifest["tree"]) == set(hub_files) == set(names[1:])
    for path, (size, sha) in manifest["tree"].items():
        assert (size, sha) == (len(hub_files[path]), hashlib.sha256(hub_files[path]).hexdigest())
    assert report.files == len(hub_files)
    assert report.bytes == sum(len(d) for d in hub_files.values())

    imported = mirror.import_bundle(bundle, site)
    assert imported.previous_generation is None and imported.generation == 1
    assert imported.files == len(hub_files) and not imported.nothing_to_do
    assert tree_files(site) == hub_files
    assert not (site / bundle_mod.STAGING).exists()
    assert tree2kit.site_check(site).returncode == 0
    expected = listing(world.catalog, None, SELECTED, None, False)
    with start_http_server(site) as server, glarelite.open_mirror(server.url) as m:
        assert listing(m, None, [], None, False) == expected
        a1 = world.ids["a1"]
        with m.open_blob(a1, "file") as f:
            assert f.read() == world.catalog.open_blob(a1, "file").read()
    # the same bundle again: a no-op success, nothing rewritten
    before = snapshot(site)
    again = mirror.import_bundle(bundle, site)
    assert again.nothing_to_do and again.files == 0
    assert snapshot(site) == before


def test_gz_bundle_round_trip_and_export_is_deterministic(world: World, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    sync(world, hub)
    mirror.export_bundle(hub, tmp_path / "a.tgz", compression="gz")
    mirror.export_bundle(hub, tmp_path / "b.tar")
    mirror.export_bundle(hub, tmp_path / "c.tar")
    assert (tmp_path / "b.tar").read_bytes() == (tmp_path / "c.tar").read_bytes()
    mirror.import_bundle(tmp_path / "a.tgz", tmp_path / "site")
    assert tree_files(tmp_path / "site") == tree_files(hub)
    with pytest.raises(glarelite.InvalidInput, match="compression"):
        mirror.export_bundle(hub, tmp_path / "d.tar", compression="rar")


def _three_generations(
    world: World, tmp_path: Path
) -> tuple[Path, Path, dict[int, Path], str, str]:
    """A hub at generation 3 and its bundles: full of gen 1, incremental 1→2 (adds one
    artifact, withdraws a1), incremental 2→3 (adds another)."""
    hub = tmp_path / "hub"
    sync(world, hub)
    bundles = {1: tmp_path / "g1.tar"}
    mirror.export_bundle(hub, bundles[1])
    new = add_artifact(world, "newer")
    withdrawn = world.ids["a1"]
    world.catalog.deactivate(withdrawn)
    assert sync(world, hub).generation == 2
    bundles[2] = tmp_path / "g2.tar"
    mirror.export_bundle(hub, bundles[2], since=bundles[1])
    add_artifact(world, "newest")
    assert sync(world, hub).generation == 3
    bundles[3] = tmp_path / "g3.tar"
    mirror.export_bundle(hub, bundles[3], since=2)  # the generation recorded at export
    return hub, tmp_path / "site", bundles, new, withdrawn


def test_incremental_bundle_carries_the_change_and_withdraws(world: World, tmp_path: Path) -> None:
    hub, site, bundles, new, withdrawn = _three_generations(world, tmp_path)
    m2 = bundle_mod.bundle_manifest(bundles[2])
    assert m2["base"]["generation"] == 1 and m2["generation"] == 2
    carried = set(m2["members"])
    assert any(p.startswith(f"artifacts/images/{new}/") for p in carried)
    assert not any(world.ids["b1"] in p for p in carried)  # unchanged: not carried
    assert len(carried) < len(bundle_mod.bundle_manifest(bundles[1])["tree"])
    assert f"artifacts/images/{withdrawn}/file" in m2["removed"]
    assert f"artifacts/images/{withdrawn}/index.json" in m2["removed"]

    mirror.import_bundle(bundles[1], site)
    assert withdrawn in ids(site)
    report = mirror.import_bundle(bundles[2], site)
    assert report.previous_generation == 1 and report.generation == 2
    assert report.files == len(carried)
    assert f"artifacts/images/{withdrawn}/file" in report.removed
    assert withdrawn not in ids(site) and new in ids(site)
    assert not (site / "artifacts" / "images" / withdrawn).exists()  # its folder went too
    assert tree2kit.site_check(site).returncode == 0
    mirror.import_bundle(bundles[3], site)
    assert tree_files(site) == tree_files(hub)
    assert ids(site) == listing(world.catalog, None, SELECTED, None, False)
    # idempotent: the last one again changes nothing
    before = snapshot(site)
    assert mirror.import_bundle(bundles[3], site).nothing_to_do
    assert snapshot(site) == before


def test_a_full_bundle_over_an_imported_site_withdraws_what_left(
    world: World, tmp_path: Path
) -> None:
    hub, site, bundles, _, withdrawn = _three_generations(world, tmp_path)
    mirror.import_bundle(bundles[1], site)
    full3 = tmp_path / "full3.tar"
    mirror.export_bundle(hub, full3)
    mirror.import_bundle(full3, site)
    assert tree_files(site) == tree_files(hub)
    assert withdrawn not in ids(site)
    # and an older full bundle never rolls the site back
    before = snapshot(site)
    with pytest.raises(glarelite.Conflict, match="older than the site's generation 3"):
        mirror.import_bundle(bundles[1], site)
    assert snapshot(site) == before


def test_a_full_bundle_over_a_tree_the_mirror_wrote_withdraws_too(
    world: World, tmp_path: Path
) -> None:
    hub, _, bundles, _, withdrawn = _three_generations(world, tmp_path)
    full3 = tmp_path / "full3.tar"
    mirror.export_bundle(hub, full3)
    # a site at generation 1 that no import recorded (as if a mirror run wrote it)
    mirror_site = tmp_path / "site1"
    mirror.import_bundle(bundles[1], mirror_site)
    (mirror_site / bundle_mod.SITE_RECORD).unlink()
    assert withdrawn in ids(mirror_site)
    report = mirror.import_bundle(full3, mirror_site)
    assert f"artifacts/images/{withdrawn}/file" in report.removed
    assert tree_files(mirror_site) == tree_files(hub)


def test_what_a_killed_import_staged_is_cleared_by_the_next(world: World, tmp_path: Path) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    sync(world, hub)
    mirror.export_bundle(hub, tmp_path / "g1.tar")
    left = site / bundle_mod.STAGING / "0123456789ab"
    left.mkdir(parents=True)
    (left / "0").write_bytes(b"half a blob")
    mirror.import_bundle(tmp_path / "g1.tar", site)
    assert not (site / bundle_mod.STAGING).exists()
    assert tree_files(site) == tree_files(hub)


def test_out_of_order_bundles_are_refused_naming_the_generation_needed(
    world: World, tmp_path: Path
) -> None:
    _, site, bundles, _, _ = _three_generations(world, tmp_path)
    with pytest.raises(glarelite.Conflict, match=r"applies to generation 1 only.*holds no tree"):
        mirror.import_bundle(bundles[2], site)
    assert not (site / tree.ROOT_INDEX).exists()
    mirror.import_bundle(bundles[1], site)
    before = snapshot(site)
    with pytest.raises(
        glarelite.Conflict,
        match=r"applies to generation 2 only .*holds generation 1: import the bundle that "
        r"brings generation 2 first",
    ):
        mirror.import_bundle(bundles[3], site)
    assert snapshot(site) == before


def test_since_a_generation_never_exported_says_what_to_pass(world: World, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    sync(world, hub)
    with pytest.raises(glarelite.InvalidInput, match="--since BUNDLE"):
        mirror.export_bundle(hub, tmp_path / "x.tar", since=1)
    assert not (tmp_path / "x.tar").exists()
    with pytest.raises(glarelite.InvalidInput, match="not a file"):
        mirror.export_bundle(hub, tmp_path / "x.tar", since=str(tmp_path / "missing.tar"))


# -- corruption ---------------------------------------------------------------------------------
def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.parametrize("damage", ["flip-blob-byte", "truncate-in-blob", "truncate-at-half"])
@pytest.mark.parametrize("kind", ["full-into-empty", "incremental"])
def test_a_corrupt_bundle_is_refused_and_the_site_is_unchanged(
    world: World, tmp_path: Path, damage: str, kind: str
) -> None:
    _, site, bundles, _, _ = _three_generations(world, tmp_path)
    if kind == "incremental":
        mirror.import_bundle(bundles[1], site)
    victim = Path(shutil.copy(bundles[2 if kind == "incremental" else 1], tmp_path / "bad.tar"))
    name, offset, size = blob_member_offset(victim)
    assert size > 100
    if damage == "flip-blob-byte":
        _flip(victim, offset + size // 2)
    elif damage == "truncate-in-blob":
        os.truncate(victim, offset + size // 2)
    else:
        os.truncate(victim, victim.stat().st_size // 2)
    before = snapshot(site)
    with pytest.raises(glarelite.VerificationError) as caught:
        mirror.import_bundle(victim, site)
    if damage == "flip-blob-byte":
        assert name in str(caught.value) and "does not match the manifest" in str(caught.value)
    else:
        assert "corrupt or truncated" in str(caught.value)
    after = snapshot(site)
    if kind == "full-into-empty":  # only the state folder (lock) may have been made
        assert not any(
            p.startswith("artifacts") or p.endswith(".json")
            for p in after
            if not p.startswith(".glarelite-mirror")
        )
        assert not (site / tree.ROOT_INDEX).exists()
    else:
        assert after == before
    assert not (site / bundle_mod.STAGING).exists()
    # the intact bundle still applies afterwards
    if kind == "incremental":
        assert mirror.import_bundle(bundles[2], site).generation == 2


def test_an_export_refuses_a_damaged_tree_and_leaves_no_bundle(
    world: World, tmp_path: Path
) -> None:
    hub = tmp_path / "hub"
    sync(world, hub)
    blob = hub / "artifacts" / "images" / world.ids["a1"] / "file"  # not a shared one
    _flip(blob, 10)
    with pytest.raises(glarelite.VerificationError, match="sha256"):
        mirror.export_bundle(hub, tmp_path / "out.tar")
    assert list(tmp_path.glob("*.tar")) == [] and list(tmp_path.glob(".out.tar*")) == []
    # a planted link in the tree is never followed
    blob.unlink()
    blob.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(glarelite.GlareliteError, match="link"):
        mirror.export_bundle(hub, tmp_path / "out.tar")


# -- hostile tar input -------------------------------------------------------------------------
def _tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(
    name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


def _manifest(files: dict[str, bytes], **override: Any) -> bytes:
    root = files[tree.ROOT_INDEX]
    data: dict[str, Any] = {
        "format": bundle_mod.FORMAT,
        "generation": 1,
        "root_sha256": hashlib.sha256(root).hexdigest(),
        "base": None,
        "tree": {p: [len(d), hashlib.sha256(d).hexdigest()] for p, d in files.items()},
        "members": bundle_mod._ordered(files),
        "removed": [],
    }
    data.update(override)
    return json.dumps(data).encode()


BLOB = "artifacts/images/00000000-0000-4000-8000-000000000000/file"
GOOD = {BLOB: b"x" * 10, tree.SUMS: b"sums\n", tree.ROOT_INDEX: b"{}\n"}


HOSTILE = {
    "dotdot-in-manifest": "not a path a tree holds",
    "absolute-in-manifest": "not a path a tree holds",
    "symlink-member": "not a regular file",
    "hardlink-member": "not a regular file",
    "device-member": "not a regular file",
    "member-not-in-manifest": "is not in the manifest",
    "member-renamed": "is not the file the manifest lists next",
    "size-larger-than-manifest": "is 1048576 bytes, not 10",
    "manifest-not-first": "not a glarelite bundle",
    "manifest-duplicate-keys": "not JSON .*repeated",
    "huge-pax-header": "corrupt or truncated: a header of",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_input_is_refused_and_nothing_lands(tmp_path: Path, case: str) -> None:
    files = dict(GOOD)
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    manifest = _manifest(files)
    body = [(p, files[p]) for p in bundle_mod._ordered(files)]
    if case == "dotdot-in-manifest":
        manifest = _manifest({**files, "../escape": b"x"})
        body.insert(0, ("../escape", b"x"))
    elif case == "absolute-in-manifest":
        manifest = _manifest({**files, "/tmp/escape": b"x"})
    elif case == "manifest-duplicate-keys":
        manifest = manifest[:-1] + b', "generation": 2}'
    site = tmp_path / "site"
    if case == "manifest-not-first":
        entries.append((_info(BLOB, 10), b"x" * 10))
    entries.append((_info(bundle_mod.MANIFEST, len(manifest)), manifest))
    for path, data in body:
        if path == BLOB and case == "symlink-member":
            entries.append((_info(BLOB, 0, tarfile.SYMTYPE, "/etc/passwd"), None))
        elif path == BLOB and case == "hardlink-member":
            entries.append((_info(BLOB, 0, tarfile.LNKTYPE, "../../outside"), None))
        elif path == BLOB and case == "device-member":
            entries.append((_info(BLOB, 0, tarfile.CHRTYPE), None))
        elif path == BLOB and case == "member-renamed":
            entries.append((_info(BLOB.replace("file", "other"), len(data)), data))
        elif path == BLOB and case == "size-larger-than-manifest":
            entries.append((_info(BLOB, 1 << 20), b"x" * (1 << 20)))
        elif path == BLOB and case == "huge-pax-header":
            info = _info(BLOB, len(data))
            info.pax_headers = {"comment": "y" * (2 << 20)}
            entries.append((info, data))
        else:
            entries.append((_info(path, len(data)), data))
    if case == "member-not-in-manifest":
        entries.append((_info("artifacts/evil", 3), b"bad"))
    bundle = _tar(tmp_path / "hostile.tar", entries)
    with pytest.raises(glarelite.VerificationError, match=HOSTILE[case]):
        mirror.import_bundle(bundle, site)
    assert not (tmp_path / "escape").exists()
    assert not (site / tree.ROOT_INDEX).exists() and not (site / "artifacts").exists()
    assert not (site / bundle_mod.STAGING).exists()


def test_a_file_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(glarelite.VerificationError, match=r"corrupt|not a glarelite bundle"):
        mirror.import_bundle(junk, tmp_path / "site")
    with pytest.raises(glarelite.InvalidInput, match="not a bundle file"):
        mirror.import_bundle(tmp_path / "missing.tar", tmp_path / "site")


# -- signed trees -----------------------------------------------------------------------------
def test_a_signed_trees_bundles_are_accepted_by_an_edge_that_trusts_the_hub(
    world: World, tmp_path: Path
) -> None:
    key = tmp_path / "hub.key"
    signing.generate_key(key)
    trusted = [f"{key}.pub"]
    hub, site = tmp_path / "hub", tmp_path / "site"
    sync(world, hub, key)
    mirror.export_bundle(hub, tmp_path / "g1.tar")
    assert signing.SIGNED_INDEX in members(tmp_path / "g1.tar")
    mirror.import_bundle(tmp_path / "g1.tar", site)
    assert (site / signing.SIGNED_INDEX).read_bytes() == (hub / signing.SIGNED_INDEX).read_bytes()
    with glarelite.open_mirror(site, trusted_keys=trusted) as m:
        assert m.generation == 1
    new = add_artifact(world, "signed-newer")
    sync(world, hub, key)
    mirror.export_bundle(hub, tmp_path / "g2.tar", since=1)
    assert signing.SIGNED_INDEX in bundle_mod.bundle_manifest(tmp_path / "g2.tar")["members"]
    mirror.import_bundle(tmp_path / "g2.tar", site)
    with glarelite.open_mirror(site, trusted_keys=trusted) as m:
        assert m.generation == 2 and new in listing(m, None, [], None, False)
    # a stale signed root in the hub's tree is not carried to the edges
    (hub / tree.ROOT_INDEX).write_bytes((hub / tree.ROOT_INDEX).read_bytes() + b" ")
    with pytest.raises(glarelite.VerificationError, match="does not sign"):
        mirror.export_bundle(hub, tmp_path / "bad.tar")


def test_a_bundle_copied_to_a_new_name_still_imports(world: World, tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    sync(world, hub)
    mirror.export_bundle(hub, tmp_path / "g1.tar")
    shutil.copy(tmp_path / "g1.tar", tmp_path / "drive.tar")
    assert mirror.import_bundle(tmp_path / "drive.tar", tmp_path / "site").generation == 1


# -- the command line ---------------------------------------------------------------------------
def test_cli_bundle_export_and_import_with_documented_exit_codes(
    world: World, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from glarelite import cli
    from tests.test_cli import one_line_error

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli.app, list(args))

    hub, site = tmp_path / "hub", tmp_path / "site"
    sync(world, hub)
    g1, g2 = tmp_path / "g1.tar.gz", tmp_path / "g2.tar"
    result = run("bundle", "export", str(g1), "--tree", str(hub), "--gzip")
    assert result.exit_code == 0, result.output
    assert "exported generation 1 (full)" in result.stderr and result.stdout == ""
    add_artifact(world, "cli-newer")
    sync(world, hub)
    result = run("bundle", "export", str(g2), "--tree", str(hub), "--since", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["base_generation"] == 1
    # out of order: exit 4, the generation needed named
    err = one_line_error(run("bundle", "import", str(g2), str(site)), 4)
    assert "applies to generation 1 only" in err
    result = run("bundle", "import", str(g1), str(site))
    assert result.exit_code == 0 and "imported generation 1" in result.stderr
    # corrupt: exit 5, the site unchanged
    bad = tmp_path / "bad.tar"
    shutil.copy(g2, bad)
    name, offset, size = blob_member_offset(bad)
    _flip(bad, offset + size - 1)
    before = snapshot(site)
    err = one_line_error(run("bundle", "import", str(bad), str(site)), 5)
    assert name in err
    assert snapshot(site) == before
    result = run("bundle", "import", str(g2), str(site), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["generation"] == 2
    result = run("bundle", "import", str(g2), str(site))
    assert result.exit_code == 0 and "nothing to do" in result.stderr
    assert tree_files(site) == tree_files(hub)
    one_line_error(run("bundle", "export", str(tmp_path / "x.tar"), "--tree", str(site / "no")), 2)


def test_a_corrupt_gz_bundle_is_refused_and_the_site_is_unchanged(
    world: World, tmp_path: Path
) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    sync(world, hub)
    mirror.export_bundle(hub, tmp_path / "g1.tgz", compression="gz")
    mirror.import_bundle(tmp_path / "g1.tgz", site)
    add_artifact(world, "gz-newer")
    sync(world, hub)
    bad = tmp_path / "g2.tgz"
    mirror.export_bundle(hub, bad, since=1, compression="gz")
    _flip(bad, bad.stat().st_size // 2)
    before = snapshot(site)
    with pytest.raises(glarelite.VerificationError):
        mirror.import_bundle(bad, site)
    assert snapshot(site) == before


# -- format 2 -------------------------------------------------------------------------------
def test_v2_full_bundle_round_trip_in_publish_order(tmp_path: Path) -> None:
    hub, site, bundle = tmp_path / "hub", tmp_path / "site", tmp_path / "full.tar"
    tree2kit.synth_tree(hub, 40)
    out = mirror.export_bundle(hub, bundle)
    assert out.generation == 1 and out.files == len(tree_files(hub))
    names = members(bundle)[1:]
    rank = [bundle_mod._rank(n) for n in names]
    assert rank == sorted(rank) and names[-1] == tree.ROOT_INDEX
    assert names[-2] == tree.type_sums_path("images")
    assert bundle_mod.bundle_manifest(bundle)["format"] == "glarelite-bundle/2"
    got = mirror.import_bundle(bundle, site)
    assert got.files == out.files and tree_files(site) == tree_files(hub)
    assert mirror.check_tree(str(site)).ok
    assert tree2kit.sums_check(site).returncode == 0


def test_v2_incremental_bundle_carries_only_the_change(tmp_path: Path) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    shows = tree2kit.synth_tree(hub, 200)
    full = mirror.export_bundle(hub, tmp_path / "g1.tar")
    mirror.import_bundle(tmp_path / "g1.tar", site)
    new_blob = tree2kit.change_one(hub, shows, 11, 2)
    ref = tree2kit.shard_ref(hub, "images", shows[11]["name"])
    root = tree.Root.from_dict(tree2kit.root_of(hub))
    inc = mirror.export_bundle(hub, tmp_path / "g2.tar", since=1)
    carried = members(tmp_path / "g2.tar")[1:]
    assert sorted(carried) == sorted(
        [
            new_blob,
            tree.artifact_index_path("images", shows[11]["id"]),
            ref.path("images"),
            tree.shard_sums_path("images", ref.shard),
            root.types["images"].bucket_path(tree.bucket_of(ref.shard)),
            tree.type_sums_path("images"),
            tree.ROOT_INDEX,
        ]
    )
    assert inc.files == 7 and inc.bytes < full.bytes / 10
    manifest = bundle_mod.bundle_manifest(tmp_path / "g2.tar")
    # its manifest lists what it carries, not the tree: its size follows the change
    assert set(manifest["tree"]) == set(carried)
    assert os.path.getsize(tmp_path / "g2.tar") < os.path.getsize(tmp_path / "g1.tar") / 10
    superseded = sorted(p for p in manifest["removed"] if "/_" in p)
    assert len(superseded) == 2 and set(manifest["removed"]) == set(superseded)
    got = mirror.import_bundle(tmp_path / "g2.tar", site)
    assert got.generation == 2 and not got.removed  # superseded files stay (grace)
    assert tree_files(site) == tree_files(hub)  # the hub keeps them too
    check = mirror.check_tree(str(site))
    assert check.ok and check.superseded == 2, check.faults
    # after the grace period (0 here) the next import removes them
    tree2kit.withdraw_one(hub, shows, 0, 3)
    mirror.export_bundle(hub, tmp_path / "g3.tar", since=2)
    got = mirror.import_bundle(tmp_path / "g3.tar", site, grace=0)
    assert set(superseded) <= set(got.removed)
    assert not any((site / p).exists() for p in superseded)
    check = mirror.check_tree(str(site))
    assert check.ok, check.faults
    assert tree2kit.sums_check(site).returncode == 0


def test_v2_signed_tree_and_redirect_rules_travel(tmp_path: Path) -> None:
    from mirror import redirects

    hub, site, keys = tmp_path / "hub", tmp_path / "site", tmp_path / "keys"
    keys.mkdir()
    signing.generate_key(keys / "hub")
    trusted = [f"{keys / 'hub'}.pub"]
    shows = tree2kit.synth_tree(hub, 10)
    tree2kit.redirect_one(hub, shows, 2, 2)
    tree2kit.resign(hub, keys / "hub")
    mirror.export_bundle(hub, tmp_path / "b.tar")
    mirror.import_bundle(tmp_path / "b.tar", site)
    assert (site / redirects.INCLUDE).read_bytes() == (hub / redirects.INCLUDE).read_bytes()
    assert (site / signing.SIGNED_INDEX).read_bytes() == (hub / signing.SIGNED_INDEX).read_bytes()
    assert mirror.check_tree(str(site), trusted_keys=trusted).ok
    # a hostile include is refused at export (it would reach the site's nginx)
    text = (hub / redirects.INCLUDE).read_text()
    (hub / redirects.INCLUDE).write_text(text.replace("}\n", "}\nserver { listen 81; }\n"))
    with pytest.raises(glarelite.VerificationError):
        mirror.export_bundle(hub, tmp_path / "bad.tar")
    assert not (tmp_path / "bad.tar").exists()


@pytest.mark.parametrize(
    "path",
    [
        "SHA256SUMS.d/../index.json",
        "SHA256SUMS.d/images/1234",
        "SHA256SUMS.d/Images/abc",
        "artifacts/images/_shards/abc.json",
        "artifacts/images/_shards/ab." + "0" * 64 + ".json",
        "artifacts/../_shards/abc." + "0" * 64 + ".json",
    ],
)
def test_v2_a_manifest_naming_a_path_no_tree_holds_is_refused(path: str) -> None:
    sha = "0" * 64
    data = {
        "format": "glarelite-bundle/2",
        "generation": 1,
        "root_sha256": sha,
        "base": None,
        "tree": {tree.ROOT_INDEX: [1, sha], path: [1, sha]},
        "members": [tree.ROOT_INDEX],
        "removed": [],
    }
    with pytest.raises(glarelite.VerificationError, match="not a path a tree holds"):
        bundle_mod.parse_manifest(json.dumps(data).encode(), "x")


def test_v2_cli_bundle_import_grace(tmp_path: Path) -> None:
    """`bundle import --grace 0`: the superseded bucket and shard go at once."""
    from tests.test_mirror_from import cli

    hub, site = tmp_path / "hub", tmp_path / "site"
    shows = tree2kit.synth_tree(hub, 20)
    mirror.export_bundle(hub, tmp_path / "g1.tar")
    mirror.import_bundle(tmp_path / "g1.tar", site)
    tree2kit.change_one(hub, shows, 3, 2)
    mirror.export_bundle(hub, tmp_path / "g2.tar", since=1)
    superseded = [p for p in bundle_mod.bundle_manifest(tmp_path / "g2.tar")["removed"]]
    done = cli("bundle", "import", str(tmp_path / "g2.tar"), str(site), "--grace", "0", "--json")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["removed"]) == set(superseded) and len(superseded) == 2
    assert mirror.check_tree(str(site)).ok
    bad = cli("bundle", "import", str(tmp_path / "g2.tar"), str(site), "--grace", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_v2_incremental_since_a_bundle_and_a_damaged_site(tmp_path: Path) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    shows = tree2kit.synth_tree(hub, 50)
    mirror.export_bundle(hub, tmp_path / "g1.tar")
    mirror.import_bundle(tmp_path / "g1.tar", site)
    tree2kit.change_one(hub, shows, 1, 2)
    mirror.export_bundle(hub, tmp_path / "g2.tar", since=tmp_path / "g1.tar")
    mirror.import_bundle(tmp_path / "g2.tar", site)
    # since an incremental bundle: the hub's record of its generation gives the listing
    tree2kit.change_one(hub, shows, 2, 3)
    mirror.export_bundle(hub, tmp_path / "g3.tar", since=tmp_path / "g2.tar")
    # a site that lost a shard its (unchanged) bucket pins... of a bucket the bundle
    # carries: refused before anything is published
    root = tree.Root.from_dict(tree2kit.root_of(hub))
    carried = set(bundle_mod.bundle_manifest(tmp_path / "g3.tar")["members"])
    bucket = next(
        root.types["images"].bucket_path(b)
        for b in root.types["images"].buckets
        if root.types["images"].bucket_path(b) in carried
    )
    data = json.loads((hub / bucket).read_bytes())
    lost = next(
        tree.shard_path("images", s, r["sha256"])
        for s, r in data["shards"].items()
        if tree.shard_path("images", s, r["sha256"]) not in carried
    )
    (site / lost).unlink()
    before = snapshot(site)
    with pytest.raises(glarelite.Conflict, match="lacks"):
        mirror.import_bundle(tmp_path / "g3.tar", site)
    assert snapshot(site) == before
    (site / lost).write_bytes((hub / lost).read_bytes())
    mirror.import_bundle(tmp_path / "g3.tar", site)
    assert mirror.check_tree(str(site)).ok
    # an incremental base this tree never exported: says what to pass
    other = tmp_path / "other"
    tree2kit.synth_tree(other, 5)
    with pytest.raises(glarelite.InvalidInput, match="no record"):
        mirror.export_bundle(other, tmp_path / "x.tar", since=tmp_path / "g3.tar")


def test_a_format_1_tree_bundles_as_before_and_an_upgrade_travels_as_one_incremental(
    tmp_path: Path,
) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    shows = tree2kit.synth_tree_v1(hub, 20)
    mirror.export_bundle(hub, tmp_path / "g1.tar")
    assert bundle_mod.bundle_manifest(tmp_path / "g1.tar")["format"] == "glarelite-bundle/1"
    mirror.import_bundle(tmp_path / "g1.tar", site)
    assert tree_files(site) == tree_files(hub) and mirror.check_tree(str(site)).ok
    tree2kit.upgrade(hub, {"images": shows}, 2)
    mirror.export_bundle(hub, tmp_path / "g2.tar", since=1)
    removed = bundle_mod.bundle_manifest(tmp_path / "g2.tar")["removed"]
    assert set(removed) == {tree.SUMS, tree.type_index_path("images")}
    mirror.import_bundle(tmp_path / "g2.tar", site)
    assert tree_files(site) == tree_files(hub)
    check = mirror.check_tree(str(site))
    assert check.ok and not check.warnings, check.faults
