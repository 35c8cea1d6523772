"""Path-safe names: type names, field names and blob-dict keys become URL path segments
of the internal URLs and file names in a mirror tree, so they come from a short alphabet.

Lower case only, so that two names never collide on a case-insensitive file system; a
first character that is a letter or digit, so never ``.``, ``..`` or a hidden file.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}\Z")


def check_identifier(value: object, what: str) -> str:
    """A type, field or property name: ``[a-z][a-z0-9_]*``, at most 63 characters."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidInput(
            f"{what} {value!r} is not a valid name: use lower-case letters, digits and '_', "
            "starting with a letter, at most 63 characters"
        )
    return value


def check_key(value: object) -> str:
    """A blob-dict key: ``[a-z0-9][a-z0-9._-]*``, at most 128 characters."""
    if not isinstance(value, str) or not _KEY.match(value):
        raise InvalidInput(
            f"blob-dict key {value!r} is not path-safe: use lower-case letters, digits, "
            "'.', '_' and '-', starting with a letter or digit, at most 128 characters"
        )
    return value


def split_slot(slot: str) -> tuple[str, str]:
    """``"field"`` or ``"field/key"`` -> (field, key); key is ``""`` for a plain blob field."""
    if not isinstance(slot, str):
        raise InvalidInput(f"blob slot must be 'field' or 'field/key', not {slot!r}")
    field, sep, key = slot.partition("/")
    check_identifier(field, "blob field")
    if sep:
        check_key(key)
    return field, key
