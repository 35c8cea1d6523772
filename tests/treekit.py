"""A small valid mirror tree built by hand (no catalog, no sync): the seed that the
hostile-tree tests break. Shared by tests/test_mirror_reader_hostile.py (no tests here).

A tree is held as JSON documents (the root index and one index per type) plus blob bytes;
``render`` turns it into ``{path: bytes}`` with the root's sizes and sha256s of the type
indexes recomputed (so a mutation reaches the reader's validation instead of stopping at
the hash check), ``write_tree`` puts it in a folder, ``serve_tree`` on an origin.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import glarelite
from glarelite import tree
from tests.fixtures.origin import Origin

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

    def copy(self) -> Tree:
        return Tree(
            copy.deepcopy(self.root),
            copy.deepcopy(self.indexes),
            dict(self.blobs),
            dict(self.raw),
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


def build() -> Tree:
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
    """{tree path: bytes}; ``seal`` records each type index's size and sha256 in the root."""
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
