"""The mirror tree contract, shared by the writer (``mirror/``) and the reader
(:mod:`glarelite.mirror_reader`): paths, the format versions and the index schemas.

A format 2 tree (what ``mirror`` writes)::

    index.json                                   root index (replaced last): format_version 2,
                                                 generation, generated_at, counts, and per type
                                                 its definition, counts, the sha256 and size of
                                                 each of its (at most 16) bucket files and of
                                                 its SHA256SUMS.d index file
    artifacts/<type>/_buckets/<b>.<sha256>.json  bucket <b> (one hex digit): the sha256, size and
                                                 counts of each of its (at most 256) shards, and
                                                 of each shard's sums file
    artifacts/<type>/_shards/<s>.<sha256>.json   shard <s> (three hex digits): the show views of
                                                 the artifacts whose name hashes to <s>
                                                 (``shard_of``), sorted by name and id
    artifacts/<type>/<id>/index.json             one artifact: its show view + {"mirror": {...}}
    artifacts/<type>/<id>/<field>[/<key>]        blob bytes (the internal URL)
    SHA256SUMS.d/<type>/<s>                      ``sha256sum -c`` lines of shard <s>: the shard
                                                 file and every blob of its artifacts
    SHA256SUMS.d/<type>/index                    ``sha256sum -c`` lines of the type's buckets
    .glarelite-mirror/                           the writer's own state and lock (not API)

Everything a reader needs is pinned by hash from the root: buckets and shards are
content-addressed (their path carries their sha256), so publishing is "write the new
buckets and shards, then replace the root" and a reader that read a root reads exactly
that generation. Superseded buckets and shards stay for a grace period (a reader that
read the previous root can finish), then the mirror removes them. A name's shard is
fixed (``shard_of``), so "all versions of X" and "latest X" read one bucket and one shard.
At the site, ``SUMS_CHECK`` (run in the tree's root) checks every published file.

Format 1 (written before glarelite 0.4; read, and upgraded by the next ``mirror``) had
one ``artifacts/<type>/index.json`` per type and one ``SHA256SUMS``: :class:`RootIndexV1`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._names import check_identifier, check_key
from .errors import InvalidInput
from .urls import tree_path

__all__ = [
    "ARTIFACTS",
    "BUCKETS",
    "FORMATS",
    "FORMAT_V1",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "MIRROR_KEY",
    "ROOT_INDEX",
    "SHARD_DIGITS",
    "STATE_DIR",
    "SUMS",
    "SUMS_CHECK",
    "SUMS_DIR",
    "TYPE_SUMS",
    "Bucket",
    "FileRef",
    "Root",
    "RootIndex",
    "RootType",
    "ShardRef",
    "TypeEntry",
    "artifact_index_path",
    "blob_path",
    "bucket_of",
    "bucket_path",
    # the catalog's own name rules, for whoever turns names read from a tree into paths
    "check_identifier",
    "check_key",
    "check_shard",
    "check_type_index",
    "format_of",
    "host_label",
    "is_temporary_name",
    "iter_blob_entries",
    "parse_content_path",
    "parse_sums",
    "shard_chunks",
    "shard_of",
    "shard_path",
    "shard_sums_path",
    "sums_chunks",
    "sums_line",
    "temporary_name",
    "type_index_head",
    "type_index_path",
    "type_sums_path",
]

FORMAT_VERSION = 2  # what mirror writes
FORMAT_V1 = 1  # read, and upgraded by the next sync
FORMATS = (FORMAT_V1, FORMAT_VERSION)  # what the reader reads
ROOT_INDEX = "index.json"
SUMS = "SHA256SUMS"
ARTIFACTS = "artifacts"
INDEX_NAME = "index.json"
STATE_DIR = ".glarelite-mirror"
# The key an artifact's index.json adds to its show view: {"generation": n, ...}. Not a
# base field, and properties live under "properties", so it cannot collide.
MIRROR_KEY = "mirror"
# Temporaries sit beside their final path under a name no tree path can have (tree names
# never start with '.'): ".<final name>.glarelite-tmp.<host>.<pid>.<random>".
_TMP_MARK = ".glarelite-tmp."
_TMP = re.compile(
    r"\.(?P<final>[^/]+)\.glarelite-tmp\.(?P<host>[A-Za-z0-9_-]{1,64})\.(?P<pid>\d+)\.[0-9a-f]{8,32}\Z"
)
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SAFE_HOST = re.compile(r"[^A-Za-z0-9_-]")


def type_index_path(type_name: str) -> str:
    return f"{ARTIFACTS}/{type_name}/{INDEX_NAME}"


def artifact_index_path(type_name: str, artifact_id: str) -> str:
    return f"{tree_path(type_name, artifact_id)}/{INDEX_NAME}"


def blob_path(type_name: str, artifact_id: str, field_name: str, key: str = "") -> str:
    """The blob's internal URL as a path relative to the tree root."""
    return tree_path(type_name, artifact_id, field_name, key)


def host_label(host: str) -> str:
    """A host name as it appears in temporary names."""
    return _SAFE_HOST.sub("_", host)[:64] or "host"


def temporary_name(final_name: str, host: str, pid: int, token: str) -> str:
    """The name of a temporary written for ``final_name`` (a base name) by host/pid."""
    return f".{final_name}{_TMP_MARK}{host_label(host)}.{pid}.{token}"


def is_temporary_name(name: str) -> tuple[str, int] | None:
    """(host, pid) when ``name`` is a temporary's base name, else None."""
    m = _TMP.match(name)
    return (m.group("host"), int(m.group("pid"))) if m else None


def sums_line(sha256: str, path: str) -> str:
    return f"{sha256}  {path}\n"


def parse_sums(lines: Iterable[str]) -> dict[str, str]:
    """SHA256SUMS text -> {path: sha256}; InvalidInput naming a malformed line."""
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line:
            continue
        digest, sep, path = line.partition("  ")
        if not sep:  # binary mode marker: "<hex> *path"
            digest, sep, path = line.partition(" *")
        if not sep or not _HEX64.match(digest) or not path or path in out:
            raise InvalidInput(f"{SUMS} line {number} is malformed or repeated: {line[:200]!r}")
        out[path] = digest
    return out


@dataclass(frozen=True)
class TypeEntry:
    """Format 1: what the root index says about one type and its type index."""

    name: str
    definition: Mapping[str, Any]
    index_sha256: str
    index_size: int
    index_generation: int
    artifacts: int
    blobs: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "definition": dict(self.definition),
            "index": {
                "path": type_index_path(self.name),
                "generation": self.index_generation,
                "size": self.index_size,
                "sha256": self.index_sha256,
            },
            "artifacts": self.artifacts,
            "blobs": self.blobs,
            "bytes": self.bytes,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> TypeEntry:
        """Validate one entry of the root index's ``types``; InvalidInput names the fault."""
        check_identifier(name, "type name")
        if not isinstance(data, Mapping) or not isinstance(data.get("index"), Mapping):
            raise InvalidInput(f"the entry of type {name!r} is not an object with an index")
        if not isinstance(data.get("definition"), Mapping):
            raise InvalidInput(f"type {name!r} has no definition object")
        index = data["index"]
        sha256 = index.get("sha256")
        if not isinstance(sha256, str) or not _HEX64.match(sha256):
            raise InvalidInput(f"type {name!r}: the index sha256 is not a hex digest")
        return cls(
            name=name,
            definition=dict(data["definition"]),
            index_sha256=sha256,
            index_size=_count(index.get("size"), f"type {name!r} index size"),
            index_generation=_count(index.get("generation"), f"type {name!r} generation"),
            artifacts=_count(data.get("artifacts", 0), f"type {name!r} artifacts"),
            blobs=_count(data.get("blobs", 0), f"type {name!r} blobs"),
            bytes=_count(data.get("bytes", 0), f"type {name!r} bytes"),
        )


def _count(value: object, what: str) -> int:
    """A non-negative JSON integer (never a bool, a float or text)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} is not a non-negative integer")
    return value


@dataclass(frozen=True)
class RootIndex:
    """Format 1: the root index of a tree with one index per type."""

    generation: int
    generated_at: str
    types: Mapping[str, TypeEntry] = field(default_factory=dict)
    sums_sha256: str = ""
    sums_size: int = 0
    format_version: int = FORMAT_V1

    @property
    def counts(self) -> dict[str, int]:
        return {
            "types": len(self.types),
            "artifacts": sum(t.artifacts for t in self.types.values()),
            "blobs": sum(t.blobs for t in self.types.values()),
            "bytes": sum(t.bytes for t in self.types.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "generation": self.generation,
            "generated_at": self.generated_at,
            "types": {name: self.types[name].to_dict() for name in sorted(self.types)},
            "counts": self.counts,
            "sha256sums": {"path": SUMS, "size": self.sums_size, "sha256": self.sums_sha256},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RootIndex:
        """Validate and read a root index; InvalidInput names what is wrong."""
        try:
            if not isinstance(data, Mapping):
                raise InvalidInput("it is not a JSON object")
            if format_of(data) != FORMAT_V1:
                raise InvalidInput("it is not a format 1 root index")
            sums = data.get("sha256sums") or {}
            types = data.get("types")
            generated_at = data.get("generated_at")
            if not isinstance(sums, Mapping) or not isinstance(types, Mapping):
                raise InvalidInput("types or sha256sums is not an object")
            if not isinstance(generated_at, str):
                raise InvalidInput("generated_at is not text")
            sums_sha = sums.get("sha256", "")
            if not isinstance(sums_sha, str) or (sums_sha and not _HEX64.match(sums_sha)):
                raise InvalidInput(f"the {SUMS} sha256 is not a hex digest")
            return cls(
                generation=_count(data.get("generation"), "generation"),
                generated_at=generated_at,
                types={n: TypeEntry.from_dict(n, t) for n, t in types.items()},
                sums_sha256=sums_sha,
                sums_size=_count(sums.get("size", 0), f"the {SUMS} size"),
            )
        except InvalidInput as exc:
            if "is not supported" in str(exc):
                raise
            raise InvalidInput(f"{ROOT_INDEX} is not a valid mirror root index: {exc}") from None


def type_index_head(
    type_name: str, definition: Mapping[str, Any], generation: int
) -> dict[str, Any]:
    """The fields of a type index besides its ``artifacts`` list (which comes last)."""
    return {
        "format_version": FORMAT_V1,
        "generation": generation,
        "type": type_name,
        "definition": dict(definition),
    }


def check_type_index(data: Mapping[str, Any], type_name: str) -> list[Mapping[str, Any]]:
    """The show views of a parsed type index; InvalidInput when it is not one."""
    path = type_index_path(type_name)
    if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_V1:
        raise InvalidInput(f"{path} is not a mirror type index")
    if data.get("type") != type_name or not isinstance(data.get("artifacts"), list):
        raise InvalidInput(f"{path} does not describe type {type_name!r}")
    items: list[Mapping[str, Any]] = data["artifacts"]
    if not all(isinstance(item, Mapping) for item in items):
        raise InvalidInput(f"{path}: an artifact entry is not an object")
    return items


def iter_blob_entries(show: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(field, key, blob dict) of every blob of a show view, blob-dict entries included."""
    for name, value in sorted((show.get("blobs") or {}).items()):
        if not value:
            continue
        if "url" in value and "status" in value and isinstance(value.get("url"), str):
            yield name, "", value
        else:
            for key in sorted(value):
                yield name, key, value[key]


# -- format detection ---------------------------------------------------------------------
def format_of(data: object) -> int:
    """The format version of a parsed root index; InvalidInput (saying to upgrade
    glarelite) for a version this glarelite does not read."""
    version = data.get("format_version") if isinstance(data, Mapping) else None
    if isinstance(version, bool) or version not in FORMATS:
        raise InvalidInput(
            f"mirror tree format {repr(version)[:40]} is not supported (this glarelite "
            f"reads formats {', '.join(map(str, FORMATS))}); upgrade glarelite"
        )
    return int(version)


# -- format 2: shards, buckets, root --------------------------------------------------------
SHARD_DIGITS = 3  # 16**3 = 4,096 shards per type: ~250 artifacts each at a million
BUCKETS = "0123456789abcdef"  # the root pins 16 buckets per type, each up to 256 shards
SUMS_DIR = "SHA256SUMS.d"
TYPE_SUMS = "index"  # SHA256SUMS.d/<type>/index: the type's bucket files
# The documented check at the site, run in the tree's root: every published file.
SUMS_CHECK = f"cat {SUMS_DIR}/*/* | sha256sum -c -"
_SHARD = re.compile(rf"[0-9a-f]{{{SHARD_DIGITS}}}\Z")
_CONTENT_NAME = re.compile(
    rf"(?P<part>[0-9a-f]{{1,{SHARD_DIGITS}}})\.(?P<sha>[0-9a-f]{{64}})\.json\Z"
)


def shard_of(name: str) -> str:
    """The shard of an artifact name: the first hex digits of sha256(name).
    InvalidInput when the name is not Unicode text (a lone surrogate has no UTF-8 form)."""
    import hashlib

    try:
        data = name.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"artifact name {name!r} is not valid Unicode text") from None
    return hashlib.sha256(data).hexdigest()[:SHARD_DIGITS]


def bucket_of(shard: str) -> str:
    return shard[0]


def shard_path(type_name: str, shard: str, sha256: str) -> str:
    return f"{ARTIFACTS}/{type_name}/_shards/{shard}.{sha256}.json"


def bucket_path(type_name: str, bucket: str, sha256: str) -> str:
    return f"{ARTIFACTS}/{type_name}/_buckets/{bucket}.{sha256}.json"


def shard_sums_path(type_name: str, shard: str) -> str:
    return f"{SUMS_DIR}/{type_name}/{shard}"


def type_sums_path(type_name: str) -> str:
    return f"{SUMS_DIR}/{type_name}/{TYPE_SUMS}"


def parse_content_path(path: str) -> tuple[str, str, str, str] | None:
    """(type, "shard"|"bucket", shard or bucket, sha256) of a content-addressed index
    path, else None (any other path, or a malformed one)."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != ARTIFACTS or parts[2] not in ("_shards", "_buckets"):
        return None
    m = _CONTENT_NAME.match(parts[3])
    kind = "shard" if parts[2] == "_shards" else "bucket"
    want = SHARD_DIGITS if kind == "shard" else 1
    if m is None or len(m.group("part")) != want:
        return None
    try:
        check_identifier(parts[1], "type name")
    except InvalidInput:
        return None
    return parts[1], kind, m.group("part"), m.group("sha")


def _counts(data: Mapping[str, Any], what: str) -> dict[str, int]:
    """The artifacts, blobs and bytes counts of a root or bucket entry."""
    return {k: _count(data.get(k), f"{what} {k}") for k in ("artifacts", "blobs", "bytes")}


def _hex(value: object, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise InvalidInput(f"{what} is not a sha256 hex digest")
    return value


@dataclass(frozen=True)
class FileRef:
    """A file pinned by hash: its sha256 and size."""

    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}

    @classmethod
    def from_dict(cls, data: object, what: str) -> FileRef:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{what} is not an object")
        return cls(
            _hex(data.get("sha256"), f"{what} sha256"), _count(data.get("size"), f"{what} size")
        )


@dataclass(frozen=True)
class ShardRef:
    """What a bucket says about one shard: the shard file, its sums file, its counts."""

    shard: str
    file: FileRef
    sums: FileRef
    artifacts: int
    blobs: int
    bytes: int

    def path(self, type_name: str) -> str:
        return shard_path(type_name, self.shard, self.file.sha256)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.file.to_dict(),
            "sums": self.sums.to_dict(),
            "artifacts": self.artifacts,
            "blobs": self.blobs,
            "bytes": self.bytes,
        }

    @classmethod
    def from_dict(cls, shard: str, data: object, what: str) -> ShardRef:
        if not isinstance(shard, str) or not _SHARD.match(shard):
            raise InvalidInput(f"{what}: {str(shard)[:20]!r} is not a shard name")
        what = f"{what} shard {shard}"
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{what} is not an object")
        return cls(
            shard=shard,
            file=FileRef.from_dict(data, what),
            sums=FileRef.from_dict(data.get("sums"), f"{what} sums"),
            **_counts(data, what),
        )


@dataclass(frozen=True)
class Bucket:
    """A bucket file: the shards of one type whose name starts with ``bucket``."""

    type_name: str
    bucket: str
    shards: Mapping[str, ShardRef]

    def to_bytes(self) -> bytes:
        data = {
            "format_version": FORMAT_VERSION,
            "type": self.type_name,
            "bucket": self.bucket,
            "shards": {s: self.shards[s].to_dict() for s in sorted(self.shards)},
        }
        return (json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n").encode()

    @classmethod
    def from_dict(cls, data: object, type_name: str, bucket: str) -> Bucket:
        """Validate a parsed bucket file that the root pins as (type_name, bucket)."""
        what = f"bucket {bucket} of type {type_name!r}"
        if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
            raise InvalidInput(f"{what} is not a format {FORMAT_VERSION} bucket")
        if data.get("type") != type_name or data.get("bucket") != bucket:
            raise InvalidInput(f"{what} names another type or bucket")
        shards = data.get("shards")
        if not isinstance(shards, Mapping):
            raise InvalidInput(f"{what}: shards is not an object")
        out = {s: ShardRef.from_dict(s, v, what) for s, v in shards.items()}
        if any(bucket_of(s) != bucket for s in out):
            raise InvalidInput(f"{what} lists a shard of another bucket")
        return cls(type_name, bucket, out)


@dataclass(frozen=True)
class RootType:
    """What a format 2 root says about one type."""

    name: str
    definition: Mapping[str, Any]
    buckets: Mapping[str, FileRef]  # bucket digit -> its file
    sums: FileRef  # SHA256SUMS.d/<type>/index
    artifacts: int
    blobs: int
    bytes: int

    def bucket_path(self, bucket: str) -> str:
        return bucket_path(self.name, bucket, self.buckets[bucket].sha256)

    def to_dict(self) -> dict[str, Any]:
        return {
            "definition": dict(self.definition),
            "buckets": {b: self.buckets[b].to_dict() for b in sorted(self.buckets)},
            "sums": self.sums.to_dict(),
            "artifacts": self.artifacts,
            "blobs": self.blobs,
            "bytes": self.bytes,
        }

    @classmethod
    def from_dict(cls, name: str, data: object) -> RootType:
        check_identifier(name, "type name")
        if not isinstance(data, Mapping) or not isinstance(data.get("definition"), Mapping):
            raise InvalidInput(f"type {name!r} is not an object with a definition")
        buckets = data.get("buckets")
        if not isinstance(buckets, Mapping):
            raise InvalidInput(f"type {name!r}: buckets is not an object")
        refs: dict[str, FileRef] = {}
        for bucket, ref in buckets.items():
            if not isinstance(bucket, str) or len(bucket) != 1 or bucket not in BUCKETS:
                raise InvalidInput(f"type {name!r}: {str(bucket)[:20]!r} is not a bucket")
            refs[bucket] = FileRef.from_dict(ref, f"type {name!r} bucket {bucket}")
        return cls(
            name=name,
            definition=dict(data["definition"]),
            buckets=refs,
            sums=FileRef.from_dict(data.get("sums"), f"type {name!r} sums"),
            **_counts(data, f"type {name!r}"),
        )


@dataclass(frozen=True)
class Root:
    """The root index of a format 2 tree."""

    generation: int
    generated_at: str
    types: Mapping[str, RootType] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "types": len(self.types),
            "artifacts": sum(t.artifacts for t in self.types.values()),
            "blobs": sum(t.blobs for t in self.types.values()),
            "bytes": sum(t.bytes for t in self.types.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "generated_at": self.generated_at,
            "types": {n: self.types[n].to_dict() for n in sorted(self.types)},
            "counts": self.counts,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_dict(cls, data: object) -> Root:
        """Validate a parsed format 2 root index; InvalidInput names what is wrong (and
        says to upgrade glarelite for a format it does not read)."""
        if format_of(data) != FORMAT_VERSION:
            raise InvalidInput(f"{ROOT_INDEX} is a format 1 root index")
        assert isinstance(data, Mapping)
        try:
            types = data.get("types")
            generated_at = data.get("generated_at")
            if not isinstance(types, Mapping):
                raise InvalidInput("types is not an object")
            if not isinstance(generated_at, str):
                raise InvalidInput("generated_at is not text")
            return cls(
                generation=_count(data.get("generation"), "generation"),
                generated_at=generated_at,
                types={n: RootType.from_dict(n, t) for n, t in types.items()},
            )
        except InvalidInput as exc:
            raise InvalidInput(f"{ROOT_INDEX} is not a valid mirror root index: {exc}") from None


def shard_chunks(type_name: str, shard: str, views: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of a shard file, in chunks: ``views`` are the compact JSON show views of
    its artifacts, already sorted by (name, id). The same views give the same bytes."""
    head = json.dumps(
        {"format_version": FORMAT_VERSION, "shard": shard, "type": type_name},
        separators=(",", ":"),
    )
    yield (head[:-1] + ',"artifacts":[\n').encode()
    batch: list[bytes] = []
    for n, view in enumerate(views):
        batch.append((b",\n" if n else b"") + view)
        if len(batch) >= 256:
            yield b"".join(batch)
            batch = []
    batch.append(b"\n]}\n")
    yield b"".join(batch)


def check_shard(data: object, type_name: str, shard: str) -> list[Mapping[str, Any]]:
    """The show views of a parsed shard file the root pins as (type_name, shard); each
    artifact's name must hash to that shard. InvalidInput when it is not one."""
    what = f"shard {shard} of type {type_name!r}"
    if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(f"{what} is not a format {FORMAT_VERSION} shard")
    if data.get("type") != type_name or data.get("shard") != shard:
        raise InvalidInput(f"{what} names another type or shard")
    items = data.get("artifacts")
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise InvalidInput(f"{what}: artifacts is not a list of objects")
    for item in items:
        name = item.get("name")
        if not isinstance(name, str) or shard_of(name) != shard:
            raise InvalidInput(f"{what} holds an artifact of another shard")
    return items


def sums_chunks(lines: Iterable[tuple[str, str]]) -> Iterator[bytes]:
    """``sha256sum`` text of (path, sha256) pairs, in chunks (sorted by the caller)."""
    batch: list[str] = []
    for path, sha in lines:
        batch.append(sums_line(sha, path))
        if len(batch) >= 4096:
            yield "".join(batch).encode()
            batch = []
    yield "".join(batch).encode()
