"""Artifact type definitions: which blob fields, blob-dict fields and properties a type
has. Definitions live in the catalog (table ``artifact_types``) as JSON, so the CLI, the
mirror and a site reading a mirror all know them without Python code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ._names import check_identifier
from .errors import InvalidInput

PropertyKind = Literal["string", "integer", "number", "boolean", "list", "dict", "link"]
PROPERTY_KINDS: tuple[str, ...] = (
    "string",
    "integer",
    "number",
    "boolean",
    "list",
    "dict",
    "link",
)
SCALAR_KINDS: tuple[str, ...] = ("string", "integer", "number", "boolean")

# Fields every artifact has; property and blob names may not reuse them.
BASE_FIELDS: tuple[str, ...] = (
    "id",
    "type_name",
    "name",
    "version",
    "owner",
    "visibility",
    "status",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "activated_at",
    "blobs",
    "properties",
)
RESERVED_NAMES: frozenset[str] = frozenset(BASE_FIELDS) | {"tags_any", "latest", "index"}


@dataclass(frozen=True)
class Property:
    """A property field. ``items`` is the scalar kind of list elements and dict values.

    A ``link`` references another artifact of the catalog: given as its id, its internal
    URL or ``type/name@version`` (``@latest`` for the highest version), it is stored and
    shown as the internal URL ``/artifacts/{type}/{id}``."""

    kind: PropertyKind = "string"
    required: bool = False
    mutable: bool = False
    default: Any = None
    items: PropertyKind = "string"

    def __post_init__(self) -> None:
        if self.kind not in PROPERTY_KINDS:
            raise InvalidInput(
                f"unknown property kind {self.kind!r}; one of {', '.join(PROPERTY_KINDS)}"
            )
        if self.items not in SCALAR_KINDS:
            raise InvalidInput(
                f"list/dict items must be a scalar kind ({', '.join(SCALAR_KINDS)}), "
                f"not {self.items!r}"
            )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.required:
            out["required"] = True
        if self.mutable:
            out["mutable"] = True
        if self.default is not None:
            out["default"] = self.default
        if self.kind in ("list", "dict"):
            out["items"] = self.items
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Property:
        return cls(
            kind=cast(PropertyKind, data.get("kind", "string")),
            required=bool(data.get("required", False)),
            mutable=bool(data.get("mutable", False)),
            default=data.get("default"),
            items=cast(PropertyKind, data.get("items", "string")),
        )


@dataclass(frozen=True)
class ArtifactType:
    """An artifact type: its blob fields, blob-dict fields and properties.

    ``max_blob_size`` caps each blob of this type, and each blob dict's sum, in bytes
    (None: only the catalog-wide cap applies).
    """

    name: str
    blobs: tuple[str, ...] = ()
    blob_dicts: tuple[str, ...] = ()
    properties: Mapping[str, Property] = field(default_factory=dict)
    max_blob_size: int | None = None

    def __post_init__(self) -> None:
        check_identifier(self.name, "type name")
        seen: set[str] = set()
        for what, names in (
            ("blob field", self.blobs),
            ("blob-dict field", self.blob_dicts),
            ("property", tuple(self.properties)),
        ):
            for n in names:
                check_identifier(n, what)
                if n in RESERVED_NAMES:
                    raise InvalidInput(f"{what} {n!r} is reserved for a base field")
                if n in seen:
                    raise InvalidInput(f"field {n!r} is defined twice in type {self.name!r}")
                seen.add(n)
        for pname, prop in self.properties.items():
            if not isinstance(prop, Property):
                raise InvalidInput(f"property {pname!r} must be a glarelite.Property")
            if prop.default is not None:
                from ._values import coerce_property  # local: _values imports this module

                coerce_property(self, pname, prop.default)
        size = self.max_blob_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidInput(f"max_blob_size must be an integer >= 0 or None, not {size!r}")

    def is_blob_slot(self, field_name: str) -> bool:
        return field_name in self.blobs or field_name in self.blob_dicts

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "blobs": list(self.blobs),
            "blob_dicts": list(self.blob_dicts),
            "properties": {k: v.to_json() for k, v in sorted(self.properties.items())},
        }
        if self.max_blob_size is not None:
            out["max_blob_size"] = self.max_blob_size
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactType:
        return cls(
            name=data["name"],
            blobs=tuple(data.get("blobs", ())),
            blob_dicts=tuple(data.get("blob_dicts", ())),
            properties={k: Property.from_json(v) for k, v in data.get("properties", {}).items()},
            max_blob_size=data.get("max_blob_size"),
        )


def make_type(
    name: str,
    *,
    blobs: Iterable[str] = (),
    blob_dicts: Iterable[str] = (),
    properties: Mapping[str, Property | str] | None = None,
    max_blob_size: int | None = None,
) -> ArtifactType:
    """Build an ArtifactType; a property may be given as a bare kind name (``"integer"``)."""
    props = {
        k: (Property(kind=cast(PropertyKind, v)) if isinstance(v, str) else v)
        for k, v in (properties or {}).items()
    }
    return ArtifactType(
        name=name,
        blobs=tuple(blobs),
        blob_dicts=tuple(blob_dicts),
        properties=props,
        max_blob_size=max_blob_size,
    )
