"""Listing shared by the catalog and the mirror reader: one page through the query
builder, a lazily counted total, and iteration over every page."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import _query
from ._db import Database
from .models import Artifact, Page
from .types import ArtifactType

Materialize = Callable[[Any, Sequence[Any]], list[Artifact]]


def page(
    database: Database,
    materialize: Materialize,
    *,
    type_name: str | None,
    atype: ArtifactType | None,
    owner: str | None,
    filters: Any,
    sort: str | Sequence[str] | None,
    limit: int | None,
    marker: str | None,
    latest: bool,
) -> Page:
    """A page of artifacts; ``materialize(conn, rows)`` builds them inside the snapshot."""
    parsed, latest = _query.split_latest(_query.parse_filters(filters, atype), latest)
    with database.read() as conn:
        rows, next_marker = _query.select_page(
            conn,
            type_name=type_name,
            atype=atype,
            owner=owner,
            filters=parsed,
            sort=sort,
            limit=limit,
            marker=marker,
            latest=latest,
        )
        items = materialize(conn, rows)

    def count() -> int:  # on demand: counting a large catalog costs more than a page
        with database.read() as conn:
            return _query.count(
                conn, type_name=type_name, atype=atype, owner=owner, filters=parsed, latest=latest
            )

    return Page(items=items, next_marker=next_marker, _count=count)


def iter_all(
    list_page: Callable[..., Page], type_name: str | None, **kwargs: Any
) -> Iterator[Artifact]:
    """Every matching artifact, page by page (``list`` keywords apply)."""
    marker = kwargs.pop("marker", None)
    kwargs.setdefault("limit", 1000)
    while True:
        found = list_page(type_name, marker=marker, **kwargs)
        yield from found.items
        if found.next_marker is None:
            return
        marker = found.next_marker


def narrowed_page(
    one_page: Callable[[int | None, str | None], Page],
    check_marker: Callable[[str], None],
    limit: Any,
    marker: str | None,
) -> Page:
    """A page under a replaced ``get`` rule narrower than the query's scope: the query's
    pages are filtered by the rule, so they are read on until ``limit`` readable items
    are found, and the page's marker and total speak of readable artifacts only (the
    query's own next marker may name a hidden one)."""
    want = _query._check_limit(limit)
    if marker is not None:
        check_marker(marker)
    items: list[Artifact] = []
    more = want > 0
    cursor = marker
    while more and len(items) < want:
        found = one_page(want - len(items), cursor)
        items += found.items
        cursor = found.next_marker
        more = cursor is not None
    next_marker = items[-1].id if more else None  # more: the page is full

    def count() -> int:
        total, cursor = 0, None
        while True:
            found = one_page(_query.MAX_LIMIT, cursor)
            total += len(found.items)
            cursor = found.next_marker
            if cursor is None:
                return total

    return Page(items=items, next_marker=next_marker, _count=count)
