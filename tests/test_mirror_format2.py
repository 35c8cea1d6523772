"""The writer at scale (issue 18): tree format 2 written in O(change), driven by the
catalog's journal; a no-op from O(1) state rows; the format 1 -> 2 upgrade; a trimmed
journal falls back to a walk and says so; the grace period of superseded files; readers
and kills during publishes; S3 request counts."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import tree
from mirror import state as mirror_state
from tests.fixtures.origin import Origin
from tests.test_mirror_support import (
    NO_GRACE,
    QUICK,
    World,
    build_world,
    define_types,
    open_catalog,
    origin_gets,
    sums_check,
    tree_files,
    type_views,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def mtimes(dest: Path) -> dict[str, int]:
    """Every file of the tree, its state included (not the lock), with its mtime."""
    out = {}
    for folder, _dirs, files in os.walk(dest):
        for name in files:
            p = Path(folder, name)
            rel = p.relative_to(dest).as_posix()
            if rel != f"{tree.STATE_DIR}/lock":  # every run takes the lock
                out[rel] = p.stat().st_mtime_ns
    return out


def written(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {p for p, m in after.items() if before.get(p) != m}


class Counting:
    """A catalog that counts the calls a run makes (delegates everything)."""

    def __init__(self, catalog: glarelite.Catalog) -> None:
        self._catalog = catalog
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._catalog, name)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return value(*args, **kwargs)

        return counted


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows each Store reads (one entry per row), across a run."""
    seen: list[int] = []
    original = mirror_state.Store._rows

    def counting(self: mirror_state.Store, sql: str, params: Any = ()) -> Iterator[Any]:
        for row in original(self, sql, params):
            seen.append(1)
            yield row

    monkeypatch.setattr(mirror_state.Store, "_rows", counting)
    return seen


def published_files(dest: Path, *, sums: bool = True) -> dict[str, str]:
    """Every file the current root pins, read root -> buckets -> shards -> blobs, each
    checked against its pin: {path: sha256}. AssertionError on any mismatch. The sums
    files are for sha256sum at the site, replaced in place (not content-addressed): a
    reader holding an older root does not read them (``sums=False``)."""
    raw = (dest / tree.ROOT_INDEX).read_bytes()
    root = tree.Root.from_dict(json.loads(raw))
    out: dict[str, str] = {}
    for type_name, entry in root.types.items():
        if sums:
            data = (dest / tree.type_sums_path(type_name)).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry.sums.sha256
        for bucket, ref in entry.buckets.items():
            path = entry.bucket_path(bucket)
            data = (dest / path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == ref.sha256, path
            out[path] = ref.sha256
            parsed = tree.Bucket.from_dict(json.loads(data), type_name, bucket)
            for shard, sref in parsed.shards.items():
                spath = sref.path(type_name)
                sdata = (dest / spath).read_bytes()
                assert hashlib.sha256(sdata).hexdigest() == sref.file.sha256, spath
                out[spath] = sref.file.sha256
                for show in tree.check_shard(json.loads(sdata), type_name, shard):
                    for field_name, key, blob in tree.iter_blob_entries(show):
                        bpath = tree.blob_path(type_name, str(show["id"]), field_name, key)
                        out[bpath] = str(blob["sha256"])
    return out


# -- one change, no-op -----------------------------------------------------------------------
def test_one_change_writes_only_its_shard_bucket_sums_root_and_index(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    first = mirror.sync(cat, str(dest), **QUICK)
    assert first.mode == "walk"
    before = mtimes(dest)
    old_root = json.loads((dest / tree.ROOT_INDEX).read_text())
    time.sleep(0.01)  # distinct mtimes on coarse clocks

    cat.update(ids["a1"], description="now documented")
    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.mode, report.generation) == (0, "journal", 2)
    assert report.copied == [] and report.bytes_fetched == 0
    after = mtimes(dest)
    shard = tree.shard_of("a")
    root = tree.Root.from_dict(json.loads((dest / tree.ROOT_INDEX).read_bytes()))
    images = root.types["images"]
    bucket = tree.bucket_of(shard)
    (new_shard,) = [p for p in after if f"/_shards/{shard}." in p and p not in before]
    assert written(before, after) == {
        tree.ROOT_INDEX,
        tree.artifact_index_path("images", ids["a1"]),
        new_shard,
        tree.shard_sums_path("images", shard),
        images.bucket_path(bucket),
        tree.type_sums_path("images"),
        mirror_state.STATE,
    }
    # the type that did not change is pinned as it was
    assert (
        json.loads((dest / tree.ROOT_INDEX).read_text())["types"]["charts"]
        == (old_root["types"]["charts"])
    )
    # the superseded shard and bucket stay for readers of the old root (grace period)
    assert all((dest / p).exists() for p in before)
    assert sums_check(dest).returncode == 0
    shown = {v["id"]: v for v in type_views(dest, "images")}
    assert shown[ids["a1"]]["description"] == "now documented"
    assert shown[ids["a1"]] == cat.get(ids["a1"]).to_dict()


def test_a_no_op_reads_o1_state_rows_queries_no_listing_and_writes_nothing(
    world: World, tmp_path: Path, rows_read: list[int]
) -> None:
    cat, dest = world.catalog, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    before = mtimes(dest)
    time.sleep(0.01)
    counting = Counting(cat)
    rows_read.clear()
    report = mirror.sync(counting, str(dest), scan=0, **QUICK)  # type: ignore[arg-type]
    assert report.nothing_to_do and report.mode == "no-op"
    assert (report.artifacts, report.blobs, report.generation) == (4, 6, 1)
    assert not {"list", "iter_all", "changes"} & set(counting.calls), counting.calls
    assert counting.calls.get("get", 0) == 0
    assert len(rows_read) <= 16  # the meta rows
    assert mtimes(dest) == before  # nothing written, the state included

    # The default bounded scan checks every blob of a small tree: one lstat each.
    rows_read.clear()
    report = mirror.sync(counting, str(dest), **QUICK)  # type: ignore[arg-type]
    assert report.nothing_to_do and report.scanned == 6
    assert mtimes(dest) == before


def test_the_bounded_scan_rotates_and_finds_damage(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    seen = 0
    for _ in range(3):  # 2 blobs a run: every blob is checked within 3 runs
        report = mirror.sync(cat, str(dest), scan=2, **QUICK)
        assert report.nothing_to_do and report.scanned == 2
        seen += report.scanned
    assert seen == 6
    blob = dest / tree.blob_path("images", ids["a2"], "file")
    blob.unlink()
    reports = [mirror.sync(cat, str(dest), scan=2, **QUICK) for _ in range(3)]
    repaired = [r for r in reports if r.repaired]
    assert len(repaired) == 1 and repaired[0].mode == "walk"
    assert blob.exists() and sums_check(dest).returncode == 0


def test_the_scan_stops_at_its_time_bound_and_the_next_run_goes_on(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cold inode cache 20,000 lstats take seconds: a scan stops at ``scan_seconds``
    (here: a clock that moves 1 s a look, so 2 blobs fit in 2.5 s), the next run goes on
    from there, and every blob is still checked in turn."""
    from mirror import scan as mirror_scan

    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    ticks = iter(range(10_000))
    monkeypatch.setattr(mirror_scan, "monotonic", lambda: float(next(ticks)))
    scanned = [mirror.sync(cat, str(dest), scan_seconds=2.5, **QUICK) for _ in range(3)]
    assert [(r.mode, r.scanned) for r in scanned] == [("no-op", 2)] * 3  # 6 blobs
    blob = dest / tree.blob_path("images", ids["a2"], "file")
    blob.unlink()
    reports = [mirror.sync(cat, str(dest), scan_seconds=2.5, **QUICK) for _ in range(3)]
    repaired = [r for r in reports if r.repaired]
    assert len(repaired) == 1 and repaired[0].mode == "walk"
    assert blob.exists() and sums_check(dest).returncode == 0
    with pytest.raises(glarelite.InvalidInput, match="scan_seconds"):
        mirror.sync(cat, str(dest), scan_seconds=0, **QUICK)


# -- the journal --------------------------------------------------------------------------
def test_journal_runs_publish_creates_and_withdrawals_like_a_walk(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    new = cat.create("charts", "n", version="1.0")
    world.upload(new.id, "package", b"new chart")
    cat.activate(new.id)
    cat.publish(new.id)
    cat.deactivate(ids["b1"])
    cat.publish(ids["secret"])  # private -> public: it enters the tree
    report = mirror.sync(cat, str(dest), **NO_GRACE)
    assert (report.exit_code, report.mode) == (0, "journal")
    assert sorted(c["path"] for c in report.copied) == sorted(
        [
            tree.blob_path("charts", new.id, "package"),
            tree.blob_path("images", ids["secret"], "file"),
        ]
    )
    assert [(w["id"], w["reason"]) for w in report.withdrawn] == [(ids["b1"], "deactivated")]
    assert not (dest / tree.blob_path("images", ids["b1"], "file")).exists()
    assert report.artifacts == 5
    assert sums_check(dest).returncode == 0
    assert mirror.check_tree(str(dest)).ok

    # The same catalog walked into a fresh tree publishes the same shards, byte for byte.
    fresh = tmp_path / "fresh"
    walked = mirror.sync(cat, str(fresh), **QUICK)
    assert walked.mode == "walk"
    mine = {p: d for p, d in tree_files(dest).items() if "/_shards/" in p or "/_buckets/" in p}
    theirs = {p: d for p, d in tree_files(fresh).items() if "/_shards/" in p or "/_buckets/" in p}
    assert mine == theirs
    assert (
        json.loads((dest / "index.json").read_text())["types"]
        == json.loads((fresh / "index.json").read_text())["types"]
    )


def test_a_trimmed_journal_walks_the_catalog_and_says_so(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    published = cat.serial()
    cat.update(ids["a1"], description="changed once")
    cat.update(ids["chart"], description="changed too")
    assert cat.trim_journal(keep=1) > 0
    gets = len(origin_gets(world.origin))
    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.mode) == (0, "walk")
    (warning,) = [w for w in report.warnings if "trimmed" in w]
    assert f"trimmed past serial {published}" in warning and "walked" in warning
    assert len(origin_gets(world.origin)) == gets  # nothing copied again
    views = {v["id"]: v for v in type_views(dest, "images")}
    assert views[ids["a1"]]["description"] == "changed once"

    # identical to a clean run
    fresh = tmp_path / "fresh"
    assert mirror.sync(cat, str(fresh), **QUICK).exit_code == 0
    assert (
        json.loads((dest / "index.json").read_text())["types"]
        == json.loads((fresh / "index.json").read_text())["types"]
    )
    assert sums_check(dest).returncode == 0
    # and the next change is a journal run again
    cat.update(ids["a1"], description="changed twice")
    assert mirror.sync(cat, str(dest), **QUICK).mode == "journal"


# -- grace period ---------------------------------------------------------------------------
def test_superseded_files_stay_for_the_grace_period_then_go(world: World, tmp_path: Path) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    first = set(published_files(dest))
    cat.update(ids["a1"], description="v2")
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    second = set(published_files(dest))
    superseded = {p for p in first - second if "/_" in p}
    assert len(superseded) == 2  # a's shard and its bucket
    assert all((dest / p).exists() for p in superseded)
    # a no-op run within the grace period keeps them, one after it removes them
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do
    assert all((dest / p).exists() for p in superseded)
    report = mirror.sync(cat, str(dest), **NO_GRACE)
    assert report.nothing_to_do
    assert not any((dest / p).exists() for p in superseded)
    assert sums_check(dest).returncode == 0
    assert mirror.check_tree(str(dest)).ok


# -- format 1 -> 2 ---------------------------------------------------------------------------
def to_format1(dest: Path) -> None:
    """Rewrite a tree the way the format 1 writer left it: one index per type, one
    SHA256SUMS, a format 1 root and state.json; no SHA256SUMS.d, shards or buckets."""
    root = tree.Root.from_dict(json.loads((dest / tree.ROOT_INDEX).read_bytes()))
    db = sqlite3.connect(dest / mirror_state.STATE)
    blobs = {
        p: [s, n, m] for p, s, n, m in db.execute("SELECT path, sha256, size, mtime_ns FROM blobs")
    }
    artifacts = {i: [t, f] for i, t, f in db.execute("SELECT id, type, fingerprint FROM artifacts")}
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    db.close()
    entries = {}
    lines = []
    indexes = []
    for type_name, entry in root.types.items():
        views = sorted(type_views(dest, type_name), key=lambda v: v["id"])
        head = tree.type_index_head(type_name, entry.definition, root.generation)
        head["count"] = len(views)
        head["artifacts"] = views
        data = (json.dumps(head, separators=(",", ":")) + "\n").encode()
        path = tree.type_index_path(type_name)
        (dest / path).write_bytes(data)
        indexes.append(path)
        sha = hashlib.sha256(data).hexdigest()
        lines.append((path, sha))
        paths = set()
        for view in views:
            index = dest / tree.artifact_index_path(type_name, view["id"])
            own = json.loads(index.read_text())
            own["mirror"]["format_version"] = 1
            index.write_text(json.dumps(own))
            indexes.append(tree.artifact_index_path(type_name, view["id"]))
            for f, k, b in tree.iter_blob_entries(view):
                paths.add((tree.blob_path(type_name, view["id"], f, k), b["sha256"], b["size"]))
        lines += [(p, s) for p, s, _ in paths]
        entries[type_name] = tree.TypeEntry(
            type_name,
            entry.definition,
            sha,
            len(data),
            root.generation,
            len(views),
            len(paths),
            sum(n for _, _, n in paths),
        )
    sums = "".join(tree.sums_line(s, p) for p, s in sorted(lines)).encode()
    (dest / tree.SUMS).write_bytes(sums)
    old = tree.RootIndex(
        generation=root.generation,
        generated_at=root.generated_at,
        types=entries,
        sums_sha256=hashlib.sha256(sums).hexdigest(),
        sums_size=len(sums),
    )
    (dest / tree.ROOT_INDEX).write_text(json.dumps(old.to_dict(), indent=1, sort_keys=True) + "\n")
    for p in list(dest.glob("artifacts/*/_*/*")) + list(dest.glob(f"{tree.SUMS_DIR}/*/*")):
        p.unlink()
    for p in list(dest.glob("artifacts/*/_*")) + list(dest.glob(f"{tree.SUMS_DIR}/*")):
        p.rmdir()
    (dest / tree.SUMS_DIR).rmdir()
    (dest / mirror_state.STATE).unlink()
    state = {
        "state_version": 1,
        "published": {
            "generation": root.generation,
            "catalog": meta["catalog"],
            "selection": meta["selection"],
            "watermark": "2026-01-01T00:00:00.000000Z",
            "complete": True,
            "generated_at": root.generated_at,
            "types": {n: e.to_dict() for n, e in entries.items()},
            "selected": meta["selected"],
            "sums": [len(sums), old.sums_sha256],
            "retained": 0,
            "artifacts": artifacts,
        },
        "indexes": sorted(indexes),
        "blobs": blobs,
    }
    (dest / mirror_state.STATE_V1).write_text(json.dumps(state))


def test_a_format1_tree_is_upgraded_by_the_next_sync(world: World, tmp_path: Path) -> None:
    cat, dest = world.catalog, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    to_format1(dest)
    assert tree.format_of(json.loads((dest / tree.ROOT_INDEX).read_bytes())) == 1
    old_files = [tree.SUMS, tree.type_index_path("images"), tree.type_index_path("charts")]
    gets = len(origin_gets(world.origin))

    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.mode, report.generation) == (0, "walk", 2)
    assert report.copied == [] and len(origin_gets(world.origin)) == gets  # blobs kept
    root = json.loads((dest / tree.ROOT_INDEX).read_bytes())
    assert tree.format_of(root) == tree.FORMAT_VERSION
    assert not (dest / mirror_state.STATE_V1).exists() and (dest / mirror_state.STATE).exists()
    assert all((dest / p).exists() for p in old_files)  # retired: readers of the old root
    for view in type_views(dest, "images"):
        own = json.loads((dest / tree.artifact_index_path("images", view["id"])).read_text())
        assert own["mirror"] == {"format_version": tree.FORMAT_VERSION, "generation": 2}
    assert sums_check(dest).returncode == 0

    report = mirror.sync(cat, str(dest), **NO_GRACE)
    assert report.nothing_to_do and report.mode == "no-op"
    assert not any((dest / p).exists() for p in old_files)
    assert sums_check(dest).returncode == 0
    assert mirror.check_tree(str(dest)).ok


def test_a_format1_tree_that_lost_its_state_is_upgraded_and_its_old_indexes_retired(
    world: World, tmp_path: Path
) -> None:
    """No state.json to say it was format 1: the tree's own root says so, and its type
    indexes and SHA256SUMS are retired like an upgrade's, not left behind."""
    cat, dest = world.catalog, tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    to_format1(dest)
    (dest / mirror_state.STATE_V1).unlink()
    old_files = [tree.SUMS, tree.type_index_path("images"), tree.type_index_path("charts")]

    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.mode) == (0, "walk")
    assert tree.format_of(json.loads((dest / tree.ROOT_INDEX).read_bytes())) == 2
    assert all((dest / p).exists() for p in old_files)  # retired: readers of the old root
    mirror.sync(cat, str(dest), **NO_GRACE)
    assert not any((dest / p).exists() for p in old_files)
    assert mirror.check_tree(str(dest)).ok


# -- readers and kills during publishes ---------------------------------------------------------
def many_world(tmp_path: Path, count: int) -> tuple[glarelite.Catalog, list[str]]:
    cat = open_catalog(tmp_path)
    define_types(cat)
    ids = []
    for n in range(count):
        a = cat.create(
            "images", f"img-{n % (count // 3)}", version=f"1.{n}", properties={"os": "linux"}
        )
        cat.upload(a.id, "file", f"bytes of {n}".encode() * 10)
        cat.activate(a.id)
        cat.publish(a.id)
        ids.append(a.id)
    return cat, ids


PUBLISHER = """
import random, sys
import glarelite, mirror
catalog = glarelite.open(sys.argv[1], storage=sys.argv[3])
ids = [a.id for a in catalog.iter_all("images")]
rounds = int(sys.argv[4])
rng = random.Random(int(sys.argv[5]))
for r in range(rounds):
    for artifact_id in rng.sample(ids, 5):
        catalog.update(artifact_id, description=f"round {r} {rng.random()}")
    report = mirror.sync(catalog, sys.argv[2], workers=2, backoff=0.01)
    assert report.exit_code == 0, report.failed
print("done")
"""


def publisher(cat_dir: Path, dest: Path, rounds: int, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            PUBLISHER,
            str(cat_dir / "catalog.db"),
            str(dest),
            str(cat_dir / "blobs"),
            str(rounds),
            str(seed),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_generation(dest: Path, *, sums: bool = False) -> int:
    """Read one generation the way a site does: root, then every file it pins (buckets,
    shards, blobs), each verified. Returns the generation read."""
    raw = (dest / tree.ROOT_INDEX).read_bytes()
    generation = tree.Root.from_dict(json.loads(raw)).generation
    for path, sha in published_files(dest, sums=sums).items():
        if "/_" not in path:  # a blob: its bytes
            assert hashlib.sha256((dest / path).read_bytes()).hexdigest() == sha, path
    return generation


def test_a_reader_never_sees_a_mixed_generation_during_publishes(tmp_path: Path) -> None:
    cat, _ = many_world(tmp_path, 60)
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    cat.close()
    proc = publisher(tmp_path, dest, rounds=12, seed=1)
    generations: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                generations.add(read_generation(dest))
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=hammer) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        _out, err = proc.communicate(timeout=300)
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert errors == [], errors[:1]
    assert len(generations) > 2  # it did read while generations were published
    assert read_generation(dest, sums=True) == 13


@pytest.mark.slow
def test_sigkill_at_any_point_of_a_publish_leaves_a_whole_generation(tmp_path: Path) -> None:
    cat, _ = many_world(tmp_path, 90)
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    cat.close()
    rng = random.Random(18)
    served = {read_generation(dest)}
    for attempt in range(12):
        proc = publisher(tmp_path, dest, rounds=3, seed=attempt)
        time.sleep(rng.uniform(0.2, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        # previous or new: whole, every pin verifies (sums files: after a kill between a
        # sums file and the root they may be ahead of the root; the next run settles them)
        served.add(read_generation(dest))
    cat = glarelite.open(tmp_path / "catalog.db", storage=str(tmp_path / "blobs"))
    report = mirror.sync(cat, str(dest), **QUICK)
    assert report.exit_code == 0, report.failed
    assert sums_check(dest).returncode == 0
    assert mirror.check_tree(str(dest)).ok
    views = {v["id"]: v for v in type_views(dest, "images")}
    assert views == {a.id: a.to_dict() for a in cat.iter_all("images")}
    assert len(served) > 1
    cat.close()


# -- S3 ---------------------------------------------------------------------------------------
class S3Requests:
    """Every request the mirror's own S3 client sends, counted by botocore's event hooks
    on the file system instance fsspec shares with the run (same storage options)."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        from fsspec.core import url_to_fs

        self.fs, _ = url_to_fs(url, **options)
        self.fs.ls(url.split("://", 1)[1].split("/", 1)[0])  # connects: .s3 exists now
        self.sent: list[tuple[str, str]] = []
        self.fs.s3.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        self.sent.append((request.method, request.url))

    def close(self) -> None:
        self.fs.s3.meta.events.unregister("before-send.s3", self._record)

    def of(self, method: str) -> list[str]:
        return [u for m, u in self.sent if m == method]


def key_of(url: str, prefix: str) -> str:
    return url.split("?")[0].split(prefix, 1)[1].lstrip("/")


def final_key(key: str) -> str:
    """The object a temporary is written for (``.<name>.glarelite-tmp...`` beside it)."""
    folder, _, name = key.rpartition("/")
    if tree.is_temporary_name(name):
        name = name[1:].split(".glarelite-tmp.")[0]
    return f"{folder}/{name}" if folder else name


@pytest.mark.s3
def test_s3_no_op_makes_o1_requests_and_one_change_writes_o_change_objects(
    world: World, seaweedfs: Any, s3_store_url: str
) -> None:
    cat, ids = world.catalog, world.ids
    options = seaweedfs.storage_options
    prefix = s3_store_url.split("://", 1)[1]
    assert mirror.sync(cat, s3_store_url, storage_options=options, **QUICK).exit_code == 0
    counter = S3Requests(s3_store_url, options)
    try:
        report = mirror.sync(cat, s3_store_url, storage_options=options, **QUICK)
        assert report.nothing_to_do and report.mode == "no-op"
        small = [u for _, u in counter.sent if prefix in u]  # (not a HEAD of the bucket)
        # the lock, the signed-root check, head.json, the root, the redirect rules
        assert 0 < len(small) <= 16, small
        assert [key_of(u, prefix) for u in counter.of("PUT")] == [f"{tree.STATE_DIR}/lock"]

        # 40 more artifacts: the no-op costs the same requests (O(1), not O(objects))
        for n in range(40):
            a = cat.create("charts", f"more-{n}", version="1.0")
            world.upload(a.id, "package", f"more {n}".encode())
            cat.activate(a.id)
            cat.publish(a.id)
        assert mirror.sync(cat, s3_store_url, storage_options=options, **QUICK).exit_code == 0
        counter.sent.clear()
        report = mirror.sync(cat, s3_store_url, storage_options=options, **QUICK)
        assert report.nothing_to_do and report.artifacts == 44
        assert len([u for _, u in counter.sent if prefix in u]) == len(small), counter.sent

        # one change: O(change) objects written (the state object included), no listing
        counter.sent.clear()
        cat.update(ids["a1"], description="one change")
        report = mirror.sync(cat, s3_store_url, storage_options=options, **QUICK)
        assert (report.exit_code, report.mode) == (0, "journal")
        # root, artifact index, shard, shard sums, bucket, type sums, state, head, lock
        # (each written as a temporary then copied; the state saved after the publish
        # and after the superseded files went)
        finals = {final_key(key_of(u, prefix)) for u in counter.of("PUT")}
        assert len(finals) <= 9, sorted(finals)
        assert mirror_state.STATE in finals and mirror_state.HEAD in finals
        assert len(counter.of("PUT")) <= 30, counter.of("PUT")
        # no listing of a folder: only the look-ups fsspec makes of one object's key
        listed = {
            urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)["prefix"][0].rstrip("/")
            for u in counter.of("GET")
            if "list-type" in u
        }
        key_prefix = prefix.split("/", 1)[1]  # the listing names keys without the bucket
        looked_up = {
            f"{key_prefix}/{key_of(u, prefix)}"
            for m, u in counter.sent
            if m in ("PUT", "HEAD") and prefix in u
        }
        assert listed <= looked_up, sorted(listed - looked_up)
        # ~9 objects, each a handful of requests (temporary, copy, look-ups), whatever
        # the number of objects in the tree
        assert len(counter.sent) <= 9 * 12, len(counter.sent)
    finally:
        counter.close()
    fresh = Path(world.root) / "copy"
    fs = seaweedfs.other_fs
    fs.invalidate_cache()
    for key in fs.find(prefix):
        rel = key[len(prefix) + 1 :]
        (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
        (fresh / rel).write_bytes(fs.cat(key))
    assert sums_check(fresh).returncode == 0
    views = {v["id"]: v for v in type_views(fresh, "images")}
    assert views[ids["a1"]]["description"] == "one change"


def test_a_journal_run_retains_what_falls_out_of_the_selection_like_a_walk(
    world: World, tmp_path: Path
) -> None:
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    linux = {"tags": ["linux"], **QUICK}
    assert mirror.sync(cat, str(dest), **linux).artifacts == 2  # a1 and a2
    cat.update(ids["a2"], tags=["other"])  # still public and active: it merely falls out
    report = mirror.sync(cat, str(dest), **linux)
    assert (report.exit_code, report.mode, report.withdrawn) == (0, "journal", [])
    assert report.retained == 2  # its blob and its index, kept until delete
    assert (dest / tree.blob_path("images", ids["a2"], "file")).exists()
    assert ids["a2"] not in {v["id"] for v in type_views(dest, "images")}
    # a walk of the same tree counts the same
    walked = mirror.sync(cat, str(dest), verify=True, **linux)
    assert (walked.mode, walked.retained) == ("walk", 2)
    report = mirror.sync(cat, str(dest), delete=True, **linux)
    assert report.deleted == [
        tree.artifact_index_path("images", ids["a2"]),
        tree.blob_path("images", ids["a2"], "file"),
    ]
    assert sums_check(dest).returncode == 0


def test_a_lost_state_is_rebuilt_whole_and_the_journal_runs_on_it(
    world: World, tmp_path: Path
) -> None:
    """The state file removed: the next run walks, supersedes what the old root pinned
    and records every shard, so that a journal run after it keeps the other artifacts of
    the shard it rebuilds."""
    cat, dest, ids = world.catalog, tmp_path / "tree", world.ids
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    (dest / mirror_state.STATE).unlink()
    cat.deactivate(ids["b1"])
    report = mirror.sync(cat, str(dest), **QUICK)
    assert (report.exit_code, report.mode) == (0, "walk")
    # no shard, bucket or sums file left behind; b1's own files stay (a lost state does
    # not know the tree wrote them: as with format 1, they are the check's only faults)
    faults = mirror.check_tree(str(dest)).faults
    assert faults and all(ids["b1"] in f["path"] for f in faults), faults
    db = sqlite3.connect(dest / mirror_state.STATE)
    (count,) = db.execute("SELECT count(*) FROM shards").fetchone()
    db.close()
    assert count == len({p for p in published_files(dest) if "/_shards/" in p})
    cat.update(ids["a1"], description="after the rebuild")
    assert mirror.sync(cat, str(dest), **QUICK).mode == "journal"
    views = {v["id"]: v for v in type_views(dest, "images")}
    assert set(views) == {ids["a1"], ids["a2"]}
    assert sums_check(dest).returncode == 0
