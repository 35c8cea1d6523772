"""Strict reading of a mirror tree's indexes: everything a tree says is hostile until it
passes the catalog's own rules.

A tree may come from anywhere (a copied folder, a web server someone else runs), so the
reader never lets a name from an index reach a path, a URL or the database unchecked:
type, field and key names pass the catalog's name rules, ids must be the catalog's UUIDs,
and every value must have the shape and kind the catalog would have written. A failure
is an InvalidInput that names the file and what is wrong in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import _semver
from ._names import check_identifier, check_key
from ._values import (
    check_description,
    check_name,
    check_owner,
    check_tags,
    coerce_property,
)
from .errors import InvalidInput
from .models import Artifact, Blob, BlobValue
from .types import PROPERTY_KINDS, ArtifactType, Property
from .urls import internal_url

__all__ = ["Loaded", "check_artifact_id", "check_segments", "read_definition", "read_show"]

# The catalog's ids: canonical lower-case UUID text (glarelite._db.new_id).
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# One path segment of a file the reader opens or requests: never empty, '.', '..', hidden,
# never a separator, a NUL or anything outside this short alphabet; '%' only as the
# upper-case escapes of an encoded blob-dict key (glarelite.encode_key), one file name.
_SEGMENT = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})(?:[A-Za-z0-9._-]|%[0-9A-F]{2}){0,254}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_STATUSES = ("drafted", "active", "deactivated", "deleted")
_VISIBILITIES = ("private", "public")
_BLOB_STATUSES = ("saving", "active")
_UPSTREAM = ("ok", "changed", "unreachable")
_MAX_TEXT = 65536  # dates, etags, content types, external URLs (a header line at most)


def check_artifact_id(value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"artifact id {_short(value)} is not a catalog id (a lower-case UUID)")
    return value


def check_segments(path: str) -> list[str]:
    """The segments of a relative tree path, each proven a plain name (defence in depth:
    every path is built from validated names, this refuses one that was not)."""
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or not all(_SEGMENT.match(p) for p in parts):
        raise InvalidInput(f"refused to read {_short(path)}: not a path inside a mirror tree")
    return parts


def read_definition(name: str, data: object, where: str) -> ArtifactType:
    """A type definition from the root index, checked strictly (InvalidInput naming it)."""
    what = f"{where}: type {name!r}"
    try:
        check_identifier(name, "type name")
        if not isinstance(data, Mapping):
            raise InvalidInput("the definition is not an object")
        if data.get("name") != name:
            raise InvalidInput(f"the definition names type {_short(data.get('name'))}")
        blobs = _str_list(data.get("blobs", []), "blobs")
        dicts = _str_list(data.get("blob_dicts", []), "blob_dicts")
        props_data = data.get("properties", {})
        if not isinstance(props_data, Mapping):
            raise InvalidInput("properties is not an object")
        props = {str(k): _property(k, v) for k, v in props_data.items()}
        size = data.get("max_blob_size")
        return ArtifactType(
            name=name,
            blobs=tuple(blobs),
            blob_dicts=tuple(dicts),
            properties=props,
            max_blob_size=size,
        )
    except (InvalidInput, ValueError, TypeError) as exc:
        raise InvalidInput(f"{what} is not a valid definition: {exc}") from None


def _property(name: object, data: object) -> Property:
    if not isinstance(name, str):
        raise InvalidInput(f"property name {_short(name)} is not text")
    if not isinstance(data, Mapping):
        raise InvalidInput(f"property {name!r} is not an object")
    kind, items = data.get("kind", "string"), data.get("items", "string")
    if kind not in PROPERTY_KINDS or items not in PROPERTY_KINDS:
        raise InvalidInput(f"property {name!r} has an unknown kind")
    for flag in ("required", "mutable"):
        if not isinstance(data.get(flag, False), bool):
            raise InvalidInput(f"property {name!r}: {flag} is not true or false")
    return Property.from_json(data)


class Loaded(NamedTuple):
    """A validated show view: the artifact, its properties coerced as the catalog's rows
    hold them, and its version's precedence key."""

    artifact: Artifact
    props: dict[str, Any]
    version_key: str


def read_show(data: object, atype: ArtifactType, where: str) -> Loaded:
    """One show view of a type index, validated; InvalidInput naming ``where`` and the
    artifact."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where}: an artifact entry is not an object")
    ident = data.get("id")
    try:
        artifact_id = check_artifact_id(ident)
        return _show(data, artifact_id, atype)
    except (InvalidInput, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"{where}: artifact {_short(ident)} is not a valid show view: {exc}"
        ) from None


def _show(data: Mapping[str, Any], artifact_id: str, atype: ArtifactType) -> Loaded:
    type_name = atype.name
    if data.get("type_name") != type_name:
        raise InvalidInput(f"type_name is {_short(data.get('type_name'))}, not {type_name!r}")
    if "url" in data and data["url"] != internal_url(type_name, artifact_id):
        raise InvalidInput(f"url {_short(data['url'])} is not its internal URL")
    version = data.get("version")
    parsed = _semver.parse(version) if isinstance(version, str) else None
    if parsed is None or str(parsed) != version:
        raise InvalidInput(f"version {_short(version)} is not a canonical semantic version")
    visibility, status = data.get("visibility"), data.get("status")
    if visibility not in _VISIBILITIES:
        raise InvalidInput(f"visibility {_short(visibility)} is not one of {_VISIBILITIES}")
    if status not in _STATUSES:
        raise InvalidInput(f"status {_short(status)} is not one of {_STATUSES}")
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise InvalidInput("tags is not a list")
    check_tags(tags)
    props = data.get("properties", {})
    props = {} if props is None else props
    if not isinstance(props, Mapping):
        raise InvalidInput("properties is not an object")
    coerced: dict[str, Any] = {}
    for key, value in props.items():
        if key not in atype.properties:
            raise InvalidInput(f"type {type_name!r} has no property {_short(key)}")
        if value is None:
            continue
        good = coerce_property(atype, key, value)
        if good != value or (type(good) is not type(value) and not _number(good, value)):
            raise InvalidInput(f"property {key!r} holds {_short(value)}, not a valid value")
        coerced[key] = good
    blobs_data = data.get("blobs", {})
    blobs_data = {} if blobs_data is None else blobs_data
    if not isinstance(blobs_data, Mapping):
        raise InvalidInput("blobs is not an object")
    blobs: dict[str, BlobValue] = {}
    for field, value in blobs_data.items():
        if not isinstance(field, str) or not atype.is_blob_slot(field):
            raise InvalidInput(f"type {type_name!r} has no blob field {_short(field)}")
        if value is None:
            blobs[field] = None
        elif field in atype.blobs:
            blobs[field] = _blob(value, type_name, artifact_id, field, "")
        elif isinstance(value, Mapping):
            blobs[field] = {
                check_key(k): _blob(v, type_name, artifact_id, field, k) for k, v in value.items()
            }
        else:
            raise InvalidInput(f"blob dict {field!r} is not an object")
    artifact = Artifact(
        id=artifact_id,
        type_name=type_name,
        name=check_name(data.get("name")),
        version=version,
        owner=check_owner(data.get("owner")),
        visibility=visibility,
        status=status,
        description=check_description(data.get("description", "")),
        tags=tuple(tags),
        properties=dict(props),
        created_at=_text(data.get("created_at", ""), "created_at"),
        updated_at=_text(data.get("updated_at", ""), "updated_at"),
        activated_at=_text_or_none(data.get("activated_at"), "activated_at"),
        blobs=blobs,
    )
    return Loaded(artifact, coerced, parsed.key)


def _blob(data: object, type_name: str, artifact_id: str, field: str, key: str) -> Blob:
    slot = f"{field}/{key}" if key else field
    if not isinstance(data, Mapping):
        raise InvalidInput(f"blob {slot} is not an object")
    # The path of the bytes is derived from the validated names, never from this text;
    # a different url means the index was not written by a mirror.
    if data.get("url") != internal_url(type_name, artifact_id, field, key):
        raise InvalidInput(f"blob {slot}: url {_short(data.get('url'))} is not its internal URL")
    size, sha256 = data.get("size"), data.get("sha256")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidInput(f"blob {slot}: size {_short(size)} is not a byte count")
    if sha256 is not None and (not isinstance(sha256, str) or not _HEX64.match(sha256)):
        raise InvalidInput(f"blob {slot}: sha256 {_short(sha256)} is not a hex digest")
    status, upstream = data.get("status", "active"), data.get("upstream", "ok")
    if status not in _BLOB_STATUSES or upstream not in _UPSTREAM:
        raise InvalidInput(f"blob {slot}: unknown status {_short(status)} / {_short(upstream)}")
    external = data.get("external", False)
    if not isinstance(external, bool):
        raise InvalidInput(f"blob {slot}: external is not true or false")
    redirect = _text_or_none(data.get("redirect"), "redirect")
    if redirect is not None and (not external or redirect != data.get("external_url")):
        # Only an external blob may be left at its origin, and only at the one recorded.
        raise InvalidInput(f"blob {slot}: redirect is not its recorded external URL")
    checksums = data.get("checksums") or {}
    if not isinstance(checksums, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= _MAX_TEXT
        for k, v in checksums.items()
    ):
        raise InvalidInput(f"blob {slot}: checksums is not an object of text")
    return Blob(
        type_name=type_name,
        artifact_id=artifact_id,
        field=field,
        key=key,
        status=status,
        size=size,
        sha256=sha256,
        checksums=dict(checksums),
        content_type=_text(data.get("content_type", "application/octet-stream"), "content_type"),
        external=external,
        external_url=_text_or_none(data.get("external_url"), "external_url"),
        etag=_text_or_none(data.get("etag"), "etag"),
        last_modified=_text_or_none(data.get("last_modified"), "last_modified"),
        verified_at=_text_or_none(data.get("verified_at"), "verified_at"),
        upstream=upstream,
        redirect=redirect,
    )


def _number(good: object, value: object) -> bool:
    """A JSON integer for a number property (1 for 1.0) is the same value."""
    return isinstance(good, float) and isinstance(value, int) and not isinstance(value, bool)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise InvalidInput(f"{what} {_short(value)} is not short text")
    return value


def _text_or_none(value: object, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{what} is not a list of names")
    return value


def _short(value: object) -> str:
    """A value for a message, short whatever its size (a hostile index may hold megabytes
    in one value): text cut, containers by kind and length."""
    if isinstance(value, (list, dict)):
        return f"<a {type(value).__name__} of {len(value)} items>"
    if isinstance(value, str) and len(value) > 80:
        return repr(value[:77]) + "..."
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "<a very long number>"
    return text if len(text) <= 80 else text[:77] + "..."
