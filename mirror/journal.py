"""A run driven by the catalog's change journal: work in proportion to what changed.

The state remembers the journal serial the tree published. A later run reads the
artifacts changed since (``Catalog.changes``), decides each one as the selection would,
copies its blobs, rebuilds only the shards they leave or enter (from the shard file the
tree serves, checked against the sha256 the state recorded), their buckets, their
types' sums indexes and the root. Anything this module does not handle (links, a
shard file that does not verify, too many changes) makes the caller walk instead.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, cast

from glarelite import Artifact, Forbidden, GlareliteError, JournalTrimmed, NotFound, tree
from glarelite.fsutil import utcnow

from . import layout
from . import plan as planning
from .dest import Dest
from .plan import Item, Plan
from .publish import Outcome, report_outcome, write_artifact_indexes
from .select import Selection
from .state import Head, State, Store
from .walk import UNKNOWN

if TYPE_CHECKING:
    from .sync import _Run

PAGE = 1000  # journal entries per request
MIN_WALK = 256  # up to this many changed artifacts never make a walk cheaper


class WalkInstead(Exception):
    """This run cannot be done from the journal: the caller walks the catalog."""


def changed_ids(catalog: Any, since: int, upto: int, cap: int) -> dict[str, str]:
    """id -> type of every artifact changed after serial ``since`` up to ``upto``;
    WalkInstead when there are more than ``cap`` or the journal cannot be read
    (JournalTrimmed is left to the caller, which reports it)."""
    out: dict[str, str] = {}
    while since < upto:
        try:
            page = catalog.changes(since, limit=PAGE)
        except JournalTrimmed:
            raise
        except GlareliteError as exc:  # not allowed to read it (not admin), no journal
            raise WalkInstead(str(exc)) from exc
        if not page:
            break
        for change in page:
            out.pop(change.artifact_id, None)
            out[change.artifact_id] = change.type_name
        since = page[-1].serial
        if len(out) > cap:
            raise WalkInstead(f"more than {cap} artifacts changed")
    return out


def is_selected(selection: Selection, artifact: Artifact) -> bool:
    """Whether ``Selection.queries()`` would return the artifact (kept in step with it)."""
    if artifact.type_name not in selection.types or artifact.status != "active":
        return False
    if not set(selection.tags) <= set(artifact.tags):
        return False
    if selection.names is not None and artifact.name not in selection.names:
        return False
    if artifact.visibility == "public":
        return True
    return artifact.visibility == "private" and artifact.name in selection.include_private


def has_links(selection: Selection, artifact: Artifact) -> bool:
    """Whether the artifact links to another (the walk brings linked ones along)."""
    definition = selection.definitions.get(artifact.type_name)
    if definition is None:
        return False
    for name, prop in definition.properties.items():
        if (prop.kind == "link" or prop.items == "link") and artifact.properties.get(name):
            return True
    return False


def _verified_shard(dest: Dest, type_name: str, ref: tree.ShardRef) -> list[Mapping[str, Any]]:
    """The show views of a published shard, read back from the tree and checked against
    the sha256 the state recorded (WalkInstead when it does not verify)."""
    raw = dest.read_bytes(ref.path(type_name))
    if raw is None or len(raw) != ref.file.size:
        raise WalkInstead(f"shard {ref.path(type_name)} is missing or of another size")
    if hashlib.sha256(raw).hexdigest() != ref.file.sha256:
        raise WalkInstead(f"shard {ref.path(type_name)} does not verify")
    try:
        return tree.check_shard(json.loads(raw), type_name, ref.shard)
    except (ValueError, RecursionError) as exc:
        raise WalkInstead(f"shard {ref.path(type_name)}: {exc}") from exc


def publish_changes(
    dest: Dest,
    store: Store,
    state: State,
    plan: Plan,
    selection: Selection,
    good: set[str],
    executor: Executor,
    *,
    changed: Iterable[str],
    dirty: Iterable[tuple[str, str]],
) -> Outcome:
    """Rebuild the ``dirty`` shards (type, shard) from their published files minus the
    ``changed`` artifacts plus the planned ones, then their buckets, the types' sums
    indexes and the root, in publish order. Updates ``state`` (partial) to match."""
    old = state.published
    changed_set = set(changed)
    planned: dict[tuple[str, str], list[Item]] = {}
    failed: set[str] = set()  # planned, but their bytes could not be had
    for items in plan.items.values():
        for item in items:
            planned.setdefault((item.type, tree.shard_of(item.name)), []).append(item)
            if not item.withheld and (item.problem or any(p not in good for p, _, _ in item.paths)):
                failed.add(item.id)
    out = Outcome(generation=old.generation, changed=False)
    new_artifacts: dict[str, list[str]] = {}
    new_names: dict[str, str] = {}
    stale: list[Item] = []
    shard_writes: list[tuple[str, layout.ShardFiles]] = []
    new_refs: dict[tuple[str, str], tree.ShardRef | None] = {}
    old_refs: dict[tuple[str, str], tree.ShardRef] = {}
    bucket_cache: dict[tuple[str, str], dict[str, tree.ShardRef]] = {}

    def bucket_refs(type_name: str, bucket: str) -> dict[str, tree.ShardRef]:
        key = (type_name, bucket)
        if key not in bucket_cache:
            bucket_cache[key] = store.shard_refs(type_name, bucket)
        return bucket_cache[key]

    for type_name, shard in sorted(set(dirty)):
        ref = bucket_refs(type_name, tree.bucket_of(shard)).get(shard)
        views = _verified_shard(dest, type_name, ref) if ref is not None else []
        if ref is not None:
            old_refs[(type_name, shard)] = ref
        entries: list[tuple[tuple[str, str], bytes, list[tuple[str, str, int]]]] = []
        for view in views:
            view_id = str(view.get("id"))
            if view_id in changed_set:
                # Changed: published anew below, unless its bytes could not be had: then
                # the previous generation's view stays where it was.
                if view_id not in failed or old.artifacts.get(view_id, [""])[0] != type_name:
                    continue
                new_artifacts[view_id] = old.artifacts[view_id]
                new_names[view_id] = str(view.get("name"))
                out.kept.append(view_id)
            entries.append(
                (layout.sort_key(view), layout.view_bytes(view), layout.blob_lines(view))
            )
        for item in planned.get((type_name, shard), []):
            if item.withheld or item.id in failed:
                continue  # never published as it is now (see above, and publish)
            spooled = plan.spools[type_name].get(item.offset, item.length)
            entries.append(((item.name, item.id), spooled, item.paths))
            new_artifacts[item.id] = [item.type, item.fingerprint]
            new_names[item.id] = item.name
            index = tree.artifact_index_path(item.type, item.id)
            if (
                old.artifacts.get(item.id) != [item.type, item.fingerprint]
                or index not in state.indexes
                or (dest.local and dest.stat(index) is None)
            ):
                stale.append(item)
        entries.sort(key=lambda e: e[0])
        if not entries:
            new_refs[(type_name, shard)] = None
            continue
        built = layout.shard_files(
            type_name,
            shard,
            [e[1] for e in entries],
            [line for e in entries for line in e[2]],
        )
        new_refs[(type_name, shard)] = built.ref
        if ref != built.ref:
            shard_writes.append((type_name, built))

    # Buckets and type entries of the types touched.
    touched_types = sorted({t for t, _ in new_refs})
    entries_by_type: dict[str, tree.RootType] = {}
    for name, type_data in old.types.items():
        entries_by_type[name] = tree.RootType.from_dict(name, type_data)
    bucket_writes: list[tuple[str, bytes]] = []
    type_sums: dict[str, bytes] = {}
    for type_name in touched_types:
        entry = entries_by_type[type_name]
        buckets = dict(entry.buckets) if entry.artifacts else {}  # an empty type's placeholder goes
        counts = [entry.artifacts, entry.blobs, entry.bytes]
        for bucket in sorted({tree.bucket_of(s) for t, s in new_refs if t == type_name}):
            refs = dict(bucket_refs(type_name, bucket))
            for (t, shard), ref in new_refs.items():
                if t != type_name or tree.bucket_of(shard) != bucket:
                    continue
                before = refs.pop(shard, None)
                if before is not None:
                    counts = [
                        counts[0] - before.artifacts,
                        counts[1] - before.blobs,
                        counts[2] - before.bytes,
                    ]
                if ref is not None:
                    refs[shard] = ref
                    counts = [
                        counts[0] + ref.artifacts,
                        counts[1] + ref.blobs,
                        counts[2] + ref.bytes,
                    ]
            if not refs:
                buckets.pop(bucket, None)
                continue
            data = layout.bucket_file(type_name, bucket, refs)
            file_ref = tree.FileRef(hashlib.sha256(data).hexdigest(), len(data))
            if buckets.get(bucket) != file_ref:
                bucket_writes.append((tree.bucket_path(type_name, bucket, file_ref.sha256), data))
            buckets[bucket] = file_ref
        if not buckets:  # as the walk publishes it: one empty bucket
            data = layout.bucket_file(type_name, tree.BUCKETS[0], {})
            file_ref = tree.FileRef(hashlib.sha256(data).hexdigest(), len(data))
            if entry.buckets.get(tree.BUCKETS[0]) != file_ref:
                bucket_writes.append(
                    (tree.bucket_path(type_name, tree.BUCKETS[0], file_ref.sha256), data)
                )
            buckets[tree.BUCKETS[0]] = file_ref
        sums = layout.type_sums(type_name, buckets)
        type_sums[type_name] = sums
        entries_by_type[type_name] = tree.RootType(
            name=type_name,
            definition=selection.definitions[type_name].to_json(),
            buckets=buckets,
            sums=tree.FileRef(hashlib.sha256(sums).hexdigest(), len(sums)),
            artifacts=counts[0],
            blobs=counts[1],
            bytes=counts[2],
        )
    new_types = {n: e.to_dict() for n, e in entries_by_type.items()}
    out.artifacts = sum(e.artifacts for e in entries_by_type.values())
    out.blobs = sum(e.blobs for e in entries_by_type.values())
    out.kept.sort()
    # the partial state: what changed, as it is now
    state._loaded_shards = dict(old_refs)
    state.shards = {k: r for k, r in new_refs.items() if r is not None}
    old.names = {**old.names, **new_names}
    for artifact_id in changed_set:
        if artifact_id not in new_artifacts:
            old.names.pop(artifact_id, None)
    if not stale and not shard_writes and not bucket_writes and new_types == old.types:
        old.artifacts = {**old.artifacts, **new_artifacts}
        for artifact_id in changed_set - set(new_artifacts):
            old.artifacts.pop(artifact_id, None)
        return out
    out.changed = True
    generation = old.generation + 1
    out.generation = generation

    write_artifact_indexes(dest, state, plan, stale, generation, executor)
    for type_name, built in shard_writes:
        path = built.ref.path(type_name)
        dest.write_file(path, [built.data], defer=True)
        sums_path = tree.shard_sums_path(type_name, built.ref.shard)
        dest.write_file(sums_path, [built.sums], defer=True)
        state.retired.pop(path, None)
        state.retired.pop(sums_path, None)
    dest.sync_dirs()
    for path, data in bucket_writes:
        dest.write_file(path, [data])
        state.retired.pop(path, None)
    dest.sync_dirs()
    for type_name, sums in type_sums.items():
        before = old.types.get(type_name, {}).get("sums")
        if before != entries_by_type[type_name].sums.to_dict():
            dest.write_file(tree.type_sums_path(type_name), [sums])
    dest.sync_dirs()
    root = tree.Root(generation=generation, generated_at=utcnow("seconds"), types=entries_by_type)
    raw = root.to_bytes()
    dest.write_file(tree.ROOT_INDEX, [raw])
    dest.sync_dirs()

    for (type_name, shard), ref in old_refs.items():
        now = new_refs.get((type_name, shard))
        if now is None or now.file.sha256 != ref.file.sha256:
            out.retired.append(ref.path(type_name))
        if now is None:
            out.drop.append(tree.shard_sums_path(type_name, shard))
    for type_name in touched_types:
        before_entry = tree.RootType.from_dict(type_name, old.types[type_name])
        after = entries_by_type[type_name]
        for bucket, file_ref in before_entry.buckets.items():
            if after.buckets.get(bucket) != file_ref:
                out.retired.append(before_entry.bucket_path(bucket))

    old.generation = generation
    old.generated_at = root.generated_at
    old.types = new_types
    old.artifacts = {**old.artifacts, **new_artifacts}
    for artifact_id in changed_set - set(new_artifacts):
        old.artifacts.pop(artifact_id, None)
    old.root_sha256 = hashlib.sha256(raw).hexdigest()
    return out


def check_shards(dest: Dest, store: Store, dirty: Iterable[tuple[str, str]]) -> None:
    """Before any copy: every dirty shard the tree publishes verifies (WalkInstead
    otherwise), so a journal run never stops halfway for a damaged shard file."""
    refs: dict[tuple[str, str], dict[str, tree.ShardRef]] = {}
    for type_name, shard in sorted(set(dirty)):
        key = (type_name, tree.bucket_of(shard))
        if key not in refs:
            refs[key] = store.shard_refs(*key)
        ref = refs[key].get(shard)
        if ref is not None:
            _verified_shard(dest, type_name, ref)


def run_changes(run: _Run, head: Head, cursor: str) -> bool:
    """Publish the artifacts changed since the serial the tree published; False
    (walk) when the journal cannot say (trimmed: reported), or too much changed."""
    total = sum(int(t.get("artifacts", 0)) for t in head.types.values())
    cap = max(MIN_WALK, total // 4)
    try:
        ids = changed_ids(run.catalog, head.serial, cast(int, run.serial), cap)
    except JournalTrimmed as exc:
        run.report.warnings.append(
            f"the catalog's change journal was trimmed past serial {head.serial}, the "
            f"one this tree published: the whole catalog was walked ({exc})"
        )
        return False
    sel, report = run.selection, run.report
    try:
        state = run.store.load_partial(ids, sel.types)
    except (ValueError, TypeError, sqlite3.Error) as exc:
        raise WalkInstead(f"the state does not read back: {exc}") from exc
    run.state = state
    p = state.published
    p.scan_cursor = cursor
    plan = planning.Plan(redirect=run.redirect)
    for type_name in sel.types:
        plan.spools[type_name] = planning.Spool()
        plan.items[type_name] = []
    try:
        dirty: set[tuple[str, str]] = set()
        # change of the files the tree wrote that no index names (as a walk counts them)
        retained = 0
        withdrawn: list[dict[str, Any]] = []
        for artifact_id in ids:
            try:
                artifact: Artifact | None = run.catalog.get(artifact_id)
            except (NotFound, Forbidden):
                artifact = None
            old = p.artifacts.get(artifact_id)
            if artifact_id in p.linked:
                raise WalkInstead("a linked artifact changed")
            if old is not None:
                dirty.add((old[0], tree.shard_of(p.names.get(artifact_id, ""))))
            files = sorted(
                [f for f in state.blobs if f.split("/")[2] == artifact_id]
                + [f for f in state.indexes if f.split("/")[2] == artifact_id]
            )
            if artifact is not None and is_selected(sel, artifact):
                if has_links(sel, artifact):
                    raise WalkInstead("an artifact with links changed")
                links: list[str] = []
                planning.add(plan, sel, run.dest, state.blobs, artifact, False, links)
                dirty.add((artifact.type_name, tree.shard_of(artifact.name)))
                item = plan.items[artifact.type_name][-1]
                named = {path for path, _, _ in item.paths}
                named.add(tree.artifact_index_path(item.type, item.id))
                if old is not None and any(f not in named for f in files):
                    raise WalkInstead("a blob left a published artifact")
                if old is None:  # its files kept from before are named again
                    retained -= sum(f in named for f in files)
                continue
            if old is None and not files:
                continue  # never in the tree (a draft, a private one...)
            reason = run._withdraw_reason(artifact_id, old)
            if old is not None and not reason:
                retained += len(files)  # fell out of the selection: kept
            elif old is None and reason:
                retained -= len(files)  # kept files of a withdrawn artifact: they go
            if reason:
                type_name = old[0] if old else files[0].split("/")[1]
                withdrawn.append(
                    {
                        "id": artifact_id,
                        "type": type_name,
                        "reason": "deleted" if reason == UNKNOWN else reason,
                        "files": [f for f in files if f.split("/")[1] == type_name],
                    }
                )
        check_shards(run.dest, run.store, dirty)
        report.mode = "journal"
        report.withdrawn = sorted(withdrawn, key=lambda w: str(w["id"]))
        with run.pool() as executor:
            run._check_tree_files(plan, executor)
            run._copy(plan, executor)
            run._sweep_partials(plan)
            run.dest.sync_dirs()
            run._problems(plan)
            out = publish_changes(
                run.dest,
                run.store,
                state,
                plan,
                sel,
                run.good,
                executor,
                changed=ids,
                dirty=dirty,
            )
        p.serial = cast(int, run.serial)
        now = time.time()
        for path in out.retired:
            state.retired.setdefault(path, now)
        drop = sorted(set(out.drop))
        p.complete = not report.failed and not (report.withdrawn or drop)
        run.store.save(state)
        run._withdraw()
        for path in drop:
            run.dest.delete(path)
        p.complete = not report.failed
        run._remove_retired(now)
        run.store.save(state)
        if retained:
            p.retained = max(0, p.retained + retained)
            run.store.save(state)
    finally:
        plan.close()
    report.retained = p.retained
    report.generation = out.generation if out.changed else p.generation
    report.published = out.changed
    report.artifacts = out.artifacts
    report.blobs = out.blobs
    report.skipped = max(0, out.blobs - report.copied_count - report.repaired_count)
    report_outcome(report, out)
    return True
