"""Superseded bucket and shard files, kept for a grace period after a new root stops
pinning them (a reader that read the previous root can finish), then removed.

Recorded with the time they were superseded in ``.glarelite-mirror/superseded.json``
(``mirror --from`` and ``bundle import`` share it; a file's mtime would not do: a
content-addressed file may have been written long before it was superseded). Only
well-formed content-addressed names are ever deleted, never one the root pins now.
"""

from __future__ import annotations

import contextlib
import json
import time

from glarelite import InvalidInput, tree

from . import _tree2
from .dest import Dest

RECORD = f"{tree.STATE_DIR}/superseded.json"
_MAX_RECORD = 64 << 20


def _load(dest: Dest) -> dict[str, float]:
    try:
        raw = dest.read_bytes(RECORD)
    except OSError:
        return {}
    if raw is None or len(raw) > _MAX_RECORD:
        return {}
    try:
        data = json.loads(raw).get("superseded")
    except (ValueError, RecursionError, AttributeError):
        return {}
    if not isinstance(data, dict):
        return {}
    # hostile or stale entries are dropped: only content-addressed names are ever deleted
    return {
        p: float(t)
        for p, t in data.items()
        if tree.parse_content_path(p) is not None
        and isinstance(t, (int, float))
        and not isinstance(t, bool)
    }


def _pinned_now(dest: Dest, root: tree.Root, path: str, cache: dict[str, set[str]]) -> bool:
    """Whether ``root`` pins ``path`` (a bucket or shard file)."""
    parsed = tree.parse_content_path(path)
    if parsed is None:
        return False
    type_name, kind, part, sha = parsed
    entry = root.types.get(type_name)
    if entry is None:
        return False
    if kind == "bucket":
        ref = entry.buckets.get(part)
        return ref is not None and ref.sha256 == sha
    bucket = tree.bucket_of(part)
    key = f"{type_name}/{bucket}"
    if key not in cache:
        cache[key] = set()
        ref = entry.buckets.get(bucket)
        raw = None
        if ref is not None:
            with contextlib.suppress(OSError):
                raw = dest.read_bytes(tree.bucket_path(type_name, bucket, ref.sha256))
        if raw is not None and ref is not None and _tree2.matches(raw, ref):
            with contextlib.suppress(InvalidInput):
                shards = _tree2.bucket(raw, type_name, bucket).shards.values()
                cache[key] = {r.path(type_name) for r in shards}
    return path in cache[key]


def expire(
    dest: Dest, root: tree.Root, superseded: list[str], grace: float, deleted: list[str]
) -> None:
    """Record what ``root`` just superseded; delete (appending to ``deleted``) what was
    superseded ``grace`` seconds ago or more."""
    now = time.time()
    record = _load(dest)
    if not record and not superseded:
        return
    before = dict(record)
    for path in superseded:
        record.setdefault(path, now)
    cache: dict[str, set[str]] = {}
    keep: dict[str, float] = {}
    expired: list[str] = []
    for path, since in sorted(record.items()):
        if _pinned_now(dest, root, path, cache):
            continue  # pinned again (a revert): no longer superseded
        if now - since >= grace:
            expired.append(path)
        else:
            keep[path] = since
    for path in expired:
        if dest.delete(path):
            deleted.append(path)
    dest.remove_empty_dirs(expired)
    if keep != before:
        data = json.dumps({"superseded": keep}, indent=1, sort_keys=True).encode()
        dest.write_file(RECORD, [data])
