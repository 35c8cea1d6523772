"""Fetching a format 2 tree's bucket and shard files for the reader: each one pinned by
the root (bucket) or its bucket (shard) by sha256 and size, read no further than that
size and no larger than its cap, verified before it is parsed, validated strictly, and
kept in the optional disk cache (:mod:`glarelite._shardcache`), which is never trusted.

Every path is built by ``tree.bucket_path`` / ``tree.shard_path`` from validated values
(a type name from the root, a bucket digit, a shard's three hex digits, a hex digest),
never from text in a file.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from . import _treeread, tree
from ._shardcache import ShardCache
from ._treesource import MirrorSettings, _Source, _too_large
from .errors import ChecksumMismatch, InvalidInput, NotFound, TooLarge
from .types import ArtifactType

__all__ = ["Gone", "ShardFetcher", "parse_json"]


class Gone(NotFound):
    """A file the root pins is not in the tree (a newer generation's grace period passed)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def parse_json(raw: bytes, path: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise InvalidInput(f"{path} is not a mirror index: JSON nested too deeply") from None


class ShardFetcher:
    def __init__(self, source: _Source, settings: MirrorSettings, cache: ShardCache | None) -> None:
        self.source = source
        self.settings = settings
        self.cache = cache

    def _pinned(self, path: str, ref: tree.FileRef, cap: int) -> bytes:
        where = self.source.where
        # Each file has read_deadline (a whole-type load of thousands of shards is not
        # cut off by the time it spends parsing and inserting): a slow one ends there.
        deadline = time.monotonic() + self.settings.read_deadline
        if ref.size > cap:  # refused before a byte is asked for
            raise _too_large(where, path, cap)
        if self.cache is not None:
            cached = self.cache.get(ref.sha256, ref.size)
            if cached is not None:
                return cached
        try:  # never more than the parent pins (+1 byte, to see that it is more)
            data: bytes | None = self.source.read(path, ref.size, deadline, immutable=True)
        except TooLarge:
            data = None
        except NotFound:
            raise Gone(path) from None
        if data is None or len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ChecksumMismatch(
                f"mirror tree {where}: {path} is not the file its index pins (size "
                f"{ref.size}, sha256 {ref.sha256}); the tree is damaged (check it)"
            )
        if self.cache is not None:
            self.cache.put(ref.sha256, data)
        return data

    def bucket(self, entry: tree.RootType, bucket: str) -> tree.Bucket:
        """Bucket ``bucket`` of a type, as the root pins it (the caller checked it is)."""
        ref = entry.buckets[bucket]
        path = tree.bucket_path(entry.name, bucket, ref.sha256)
        data = self._pinned(path, ref, self.settings.max_bucket_bytes)
        try:
            return tree.Bucket.from_dict(parse_json(data, path), entry.name, bucket)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc}" if path not in str(exc) else str(exc)) from None

    def shard(
        self, atype: ArtifactType, ref: tree.ShardRef
    ) -> tuple[str, list[tuple[_treeread.Loaded, str]]]:
        """(path, [(validated show, its compact JSON)]) of a shard its bucket pins."""
        path = ref.path(atype.name)
        data = self._pinned(path, ref.file, self.settings.max_shard_bytes)
        try:
            shows = tree.check_shard(parse_json(data, path), atype.name, ref.shard)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc}" if path not in str(exc) else str(exc)) from None
        del data
        out = []
        for show in shows:
            item = _treeread.read_show(show, atype, path)
            out.append((item, json.dumps(show, separators=(",", ":"))))
        return path, out
