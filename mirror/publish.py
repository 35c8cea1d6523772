"""Writing the indexes of a format 2 tree (``glarelite.tree``), in the order that keeps
every reader safe: artifact indexes, then shard files and their sums files, then bucket
files, then each type's sums index, then the root index — each after what it names, each
written whole (temporary + rename). Shards and buckets are content-addressed: one whose
bytes did not change keeps its name and is not written again, and a reader holding the
previous root still finds the files it pins (they are retired, not removed: the caller
removes them after the grace period).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Executor
from dataclasses import dataclass, field

from glarelite import GlareliteError, tree
from glarelite.fsutil import utcnow

from . import layout
from . import redirects as redirecting
from .dest import Dest
from .plan import Item, Plan
from .select import Selection
from .state import State


@dataclass
class Outcome:
    generation: int
    changed: bool
    artifacts: int = 0
    blobs: int = 0
    published: dict[str, list[Item]] = field(default_factory=dict)
    written_indexes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # ids published as the previous generation
    retired: list[str] = field(default_factory=list)  # index files the new root no longer pins
    drop: list[str] = field(default_factory=list)  # sums files of shards and types now gone


def write_artifact_indexes(
    dest: Dest, state: State, plan: Plan, items: list[Item], generation: int, executor: Executor
) -> list[str]:
    """Write the artifact indexes of ``items``: many small files, written in parallel in
    batches (so that thread hand-offs do not cost more than the writes), then synced."""

    def write(batch: list[Item]) -> list[str]:
        paths = []
        for item in batch:
            path = tree.artifact_index_path(item.type, item.id)
            # Recorded first: a batch failing halfway must not leave files prune ignores.
            state.indexes.add(path)
            dest.write_file(path, [_artifact_index(plan, item, generation)], defer=True)
            paths.append(path)
        return paths

    step = max(1, min(256, -(-len(items) // 32)))
    batches = [items[i : i + step] for i in range(0, len(items), step)]
    written = [p for paths in executor.map(write, batches) for p in paths]
    dest.sync_dirs()
    return written


def _artifact_index(plan: Plan, item: Item, generation: int) -> bytes:
    show = plan.spools[item.type].get(item.offset, item.length)
    extra = json.dumps(
        {tree.MIRROR_KEY: {"format_version": tree.FORMAT_VERSION, "generation": generation}},
        separators=(",", ":"),
    )
    # Splice the mirror key into the spooled show view: no re-parse, no re-encode.
    return show[:-1] + b"," + extra[1:].encode() + b"\n"


def publish(
    dest: Dest,
    state: State,
    plan: Plan,
    selection: Selection,
    good: set[str],
    executor: Executor,
    *,
    verify: bool,
) -> Outcome:
    """Write what changed; update ``state.published``, ``state.shards`` and
    ``state.indexes`` to match. Superseded index files are returned in
    ``Outcome.retired`` (the caller records them for the grace period)."""
    old = state.published
    published: dict[str, list[Item]] = {}
    kept: list[str] = []
    for type_name in selection.types:
        items = []
        for i in plan.items.get(type_name, []):
            if i.withheld:
                # A redirect to bytes that may not match is never published, not even the
                # previous generation's: the artifact is left out (reported failed).
                continue
            if not i.problem and all(p in good for p, _, _ in i.paths):
                items.append(i)
                continue
            # Its bytes could not be had (a damaged tree file, upstream down...): a local
            # fault never shrinks the index; the previous generation's entry stays.
            previous = _previous(dest, plan, old.artifacts.get(i.id), i)
            if previous is not None:
                items.append(previous)
                kept.append(i.id)
        items.sort(key=lambda i: (i.name, i.id))
        published[type_name] = items

    # Redirect rules before any index names the blobs they answer for.
    if plan.redirect:
        redirecting.write(dest, [r for v in published.values() for i in v for r in i.redirects])
    else:
        redirecting.remove(dest)

    new_artifacts = {i.id: [i.type, i.fingerprint] for v in published.values() for i in v}
    new_names = {i.id: i.name for v in published.values() for i in v}
    stale_items = [
        i
        for v in published.values()
        for i in v
        if state.legacy  # format 1 -> 2: every artifact index says its format
        or old.artifacts.get(i.id) != [i.type, i.fingerprint]
        or tree.artifact_index_path(i.type, i.id) not in state.indexes
        or (dest.local and dest.stat(tree.artifact_index_path(i.type, i.id)) is None)
        or (verify and not _artifact_index_ok(dest, plan, i))
    ]
    out = Outcome(generation=old.generation, changed=False, published=published)
    out.kept = sorted(kept)
    out.artifacts = sum(len(v) for v in published.values())
    out.blobs = len({p for v in published.values() for i in v for p, _, _ in i.paths})

    # Every shard of every type, built in memory one at a time (~250 artifacts at a
    # million) and compared with what the state says the tree publishes.
    shard_writes: list[tuple[str, layout.ShardFiles]] = []
    new_shards: dict[tuple[str, str], tree.ShardRef] = {}
    for type_name, items in published.items():
        by_shard: dict[str, list[Item]] = {}
        for item in items:
            by_shard.setdefault(tree.shard_of(item.name), []).append(item)
        spool = plan.spools[type_name]
        for shard in sorted(by_shard):
            members = by_shard[shard]
            views = [spool.get(i.offset, i.length) for i in members]
            blobs = [line for i in members for line in i.paths]
            built = layout.shard_files(type_name, shard, views, blobs)
            new_shards[(type_name, shard)] = built.ref
            if (
                state.shards.get((type_name, shard)) != built.ref
                or not _present(dest, built.ref.path(type_name), built.ref.file, verify)
                or not _present(
                    dest, tree.shard_sums_path(type_name, shard), built.ref.sums, verify
                )
            ):
                shard_writes.append((type_name, built))
    # Buckets and type entries.
    entries: dict[str, tree.RootType] = {}
    type_sums: dict[str, bytes] = {}
    bucket_writes: list[tuple[str, bytes]] = []
    for type_name in selection.types:
        refs: dict[str, dict[str, tree.ShardRef]] = {}
        for (t, shard), ref in new_shards.items():
            if t == type_name:
                refs.setdefault(tree.bucket_of(shard), {})[shard] = ref
        if not refs:
            # A type with no artifact: one empty bucket, so that its sums index has a
            # line and tree.SUMS_CHECK passes on a tree that publishes nothing (GNU
            # sha256sum fails on input without a line; issue 16.3).
            refs[tree.BUCKETS[0]] = {}
        buckets: dict[str, tree.FileRef] = {}
        for bucket in sorted(refs):
            data = layout.bucket_file(type_name, bucket, refs[bucket])
            file_ref = tree.FileRef(hashlib.sha256(data).hexdigest(), len(data))
            buckets[bucket] = file_ref
            path = tree.bucket_path(type_name, bucket, file_ref.sha256)
            if not _present(dest, path, file_ref, verify):
                bucket_writes.append((path, data))
        all_refs = [r for shard_refs in refs.values() for r in shard_refs.values()]
        entry, sums = layout.root_type(
            type_name, selection.definitions[type_name].to_json(), buckets, all_refs
        )
        entries[type_name] = entry
        type_sums[type_name] = sums
    sums_writes = [
        t
        for t, entry in entries.items()
        if (old.types.get(t) or {}).get("sums") != entry.sums.to_dict()
        or not _present(dest, tree.type_sums_path(t), entry.sums, verify)
    ]
    new_types = {n: e.to_dict() for n, e in entries.items()}
    root_same = (
        old.generation > 0
        and not stale_items
        and not shard_writes
        and not bucket_writes
        and not sums_writes
        and new_types == old.types
        and _root_is(dest, old.root_sha256)
    )
    if root_same:
        return out
    out.changed = True
    generation = old.generation + 1
    out.generation = generation

    # 1. artifact indexes
    written = write_artifact_indexes(dest, state, plan, stale_items, generation, executor)
    out.written_indexes += written

    # 2. shard files and their sums files, then 3. bucket files, then 4. the types' sums
    #    indexes: each after what it names
    def write_shard(job: tuple[str, layout.ShardFiles]) -> list[str]:
        type_name, built = job
        path = built.ref.path(type_name)
        dest.write_file(path, [built.data], defer=True)
        sums = tree.shard_sums_path(type_name, built.ref.shard)
        dest.write_file(sums, [built.sums], defer=True)
        return [path, sums]

    for paths in executor.map(write_shard, shard_writes):
        out.written_indexes.extend(paths)
        for path in paths:
            state.retired.pop(path, None)
    dest.sync_dirs()
    for path, data in bucket_writes:
        dest.write_file(path, [data])
        state.retired.pop(path, None)
        out.written_indexes.append(path)
    dest.sync_dirs()
    for type_name in sums_writes:
        path = tree.type_sums_path(type_name)
        dest.write_file(path, [type_sums[type_name]])
        state.retired.pop(path, None)
        out.written_indexes.append(path)
    dest.sync_dirs()

    # 5. the root index, last
    root = tree.Root(generation=generation, generated_at=utcnow("seconds"), types=entries)
    raw = root.to_bytes()
    dest.write_file(tree.ROOT_INDEX, [raw])
    dest.sync_dirs()

    # What the previous root pinned that this one does not: superseded, kept for readers
    # holding the previous root until the grace period has passed.
    for (type_name, shard), ref in state.shards.items():
        now = new_shards.get((type_name, shard))
        if now is None or now.file.sha256 != ref.file.sha256:
            out.retired.append(ref.path(type_name))
        if now is None:  # its sums file goes at once: it is not pinned by any root
            out.drop.append(tree.shard_sums_path(type_name, shard))
    for type_name, entry_dict in old.types.items():
        try:
            old_entry = tree.RootType.from_dict(type_name, entry_dict)
        except ValueError:
            continue
        new_entry = entries.get(type_name)
        for bucket, bucket_ref in old_entry.buckets.items():
            if new_entry is None or new_entry.buckets.get(bucket) != bucket_ref:
                out.retired.append(old_entry.bucket_path(bucket))
        if new_entry is None:
            out.drop.append(tree.type_sums_path(type_name))

    old.generation = generation
    old.generated_at = root.generated_at
    old.types = new_types
    old.artifacts = new_artifacts
    old.names = new_names
    old.linked = {i.id for v in published.values() for i in v if i.linked}
    old.root_sha256 = hashlib.sha256(raw).hexdigest()
    state.shards = new_shards
    return out


def _present(dest: Dest, path: str, ref: tree.FileRef, verify: bool) -> bool:
    """The content-addressed file is in the tree (its size, or with ``verify`` its bytes)."""
    if not verify:
        st = dest.stat(path)
        return st is not None and st[0] == ref.size
    from .copy import hash_file

    try:
        return hash_file(dest, path) == (ref.size, ref.sha256)
    except (FileNotFoundError, OSError):
        return False


def _root_is(dest: Dest, sha256: str) -> bool:
    raw = dest.read_bytes(tree.ROOT_INDEX)
    return raw is not None and bool(sha256) and hashlib.sha256(raw).hexdigest() == sha256


def _artifact_index_ok(dest: Dest, plan: Plan, item: Item) -> bool:
    """The artifact's index.json holds its show view (verify only)."""
    raw = dest.read_bytes(tree.artifact_index_path(item.type, item.id))
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):  # a hostile tree file
        return False
    if not isinstance(data, dict):
        return False
    data.pop(tree.MIRROR_KEY, None)
    return bool(data == json.loads(plan.spools[item.type].get(item.offset, item.length)))


def _previous(dest: Dest, plan: Plan, entry: list[str] | None, item: Item) -> Item | None:
    """The artifact as the tree published it last, or None if it did not."""
    if entry is None or entry[0] != item.type:
        return None
    if entry[1] == item.fingerprint:
        return item  # unchanged in the catalog: the same show view, the same blobs
    # Changed since: publish the previous show view again, from its own index file.
    raw = dest.read_bytes(tree.artifact_index_path(item.type, item.id))
    try:
        show = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(show, dict) or show.get("id") != item.id:
        return None
    show.pop(tree.MIRROR_KEY, None)
    paths: list[tuple[str, str, int]] = []
    rules: list[tuple[str, str]] = []
    try:
        for f, k, b in tree.iter_blob_entries(show):
            path = tree.blob_path(item.type, item.id, f, k)
            url = b.get("redirect")
            if url is not None:
                if not plan.redirect or not isinstance(url, str) or redirecting.refusal(path, url):
                    return None  # published as a redirect, and now none can be written
                rules.append((path, url))
                continue
            paths.append((path, str(b["sha256"]), int(b["size"])))
    except (KeyError, TypeError, ValueError, GlareliteError):
        return None
    offset, length = plan.spools[item.type].add(json.dumps(show, separators=(",", ":")).encode())
    kept = Item(item.id, item.type, entry[1], paths, offset, length, name=str(show.get("name")))
    kept.redirects = rules
    return kept
