"""Reading a format 2 tree's index files the way a site would, for check, hop and
bundles: each file checked against what pins it (root -> bucket -> shard -> artifact),
every name validated before it becomes a path. InvalidInput names the fault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from glarelite import InvalidInput, tree

from ._paths import check_artifact_id, check_blob_names


def parse(raw: bytes, path: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{path} is not JSON: {str(exc)[:200]}") from None


def matches(raw: bytes, ref: tree.FileRef) -> bool:
    return len(raw) == ref.size and hashlib.sha256(raw).hexdigest() == ref.sha256


def root(raw: bytes) -> tree.Root:
    """A format 2 root (InvalidInput for a format 1 or unknown one)."""
    return tree.Root.from_dict(parse(raw, tree.ROOT_INDEX))


def bucket(raw: bytes, type_name: str, name: str) -> tree.Bucket:
    """A bucket file's content (its pin checked by the caller)."""
    path = f"{tree.ARTIFACTS}/{type_name}/_buckets/{name}"
    return tree.Bucket.from_dict(parse(raw, path), type_name, name)


def shard(raw: bytes, type_name: str, ref: tree.ShardRef) -> list[Mapping[str, Any]]:
    """A shard file's show views (its pin checked by the caller), their count as pinned."""
    shows = tree.check_shard(parse(raw, ref.path(type_name)), type_name, ref.shard)
    if len(shows) != ref.artifacts:
        raise InvalidInput(
            f"{ref.path(type_name)} lists {len(shows)} artifacts, its bucket {ref.artifacts}"
        )
    return shows


@dataclass(frozen=True)
class Blob:
    path: str
    sha256: str
    size: int
    url: object  # as the show view gives it


def artifact(type_name: str, show: Mapping[str, Any]) -> tuple[str, list[Blob]]:
    """(artifact id, the blobs the tree holds) of a show view read from a shard, every
    name checked (a blob left at its origin, ``redirect``, is not in the tree)."""
    artifact_id = check_artifact_id(show.get("id"))
    if show.get("type_name") != type_name:
        raise InvalidInput(f"artifact {artifact_id} is not of type {type_name!r}")
    blobs = show.get("blobs") or {}
    if not isinstance(blobs, Mapping):
        raise InvalidInput(f"artifact {artifact_id}: 'blobs' is not an object")
    out = []
    for field_name, value in sorted(blobs.items()):
        if not value:
            continue
        if not isinstance(value, Mapping):
            raise InvalidInput(f"artifact {artifact_id}: blob {str(field_name)[:80]!r} malformed")
        single = "url" in value and "status" in value and isinstance(value.get("url"), str)
        entries = [("", value)] if single else sorted(value.items())
        for key, blob in entries:
            path = check_blob_names(type_name, artifact_id, field_name, key)
            if not isinstance(blob, Mapping):
                raise InvalidInput(f"{path}: the blob is not an object")
            if blob.get("redirect") is not None:
                continue
            size, sha = blob.get("size"), blob.get("sha256")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidInput(f"{path}: no valid size")
            if not isinstance(sha, str) or len(sha) != 64 or sha.strip("0123456789abcdef"):
                raise InvalidInput(f"{path}: no valid sha256")
            out.append(Blob(path, sha, size, blob.get("url")))
    return artifact_id, out


def sums_text(shard_path: str, shard_sha: str, blobs: list[Blob]) -> bytes:
    """The sums file a shard with these blobs must have (what ``layout.shard_files``
    writes)."""
    lines = {b.path: b.sha256 for b in blobs}
    lines[shard_path] = shard_sha
    return b"".join(tree.sums_chunks(sorted(lines.items())))


def type_sums_text(type_name: str, buckets: Mapping[str, tree.FileRef]) -> bytes:
    lines = sorted((tree.bucket_path(type_name, b, r.sha256), r.sha256) for b, r in buckets.items())
    return b"".join(tree.sums_chunks(lines))
