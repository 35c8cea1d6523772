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
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from glarelite import GlareliteError, tree
from glarelite.fsutil import utcnow

from . import layout
from . import redirects as redirecting
from ._paths import is_sums_path
from .dest import Dest
from .plan import Item, Plan
from .report import SyncReport
from .select import Selection
from .state import State, Store, TrackedSet
from .worktable import WorkTable, chunks


@dataclass
class Outcome:
    generation: int
    changed: bool
    artifacts: int = 0
    blobs: int = 0
    kept: list[str] = field(default_factory=list)  # ids published as the previous generation
    retired: list[str] = field(default_factory=list)  # index files the new root no longer pins
    drop: list[str] = field(default_factory=list)  # sums files of shards and types now gone
    # a walk: replaces the state's artifact rows, in the transaction that saves the rest
    apply: Callable[[sqlite3.Connection], None] | None = None


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
    store: Store,
    state: State,
    work: WorkTable,
    plan: Plan,
    selection: Selection,
    executor: Executor,
    *,
    verify: bool,
    legacy: bool = False,
) -> Outcome:
    """Publish what a walk selected (``work``'s items, show views in ``plan``'s spools),
    shard by shard in order: the artifact indexes that changed, each shard whose bytes
    changed with its sums file, then buckets, sums indexes and the root. Updates
    ``state.published`` and ``state.shards``; the artifact rows are replaced by
    ``Outcome.apply`` inside the caller's saving transaction. Superseded index files are
    returned in ``Outcome.retired`` (the caller records them for the grace period)."""
    old = state.published
    conn = work.conn
    out = Outcome(generation=old.generation, changed=False)
    conn.execute("UPDATE run.items SET pub = (withheld = 0 AND problem = '' AND bad = 0)")
    out.kept = _keep_previous(dest, work, plan)

    # Redirect rules before any index names the blobs they answer for.
    if plan.redirect:
        redirecting.write(dest, _redirect_rules(conn))
    else:
        redirecting.remove(dest)

    generation = old.generation + 1  # used only if something is written
    stale_written = 0
    shard_writes = 0
    pending: list[Future[list[str]]] = []
    new_shards: dict[tuple[str, str], tree.ShardRef] = {}

    def write_shard(type_name: str, built: layout.ShardFiles) -> list[str]:
        path = built.ref.path(type_name)
        dest.write_file(path, [built.data], defer=True)
        sums = tree.shard_sums_path(type_name, built.ref.shard)
        dest.write_file(sums, [built.sums], defer=True)
        return [path, sums]

    stale: list[Item] = []  # artifact indexes to write, a batch of shards at a time

    def write_stale() -> None:
        nonlocal stale_written
        if stale:
            stale_written += len(stale)
            write_artifact_indexes(dest, state, plan, stale, generation, executor)
            store.save(state, upload=False)  # their rows: the state names them, then...
            state.indexes = TrackedSet()  # ...not kept in memory
            stale.clear()

    pub: list[tuple[Any, ...]] = []  # rows of what the new root publishes, a batch at a time

    def add_pub() -> None:
        conn.executemany("INSERT INTO run.pub VALUES (?, ?, ?, ?, ?, ?)", pub)
        pub.clear()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            for path in pending.pop(0).result():
                state.retired.pop(path, None)

    for type_name in selection.types:
        shards = [
            r[0]
            for r in conn.execute(
                "SELECT shard FROM run.items WHERE type = ? AND pub = 1 "
                "UNION SELECT shard FROM run.kept WHERE type = ? ORDER BY 1",
                (type_name, type_name),
            )
        ]
        for shard in shards:
            members = conn.execute(_MEMBERS, (type_name, shard, type_name, shard)).fetchall()
            lines = _blob_lines(conn, members)
            spool = plan.spools[type_name]
            views = [spool.get(m[3], m[4]) for m in members]
            built = layout.shard_files(type_name, shard, views, lines)
            new_shards[(type_name, shard)] = built.ref
            # Pinned again (a content-addressed file an earlier root superseded, still
            # there within the grace period): no longer retired, written or not.
            state.retired.pop(built.ref.path(type_name), None)
            if (
                state.shards.get((type_name, shard)) != built.ref
                or not _present(dest, built.ref.path(type_name), built.ref.file, verify)
                or not _present(
                    dest, tree.shard_sums_path(type_name, shard), built.ref.sums, verify
                )
            ):
                shard_writes += 1
                pending.append(executor.submit(write_shard, type_name, built))
                settle(_IN_FLIGHT)
            stale += [
                Item(m[0], type_name, m[2], [], m[3], m[4], name=m[1])
                for m in members
                if legacy  # format 1 -> 2: every artifact index says its format
                or [m[7], m[8]] != [type_name, m[2]]
                or not m[9]
                or (dest.local and dest.stat(tree.artifact_index_path(type_name, m[0])) is None)
                or (verify and not _artifact_index_ok(dest, plan, m[0], type_name, m[3], m[4]))
            ]
            pub += [(m[0], type_name, m[1], shard, m[2], m[5]) for m in members]
            if len(stale) >= _FLUSH:
                write_stale()
            if len(pub) >= _FLUSH:
                add_pub()
    write_stale()
    add_pub()
    settle(0)
    dest.sync_dirs()
    out.artifacts = sum(r.artifacts for r in new_shards.values())
    out.blobs = sum(r.blobs for r in new_shards.values())

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
            state.retired.pop(path, None)  # pinned again: see the shards
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
        and not stale_written
        and not shard_writes
        and not bucket_writes
        and not sums_writes
        and new_types == old.types
        and _root_is(dest, old.root_sha256)
    )
    # Also when nothing else changed: a run killed after publishing this same root may
    # have left them.
    out.drop += _unpinned_sums(dest, new_shards, selection.types)
    if root_same:
        return out
    out.changed = True
    out.generation = generation

    # Shard files and their sums files are written (above); then bucket files, then the
    # types' sums indexes, then the root: each after what it names.
    for path, data in bucket_writes:
        dest.write_file(path, [data])
        state.retired.pop(path, None)
    dest.sync_dirs()
    for type_name in sums_writes:
        path = tree.type_sums_path(type_name)
        dest.write_file(path, [type_sums[type_name]])
        state.retired.pop(path, None)
    dest.sync_dirs()
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
    old.root_sha256 = hashlib.sha256(raw).hexdigest()
    state.shards = new_shards
    out.apply = _replace_artifacts
    return out


_FLUSH = 2000  # artifact indexes written (their rows saved after), publish rows added
_IN_FLIGHT = 64  # shard files being written at once (each holds its bytes, ~170 KB at 1M)
# The published members of one shard, in shard order: the items whole in this run, and
# those left as the previous generation had them; with the state's row of each.
_MEMBERS = """
SELECT i.id, i.name, i.fingerprint, i.offset, i.length, i.linked, 0, a.type, a.fingerprint,
       x.path IS NOT NULL
FROM run.items i
LEFT JOIN main.artifacts a ON a.id = i.id
LEFT JOIN main.indexes x ON x.path = 'artifacts/' || i.type || '/' || i.id || '/index.json'
WHERE i.type = ? AND i.shard = ? AND i.pub = 1
UNION ALL
SELECT k.id, k.name, k.fingerprint, k.offset, k.length, k.linked, 1, a.type, a.fingerprint,
       x.path IS NOT NULL
FROM run.kept k
LEFT JOIN main.artifacts a ON a.id = k.id
LEFT JOIN main.indexes x ON x.path = 'artifacts/' || k.type || '/' || k.id || '/index.json'
WHERE k.type = ? AND k.shard = ?
ORDER BY 2, 1
"""


def _blob_lines(conn: sqlite3.Connection, members: list[Any]) -> list[tuple[str, str, int]]:
    """(path, sha256, size) of the blob files of one shard's members."""
    lines: list[tuple[str, str, int]] = []
    for table, kept in (("paths", 0), ("kept_paths", 1)):
        ids = [m[0] for m in members if m[6] == kept]
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            lines += conn.execute(
                f"SELECT path, sha256, size FROM run.{table} WHERE id IN ({marks})", chunk
            ).fetchall()
    return lines


def _redirect_rules(conn: sqlite3.Connection) -> Iterator[tuple[str, str]]:
    for (rules,) in conn.execute(
        "SELECT redirects FROM run.items WHERE pub = 1 AND redirects IS NOT NULL "
        "UNION ALL SELECT redirects FROM run.kept WHERE redirects IS NOT NULL"
    ).fetchall():
        for path, url in json.loads(rules):
            yield str(path), str(url)


def _keep_previous(dest: Dest, work: WorkTable, plan: Plan) -> list[str]:
    """The artifacts whose bytes could not be had (a damaged tree file, upstream down...):
    a local fault never shrinks the index; the previous generation's entry stays when
    there is one (published as it is when the catalog did not change it, else from its
    own index file, into ``run.kept``). A withheld one (a redirect to bytes that may not
    match) is never published, not even as before. Returns their ids."""
    conn = work.conn
    kept: list[str] = []
    last = ""
    while True:
        rows = conn.execute(
            "SELECT i.id, i.type, i.name, i.fingerprint, i.offset, i.length, i.linked, "
            "a.type, a.fingerprint FROM run.items i LEFT JOIN main.artifacts a ON a.id = i.id "
            "WHERE i.withheld = 0 AND (i.problem != '' OR i.bad = 1) AND i.id > ? "
            "ORDER BY i.id LIMIT 500",
            (last,),
        ).fetchall()
        if not rows:
            return kept
        last = rows[-1][0]
        for aid, type_name, name, fp, offset, length, linked, old_type, old_fp in rows:
            item = Item(aid, type_name, fp, [], offset, length, name=name)
            entry = [old_type, old_fp] if old_type is not None else None
            previous = _previous(dest, plan, entry, item)
            if previous is None:
                continue
            kept.append(aid)
            if previous is item:
                conn.execute("UPDATE run.items SET pub = 1 WHERE id = ?", (aid,))
                continue
            conn.execute(
                "INSERT INTO run.kept VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    aid,
                    type_name,
                    previous.name,
                    tree.shard_of(previous.name),
                    previous.fingerprint,
                    previous.offset,
                    previous.length,
                    linked,
                    json.dumps(list(previous.redirects)) if previous.redirects else None,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO run.kept_paths VALUES (?, ?, ?, ?)",
                [(path, aid, sha, size) for path, sha, size in previous.paths],
            )


def _unpinned_sums(
    dest: Dest, shards: dict[tuple[str, str], tree.ShardRef], types: Iterable[str]
) -> list[str]:
    """Shard sums files in the tree that no shard of the new root has: written by a run
    killed before its state named their shard (``sha256sum -c`` would read them). Local
    trees only (a folder listing per type, at most one entry per shard)."""
    listdir = getattr(dest, "listdir", None)
    if listdir is None:
        return []
    out = []
    for type_name in types:
        folder = f"{tree.SUMS_DIR}/{type_name}"
        for name in listdir(folder):
            path = f"{folder}/{name}"
            if name != tree.TYPE_SUMS and is_sums_path(path) and (type_name, name) not in shards:
                out.append(path)
    return out


def _replace_artifacts(conn: sqlite3.Connection) -> None:
    """The state's artifact rows become what the new root publishes (only changed rows
    are written)."""
    conn.execute("DELETE FROM main.artifacts WHERE id NOT IN (SELECT id FROM run.pub)")
    conn.execute(
        "INSERT OR REPLACE INTO main.artifacts (id, type, name, shard, fingerprint, linked) "
        "SELECT p.id, p.type, p.name, p.shard, p.fingerprint, p.linked FROM run.pub p "
        "LEFT JOIN main.artifacts a ON a.id = p.id WHERE a.id IS NULL OR a.type != p.type "
        "OR a.name != p.name OR a.fingerprint != p.fingerprint OR a.linked != p.linked"
    )


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


def _artifact_index_ok(
    dest: Dest, plan: Plan, artifact_id: str, type_name: str, offset: int, length: int
) -> bool:
    """The artifact's index.json holds its show view (verify only)."""
    raw = dest.read_bytes(tree.artifact_index_path(type_name, artifact_id))
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):  # a hostile tree file
        return False
    if not isinstance(data, dict):
        return False
    data.pop(tree.MIRROR_KEY, None)
    return bool(data == json.loads(plan.spools[type_name].get(offset, length)))


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


def report_outcome(report: SyncReport, out: Outcome) -> None:
    """What a publish did, into the report (walks and journal runs alike)."""
    report.kept = out.kept
    if out.kept:
        report.warnings.append(
            f"{len(out.kept)} artifacts stay published as the previous generation had "
            "them: their blobs could not be repaired (see failed); a rerun tries again"
        )
    report.nothing_to_do = (
        not out.changed
        and not report.copied
        and not report.repaired
        and not report.withdrawn
        and not report.failed
    )
