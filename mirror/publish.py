"""Writing the indexes, in the order that keeps every reader safe: artifact indexes, then
type indexes, then SHA256SUMS, then the root index — each after the blobs it names, each
replaced whole (temporary + rename). The root index records the sha256 of every type
index it publishes, so a reader can tell a consistent generation from a publish in
progress.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from glarelite import GlareliteError, tree
from glarelite.fsutil import utcnow

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


def _artifact_index(plan: Plan, item: Item, generation: int) -> bytes:
    show = plan.spools[item.type].get(item.offset, item.length)
    extra = json.dumps(
        {tree.MIRROR_KEY: {"format_version": tree.FORMAT_VERSION, "generation": generation}},
        separators=(",", ":"),
    )
    # Splice the mirror key into the spooled show view: no re-parse, no re-encode.
    return show[:-1] + b"," + extra[1:].encode() + b"\n"


def _type_index_chunks(
    plan: Plan, type_name: str, items: list[Item], selection: Selection, generation: int
) -> Iterator[bytes]:
    head = tree.type_index_head(type_name, selection.definitions[type_name].to_json(), generation)
    head["count"] = len(items)
    text = json.dumps(head, separators=(",", ":"))
    yield (text[:-1] + ',"artifacts":[\n').encode()
    spool = plan.spools[type_name]
    batch: list[bytes] = []
    for n, item in enumerate(items):
        batch.append((b",\n" if n else b"") + spool.get(item.offset, item.length))
        if len(batch) >= 256:
            yield b"".join(batch)
            batch = []
    batch.append(b"\n]}\n")
    yield b"".join(batch)


def _sums_chunks(lines: list[tuple[str, str]]) -> Iterator[bytes]:
    for start in range(0, len(lines), 4096):
        yield "".join(tree.sums_line(sha, p) for p, sha in lines[start : start + 4096]).encode()


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
    """Write what changed; update ``state.published`` and ``state.indexes`` to match."""
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
        items.sort(key=lambda i: i.id)
        published[type_name] = items

    # Redirect rules before any index names the blobs they answer for.
    if plan.redirect:
        redirecting.write(dest, [r for v in published.values() for i in v for r in i.redirects])
    else:
        redirecting.remove(dest)

    # Which artifact and type indexes differ from what the tree publishes now.
    new_artifacts = {i.id: [i.type, i.fingerprint] for v in published.values() for i in v}
    stale_items = [
        i
        for v in published.values()
        for i in v
        if old.artifacts.get(i.id) != [i.type, i.fingerprint]
        or tree.artifact_index_path(i.type, i.id) not in state.indexes
        or (dest.local and dest.stat(tree.artifact_index_path(i.type, i.id)) is None)
        or (verify and not _artifact_index_ok(dest, plan, i))
    ]
    changed_types = []
    for type_name, items in published.items():
        entry = old.types.get(type_name)
        same = (
            entry is not None
            and entry.get("definition") == selection.definitions[type_name].to_json()
            and entry.get("artifacts") == len(items)
            and all(old.artifacts.get(i.id) == [i.type, i.fingerprint] for i in items)
            and dest.stat(tree.type_index_path(type_name)) is not None
            and not (verify and not _matches(dest, tree.type_index_path(type_name), entry))
        )
        if not same:
            changed_types.append(type_name)
    root_same = (
        old.generation > 0
        and not changed_types
        and set(old.types) == set(selection.types)
        and dest.stat(tree.ROOT_INDEX) is not None
        and dest.stat(tree.SUMS) is not None
        and not (verify and not _root_ok(dest, state))
    )
    out = Outcome(generation=old.generation, changed=not root_same, published=published)
    out.kept = sorted(kept)
    out.artifacts = sum(len(v) for v in published.values())
    out.blobs = len({p for v in published.values() for i in v for p, _, _ in i.paths})
    if root_same:
        return out
    generation = old.generation + 1
    out.generation = generation

    # 1. artifact indexes (many small files: written in parallel, in batches, so that
    #    thread hand-offs do not cost more than the writes)
    def write_artifacts(items: list[Item]) -> list[str]:
        paths = []
        for item in items:
            path = tree.artifact_index_path(item.type, item.id)
            # Recorded first: a batch failing halfway must not leave files prune ignores.
            state.indexes.add(path)
            dest.write_file(path, [_artifact_index(plan, item, generation)], defer=True)
            paths.append(path)
        return paths

    step = max(1, min(256, -(-len(stale_items) // 32)))
    batches = [stale_items[i : i + step] for i in range(0, len(stale_items), step)]
    for paths in executor.map(write_artifacts, batches):
        out.written_indexes.extend(paths)
    dest.sync_dirs()

    # 2. type indexes
    types: dict[str, dict[str, object]] = {}
    for type_name in selection.types:
        items = published[type_name]
        if type_name in changed_types:
            path = tree.type_index_path(type_name)
            size, sha = dest.write_file(
                path, _type_index_chunks(plan, type_name, items, selection, generation)
            )
            state.indexes.add(path)
            out.written_indexes.append(path)
            blob_paths = {(p, s) for i in items for p, _, s in i.paths}
            new_entry = tree.TypeEntry(
                name=type_name,
                definition=selection.definitions[type_name].to_json(),
                index_sha256=sha,
                index_size=size,
                index_generation=generation,
                artifacts=len(items),
                blobs=len(blob_paths),
                bytes=sum(s for _, s in blob_paths),
            )
            types[type_name] = new_entry.to_dict()
        else:
            types[type_name] = old.types[type_name]
    dest.sync_dirs()

    # 3. SHA256SUMS: every published blob, and every type index (so that `sha256sum -c`
    #    also checks the listings, and passes on a tree that publishes no artifact: GNU
    #    sha256sum fails on a file without a line)
    blob_lines = {(p, sha) for v in published.values() for i in v for p, sha, _ in i.paths}
    index_lines = {
        (tree.type_index_path(t), tree.TypeEntry.from_dict(t, e).index_sha256)
        for t, e in types.items()
    }
    lines = sorted(blob_lines | index_lines)
    sums_size, sums_sha = dest.write_file(tree.SUMS, _sums_chunks(lines))

    # 4. the root index, last
    root = tree.RootIndex(
        generation=generation,
        generated_at=utcnow("seconds"),
        types={n: tree.TypeEntry.from_dict(n, t) for n, t in types.items()},
        sums_sha256=sums_sha,
        sums_size=sums_size,
    )
    text = json.dumps(root.to_dict(), indent=1, sort_keys=True) + "\n"
    dest.write_file(tree.ROOT_INDEX, [text.encode()])
    dest.sync_dirs()

    old.generation = generation
    old.generated_at = root.generated_at
    old.types = types
    old.artifacts = new_artifacts
    old.sums = [sums_size, sums_sha]
    return out


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


def _root_ok(dest: Dest, state: State) -> bool:
    """Root index and SHA256SUMS are the ones the state says were published (verify)."""
    from .copy import hash_file

    raw = dest.read_bytes(tree.ROOT_INDEX)
    try:
        root = tree.RootIndex.from_dict(json.loads(raw)) if raw is not None else None
    except (ValueError, RecursionError):
        return False
    if root is None or root.generation != state.published.generation:
        return False
    try:
        size, sha = hash_file(dest, tree.SUMS)
    except FileNotFoundError:
        return False
    return [size, sha] == list(state.published.sums)


def _matches(dest: Dest, path: str, entry: dict[str, object]) -> bool:
    """The type index on disk is the one the root index publishes (verify only)."""
    from .copy import hash_file

    index = entry.get("index")
    if not isinstance(index, dict):
        return False
    try:
        size, sha = hash_file(dest, path)
    except FileNotFoundError:
        return False
    return size == index.get("size") and sha == index.get("sha256")


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
    kept = Item(item.id, item.type, entry[1], paths, offset, length)
    kept.redirects = rules
    return kept
