"""Internal URLs: every blob is reachable at ``/artifacts/{type}/{id}/{field}[/{key}]``.

In a mirror tree these paths are file paths, so the same URL resolves on any static
web server placed at a disconnected site. A blob-dict key appears in its encoded form
(``glarelite._names.encode_key``: ``a b`` -> ``a%20b``), which is also the file name in
a tree; a static server decodes a request path once, so the URL of such a file escapes
its ``%`` once more (:func:`join_base` does it).
"""

from __future__ import annotations

from urllib.parse import quote

from ._names import decode_key, encode_key

__all__ = ["decode_key", "encode_key", "internal_url", "join_base", "tree_path"]

ROOT = "/artifacts"


def internal_url(type_name: str, artifact_id: str, field: str = "", key: str = "") -> str:
    parts = [ROOT, type_name, artifact_id]
    if field:
        parts.append(field)
        if key:
            parts.append(encode_key(key))
    return "/".join(parts)


def tree_path(type_name: str, artifact_id: str, field: str = "", key: str = "") -> str:
    """The same URL as a relative path inside a mirror tree."""
    return internal_url(type_name, artifact_id, field, key).lstrip("/")


def join_base(base_url: str, path: str) -> str:
    """``base_url`` + an internal URL (a tree path), without doubling or losing the slash.

    The path is quoted for the request line: a plain path is unchanged, and the ``%`` of
    an encoded key becomes ``%25``, so a static server that decodes the request finds the
    file whose name is the encoded key."""
    return base_url.rstrip("/") + "/" + quote(path.lstrip("/"), safe="/")
