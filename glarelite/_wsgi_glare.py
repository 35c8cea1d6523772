"""Glare's v1 shapes for ``glarelite.wsgi``: the flat artifact view, type schemas, and a
JSON Patch (RFC 6902) turned into catalog calls.

Glare's artifact JSON is flat: base fields, then each property and each blob field at the
top level (glareclient reads ``data[blob_field]`` and patches ``/property``), so the view
here flattens glarelite's show view. Property and blob names never collide with base
fields (``types.RESERVED_NAMES``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .catalog import Catalog
from .errors import Forbidden, IllegalTransition, InvalidInput
from .models import Artifact, Blob
from .types import ArtifactType, Property

MAX_PATCH_OPS = 1024

_BASE_STRING = ("id", "type_name", "owner", "status", "visibility")
_TIMES = ("created_at", "updated_at", "activated_at")
_READ_ONLY = ("id", "type_name", "owner", *_TIMES)
_GLARE_TYPE = {
    "string": "String",
    "integer": "Integer",
    "number": "Float",
    "boolean": "Boolean",
    "list": "List",
    "dict": "Dict",
    "link": "Link",
}
_JSON_TYPE = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "list": "array",
    "dict": "object",
    "link": "string",
}
_ORDERING = ["gt", "gte", "lt", "lte"]
_FILTER_OPS = {
    "string": ["eq", "neq", "in", "like"],
    "integer": ["eq", "neq", "in", *_ORDERING],
    "number": ["eq", "neq", "in", *_ORDERING],
    "boolean": ["eq", "neq"],
    "link": ["eq", "neq", "in"],
}


# -- views -------------------------------------------------------------------------------
def blob_view(blob: Blob | None) -> dict[str, Any] | None:
    """Glare's blob record: glarelite's, plus ``md5``/``sha1`` when they were recorded."""
    if blob is None:
        return None
    out = blob.to_dict()
    out["md5"] = blob.checksums.get("md5")
    out["sha1"] = blob.checksums.get("sha1")
    return out


def artifact_view(artifact: Artifact, atype: ArtifactType) -> dict[str, Any]:
    """The artifact as Glare showed it: one flat JSON object."""
    out: dict[str, Any] = {
        "id": artifact.id,
        "type_name": artifact.type_name,
        "name": artifact.name,
        "version": artifact.version,
        "owner": artifact.owner,
        "visibility": artifact.visibility,
        "status": artifact.status,
        "description": artifact.description,
        "tags": list(artifact.tags),
        "created_at": artifact.created_at,
        "updated_at": artifact.updated_at,
        "activated_at": artifact.activated_at,
    }
    for name in sorted(atype.properties):
        out[name] = copy.deepcopy(artifact.properties.get(name))
    for name in atype.blobs:
        value = artifact.blobs.get(name)
        out[name] = blob_view(value) if isinstance(value, Blob) else None
    for name in atype.blob_dicts:
        value = artifact.blobs.get(name)
        entries = value if isinstance(value, Mapping) else {}
        out[name] = {key: blob_view(entries[key]) for key in sorted(entries)}
    return out


def type_schema(atype: ArtifactType) -> dict[str, Any]:
    """A JSON schema of the type with Glare's annotations (``glareType``, ``mutable``,
    ``required_on_activate``, ``sortable``, ``filter_ops``) that ``glare schema`` shows
    and ``glare show`` needs for every field it prints."""

    def field(
        json_type: Any,
        glare_type: str,
        *,
        mutable: bool = False,
        required: bool = False,
        sortable: bool = False,
        filter_ops: list[str] | None = None,
        read_only: bool = False,
        enum: list[str] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": json_type,
            "glareType": glare_type,
            "mutable": mutable,
            "required_on_activate": required,
            "sortable": sortable,
            "filter_ops": filter_ops or [],
        }
        if read_only:
            out["readOnly"] = True
        if enum:
            out["enum"] = enum
        return out

    props: dict[str, Any] = {
        "id": field(
            "string", "String", sortable=True, filter_ops=["eq", "neq", "in"], read_only=True
        ),
        "type_name": field("string", "String", sortable=True, read_only=True),
        "name": field(
            "string", "String", required=True, sortable=True, filter_ops=_FILTER_OPS["string"]
        ),
        "version": field(
            "string", "String", sortable=True, filter_ops=["eq", "neq", "in", *_ORDERING]
        ),
        "owner": field(
            "string", "String", sortable=True, filter_ops=["eq", "neq", "in"], read_only=True
        ),
        "visibility": field(
            "string",
            "String",
            mutable=True,
            sortable=True,
            filter_ops=["eq", "neq", "in"],
            enum=["private", "public"],
        ),
        "status": field(
            "string",
            "String",
            mutable=True,
            sortable=True,
            filter_ops=["eq", "neq", "in"],
            enum=["drafted", "active", "deactivated", "deleted"],
        ),
        "description": field("string", "String", mutable=True),
        "tags": field("array", "List", mutable=True, filter_ops=["eq"]),
    }
    for name in _TIMES:
        props[name] = field(
            ["string", "null"], "DateTime", sortable=True, filter_ops=_ORDERING, read_only=True
        )
    for name, prop in sorted(atype.properties.items()):
        props[name] = _property_schema(prop, field)
    for name in atype.blobs:
        props[name] = field(["object", "null"], "Blob", read_only=True)
    for name in atype.blob_dicts:
        props[name] = field("object", "Folder", read_only=True)
    return {
        "name": atype.name,
        "version": "1.0",
        "title": f"Artifact type {atype.name}",
        "type": "object",
        "required": ["name"],
        "properties": props,
    }


def _property_schema(prop: Property, field: Any) -> dict[str, Any]:
    if prop.kind in ("list", "dict"):
        item_ops = _FILTER_OPS.get(prop.items, ["eq"])
        ops = item_ops if prop.kind == "list" else ["eq", "in"]
        out: dict[str, Any] = field(
            _JSON_TYPE[prop.kind],
            _GLARE_TYPE[prop.kind],
            mutable=prop.mutable,
            required=prop.required,
            filter_ops=ops,
        )
        key = "items" if prop.kind == "list" else "additionalProperties"
        out[key] = {"type": _JSON_TYPE[prop.items]}
    else:
        out = field(
            [_JSON_TYPE[prop.kind], "null"],
            _GLARE_TYPE[prop.kind],
            mutable=prop.mutable,
            required=prop.required,
            sortable=True,
            filter_ops=_FILTER_OPS[prop.kind],
        )
    if prop.default is not None:
        out["default"] = prop.default
    return out


# -- create ------------------------------------------------------------------------------
def create_arguments(atype: ArtifactType, values: Any) -> dict[str, Any]:
    """Glare's create body -> ``Catalog.create`` keywords. As Glare's API: a name is
    required; status, visibility and system fields cannot be given; blobs are uploaded
    afterwards."""
    if not isinstance(values, dict):
        raise InvalidInput(f"Dictionary expected as body value. Got {type(values).__name__}.")
    if not values.get("name"):
        raise InvalidInput("Name must be specified at creation.")
    kwargs: dict[str, Any] = {"properties": {}}
    for key, value in values.items():
        if key in ("name", "version", "description"):
            kwargs[key] = value
        elif key == "tags":
            kwargs["tags"] = _tag_list(value)
        elif key in ("visibility", "status", *_READ_ONLY):
            raise InvalidInput(f"{key} is not allowed in a request at creation.")
        elif key in atype.properties:
            kwargs["properties"][key] = value
        elif atype.is_blob_slot(key):
            raise InvalidInput(f"blob field {key!r} is set by uploading to it, not at creation")
        else:
            raise InvalidInput(f"type {atype.name!r} has no field {key!r}")
    return kwargs


def _tag_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("tags must be a list of strings")
    return value


# -- JSON Patch --------------------------------------------------------------------------
def apply_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    """RFC 6902 on a copy of ``document``: add, remove, replace, move, copy, test."""
    if not isinstance(patch, list):
        raise InvalidInput("Json Patch body is malformed: a list of operations is expected")
    if len(patch) > MAX_PATCH_OPS:
        raise InvalidInput(f"Json Patch body has more than {MAX_PATCH_OPS} operations")
    doc: Any = copy.deepcopy(document)
    for op in patch:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise InvalidInput("Json Patch body is malformed: each operation needs an 'op'")
        kind = op["op"]
        path = _pointer(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise InvalidInput(f"Json Patch body is malformed: {kind} needs a 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"))
            if kind == "move":
                if path[: len(source)] == source and len(path) > len(source):
                    raise InvalidInput("Json Patch: cannot move a value into itself")
                doc, value = _remove(doc, source)
            else:
                value = copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise InvalidInput(f"Json Patch test failed at {op.get('path')!r}")
        else:
            raise InvalidInput(f"Json Patch body is malformed: unknown op {kind!r}")
    if not isinstance(doc, dict):
        raise InvalidInput("Json Patch may not replace the whole artifact")
    return doc


def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise InvalidInput(f"Json Patch body is malformed: bad path {text!r}")
    if text == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _container(doc: Any, path: list[str]) -> Any:
    return _get(doc, path[:-1])


def _get(doc: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(doc, dict):
            if part not in doc:
                raise InvalidInput(f"Json Patch: no value at /{'/'.join(path)}")
            doc = doc[part]
        elif isinstance(doc, list):
            doc = doc[_index(doc, part, extra=False)]
        else:
            raise InvalidInput(f"Json Patch: no value at /{'/'.join(path)}")
    return doc


def _index(items: list[Any], part: str, *, extra: bool) -> int:
    if extra and part == "-":
        return len(items)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise InvalidInput(f"Json Patch: {part!r} is not a list index")
    index = int(part)
    if index > len(items) or (index == len(items) and not extra):
        raise InvalidInput(f"Json Patch: list index {index} is out of range")
    return index


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _container(doc, path)
    if isinstance(parent, dict):
        parent[path[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, path[-1], extra=True), value)
    else:
        raise InvalidInput(f"Json Patch: cannot add at /{'/'.join(path)}")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise InvalidInput("Json Patch may not remove the whole artifact")
    parent = _container(doc, path)
    if isinstance(parent, dict) and path[-1] in parent:
        return doc, parent.pop(path[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, path[-1], extra=False))
    raise InvalidInput(f"Json Patch: no value at /{'/'.join(path)}")


# -- a patched view -> catalog calls -------------------------------------------------------
def apply_changes(
    cat: Catalog, atype: ArtifactType, before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Carry out what changed between two flat views, as Glare's engine did: field changes,
    then the status, then the visibility (publishing needs an active artifact). Each step
    is one catalog transaction; a refused step leaves the earlier ones done."""
    artifact_id = before["id"]
    update: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    status = visibility = None
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if key in before and key in after and old == new:
            continue
        if key in _READ_ONLY:
            raise Forbidden(f"field {key!r} is read-only")
        if key in ("name", "version", "description"):
            update[key] = new
        elif key == "tags":
            update["tags"] = _tag_list(new)
        elif key == "status":
            status = new
        elif key == "visibility":
            visibility = new
        elif key in atype.properties:
            properties[key] = new
        elif atype.is_blob_slot(key):
            raise Forbidden(
                f"blob field {key!r} changes through /artifacts/{atype.name}/{artifact_id}/{key}"
            )
        else:
            raise InvalidInput(f"type {atype.name!r} has no field {key!r}")
    if properties:
        update["properties"] = properties
    reactivating = status == "active" and before["status"] == "deactivated"
    if reactivating:
        cat.reactivate(artifact_id)
    if update:
        cat.update(artifact_id, **update)
    if status is not None and not reactivating:
        _set_status(cat, artifact_id, before["status"], status)
    if visibility is not None:
        if visibility not in ("private", "public"):
            raise InvalidInput(f"visibility must be 'private' or 'public', not {visibility!r}")
        cat.update(artifact_id, visibility=visibility)


def _set_status(cat: Catalog, artifact_id: str, current: str, target: Any) -> None:
    if target == "active":
        cat.activate(artifact_id)
    elif target == "deactivated":
        cat.deactivate(artifact_id)
    elif target in ("drafted", "deleted"):
        what = "delete the artifact (DELETE)" if target == "deleted" else "go back to drafted"
        raise IllegalTransition(f"an artifact that is {current} cannot {what} by a status change")
    else:
        raise InvalidInput(f"status {target!r} is not one of drafted, active, deactivated")
