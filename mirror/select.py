"""Which artifacts a tree holds: active ones, public unless named in ``include_private``,
narrowed by types, tags (all of them) and names. Expressed as catalog list filters so
the catalog's own query does the work."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from glarelite import Artifact, ArtifactType, InvalidInput, NotFound, ReadableCatalog

_LIST_PAGE = 1000


def _quote(name: str) -> str:
    # The 'in' operator splits on commas; a name holding one (or a quote) goes in quotes.
    if "," in name or '"' in name:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def _texts(values: Iterable[str] | None, what: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out = tuple(sorted(set(values)))
    for v in out:
        if not isinstance(v, str) or not v:
            raise InvalidInput(f"{what} must be non-empty strings, not {v!r}")
    return out


@dataclass(frozen=True)
class Selection:
    types: tuple[str, ...]  # resolved: every selected type, sorted
    tags: tuple[str, ...]
    names: tuple[str, ...] | None
    include_private: tuple[str, ...]
    definitions: dict[str, ArtifactType]

    @classmethod
    def build(
        cls,
        catalog: ReadableCatalog,
        *,
        types: Iterable[str] | None,
        tags: Iterable[str] | None,
        names: Iterable[str] | None,
        include_private: Iterable[str] | None,
    ) -> Selection:
        wanted = _texts(types, "types")
        if wanted is None:
            defs = {t.name: t for t in catalog.types()}
        else:
            defs = {}
            for name in wanted:
                try:
                    defs[name] = catalog.get_type(name)
                except NotFound:
                    raise NotFound(f"no artifact type {name!r} in the catalog") from None
        return cls(
            types=tuple(sorted(defs)),
            tags=_texts(tags, "tags") or (),
            names=_texts(names, "names"),
            include_private=_texts(include_private, "include_private") or (),
            definitions=defs,
        )

    @property
    def signature(self) -> str:
        """Changes whenever the options would select differently (the fast path's key)."""
        data = [self.types, self.tags, self.names, self.include_private]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:32]

    def queries(self) -> list[list[str]]:
        """Catalog filters, one list per query; their results are disjoint."""
        common = ["status=active"]
        if self.tags:
            common.append("tags=" + ",".join(self.tags))
        public = [*common, "visibility=public"]
        if self.names is not None:
            public.append("name=in:" + ",".join(_quote(n) for n in self.names))
        out = [public]
        private = self.include_private
        if self.names is not None:
            private = tuple(n for n in private if n in self.names)
        if private:
            out.append(
                [*common, "visibility=private", "name=in:" + ",".join(_quote(n) for n in private)]
            )
        return out

    def iter_type(self, catalog: ReadableCatalog, type_name: str) -> Iterator[Artifact]:
        for filters in self.queries():
            yield from catalog.iter_all(type_name, filters=filters, limit=_LIST_PAGE)

    def count(self, catalog: ReadableCatalog, type_name: str) -> int:
        return sum(catalog.list(type_name, filters=f, limit=0).total for f in self.queries())

    def changed_since(
        self, catalog: ReadableCatalog, type_name: str, watermark: str
    ) -> Iterator[Artifact]:
        """Selected artifacts updated after ``watermark`` less a margin: the margin covers
        writers whose clocks ran a little behind the one that set the watermark."""
        since = _minus(watermark, MARGIN)
        for filters in self.queries():
            yield from catalog.iter_all(
                type_name, filters=[*filters, f"updated_at=gt:{since}"], limit=_LIST_PAGE
            )


MARGIN = timedelta(seconds=2)
_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def _minus(stamp: str, delta: timedelta) -> str:
    moment = datetime.strptime(stamp, _STAMP).replace(tzinfo=timezone.utc) - delta
    return moment.strftime(_STAMP)


def fingerprint(artifact: Artifact) -> str:
    """Changes whenever the artifact's show view does: updated_at moves with every change
    of the artifact row; check() updates blob fields without touching it."""
    parts = [artifact.updated_at, artifact.status, artifact.visibility]
    for b in artifact.iter_blobs():
        parts.append(f"{b.slot}:{b.sha256}:{b.size}:{b.upstream}:{b.verified_at}")
    return "|".join(parts)


def blob_slots(artifact: Artifact) -> Sequence[tuple[str, str, str, int | None, bool]]:
    """(field, key, sha256, size, external) of each blob of the artifact."""
    return [(b.field, b.key, b.sha256 or "", b.size, b.external) for b in artifact.iter_blobs()]
