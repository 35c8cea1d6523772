"""The tree's own memory: ``.glarelite-mirror/state.json``.

It records every file the tree wrote (so pruning never touches anything else), each blob
file's sha256, size and mtime (so a rerun skips a blob on one ``lstat`` instead of
re-hashing it) and what the last publish contained (so a rerun with nothing to do is
recognised from a few catalog counts). It is written after the root index, and also as
a checkpoint during long runs: a checkpoint adds blobs already verified and renamed into
place but leaves the ``published`` part as it was, since the indexes are not yet written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from glarelite import tree

from ._paths import is_blob_path, is_index_path
from .dest import Dest

STATE = f"{tree.STATE_DIR}/state.json"
STATE_VERSION = 1


@dataclass
class Published:
    """What the current root index publishes."""

    generation: int = 0
    catalog: str = ""  # the catalog file the run read
    selection: str = ""  # signature of the selection options
    watermark: str = ""  # the highest updated_at among the published artifacts
    complete: bool = False  # the run published every selected artifact
    types: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> TypeEntry dict
    artifacts: dict[str, list[str]] = field(default_factory=dict)  # id -> [type, fingerprint]
    selected: dict[str, int] = field(default_factory=dict)  # type -> selected artifacts
    sums: list[Any] = field(default_factory=lambda: [0, ""])  # [size, sha256] of SHA256SUMS
    generated_at: str = ""
    retained: int = 0  # files the tree wrote that the indexes no longer name


@dataclass
class State:
    # path -> [sha256, size, mtime_ns]: every blob file the tree wrote and still holds
    blobs: dict[str, list[Any]] = field(default_factory=dict)
    # index files (artifact and type indexes) the tree wrote and still holds
    indexes: set[str] = field(default_factory=set)
    published: Published = field(default_factory=Published)
    problem: str = ""  # why an unreadable state file was ignored

    def to_json(self) -> bytes:
        p = self.published
        data = {
            "state_version": STATE_VERSION,
            "published": {
                "generation": p.generation,
                "catalog": p.catalog,
                "selection": p.selection,
                "watermark": p.watermark,
                "complete": p.complete,
                "generated_at": p.generated_at,
                "types": p.types,
                "selected": p.selected,
                "sums": p.sums,
                "retained": p.retained,
                "artifacts": p.artifacts,
            },
            "indexes": sorted(self.indexes),
            "blobs": self.blobs,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> State:
        data = json.loads(raw)
        if data.get("state_version") != STATE_VERSION:
            raise ValueError(f"state version {data.get('state_version')!r}")
        p = data["published"]
        published = Published(
            generation=int(p["generation"]),
            catalog=str(p["catalog"]),
            selection=str(p["selection"]),
            watermark=str(p["watermark"]),
            complete=bool(p["complete"]),
            generated_at=str(p.get("generated_at", "")),
            types=dict(p["types"]),
            selected={k: int(v) for k, v in p.get("selected", {}).items()},
            sums=list(p.get("sums", [0, ""])),
            retained=int(p.get("retained", 0)),
            artifacts=dict(p["artifacts"]),
        )
        blobs, indexes = data["blobs"], data["indexes"]
        if not isinstance(blobs, dict) or not isinstance(indexes, list):
            raise ValueError("blobs or indexes of the wrong kind")
        # Every name is a path the tree will stat, re-hash or prune: only paths of the
        # tree's own blobs and indexes are accepted, anything else voids the file.
        for path, record in blobs.items():
            if not is_blob_path(path):
                raise ValueError(f"not a blob path: {str(path)[:200]!r}")
            if not (isinstance(record, list) and len(record) == 3):
                raise ValueError(f"bad record for {path}")
            if not isinstance(record[0], str) or not all(
                isinstance(n, int) and not isinstance(n, bool) for n in record[1:]
            ):
                raise ValueError(f"bad record for {path}")
        for path in indexes:
            if not is_index_path(path):
                raise ValueError(f"not an index path: {str(path)[:200]!r}")
        if not all(isinstance(t, dict) for t in published.types.values()):
            raise ValueError("published types of the wrong kind")
        return cls(blobs=dict(blobs), indexes=set(indexes), published=published)


def load(dest: Dest) -> State:
    raw = dest.read_bytes(STATE)
    if raw is None:
        return State()
    try:
        return State.from_json(raw)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # Safe fallback: nothing the state names is trusted; what the tree's own published
        # indexes name is recovered, with its bytes unknown (re-hashed before any use).
        state = State(problem=f"{STATE} was unreadable ({exc}); rebuilt from the tree")
        _recover(dest, state)
        return state


_MAX_RECOVERED_INDEX = 1 << 30  # a type index of ~1.5 million artifacts


def _recover(dest: Dest, state: State) -> None:
    """What the tree published, read back from its own root and type indexes (each checked
    against the sha256 the root records): the index files, and each blob file with its
    bytes unknown (sha256 ``""``: never skipped on a stat, re-hashed first), so that a
    withdrawal or a prune still finds the files of what the tree published. Anything
    malformed stops the recovery: then only what the catalog selects is known."""
    import hashlib

    from ._paths import check_artifact_id, check_blob_names

    indexes: set[str] = set()
    blobs: dict[str, list[Any]] = {}
    artifacts: dict[str, list[str]] = {}
    try:
        raw = dest.read_bytes(tree.ROOT_INDEX)
        if raw is None or len(raw) > _MAX_RECOVERED_INDEX:
            return
        root = tree.RootIndex.from_dict(json.loads(raw))
        for type_name, entry in root.types.items():
            path = tree.type_index_path(type_name)
            st = dest.stat(path)
            if st is None or st[0] != entry.index_size or st[0] > _MAX_RECOVERED_INDEX:
                return
            data = dest.read_bytes(path)
            if data is None or hashlib.sha256(data).hexdigest() != entry.index_sha256:
                return
            indexes.add(path)
            for show in tree.check_type_index(json.loads(data), type_name):
                artifact_id = check_artifact_id(show.get("id"))
                indexes.add(tree.artifact_index_path(type_name, artifact_id))
                artifacts[artifact_id] = [type_name, ""]  # fingerprint unknown: republished
                for field_name, key, blob in tree.iter_blob_entries(show):
                    blob_path = check_blob_names(type_name, artifact_id, field_name, key)
                    size = blob.get("size")
                    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                        return
                    blobs[blob_path] = ["", size, -1]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError):
        return  # InvalidInput is a ValueError
    state.indexes |= indexes
    state.blobs.update(blobs)
    state.published.artifacts.update(artifacts)


def save(dest: Dest, state: State) -> None:
    dest.write_file(STATE, [state.to_json()])
