"""Link properties: references between artifacts of one catalog, validated against the
catalog itself (never by fetching a URL)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
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
    return [n for n, p in atype.properties.items() if p.kind == "link"]


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
        ref = props.get(name)
        if ref is not None:
            props[name] = _resolve_one(core, scope, conn, name, ref)


def _resolve_one(core: Core, scope: Scope, conn: sqlite3.Connection, name: str, ref: str) -> str:
    what = f"link {name!r}"
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
    row = conn.execute(
        f"SELECT id FROM artifacts WHERE type_name = ? AND name = ? {clause} "
        f"AND status != 'deleted' {visible} ORDER BY version_key DESC, version DESC LIMIT 1",
        params,
    ).fetchone()
    if row is None:
        raise InvalidInput(f"{what}: no artifact {ref!r} to link to")
    return internal_url(type_name, row[0])


def check_targets(conn: sqlite3.Connection, atype: ArtifactType, props: dict[str, Any]) -> None:
    """An active artifact may only link to active (or deactivated) artifacts."""
    for name in link_names(atype):
        url = props.get(name)
        if url is None:
            continue
        m = _URL.match(url)
        row = (
            conn.execute("SELECT status FROM artifacts WHERE id = ?", (m.group(2),)).fetchone()
            if m
            else None
        )
        if row is None or row[0] in ("drafted", "deleted"):
            state = "gone" if row is None else row[0]
            raise IllegalTransition(
                f"link {name!r} points at {url}, which is {state}; an active artifact may "
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


def linked_ids(props: dict[str, Any], names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        m = _URL.match(props.get(name) or "")
        if m:
            out.append(m.group(2))
    return out
