"""Reading a mirror tree at a disconnected site: a read-only catalog over the tree's
indexes, local or served over http(s).

``open_mirror`` reads the root index and one index per type (1 + types requests), checks
each type index against the sha256 the root index records (a tree read in the middle of
a publish is read again), and loads the show views into an in-memory SQLite database
with the catalog's own schema. Listing then runs the catalog's own query code
(``glarelite._query``), so filters, sort, ``latest`` and paging behave exactly as on the
catalog. Blob reads verify size and sha256 while streaming; a blob missing from the tree
or holding other bytes raises an error that names its path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, cast

from . import _listing, _semver, tree
from ._blobread import save_atomically
from ._db import Database
from ._trust import Trust
from ._values import prop_rows
from .errors import InvalidInput, NetworkError, NotFound, ReadOnly, VerificationError
from .models import Artifact, Blob, Page
from .progress import Progress
from .types import ArtifactType
from .urls import join_base

__all__ = ["MirrorCatalog", "open_mirror"]

_CHUNK = 1 << 20
_LOAD_ATTEMPTS = 5  # a publish in progress settles within a few rounds


# -- where the tree is ---------------------------------------------------------------------
class _Source:
    where: str

    def read(self, path: str) -> bytes:
        """A small file's bytes; NotFound when absent."""
        raise NotImplementedError

    def open(self, path: str, offset: int, length: int | None) -> IO[bytes]:
        """A raw stream of the file from ``offset``; NotFound when absent."""
        raise NotImplementedError

    def url(self, path: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        return None


class _LocalSource(_Source):
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()
        self.where = str(self.root)

    def _file(self, path: str) -> Path:
        return self.root.joinpath(*path.split("/"))

    def read(self, path: str) -> bytes:
        try:
            return self._file(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"mirror tree {self.where} has no {path}") from None

    def open(self, path: str, offset: int, length: int | None) -> IO[bytes]:
        try:
            f = open(self._file(path), "rb")  # noqa: SIM115 - the reader closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(
                f"mirror tree {self.where} has no {path}: the tree is incomplete "
                "(check it with glarelite mirror --check)"
            ) from None
        if offset:
            f.seek(offset)
        return f

    def url(self, path: str) -> str:
        return self._file(path).as_uri()


class _HttpBody:
    """A urllib3 response as a raw file: ``read`` and ``close`` (which frees the socket)."""

    def __init__(self, response: Any, skip: int) -> None:
        self._response = response
        # A server that ignored our Range sent the whole body: drop the leading bytes.
        while skip > 0:
            data = response.read(min(skip, _CHUNK))
            if not data:
                break
            skip -= len(data)

    def read(self, n: int = -1) -> bytes:
        return cast(bytes, self._response.read(n if n is not None and n >= 0 else None))

    def close(self) -> None:
        self._response.close()
        self._response.release_conn()


class _HttpSource(_Source):
    def __init__(
        self, base_url: str, *, ca_certs: str | None, timeout: float, retries: int
    ) -> None:
        import urllib3

        self.base = base_url.rstrip("/")
        self.where = self.base
        self._pool = urllib3.PoolManager(
            ca_certs=ca_certs,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=("GET", "HEAD"),
                raise_on_status=False,
            ),
            headers={"User-Agent": "glarelite-mirror-reader", "Accept-Encoding": "identity"},
        )

    def url(self, path: str) -> str:
        return join_base(self.base, path)

    def _get(self, path: str, headers: Mapping[str, str], preload: bool) -> Any:
        import urllib3

        try:
            resp = self._pool.request(
                "GET", self.url(path), headers=dict(headers), preload_content=preload
            )
        except urllib3.exceptions.HTTPError as exc:
            raise NetworkError(f"GET {self.url(path)}: {exc}") from exc
        if resp.status == 404:
            resp.release_conn()
            raise NotFound(
                f"mirror tree {self.where} has no {path}: the tree is incomplete "
                "(check it with glarelite mirror --check)"
            )
        if resp.status not in (200, 206):
            resp.release_conn()
            raise NetworkError(f"GET {self.url(path)}: HTTP {resp.status}")
        return resp

    def read(self, path: str) -> bytes:
        resp = self._get(path, {"Cache-Control": "no-cache"}, preload=True)
        return cast(bytes, resp.data)

    def open(self, path: str, offset: int, length: int | None) -> IO[bytes]:
        headers: dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            if length != 0:
                headers["Range"] = f"bytes={offset}-{end}"
        resp = self._get(path, headers, preload=False)
        skip = offset if resp.status == 200 else 0
        return cast(IO[bytes], _HttpBody(resp, skip))

    def close(self) -> None:
        self._pool.clear()


# -- the read-only catalog -----------------------------------------------------------------
class MirrorCatalog:
    """A read-only catalog over a mirror tree. Lists and gets artifacts like
    ``glarelite.Catalog`` (same filters, sort, ``latest`` and paging) and reads blobs
    verified; every write raises glarelite.ReadOnly."""

    def __init__(self, source: _Source, trust: Trust | None = None) -> None:
        self._source = source
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
        root, shows = self._read_indexes()
        db = Database(":memory:")
        types = {n: ArtifactType.from_json(e.definition) for n, e in root.types.items()}
        artifacts: dict[str, Artifact] = {}
        with db.write() as conn:
            for atype in types.values():
                conn.execute(
                    "INSERT INTO artifact_types (name, definition, created_at) VALUES (?, ?, ?)",
                    (atype.name, atype.dumps(), root.generated_at),
                )
            for type_name, items in shows.items():
                atype = types[type_name]
                for show in items:
                    artifact = Artifact.from_dict(show)
                    artifacts[artifact.id] = artifact
                    _insert(conn, artifact, atype)
        old, self._db = self._db, db
        self.root, self._types, self._artifacts = root, types, artifacts
        if old is not None:
            old.close()

    def _read_indexes(self) -> tuple[tree.RootIndex, dict[str, list[Mapping[str, Any]]]]:
        problem = ""
        for attempt in range(_LOAD_ATTEMPTS):
            try:
                raw = self._read_root()
            except NotFound:
                raise NotFound(
                    f"no mirror tree at {self._source.where}: {tree.ROOT_INDEX} is missing"
                ) from None
            root = tree.RootIndex.from_dict(_json(raw, tree.ROOT_INDEX))
            shows: dict[str, list[Mapping[str, Any]]] = {}
            for type_name, entry in root.types.items():
                path = tree.type_index_path(type_name)
                data = self._source.read(path)
                if (len(data), hashlib.sha256(data).hexdigest()) != (
                    entry.index_size,
                    entry.index_sha256,
                ):
                    problem = f"{path} is not the one {tree.ROOT_INDEX} publishes"
                    break
                shows[type_name] = tree.check_type_index(_json(data, path), type_name)
            else:
                return root, shows
            time.sleep(0.1 * (attempt + 1))  # a sync is publishing: let it finish
        raise VerificationError(
            f"mirror tree {self._source.where}: {problem} (read {_LOAD_ATTEMPTS} times); a sync "
            "may still be publishing, or the tree is damaged (check it)"
        )

    def _read_root(self) -> bytes:
        """The root index bytes: from index.signed.json, verified, when keys are trusted."""
        if self._trust is None:
            return self._source.read(tree.ROOT_INDEX)
        return self._trust.load_root(lambda p: self._source.open(p, 0, None), self.location)

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
        raise InvalidInput(f"{path} in the mirror tree is not valid JSON: {exc}") from None


def _insert(conn: Any, artifact: Artifact, atype: ArtifactType) -> None:
    """The catalog's rows for one artifact (no blob rows: listing never filters on them)."""
    _, version_key = _semver.canonical(artifact.version)
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
    known = {k: v for k, v in artifact.properties.items() if k in atype.properties}
    rows = prop_rows(artifact.id, atype, known)
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
    timeout: float = 30.0,
    retries: int = 3,
    trusted_keys: Iterable[Any] | None = None,
    seen_file: str | os.PathLike[str] | None = None,
) -> MirrorCatalog:
    """A read-only catalog over the mirror tree at ``location``: a folder, a ``file://``
    URL or an http(s) URL where a static web server serves the tree.

    With ``trusted_keys`` (public keys, ``.pub`` files or base64 text; see
    ``glarelite.signing``) only a tree whose ``index.signed.json`` is signed by one of
    them is read, and its root is taken from that file; ``seen_file`` records the
    highest generation seen per tree so that an older one is refused (SignatureError)."""
    text = os.fspath(location)
    trust = Trust.build(trusted_keys, seen_file)
    if text.startswith(("http://", "https://")):
        return MirrorCatalog(
            _HttpSource(text, ca_certs=ca_certs, timeout=timeout, retries=retries), trust
        )
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise InvalidInput(f"a mirror tree is a folder or an http(s) URL, not {text!r}")
    return MirrorCatalog(_LocalSource(text), trust)
