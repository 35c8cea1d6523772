"""Reading a mirror tree at a disconnected site: a read-only catalog over the tree's
indexes, local or served over http(s).

A format 2 tree (see ``glarelite.tree``) is read lazily. ``open_mirror`` reads the root
index only; a query then fetches the bucket and shard files it needs, each checked
against the sha256 and size its parent pins before it is parsed: a ``name`` filter
(``eq``/``in``) reads the shards of those names only (root, one bucket, one shard), any
other query every shard of the type, and ``get(id)`` learns the artifact's shard from
its ``artifacts/<type>/<id>/index.json`` (which chooses the shard and nothing more).
Loaded shards go into a temporary on-disk SQLite database with the catalog's schema
(``glarelite._shardview``), so listing runs the catalog's own query code
(``glarelite._query``: filters, sort, ``latest`` and paging exactly as on the catalog)
with bounded memory. The root read is
the generation served until ``refresh``; a file it pins that has gone (a newer
generation's grace period passed) makes the reader read the root again, once.
``MirrorSettings.cache_dir`` keeps fetched buckets and shards by sha256 for later readers.

A format 1 tree (one index per type) is read as before: every type index at open, into
an in-memory database. A format this glarelite does not know is refused.

Blob reads verify size and sha256 while streaming; a blob missing from the tree or
holding other bytes raises an error that names its path.

A tree is hostile until proven: its indexes are validated strictly
(``glarelite._treeread``) before a name from them makes a path, a local tree is walked
without following links, and over http every request stays under the base URL, is never
decompressed, and index reads are bounded in size and time (:class:`MirrorSettings`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, BinaryIO, NoReturn, TypeVar, cast

from . import _listing, _treeread, tree
from ._blobread import save_atomically
from ._db import Database
from ._shardcache import ShardCache
from ._shardview import ShardView, insert_rows, name_shards
from ._treeshards import Gone, ShardFetcher
from ._treesource import (
    MirrorSettings,
    _HttpSource,
    _LocalSource,
    _Source,
    _too_large,
)
from ._trust import Trust
from .errors import (
    InvalidInput,
    NotFound,
    ReadOnly,
    TooLarge,
    VerificationError,
)
from .models import Artifact, Blob, Page
from .progress import Progress
from .types import ArtifactType

__all__ = ["MirrorCatalog", "MirrorSettings", "TreeFiles", "open_mirror", "open_tree_files"]

T = TypeVar("T")
_LOAD_ATTEMPTS = 5  # a publish in progress settles within a few rounds


# -- the read-only catalog -----------------------------------------------------------------
class MirrorCatalog:
    """A read-only catalog over a mirror tree. Lists and gets artifacts like
    ``glarelite.Catalog`` (same filters, sort, ``latest`` and paging) and reads blobs
    verified; every write raises glarelite.ReadOnly."""

    def __init__(
        self, source: _Source, settings: MirrorSettings | None = None, trust: Trust | None = None
    ) -> None:
        self._source = source
        self._settings = settings or MirrorSettings()
        self._trust = trust
        self._db: Database | None = None  # format 1: every artifact, in memory
        self._artifacts: dict[str, Artifact] = {}
        self._view: ShardView | None = None  # format 2: what the queries loaded
        self._types: dict[str, ArtifactType] = {}
        self.root: tree.RootIndex | tree.Root = tree.RootIndex(generation=0, generated_at="")
        self._root_bytes = b""
        self._lock = threading.RLock()
        self._cache: ShardCache | None = None
        try:
            cache_dir = self._settings.cache_dir
            if cache_dir is not None:
                self._cache = ShardCache(cache_dir, self._settings.cache_max_bytes)
            self._fetch = ShardFetcher(source, self._settings, self._cache)
            self.refresh()
        except BaseException:
            self.close()
            raise

    # -- lifetime ---------------------------------------------------------------------
    def __enter__(self) -> MirrorCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        """Close what the previous generation loaded."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._view is not None:
            self._view.close()
            self._view = None

    def close(self) -> None:
        self._drop()
        if self._cache is not None:
            self._cache.close()
        self._source.close()

    @property
    def location(self) -> str:
        return self._source.where

    @property
    def path(self) -> str:
        """Where the tree is (as ``Catalog.path``: a tree can be mirrored onwards)."""
        return self._source.where

    @property
    def generation(self) -> int:
        return self.root.generation

    def refresh(self) -> None:
        """Read the tree's root again (after the site received a newer tree); shards
        loaded from another generation are dropped."""
        with self._lock:
            deadline = time.monotonic() + self._settings.read_deadline
            raw = self._read_root_checked(deadline)
            try:
                data = _json(raw, tree.ROOT_INDEX)
                if not isinstance(data, dict):
                    raise InvalidInput(
                        f"{tree.ROOT_INDEX} is not a valid mirror root index: not a JSON object"
                    )
                fmt = tree.format_of(data)
            except InvalidInput as exc:
                raise InvalidInput(f"mirror tree {self._source.where}: {exc}") from None
            if fmt == tree.FORMAT_V1:
                self._refresh_v1(raw)
            else:
                self._refresh_v2(raw)

    def _read_root_checked(self, deadline: float) -> bytes:
        try:
            return self._read_root(deadline)
        except NotFound:
            raise NotFound(
                f"no mirror tree at {self._source.where}: {tree.ROOT_INDEX} is missing"
            ) from None

    # -- format 2 ------------------------------------------------------------------------
    def _refresh_v2(self, raw: bytes) -> None:
        if raw == self._root_bytes and self._view is not None:
            return  # the same generation: what is loaded stays valid
        where = self._source.where
        try:
            root = tree.Root.from_dict(_json(raw, tree.ROOT_INDEX))
            types = {
                n: _treeread.read_definition(n, e.definition, tree.ROOT_INDEX)
                for n, e in root.types.items()
            }
        except InvalidInput as exc:
            raise InvalidInput(f"mirror tree {where}: {exc}") from None
        view = ShardView(root, types, self._source, self._settings, self._fetch)
        self._drop()
        self._view, self.root, self._types, self._root_bytes = view, root, types, raw

    def _retrying(self, load: Callable[[ShardView], T]) -> T | None:
        """``load(view)``; a pinned file that has gone makes the reader re-read the root
        once and load again from the view of the new generation."""
        with self._lock:
            view = self._view
            if view is None:
                return None
            try:
                return load(view)
            except Gone:
                self.refresh()
            view = self._view
            if view is None:  # the tree went back to format 1  # type: ignore[unreachable]
                return None
            try:
                return load(view)
            except Gone as exc:
                raise NotFound(
                    f"mirror tree {self.location} has no {exc.path}, which {tree.ROOT_INDEX} "
                    f"(generation {self.generation}) pins, even after reading {tree.ROOT_INDEX} "
                    "again: the tree is incomplete or being replaced (check it)"
                ) from None

    def _locate(self, artifact_id: str) -> Artifact | None:
        """An artifact of a format 2 tree: loaded already, or found through its
        artifacts/<type>/<id>/index.json (per type, few types), whose name says its shard;
        the shard (verified) says what it is."""

        def find(view: ShardView) -> Artifact | None:
            found = view.stored(artifact_id)
            if found is not None:
                return found
            try:
                _treeread.check_artifact_id(artifact_id)
            except InvalidInput:
                return None
            for type_name in sorted(view.types):
                if type_name in view.complete:
                    continue
                shard = view.shard_named_by(type_name, artifact_id)
                if shard is not None:
                    view.load([type_name], {shard})
                    found = view.stored(artifact_id)
                    if found is not None:
                        return found
            return None

        return self._retrying(find)

    # -- format 1 ------------------------------------------------------------------------
    def _materialize(self, _conn: Any, rows: Sequence[Any]) -> list[Artifact]:
        return [self._artifacts[r[0]] for r in rows]

    def _refresh_v1(self, first: bytes) -> None:
        root, types, loaded = self._read_indexes(first)
        db = Database(":memory:")
        artifacts: dict[str, Artifact] = {}
        where = tree.ROOT_INDEX
        try:
            with db.write() as conn:
                for atype in types.values():
                    conn.execute(
                        "INSERT INTO artifact_types (name, definition, created_at)"
                        " VALUES (?, ?, ?)",
                        (atype.name, atype.dumps(), root.generated_at),
                    )
                for item in loaded:
                    artifact = item.artifact
                    where = f"{tree.type_index_path(artifact.type_name)}: artifact {artifact.id}"
                    artifacts[artifact.id] = artifact
                    insert_rows(conn, item, types[artifact.type_name])
        except (sqlite3.Error, UnicodeError, ValueError) as exc:
            # Validation lets nothing through that the schema refuses (text that is not
            # Unicode, say); should it, the tree is still at fault, not the caller.
            db.close()
            raise InvalidInput(
                f"mirror tree {self._source.where}: {where} cannot be loaded: {exc}"
            ) from None
        except BaseException:
            db.close()
            raise
        self._drop()
        self._db, self.root, self._types, self._artifacts = db, root, types, artifacts
        self._root_bytes = b""

    def _read_indexes(
        self, first: bytes
    ) -> tuple[tree.RootIndex, dict[str, ArtifactType], list[_treeread.Loaded]]:
        """Every index of the tree, validated; InvalidInput names the file at fault."""
        where = self._source.where
        try:
            return self._read_indexes_once(first)
        except InvalidInput as exc:
            if str(exc).startswith("mirror tree "):
                raise
            raise type(exc)(f"mirror tree {where}: {exc}") from None

    def _read_indexes_once(
        self, first: bytes
    ) -> tuple[tree.RootIndex, dict[str, ArtifactType], list[_treeread.Loaded]]:
        settings = self._settings
        deadline = time.monotonic() + settings.read_deadline
        problem = ""
        for attempt in range(_LOAD_ATTEMPTS):
            raw = first if attempt == 0 else self._read_root_checked(deadline)
            root = tree.RootIndex.from_dict(_json(raw, tree.ROOT_INDEX))
            types = {
                n: _treeread.read_definition(n, e.definition, tree.ROOT_INDEX)
                for n, e in root.types.items()
            }
            loaded: list[_treeread.Loaded] = []
            seen: dict[str, str] = {}  # artifact id -> the index that listed it
            for type_name, entry in root.types.items():
                path = tree.type_index_path(type_name)
                if entry.index_size > settings.max_index_bytes:
                    raise _too_large(self._source.where, path, settings.max_index_bytes)
                try:  # never more than the root says it holds (+1 byte to see it is more)
                    data: bytes | None = self._source.read(path, entry.index_size, deadline)
                except TooLarge:
                    data = None
                if data is None or (len(data), hashlib.sha256(data).hexdigest()) != (
                    entry.index_size,
                    entry.index_sha256,
                ):
                    problem = f"{path} is not the one {tree.ROOT_INDEX} publishes"
                    break
                atype = types[type_name]
                for show in tree.check_type_index(_json(data, path), type_name):
                    item = _treeread.read_show(show, atype, path)
                    artifact = item.artifact
                    if artifact.id in seen:
                        raise InvalidInput(
                            f"{path}: artifact {artifact.id} is listed twice "
                            f"(also in {seen[artifact.id]})"
                        )
                    seen[artifact.id] = path
                    loaded.append(item)
            else:
                return root, types, loaded
            if attempt + 1 < _LOAD_ATTEMPTS:  # a sync is publishing: let it finish
                time.sleep(min(0.1 * (attempt + 1), max(0.0, deadline - time.monotonic())))
        raise VerificationError(
            f"mirror tree {self._source.where}: {problem} (read {_LOAD_ATTEMPTS} times); a sync "
            "may still be publishing, or the tree is damaged (check it)"
        )

    def _read_root(self, deadline: float) -> bytes:
        """The root index bytes: from index.signed.json, verified, when keys are trusted
        (read under the same bounds: the signed file holds the root, escaped, and its
        signatures)."""
        limit = self._settings.max_root_index_bytes
        if self._trust is None:
            return self._source.read(tree.ROOT_INDEX, limit, deadline)
        return self._trust.load_root(
            lambda p: io.BytesIO(self._source.read(p, 2 * limit + (1 << 16), deadline)),
            self.location,
        )

    def _conn(self) -> Database:
        if self._view is not None:
            return self._view.db
        if self._db is None:
            raise InvalidInput("this mirror catalog is closed")
        return self._db

    # -- reads (as on Catalog) -------------------------------------------------------------
    def types(self) -> list[ArtifactType]:
        return [self._types[n] for n in sorted(self._types)]

    def get_type(self, name: str) -> ArtifactType:
        atype = self._types.get(name)
        if atype is None:
            raise NotFound(f"no artifact type {name!r} in the mirror tree {self.location}")
        return atype

    def get(self, artifact_id: str) -> Artifact:
        artifact = None
        if isinstance(artifact_id, str):
            if self._view is None:
                artifact = self._artifacts.get(artifact_id)
            else:
                artifact = self._locate(artifact_id)
        if artifact is None:
            raise NotFound(f"no artifact {artifact_id} in the mirror tree {self.location}")
        return artifact

    def list(
        self,
        type_name: str | None = None,
        *,
        filters: Sequence[str | tuple[str, str]] | Mapping[str, Any] = (),
        sort: str | Sequence[str] | None = None,
        limit: int | None = None,
        marker: str | None = None,
        latest: bool = False,
    ) -> Page:
        """A page of artifacts; the same semantics as ``Catalog.list`` (admin scope)."""
        atype = self.get_type(type_name) if type_name is not None else None
        if self._view is None:
            return self._page(type_name, atype, filters, sort, limit, marker, latest)
        shards = name_shards(filters, atype)  # None: every shard
        names = sorted(self._types) if type_name is None else [type_name]
        with self._lock:  # the shards loaded and the page read from one database
            self._retrying(lambda view: view.load(names, shards))
            if isinstance(marker, str):
                self._locate(marker)  # a marker from elsewhere: load its shard
            return self._page(type_name, atype, filters, sort, limit, marker, latest)

    def _page(
        self,
        type_name: str | None,
        atype: ArtifactType | None,
        filters: Any,
        sort: str | Sequence[str] | None,
        limit: int | None,
        marker: str | None,
        latest: bool,
    ) -> Page:
        view = self._view
        return _listing.page(
            self._conn(),
            view.materialize if view is not None else self._materialize,
            type_name=type_name,
            atype=atype,
            owner=None,
            filters=filters,
            sort=sort,
            limit=limit,
            marker=marker,
            latest=latest,
        )

    def iter_all(self, type_name: str | None = None, **kwargs: Any) -> Iterator[Artifact]:
        return _listing.iter_all(self.list, type_name, **kwargs)

    def _blob(self, artifact_id: str, slot: str) -> Blob:
        blob = self.get(artifact_id).blob(slot)
        if blob is None:
            raise NotFound(f"artifact {artifact_id} has no blob {slot}")
        if blob.sha256 is None or blob.size is None:
            raise NotFound(f"blob {slot} of {artifact_id} has no recorded checksum")
        return blob

    def open_blob(
        self, artifact_id: str, slot: str, *, offset: int | None = None, length: int | None = None
    ) -> BinaryIO:
        """The blob's bytes from the tree. A whole read verifies size and sha256
        (ChecksumMismatch naming the file otherwise); a blob absent from the tree raises
        NotFound naming its path."""
        from ._verify import VerifyingReader

        blob = self._blob(artifact_id, slot)
        size = blob.size or 0
        start, count = _range(offset, length, size)
        path = blob.url.lstrip("/")
        if blob.redirect is not None and not isinstance(self._source, _HttpSource):
            # Only a web server with the tree's redirect rules answers for this blob.
            raise NotFound(
                f"blob {slot} of {artifact_id} is not in the mirror tree {self.location}: it "
                f"was left at its origin {blob.redirect[:200]!r} (mirror --externals=redirect); "
                "read the tree through its web server, which redirects there"
            )
        if isinstance(self._source, _HttpSource):
            raw = self._source.open(path, start, count, blob.redirect)
        else:
            raw = self._source.open(path, start, count)
        reader = VerifyingReader(
            raw,
            size=size,
            sha256=blob.sha256 or "",
            offset=start,
            length=count,
            name=self._source.url(path),
        )
        return cast(BinaryIO, reader)

    def open_blobs(
        self, slots: Iterable[tuple[str, str]]
    ) -> Generator[tuple[str, str, Callable[[], BinaryIO]], None, None]:
        """As :meth:`Catalog.open_blobs`: ``(artifact_id, slot, open)`` in the order given,
        each ``open()`` being :meth:`open_blob` (a tree's files need no pipelining)."""
        for artifact_id, slot in slots:
            yield artifact_id, slot, functools.partial(self.open_blob, artifact_id, slot)

    def download(
        self,
        artifact_id: str,
        slot: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Blob:
        """Write a blob to ``dest`` atomically, verified."""
        blob = self._blob(artifact_id, slot)
        save_atomically(
            lambda: self.open_blob(artifact_id, slot),
            dest,
            task=f"download {artifact_id}/{slot}",
            description=f"download {slot}",
            size=blob.size,
            progress=progress,
        )
        return blob

    def blob_url(self, artifact_id: str, slot: str) -> str:
        """Where the blob's bytes are: the tree's URL for it (file:// for a local tree)."""
        return self._source.url(self._blob(artifact_id, slot).url.lstrip("/"))

    # -- writes: refused -------------------------------------------------------------------
    def _read_only(self, what: str) -> NoReturn:
        raise ReadOnly(
            f"cannot {what}: {self.location} is a mirror tree, read-only; "
            "change the catalog it was mirrored from and mirror it again"
        )

    def define_type(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("define a type")

    def create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("create an artifact")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("update an artifact")

    def publish(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("publish an artifact")

    def activate(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("activate an artifact")

    def deactivate(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("deactivate an artifact")

    def reactivate(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("reactivate an artifact")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("delete an artifact")

    def upload(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("upload a blob")

    def add_location(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("add an external location")

    def remove_blob(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("remove a blob")

    def set_quota(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("set a quota")

    def check(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("re-validate external blobs (check the tree with mirror.check_tree)")

    def gc(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("collect garbage")


def _json(raw: bytes, path: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise InvalidInput(f"{path} is not a mirror index: JSON nested too deeply") from None


def _range(offset: int | None, length: int | None, size: int) -> tuple[int, int | None]:
    start = 0 if offset is None else offset
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InvalidInput(f"offset must be a non-negative integer, not {offset!r}")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 0
    ):
        raise InvalidInput(f"length must be a non-negative integer, not {length!r}")
    if start > size:
        raise InvalidInput(f"offset {start} is past the end of the blob ({size} bytes)")
    if offset is None and length is None:
        return 0, None
    return start, size - start if length is None else min(length, size - start)


def open_mirror(
    location: str | os.PathLike[str],
    *,
    ca_certs: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    settings: MirrorSettings | None = None,
    trusted_keys: Iterable[Any] | None = None,
    seen_file: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MirrorCatalog:
    """A read-only catalog over the mirror tree at ``location``: a folder, a ``file://``
    URL or an http(s) URL where a static web server serves the tree.

    ``settings`` bounds everything (see :class:`MirrorSettings`); ``ca_certs``,
    ``timeout`` and ``retries`` (retries of a request), when given, replace its values.

    With ``trusted_keys`` (public keys, ``.pub`` files or base64 text; see
    ``glarelite.signing``) only a tree whose ``index.signed.json`` is signed by one of
    them is read, and its root is taken from that file; ``seen_file`` records the
    highest generation seen per tree so that an older one is refused (SignatureError).

    ``cache_dir`` (replaces ``settings.cache_dir``): a folder keeping the bucket and
    shard files of format 2 trees by sha256, so that a later reader (another process,
    the next day) fetches only the root and what changed; every cached file is verified
    by its hash on use, never trusted."""
    settings = settings if settings is not None else MirrorSettings()
    if not isinstance(settings, MirrorSettings):
        raise InvalidInput("settings must be a glarelite.MirrorSettings")
    if ca_certs is not None:
        settings = replace(settings, ca_certs=ca_certs)
    if timeout is not None:
        settings = replace(settings, timeout=timeout)
    if retries is not None:
        settings = replace(settings, retry=replace(settings.retry, total=retries))
    if cache_dir is not None:
        settings = replace(settings, cache_dir=os.fspath(cache_dir))
    text = os.fspath(location)
    trust = Trust.build(trusted_keys, seen_file)
    if text.startswith(("http://", "https://")):
        return MirrorCatalog(_HttpSource(text, settings), settings, trust)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise InvalidInput(f"a mirror tree is a folder or an http(s) URL, not {text!r}")
    return MirrorCatalog(_LocalSource(text), settings, trust)


class TreeFiles:
    """The files of a tree, raw, under the reader's rules (paths of plain names only, no
    link followed, requests only under the base URL, bounded sizes and time): what a
    mirror of a tree copies verbatim. Nothing here is parsed or trusted; verify it."""

    def __init__(self, source: _Source, settings: MirrorSettings) -> None:
        self._source = source
        self.settings = settings

    def __enter__(self) -> TreeFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        return self._source.where

    def read(self, path: str, limit: int | None = None) -> bytes:
        """A small file (an index) whole: NotFound when absent, TooLarge past ``limit``
        (default ``settings.max_index_bytes``), NetworkError past ``read_deadline``."""
        cap = self.settings.max_index_bytes if limit is None else limit
        deadline = time.monotonic() + self.settings.read_deadline
        return self._source.read(path, cap, deadline)

    def open(self, path: str) -> IO[bytes]:
        """A raw stream of a file (unverified: hash what you read)."""
        return self._source.open(path, 0, None)

    def close(self) -> None:
        self._source.close()


def open_tree_files(
    location: str | os.PathLike[str], *, settings: MirrorSettings | None = None
) -> TreeFiles:
    """Raw access to the files of the tree at ``location`` (a folder, ``file://`` or
    http(s) URL), read as :func:`open_mirror` reads them."""
    settings = settings if settings is not None else MirrorSettings()
    if not isinstance(settings, MirrorSettings):
        raise InvalidInput("settings must be a glarelite.MirrorSettings")
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return TreeFiles(_HttpSource(text, settings), settings)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise InvalidInput(f"a mirror tree is a folder or an http(s) URL, not {text!r}")
    return TreeFiles(_LocalSource(text), settings)
