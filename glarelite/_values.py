"""Coercion of property values to their declared kind, and Glare's size limits."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidInput
from .types import ArtifactType, Property

MAX_STRING = 255
MAX_DESCRIPTION = 4096
MAX_ITEMS = 255
MAX_TAGS = 255
_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}


def coerce_scalar(kind: str, value: Any, what: str) -> str | int | float | bool:
    """Coerce one scalar to ``kind``; text is accepted for every kind (filters, CLI)."""
    if kind in ("string", "link"):  # a link's target is resolved by the catalog
        if not isinstance(value, str):
            raise InvalidInput(f"{what}: expected a string, got {type(value).__name__}")
        if len(value) > MAX_STRING:
            raise InvalidInput(f"{what}: longer than {MAX_STRING} characters")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidInput(f"{what}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise InvalidInput(f"{what}: {value!r} is not an integer") from None
        if not -(2**63) <= number < 2**63:
            raise InvalidInput(f"{what}: {value!r} does not fit in 64 bits")
        return number
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidInput(f"{what}: expected a number, got {value!r}")
        try:
            real = float(value)
        except (ValueError, OverflowError):
            raise InvalidInput(f"{what}: {value!r} is not a number") from None
        if not math.isfinite(real):
            raise InvalidInput(f"{what}: {value!r} is not a finite number")
        return real
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidInput(f"{what}: {value!r} is not a boolean (true/false, yes/no, 1/0)")
    raise InvalidInput(f"{what}: unknown kind {kind!r}")


def coerce_property(atype: ArtifactType, name: str, value: Any) -> Any:
    """Validate ``value`` for property ``name`` of ``atype``; None means 'unset'."""
    prop = atype.properties.get(name)
    if prop is None:
        raise InvalidInput(f"type {atype.name!r} has no property {name!r}")
    what = f"property {name!r}"
    if value is None:
        return empty_value(prop)
    if prop.kind == "list":
        if isinstance(value, str):
            value = _json_text(value, list, what)
        if not isinstance(value, (list, tuple)):
            raise InvalidInput(f"{what}: expected a list")
        if len(value) > MAX_ITEMS:
            raise InvalidInput(f"{what}: more than {MAX_ITEMS} items")
        items = [coerce_scalar(prop.items, v, f"{what} item") for v in value]
        check_rules(prop, items, what)
        return items
    if prop.kind == "dict":
        if isinstance(value, str):
            value = _json_text(value, dict, what)
        if not isinstance(value, Mapping):
            raise InvalidInput(f"{what}: expected a mapping")
        if len(value) > MAX_ITEMS:
            raise InvalidInput(f"{what}: more than {MAX_ITEMS} keys")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not 0 < len(k) <= MAX_STRING:
                raise InvalidInput(f"{what}: keys must be strings of 1-{MAX_STRING} characters")
            out[k] = coerce_scalar(prop.items, v, f"{what}[{k!r}]")
        check_rules(prop, out, what)
        return out
    scalar = coerce_scalar(prop.kind, value, what)
    check_rules(prop, scalar, what)
    return scalar


def check_rules(prop: Property, value: Any, what: str) -> None:
    """Glare's validators: InvalidInput naming the property (``what``) and the rule."""
    if prop.kind in ("list", "dict"):
        if prop.max_items is not None and len(value) > prop.max_items:
            raise InvalidInput(
                f"{what}: {len(value)} items, more than {prop.max_items} (rule max_items)"
            )
        if prop.unique and len(set(value)) != len(value):
            raise InvalidInput(f"{what}: items must be unique (rule unique)")
        elements = list(value.values()) if isinstance(value, Mapping) else list(value)
        for element in elements:
            _check_element(prop, element, f"{what} item")
    else:
        _check_element(prop, value, what)


def _check_element(prop: Property, value: Any, what: str) -> None:
    if prop.allowed is not None and value not in prop.allowed:
        shown = ", ".join(str(v) for v in prop.allowed)
        raise InvalidInput(f"{what}: {value!r} is not one of {shown} (rule allowed)")
    if isinstance(value, str):
        if prop.min_length is not None and len(value) < prop.min_length:
            raise InvalidInput(
                f"{what}: {len(value)} characters, fewer than {prop.min_length} (rule min_length)"
            )
        if prop.max_length is not None and len(value) > prop.max_length:
            raise InvalidInput(
                f"{what}: {len(value)} characters, more than {prop.max_length} (rule max_length)"
            )
        if prop.pattern is not None and re.fullmatch(prop.pattern, value) is None:
            raise InvalidInput(f"{what}: {value!r} does not match {prop.pattern!r} (rule pattern)")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if prop.min_value is not None and value < prop.min_value:
            raise InvalidInput(f"{what}: {value} is below {prop.min_value} (rule min_value)")
        if prop.max_value is not None and value > prop.max_value:
            raise InvalidInput(f"{what}: {value} is above {prop.max_value} (rule max_value)")


def empty_value(prop: Property) -> Any:
    """What a property becomes when set to None: [] / {} / its default / unset (None)."""
    if prop.kind == "list":
        return [] if prop.default is None else list(prop.default)
    if prop.kind == "dict":
        return {} if prop.default is None else dict(prop.default)
    return prop.default


def _json_text(text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not JSON") from None
    except RecursionError:  # json's parser recurses per level of nesting
        raise InvalidInput(f"{what}: the JSON value is nested too deeply") from None
    if not isinstance(value, kind):
        raise InvalidInput(f"{what}: expected a JSON {kind.__name__}")
    return value


def check_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_STRING:
        raise InvalidInput(f"name must be a string of 1-{MAX_STRING} characters")
    return name


def check_description(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
        raise InvalidInput(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return text


def check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise InvalidInput("tags must be a list of strings")
    out = set()
    for tag in tags:
        if not isinstance(tag, str) or not 0 < len(tag) <= MAX_STRING:
            raise InvalidInput(f"tag {tag!r} must be a string of 1-{MAX_STRING} characters")
        if "," in tag or "/" in tag:
            raise InvalidInput(f"tag {tag!r} may not contain ',' or '/'")
        out.add(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags")
    return sorted(out)


def check_owner(owner: object) -> str:
    if not isinstance(owner, str) or not 0 < len(owner) <= MAX_STRING:
        raise InvalidInput(f"owner must be a string of 1-{MAX_STRING} characters")
    return owner


def prop_rows(
    artifact_id: str, atype: ArtifactType, props: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Rows of ``artifact_props`` for a validated property mapping (None values skipped)."""
    rows: list[tuple[Any, ...]] = []
    for name, value in props.items():
        prop = atype.properties[name]
        if value is None:
            continue
        if prop.kind == "list":
            rows.extend((artifact_id, name, "", i, _db(v)) for i, v in enumerate(value))
        elif prop.kind == "dict":
            rows.extend((artifact_id, name, k, -1, _db(v)) for k, v in value.items())
        else:
            rows.append((artifact_id, name, "", -1, _db(value)))
    return rows


def _db(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value
