"""Internal URLs: every blob is reachable at ``/artifacts/{type}/{id}/{field}[/{key}]``.

In a mirror tree these paths are file paths, so the same URL resolves on any static
web server placed at a disconnected site.
"""

from __future__ import annotations

ROOT = "/artifacts"


def internal_url(type_name: str, artifact_id: str, field: str = "", key: str = "") -> str:
    parts = [ROOT, type_name, artifact_id]
    if field:
        parts.append(field)
        if key:
            parts.append(key)
    return "/".join(parts)


def tree_path(type_name: str, artifact_id: str, field: str = "", key: str = "") -> str:
    """The same URL as a relative path inside a mirror tree."""
    return internal_url(type_name, artifact_id, field, key).lstrip("/")


def join_base(base_url: str, path: str) -> str:
    """``base_url`` + an internal URL, without doubling or losing the slash."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")
