"""Bundles: one tar file that carries a tree generation across an air gap (a drive).

A bundle is a tar stream whose first member, ``glarelite-bundle.json``, is a manifest:
the generation it brings, the sha256 of that generation's root index, the base
generation (incremental bundles only), the files of the generation with their size and
sha256 (``tree``: every file for a full bundle and for a format 1 tree's; what it
carries for an incremental ``glarelite-bundle/2``), the files the bundle carries
(``members``, in publish order) and the paths removed since the base (withdrawals). The
members follow, in that order.

Export reads a local tree the way a site would (names validated, every index checked
against the root that pins it, no link followed) and hashes every byte it writes;
import verifies every byte into a staging folder inside the site's state folder before
anything is published, then renames into place in the mirror's publish order (blobs,
artifact indexes, shards, shard sums files, buckets, the types' sums indexes, the signed
root, ``index.json`` last; format 1: type indexes and SHA256SUMS). Superseded bucket and
shard files stay for a grace period (``_superseded``). ``index.signed.json`` travels
unchanged, so an edge that trusts the hub's key still accepts what it reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, TypeGuard

from glarelite import (
    Conflict,
    GlareliteError,
    InvalidInput,
    LockedError,
    VerificationError,
    signing,
    tree,
)

from . import _superseded, _tree2, redirects
from ._paths import (
    check_artifact_id,
    check_blob_names,
    is_blob_path,
    is_content_path,
    is_index_path,
    is_sums_path,
)
from .dest import LocalDest
from .lock import TreeLock

# /2: bundles of format 2 trees (shards, buckets, SHA256SUMS.d, the redirect include);
# the manifest's shape is unchanged, but a glarelite that reads /1 only cannot place
# those files: it says "a newer glarelite" instead of naming a path it does not know.
FORMAT = "glarelite-bundle/2"
FORMATS = ("glarelite-bundle/1", FORMAT)
MANIFEST = "glarelite-bundle.json"
COMPRESSIONS = {"none": "", "gz": "gz"}
RECORDS = f"{tree.STATE_DIR}/bundles"  # hub side: the manifest of each exported generation
SITE_RECORD = f"{tree.STATE_DIR}/bundle-site.json"  # site side: the listing last imported
STAGING = f"{tree.STATE_DIR}/bundle-import"

_CHUNK = 1 << 20
_MAX_MANIFEST = 512 << 20  # ~3 million files' metadata
_MAX_INDEX = 1 << 30  # a type index of ~1.5 million artifacts
_MAX_ROOT = signing.MAX_SIGNED_SIZE
_MAX_HEADER = 1 << 20  # a pax or long-name header: a path is far shorter
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SPECIAL = (tree.ROOT_INDEX, tree.SUMS, signing.SIGNED_INDEX, redirects.INCLUDE)

Listing = dict[str, tuple[int, str]]  # tree path -> (size, sha256)


@dataclass
class ExportReport:
    bundle: str
    tree: str
    generation: int
    base_generation: int | None
    files: int = 0  # files carried
    bytes: int = 0  # their bytes
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "tree": self.tree,
            "generation": self.generation,
            "base_generation": self.base_generation,
            "files": self.files,
            "bytes": self.bytes,
            "removed": list(self.removed),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ImportReport:
    bundle: str
    dest: str
    generation: int
    previous_generation: int | None  # None: the site had no tree
    files: int = 0  # files written
    bytes: int = 0
    removed: list[str] = field(default_factory=list)
    nothing_to_do: bool = False  # the site already held this generation
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "dest": self.dest,
            "generation": self.generation,
            "previous_generation": self.previous_generation,
            "files": self.files,
            "bytes": self.bytes,
            "removed": list(self.removed),
            "nothing_to_do": self.nothing_to_do,
            "seconds": round(self.seconds, 3),
        }


# -- the manifest ---------------------------------------------------------------------------
def _rank(path: str) -> int:
    """Publish order: blobs (and the redirect rules), artifact indexes, shards (format 1:
    type indexes), shard sums files, buckets, the types' sums indexes (format 1:
    SHA256SUMS), the signed root, the root index last (a plain reader sees the new root
    only once all is in place; a reader with keys takes the root from the signed file,
    written after what it pins)."""
    if path == tree.ROOT_INDEX:
        return 7
    if path == signing.SIGNED_INDEX:
        return 6
    if path == tree.SUMS or (path.endswith(f"/{tree.TYPE_SUMS}") and is_sums_path(path)):
        return 5
    if is_content_path(path):
        return 2 if "/_shards/" in path else 4
    if is_sums_path(path):
        return 3
    if is_index_path(path):
        return 2 if path.count("/") == 2 else 1
    return 0


def _ordered(paths: Any) -> list[str]:
    return sorted(paths, key=lambda p: (_rank(p), p))


def _tree_path(value: object) -> bool:
    return (
        value in _SPECIAL
        or is_blob_path(value)
        or is_index_path(value)
        or is_content_path(value)
        or is_sums_path(value)
    )


@dataclass(frozen=True)
class Manifest:
    generation: int
    root_sha256: str
    base: tuple[int, str] | None  # (generation, root sha256) of an incremental's base
    listing: Listing  # every file of the generation
    members: list[str]  # the files carried, in order
    removed: list[str]
    format: str = FORMAT

    def to_json(self) -> bytes:
        data = {
            "format": self.format,
            "generation": self.generation,
            "root_sha256": self.root_sha256,
            "base": None
            if self.base is None
            else {"generation": self.base[0], "root_sha256": self.base[1]},
            "tree": {p: [s, h] for p, (s, h) in sorted(self.listing.items())},
            "members": self.members,
            "removed": self.removed,
        }
        return json.dumps(data, separators=(",", ":")).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key is repeated")
    return dict(pairs)


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Validate a manifest; VerificationError names what is wrong (a corrupt bundle)."""

    def bad(why: str) -> VerificationError:
        return VerificationError(f"{where}: the bundle manifest is not valid: {why}")

    try:
        data = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") not in FORMATS:
        raise bad(f"not a {' or '.join(FORMATS)} manifest (a newer glarelite, or not a bundle)")
    generation, root_sha = data.get("generation"), data.get("root_sha256")
    if not _count(generation) or not isinstance(root_sha, str) or not _HEX64.match(root_sha):
        raise bad("generation or root_sha256 malformed")
    base: tuple[int, str] | None = None
    raw_base = data.get("base")
    if raw_base is not None:
        if not isinstance(raw_base, dict):
            raise bad("base is not an object")
        bg, bs = raw_base.get("generation"), raw_base.get("root_sha256")
        if not _count(bg) or not isinstance(bs, str) or not _HEX64.match(bs):
            raise bad("base generation or root_sha256 malformed")
        base = (bg, bs)
    listing: Listing = {}
    raw_tree = data.get("tree")
    if not isinstance(raw_tree, dict):
        raise bad("tree is not an object")
    for path, entry in raw_tree.items():
        if not _tree_path(path):
            raise bad(f"{str(path)[:200]!r} is not a path a tree holds")
        if not (isinstance(entry, list) and len(entry) == 2 and _count(entry[0])):
            raise bad(f"the entry of {path} is not [size, sha256]")
        if not isinstance(entry[1], str) or not _HEX64.match(entry[1]):
            raise bad(f"the sha256 of {path} is not a hex digest")
        listing[path] = (entry[0], entry[1])
    if listing.get(tree.ROOT_INDEX, (0, ""))[1] != root_sha:
        raise bad(f"{tree.ROOT_INDEX} is not the root the manifest names")
    members, removed = data.get("members"), data.get("removed")
    if not isinstance(members, list) or not isinstance(removed, list):
        raise bad("members or removed is not a list")
    if not all(isinstance(p, str) and p in listing for p in members):
        raise bad("a member is not a file of the tree")
    if members != _ordered(set(members)):
        raise bad("the members are repeated or not in publish order")
    if not all(_tree_path(p) and p not in listing for p in removed) or len(set(removed)) != len(
        removed
    ):
        raise bad("a removed path is malformed, repeated or still in the tree")
    if base is None and set(members) != set(listing):
        raise bad("a full bundle must carry every file of its tree")
    return Manifest(
        generation, root_sha, base, listing, list(members), list(removed), data["format"]
    )


# -- reading the tree to export ----------------------------------------------------------------
def _hash_file(src: LocalDest, path: str, limit: int | None = None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with src.open_read(path) as f:
        while chunk := f.read(_CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise VerificationError(f"{src.abspath(path)} is larger than {limit} bytes")
            digest.update(chunk)
    return size, digest.hexdigest()


def _read_small(src: LocalDest, path: str, limit: int) -> bytes:
    st = src.stat(path)
    if st is None:
        raise InvalidInput(f"{src.abspath(path)} is missing: not a complete mirror tree")
    if st[0] > limit:
        raise VerificationError(f"{src.abspath(path)} is larger than {limit} bytes: refused")
    data = src.read_bytes(path)
    if data is None or len(data) > limit:
        raise VerificationError(f"{src.abspath(path)} changed while it was read")
    return data


def read_tree(src: LocalDest) -> tuple[int, Listing]:
    """The generation and every file of the tree at ``src``, each index checked against
    the root that pins it; blobs with the size and sha256 of their type index (verified
    when their bytes are read)."""
    raw_root = _read_small(src, tree.ROOT_INDEX, _MAX_ROOT)
    try:
        data = json.loads(raw_root)
        v2 = tree.Root.from_dict(data) if tree.format_of(data) == tree.FORMAT_VERSION else None
        root = tree.RootIndex.from_dict(data) if v2 is None else None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{src.abspath(tree.ROOT_INDEX)}: {exc}") from None
    if v2 is not None:
        return _read_tree2(src, raw_root, v2)
    assert root is not None
    listing: Listing = {tree.ROOT_INDEX: (len(raw_root), hashlib.sha256(raw_root).hexdigest())}
    sums = _hash_file(src, tree.SUMS) if src.stat(tree.SUMS) else None
    if sums is None or (root.sums_sha256 and sums != (root.sums_size, root.sums_sha256)):
        raise VerificationError(
            f"{src.abspath(tree.SUMS)} is missing or not the one the root index pins"
        )
    listing[tree.SUMS] = sums
    _read_signed(src, raw_root, listing)
    for type_name, entry in sorted(root.types.items()):
        path = tree.type_index_path(type_name)
        data = _read_small(src, path, _MAX_INDEX)
        sha = hashlib.sha256(data).hexdigest()
        if (len(data), sha) != (entry.index_size, entry.index_sha256):
            raise VerificationError(f"{src.abspath(path)} is not the one the root index pins")
        listing[path] = (len(data), sha)
        try:
            shows = tree.check_type_index(json.loads(data), type_name)
            for show in shows:
                artifact_id = check_artifact_id(show.get("id"))
                index = tree.artifact_index_path(type_name, artifact_id)
                listing[index] = _hash_file(src, index, _MAX_INDEX)
                for field_name, key, blob in tree.iter_blob_entries(show):
                    blob_path = check_blob_names(type_name, artifact_id, field_name, key)
                    size, digest = blob.get("size"), blob.get("sha256")
                    if not _count(size) or not isinstance(digest, str) or not _HEX64.match(digest):
                        raise InvalidInput(f"{blob_path}: size or sha256 malformed")
                    listing[blob_path] = (size, digest)
        except (ValueError, RecursionError, AttributeError, TypeError) as exc:
            raise VerificationError(f"{src.abspath(path)}: {exc}") from None
    return root.generation, listing


def _read_signed(src: LocalDest, raw_root: bytes, listing: Listing) -> None:
    """``index.signed.json``, when there is one, must sign this very root."""
    if src.stat(signing.SIGNED_INDEX) is None:
        return
    signed = _read_small(src, signing.SIGNED_INDEX, signing.MAX_SIGNED_SIZE)
    try:
        inner = json.loads(signed).get("root")
    except (ValueError, RecursionError, AttributeError):
        inner = None
    if not isinstance(inner, str) or inner.encode() != raw_root:
        raise VerificationError(
            f"{src.abspath(signing.SIGNED_INDEX)} does not sign this {tree.ROOT_INDEX}: "
            "a stale or damaged signed root (re-run the mirror with --sign-key)"
        )
    listing[signing.SIGNED_INDEX] = (len(signed), hashlib.sha256(signed).hexdigest())


def _pinned_file(src: LocalDest, path: str, ref: tree.FileRef, by: str, listing: Listing) -> bytes:
    data = _read_small(src, path, _MAX_INDEX)
    if not _tree2.matches(data, ref):
        raise VerificationError(f"{src.abspath(path)} is not the one {by} pins")
    listing[path] = (ref.size, ref.sha256)
    return data


def _read_tree2(src: LocalDest, raw_root: bytes, root: tree.Root) -> tuple[int, Listing]:
    """A format 2 tree: root -> type sums indexes and buckets -> shards and their sums
    files -> artifact indexes (hashed) and blobs (as their shard records them)."""
    listing: Listing = {tree.ROOT_INDEX: (len(raw_root), hashlib.sha256(raw_root).hexdigest())}
    _read_signed(src, raw_root, listing)
    if src.stat(redirects.INCLUDE) is not None:
        data = _read_small(src, redirects.INCLUDE, _MAX_INDEX)
        try:
            redirects.parse(data)
        except ValueError as exc:
            raise VerificationError(f"{src.abspath(redirects.INCLUDE)}: {exc}") from None
        listing[redirects.INCLUDE] = (len(data), hashlib.sha256(data).hexdigest())
    for type_name, entry in sorted(root.types.items()):
        _pinned_file(src, tree.type_sums_path(type_name), entry.sums, tree.ROOT_INDEX, listing)
        for name, ref in sorted(entry.buckets.items()):
            path = tree.bucket_path(type_name, name, ref.sha256)
            try:
                bucket = _tree2.bucket(
                    _pinned_file(src, path, ref, tree.ROOT_INDEX, listing), type_name, name
                )
                for shard in bucket.shards.values():
                    spath = shard.path(type_name)
                    raw = _pinned_file(src, spath, shard.file, path, listing)
                    sums = tree.shard_sums_path(type_name, shard.shard)
                    _pinned_file(src, sums, shard.sums, path, listing)
                    for show in _tree2.shard(raw, type_name, shard):
                        artifact_id, blobs = _tree2.artifact(type_name, show)
                        index = tree.artifact_index_path(type_name, artifact_id)
                        listing[index] = _hash_file(src, index, _MAX_INDEX)
                        for blob in blobs:
                            listing[blob.path] = (blob.size, blob.sha256)
            except InvalidInput as exc:
                raise VerificationError(f"{src.abspath(path)}: {exc}") from None
    return root.generation, listing


# -- export -----------------------------------------------------------------------------------
class _Hashing:
    """A file object that hashes what tarfile reads from it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(min(n, _CHUNK) if n and n > 0 else _CHUNK)
        self.digest.update(data)
        self.size += len(data)
        return data


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # the same tree gives the same bundle, byte for byte
    return info


def _base_manifest(src: LocalDest, since: int | str | os.PathLike[str]) -> Manifest:
    if isinstance(since, int) and not isinstance(since, bool):
        record = f"{RECORDS}/{since}.json"
        raw = src.read_bytes(record) if since >= 0 else None
        if raw is None:
            raise InvalidInput(
                f"no bundle of generation {since} was exported from {src.root}: "
                "pass the bundle the site last imported (--since BUNDLE) instead"
            )
        return parse_manifest(raw, src.abspath(record))
    if not isinstance(since, (str, os.PathLike)):
        raise InvalidInput(f"since must be a generation or a bundle path, not {since!r}")
    where = os.fspath(since)
    if not os.path.isfile(where):
        raise InvalidInput(f"the base bundle {where} is not a file")
    with open(where, "rb") as f:
        manifest, tar = _read_manifest(f, where)
        tar.close()
    if manifest.format == FORMAT and manifest.base is not None:
        # an incremental /2 bundle lists only what it carried: the whole listing of its
        # generation is the one this tree recorded when it exported it
        record = f"{RECORDS}/{manifest.generation}.json"
        raw = src.read_bytes(record)
        full = parse_manifest(raw, src.abspath(record)) if raw is not None else None
        if full is None or full.root_sha256 != manifest.root_sha256:
            raise InvalidInput(
                f"{where} is an incremental bundle and {src.root} has no record of its "
                f"generation {manifest.generation}: pass --since {manifest.generation} if "
                "this tree exported it, or send a full bundle"
            )
        return full
    return manifest


def export_bundle(
    tree_path: str | os.PathLike[str],
    bundle: str | os.PathLike[str],
    *,
    since: int | str | os.PathLike[str] | None = None,
    compression: str = "none",
) -> ExportReport:
    """Write one tar file holding the generation of the local tree at ``tree_path``: every
    file, or (``since``: a generation exported before from this tree, or the path of
    the bundle the site last imported) only the files that differ from that base, plus
    the paths removed since. ``compression``: ``"none"`` or ``"gz"``. The bundle appears
    whole or not at all; the tree is not changed (but for the manifest it records under
    its state folder, so that a later ``since=GENERATION`` finds it)."""
    started = time.monotonic()
    if compression not in COMPRESSIONS:
        raise InvalidInput(f"compression {compression!r}: one of {', '.join(COMPRESSIONS)}")
    if not os.path.isdir(tree_path):
        raise InvalidInput(f"{os.fspath(tree_path)} is not a folder holding a mirror tree")
    src = LocalDest(os.fspath(tree_path), create=False)
    lock: TreeLock | None = TreeLock(src)
    try:
        assert lock is not None
        lock.acquire()  # a mirror run must not change the tree under the export
    except LockedError:
        raise
    except OSError:  # a read-only tree: no lock to take; a change shows as a hash mismatch
        lock = None
    try:
        generation, listing = read_tree(src)
        root_sha = listing[tree.ROOT_INDEX][1]
        base = None if since is None else _base_manifest(src, since)
        if base is not None and base.generation > generation:
            raise InvalidInput(
                f"the base (generation {base.generation}) is newer than the tree "
                f"(generation {generation})"
            )
        members = _ordered(p for p in listing if base is None or base.listing.get(p) != listing[p])
        removed = [] if base is None else sorted(set(base.listing) - set(listing))
        fmt = FORMATS[0] if tree.SUMS in listing else FORMAT  # a format 1 tree: as before
        carried = listing
        if fmt == FORMAT and base is not None:
            # /2 incremental: the manifest lists what it carries (and the root), not the
            # whole tree, so its size follows the change (the site's root pins the rest)
            carried = {p: listing[p] for p in [*members, tree.ROOT_INDEX]}
        manifest = Manifest(
            generation,
            root_sha,
            None if base is None else (base.generation, base.root_sha256),
            carried,
            members,
            removed,
            fmt,
        )
        # the hub keeps the whole listing of what it exported: a later --since diffs by it
        record = Manifest(generation, root_sha, None, listing, _ordered(listing), [], fmt)
        report = ExportReport(
            bundle=os.fspath(bundle),
            tree=src.root,
            generation=generation,
            base_generation=None if base is None else base.generation,
            removed=removed,
        )
        _write_bundle(src, os.fspath(bundle), manifest, COMPRESSIONS[compression], report)
        with contextlib.suppress(OSError):  # a read-only tree (DestinationError is an OSError)
            src.write_file(f"{RECORDS}/{generation}.json", [record.to_json()])
        if src.stat(f"{RECORDS}/{generation}.json") is None:
            report.warnings.append(
                f"could not record generation {generation} in {src.abspath(RECORDS)}: "
                "a later incremental export needs --since BUNDLE"
            )
    finally:
        if lock is not None:
            lock.release()
        src.close()
    report.seconds = time.monotonic() - started
    return report


def _write_bundle(
    src: LocalDest, path: str, manifest: Manifest, compression: str, report: ExportReport
) -> None:
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.part")
    try:
        out = open(temp, "xb")  # noqa: SIM115 (closed by the `with out` below)
    except FileNotFoundError:
        raise InvalidInput(f"{path}: the folder {folder} does not exist") from None
    try:
        with out:
            # two calls: the typed overloads of tarfile.open want a literal mode
            opened = (
                tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT)  # noqa: SIM115
                if compression == "gz"
                else tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
            )
            with opened as tar:
                data = manifest.to_json()
                tar.addfile(_member(MANIFEST, len(data)), _Bytes(data))
                for member in manifest.members:
                    size, sha = manifest.listing[member]
                    with src.open_read(member) as f:
                        if os.fstat(f.fileno()).st_size != size:
                            raise VerificationError(
                                f"{src.abspath(member)} is not {size} bytes as its index says"
                            )
                        reader = _Hashing(f)
                        try:
                            tar.addfile(_member(member, size), reader)
                        except OSError as exc:  # tarfile: "unexpected end of data"
                            raise VerificationError(
                                f"{src.abspath(member)} changed while it was read: {exc}"
                            ) from None
                        if reader.digest.hexdigest() != sha:
                            raise VerificationError(
                                f"{src.abspath(member)} does not have the sha256 its index "
                                "records: repair the tree (glarelite mirror) before exporting"
                            )
                    report.files += 1
                    report.bytes += size
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._at = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else self._at + n
        out = bytes(self._view[self._at : end])
        self._at += len(out)
        return out


# -- import -----------------------------------------------------------------------------------
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, OSError)


def _corrupt(where: str, exc: BaseException) -> VerificationError:
    return VerificationError(f"{where} is corrupt or truncated: {exc}; nothing was imported")


def _next(tar: tarfile.TarFile, where: str) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except _CORRUPT as exc:
        raise _corrupt(where, exc) from None


def _member_chunks(tar: tarfile.TarFile, info: tarfile.TarInfo, where: str) -> Iterator[bytes]:
    f = tar.extractfile(info)
    if f is None:
        raise VerificationError(f"{where}: {info.name} holds no data")
    left = info.size
    while left:
        try:
            chunk = f.read(min(_CHUNK, left))
        except _CORRUPT as exc:
            raise _corrupt(where, exc) from None
        if not chunk:
            raise _corrupt(where, EOFError(f"{info.name} ends early"))
        left -= len(chunk)
        yield chunk


def _regular(info: tarfile.TarInfo, where: str) -> None:
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or info.issparse():
        raise VerificationError(
            f"{where}: member {info.name[:200]!r} is not a regular file (links, devices "
            "and folders are refused)"
        )


class _BoundedInfo(tarfile.TarInfo):
    """Refuses a long-name or pax header larger than a bound before tarfile reads it
    into memory (a hostile bundle could declare gigabytes)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type not in tarfile.REGULAR_TYPES and self.size > _MAX_HEADER:
            raise tarfile.ReadError(f"a header of {self.size} bytes: refused")
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


def _read_manifest(f: IO[bytes], where: str) -> tuple[Manifest, tarfile.TarFile]:
    try:
        # the caller closes it (it reads the members after the manifest)
        tar = tarfile.open(fileobj=f, mode="r|*", tarinfo=_BoundedInfo)  # noqa: SIM115
    except _CORRUPT as exc:
        raise _corrupt(where, exc) from None
    info = _next(tar, where)
    if info is None or info.name != MANIFEST:
        raise VerificationError(f"{where} is not a glarelite bundle (no {MANIFEST} first)")
    _regular(info, where)
    if info.size > _MAX_MANIFEST:
        raise VerificationError(f"{where}: the manifest is larger than {_MAX_MANIFEST} bytes")
    raw = b"".join(_member_chunks(tar, info, where))
    return parse_manifest(raw, where), tar


def _site_root(site: LocalDest) -> tuple[int | None, str] | None:
    """(generation, root sha256) of the site's tree; None when it has none. A root that
    cannot be read has generation None."""
    st = site.stat(tree.ROOT_INDEX)
    if st is None:
        return None
    if st[0] > _MAX_ROOT:
        return None, ""
    raw = site.read_bytes(tree.ROOT_INDEX) or b""
    sha = hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
        if tree.format_of(data) == tree.FORMAT_VERSION:
            return tree.Root.from_dict(data).generation, sha
        return tree.RootIndex.from_dict(data).generation, sha
    except (ValueError, RecursionError):
        return None, sha


def _site_listing(site: LocalDest, root_sha: str) -> Listing:
    """What the site's current generation holds: the listing the last import recorded,
    when that is still the site's root, else read from the site's indexes."""
    raw = site.read_bytes(SITE_RECORD)
    if raw is not None:
        try:
            record = parse_manifest(raw, site.abspath(SITE_RECORD))
        except VerificationError:
            pass
        else:
            if record.root_sha256 == root_sha:
                return record.listing
    # Not imported, or changed since (a mirror run wrote it): what its own indexes name.
    try:
        return read_tree(site)[1]
    except (GlareliteError, OSError):
        return {}  # a damaged site tree: the full bundle replaces what it names


def _clear_staging(site: LocalDest) -> None:
    """Remove what an interrupted import staged (the lock is held: nobody else writes)."""
    staged: list[str] = []
    for token in site.listdir(STAGING):
        if token in (".", "..") or "/" in token:
            continue
        staged.extend(f"{STAGING}/{token}/{name}" for name in site.listdir(f"{STAGING}/{token}"))
    for path in staged:
        with contextlib.suppress(OSError):
            site.delete(path)
    site.remove_empty_dirs(staged)


def import_bundle(
    bundle: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    fsync: bool = True,
    grace: float = 3600.0,
) -> ImportReport:
    """Apply a bundle to the site's tree at ``dest`` (a local folder, made if missing).

    Every byte is verified against the manifest before anything is published; then the
    files are renamed into place, ``index.json`` last, and what the generation withdrew
    is removed. A bundle whose base is not the site's generation raises Conflict naming
    the generation needed; a corrupt one VerificationError, the site unchanged. Importing
    a bundle the site already holds does nothing. Bucket and shard files the new
    generation no longer pins (format 2) stay ``grace`` seconds for readers of the
    previous root, then a later import removes them."""
    started = time.monotonic()
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < 1e18:
        raise InvalidInput(f"grace must be a number of seconds >= 0, not {grace!r}")
    where = os.fspath(bundle)
    if not os.path.isfile(where):
        raise InvalidInput(f"{where} is not a bundle file")
    site = LocalDest(os.fspath(dest), create=True, fsync=fsync)
    try:
        with TreeLock(site), open(where, "rb") as f:
            _clear_staging(site)
            manifest, tar = _read_manifest(f, where)
            with tar:
                report = _apply(site, tar, manifest, where, float(grace))
    finally:
        site.close()
    report.seconds = time.monotonic() - started
    return report


def _apply(
    site: LocalDest, tar: tarfile.TarFile, manifest: Manifest, where: str, grace: float
) -> ImportReport:
    current = _site_root(site)
    report = ImportReport(
        bundle=where,
        dest=site.root,
        generation=manifest.generation,
        previous_generation=None if current is None else current[0],
    )
    if current is not None and current[1] == manifest.root_sha256:
        # Already there (index.json is written last): finish what a killed import left.
        report.nothing_to_do = True
        report.removed = _withdraw(site, manifest.removed, grace)
        _record(site, manifest)
        return report
    old_listing: Listing = {}
    if manifest.base is not None:
        base_gen, base_sha = manifest.base
        if current is None or current[1] != base_sha:
            have = "no tree" if current is None else f"generation {current[0]}"
            raise Conflict(
                f"{where} applies to generation {base_gen} only (it brings generation "
                f"{manifest.generation}); the site {site.root} holds {have}: import the "
                f"bundle that brings generation {base_gen} first, or a full bundle"
            )
        for path in set(manifest.listing) - set(manifest.members):
            st = site.stat(path)
            if st is None or st[0] != manifest.listing[path][0]:
                raise Conflict(
                    f"the site {site.root} lacks {path} of generation {base_gen} (damaged "
                    "or edited): import a full bundle"
                )
    elif current is not None:
        if current[0] is not None and current[0] > manifest.generation:
            raise Conflict(
                f"{where} brings generation {manifest.generation}, older than the site's "
                f"generation {current[0]}: refused (a rollback)"
            )
        old_listing = _site_listing(site, current[1])

    token = uuid.uuid4().hex[:12]
    staged: dict[str, str] = {}
    try:
        for n, path in enumerate(manifest.members):
            info = _next(tar, where)
            if info is None:
                raise _corrupt(where, EOFError(f"{path} and what follows are missing"))
            _regular(info, where)
            if info.name != path:
                raise VerificationError(
                    f"{where}: member {info.name[:200]!r} is not the file the manifest "
                    f"lists next ({path})"
                )
            size, sha = manifest.listing[path]
            if info.size != size:
                raise VerificationError(f"{where}: {path} is {info.size} bytes, not {size}")
            stage = f"{STAGING}/{token}/{n}"
            staged[path] = stage
            got = site.write_file(stage, _member_chunks(tar, info, where), defer=True)
            if got != (size, sha):
                raise VerificationError(
                    f"{where}: {path} does not match the manifest (sha256 {got[1]}, "
                    f"expected {sha}); nothing was imported"
                )
        extra = _next(tar, where)
        if extra is not None:
            raise VerificationError(f"{where}: member {extra.name[:200]!r} is not in the manifest")
        _check_base_pins(site, manifest, staged)
        site.sync_dirs()  # every staged byte durable before any final name points at it
        rank = -1
        for path in manifest.members:
            if _rank(path) != rank and rank != -1:
                site.sync_dirs()  # a group in place before the indexes that name it
            rank = _rank(path)
            site.adopt_temp(path, staged.pop(path)).commit(defer=rank < 2)
            report.files += 1
            report.bytes += manifest.listing[path][0]
        site.sync_dirs()
    finally:
        if staged:  # failed before publishing: drop what was staged
            with contextlib.suppress(OSError):
                site.flush()
            for stage in staged.values():
                with contextlib.suppress(OSError):
                    site.delete(stage)
        site.remove_empty_dirs([f"{STAGING}/{token}/0"])
    gone = set(manifest.removed) | (set(old_listing) - set(manifest.listing))
    report.removed = _withdraw(site, _ordered(gone)[::-1], grace)
    _record(site, manifest)
    return report


def _check_base_pins(site: LocalDest, manifest: Manifest, staged: Mapping[str, str]) -> None:
    """An incremental /2 bundle carries what changed; the rest the new root pins must be
    the site's already (a bucket, shard or sums file with the pinned size): Conflict
    otherwise (a damaged or edited site), before anything is published. Cost: the
    buckets the bundle carries, not the tree."""
    if manifest.format != FORMAT or manifest.base is None:
        return

    def raw(path: str) -> bytes | None:
        return site.read_bytes(staged[path]) if path in staged else site.read_bytes(path)

    def present(path: str, size: int) -> None:
        if path in staged:
            return
        st = site.stat(path)
        if st is None or st[0] != size:
            raise Conflict(
                f"the site {site.root} lacks {path} of generation {manifest.base[0]} "  # type: ignore[index]
                "(damaged or edited): import a full bundle"
            )

    try:
        root = _tree2.root(raw(tree.ROOT_INDEX) or b"")
        for type_name, entry in root.types.items():
            present(tree.type_sums_path(type_name), entry.sums.size)
            for name, ref in entry.buckets.items():
                path = tree.bucket_path(type_name, name, ref.sha256)
                present(path, ref.size)
                if path not in staged:
                    continue  # an unchanged bucket: its shards are the site's
                for shard in _tree2.bucket(raw(path) or b"", type_name, name).shards.values():
                    present(shard.path(type_name), shard.file.size)
                    present(tree.shard_sums_path(type_name, shard.shard), shard.sums.size)
    except InvalidInput as exc:
        raise VerificationError(f"{site.root}: the bundle's indexes are not valid: {exc}") from None


def _withdraw(site: LocalDest, paths: list[str], grace: float) -> list[str]:
    """Delete what the new generation no longer holds (after its root is published);
    superseded bucket and shard files are kept for the grace period (``_superseded``)."""
    superseded = [p for p in paths if is_content_path(p)]
    paths = [p for p in paths if not is_content_path(p)]
    removed = [p for p in paths if site.delete(p)]
    site.remove_empty_dirs(paths)
    raw = site.read_bytes(tree.ROOT_INDEX)
    root = None
    if raw is not None:
        with contextlib.suppress(GlareliteError):
            root = _tree2.root(raw)
    if root is not None:
        _superseded.expire(site, root, superseded, grace, removed)
    site.sync_dirs()
    return removed


def _record(site: LocalDest, manifest: Manifest) -> None:
    """Keep the listing the site now holds: a later full bundle withdraws by it. An
    incremental /2 bundle lists only what it carried: the record is dropped instead (a
    full bundle then reads what the site's own indexes name)."""
    if manifest.format == FORMAT and manifest.base is not None:
        site.delete(SITE_RECORD)
        return
    listing = manifest.listing
    full = Manifest(manifest.generation, manifest.root_sha256, None, listing, _ordered(listing), [])
    site.write_file(SITE_RECORD, [full.to_json()])


def bundle_manifest(bundle: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The manifest of a bundle file, validated (for tools and tests)."""
    where = os.fspath(bundle)
    with open(where, "rb") as f:
        manifest, tar = _read_manifest(f, where)
        tar.close()
    return dict(json.loads(manifest.to_json()))
