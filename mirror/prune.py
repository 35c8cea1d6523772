"""Removing what the tree no longer publishes — only files the tree itself wrote (its
state names them), only after a fully clean run, indexes before blobs, never the whole
tree unless forced, at most ``max_delete`` files."""

from __future__ import annotations

from dataclasses import dataclass

from .dest import Dest
from .state import State


@dataclass(frozen=True)
class Decision:
    candidates: list[str]  # index files first, then blobs
    refused: str = ""


def judge(
    candidates: list[str], *, published_artifacts: int, force: bool, max_delete: int | None
) -> Decision:
    """Whether ``candidates`` (files the tree wrote that no index names any more, index
    files first) may be removed."""
    if not candidates:
        return Decision([])
    if published_artifacts == 0 and not force:
        return Decision(
            candidates,
            refused=(
                f"refused: pruning would remove every artifact from the tree "
                f"({len(candidates)} files); pass force=True if that is intended"
            ),
        )
    if max_delete is not None and len(candidates) > max_delete:
        return Decision(
            candidates,
            refused=(
                f"refused: {len(candidates)} files to delete, more than max_delete={max_delete}"
            ),
        )
    return Decision(candidates)


def apply(dest: Dest, state: State, candidates: list[str]) -> list[str]:
    """Delete ``candidates`` in order; returns those actually removed."""
    deleted = []
    for path in candidates:
        if dest.delete(path):
            deleted.append(path)
        state.indexes.discard(path)
        state.blobs.pop(path, None)
    dest.remove_empty_dirs(candidates)
    dest.sync_dirs()
    return deleted
