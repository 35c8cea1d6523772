"""Path-safe names: type names, field names and blob-dict keys become URL path segments
of the internal URLs and file names in a mirror tree.

Type and field names come from a short alphabet: lower case only, so that two names never
collide on a case-insensitive file system; a first character that is a letter, so never
``.``, ``..`` or a hidden file. Blob-dict keys are free text, as in Glare, and become a
path segment through a reversible percent-encoding (:func:`encode_key`) that keeps the
same guarantees; the mirror writer and reader share it from here.
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


MAX_KEY = 255
# Characters a key keeps as they are in its encoded (path) form. Upper-case letters are
# escaped too: a mirror tree on a case-insensitive file system (macOS, Windows) must never
# fold ``RegionOne`` and ``regionone`` into one file.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


def check_key(value: object) -> str:
    """A blob-dict key as Glare allows it: any 1-255 characters (``RegionOne``,
    ``Nested.yaml``, ``a b``, ``ü``, even ``..`` and ``a/b``), except control characters
    (they break every line-oriented output: logs, listings, SHA256SUMS), and short
    enough that its encoded form (:func:`encode_key`) fits in one file name (255 bytes)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY:
        raise InvalidInput(f"blob-dict key {value!r} must be a string of 1-{MAX_KEY} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise InvalidInput(f"blob-dict key {value!r} may not hold control characters")
    try:
        encoded = encode_key(value)
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
        raise InvalidInput(f"blob-dict key {value!r} is not valid Unicode text") from None
    if len(encoded) > MAX_KEY:
        raise InvalidInput(
            f"blob-dict key {value[:40]!r}... is {len(encoded)} characters once encoded for "
            f"paths and URLs, more than {MAX_KEY} (one file name)"
        )
    return value


def encode_key(key: str) -> str:
    """A blob-dict key as one path segment: percent-encoding of its UTF-8 bytes, upper-case
    hex, every byte escaped but lower-case ASCII letters, digits, ``_``, ``-`` and a ``.``
    that is not the first character. So the result never holds ``/``, ``\\``, NUL, ``%``
    unescaped or a leading ``.`` (no ``.``, ``..`` or hidden name), is the same on a
    case-insensitive file system, and ``sha256sum`` never needs to escape it.
    ``RegionOne`` -> ``%52egion%4Fne``, ``a b`` -> ``a%20b``, ``..`` -> ``%2E.``."""
    out = []
    for i, byte in enumerate(key.encode("utf-8")):
        char = chr(byte)
        if char in _PLAIN and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def decode_key(segment: str) -> str:
    """The key an encoded path segment names; InvalidInput unless ``segment`` is exactly
    what :func:`encode_key` makes of that key (one key, one name: no other spelling of
    the same key, such as lower-case hex or an escaped letter, is accepted)."""
    if not isinstance(segment, str) or not segment or len(segment) > MAX_KEY:
        raise InvalidInput(f"{segment!r} is not an encoded blob-dict key")
    raw = bytearray()
    pos = 0
    while pos < len(segment):
        char = segment[pos]
        if char == "%":
            m = _ESCAPE.match(segment, pos)
            if m is None:
                raise InvalidInput(f"{segment!r} is not an encoded blob-dict key")
            raw.append(int(m.group(1), 16))
            pos = m.end()
        elif char in _PLAIN:
            raw.append(ord(char))
            pos += 1
        else:
            raise InvalidInput(f"{segment!r} is not an encoded blob-dict key")
    try:
        key = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{segment!r} is not an encoded blob-dict key") from None
    if encode_key(key) != segment:
        raise InvalidInput(f"{segment!r} is not the canonical encoding of a blob-dict key")
    return check_key(key)


def split_slot(slot: str) -> tuple[str, str]:
    """``"field"`` or ``"field/key"`` -> (field, key); key is ``""`` for a plain blob field.

    The key is everything after the first ``/``: ``"nested/a/b"`` is key ``a/b``."""
    if not isinstance(slot, str):
        raise InvalidInput(f"blob slot must be 'field' or 'field/key', not {slot!r}")
    field, sep, key = slot.partition("/")
    check_identifier(field, "blob field")
    if sep:
        check_key(key)
    return field, key
