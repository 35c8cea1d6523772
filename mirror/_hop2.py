"""``sync_from`` of a format 2 source: O(change) by content addressing.

A bucket or shard already in DEST under its name (and verifying) is not fetched again;
a shard pinned with the same sha256 (file and sums) as DEST's is unchanged, so none of
its artifacts changed: their indexes and blobs are not even looked at. Only the
artifacts of changed shards are compared with DEST's previous shard of the same name.

Publish order: blobs, artifact indexes, shards, shard sums files, buckets, the types'
sums indexes, the signed root, the root last. Then what the new generation no longer
names is removed, except the superseded bucket and shard files: a reader that read the
previous root may still want them, so they are recorded (``_superseded``) with the time
they were superseded and removed by the first run after ``grace`` seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from glarelite import GlareliteError, InvalidInput, NotFound, VerificationError, signing, tree

from . import _superseded, _tree2, redirects

if TYPE_CHECKING:
    from .hop import _Hop


@dataclass
class _Artifact:
    type_name: str
    show: Mapping[str, Any]
    blobs: list[_tree2.Blob]


@dataclass
class _Plan:
    # files to write, by publish rank
    shards: list[tuple[str, bytes]] = field(default_factory=list)
    sums: list[tuple[str, bytes]] = field(default_factory=list)
    buckets: list[tuple[str, bytes]] = field(default_factory=list)
    type_sums: list[tuple[str, bytes]] = field(default_factory=list)
    # the artifacts of the changed shards, before and after
    old: dict[str, _Artifact] = field(default_factory=dict)
    new: dict[str, _Artifact] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # index files no longer published
    redirects: bool = False  # a changed artifact has (or had) a blob left at its origin
    # the shards of changed buckets, compared in parallel: (type, new ref, old ref)
    shard_jobs: list[tuple[str, tree.ShardRef | None, tree.ShardRef | None]] = field(
        default_factory=list
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    blob_jobs: list[tuple[str, _tree2.Blob]] = field(default_factory=list)


def _has_redirect(show: Mapping[str, Any]) -> bool:
    return any(b.get("redirect") is not None for _, _, b in tree.iter_blob_entries(show))


def old_root(raw: bytes | None) -> tree.Root | None:
    """DEST's format 2 root, when it has a valid one."""
    if raw is None:
        return None
    try:
        return _tree2.root(raw)
    except GlareliteError:
        return None


def run(
    hop: _Hop,
    root: tree.Root,
    root_bytes: bytes,
    signed: bytes | None,
    old: tree.Root | None,
    old_v1: Any,
) -> None:
    """Publish ``root`` (verified bytes ``root_bytes``) into DEST. ``old``: DEST's format
    2 root; ``old_v1``: DEST's format 1 tree (hop._Old) when it is one."""
    report, target = hop.report, hop.target
    dest_root = target.read_bytes(tree.ROOT_INDEX)
    plan = _Plan()
    if old_v1 is not None:  # DEST is format 1: every artifact of it is "old"
        for type_name, by_id in old_v1.shows.items():
            for artifact_id, show in by_id.items():
                try:
                    _, blobs = _tree2.artifact(type_name, show)
                except InvalidInput:
                    continue
                plan.old[artifact_id] = _Artifact(type_name, show, blobs)
                plan.redirects |= _has_redirect(show)
        plan.gone += [tree.type_index_path(n) for n in old_v1.types]
        plan.gone.append(tree.SUMS)
    for type_name in sorted(set(root.types) | set(old.types if old else ())):
        _plan_type(hop, plan, type_name, root.types.get(type_name), old)
    if dest_root is None:
        # DEST serves no root yet: shard by shard, each written at once (memory bounded
        # by a batch of shards on a first hop, whatever the catalog's size)
        include = _redirects(hop)  # verified before any byte is written
        for at in range(0, len(plan.shard_jobs), _BATCH):
            part = _Plan()
            _compare(hop, part, plan.shard_jobs[at : at + _BATCH])
            _transfer(hop, part, root, fresh=True)
            if report.failed:
                return  # no root: nothing is served; the next run resumes
            for path, data in [*part.shards, *part.sums]:
                hop._write(path, data)
        staged: list[tuple[str, bytes]] = []
    else:
        _compare(hop, plan, plan.shard_jobs)
        staged = _transfer(hop, plan, root, fresh=False)
        # the redirect rules of blobs left at their origin: not pinned by the root, so
        # read only when a changed artifact has (or had) such a blob, or DEST was format
        # 1; carried verbatim once proven to be an include glarelite writes
        include = _redirects(hop) if plan.redirects or old is None else None
        with ThreadPoolExecutor(max_workers=hop.opts.workers) as pool:
            for _ in pool.map(lambda job: _copy_blob(hop, *job), plan.blob_jobs):
                pass
    if report.failed:
        return  # DEST keeps its previous generation, whole

    # publish, in order (the rules with the blobs, before the indexes that name them)
    if include is not None and target.read_bytes(redirects.INCLUDE) != include:
        hop._write(redirects.INCLUDE, include)
    for group in (staged, plan.shards, plan.sums, plan.buckets, plan.type_sums):
        for path, data in group:
            hop._write(path, data)
        target.sync_dirs()
    if signed is not None and hop_raw_signed(hop) != signed:
        hop._write(signing.SIGNED_INDEX, signed)
    elif signed is None and hop_raw_signed(hop) is not None:
        target.delete(signing.SIGNED_INDEX)
        report.deleted.append(signing.SIGNED_INDEX)
    if dest_root != root_bytes:
        hop._write(tree.ROOT_INDEX, root_bytes)
    target.sync_dirs()
    report.published = True
    report.artifacts = root.counts["artifacts"]
    report.blobs = root.counts["blobs"]

    # withdrawals: what the changed shards named before and name no longer
    old_files: set[str] = set()
    for artifact_id, art in plan.old.items():
        files = [tree.artifact_index_path(art.type_name, artifact_id)] + [b.path for b in art.blobs]
        old_files.update(files)
        if artifact_id not in plan.new:
            report.withdrawn.append(
                {
                    "id": artifact_id,
                    "type": art.type_name,
                    "reason": "no longer published by the source",
                    "files": len(files),
                }
            )
    new_files: set[str] = set()
    for artifact_id, art in plan.new.items():
        new_files.add(tree.artifact_index_path(art.type_name, artifact_id))
        new_files.update(b.path for b in art.blobs)
    gone = sorted(old_files - new_files) + plan.gone
    if (plan.redirects or old is None) and include is None:
        gone.append(redirects.INCLUDE)
    for path in gone:
        if target.delete(path):
            report.deleted.append(path)
    target.remove_empty_dirs(gone)
    _superseded.expire(target, root, plan.superseded, hop.opts.grace, report.deleted)


def _redirects(hop: _Hop) -> bytes | None:
    try:
        data = hop._read(redirects.INCLUDE)
    except NotFound:
        return None
    try:
        redirects.parse(data)
    except ValueError as exc:
        raise VerificationError(
            f"{hop.files.location}/{redirects.INCLUDE} is not a redirect include glarelite "
            f"writes ({exc}): refused"
        ) from None
    return data


_BATCH = 128  # shards compared and copied at once when DEST is new (~30k artifacts at 1M)


def _compare(
    hop: _Hop,
    plan: _Plan,
    jobs: list[tuple[str, tree.ShardRef | None, tree.ShardRef | None]],
) -> None:
    with ThreadPoolExecutor(max_workers=hop.opts.workers) as pool:
        for _ in pool.map(lambda job: _plan_shard(hop, plan, *job), jobs):
            pass


def _transfer(hop: _Hop, plan: _Plan, root: tree.Root, *, fresh: bool) -> list[tuple[str, bytes]]:
    """The artifact indexes and blobs of the changed shards' artifacts that DEST lacks.
    Artifact indexes are fetched in parallel, each proven to hold its shard's show view:
    into a DEST that serves no root (``fresh``) they are written at once and the blobs
    copied; else they are returned, to be published once every blob is in (the blob
    jobs are left in ``plan.blob_jobs``)."""
    from .hop import _check_artifact_index

    report = hop.report
    wanted: list[tuple[str, Mapping[str, Any]]] = []
    for artifact_id, art in sorted(plan.new.items()):
        before = plan.old.get(artifact_id)
        path = tree.artifact_index_path(art.type_name, artifact_id)
        same = before is not None and before.type_name == art.type_name
        if not (same and before is not None and before.show == art.show and hop._present(path)):
            wanted.append((path, art.show))
        had = {b.path: (b.sha256, b.size) for b in before.blobs} if before else {}
        for blob in art.blobs:
            if had.get(blob.path) == (blob.sha256, blob.size) and hop._present(
                blob.path, blob.size
            ):
                report.skipped += 1
                continue
            plan.blob_jobs.append((artifact_id, blob))

    def fetch(item: tuple[str, Mapping[str, Any]]) -> tuple[str, bytes]:
        path, show = item
        data = hop.files.read(path)
        _check_artifact_index(data, show, root.generation, path)
        with hop.lock:
            report.bytes_fetched += len(data)
        if fresh:
            hop.target.write_file(path, [data])
            with hop.lock:
                report.copied.append({"path": path, "kind": "index", "bytes": len(data)})
                report.bytes += len(data)
            return path, b""
        return path, data

    staged: list[tuple[str, bytes]] = []
    with ThreadPoolExecutor(max_workers=hop.opts.workers) as pool:
        for path, data in pool.map(fetch, wanted):
            if not fresh:
                staged.append((path, data))
        if fresh:
            for _ in pool.map(lambda job: _copy_blob(hop, *job), plan.blob_jobs):
                pass
    return staged


def hop_raw_signed(hop: _Hop) -> bytes | None:
    return hop.target.read_bytes(signing.SIGNED_INDEX)


def _local_or_fetch(hop: _Hop, path: str, ref: tree.FileRef) -> tuple[bytes, bool]:
    """(bytes, fetched): a content-addressed file DEST already holds (verified) is not
    fetched again."""
    st = hop.target.stat(path)
    if st is not None and st[0] == ref.size:
        raw = hop.target.read_bytes(path)
        if raw is not None and _tree2.matches(raw, ref):
            return raw, False
    return hop._pinned(path, ref.size, ref.sha256), True


def _old_file(hop: _Hop, path: str, ref: tree.FileRef) -> bytes | None:
    """A file of DEST's previous generation, when it is still the one pinned."""
    try:
        raw = hop.target.read_bytes(path)
    except OSError:
        return None
    return raw if raw is not None and _tree2.matches(raw, ref) else None


def _plan_type(
    hop: _Hop, plan: _Plan, type_name: str, entry: tree.RootType | None, old: tree.Root | None
) -> None:
    before = old.types.get(type_name) if old is not None else None
    for b in sorted(set(entry.buckets if entry else ()) | set(before.buckets if before else ())):
        nref = entry.buckets.get(b) if entry else None
        oref = before.buckets.get(b) if before else None
        if (
            nref is not None
            and nref == oref
            and hop._present(tree.bucket_path(type_name, b, nref.sha256), nref.size)
        ):
            continue  # the same bucket: every shard in it unchanged
        new_bucket: tree.Bucket | None = None
        if nref is not None:
            path = tree.bucket_path(type_name, b, nref.sha256)
            raw, fetched = _local_or_fetch(hop, path, nref)
            new_bucket = _tree2.bucket(raw, type_name, b)
            if fetched:
                plan.buckets.append((path, raw))
        old_bucket: tree.Bucket | None = None
        if oref is not None:
            opath = tree.bucket_path(type_name, b, oref.sha256)
            if nref != oref:
                plan.superseded.append(opath)
            raw_old = _old_file(hop, opath, oref)
            if raw_old is not None:
                try:
                    old_bucket = _tree2.bucket(raw_old, type_name, b)
                except InvalidInput:
                    old_bucket = None
        new_shards = new_bucket.shards if new_bucket else {}
        old_shards = old_bucket.shards if old_bucket else {}
        for s in sorted(set(new_shards) | set(old_shards)):
            plan.shard_jobs.append((type_name, new_shards.get(s), old_shards.get(s)))
    if entry is not None:
        path = tree.type_sums_path(type_name)
        if before is None or before.sums != entry.sums or not hop._present(path, entry.sums.size):
            plan.type_sums.append((path, hop._pinned(path, entry.sums.size, entry.sums.sha256)))
    elif before is not None:
        plan.gone.append(tree.type_sums_path(type_name))


def _plan_shard(
    hop: _Hop, plan: _Plan, type_name: str, new: tree.ShardRef | None, old: tree.ShardRef | None
) -> None:
    """Compare one shard with DEST's previous one of the same name (in a worker thread:
    what it finds is merged into ``plan`` under its lock)."""
    sums_path = tree.shard_sums_path(type_name, (new or old).shard)  # type: ignore[union-attr]
    if (
        new is not None
        and old is not None
        and (new.file, new.sums) == (old.file, old.sums)
        and hop._present(new.path(type_name), new.file.size)
        and hop._present(sums_path, new.sums.size)
    ):
        return  # unchanged: none of its artifacts changed
    shards: list[tuple[str, bytes]] = []
    sums: list[tuple[str, bytes]] = []
    gone: list[str] = []
    superseded: list[str] = []
    found: dict[str, _Artifact] = {}
    had: dict[str, _Artifact] = {}
    redirect = False
    if new is not None:
        path = new.path(type_name)
        raw, fetched = _local_or_fetch(hop, path, new.file)
        if fetched:
            shards.append((path, raw))
        for show in _tree2.shard(raw, type_name, new):
            artifact_id, blobs = _tree2.artifact(type_name, show)
            found[artifact_id] = _Artifact(type_name, show, blobs)
            redirect |= _has_redirect(show)
        if old is None or old.sums != new.sums or not hop._present(sums_path, new.sums.size):
            sums.append((sums_path, hop._pinned(sums_path, new.sums.size, new.sums.sha256)))
    else:
        gone.append(sums_path)
    if old is not None:
        opath = old.path(type_name)
        if new is None or new.file != old.file:
            superseded.append(opath)
        raw_old = _old_file(hop, opath, old.file)
        # DEST cannot vouch for it (None, invalid): its artifacts are compared with nothing
        try:
            for show in _tree2.shard(raw_old, type_name, old) if raw_old is not None else []:
                artifact_id, blobs = _tree2.artifact(type_name, show)
                had[artifact_id] = _Artifact(type_name, show, blobs)
                redirect |= _has_redirect(show)
        except InvalidInput:
            had = {}
    with plan.lock:
        plan.shards += shards
        plan.sums += sums
        plan.gone += gone
        plan.superseded += superseded
        plan.new.update(found)
        plan.old.update(had)
        plan.redirects |= redirect


def _copy_blob(hop: _Hop, artifact_id: str, blob: _tree2.Blob) -> None:
    """One blob from the source, verified against the size and sha256 its shard pins."""
    hop.copy_blob(artifact_id, blob.path, blob.size, blob.sha256, lambda: hop.files.open(blob.path))
