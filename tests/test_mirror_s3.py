"""Mirroring into s3:// on the SeaweedFS fixture: the same tree as on disk, no temporary
left behind, a no-op rerun without a request upstream, pruning, check_tree over S3 and
the lock object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import tree
from mirror.dest import HOST
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world, origin_gets, sums_check

pytestmark = pytest.mark.s3


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def keys(fs: Any, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {k[len(prefix) + 1 :]: fs.cat(k) for k in fs.find(prefix)}


def test_mirror_into_s3(world: World, seaweedfs: Any, s3_store_url: str, tmp_path: Path) -> None:
    options = seaweedfs.storage_options
    report = mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
    assert report.exit_code == 0, report.failed
    assert (report.artifacts, report.blobs) == (4, 6)
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]
    objects = keys(fs, prefix)
    for url, data in world.published_urls().items():
        assert objects[url.lstrip("/")] == data, url
    assert not [k for k in objects if ".glarelite-tmp." in k]
    root = json.loads(objects["index.json"])
    assert root["counts"]["artifacts"] == 4
    assert mirror.check_tree(s3_store_url, storage_options=options).ok

    # A copy of the bucket's tree passes sha256sum -c at the edge.
    local = tmp_path / "copy"
    for key, data in objects.items():
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(data)
    assert sums_check(local).returncode == 0

    # A rerun with nothing to do: no request upstream, nothing written.
    gets = len(origin_gets(world.origin))
    report = mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
    assert report.nothing_to_do and report.bytes_fetched == 0
    assert len(origin_gets(world.origin)) == gets

    # Withdrawal (without delete) and pruning remove only what the tree wrote.
    fs.pipe(f"{prefix}/artifacts/images/foreign.txt", b"not ours")
    world.catalog.deactivate(world.ids["b1"])
    report = mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
    assert report.exit_code == 0 and len(report.withdrawn[0]["files"]) == 2
    report = mirror.sync(
        world.catalog, s3_store_url, storage_options=options, names=["a"], delete=True, **QUICK
    )
    assert report.exit_code == 0 and len(report.deleted) == 2  # the chart: blob and index
    objects = keys(fs, prefix)
    assert objects["artifacts/images/foreign.txt"] == b"not ours"
    assert not [k for k in objects if world.ids["b1"] in k]
    assert mirror.check_tree(s3_store_url, storage_options=options).ok


def test_s3_lock_object(world: World, seaweedfs: Any, s3_store_url: str) -> None:
    options = seaweedfs.storage_options
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]
    lock = f"{prefix}/{tree.STATE_DIR}/lock"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    dead_pid = int(dead.stdout)

    fs.pipe(lock, json.dumps({"pid": dead_pid, "host": HOST, "started": "x"}).encode())
    report = mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
    assert report.exit_code == 0  # a dead holder of this host: taken over
    fs.invalidate_cache()
    assert not fs.exists(lock)  # and released

    fs.pipe(lock, json.dumps({"pid": 1, "host": HOST, "started": "x"}).encode())
    with pytest.raises(glarelite.LockedError, match="already running \\(pid 1 on"):
        mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
    fs.pipe(lock, json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}).encode())
    with pytest.raises(glarelite.LockedError, match="if that run is dead, remove"):
        mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
