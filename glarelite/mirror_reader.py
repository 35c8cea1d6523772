"""Reading a mirror tree at a disconnected site: a read-only catalog over the tree's
indexes, local or served over http(s).

``open_mirror`` reads the root index and one index per type (1 + types requests), checks
each type index against the sha256 the root index records (a tree read in the middle of
a publish is read again), and loads the show views into an in-memory SQLite database
with the catalog's own schema. Listing then runs the catalog's own query code
(``glarelite._query``), so filters, sort, ``latest`` and paging behave exactly as on the
catalog. Blob reads verify size and sha256 while streaming; a blob missing from the tree
or holding other bytes raises an error that names its path.

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
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, BinaryIO, NoReturn, cast

from . import _listing, _treeread, tree
from ._blobread import save_atomically
from ._db import Database
from ._treesource import (
    MirrorSettings,
    _HttpSource,
    _LocalSource,
    _Source,
    _too_large,
)
from ._trust import Trust
from ._values import prop_rows
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
        self._db: Database | None = None
        self._artifacts: dict[str, Artifact] = {}
        self._types: dict[str, ArtifactType] = {}
        self.root = tree.RootIndex(generation=0, generated_at="")
        self.refresh()

    # -- lifetime ---------------------------------------------------------------------
    def __enter__(self) -> MirrorCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
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
        """Read the tree's indexes again (after the site received a newer tree)."""
        root, types, loaded = self._read_indexes()
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
                    _insert(conn, item, types[artifact.type_name])
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
        old, self._db = self._db, db
        self.root, self._types, self._artifacts = root, types, artifacts
        if old is not None:
            old.close()

    def _read_indexes(
        self,
    ) -> tuple[tree.RootIndex, dict[str, ArtifactType], list[_treeread.Loaded]]:
        """Every index of the tree, validated; InvalidInput names the file at fault."""
        where = self._source.where
        try:
            return self._read_indexes_once()
        except InvalidInput as exc:
            if str(exc).startswith("mirror tree "):
                raise
            raise type(exc)(f"mirror tree {where}: {exc}") from None

    def _read_indexes_once(
        self,
    ) -> tuple[tree.RootIndex, dict[str, ArtifactType], list[_treeread.Loaded]]:
        settings = self._settings
        deadline = time.monotonic() + settings.read_deadline
        problem = ""
        for attempt in range(_LOAD_ATTEMPTS):
            try:
                raw = self._read_root(deadline)
            except NotFound:
                raise NotFound(
                    f"no mirror tree at {self._source.where}: {tree.ROOT_INDEX} is missing"
                ) from None
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
        artifact = self._artifacts.get(artifact_id) if isinstance(artifact_id, str) else None
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
        return _listing.page(
            self._conn(),
            lambda _conn, rows: [self._artifacts[r[0]] for r in rows],
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


def _insert(conn: Any, item: _treeread.Loaded, atype: ArtifactType) -> None:
    """The catalog's rows for one artifact (no blob rows: listing never filters on them)."""
    artifact, version_key = item.artifact, item.version_key
    conn.execute(
        "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility,"
        " status, description, tags, properties, created_at, updated_at, activated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            artifact.id,
            artifact.type_name,
            artifact.name,
            artifact.version,
            version_key,
            artifact.owner,
            artifact.visibility,
            artifact.status,
            artifact.description,
            json.dumps(sorted(artifact.tags)),
            json.dumps(dict(artifact.properties), sort_keys=True),
            artifact.created_at,
            artifact.updated_at,
            artifact.activated_at,
        ),
    )
    if artifact.tags:
        conn.executemany(
            "INSERT INTO artifact_tags (artifact_id, tag) VALUES (?, ?)",
            [(artifact.id, t) for t in sorted(set(artifact.tags))],
        )
    rows = prop_rows(artifact.id, atype, item.props)
    if rows:
        conn.executemany(
            "INSERT INTO artifact_props (artifact_id, name, key, position, value)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )


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
) -> MirrorCatalog:
    """A read-only catalog over the mirror tree at ``location``: a folder, a ``file://``
    URL or an http(s) URL where a static web server serves the tree.

    ``settings`` bounds everything (see :class:`MirrorSettings`); ``ca_certs``,
    ``timeout`` and ``retries`` (retries of a request), when given, replace its values.

    With ``trusted_keys`` (public keys, ``.pub`` files or base64 text; see
    ``glarelite.signing``) only a tree whose ``index.signed.json`` is signed by one of
    them is read, and its root is taken from that file; ``seen_file`` records the
    highest generation seen per tree so that an older one is refused (SignatureError)."""
    settings = settings if settings is not None else MirrorSettings()
    if not isinstance(settings, MirrorSettings):
        raise InvalidInput("settings must be a glarelite.MirrorSettings")
    if ca_certs is not None:
        settings = replace(settings, ca_certs=ca_certs)
    if timeout is not None:
        settings = replace(settings, timeout=timeout)
    if retries is not None:
        settings = replace(settings, retry=replace(settings.retry, total=retries))
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
