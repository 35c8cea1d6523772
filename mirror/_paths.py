"""The shapes of the paths a mirror tree holds, checked before a name read from the
tree's own files (indexes, SHA256SUMS, state, partial records) becomes a path.

Type and field names and blob-dict keys pass the catalog's own name rules (lower-case,
path-safe, never ``.``/``..``); artifact ids are the catalog's UUIDs.
"""

from __future__ import annotations

import re

from glarelite import InvalidInput, decode_key, tree
from glarelite.tree import check_identifier, check_key

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def check_type_name(value: object) -> str:
    return check_identifier(value, "type")


def check_artifact_id(value: object) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise InvalidInput(f"artifact id {str(value)[:80]!r} is not an id the catalog makes")
    return value


def check_blob_names(type_name: object, artifact_id: object, field: object, key: object) -> str:
    """The blob's tree path, once every name in it is valid (InvalidInput otherwise)."""
    check_type_name(type_name)
    check_artifact_id(artifact_id)
    check_identifier(field, "blob field")
    if key != "":
        check_key(key)
    return tree.blob_path(str(type_name), str(artifact_id), str(field), str(key))


def is_inside(path: object) -> bool:
    """A relative '/'-separated path that stays inside the tree: no empty, ``.`` or
    ``..`` component, no NUL."""
    if not isinstance(path, str) or not path or "\0" in path:
        return False
    return not any(part in ("", ".", "..") for part in path.split("/"))


def is_blob_path(path: object) -> bool:
    """``artifacts/<type>/<id>/<field>[/<key>]`` with valid names."""
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    if len(parts) not in (4, 5) or parts[0] != tree.ARTIFACTS:
        return False
    try:
        # A path holds a key in its encoded form (glarelite.encode_key): decoded strictly
        # (one key, one spelling), so '..' or '%2e%2e' is no key segment.
        key = decode_key(parts[4]) if len(parts) == 5 else ""
        return check_blob_names(parts[1], parts[2], parts[3], key) == path
    except InvalidInput:
        return False


def is_index_path(path: object) -> bool:
    """A type index ``artifacts/<type>/index.json`` or an artifact index
    ``artifacts/<type>/<id>/index.json`` with valid names."""
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    if len(parts) not in (3, 4) or parts[0] != tree.ARTIFACTS or parts[-1] != tree.INDEX_NAME:
        return False
    try:
        check_type_name(parts[1])
        if len(parts) == 4:
            check_artifact_id(parts[2])
    except InvalidInput:
        return False
    return True


_SHARD_NAME = re.compile(rf"[0-9a-f]{{{tree.SHARD_DIGITS}}}\Z")


def is_sums_path(path: object) -> bool:
    """``SHA256SUMS.d/<type>/<shard>`` or ``SHA256SUMS.d/<type>/index`` (format 2)."""
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != tree.SUMS_DIR:
        return False
    if parts[2] != tree.TYPE_SUMS and not _SHARD_NAME.match(parts[2]):
        return False
    try:
        check_type_name(parts[1])
    except InvalidInput:
        return False
    return True


def is_content_path(path: object) -> bool:
    """A bucket or shard file ``artifacts/<type>/_buckets|_shards/<name>.<sha256>.json``."""
    return isinstance(path, str) and tree.parse_content_path(path) is not None
