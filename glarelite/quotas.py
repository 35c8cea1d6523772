"""Quotas: limits on how many artifacts and how many stored bytes a catalog, a type or
an owner may hold. Checked inside the write transaction that would exceed them, so
concurrent writers cannot both slip under a limit (uploads: see ``_blobops``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput, QuotaExceeded

SCOPES = ("global", "type", "owner")
MAX_LIMIT = 2**63 - 1  # SQLite stores integers in 64 bits


@dataclass(frozen=True)
class Quota:
    """``max_artifacts`` / ``max_bytes`` for ``scope`` (global, type, owner) and
    ``target`` (the type or owner name; ``""`` for global). None: no limit."""

    scope: str
    target: str = ""
    max_artifacts: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise InvalidInput(
                f"quota scope must be one of {', '.join(SCOPES)}, not {self.scope!r}"
            )
        if (self.scope == "global") != (self.target == ""):
            raise InvalidInput("a global quota has no target; a type or owner quota needs one")
        for name in ("max_artifacts", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidInput(f"{name} must be a non-negative integer or None")
            if value is not None and value > MAX_LIMIT:
                raise InvalidInput(f"{name} must be at most {MAX_LIMIT} (a 64-bit integer)")


def applicable(conn: Any, type_name: str, owner: str) -> list[Quota]:
    rows = conn.execute(
        "SELECT scope, target, max_artifacts, max_bytes FROM quotas WHERE "
        "scope = 'global' OR (scope = 'type' AND target = ?) OR (scope = 'owner' AND target = ?)",
        (type_name, owner),
    ).fetchall()
    return [Quota(*r) for r in rows]


def _where(quota: Quota) -> tuple[str, tuple[str, ...]]:
    if quota.scope == "type":
        return "a.type_name = ?", (quota.target,)
    if quota.scope == "owner":
        return "a.owner = ?", (quota.target,)
    return "1", ()


def artifact_count(conn: Any, quota: Quota) -> int:
    where, params = _where(quota)
    return int(
        conn.execute(
            f"SELECT COUNT(*) FROM artifacts a WHERE {where} AND a.status != 'deleted'", params
        ).fetchone()[0]
    )


def stored_bytes(conn: Any, quota: Quota) -> int:
    """Internal bytes held: active blobs' sizes plus what uploads in flight declared (a
    saving row still carries the size of the blob it replaces, counted conservatively)."""
    where, params = _where(quota)
    return int(
        conn.execute(
            "SELECT COALESCE(SUM(COALESCE(b.size, 0) + b.reserved), 0) FROM blobs b "
            f"JOIN artifacts a ON a.id = b.artifact_id WHERE b.external = 0 AND {where}",
            params,
        ).fetchone()[0]
    )


def check_create(conn: Any, type_name: str, owner: str) -> None:
    for quota in applicable(conn, type_name, owner):
        if quota.max_artifacts is not None and artifact_count(conn, quota) >= quota.max_artifacts:
            raise QuotaExceeded(
                f"{_label(quota)} allows at most {quota.max_artifacts} artifacts; it is full"
            )


def bytes_left(conn: Any, type_name: str, owner: str) -> tuple[int | None, Quota | None]:
    """The fewest bytes any applicable quota still allows, and that quota."""
    best: tuple[int | None, Quota | None] = (None, None)
    for quota in applicable(conn, type_name, owner):
        if quota.max_bytes is None:
            continue
        left = max(quota.max_bytes - stored_bytes(conn, quota), 0)
        if best[0] is None or left < best[0]:
            best = (left, quota)
    return best


def _label(quota: Quota) -> str:
    return (
        "the catalog's quota"
        if quota.scope == "global"
        else f"the quota of {quota.scope} {quota.target!r}"
    )


def exceeded(quota: Quota, left: int, wanted: int | None) -> QuotaExceeded:
    more = f"{wanted} bytes" if wanted is not None else "more bytes"
    return QuotaExceeded(
        f"{_label(quota)} allows {quota.max_bytes} stored bytes; {left} are left, {more} asked"
    )
