"""Rebuilding a mirror's state when it cannot be read: from a format 1 ``state.json``
(read once, for the upgrade) or from what the tree itself publishes (its root and the
index files the root pins, each checked against its pin). Every value is hostile input:
anything malformed raises (``read_v1``) or gives None (the tree), never a path outside
the tree's own kinds. Plain values out; ``mirror.state`` makes its State of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from glarelite import tree

from ._paths import check_artifact_id, check_blob_names, is_blob_path, is_index_path
from .dest import Dest

MAX_INDEX = 1 << 30  # an index file larger than this is not read (a type index of ~1.5M)


@dataclass
class V1:
    """A format 1 state.json, checked."""

    published: dict[str, Any]  # Published's fields
    blobs: dict[str, list[Any]]  # path -> [sha256, size, mtime_ns]
    indexes: list[str]  # artifact index files


def read_v1(raw: bytes) -> V1:
    """A format 1 ``state.json``; ValueError (or KeyError, TypeError...) when malformed."""
    data = json.loads(raw)
    if data.get("state_version") != 1:
        raise ValueError(f"state version {data.get('state_version')!r}")
    p = data["published"]
    artifacts = {str(k): [str(v[0]), str(v[1])] for k, v in dict(p["artifacts"]).items()}
    for artifact_id, (type_name, _) in artifacts.items():
        check_artifact_id(artifact_id)
        tree.check_identifier(type_name, "type")
    blobs, indexes = data["blobs"], data["indexes"]
    if not isinstance(blobs, dict) or not isinstance(indexes, list):
        raise ValueError("blobs or indexes of the wrong kind")
    for path, record in blobs.items():
        if not is_blob_path(path):
            raise ValueError(f"not a blob path: {str(path)[:200]!r}")
        if not (isinstance(record, list) and len(record) == 3):
            raise ValueError(f"bad record for {path}")
        if not isinstance(record[0], str) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in record[1:]
        ):
            raise ValueError(f"bad record for {path}")
    for path in indexes:
        if not is_index_path(path):
            raise ValueError(f"not an index path: {str(path)[:200]!r}")
    published = {
        "generation": int(p["generation"]),
        "catalog": str(p["catalog"]),
        "selection": str(p["selection"]),
        "generated_at": str(p.get("generated_at", "")),
        "retained": int(p.get("retained", 0)),
        "artifacts": artifacts,
    }
    return V1(published, blobs, [i for i in indexes if len(i.split("/")) == 4])


@dataclass
class Recovered:
    """What a tree publishes, as its own indexes say."""

    indexes: set[str] = field(default_factory=set)
    # each blob file with its bytes unknown (sha256 "": never skipped on a stat, re-hashed
    # first), so that a withdrawal or a prune still finds the files of what was published
    blobs: dict[str, list[Any]] = field(default_factory=dict)
    artifacts: dict[str, list[str]] = field(default_factory=dict)  # fingerprint unknown


def published_by_tree(dest: Dest) -> Recovered | None:
    """The artifact index files and blob files the tree's root publishes (format 1 or 2);
    None when anything is missing or malformed."""
    out = Recovered()
    try:
        found = _views(dest)
        if found is None:
            return None
        for type_name, show in found:
            artifact_id = check_artifact_id(show.get("id"))
            out.indexes.add(tree.artifact_index_path(type_name, artifact_id))
            out.artifacts[artifact_id] = [type_name, ""]  # republished
            for field_name, key, blob in tree.iter_blob_entries(show):
                blob_path = check_blob_names(type_name, artifact_id, field_name, key)
                size = blob.get("size")
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    return None
                out.blobs[blob_path] = ["", size, -1]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError):
        return None  # InvalidInput is a ValueError
    return out


def pinned_by_root(
    dest: Dest,
) -> tuple[dict[tuple[str, str], tree.ShardRef], dict[str, dict[str, Any]]] | None:
    """The shards a format 2 root in the tree pins (through its bucket files, at most 16
    per type, each checked against its pin; shard files are not read) and its types;
    None without one. Without a usable state, the next publish supersedes them (they go
    after the grace period) instead of leaving them and their sums files behind."""
    try:
        raw = dest.read_bytes(tree.ROOT_INDEX)
        if raw is None or len(raw) > MAX_INDEX:
            return None
        parsed = json.loads(raw)
        if tree.format_of(parsed) != tree.FORMAT_VERSION:
            return None
        root = tree.Root.from_dict(parsed)
        shards: dict[tuple[str, str], tree.ShardRef] = {}
        for type_name, entry in root.types.items():
            for bucket, ref in entry.buckets.items():
                data = dest.read_bytes(entry.bucket_path(bucket))
                if data is None or hashlib.sha256(data).hexdigest() != ref.sha256:
                    return None
                parsed_bucket = tree.Bucket.from_dict(json.loads(data), type_name, bucket)
                for shard, sref in parsed_bucket.shards.items():
                    shards[(type_name, shard)] = sref
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError):
        return None
    return shards, {n: e.to_dict() for n, e in root.types.items()}


def _pinned(dest: Dest, path: str, sha256: str, size: int) -> bytes | None:
    st = dest.stat(path)
    if st is None or st[0] != size or size > MAX_INDEX:
        return None
    data = dest.read_bytes(path)
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        return None
    return data


def _views(dest: Dest) -> Iterator[tuple[str, Any]] | None:
    """(type, show view) of every artifact the root publishes, each index file checked
    against its pin; None when one is missing or does not match."""
    raw = dest.read_bytes(tree.ROOT_INDEX)
    if raw is None or len(raw) > MAX_INDEX:
        return None
    parsed = json.loads(raw)
    if tree.format_of(parsed) == tree.FORMAT_V1:
        root1 = tree.RootIndex.from_dict(parsed)
        out1: list[tuple[str, Any]] = []
        for type_name, entry in root1.types.items():
            data = _pinned(
                dest, tree.type_index_path(type_name), entry.index_sha256, entry.index_size
            )
            if data is None:
                return None
            out1 += [(type_name, s) for s in tree.check_type_index(json.loads(data), type_name)]
        return iter(out1)
    root = tree.Root.from_dict(parsed)
    out: list[tuple[str, Any]] = []
    for type_name, type_entry in root.types.items():
        for bucket, ref in type_entry.buckets.items():
            data = _pinned(dest, type_entry.bucket_path(bucket), ref.sha256, ref.size)
            if data is None:
                return None
            parsed_bucket = tree.Bucket.from_dict(json.loads(data), type_name, bucket)
            for shard, sref in parsed_bucket.shards.items():
                raw_shard = _pinned(dest, sref.path(type_name), sref.file.sha256, sref.file.size)
                if raw_shard is None:
                    return None
                items = tree.check_shard(json.loads(raw_shard), type_name, shard)
                out += [(type_name, s) for s in items]
    return iter(out)
