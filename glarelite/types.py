"""Artifact type definitions: which blob fields, blob-dict fields and properties a type
has. Definitions live in the catalog (table ``artifact_types``) as JSON, so the CLI, the
mirror and a site reading a mirror all know them without Python code.
"""

from __future__ import annotations

import json
import math
import re
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
# What list elements and dict values may be: a scalar, or a link (Glare's List/Dict of
# Dependency: a murano package's dependencies, a heat template's environments).
ITEM_KINDS: tuple[str, ...] = (*SCALAR_KINDS, "link")
# Glare's validators (glare/objects/meta/validators.py), by the name a definition stores.
RULES: tuple[str, ...] = (
    "allowed",
    "min_length",
    "max_length",
    "min_value",
    "max_value",
    "pattern",
    "max_items",
    "unique",
)
# Digests a type may ask to be recorded for every blob beside sha256.
EXTRA_CHECKSUMS: tuple[str, ...] = ("md5", "sha1")

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
    """A property field. ``items`` is the kind of list elements and dict values (a
    scalar kind or ``link``).

    A ``link`` references another artifact of the catalog: given as its id, its internal
    URL or ``type/name@version`` (``@latest`` for the highest version), it is stored and
    shown as the internal URL ``/artifacts/{type}/{id}``.

    Validation rules, Glare's validators (checked on create and update; each failure is an
    InvalidInput naming the property and the rule): ``allowed`` (the value, or each
    element, must be one of these), ``min_length``/``max_length`` (characters of a
    string, or of each string element), ``min_value``/``max_value`` (a number, or each
    numeric element), ``pattern`` (a regular expression the whole string, or each string
    element, must match), ``max_items`` (elements of a list, keys of a dict) and
    ``unique`` (list elements are distinct)."""

    kind: PropertyKind = "string"
    required: bool = False
    mutable: bool = False
    default: Any = None
    items: PropertyKind = "string"
    allowed: tuple[Any, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_value: int | float | None = None
    max_value: int | float | None = None
    pattern: str | None = None
    max_items: int | None = None
    unique: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PROPERTY_KINDS:
            raise InvalidInput(
                f"unknown property kind {self.kind!r}; one of {', '.join(PROPERTY_KINDS)}"
            )
        if self.items not in ITEM_KINDS:
            raise InvalidInput(
                f"list/dict items must be a scalar kind or link ({', '.join(ITEM_KINDS)}), "
                f"not {self.items!r}"
            )
        self._check_rules()

    @property
    def element_kind(self) -> str:
        """The kind the value rules apply to: the items of a list/dict, else the kind."""
        return self.items if self.kind in ("list", "dict") else self.kind

    def _check_rules(self) -> None:
        from ._values import coerce_scalar  # local: _values imports this module

        kind = self.element_kind
        container = self.kind in ("list", "dict")

        def refuse(rule: str, why: str) -> InvalidInput:
            return InvalidInput(f"rule {rule!r} {why} (property kind {self.kind!r})")

        if self.allowed is not None:
            if kind not in ("string", "integer", "number"):
                raise refuse("allowed", "applies to strings and numbers only")
            given: object = self.allowed
            if isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple)):
                raise refuse("allowed", "must be a list of values")
            if not self.allowed:
                raise refuse("allowed", "must list at least one value")
            values = tuple(coerce_scalar(kind, v, "allowed value") for v in self.allowed)
            object.__setattr__(self, "allowed", values)
        for rule in ("min_length", "max_length"):
            if getattr(self, rule) is not None:
                if kind != "string":
                    raise refuse(rule, "applies to strings only")
                _check_count(rule, getattr(self, rule))
        for rule in ("min_value", "max_value"):
            bound = getattr(self, rule)
            if bound is not None:
                if kind not in ("integer", "number"):
                    raise refuse(rule, "applies to integers and numbers only")
                if (
                    isinstance(bound, bool)
                    or not isinstance(bound, (int, float))
                    or not math.isfinite(bound)
                ):
                    raise refuse(rule, f"must be a finite number, not {bound!r}")
        if self.pattern is not None:
            if kind != "string":
                raise refuse("pattern", "applies to strings only")
            if not isinstance(self.pattern, str) or len(self.pattern) > 1024:
                raise refuse("pattern", "must be a regular expression of at most 1024 characters")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise refuse("pattern", f"is not a valid regular expression: {exc}") from None
        if self.max_items is not None:
            if not container:
                raise refuse("max_items", "applies to lists and dicts only")
            _check_count("max_items", self.max_items)
        if self.unique is not False:
            if self.unique is not True:
                raise refuse("unique", "must be true or false")
            if self.kind != "list":
                raise refuse("unique", "applies to lists only")
        for lo, hi in (("min_length", "max_length"), ("min_value", "max_value")):
            low, high = getattr(self, lo), getattr(self, hi)
            if low is not None and high is not None and low > high:
                raise InvalidInput(f"rule {lo!r} ({low}) is above rule {hi!r} ({high})")

    def rules(self) -> dict[str, Any]:
        """The validation rules this property declares, by name (as stored)."""
        out: dict[str, Any] = {}
        for rule in RULES:
            value = getattr(self, rule)
            if value is not None and value is not False:
                out[rule] = list(value) if rule == "allowed" else value
        return out

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
        out.update(self.rules())  # absent when none: older definitions stay byte-identical
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Property:
        allowed = data.get("allowed")
        return cls(
            kind=cast(PropertyKind, data.get("kind", "string")),
            required=bool(data.get("required", False)),
            mutable=bool(data.get("mutable", False)),
            default=data.get("default"),
            items=cast(PropertyKind, data.get("items", "string")),
            allowed=tuple(allowed) if isinstance(allowed, list) else allowed,
            min_length=data.get("min_length"),
            max_length=data.get("max_length"),
            min_value=data.get("min_value"),
            max_value=data.get("max_value"),
            pattern=data.get("pattern"),
            max_items=data.get("max_items"),
            unique=data.get("unique", False),
        )


def _check_count(rule: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"rule {rule!r} must be an integer >= 0, not {value!r}")


@dataclass(frozen=True)
class BlobField:
    """Options of a blob field or blob-dict field (Glare's BlobAttribute options).

    ``required``: activation is refused until the field holds a blob (a blob dict: at
    least one entry). ``mutable``: the field may be replaced (uploaded, registered,
    removed) while the artifact is active, as Glare allows for mutable blobs.
    ``max_size``: a cap in bytes for this field (a blob dict: the sum of its entries),
    besides the type's ``max_blob_size`` and the catalog's; the smallest applies."""

    required: bool = False
    mutable: bool = False
    max_size: int | None = None

    def __post_init__(self) -> None:
        for flag in ("required", "mutable"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidInput(f"blob option {flag!r} must be true or false")
        size = self.max_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidInput(f"blob option max_size must be an integer >= 0, not {size!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.required:
            out["required"] = True
        if self.mutable:
            out["mutable"] = True
        if self.max_size is not None:
            out["max_size"] = self.max_size
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BlobField:
        return cls(
            required=data.get("required", False),
            mutable=data.get("mutable", False),
            max_size=data.get("max_size"),
        )


_PLAIN_BLOB = BlobField()


@dataclass(frozen=True)
class ArtifactType:
    """An artifact type: its blob fields, blob-dict fields and properties.

    ``max_blob_size`` caps each blob of this type, and each blob dict's sum, in bytes
    (None: only the catalog-wide cap applies). ``blob_options`` gives a blob or blob-dict
    field :class:`BlobField` options (required, mutable, its own size cap); ``blobs`` and
    ``blob_dicts`` may also be given as mappings of field name to BlobField.
    ``checksums``: digests recorded for every blob of the type beside sha256 (``md5``,
    ``sha1``), computed in the same pass over the bytes.
    """

    name: str
    blobs: tuple[str, ...] = ()
    blob_dicts: tuple[str, ...] = ()
    properties: Mapping[str, Property] = field(default_factory=dict)
    max_blob_size: int | None = None
    blob_options: Mapping[str, BlobField] = field(default_factory=dict)
    checksums: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        options: dict[str, BlobField] = {}
        for attr in ("blobs", "blob_dicts"):
            given = getattr(self, attr)
            if isinstance(given, Mapping):
                options.update(given)
                given = tuple(given)
            elif isinstance(given, str):  # "file" would iterate as letters
                given = (given,)
            object.__setattr__(self, attr, tuple(given))
        if not isinstance(self.blob_options, Mapping):
            raise InvalidInput("blob_options must map blob field names to BlobField")
        options.update(self.blob_options)
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
        for fname, opts in options.items():
            if not self.is_blob_slot(fname):
                raise InvalidInput(f"blob options given for {fname!r}, which is not a blob field")
            if not isinstance(opts, BlobField):
                raise InvalidInput(f"blob options of {fname!r} must be a glarelite.BlobField")
        # plain options are not stored: a definition without options stays as it was
        object.__setattr__(
            self, "blob_options", {k: v for k, v in sorted(options.items()) if v != _PLAIN_BLOB}
        )
        given_sums: object = self.checksums
        if isinstance(given_sums, str):
            given_sums = (given_sums,)
        if not isinstance(given_sums, Iterable):
            raise InvalidInput(f"checksums must be a list of names, not {given_sums!r}")
        checksums = tuple(given_sums)
        for algo in checksums:
            if algo not in EXTRA_CHECKSUMS:
                raise InvalidInput(
                    f"checksum {algo!r} is not one a type may ask for "
                    f"({', '.join(EXTRA_CHECKSUMS)})"
                )
        object.__setattr__(self, "checksums", tuple(a for a in EXTRA_CHECKSUMS if a in checksums))
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

    def blob_field(self, field_name: str) -> BlobField:
        """The options of a blob or blob-dict field (plain ones when none were given)."""
        return self.blob_options.get(field_name, _PLAIN_BLOB)

    def blob_cap(self, field_name: str) -> int | None:
        """The type's cap on one blob of ``field_name``: the field's own and the type's."""
        caps = [
            c for c in (self.blob_field(field_name).max_size, self.max_blob_size) if c is not None
        ]
        return min(caps) if caps else None

    def required_blobs(self) -> tuple[str, ...]:
        return tuple(n for n, o in self.blob_options.items() if o.required)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "blobs": list(self.blobs),
            "blob_dicts": list(self.blob_dicts),
            "properties": {k: v.to_json() for k, v in sorted(self.properties.items())},
        }
        if self.max_blob_size is not None:
            out["max_blob_size"] = self.max_blob_size
        # absent when unused, so definitions stored before these options existed compare equal
        if self.blob_options:
            out["blob_options"] = {k: v.to_json() for k, v in self.blob_options.items()}
        if self.checksums:
            out["checksums"] = list(self.checksums)
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactType:
        """Read a stored definition; it may come from a mirror tree, so anything that is
        not a definition is InvalidInput, never another exception."""
        try:
            return cls(
                name=data["name"],
                blobs=tuple(_json_list(data, "blobs")),
                blob_dicts=tuple(_json_list(data, "blob_dicts")),
                properties={
                    k: Property.from_json(v) for k, v in _json_map(data, "properties").items()
                },
                max_blob_size=data.get("max_blob_size"),
                blob_options={
                    k: BlobField.from_json(v) for k, v in _json_map(data, "blob_options").items()
                },
                checksums=tuple(_json_list(data, "checksums")),
            )
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"not an artifact type definition: {exc!r}") from None


def _json_list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InvalidInput(f"type definition: {key!r} must be a list")
    return value


def _json_map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise InvalidInput(f"type definition: {key!r} must map names to objects")
    return value


def make_type(
    name: str,
    *,
    blobs: Iterable[str] | Mapping[str, BlobField] = (),
    blob_dicts: Iterable[str] | Mapping[str, BlobField] = (),
    properties: Mapping[str, Property | str] | None = None,
    max_blob_size: int | None = None,
    blob_options: Mapping[str, BlobField] | None = None,
    checksums: Iterable[str] = (),
) -> ArtifactType:
    """Build an ArtifactType; a property may be given as a bare kind name (``"integer"``)."""
    props = {
        k: (Property(kind=cast(PropertyKind, v)) if isinstance(v, str) else v)
        for k, v in (properties or {}).items()
    }
    return ArtifactType(
        name=name,
        blobs=blobs if isinstance(blobs, Mapping) else tuple(blobs),  # type: ignore[arg-type]
        blob_dicts=blob_dicts if isinstance(blob_dicts, Mapping) else tuple(blob_dicts),  # type: ignore[arg-type]
        properties=props,
        max_blob_size=max_blob_size,
        blob_options=blob_options or {},
        checksums=tuple(checksums),
    )
