"""Mirrors of mirrors: sync a tree from another tree (``glarelite mirror DEST --from TREE``).

The result is the source tree, file for file: its files are copied verbatim (root index,
``index.signed.json``, buckets, shards, ``SHA256SUMS.d/``, artifact indexes, blobs,
``redirects.nginx.conf``), so a region serves its edges exactly what the hub published,
the hub's signature included, and an edge can be re-pointed from one to the other.
Nothing is re-published, so there is no generation of our own: DEST carries the hub's.

Every byte is verified before it is written: the root by the hub's signature (trusted
keys), every index against the sha256 that pins it, each artifact index against its show
view, each blob against the sha256 its index records; every name read from an index is
validated before it makes a path.

A format 2 source is synced by ``_hop2``: O(change) by content addressing. A format 1
source (one type index per type, one SHA256SUMS) is copied as format 1 (below): a region
can relay a hub that is not upgraded yet, and its edges read format 1 too; when the hub
upgrades, the next hop upgrades DEST. Format 1 is incremental by generation: the same
root as DEST's is a no-op (the root files are the only reads); a new one costs the type
indexes, artifact indexes and blobs whose entries differ from DEST's own indexes,
published in the safe order: artifact indexes, type indexes, SHA256SUMS, the signed
root, the root index last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import IO, Any

from glarelite import (
    DestinationError,
    GlareliteError,
    InvalidInput,
    MirrorCatalog,
    MirrorSettings,
    NotFound,
    SignatureError,
    TooLarge,
    TreeFiles,
    VerificationError,
    open_mirror,
    open_tree_files,
    signing,
    tree,
)

from . import _hop2, _superseded
from .copy import CHUNK, describe, hash_file
from .dest import Dest, open_dest
from .lock import TreeLock
from .report import SyncReport

# a tree a catalog sync wrote holds its state (state.json, or SQLite since format 2)
CATALOG_STATES = tuple(
    f"{tree.STATE_DIR}/{name}" for name in ("state.json", "state.sqlite", "head.json")
)
# What a forced hop removes: SQLite's sidecars first (a writer killed mid-run leaves them),
# since a -wal left beside a state.sqlite created later would be replayed into it.
CATALOG_STATE_FILES = (
    *(f"{tree.STATE_DIR}/state.sqlite{s}" for s in ("-wal", "-shm", "-journal")),
    *CATALOG_STATES,
)

__all__ = ["FromOptions", "sync_from"]


def _remove_catalog_state(target: Dest) -> None:
    """Remove a catalog sync's state from a tree a hop took over (forced)."""
    for path in CATALOG_STATE_FILES:
        if target.stat(path) is not None:
            target.delete(path)


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


@dataclass(frozen=True)
class FromOptions:
    """Options of :func:`sync_from`.

    ``trusted_keys``: public keys (``.pub`` files or base64 text); when given, the
    source's root is read from ``index.signed.json`` and must be signed by one of them
    before anything is copied. ``force``: accept a source generation older than DEST's
    (a rollback), a source that publishes nothing where DEST publishes artifacts, and a
    DEST that a catalog sync wrote. ``settings`` bounds the reading of the source (see
    ``glarelite.MirrorSettings``). ``attempts``: a source publishing a new generation
    while it is read is read again from its root, this many times in all. ``workers``
    blobs are copied at once. ``grace``: seconds a bucket or shard file the source no
    longer pins stays in a format 2 DEST (a reader of the previous root can finish);
    recorded in ``.glarelite-mirror/superseded.json``, removed by the first run after it."""

    trusted_keys: Iterable[Any] | None = None
    force: bool = False
    storage_options: Mapping[str, Any] | None = None
    settings: MirrorSettings | None = None
    fsync: bool = True
    attempts: int = 3
    workers: int = 8
    grace: float = 3600.0

    def __post_init__(self) -> None:
        keys = self.trusted_keys
        if keys is not None:
            if isinstance(keys, (str, bytes, os.PathLike)):
                keys = [keys]
            object.__setattr__(self, "trusted_keys", tuple(keys))
        if self.storage_options is not None:
            object.__setattr__(self, "storage_options", dict(self.storage_options))
        if self.settings is not None and not isinstance(self.settings, MirrorSettings):
            raise InvalidInput("settings must be a glarelite.MirrorSettings")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidInput(f"attempts must be an integer >= 1, not {self.attempts!r}")
        if self.attempts < 1:
            raise InvalidInput(f"attempts must be an integer >= 1, not {self.attempts!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidInput(f"workers must be an integer >= 1, not {self.workers!r}")
        if (
            isinstance(self.grace, bool)
            or not isinstance(self.grace, (int, float))
            or not 0 <= self.grace < float("inf")
        ):
            raise InvalidInput(f"grace must be a number of seconds >= 0, not {self.grace!r}")

    @classmethod
    def build(cls, options: FromOptions | None, overrides: Mapping[str, Any]) -> FromOptions:
        base = options if options is not None else cls()
        if not isinstance(base, FromOptions):
            raise InvalidInput(f"options must be a mirror.FromOptions, not {options!r}")
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown sync_from option(s): {', '.join(unknown)}")
        if not overrides:
            return base
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        values.update(overrides)
        return cls(**values)


class _SourceMoved(Exception):
    """The source published another generation while we read it: start again."""


def sync_from(
    source: str | os.PathLike[str],
    dest: str,
    options: FromOptions | None = None,
    **overrides: Any,
) -> SyncReport:
    """Make the tree at ``dest`` (a folder or fsspec URL) identical to the tree at
    ``source`` (a folder, ``file://`` or http(s) URL of another mirror tree), as
    ``options`` (a :class:`FromOptions`; keyword arguments named like its fields
    override it) say.

    Returns a ``SyncReport``: ``copied`` lists every file written (``kind`` blob or
    index), ``bytes_fetched`` what was read from the source, ``deleted`` and
    ``withdrawn`` what the new generation no longer names, ``nothing_to_do`` when DEST
    already holds the source's root. A blob that cannot be had is in ``failed`` and
    nothing is published (DEST keeps serving its previous generation, whole). A source
    older than DEST, or empty where DEST is not, is refused (``refused``, exit 10)
    unless ``force``. Raises glarelite.SignatureError when ``trusted_keys`` are given
    and the source is not signed by one of them (nothing is written),
    glarelite.VerificationError when the source's files disagree with each other,
    glarelite.LockedError when another sync holds DEST.
    """
    started = time.monotonic()
    opts = FromOptions.build(options, overrides)
    settings = opts.settings if opts.settings is not None else MirrorSettings()
    keys = None
    if opts.trusted_keys is not None:
        keys = [signing.load_public_key(k) for k in opts.trusted_keys]
        if not keys:
            raise InvalidInput("trusted_keys is empty: give at least one key, or None")
    files = open_tree_files(source, settings=settings)
    try:
        try:
            target = open_dest(dest, opts.storage_options, create=True, fsync=opts.fsync)
            lock = TreeLock(target).acquire()
        except OSError as exc:
            if isinstance(exc, GlareliteError):
                raise
            error = DestinationError(f"cannot write the mirror tree {dest}: {exc.strerror or exc}")
            error.errno = exc.errno
            raise error from exc
        report = SyncReport(dest=target.url)
        try:
            hop = _Hop(files, source, target, report, keys, opts, settings)
            for attempt in range(opts.attempts):
                try:
                    hop.run()
                    break
                except _SourceMoved as exc:
                    if attempt + 1 == opts.attempts:
                        raise VerificationError(
                            f"mirror tree {files.location}: {exc} (read {opts.attempts} "
                            "times); it may still be publishing, or it is damaged (check it)"
                        ) from None
                    time.sleep(0.2 * (attempt + 1))  # let a publish under way finish
        finally:
            lock.release()
            target.close()
            report.seconds = time.monotonic() - started
    finally:
        files.close()
    return report


@dataclass
class _Old:
    """What DEST publishes now, from its own indexes (unknown parts are left out: they
    are then fetched again, never trusted)."""

    raw_root: bytes | None = None
    raw_signed: bytes | None = None
    generation: int = 0
    sums_sha256: str = ""
    types: dict[str, str] = field(default_factory=dict)  # type -> index sha256
    shows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # type -> id -> show
    blobs: dict[str, tuple[object, object]] = field(default_factory=dict)  # path -> (sha, size)


class _Hop:
    def __init__(
        self,
        files: TreeFiles,
        source: str | os.PathLike[str],
        target: Dest,
        report: SyncReport,
        keys: list[signing.PublicKey] | None,
        opts: FromOptions,
        settings: MirrorSettings,
    ) -> None:
        self.files = files
        self.source = source
        self.target = target
        self.report = report
        self.keys = keys
        self.opts = opts
        self.settings = settings
        self.lock = threading.Lock()  # the report, from the copying threads

    def _read(self, path: str, limit: int | None = None) -> bytes:
        data = self.files.read(path, limit)
        with self.lock:  # format 2 reads shards from worker threads
            self.report.bytes_fetched += len(data)
        return data

    # -- the root --------------------------------------------------------------------
    def _source_root(self) -> tuple[bytes, bytes | None]:
        """(root index bytes, index.signed.json bytes or None). With trusted keys the root
        comes out of the verified signed file; without, the signed file (when there is
        one) is still carried, and must hold the very root it sits beside."""
        where = f"{self.files.location}/{signing.SIGNED_INDEX}"
        try:
            signed: bytes | None = self._read(signing.SIGNED_INDEX, signing.MAX_SIGNED_SIZE)
        except NotFound:
            signed = None
        if self.keys is not None:
            if signed is None:
                raise SignatureError(
                    f"mirror tree {self.files.location} is not signed (no "
                    f"{signing.SIGNED_INDEX}) and trusted keys were given: refused"
                )
            return signing.verify_root(signed, self.keys, where=where), signed
        if signed is None:
            return self._read(tree.ROOT_INDEX, self.settings.max_root_index_bytes), None
        return _signed_text(signed, where), signed

    def run(self) -> None:
        root_bytes, signed = self._source_root()
        data = _json(root_bytes, tree.ROOT_INDEX)
        if tree.format_of(data) == tree.FORMAT_VERSION:
            self._run2(tree.Root.from_dict(data), root_bytes, signed)
            return
        self._run1(root_bytes, signed)

    def _refusal(self, generation: int, old_generation: int, empty: bool) -> str:
        """Why the source is refused (unless forced), or ""."""
        if self.opts.force:
            return ""
        if generation < old_generation:
            return (
                f"the source {self.files.location} is at generation {generation}, "
                f"older than generation {old_generation} in {self.target.url} (a rollback); "
                "force to accept it"
            )
        marker = next((m for m in CATALOG_STATES if self.target.stat(m) is not None), None)
        if marker is not None:
            return (
                f"{self.target.url} is a mirror of a catalog ({marker}); a tree mirrored from "
                "another tree is written by --from alone; force to replace it"
            )
        if empty:
            return (
                f"the source {self.files.location} publishes no artifact and "
                f"{self.target.url} does; force to empty it"
            )
        return ""

    def _run2(self, root: tree.Root, root_bytes: bytes, signed: bytes | None) -> None:
        """A format 2 source (see ``_hop2``)."""
        report, target = self.report, self.target
        report.generation = root.generation
        dest_root = target.read_bytes(tree.ROOT_INDEX)
        dest_signed = target.read_bytes(signing.SIGNED_INDEX)
        same = dest_root == root_bytes and dest_signed == signed
        if same and all(self._present(tree.type_sums_path(t)) for t in root.types):
            report.nothing_to_do = True
            report.artifacts = root.counts["artifacts"]
            report.blobs = root.counts["blobs"]
            _superseded.expire(target, root, [], self.opts.grace, report.deleted)
            return
        old = _hop2.old_root(dest_root)
        old_v1 = None
        if old is None and dest_root is not None:
            v1 = _old_tree(target, dest_root, dest_signed)
            old_v1 = v1 if v1.generation else None
        if old is not None:
            old_generation, had = old.generation, old.counts["artifacts"] > 0
        elif old_v1 is not None:
            old_generation, had = old_v1.generation, any(old_v1.shows.values())
        else:
            old_generation, had = 0, False
        why = self._refusal(root.generation, old_generation, root.counts["artifacts"] == 0 and had)
        if why:
            report.refused = why
            return
        if signed is not None:
            plain = self._read(tree.ROOT_INDEX, self.settings.max_root_index_bytes)
            if plain != root_bytes:
                raise _SourceMoved(
                    f"{tree.ROOT_INDEX} is not the root {signing.SIGNED_INDEX} holds"
                )
        _hop2.run(self, root, root_bytes, signed, old, old_v1)
        if report.published:
            _remove_catalog_state(target)  # forced over a catalog's mirror

    def _run1(self, root_bytes: bytes, signed: bytes | None) -> None:
        """A format 1 source: copied as format 1 (a region relays a hub that is not
        upgraded yet; its edges read format 1 too)."""
        report, target = self.report, self.target
        root = tree.RootIndex.from_dict(_json(root_bytes, tree.ROOT_INDEX))
        report.generation = root.generation
        dest_root = target.read_bytes(tree.ROOT_INDEX)
        dest_signed = target.read_bytes(signing.SIGNED_INDEX)
        same = dest_root == root_bytes and dest_signed == signed
        if same and target.stat(tree.SUMS) is not None:
            report.nothing_to_do = True
            report.artifacts = root.counts["artifacts"]
            report.blobs = root.counts["blobs"]
            return
        old = _old_tree(target, dest_root, dest_signed)
        why = self._refusal(
            root.generation,
            old.generation,
            root.counts["artifacts"] == 0 and any(old.shows.values()),
        )
        if why:
            report.refused = why
            return
        # index.json must be the root the signed file holds (copied side by side)
        if signed is not None:
            plain = self._read(tree.ROOT_INDEX, self.settings.max_root_index_bytes)
            if plain != root_bytes:
                raise _SourceMoved(
                    f"{tree.ROOT_INDEX} is not the root {signing.SIGNED_INDEX} holds"
                )
        with open_mirror(self.source, settings=self.settings, trusted_keys=self.keys) as catalog:
            if catalog.root != root:
                raise _SourceMoved(f"{tree.ROOT_INDEX} changed while it was read")
            self._sync(catalog, root, root_bytes, signed, old)

    # -- a new generation -----------------------------------------------------------------
    def _sync(
        self,
        catalog: MirrorCatalog,
        root: tree.RootIndex,
        root_bytes: bytes,
        signed: bytes | None,
        old: _Old,
    ) -> None:
        report, target = self.report, self.target
        # 1. the pinned indexes, verified against the root, before anything is written
        type_bytes: dict[str, bytes] = {}
        shows: dict[str, dict[str, dict[str, Any]]] = {}
        for name, entry in root.types.items():
            path = tree.type_index_path(name)
            if old.types.get(name) == entry.index_sha256 and self._present(path):
                shows[name] = old.shows[name]
                continue
            data = self._pinned(path, entry.index_size, entry.index_sha256)
            type_bytes[name] = data
            items = tree.check_type_index(_json(data, path), name)
            shows[name] = {str(s.get("id")): dict(s) for s in items}
        sums: bytes | None = None
        if old.sums_sha256 != root.sums_sha256 or not self._present(tree.SUMS):
            sums = self._pinned(tree.SUMS, root.sums_size, root.sums_sha256)

        # 2. the artifact indexes that changed (copied verbatim, each proven to hold its
        #    type index's show view), read and verified before anything is written: a
        #    source caught publishing leaves DEST as it was (they are about the size of
        #    their type index entries, held in memory until they are written)
        staged: list[tuple[str, bytes]] = []
        for name, by_id in shows.items():
            previous = old.shows.get(name, {})
            for artifact_id, show in by_id.items():
                path = tree.artifact_index_path(name, artifact_id)
                if previous.get(artifact_id) == show and self._present(path):
                    continue
                data = self._read(path)
                _check_artifact_index(data, show, root.generation, path)
                staged.append((path, data))
        # 3. blobs: what the new indexes name with another sha256/size than DEST's
        wanted: dict[str, tuple[str, int]] = {}
        jobs: list[tuple[str, str, str, str, int]] = []
        for name, by_id in shows.items():
            for artifact_id in by_id:
                artifact = catalog.get(artifact_id)  # validated by the reader
                for blob in artifact.iter_blobs():
                    slot = f"{blob.field}/{blob.key}" if blob.key else blob.field
                    if blob.sha256 is None or blob.size is None:
                        report.warnings.append(
                            f"{artifact_id} {slot}: the source records no checksum; not copied"
                        )
                        continue
                    path = tree.blob_path(name, artifact_id, blob.field, blob.key)
                    wanted[path] = (blob.sha256, blob.size)
                    if old.blobs.get(path) == (blob.sha256, blob.size) and self._present(
                        path, blob.size
                    ):
                        report.skipped += 1
                        continue
                    jobs.append((artifact_id, slot, path, blob.sha256, blob.size))
        with ThreadPoolExecutor(max_workers=self.opts.workers) as pool:
            for _ in pool.map(lambda job: self._copy_blob(catalog, *job), jobs):
                pass
        if report.failed:
            return  # DEST keeps its previous generation, whole

        # 4. the indexes, in the safe order: artifact indexes, type indexes, SHA256SUMS,
        #    the signed root, the root index last
        for path, data in staged:
            self._write(path, data)
        target.sync_dirs()
        # then the type indexes
        for name, data in type_bytes.items():
            self._write(tree.type_index_path(name), data)
        target.sync_dirs()
        if sums is not None:
            self._write(tree.SUMS, sums)
        if signed is not None and old.raw_signed != signed:
            self._write(signing.SIGNED_INDEX, signed)
        elif signed is None and old.raw_signed is not None:
            # the hub stopped signing: a stale signed root must not outlive its root
            target.delete(signing.SIGNED_INDEX)
            report.deleted.append(signing.SIGNED_INDEX)
        if old.raw_root != root_bytes:
            self._write(tree.ROOT_INDEX, root_bytes)
        target.sync_dirs()
        # forced over a catalog's mirror: its state no longer describes the tree
        _remove_catalog_state(target)
        report.published = True
        report.artifacts = sum(len(v) for v in shows.values())
        report.blobs = len(wanted)

        # 5. withdrawals: what DEST published that the new generation no longer names
        gone: list[str] = []
        for name, by_id in old.shows.items():
            for artifact_id, show in by_id.items():
                if artifact_id in shows.get(name, {}):
                    continue
                paths = [tree.artifact_index_path(name, artifact_id)]
                paths += [
                    tree.blob_path(name, artifact_id, f, k)
                    for f, k, _ in tree.iter_blob_entries(show)
                ]
                report.withdrawn.append(
                    {
                        "id": artifact_id,
                        "type": name,
                        "reason": "no longer published by the source",
                        "files": len(paths),
                    }
                )
            if name not in root.types:
                gone.append(tree.type_index_path(name))
        old_files = set(old.blobs) | {
            tree.artifact_index_path(n, i) for n, by_id in old.shows.items() for i in by_id
        }
        new_files = set(wanted) | {
            tree.artifact_index_path(n, i) for n, by_id in shows.items() for i in by_id
        }
        gone += sorted(old_files - new_files)
        for path in gone:
            if target.delete(path):
                report.deleted.append(path)
        target.remove_empty_dirs(gone)

    def _pinned(self, path: str, size: int, sha256: str) -> bytes:
        """A file the root pins by size and sha256 (never more than that size is read)."""
        try:
            data = self._read(path, size)
        except TooLarge:
            data = b""
        if (len(data), hashlib.sha256(data).hexdigest()) != (size, sha256):
            raise _SourceMoved(f"{path} is not the one {tree.ROOT_INDEX} publishes")
        return data

    def _present(self, path: str, size: int | None = None) -> bool:
        """A file DEST's indexes name is there (one lstat, local trees only: an object
        store is trusted to hold what its indexes name, no request per object)."""
        if not self.target.local:
            return True
        st = self.target.stat(path)
        return st is not None and (size is None or st[0] == size)

    def _write(self, path: str, data: bytes) -> None:
        self.target.write_file(path, [data])
        self.report.copied.append({"path": path, "kind": "index", "bytes": len(data)})
        self.report.bytes += len(data)

    def _copy_blob(
        self, catalog: MirrorCatalog, artifact_id: str, slot: str, path: str, sha: str, size: int
    ) -> None:
        # catalog.open_blob verifies as it reads; copy_blob checks size and sha256 again
        self.copy_blob(artifact_id, path, size, sha, lambda: catalog.open_blob(artifact_id, slot))

    def copy_blob(
        self, artifact_id: str, path: str, size: int, sha: str, open_stream: Callable[[], IO[bytes]]
    ) -> None:
        """One blob from the source into DEST, verified against the size and sha256 its
        index pins (never more bytes than it says); a failure goes into the report."""
        report, target = self.report, self.target
        st = target.stat(path)
        if st is not None and st[0] == size:  # a run stopped before it published
            try:
                if hash_file(target, path) == (size, sha):
                    with self.lock:
                        report.skipped += 1
                    return
            except OSError:
                pass
        got = 0
        temp = target.new_temp(path)
        try:
            digest = hashlib.sha256()
            stream = open_stream()
            try:
                while chunk := stream.read(CHUNK):
                    got += len(chunk)
                    if got > size:
                        break  # never more than the index says
                    temp.write(chunk)
                    digest.update(chunk)
            finally:
                stream.close()
            if (got, digest.hexdigest()) != (size, sha):
                raise VerificationError(f"{path}: the bytes read are not the ones indexed")
            temp.commit()
        except (GlareliteError, OSError) as exc:
            temp.discard()
            with self.lock:
                report.bytes_fetched += got
                report.failed.append(
                    {
                        "path": path,
                        "id": artifact_id,
                        "error": type(exc).__name__,
                        "reason": describe(exc),
                    }
                )
            return
        except BaseException:
            temp.discard()
            raise
        with self.lock:
            report.bytes_fetched += got
            report.copied.append({"path": path, "kind": "blob", "id": artifact_id, "bytes": size})
            report.bytes += size


def _old_tree(target: Dest, raw_root: bytes | None, raw_signed: bytes | None) -> _Old:
    old = _Old(raw_root=raw_root, raw_signed=raw_signed)
    if old.raw_root is None:
        return old
    try:
        root = tree.RootIndex.from_dict(_json(old.raw_root, tree.ROOT_INDEX))
    except GlareliteError:
        return old  # damaged: everything is fetched again
    old.generation = root.generation
    old.sums_sha256 = root.sums_sha256
    for name, entry in root.types.items():
        try:
            tree.check_identifier(name, "type name")
            path = tree.type_index_path(name)
            raw = target.read_bytes(path)
            if raw is None or hashlib.sha256(raw).hexdigest() != entry.index_sha256:
                continue
            shows: dict[str, dict[str, Any]] = {}
            blobs: dict[str, tuple[object, object]] = {}
            for show in tree.check_type_index(_json(raw, path), name):
                artifact_id = show.get("id")
                if not isinstance(artifact_id, str) or not _ID.match(artifact_id):
                    raise InvalidInput(f"{path}: an artifact id is not a catalog id")
                shows[artifact_id] = dict(show)
                for f, k, blob in tree.iter_blob_entries(show):
                    tree.check_identifier(f, "field name")
                    if k:
                        tree.check_key(k)
                    blobs[tree.blob_path(name, artifact_id, f, k)] = (
                        blob.get("sha256"),
                        blob.get("size"),
                    )
        except (GlareliteError, ValueError, TypeError, AttributeError):
            continue  # a type index DEST cannot vouch for: fetched again
        old.types[name] = entry.index_sha256
        old.shows[name] = shows
        old.blobs.update(blobs)
    return old


def _json(raw: bytes, path: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{path} is not valid JSON: {str(exc)[:200]}") from None


def _signed_text(signed: bytes, where: str) -> bytes:
    """The root a signed file holds, unverified (no key to verify it with: it is carried
    for the sites that have one)."""
    try:
        data = json.loads(signed)
        text = data["root"] if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise ValueError("no text 'root'")
        return text.encode("utf-8")
    except (ValueError, RecursionError, KeyError, UnicodeError) as exc:
        raise SignatureError(f"{where} is not a signed root: {str(exc)[:200]}") from None


def _check_artifact_index(data: bytes, show: Mapping[str, Any], generation: int, path: str) -> None:
    """An artifact index holds its type index's show view and a mirror key no newer than
    the root (anything else: the source is publishing, or was altered)."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        obj = None
    marker = obj.pop(tree.MIRROR_KEY, None) if isinstance(obj, dict) else None
    made = marker.get("generation") if isinstance(marker, dict) else None
    if (
        not isinstance(made, int)
        or isinstance(made, bool)
        or not 0 < made <= generation
        or obj != show
    ):
        raise _SourceMoved(f"{path} does not hold the show view its type index publishes")
