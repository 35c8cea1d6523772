"""A small valid mirror tree built by hand (no catalog, no sync): the seed that the
hostile-tree tests break. Shared by tests/test_mirror_reader_hostile.py (no tests here).

A tree is held as JSON documents (the root index and one index per type) plus blob bytes;
``render`` turns it into ``{path: bytes}`` with every pin recomputed (so a mutation
reaches the reader's validation instead of stopping at the hash check), ``write_tree``
puts it in a folder, ``serve_tree`` on an origin.

``build(fmt=1)`` is a format 1 tree: ``root`` is the root index, ``indexes`` the type
indexes. ``build()`` (format 2): ``root`` is the root index without its pins (render adds
each type's ``buckets`` and ``sums`` where they are absent), ``indexes[type]["artifacts"]``
the show views, which render spreads over shards by ``tree.shard_of(name)`` (an artifact
whose name is not text goes to ``placed`` or shard 000), then seals shards, buckets and
root bottom-up; ``edits`` mutate the shard and bucket documents before they are sealed,
and ``sealed_raw`` replaces a shard or bucket file by bytes that its parent then pins.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import glarelite
from glarelite import tree
from tests.fixtures.origin import Origin

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
SECRET = b"-----BEGIN PRIVATE KEY----- never served from a mirror tree\n"
STAMP = "2026-01-01T00:00:00Z"
IMAGES = glarelite.ArtifactType(
    "images",
    blobs=("file",),
    blob_dicts=("regions",),
    properties={
        "os": glarelite.Property("string", required=True),
        "min_ram": glarelite.Property("integer", mutable=True),
        "arch": glarelite.Property("list"),
    },
)
CHARTS = glarelite.ArtifactType("charts", blobs=("package",))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Tree:
    root: dict[str, Any]
    indexes: dict[str, Any]  # type name -> type index (JSON object)
    blobs: dict[str, bytes]  # tree path -> bytes
    raw: dict[str, bytes] = field(default_factory=dict)  # tree path -> bytes written as is
    fmt: int = 1
    # format 2: ("shard"|"bucket", fn(type, part, doc)) applied before sealing
    edits: list[tuple[str, Callable[[str, str, dict[str, Any]], None]]] = field(
        default_factory=list
    )
    # format 2: ("shard"|"bucket", type, part) -> the file's bytes, pinned as they are
    sealed_raw: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    # format 2: artifact id -> the shard it is put in, whatever its name
    placed: dict[str, str] = field(default_factory=dict)

    def copy(self) -> Tree:
        return Tree(
            copy.deepcopy(self.root),
            copy.deepcopy(self.indexes),
            dict(self.blobs),
            dict(self.raw),
            self.fmt,
            list(self.edits),
            dict(self.sealed_raw),
            dict(self.placed),
        )

    def shows(self, type_name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.indexes[type_name]["artifacts"]
        return items


def _blob(
    type_name: str, artifact_id: str, field_name: str, key: str, data: bytes
) -> glarelite.Blob:
    return glarelite.Blob(
        type_name=type_name,
        artifact_id=artifact_id,
        field=field_name,
        key=key,
        status="active",
        size=len(data),
        sha256=sha(data),
        created_at=STAMP,
        updated_at=STAMP,
    )


def build(fmt: int = 2) -> Tree:
    """Two images (one with a blob dict) and one chart, each blob a distinct content."""
    blobs: dict[str, bytes] = {}
    shows: dict[str, list[dict[str, Any]]] = {"images": [], "charts": []}
    specs = [
        ("images", "ubuntu", "1.0.0", {"os": "linux", "min_ram": 512, "arch": ["x86_64"]}),
        ("images", "ubuntu", "2.0.0", {"os": "linux", "min_ram": None, "arch": []}),
        ("charts", "web", "0.1.0", {}),
    ]
    for n, (type_name, name, version, props) in enumerate(specs):
        artifact_id = str(uuid.UUID(int=n + 1))
        values: dict[str, Any] = {}
        if type_name == "images":
            data = f"image {n} ".encode() * 300
            blobs[tree.blob_path(type_name, artifact_id, "file")] = data
            values["file"] = _blob(type_name, artifact_id, "file", "", data)
            regions = {}
            if n == 0:
                for key in ("eu", "us-1"):
                    rdata = f"region {key} ".encode() * 50
                    blobs[tree.blob_path(type_name, artifact_id, "regions", key)] = rdata
                    regions[key] = _blob(type_name, artifact_id, "regions", key, rdata)
            values["regions"] = regions
        else:
            data = b"chart bytes " * 10
            blobs[tree.blob_path(type_name, artifact_id, "package")] = data
            values["package"] = _blob(type_name, artifact_id, "package", "", data)
        artifact = glarelite.Artifact(
            id=artifact_id,
            type_name=type_name,
            name=name,
            version=version,
            owner="alice",
            visibility="public",
            status="active",
            tags=("stable",),
            properties=props,
            created_at=STAMP,
            updated_at=STAMP,
            activated_at=STAMP,
            blobs=values,
        )
        shows[type_name].append(artifact.to_dict())
    if fmt == 2:
        root2 = {
            "format_version": 2,
            "generation": 1,
            "generated_at": STAMP,
            "types": {
                atype.name: {
                    "definition": atype.to_json(),
                    "artifacts": len(shows[atype.name]),
                    "blobs": 0,
                    "bytes": 0,
                }
                for atype in (IMAGES, CHARTS)
            },
        }
        return Tree(root2, {n: {"artifacts": v} for n, v in shows.items()}, blobs, fmt=2)
    indexes = {
        atype.name: {
            **tree.type_index_head(atype.name, atype.to_json(), 1),
            "artifacts": shows[atype.name],
        }
        for atype in (IMAGES, CHARTS)
    }
    root = tree.RootIndex(
        generation=1,
        generated_at=STAMP,
        types={
            atype.name: tree.TypeEntry(
                name=atype.name,
                definition=atype.to_json(),
                index_sha256="0" * 64,
                index_size=0,
                index_generation=1,
                artifacts=len(shows[atype.name]),
                blobs=0,
                bytes=0,
            )
            for atype in (IMAGES, CHARTS)
        },
    ).to_dict()
    return Tree(root, indexes, blobs)


def dump(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def render(t: Tree, *, seal: bool = True) -> dict[str, bytes]:
    """{tree path: bytes}; ``seal`` records each type index's size and sha256 in the root
    (format 1; a format 2 tree is always sealed)."""
    if t.fmt == 2:
        return _render2(t)
    files = dict(t.blobs)
    for name, doc in t.indexes.items():
        files[tree.type_index_path(name)] = dump(doc)
    root = copy.deepcopy(t.root)
    if seal and isinstance(root, dict) and isinstance(root.get("types"), dict):
        for name, entry in root["types"].items():
            data = files.get(tree.type_index_path(name)) if isinstance(name, str) else None
            index = entry.get("index") if isinstance(entry, dict) else None
            if data is not None and isinstance(index, dict):
                index["size"], index["sha256"] = len(data), sha(data)
    files[tree.ROOT_INDEX] = dump(root)
    files.update(t.raw)
    return files


def write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def serve_tree(origin: Origin, prefix: str, files: dict[str, bytes]) -> str:
    """Serve the tree under ``prefix`` (e.g. ``/tree``); the base URL."""
    for path, data in files.items():
        origin.add(f"{prefix}/{path}", data=data, content_type="application/json")
    return origin.url(prefix)


def blob_record(t: Tree, type_name: str, index: int, slot: str) -> dict[str, Any]:
    field_name, _, key = slot.partition("/")
    value = t.shows(type_name)[index]["blobs"][field_name]
    record: dict[str, Any] = value[key] if key else value
    return record


def _shard_name(show: Any, placed: dict[str, str]) -> str:
    ident = show.get("id") if isinstance(show, dict) else None
    if isinstance(ident, str) and ident in placed:
        return placed[ident]
    name = show.get("name") if isinstance(show, dict) else None
    try:
        return tree.shard_of(name) if isinstance(name, str) else "000"
    except UnicodeEncodeError:
        return "000"


def _render2(t: Tree) -> dict[str, bytes]:
    files = dict(t.blobs)
    root = copy.deepcopy(t.root)
    types = root.get("types") if isinstance(root, dict) else None
    for type_name, index in t.indexes.items():
        by_shard: dict[str, list[Any]] = {}
        for show in index.get("artifacts", []) if isinstance(index, dict) else []:
            by_shard.setdefault(_shard_name(show, t.placed), []).append(show)
        refs: dict[str, dict[str, Any]] = {}
        for shard, items in sorted(by_shard.items()):
            doc = {"format_version": 2, "type": type_name, "shard": shard, "artifacts": items}
            doc = copy.deepcopy(doc)
            for kind, fn in t.edits:
                if kind == "shard":
                    fn(type_name, shard, doc)
            data = t.sealed_raw.get(("shard", type_name, shard))
            if data is None:
                data = json.dumps(doc, separators=(",", ":")).encode()
            digest = sha(data)
            files[tree.shard_path(type_name, shard, digest)] = data
            sums = tree.sums_line(digest, tree.shard_path(type_name, shard, digest)).encode()
            files[tree.shard_sums_path(type_name, shard)] = sums
            refs.setdefault(shard[0], {})[shard] = {
                "sha256": digest,
                "size": len(data),
                "sums": {"sha256": sha(sums), "size": len(sums)},
                "artifacts": len(items),
                "blobs": 0,
                "bytes": 0,
            }
        buckets: dict[str, Any] = {}
        for bucket, shards in sorted(refs.items()):
            bdoc: dict[str, Any] = {
                "format_version": 2,
                "type": type_name,
                "bucket": bucket,
                "shards": shards,
            }
            for kind, fn in t.edits:
                if kind == "bucket":
                    fn(type_name, bucket, bdoc)
            data = t.sealed_raw.get(("bucket", type_name, bucket))
            if data is None:
                data = json.dumps(bdoc, separators=(",", ":"), sort_keys=True).encode()
            digest = sha(data)
            files[tree.bucket_path(type_name, bucket, digest)] = data
            buckets[bucket] = {"sha256": digest, "size": len(data)}
        sums = "".join(
            tree.sums_line(r["sha256"], tree.bucket_path(type_name, b, r["sha256"]))
            for b, r in sorted(buckets.items())
        ).encode()
        files[tree.type_sums_path(type_name)] = sums
        entry = types.get(type_name) if isinstance(types, dict) else None
        if isinstance(entry, dict):
            entry.setdefault("buckets", buckets)
            entry.setdefault("sums", {"sha256": sha(sums), "size": len(sums)})
    files[tree.ROOT_INDEX] = dump(root)
    for type_name, index in t.indexes.items():  # what get(id) reads to find a shard
        for show in index.get("artifacts", []) if isinstance(index, dict) else []:
            ident = show.get("id") if isinstance(show, dict) else None
            if not isinstance(ident, str) or not _ID.match(ident) or not isinstance(type_name, str):
                continue  # a hostile id makes no path: the reader finds no index
            mark = {"format_version": 2, "generation": 1}
            path = tree.artifact_index_path(type_name, ident)
            files.setdefault(path, dump({**show, tree.MIRROR_KEY: mark}))
    files.update(t.raw)
    return files


def shard_file(files: dict[str, bytes], type_name: str, shard: str) -> str:
    """The path of a rendered format 2 shard file."""
    prefix = f"{tree.ARTIFACTS}/{type_name}/_shards/{shard}."
    (path,) = [p for p in files if p.startswith(prefix)]
    return path


def bucket_file(files: dict[str, bytes], type_name: str, bucket: str) -> str:
    prefix = f"{tree.ARTIFACTS}/{type_name}/_buckets/{bucket}."
    (path,) = [p for p in files if p.startswith(prefix)]
    return path
