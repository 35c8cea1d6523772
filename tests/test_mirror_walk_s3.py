"""A streaming walk into S3 (SeaweedFS fixture, issue 18): a first mirror larger than
``checkpoint_every`` uploads the state at each checkpoint, a killed run's successor skips
the blobs those checkpoints verified, and head.json says what the state says after a
walk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mirror
from glarelite import tree
from mirror import state as mirror_state
from tests.test_mirror_support import QUICK, define_types, open_catalog

pytestmark = pytest.mark.s3
REPO = Path(__file__).resolve().parent.parent
COUNT = 30
EVERY = 4

# A first mirror with tiny pages and checkpoints, SIGKILLed before its Nth batch.
KILLED = """
import json, os, signal, sys
import glarelite, mirror
from mirror import copy
walk = sys.modules["mirror.walk"]
walk.PAGE, walk.WINDOW, walk.BATCH_MAX = 3, 2, 2
original, calls = copy.Copier.run_batch, [0]
def killing(self, jobs):
    calls[0] += 1
    if calls[0] == int(sys.argv[5]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, jobs)
copy.Copier.run_batch = killing
catalog = glarelite.open(sys.argv[1], storage=sys.argv[3])
mirror.sync(catalog, sys.argv[2], storage_options=json.loads(sys.argv[4]), workers=1,
            checkpoint_every=int(sys.argv[6]), backoff=0.01, retries=1)
print("not killed")
"""


def _catalog(tmp_path: Path) -> Any:
    cat = open_catalog(tmp_path)
    define_types(cat)
    for n in range(COUNT):
        a = cat.create("charts", f"chart-{n}", version="1.0")
        cat.upload(a.id, "package", os.urandom(500 + n))
        cat.activate(a.id)
        cat.publish(a.id)
    return cat


def test_s3_first_mirror_checkpoints_and_a_killed_runs_successor_skips_them(
    tmp_path: Path, seaweedfs: Any, s3_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = _catalog(tmp_path)
    options = seaweedfs.storage_options
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                KILLED,
                str(tmp_path / "catalog.db"),
                s3_store_url,
                str(tmp_path / "blobs"),
                json.dumps(options),
                "8",  # killed before its 8th batch of 2
                str(EVERY),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, (out, err.decode()[-2000:])
        fs.invalidate_cache()
        # the checkpoints uploaded the state: the blobs they verified are recorded
        saved = tmp_path / "saved.sqlite"
        saved.write_bytes(fs.cat(f"{prefix}/{mirror_state.STATE}"))
        db = sqlite3.connect(saved)
        (recorded,) = db.execute("SELECT count(*) FROM blobs").fetchone()
        db.close()
        assert EVERY <= recorded < COUNT

        walk = sys.modules["mirror.walk"]
        monkeypatch.setattr(walk, "PAGE", 3)
        monkeypatch.setattr(walk, "WINDOW", 2)
        uploads: list[int] = []
        upload = mirror_state.Store._upload

        def counting(self: mirror_state.Store, state: Any) -> None:
            uploads.append(int(self._unsent))
            upload(self, state)

        monkeypatch.setattr(mirror_state.Store, "_upload", counting)
        report = mirror.sync(
            cat, s3_store_url, storage_options=options, checkpoint_every=EVERY, **QUICK
        )
        assert report.exit_code == 0, report.failed
        assert report.mode == "walk"
        # what the checkpoints recorded is not fetched again
        assert report.copied_count <= COUNT - recorded  # recorded: not fetched again
        # ... and this run checkpointed too (after each batch of at least EVERY copies,
        # an upload of the state), then saved its publish
        assert sum(uploads) >= 2
        assert mirror.check_tree(s3_store_url, storage_options=options).ok

        # head.json says what the state's meta rows say, and pins the root
        fs.invalidate_cache()
        head = json.loads(fs.cat(f"{prefix}/{mirror_state.HEAD}"))
        saved.write_bytes(fs.cat(f"{prefix}/{mirror_state.STATE}"))
        db = sqlite3.connect(saved)
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        db.close()
        assert head == meta
        root = fs.cat(f"{prefix}/{tree.ROOT_INDEX}")
        assert head["root_sha256"] == hashlib.sha256(root).hexdigest()
        assert head["generation"] == json.loads(root)["generation"] == report.generation
        assert head["complete"] is True

        again = mirror.sync(cat, s3_store_url, storage_options=options, **QUICK)
        assert again.mode == "no-op" and again.nothing_to_do
    finally:
        cat.close()


# Killed before its Nth delete: after the save that names the new root, before the files
# the run withdraws and the sums files of shards gone are removed.
KILLED_DELETING = """
import json, os, signal, sys
import glarelite, mirror
from mirror import dest
original, calls = dest.FsspecDest.delete, [0]
def killing(self, path):
    calls[0] += path.startswith("artifacts/")  # a withdrawn file
    if calls[0] == int(sys.argv[5]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, path)
dest.FsspecDest.delete = killing
catalog = glarelite.open(sys.argv[1], storage=sys.argv[3])
mirror.sync(catalog, sys.argv[2], storage_options=json.loads(sys.argv[4]), workers=1,
            verify=True, backoff=0.01, retries=1, grace=0)
print("not killed")
"""


def test_s3_a_walk_killed_before_its_removals_is_finished_by_the_next(
    tmp_path: Path, seaweedfs: Any, s3_store_url: str
) -> None:
    """The sums files of shards no root pins any more are removed by the next run (the
    state named the new root before the kill: only its retired rows say what to
    remove)."""
    cat = _catalog(tmp_path)
    options = seaweedfs.storage_options
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]
    try:
        assert mirror.sync(cat, s3_store_url, storage_options=options, **QUICK).exit_code == 0
        for a in list(cat.iter_all("charts"))[: COUNT // 2]:
            cat.deactivate(a.id)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                KILLED_DELETING,
                str(tmp_path / "catalog.db"),
                s3_store_url,
                str(tmp_path / "blobs"),
                json.dumps(options),
                "1",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, (out, err.decode()[-2000:])

        report = mirror.sync(cat, s3_store_url, storage_options=options, grace=0, **QUICK)
        assert report.exit_code == 0, report.failed
        assert mirror.check_tree(s3_store_url, storage_options=options).ok
        fs.invalidate_cache()
        root = tree.Root.from_dict(json.loads(fs.cat(f"{prefix}/{tree.ROOT_INDEX}")))
        pinned = set()
        for bucket, ref in root.types["charts"].buckets.items():
            raw = fs.cat(f"{prefix}/{root.types['charts'].bucket_path(bucket)}")
            assert hashlib.sha256(raw).hexdigest() == ref.sha256
            pinned |= set(tree.Bucket.from_dict(json.loads(raw), "charts", bucket).shards)
        sums = {k.rsplit("/", 1)[1] for k in fs.find(f"{prefix}/{tree.SUMS_DIR}/charts")} - {
            tree.TYPE_SUMS
        }
        assert sums == pinned
    finally:
        cat.close()
