"""Quotas as Glare counts them: per owner, and per owner and type, ``-1`` meaning
unlimited; plus a catalog-wide cap. Checked inside the write transaction that would
exceed them, so concurrent writers cannot both slip under a limit (uploads: see
``_slots``).

- ``Quota("owner", "alice", ...)``: what alice holds in all.
- ``Quota("type", "images", ...)``: what *each* owner holds of type images (Glare's
  per-project ``max_artifacts:images``), unless that owner has its own:
- ``Quota("type", "images", ..., owner="alice")``: what alice holds of images.
- ``Quota("global", "", ...)``: the whole catalog, all owners together (glarelite's
  extra; Glare had none).

A limit of ``None`` is unset (an owner's own quota then falls back to the type's for
that limit); ``-1`` is unlimited (and so exempts an owner from the type's).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput, QuotaExceeded

SCOPES = ("global", "type", "owner")
MAX_LIMIT = 2**63 - 1  # SQLite stores integers in 64 bits
UNLIMITED = -1


@dataclass(frozen=True)
class Quota:
    """``max_artifacts`` / ``max_bytes`` for ``scope`` (global, type, owner) and
    ``target`` (the type or owner name; ``""`` for global); ``owner`` narrows a type
    quota to one owner. None: not set; -1: unlimited."""

    scope: str
    target: str = ""
    max_artifacts: int | None = None
    max_bytes: int | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise InvalidInput(
                f"quota scope must be one of {', '.join(SCOPES)}, not {self.scope!r}"
            )
        if not isinstance(self.target, str):
            raise InvalidInput(f"quota target must be a string, not {self.target!r}")
        if (self.scope == "global") != (self.target == ""):
            raise InvalidInput("a global quota has no target; a type or owner quota needs one")
        if self.owner is not None and (
            self.scope != "type" or not isinstance(self.owner, str) or not self.owner
        ):
            raise InvalidInput("only a type quota takes an owner (a non-empty string)")
        if self.scope == "type" and "/" in self.target:
            raise InvalidInput(f"a type name has no '/': {self.target!r}")
        for name in ("max_artifacts", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < UNLIMITED
            ):
                raise InvalidInput(f"{name} must be a non-negative integer, -1 or None")
            if value is not None and value > MAX_LIMIT:
                raise InvalidInput(f"{name} must be at most {MAX_LIMIT} (a 64-bit integer)")

    # A type quota of one owner is stored as target "type/owner": type names never hold
    # a '/', so the first one splits it whatever the owner's name.
    @property
    def key(self) -> str:
        return self.target if self.owner is None else f"{self.target}/{self.owner}"

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Quota:
        scope, key, max_artifacts, max_bytes = row[:4]
        target, slash, owner = key.partition("/") if scope == "type" else (key, "", "")
        return cls(scope, target, max_artifacts, max_bytes, owner if slash else None)


@dataclass(frozen=True)
class Limit:
    """One limit in force for an (owner, type): what it counts and its bounds."""

    label: str
    where: str
    params: tuple[str, ...]
    max_artifacts: int | None
    max_bytes: int | None


def _row(conn: sqlite3.Connection, scope: str, key: str) -> Quota | None:
    row = conn.execute(
        "SELECT scope, target, max_artifacts, max_bytes FROM quotas WHERE scope = ? AND target = ?",
        (scope, key),
    ).fetchone()
    return None if row is None else Quota.from_row(row)


def _bound(value: int | None) -> int | None:
    return None if value is None or value == UNLIMITED else value


def _merged(own: Quota | None, default: Quota | None, name: str) -> int | None:
    """An owner's own limit where set, else the default's."""
    value = getattr(own, name) if own is not None else None
    if value is None and default is not None:
        value = getattr(default, name)
    return _bound(value)


def applicable(conn: sqlite3.Connection, type_name: str, owner: str) -> list[Limit]:
    """The limits an artifact of ``type_name`` owned by ``owner`` counts against."""
    limits = []
    glob = _row(conn, "global", "")
    if glob is not None:
        limits.append(
            Limit(
                "the catalog's quota", "1", (), _bound(glob.max_artifacts), _bound(glob.max_bytes)
            )
        )
    mine = _row(conn, "owner", owner)
    if mine is not None:
        limits.append(
            Limit(
                f"the quota of owner {owner!r}",
                "a.owner = ?",
                (owner,),
                _bound(mine.max_artifacts),
                _bound(mine.max_bytes),
            )
        )
    own = _row(conn, "type", f"{type_name}/{owner}")
    default = _row(conn, "type", type_name)
    if own is not None or default is not None:
        limits.append(
            Limit(
                f"the quota of type {type_name!r} for owner {owner!r}",
                "a.owner = ? AND a.type_name = ?",
                (owner, type_name),
                _merged(own, default, "max_artifacts"),
                _merged(own, default, "max_bytes"),
            )
        )
    return limits


def _count(conn: sqlite3.Connection, where: str, params: tuple[str, ...]) -> int:
    return int(
        conn.execute(
            f"SELECT COUNT(*) FROM artifacts a WHERE {where} AND a.status != 'deleted'", params
        ).fetchone()[0]
    )


def _bytes(conn: sqlite3.Connection, where: str, params: tuple[str, ...]) -> int:
    """Internal bytes held: active blobs' sizes plus what uploads in flight declared (a
    saving row still carries the size of the blob it replaces, counted conservatively)."""
    return int(
        conn.execute(
            "SELECT COALESCE(SUM(COALESCE(b.size, 0) + b.reserved), 0) FROM blobs b "
            f"JOIN artifacts a ON a.id = b.artifact_id WHERE b.external = 0 AND {where}",
            params,
        ).fetchone()[0]
    )


def usage(conn: sqlite3.Connection, quota: Quota) -> tuple[int, int]:
    """(artifacts, stored bytes) as ``quota`` counts them. A type quota without an owner
    applies to each owner: its usage is the fullest owner's."""
    if quota.scope == "global":
        return _count(conn, "1", ()), _bytes(conn, "1", ())
    if quota.scope == "owner":
        return _count(conn, "a.owner = ?", (quota.target,)), _bytes(
            conn, "a.owner = ?", (quota.target,)
        )
    if quota.owner is not None:
        where, params = "a.owner = ? AND a.type_name = ?", (quota.owner, quota.target)
        return _count(conn, where, params), _bytes(conn, where, params)
    owners = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT owner FROM artifacts WHERE type_name = ? AND status != 'deleted'",
            (quota.target,),
        )
    ]
    best = (0, 0)
    for owner in owners:
        where, params = "a.owner = ? AND a.type_name = ?", (owner, quota.target)
        best = max(best, (_count(conn, where, params), _bytes(conn, where, params)))
    return best


def check_create(conn: sqlite3.Connection, type_name: str, owner: str) -> None:
    for limit in applicable(conn, type_name, owner):
        if limit.max_artifacts is not None and (
            _count(conn, limit.where, limit.params) >= limit.max_artifacts
        ):
            raise QuotaExceeded(
                f"{limit.label} allows at most {limit.max_artifacts} artifacts; it is full"
            )


def bytes_left(
    conn: sqlite3.Connection, type_name: str, owner: str
) -> tuple[int | None, Limit | None]:
    """The fewest bytes any applicable limit still allows, and that limit."""
    best: tuple[int | None, Limit | None] = (None, None)
    for limit in applicable(conn, type_name, owner):
        if limit.max_bytes is None:
            continue
        left = max(limit.max_bytes - _bytes(conn, limit.where, limit.params), 0)
        if best[0] is None or left < best[0]:
            best = (left, limit)
    return best


def exceeded(limit: Limit, left: int, wanted: int | None) -> QuotaExceeded:
    more = f"{wanted} bytes" if wanted is not None else "more bytes"
    return QuotaExceeded(
        f"{limit.label} allows {limit.max_bytes} stored bytes; {left} are left, {more} asked"
    )
