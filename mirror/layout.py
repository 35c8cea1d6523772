"""The index files of a format 2 tree (see ``glarelite.tree``), built from show views:
shard files, their sums files, bucket files, each type's sums index and the root.

Pure functions, no I/O: the publisher writes what they return, tests and bundles build
small trees with ``render``. The same show views always give the same bytes, so an
unchanged shard keeps its name (its sha256) from one generation to the next.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from glarelite import tree


def view_bytes(show: Mapping[str, Any]) -> bytes:
    """The compact JSON of a show view, as shards hold it."""
    return json.dumps(show, separators=(",", ":")).encode()


def blob_lines(show: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(tree path, sha256, size) of each blob of a show view that the tree holds (a blob
    left at its origin, marked ``redirect``, is not in the tree)."""
    out = []
    for field_name, key, blob in tree.iter_blob_entries(show):
        if blob.get("redirect") is not None:
            continue
        path = tree.blob_path(str(show["type_name"]), str(show["id"]), field_name, key)
        out.append((path, str(blob["sha256"]), int(blob["size"])))
    return out


@dataclass(frozen=True)
class ShardFiles:
    ref: tree.ShardRef
    data: bytes  # the shard file, at ref.path(type)
    sums: bytes  # its sums file, at tree.shard_sums_path(type, shard)


def shard_files(
    type_name: str, shard: str, views: Iterable[bytes], blobs: Iterable[tuple[str, str, int]]
) -> ShardFiles:
    """The shard file of ``views`` (compact show views sorted by name and id) and its
    sums file over ``blobs`` (path, sha256, size) and the shard file itself."""
    views = list(views)
    data = b"".join(tree.shard_chunks(type_name, shard, views))
    sha = hashlib.sha256(data).hexdigest()
    unique = {path: (digest, size) for path, digest, size in blobs}
    lines = [(p, d) for p, (d, _) in unique.items()]
    lines.append((tree.shard_path(type_name, shard, sha), sha))
    sums = b"".join(tree.sums_chunks(sorted(lines)))
    ref = tree.ShardRef(
        shard=shard,
        file=tree.FileRef(sha, len(data)),
        sums=tree.FileRef(hashlib.sha256(sums).hexdigest(), len(sums)),
        artifacts=len(views),
        blobs=len(unique),
        bytes=sum(size for _, size in unique.values()),
    )
    return ShardFiles(ref, data, sums)


def bucket_file(type_name: str, bucket: str, shards: Mapping[str, tree.ShardRef]) -> bytes:
    return tree.Bucket(type_name, bucket, dict(shards)).to_bytes()


def type_sums(type_name: str, buckets: Mapping[str, tree.FileRef]) -> bytes:
    """SHA256SUMS.d/<type>/index: one line per bucket file (none for an empty type)."""
    lines = sorted((tree.bucket_path(type_name, b, r.sha256), r.sha256) for b, r in buckets.items())
    return b"".join(tree.sums_chunks(lines))


def root_type(
    type_name: str,
    definition: Mapping[str, Any],
    buckets: Mapping[str, tree.FileRef],
    shards: Iterable[tree.ShardRef],
) -> tuple[tree.RootType, bytes]:
    """The root's entry of a type, and the type's sums index it pins."""
    sums = type_sums(type_name, buckets)
    shards = list(shards)
    entry = tree.RootType(
        name=type_name,
        definition=dict(definition),
        buckets=dict(buckets),
        sums=tree.FileRef(hashlib.sha256(sums).hexdigest(), len(sums)),
        artifacts=sum(s.artifacts for s in shards),
        blobs=sum(s.blobs for s in shards),
        bytes=sum(s.bytes for s in shards),
    )
    return entry, sums


def sort_key(show: Mapping[str, Any]) -> tuple[str, str]:
    return str(show.get("name")), str(show.get("id"))


def render(
    types: Mapping[str, tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]],
    *,
    generation: int = 1,
    generated_at: str = "2026-01-01T00:00:00Z",
) -> dict[str, bytes]:
    """Every index file of a small format 2 tree ({path: bytes}): ``types`` maps a type
    name to (definition JSON, show views). Artifact index files and blobs are not
    included. For tests and small trees: it holds everything in memory."""
    files: dict[str, bytes] = {}
    entries: dict[str, tree.RootType] = {}
    for type_name, (definition, shows) in types.items():
        by_shard: dict[str, list[Mapping[str, Any]]] = {}
        for show in shows:
            by_shard.setdefault(tree.shard_of(str(show["name"])), []).append(show)
        refs: dict[str, dict[str, tree.ShardRef]] = {}
        for shard, items in sorted(by_shard.items()):
            items.sort(key=sort_key)
            blobs = [line for show in items for line in blob_lines(show)]
            built = shard_files(type_name, shard, [view_bytes(s) for s in items], blobs)
            files[built.ref.path(type_name)] = built.data
            files[tree.shard_sums_path(type_name, shard)] = built.sums
            refs.setdefault(tree.bucket_of(shard), {})[shard] = built.ref
        if not refs:
            # As the publisher does: an empty type has one empty bucket, so its sums
            # index has a line and tree.SUMS_CHECK passes on a tree publishing nothing.
            refs[tree.BUCKETS[0]] = {}
        buckets: dict[str, tree.FileRef] = {}
        for bucket, shard_refs in refs.items():
            data = bucket_file(type_name, bucket, shard_refs)
            ref = tree.FileRef(hashlib.sha256(data).hexdigest(), len(data))
            files[tree.bucket_path(type_name, bucket, ref.sha256)] = data
            buckets[bucket] = ref
        all_refs = [r for shard_refs in refs.values() for r in shard_refs.values()]
        entry, sums = root_type(type_name, definition, buckets, all_refs)
        files[tree.type_sums_path(type_name)] = sums
        entries[type_name] = entry
    root = tree.Root(generation=generation, generated_at=generated_at, types=entries)
    files[tree.ROOT_INDEX] = root.to_bytes()
    return files
