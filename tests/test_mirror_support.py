"""Shared by the mirror tests (no tests here): a small catalog "world" with internal and
external blobs, blob dicts, private, drafted and deactivated artifacts, and helpers.

The catalog keeps its blobs in a local folder so that a sync run in a subprocess (the
kill tests) reads the same storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import glarelite
from glarelite import tree
from tests.fixtures.origin import Origin

FAST = glarelite.HttpSettings(
    retry=glarelite.RetryPolicy(total=2, backoff_factor=0.01, backoff_max=0.05, jitter=0.0),
    connect_timeout=5.0,
    read_timeout=10.0,
)
QUICK = {"backoff": 0.01, "retries": 1}  # sync options: tests never wait on backoff
# ... nor keep superseded index files for the grace period (a reader holding an old root)
NO_GRACE = {**QUICK, "grace": 0}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_catalog(path: Path, **settings: Any) -> glarelite.Catalog:
    return glarelite.open(
        path / "catalog.db",
        storage=str(path / "blobs"),
        allow_hosts=["127.0.0.1"],
        settings=glarelite.CatalogSettings(http=FAST, **settings),
    )


@dataclass
class World:
    catalog: glarelite.Catalog
    origin: Origin
    root: Path
    ids: dict[str, str] = field(default_factory=dict)  # label -> artifact id
    data: dict[str, bytes] = field(default_factory=dict)  # internal URL -> original bytes

    def published_urls(self) -> dict[str, bytes]:
        """Internal URL -> bytes of every blob the default selection mirrors."""
        hidden = {self.ids[k] for k in ("secret", "draft", "old")}
        return {u: d for u, d in self.data.items() if u.split("/")[3] not in hidden}

    def add(self, label: str, artifact: glarelite.Artifact) -> str:
        self.ids[label] = artifact.id
        return artifact.id

    def upload(self, artifact_id: str, slot: str, data: bytes) -> None:
        blob = self.catalog.upload(artifact_id, slot, data)
        self.data[blob.url] = data

    def external(self, artifact_id: str, slot: str, path: str, data: bytes) -> None:
        self.origin.add(path, data=data, etag=True, last_modified=True, ranges=True)
        blob = self.catalog.add_location(artifact_id, slot, self.origin.url(path))
        self.data[blob.url] = data


def define_types(cat: glarelite.Catalog) -> None:
    cat.define_type(
        "images",
        blobs=["file"],
        blob_dicts=["regions"],
        properties={
            "os": glarelite.Property("string", required=True),
            "min_ram": glarelite.Property("integer", mutable=True),
            "arch": "list",
        },
    )
    cat.define_type("charts", blobs=["package"])


def build_world(root: Path, origin: Origin, **settings: Any) -> World:
    """Artifacts (label: what it is):

    a1      images a 1.0, public, tags linux+prod: internal file, regions/eu external,
            regions/us internal with the same bytes as b1's file (stored once in the tree)
    a2      images a 2.0, public, tag linux: external file
    b1      images b 1.0, public, tag windows: internal file
    chart   charts c 1.0, public: external package
    secret  images s 1.0, private (alice): internal file
    draft   images d 1.0, drafted: internal file
    old     images o 1.0, public then deactivated: internal file
    """
    cat = open_catalog(root, **settings)
    define_types(cat)
    w = World(cat, origin, root)
    shared = b"shared bytes " * 500

    a1 = w.add(
        "a1",
        cat.create(
            "images",
            "a",
            version="1.0",
            tags=["linux", "prod"],
            properties={"os": "linux", "min_ram": 512, "arch": ["x86_64"]},
        ),
    )
    w.upload(a1, "file", os.urandom(3000))
    w.external(a1, "regions/eu", "/a1-eu.bin", b"eu " * 4000)
    w.upload(a1, "regions/us", shared)

    a2 = w.add(
        "a2",
        cat.create(
            "images",
            "a",
            version="2.0",
            tags=["linux"],
            properties={"os": "linux", "min_ram": 1024},
        ),
    )
    w.external(a2, "file", "/a2.img", os.urandom(20000))

    b1 = w.add(
        "b1",
        cat.create(
            "images",
            "b",
            version="1.0",
            tags=["windows"],
            properties={"os": "windows", "min_ram": 2048, "arch": ["arm64"]},
        ),
    )
    w.upload(b1, "file", shared)

    chart = w.add("chart", cat.create("charts", "c", version="1.0"))
    w.external(chart, "package", "/c.tgz", os.urandom(5000))

    secret = w.add(
        "secret",
        cat.create("images", "s", version="1.0", owner="alice", properties={"os": "linux"}),
    )
    w.upload(secret, "file", b"private bytes")

    draft = w.add("draft", cat.create("images", "d", version="1.0", properties={"os": "linux"}))
    w.upload(draft, "file", b"draft bytes")

    old = w.add("old", cat.create("images", "o", version="1.0", properties={"os": "linux"}))
    w.upload(old, "file", b"old bytes")

    for label in ("a1", "a2", "b1", "chart", "old"):
        cat.activate(w.ids[label])
        cat.publish(w.ids[label])
    cat.activate(secret)
    cat.deactivate(old)
    return w


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), the writer's state excluded."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".glarelite-mirror"]
        for name in files:
            p = Path(folder, name)
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def type_views(root: Path, type_name: str) -> list[dict[str, Any]]:
    """The show views a format 2 tree publishes for a type: root -> buckets -> shards,
    each checked against the sha256 that pins it."""
    data = json.loads((root / tree.ROOT_INDEX).read_bytes())
    entry = tree.Root.from_dict(data).types[type_name]
    views: list[dict[str, Any]] = []
    for bucket, ref in sorted(entry.buckets.items()):
        raw = (root / entry.bucket_path(bucket)).read_bytes()
        assert sha(raw) == ref.sha256
        parsed = tree.Bucket.from_dict(json.loads(raw), type_name, bucket)
        for shard, sref in sorted(parsed.shards.items()):
            raw_shard = (root / sref.path(type_name)).read_bytes()
            assert sha(raw_shard) == sref.file.sha256
            views += [dict(v) for v in tree.check_shard(json.loads(raw_shard), type_name, shard)]
    return views


def sums_text(root: Path) -> str:
    """Every line of the tree's SHA256SUMS.d files (what ``tree.SUMS_CHECK`` checks)."""
    folder = root / tree.SUMS_DIR
    return "".join(p.read_text() for p in sorted(folder.glob("*/*")))


def sums_check(root: Path) -> subprocess.CompletedProcess[bytes]:
    """``tree.SUMS_CHECK`` run in the tree, as a site would."""
    return subprocess.run(
        ["sh", "-c", tree.SUMS_CHECK + " --strict --quiet"],
        cwd=root,
        capture_output=True,
        timeout=120,
        check=False,
    )


def temporaries(root: Path) -> list[str]:
    return [p for p in tree_files(root) if ".glarelite-tmp." in p]


class RecordingProgress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def begin(self, key: str, description: str, total: int | None) -> None:
        self.calls.append(("begin", key, total))

    def advance(self, key: str, amount: int) -> None:
        self.calls.append(("advance", key, amount))

    def end(self, key: str, ok: bool = True) -> None:
        self.calls.append(("end", key, ok))

    def advanced(self, key: str) -> int:
        return sum(c[2] for c in self.calls if c[0] == "advance" and c[1] == key)


def origin_gets(origin: Origin) -> list[str]:
    return [r.path for r in origin.requests if r.method == "GET"]


def iter_blob_urls(artifact: glarelite.Artifact) -> Iterator[str]:
    for blob in artifact.iter_blobs():
        yield blob.url


# (type, filters, sort, latest): listings the reader must answer exactly like the catalog.
LISTINGS: list[tuple[str | None, list[str], str | None, bool]] = [
    ("images", [], None, False),
    ("images", ["os=linux"], "name:asc,version", False),
    ("images", ["min_ram=gt:600"], "min_ram:asc", False),
    ("images", ["tags=linux"], None, True),
    ("images", ["arch=arm64"], None, False),
    ("images", ["version=gte:1.5"], "version:desc", False),
    ("images", ["name=in:a,b", "tags-any=prod,windows"], "created_at:asc", False),
    ("images", ["os=neq:linux"], None, False),
    (None, ["name=a"], None, False),
    (None, [], "name:asc", True),
    ("charts", [], None, False),
]
SELECTED = ["status=active", "visibility=public"]  # what the default selection publishes


def listing(
    source: Any,
    type_name: str | None,
    filters: list[str],
    sort: str | None,
    latest: bool,
    limit: int | None = None,
) -> list[str]:
    """Every id of a listing, page by page."""
    ids: list[str] = []
    marker = None
    while True:
        page = source.list(
            type_name, filters=filters, sort=sort, latest=latest, limit=limit, marker=marker
        )
        ids += [a.id for a in page]
        if page.next_marker is None:
            return ids
        marker = page.next_marker
