"""Link properties: references between artifacts of one catalog, validated against the
catalog itself (never by fetching a URL). A link is a ``link`` property, or an element of
a list or dict property whose items are links (Glare's List/Dict of Dependency); each
element is checked as a single link is."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _semver
from .errors import Conflict, IllegalTransition, InvalidInput, NotFound
from .urls import internal_url

if TYPE_CHECKING:
    from ._core import Core
    from .policy import Scope
    from .types import ArtifactType

_URL = re.compile(r"/artifacts/([a-z][a-z0-9_]*)/([0-9a-f-]{36})\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def link_names(atype: ArtifactType) -> list[str]:
    """Properties that hold links: single links, and lists and dicts of links."""
    return [
        n
        for n, p in atype.properties.items()
        if p.kind == "link" or (p.kind in ("list", "dict") and p.items == "link")
    ]


def iter_links(atype: ArtifactType, props: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(what, reference) of every link held by ``props``, lists and dicts element-wise."""
    for name in link_names(atype):
        value = props.get(name)
        if isinstance(value, str):
            yield f"link {name!r}", value
        elif isinstance(value, list):
            for i, ref in enumerate(value):
                yield f"link {name}[{i}]", ref
        elif isinstance(value, dict):
            for key, ref in value.items():
                yield f"link {name}[{key!r}]", ref


def resolve(
    core: Core,
    scope: Scope,
    conn: sqlite3.Connection,
    atype: ArtifactType,
    props: dict[str, Any],
) -> None:
    """Replace each link reference in ``props`` by the target's internal URL (only
    artifacts ``scope`` may see can be linked to)."""
    for name in link_names(atype):
        value = props.get(name)
        if isinstance(value, str):
            props[name] = _resolve_one(core, scope, conn, f"link {name!r}", value)
        elif isinstance(value, list):
            props[name] = [
                _resolve_one(core, scope, conn, f"link {name}[{i}]", ref)
                for i, ref in enumerate(value)
            ]
            if atype.properties[name].unique and len(set(props[name])) != len(props[name]):
                raise InvalidInput(f"property {name!r}: links must be unique (rule unique)")
        elif isinstance(value, dict):
            props[name] = {
                k: _resolve_one(core, scope, conn, f"link {name}[{k!r}]", ref)
                for k, ref in value.items()
            }


def _resolve_one(core: Core, scope: Scope, conn: sqlite3.Connection, what: str, ref: str) -> str:
    m = _URL.match(ref)
    artifact_id = m.group(2) if m else ref if _UUID.match(ref) else None
    if artifact_id is not None:
        try:
            row = core.visible_row(conn, scope, artifact_id)
        except NotFound:
            raise InvalidInput(f"{what}: no artifact {artifact_id} to link to") from None
        return internal_url(row.type_name, row.id)
    type_name, slash, rest = ref.partition("/")
    artifact_name, at, version = rest.rpartition("@")
    if not slash or not at or not artifact_name:
        raise InvalidInput(
            f"{what}: {ref!r} is neither an artifact id, an internal URL nor "
            "'type/name@version' ('@latest' for the highest version)"
        )
    visible = (
        ""
        if scope.admin
        else "AND (owner = ? OR visibility = 'public') AND status != 'deactivated'"
    )
    params: list[Any] = [type_name, artifact_name]
    if version == "latest":
        clause = ""
    else:
        clause = "AND version = ?"
        params.append(_semver.canonical(version)[0])
    if not scope.admin:
        params.append(scope.owner)
    rows = conn.execute(
        f"SELECT id FROM artifacts WHERE type_name = ? AND name = ? {clause} "
        f"AND status != 'deleted' {visible} ORDER BY version_key DESC, version DESC",
        params,
    )
    for (found,) in rows:  # the highest version the get rule (maybe replaced) lets it read
        try:
            core.visible_row(conn, scope, found)
        except NotFound:
            continue
        return internal_url(type_name, found)
    raise InvalidInput(f"{what}: no artifact {ref!r} to link to")


def check_targets(conn: sqlite3.Connection, atype: ArtifactType, props: dict[str, Any]) -> None:
    """An active artifact may only link to active (or deactivated) artifacts."""
    for what, url in iter_links(atype, props):
        m = _URL.match(url)
        row = (
            conn.execute("SELECT status FROM artifacts WHERE id = ?", (m.group(2),)).fetchone()
            if m
            else None
        )
        if row is None or row[0] in ("drafted", "deleted"):
            state = "gone" if row is None else row[0]
            raise IllegalTransition(
                f"{what} points at {url}, which is {state}; an active artifact may "
                "only link to active artifacts"
            )


def refuse_if_linked(conn: sqlite3.Connection, type_name: str, artifact_id: str) -> None:
    """Deleting an artifact that active artifacts link to is a Conflict."""
    row = conn.execute(
        "SELECT a.id, p.name FROM artifact_props p JOIN artifacts a ON a.id = p.artifact_id "
        "WHERE p.value = ? AND a.status = 'active' LIMIT 1",
        (internal_url(type_name, artifact_id),),
    ).fetchone()
    if row is not None:
        raise Conflict(
            f"artifact {artifact_id} is linked to by active artifact {row[0]} (link "
            f"{row[1]!r}); delete with force to leave that link dangling"
        )


def linked_ids(atype: ArtifactType, props: dict[str, Any]) -> list[str]:
    """The ids of the artifacts ``props`` links to, lists and dicts included."""
    out = []
    for _, url in iter_links(atype, props):
        m = _URL.match(url or "")
        if m:
            out.append(m.group(2))
    return out
