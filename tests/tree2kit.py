"""Format 2 trees for the tools' tests (no tests here).

``to_format2(dest)`` rewrites a format 1 tree (what ``mirror.sync`` wrote before the
writer moved to format 2) as format 2 in place, with ``mirror.layout``: the same
artifact indexes and blobs, shards/buckets/sums files instead of the type indexes and
``SHA256SUMS``. Once the writer writes format 2 it does nothing. ``synth_tree`` writes a
format 2 tree of ``n`` generated artifacts (for the benchmarks and the large tests).
``sums_check`` runs the documented site check (``tree.SUMS_CHECK``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glarelite import signing, tree
from mirror import layout


def root_of(dest: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dest / tree.ROOT_INDEX).read_bytes())
    return data


def write_files(dest: Path, files: Mapping[str, bytes]) -> None:
    for path, data in files.items():
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_bytes(data)


def resign(dest: Path, key: Path | None) -> None:
    """Sign the root again (or drop a stale signed root when no key is given)."""
    signed = dest / signing.SIGNED_INDEX
    if key is not None:
        signed.write_bytes(
            signing.sign_root(
                (dest / tree.ROOT_INDEX).read_bytes(), [signing.load_signing_key(key)]
            )
        )
    elif signed.exists():
        signed.unlink()


def to_format2(dest: Path, sign_key: Path | None = None) -> bool:
    """Rewrite the format 1 tree at ``dest`` as format 2; False when it already is."""
    raw = root_of(dest)
    if raw.get("format_version") == tree.FORMAT_VERSION:
        return False
    root = tree.RootIndex.from_dict(raw)
    types: dict[str, tuple[Mapping[str, Any], list[Mapping[str, Any]]]] = {}
    for name, entry in root.types.items():
        path = dest / tree.type_index_path(name)
        shows = tree.check_type_index(json.loads(path.read_bytes()), name)
        types[name] = (entry.definition, list(shows))
        path.unlink()
    files = layout.render(types, generation=root.generation, generated_at=root.generated_at)
    write_files(dest, files)
    (dest / tree.SUMS).unlink(missing_ok=True)
    resign(dest, sign_key)
    return True


def definition(type_name: str) -> dict[str, Any]:
    """The definition of the generated types: one blob field ``file``."""
    return {"blob_dicts": [], "blobs": ["file"], "name": type_name, "properties": {}}


def view(type_name: str, name: str, version: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    """A show view (as the catalog makes them) with one internal blob ``file``."""
    artifact_id = str(uuid.uuid4())
    stamp = "2026-01-01T00:00:00.000000Z"
    return {
        "id": artifact_id,
        "type_name": type_name,
        "name": name,
        "version": version,
        "owner": "admin",
        "visibility": "public",
        "status": "active",
        "description": extra.pop("description", ""),
        "tags": [],
        "properties": {},
        "created_at": stamp,
        "updated_at": stamp,
        "activated_at": stamp,
        "url": f"/{tree.ARTIFACTS}/{type_name}/{artifact_id}",
        "blobs": {
            "file": {
                "url": "/" + tree.blob_path(type_name, artifact_id, "file"),
                "status": "active",
                "size": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(),
                "content_type": "application/octet-stream",
                "external": False,
            }
        },
        **extra,
    }


def write_artifact(dest: Path, show: Mapping[str, Any], blob: bytes, generation: int) -> None:
    type_name, artifact_id = str(show["type_name"]), str(show["id"])
    body = {**show, tree.MIRROR_KEY: {"format_version": 2, "generation": generation}}
    index = dest / tree.artifact_index_path(type_name, artifact_id)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(json.dumps(body, separators=(",", ":")).encode())
    (dest / tree.blob_path(type_name, artifact_id, "file")).write_bytes(blob)


def synth_tree(
    dest: Path, n: int, type_name: str = "images", generation: int = 1
) -> list[dict[str, Any]]:
    """A format 2 tree of ``n`` artifacts (one 16-byte blob each); their show views."""
    shows = []
    for i in range(n):
        blob = f"blob {i:011d}\n".encode()
        show = view(type_name, f"name-{i}", "1.0.0", blob)
        write_artifact(dest, show, blob, generation)
        shows.append(show)
    render(dest, {type_name: shows}, generation)
    return shows


def render(
    dest: Path, types: Mapping[str, list[dict[str, Any]]], generation: int
) -> dict[str, bytes]:
    """Write the index files of ``types`` (show views), the root last; returns them."""
    files = layout.render(
        {t: (definition(t), shows) for t, shows in types.items()}, generation=generation
    )
    root = files.pop(tree.ROOT_INDEX)
    write_files(dest, files)
    write_files(dest, {tree.ROOT_INDEX: root})
    for type_name in types:  # a shard gone: its sums file too (it is pinned by no bucket)
        for path in (dest / tree.SUMS_DIR / type_name).glob("*"):
            if path.relative_to(dest).as_posix() not in files:
                path.unlink()
    files[tree.ROOT_INDEX] = root
    return files


def sums_check(dest: Path) -> subprocess.CompletedProcess[bytes]:
    """The documented check at the site (``tree.SUMS_CHECK``), run in the tree's root."""
    return subprocess.run(["sh", "-c", tree.SUMS_CHECK], cwd=dest, capture_output=True, check=False)


def pins(dest: Path, type_name: str) -> tuple[tree.Root, dict[str, tree.Bucket]]:
    """The root and the buckets of a type, as the tree pins them."""
    root = tree.Root.from_dict(root_of(dest))
    buckets = {}
    for name in root.types[type_name].buckets:
        raw = (dest / root.types[type_name].bucket_path(name)).read_bytes()
        buckets[name] = tree.Bucket.from_dict(json.loads(raw), type_name, name)
    return root, buckets


def shard_ref(dest: Path, type_name: str, name: str) -> tree.ShardRef:
    """The shard (as its bucket pins it) holding the artifact called ``name``."""
    shard = tree.shard_of(name)
    return pins(dest, type_name)[1][tree.bucket_of(shard)].shards[shard]


def repin(
    dest: Path,
    type_name: str,
    shard: str,
    *,
    data: bytes | None = None,
    sums: bytes | None = None,
    generation: int | None = None,
) -> None:
    """Write a shard's file and/or sums file anew and pin them all the way up (a new
    bucket file, the type's sums index, the root): a tree whose pins agree, with
    whatever content the test wants (a writer's bug, a hostile tree)."""
    root, buckets = pins(dest, type_name)
    bucket = buckets[tree.bucket_of(shard)]
    ref = bucket.shards[shard]
    if data is not None:
        ref = tree.ShardRef(
            shard,
            tree.FileRef(hashlib.sha256(data).hexdigest(), len(data)),
            ref.sums,
            ref.artifacts,
            ref.blobs,
            ref.bytes,
        )
        write_files(dest, {ref.path(type_name): data})
    if sums is not None:
        ref = tree.ShardRef(
            shard,
            ref.file,
            tree.FileRef(hashlib.sha256(sums).hexdigest(), len(sums)),
            ref.artifacts,
            ref.blobs,
            ref.bytes,
        )
        write_files(dest, {tree.shard_sums_path(type_name, shard): sums})
    shards = {**bucket.shards, shard: ref}
    raw = layout.bucket_file(type_name, bucket.bucket, shards)
    write_files(
        dest, {tree.bucket_path(type_name, bucket.bucket, hashlib.sha256(raw).hexdigest()): raw}
    )
    entry = root.types[type_name]
    refs = {**entry.buckets, bucket.bucket: tree.FileRef(hashlib.sha256(raw).hexdigest(), len(raw))}
    all_refs = [r for b in buckets.values() for r in b.shards.values() if r.shard != shard]
    new_entry, type_sums = layout.root_type(type_name, entry.definition, refs, [*all_refs, ref])
    new_root = tree.Root(
        generation=root.generation if generation is None else generation,
        generated_at=root.generated_at,
        types={**root.types, type_name: new_entry},
    )
    write_files(dest, {tree.type_sums_path(type_name): type_sums})
    write_files(dest, {tree.ROOT_INDEX: new_root.to_bytes()})


def change_one(dest: Path, shows: list[dict[str, Any]], i: int, generation: int) -> str:
    """A new generation where artifact ``i`` has a new description and blob (the old
    bucket and shard files stay, as the writer keeps them); returns the new blob path."""
    blob = f"changed {i} at {generation}\n".encode()
    old = shows[i]
    show = {**old, "description": f"generation {generation}"}
    kept = {k: v for k, v in old["blobs"]["file"].items() if k != "redirect"}
    show["blobs"] = {
        "file": {
            **kept,
            "external": False,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "size": len(blob),
        }
    }
    shows[i] = show
    write_artifact(dest, show, blob, generation)
    render(dest, {str(show["type_name"]): shows}, generation)
    return tree.blob_path(str(show["type_name"]), str(show["id"]), "file")


def withdraw_one(dest: Path, shows: list[dict[str, Any]], i: int, generation: int) -> str:
    """A new generation without artifact ``i`` (its files removed); returns its id."""
    show = shows.pop(i)
    folder = dest / tree.ARTIFACTS / str(show["type_name"]) / str(show["id"])
    for p in sorted(folder.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    folder.rmdir()
    render(dest, {str(show["type_name"]): shows}, generation)
    return str(show["id"])


def redirect_one(dest: Path, shows: list[dict[str, Any]], i: int, generation: int) -> str:
    """A new generation where artifact ``i``'s blob is left at its origin (``redirect``,
    no file in the tree, a rule in the include); returns the blob path."""
    from mirror import redirects

    show = shows[i]
    path = tree.blob_path(str(show["type_name"]), str(show["id"]), "file")
    url = f"https://origin.example/{show['id']}/file"
    blob = {**show["blobs"]["file"], "external": True, "redirect": url}
    shows[i] = show = {**show, "blobs": {"file": blob}}
    (dest / path).unlink()
    write_artifact_index(dest, show, generation)
    (dest / redirects.INCLUDE).write_bytes(redirects.render([(path, url)]))
    render(dest, {str(show["type_name"]): shows}, generation)
    return path


def write_artifact_index(dest: Path, show: Mapping[str, Any], generation: int) -> None:
    body = {**show, tree.MIRROR_KEY: {"format_version": 2, "generation": generation}}
    index = dest / tree.artifact_index_path(str(show["type_name"]), str(show["id"]))
    index.write_bytes(json.dumps(body, separators=(",", ":")).encode())


def synth_tree_v1(dest: Path, n: int, type_name: str = "images") -> list[dict[str, Any]]:
    """A format 1 tree (one type index, one SHA256SUMS) of ``n`` generated artifacts, as
    glarelite before 0.4 wrote it; their show views."""
    shows = []
    for i in range(n):
        blob = f"blob {i:011d}\n".encode()
        show = view(type_name, f"name-{i}", "1.0.0", blob)
        write_artifact(dest, show, blob, 1)
        shows.append(show)
    render_v1(dest, {type_name: shows}, 1)
    return shows


def render_v1(dest: Path, types: Mapping[str, list[dict[str, Any]]], generation: int) -> None:
    entries = {}
    sums: list[tuple[str, str]] = []
    for type_name, shows in types.items():
        shows = sorted(shows, key=layout.sort_key)
        head = tree.type_index_head(type_name, definition(type_name), generation)
        data = (json.dumps({**head, "artifacts": shows}, separators=(",", ":")) + "\n").encode()
        path = tree.type_index_path(type_name)
        write_files(dest, {path: data})
        sha = hashlib.sha256(data).hexdigest()
        sums.append((path, sha))
        lines = [line for show in shows for line in layout.blob_lines(show)]
        sums += [(p, d) for p, d, _ in lines]
        entries[type_name] = tree.TypeEntry(
            name=type_name,
            definition=definition(type_name),
            index_sha256=sha,
            index_size=len(data),
            index_generation=generation,
            artifacts=len(shows),
            blobs=len(lines),
            bytes=sum(size for _, _, size in lines),
        )
    text = b"".join(tree.sums_chunks(sorted(sums)))
    write_files(dest, {tree.SUMS: text})
    root = tree.RootIndex(
        generation=generation,
        generated_at="2026-01-01T00:00:00Z",
        types=entries,
        sums_sha256=hashlib.sha256(text).hexdigest(),
        sums_size=len(text),
    )
    write_files(dest, {tree.ROOT_INDEX: (json.dumps(root.to_dict(), indent=1) + "\n").encode()})


def upgrade(dest: Path, types: Mapping[str, list[dict[str, Any]]], generation: int) -> None:
    """The hub's next mirror run upgrades its format 1 tree: format 2 index files, the
    type indexes and SHA256SUMS gone (artifact indexes and blobs unchanged)."""
    render(dest, types, generation)
    for type_name in types:
        (dest / tree.type_index_path(type_name)).unlink(missing_ok=True)
    (dest / tree.SUMS).unlink(missing_ok=True)


def is_format2(dest: Path) -> bool:
    return root_of(dest).get("format_version") == tree.FORMAT_VERSION


def site_check(dest: Path) -> subprocess.CompletedProcess[bytes]:
    """The site's `sha256sum -c` of the tree's format: ``tree.SUMS_CHECK`` (format 2), or
    ``sha256sum -c SHA256SUMS`` (format 1, until the writer writes format 2)."""
    if is_format2(dest):
        return sums_check(dest)
    return subprocess.run(
        ["sha256sum", "--strict", "--quiet", "-c", tree.SUMS],
        cwd=dest,
        capture_output=True,
        check=False,
    )


def is_index_file(path: str) -> bool:
    """A file of the tree that is no blob: the root, signed root, redirect rules, sums
    files, type indexes, buckets, shards, artifact indexes."""
    parts = path.split("/")
    return (
        "/" not in path
        or parts[0] == tree.SUMS_DIR
        or path.endswith("/index.json")
        or tree.parse_content_path(path) is not None
    )
