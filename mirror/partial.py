"""Partial downloads kept across runs (MIRROR-NOTES 7).

A large blob copied into a local tree is written into a temporary by up to
``max_segments`` ranged streams. As they progress, the hashing thread records in
``.glarelite-mirror/partial/<sha256>.json`` which bytes of that temporary hold data: the
temporary's path, the blob's size and sha256, and per segment ``[start, end, filled]``.
A run that is killed, or that gives up on the blob (network down), leaves both behind;
the next attempt at the same bytes adopts the temporary and continues each segment from
its mark with a Range request.

Nothing recorded is trusted: the whole file is hashed again as it completes, and a
mismatch drops the partial and fetches the blob from byte 0. A record claims only
bytes already written when it was saved, so a killed process cannot overstate it (the
page cache survives the process; after a power loss the final hash decides).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from glarelite import InvalidInput, tree

from .dest import Dest, temporary_is_abandoned

PARTIAL_DIR = f"{tree.STATE_DIR}/partial"


@dataclass
class Partial:
    temp: str  # the temporary holding the bytes, relative to the tree root
    size: int
    sha256: str
    segments: list[list[int]]  # [start, end, filled] each

    @property
    def filled(self) -> int:
        return sum(f for _, _, f in self.segments)

    def to_json(self) -> bytes:
        data = {"temp": self.temp, "size": self.size, "sha256": self.sha256}
        return json.dumps({**data, "segments": self.segments}).encode()


def path_of(sha256: str) -> str:
    if not _is_sha256(sha256):  # the name of a file in the tree: never anything else
        raise InvalidInput(f"not a sha256: {sha256!r}")
    return f"{PARTIAL_DIR}/{sha256}.json"


def _read(dest: Dest, sha256: str) -> Any:
    try:
        raw = dest.read_bytes(path_of(sha256))
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError, RecursionError):
        return None


def _temp_of(data: Any) -> str | None:
    """The record's temporary, if it names a temporary of a blob at all: the temporary
    of a path under ``artifacts/`` (never of a state file, never outside the tree)."""
    temp = data.get("temp") if isinstance(data, dict) else None
    if not isinstance(temp, str) or not tree.is_temporary_name(temp.rpartition("/")[2]):
        return None
    parts = temp.split("/")
    if parts[0] != tree.ARTIFACTS or any(p in ("", ".", "..") or "\0" in p for p in parts):
        return None
    return temp


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def load(dest: Dest, sha256: str, size: int) -> Partial | None:
    """The partial download of these bytes, when its record and temporary still agree."""
    if not dest.local:
        return None
    data = _read(dest, sha256)
    if data is None:
        return None
    temp = _temp_of(data)
    partial: Partial | None
    try:
        partial = Partial(
            temp=str(temp),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            segments=[[int(a), int(b), int(c)] for a, b, c in data["segments"]],
        )
    except (ValueError, TypeError, KeyError):
        partial = None
    found = dest.stat(temp) if temp is not None else None
    if (
        partial is None
        or partial.sha256 != sha256
        or partial.size != size
        or not _consistent(partial)
        or found is None
        or found[0] != size
    ):
        drop(dest, sha256, with_temp=True)  # only ever deletes a temporary of the tree's
        return None
    return partial


def _consistent(p: Partial) -> bool:
    position = 0
    for start, end, filled in p.segments:
        if start != position or end <= start or not 0 <= filled <= end - start:
            return False
        position = end
    return position == p.size and bool(p.segments)


def save(dest: Dest, partial: Partial) -> None:
    dest.write_file(path_of(partial.sha256), [partial.to_json()])


def drop(dest: Dest, sha256: str, *, with_temp: bool = False) -> None:
    """Forget a partial download (and delete its temporary with ``with_temp``)."""
    if with_temp:
        temp = _temp_of(_read(dest, sha256))
        if temp is not None:
            dest.delete(temp)
    dest.delete(path_of(sha256))


def recorded(dest: Dest) -> dict[str, str]:
    """sha256 -> temporary of every partial download recorded in the tree ("" when the
    record names none). Temporaries of record saves that a killed run never finished
    are removed on the way."""
    if not dest.local:
        return {}
    listdir = getattr(dest, "listdir", None)
    if listdir is None:
        return {}
    try:
        names = listdir(PARTIAL_DIR)  # reached without following a link
    except OSError:
        return {}
    out = {}
    for name in names:
        owner = tree.is_temporary_name(name)
        if owner is not None:
            if temporary_is_abandoned(*owner):
                dest.delete(f"{PARTIAL_DIR}/{name}")
        elif name.endswith(".json") and _is_sha256(name[: -len(".json")]):
            sha256 = name[: -len(".json")]
            out[sha256] = _temp_of(_read(dest, sha256)) or ""
    return out
