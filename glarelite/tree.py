"""The mirror tree contract, shared by the writer (``mirror/``) and the reader
(:mod:`glarelite.mirror_reader`): paths, the format version and the index schema.

A tree::

    index.json                          root index (written last): format version, generation,
                                        generated_at, types (definition + the sha256 of their
                                        index), counts, the sha256 of SHA256SUMS
    SHA256SUMS                          every published blob, ``sha256sum -c`` format
    artifacts/<type>/index.json         type index: the full show view of every artifact
    artifacts/<type>/<id>/index.json    one artifact: its show view + {"mirror": {...}}
    artifacts/<type>/<id>/<field>[/<key>]  blob bytes
    .glarelite-mirror/                  the writer's own state and lock (not part of the API)

Consistency: every index carries the ``generation`` of the run that wrote it. The root
index records, per type, the generation, size and sha256 of the type index it was
published with; a reader that finds a type index whose sha256 differs read the tree in
the middle of a publish and starts again from the root. Files are only ever replaced by
rename (or a whole-object put), so each one is always either the old or the new version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._names import check_identifier, check_key
from .errors import InvalidInput
from .urls import tree_path

__all__ = [
    "ARTIFACTS",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "MIRROR_KEY",
    "ROOT_INDEX",
    "STATE_DIR",
    "SUMS",
    "RootIndex",
    "TypeEntry",
    "artifact_index_path",
    "blob_path",
    # the catalog's own name rules, for whoever turns names read from a tree into paths
    "check_identifier",
    "check_key",
    "check_type_index",
    "host_label",
    "is_temporary_name",
    "iter_blob_entries",
    "parse_sums",
    "sums_line",
    "temporary_name",
    "type_index_head",
    "type_index_path",
]

FORMAT_VERSION = 1
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
    """What the root index says about one type and the type index it was published with."""

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
    generation: int
    generated_at: str
    types: Mapping[str, TypeEntry] = field(default_factory=dict)
    sums_sha256: str = ""
    sums_size: int = 0
    format_version: int = FORMAT_VERSION

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
            version = data.get("format_version")
            if version != FORMAT_VERSION:
                raise InvalidInput(
                    f"mirror tree format {repr(version)[:40]} is not supported (this "
                    f"glarelite reads format {FORMAT_VERSION}); upgrade glarelite"
                )
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
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "type": type_name,
        "definition": dict(definition),
    }


def check_type_index(data: Mapping[str, Any], type_name: str) -> list[Mapping[str, Any]]:
    """The show views of a parsed type index; InvalidInput when it is not one."""
    path = type_index_path(type_name)
    if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
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
