"""The destination's disk fails under a sync: a real 2 MiB tmpfs that fills up, then the
same tmpfs remounted read-only. Each run fails cleanly (a report with a reason and a
non-zero exit code, never a half-written tree), and the previous good tree still
verifies: ``check_tree`` clean, ``tree.SUMS_CHECK`` passes, the old index is
still what a reader sees, and no temporary is left behind.

Needs Linux and root (``mount -t tmpfs``); skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite
import mirror
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world, sums_check, temporaries

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"),
    reason="mounts a tmpfs: needs Linux, root and mount(8)",
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted on a folder of tmp_path, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    try:
        yield w
    finally:
        w.catalog.close()


def snapshot(dest: Path) -> dict[str, bytes]:
    """The published files: indexes, shards, buckets and SHA256SUMS.d (what a site reads
    first)."""
    out = {}
    for p in sorted(dest.rglob("*")):
        rel = p.relative_to(dest).as_posix()
        if p.is_file() and (
            (rel.endswith(".json") and not rel.startswith(".glarelite-mirror/"))
            or rel.startswith("SHA256SUMS.d/")
        ):
            out[rel] = p.read_bytes()
    return out


def assert_previous_tree_holds(dest: Path, ids: set[str], published: dict[str, bytes]) -> None:
    assert mirror.check_tree(str(dest)).ok
    sums = sums_check(dest)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert temporaries(dest) == []
    assert snapshot(dest) == published  # the old indexes, byte for byte
    with glarelite.open_mirror(str(dest)) as reader:
        assert {a.id for a in reader.iter_all()} == ids


def good_first_sync(world: World, dest: Path) -> tuple[set[str], dict[str, bytes]]:
    report = mirror.sync(world.catalog, str(dest), **QUICK)
    assert report.exit_code == 0, report.failed
    ids = {world.ids[k] for k in ("a1", "a2", "b1", "chart")}
    with glarelite.open_mirror(str(dest)) as reader:
        assert {a.id for a in reader.iter_all()} == ids
    return ids, snapshot(dest)


def add_published(world: World, name: str, data: bytes) -> str:
    cat = world.catalog
    art = cat.create("images", name, version="1.0", properties={"os": "linux"})
    cat.upload(art.id, "file", data)
    cat.activate(art.id)
    cat.publish(art.id)
    return art.id


def test_disk_full_fails_cleanly_and_keeps_the_previous_tree(
    world: World, small_disk: Path
) -> None:
    dest = small_disk / "tree"
    ids, published = good_first_sync(world, dest)
    free = shutil.disk_usage(small_disk).free
    big = add_published(world, "big", os.urandom(free + (256 << 10)))

    report = mirror.sync(world.catalog, str(dest), **QUICK)
    assert report.exit_code == mirror.EXIT_FAILED and report.status == "failed"
    assert [f["path"] for f in report.failed] == [f"artifacts/images/{big}/file"], report.failed
    assert "No space left on device" in report.failed[0]["reason"], report.failed
    assert_previous_tree_holds(dest, ids, published)

    # Space freed (the big blob removed from the catalog): the next run converges.
    world.catalog.deactivate(big)
    assert mirror.sync(world.catalog, str(dest), **QUICK).exit_code == 0
    assert mirror.check_tree(str(dest)).ok and temporaries(dest) == []


def test_read_only_destination_fails_cleanly_and_keeps_the_previous_tree(
    world: World, small_disk: Path
) -> None:
    dest = small_disk / "tree"
    ids, published = good_first_sync(world, dest)
    add_published(world, "late", b"late bytes " * 100)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        # Refused before anything is written: the lock file cannot be opened.
        with pytest.raises(glarelite.DestinationError) as raised:
            report = mirror.sync(world.catalog, str(dest), **QUICK)
            pytest.fail(f"a sync into a read-only tree reported {report.to_dict()}")
        assert raised.value.errno == errno.EROFS
        # The CLI: exit 1 (the tree could not be written), one line, no traceback.
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "glarelite.cli",
                "-c",
                str(world.root / "catalog.db"),
                "--no-progress",
                "mirror",
                str(dest),
            ],
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 1, cli.stderr
        assert cli.stderr.startswith("glarelite: error:") and "Traceback" not in cli.stderr
        assert "Read-only file system" in cli.stderr
        assert_previous_tree_holds(dest, ids, published)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert mirror.sync(world.catalog, str(dest), **QUICK).exit_code == 0
    assert mirror.check_tree(str(dest)).ok
