"""``ReadableCatalog``: the read API that ``Catalog`` and ``MirrorCatalog`` share, so code
that works with either (the mirror's source, an embedding application's download view)
can be typed once. Structural: neither class inherits from it; mypy proves both fit
(the ``TYPE_CHECKING`` block below) and tests/test_readable.py compares signatures."""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, runtime_checkable

from .models import Artifact, Blob, Page
from .progress import Progress
from .types import ArtifactType

_Self = TypeVar("_Self", bound="ReadableCatalog")


@runtime_checkable
class ReadableCatalog(Protocol):
    """What a catalog or a mirror tree answers when read: types, artifacts, listings
    and verified blob streams. Writes are not part of it (a mirror refuses them)."""

    @property
    def path(self) -> str:
        """Where the catalog is: its SQLite file, or the tree's location."""

    def __enter__(self: _Self) -> _Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def types(self) -> builtins.list[ArtifactType]: ...

    def get_type(self, name: str) -> ArtifactType: ...

    def get(self, artifact_id: str) -> Artifact: ...

    def list(
        self,
        type_name: str | None = None,
        *,
        filters: Sequence[str | tuple[str, str]] | Mapping[str, Any] = (),
        sort: str | Sequence[str] | None = None,
        limit: int | None = None,
        marker: str | None = None,
        latest: bool = False,
    ) -> Page: ...

    def iter_all(self, type_name: str | None = None, **kwargs: Any) -> Iterator[Artifact]: ...

    def open_blob(
        self, artifact_id: str, slot: str, *, offset: int | None = None, length: int | None = None
    ) -> BinaryIO: ...

    def open_blobs(
        self, slots: Iterable[tuple[str, str]]
    ) -> Generator[tuple[str, str, Callable[[], BinaryIO]], None, None]: ...

    def download(
        self,
        artifact_id: str,
        slot: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Blob: ...

    def blob_url(self, artifact_id: str, slot: str) -> str: ...


if TYPE_CHECKING:  # mypy (strict, in the quality gate) proves both readers fit
    from .catalog import Catalog
    from .mirror_reader import MirrorCatalog

    def _both_fit(catalog: Catalog, tree: MirrorCatalog) -> tuple[ReadableCatalog, ...]:
        return (catalog, tree)
