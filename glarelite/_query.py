"""Listing queries: Glare's filters, sort and keyset pagination as SQL over schema.sql.

Decisions worth knowing (GLARE-SEMANTICS.md is the reference; these fill its gaps):

* A filter on a property matches only artifacts that *have* a matching value: a missing
  property matches no operator, ``neq`` included (``int1=neq:5`` skips artifacts without
  ``int1``). List properties match when any element matches, ``neq`` included.
* ``like`` is SQLite's LIKE: ``%`` and ``_`` are wildcards and ASCII letters compare
  case-insensitively.
* An expression containing ``:`` always names an operator before it; write ``eq:a:b`` to
  compare with a value that contains a colon. Tags are the exception: a tag may contain
  ``:``, so only a known operator prefix is refused there (``in:`` means any-of).
* Sorting: a missing property (or a NULL ``activated_at``) sorts as the lowest value —
  first ascending, last descending. Version sorts by precedence, then by the canonical
  text so that build metadata breaks ties, then by id.
* ``latest``: one artifact per (type, name) — the highest precedence, then the highest
  canonical text (build), then the smallest id — chosen among the artifacts the caller
  sees that pass every filter.
* ``marker``: must be an artifact the caller sees, not deleted, of the listed type; with
  ``latest`` it must also be in the latest set (it passes the filters and is its name's
  latest), else NotFound. Without ``latest`` the filters are not applied to the marker, so
  a marker whose artifact changed since the previous page still pages correctly.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from . import _semver
from ._values import MAX_STRING, coerce_scalar
from .errors import InvalidInput, NotFound
from .types import ArtifactType

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000

OPERATORS: tuple[str, ...] = ("eq", "neq", "in", "like", "gt", "gte", "lt", "lte")
_ORDERING = ("gt", "gte", "lt", "lte")
_SQL_OP = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "string": ("eq", "neq", "in", "like"),
    "integer": ("eq", "neq", "in", *_ORDERING),
    "number": ("eq", "neq", "in", *_ORDERING),
    "boolean": ("eq", "neq"),
    "link": ("eq", "neq", "in"),
}

_STRING_COLUMNS = ("id", "type_name", "name", "owner", "status", "visibility")
_TIME_COLUMNS = ("created_at", "updated_at", "activated_at")
_ENUMS = {
    "status": ("drafted", "active", "deactivated", "deleted"),
    "visibility": ("private", "public"),
}
_NOT_FILTERABLE = ("description", "properties", "blobs")
_TAG_FIELDS = {"tags": "all", "tags-any": "any", "tags_any": "any"}
# Sortable base fields -> the columns they order by (version: precedence, then build).
_SORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "type_name": ("type_name",),
    "name": ("name",),
    "owner": ("owner",),
    "status": ("status",),
    "visibility": ("visibility",),
    "version": ("version_key", "version"),
    "created_at": ("created_at",),
    "updated_at": ("updated_at",),
    "activated_at": ("activated_at",),
}

Row = sqlite3.Row | tuple[Any, ...]
Target = Literal["column", "version", "tags", "prop", "dict_key", "latest"]


@dataclass(frozen=True)
class Filter:
    """One parsed, validated filter, ready to become SQL.

    ``target`` picks the SQL shape: ``column`` (a text column of ``artifacts``; ``column``
    names it), ``version`` (``version`` for eq/neq/in, ``version_key`` for ordering),
    ``tags`` (op ``all`` or ``any``), ``prop`` (an ``artifact_props`` value; ``column`` is
    the property name, ``key`` the dict key for ``d.key`` filters), ``dict_key`` (a bare
    dict: has any of the keys in ``values``) and ``latest`` (Glare's ``version=latest``:
    the listing's ``latest`` option, see :func:`split_latest`). ``values`` are coerced and
    bindable as is.
    """

    field: str
    combiner: Literal["and", "or"]
    op: str
    values: tuple[Any, ...]
    target: Target
    column: str
    key: str | None = None


# -- filters ---------------------------------------------------------------------------


def parse_filters(filters: Any, atype: ArtifactType | None) -> list[Filter]:
    """Parse ``"field=expr"`` strings, ``(field, expr)`` pairs or a mapping of field to an
    expression or a list of expressions. ``expr`` is ``[and:|or:][op:]value``.

    ``atype`` None lists across types: only base fields may be filtered then. Raises
    InvalidInput naming the field, operator or value at fault. Filters that constrain
    nothing (``tags=``) are dropped.
    """
    out: list[Filter] = []
    for field, expr in _pairs(filters):
        parsed = _parse_one(field, expr, atype)
        if parsed is not None:
            out.append(parsed)
    return out


def split_latest(filters: list[Filter], latest: bool) -> tuple[list[Filter], bool]:
    """The filters without ``version=latest``, and whether the listing keeps only the
    latest version of each name (asked by the option or by that filter)."""
    rest = [f for f in filters if f.target != "latest"]
    return rest, latest or len(rest) != len(filters)


def _pairs(filters: Any) -> list[tuple[str, str]]:
    if filters is None:
        return []
    pairs: list[tuple[Any, Any]] = []
    if isinstance(filters, Mapping):
        for field, value in filters.items():
            if isinstance(value, (list, tuple)):
                pairs.extend((field, v) for v in value)
            else:
                pairs.append((field, value))
    elif isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence):
        raise InvalidInput(
            "filters must be a list of 'field=expr' strings or (field, expr) pairs, or a "
            f"mapping of field to expr; got {type(filters).__name__}"
        )
    else:
        for item in filters:
            if isinstance(item, str):
                field, eq, expr = item.partition("=")
                if not eq:
                    raise InvalidInput(f"filter {item!r} must have the form 'field=expr'")
                pairs.append((field, expr))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise InvalidInput(
                    f"filter {item!r} must be a 'field=expr' string or a (field, expr) pair"
                )
    out: list[tuple[str, str]] = []
    for field, value in pairs:
        if not isinstance(field, str) or not field:
            raise InvalidInput(f"filter field {field!r} must be a non-empty string")
        expr = _expr_text(field, value)
        out.append((_utf8(field, "filter field"), _utf8(expr, f"filter {field!r}")))
    return out


def _utf8(text: str, what: str) -> str:
    # SQLite binds UTF-8: a lone surrogate would fail inside sqlite3, not as bad input
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} {text!r} is not valid Unicode text") from None
    return text


def _expr_text(field: str, value: Any) -> str:
    # Programmatic callers may pass plain values; they mean 'eq' on that value.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise InvalidInput(f"filter {field!r}: expression must be text, got {type(value).__name__}")


def _parse_one(field: str, expr: str, atype: ArtifactType | None) -> Filter | None:
    what = f"filter {field}={expr}"
    combiner: Literal["and", "or"] = "and"
    rest = expr
    head, sep, tail = expr.partition(":")
    if sep and head in ("and", "or"):
        combiner = "or" if head == "or" else "and"
        rest = tail

    if field in _TAG_FIELDS:
        return _parse_tags(field, rest, combiner, what)

    op, value = "eq", rest
    head, sep, tail = rest.partition(":")
    if sep:
        if head not in OPERATORS:
            if field in _TIME_COLUMNS and _TIME.match(rest.strip()):
                raise InvalidInput(
                    f"{what}: timestamps take gt, gte, lt or lte, e.g. {field}=gt:{rest}"
                )
            raise InvalidInput(
                f"{what}: unknown operator {head!r}; one of {', '.join(OPERATORS)} "
                f"(write eq:{rest} to match a value containing ':')"
            )
        op, value = head, tail

    if field in _NOT_FILTERABLE:
        raise InvalidInput(f"{what}: field {field!r} is not filterable")
    if field == "name" and value == "" and op in ("eq", "neq", "like"):
        raise InvalidInput(f"{what}: an artifact name is never empty")
    if field in _STRING_COLUMNS:
        allowed: tuple[str, ...] = (
            ("eq", "neq", "in", "like") if field == "name" else ("eq", "neq", "in")
        )
        _check_op(what, field, op, allowed)
        values = tuple(_coerce_base(field, v, what) for v in _values_of(op, value, what))
        return Filter(field, combiner, op, values, "column", field)
    if field == "version" and value == "latest":
        # Glare's spelling of the latest option: only as a plain 'and' equality
        if op != "eq" or combiner != "and":
            raise InvalidInput(f"{what}: 'latest' is a version only as version=latest")
        return Filter(field, combiner, op, (), "latest", "version")
    if field == "version":
        _check_op(what, field, op, ("eq", "neq", "in", *_ORDERING))
        versions = [_version(v, what) for v in _values_of(op, value, what)]
        # identity (eq/neq/in) includes build metadata; precedence (ordering) ignores it
        texts = tuple(v.key if op in _ORDERING else str(v) for v in versions)
        return Filter(field, combiner, op, texts, "version", "version")
    if field in _TIME_COLUMNS:
        _check_op(what, field, op, _ORDERING)
        return Filter(field, combiner, op, (_parse_time(value, what),), "column", field)

    prop_name, dot, key = field.partition(".")
    if atype is None:
        raise InvalidInput(
            f"{what}: unknown field {field!r}; without an artifact type only base fields "
            "(id, name, owner, status, visibility, version, timestamps, tags) are filterable"
        )
    prop = atype.properties.get(prop_name)
    if prop is None:
        if atype.is_blob_slot(prop_name):
            raise InvalidInput(f"{what}: blob field {prop_name!r} is not filterable")
        raise InvalidInput(f"{what}: type {atype.name!r} has no field {prop_name!r}")
    if dot:
        if prop.kind != "dict":
            raise InvalidInput(
                f"{what}: {prop_name!r} is a {prop.kind} property; 'name.key' filters apply "
                "to dict properties only"
            )
        _check_key(key, what)
        kind = prop.items
    elif prop.kind == "dict":
        # a bare dict filters on its keys
        _check_op(what, field, op, ("eq", "in"))
        keys = tuple(_check_key(k, what) for k in _values_of(op, value, what))
        return Filter(field, combiner, op, keys, "dict_key", prop_name)
    else:
        kind = prop.items if prop.kind == "list" else prop.kind
    _check_op(what, field, op, _OPS_BY_KIND[kind])
    bound = tuple(_bindable(coerce_scalar(kind, v, what)) for v in _values_of(op, value, what))
    return Filter(field, combiner, op, bound, "prop", prop_name, key if dot else None)


def _parse_tags(field: str, rest: str, combiner: Literal["and", "or"], what: str) -> Filter | None:
    mode = _TAG_FIELDS[field]
    head, sep, tail = rest.partition(":")
    if sep and head == "in":
        mode, rest = "any", tail  # asked for in an issue: tags=in:a,b is any-of
    elif sep and head in OPERATORS:
        raise InvalidInput(
            f"{what}: tags take no operator, only an and:/or: prefix "
            f"({field}=a,b; tags=a,b needs all, tags-any=a,b any)"
        )
    tags: list[str] = []
    for tag in rest.split(","):  # tags cannot contain ',', so no quoting is needed
        if tag and tag not in tags:
            tags.append(str(coerce_scalar("string", tag, what)))
    if not tags:
        return None  # 'tags=' adds no constraint
    return Filter(field, combiner, mode, tuple(tags), "tags", "tags")


def _check_op(what: str, field: str, op: str, allowed: tuple[str, ...]) -> None:
    if op not in allowed:
        raise InvalidInput(
            f"{what}: operator {op!r} is not allowed on {field!r}; allowed: {', '.join(allowed)}"
        )


def _check_key(key: str, what: str) -> str:
    if not 0 < len(key) <= MAX_STRING:
        raise InvalidInput(f"{what}: a dict key must be 1-{MAX_STRING} characters")
    return key


def _coerce_base(field: str, value: str, what: str) -> str:
    text = str(coerce_scalar("string", value, what))
    choices = _ENUMS.get(field)
    if choices is not None and text not in choices:
        raise InvalidInput(f"{what}: {field} must be one of {', '.join(choices)}, not {text!r}")
    return text


def _version(value: str, what: str) -> _semver.Version:
    try:
        return _semver.parse(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None


def _bindable(value: str | int | float | bool) -> str | int | float:
    # booleans are stored as 0/1 (see _values.prop_rows)
    return int(value) if isinstance(value, bool) else value


def _values_of(op: str, value: str, what: str) -> list[str]:
    return split_in(value, what) if op == "in" else [value]


def split_in(text: str, what: str = "filter") -> list[str]:
    """Split an ``in`` list on commas; ``"..."`` protects commas (``\\"`` and ``\\\\``
    escape inside quotes). A quote must open a value and be closed before a comma or the
    end; ``a,`` is ``["a", ""]``."""
    items: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise InvalidInput(f"{what}: unclosed double quote in {text!r}")
                c = text[j]
                if c == "\\" and j + 1 < n and text[j + 1] in '"\\':
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if c == '"':
                    break
                buf.append(c)
                j += 1
            items.append("".join(buf))
            i = j + 1
            if i < n and text[i] != ",":
                raise InvalidInput(f"{what}: expected ',' after a closing quote in {text!r}")
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            item = text[i:end]
            if '"' in item:
                raise InvalidInput(
                    f'{what}: a double quote must open a value ("a,b",c) in {text!r}'
                )
            items.append(item)
            i = end
        if i >= n:
            return items
        i += 1  # the comma


_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?\Z"
)


def _parse_time(text: str, what: str) -> str:
    """ISO 8601 -> the stored form (UTC, microseconds, 'Z'), so text order is time order.
    Without an offset the time is taken as UTC."""
    m = _TIME.match(text.strip())
    if not m:
        raise InvalidInput(
            f"{what}: {text!r} is not an ISO 8601 timestamp such as 2026-01-02T03:04:05Z"
        )
    year, month, day, hour, minute, second, frac, tz = m.groups()
    try:
        offset = timedelta(0)
        if tz and tz not in "Zz":
            digits = tz[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            offset = -offset if tz[0] == "-" else offset
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "0").ljust(6, "0")),
            tzinfo=timezone(offset),
        ).astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what}: {text!r} is not a valid timestamp ({exc})") from None
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def _compare(expr: str, op: str, values: tuple[Any, ...]) -> tuple[str, list[Any]]:
    if op == "in":
        return f"{expr} IN ({', '.join('?' * len(values))})", list(values)
    if op == "like":
        return f"{expr} LIKE ?", [values[0]]
    return f"{expr} {_SQL_OP[op]} ?", [values[0]]


def _filter_sql(f: Filter, alias: str) -> tuple[str, list[Any]]:
    """SQL for one filter on the artifacts row ``alias``. Property and tag filters are
    correlated EXISTS probes on the primary keys of artifact_props / artifact_tags, so a
    listing can walk its sort index and stop at the limit."""
    if f.target == "column":
        return _compare(f"{alias}.{f.column}", f.op, f.values)
    if f.target == "version":
        column = "version_key" if f.op in _ORDERING else "version"
        return _compare(f"{alias}.{column}", f.op, f.values)
    if f.target == "tags":
        probe = f"EXISTS (SELECT 1 FROM artifact_tags t WHERE t.artifact_id = {alias}.id AND "
        if f.op == "any":
            cond, params = _compare("t.tag", "in", f.values)
            return probe + cond + ")", params
        return " AND ".join(probe + "t.tag = ?)" for _ in f.values), list(f.values)
    head = (
        f"EXISTS (SELECT 1 FROM artifact_props p WHERE p.artifact_id = {alias}.id "
        "AND p.name = ? AND "
    )
    if f.target == "dict_key":
        cond, params = _compare("p.key", "in", f.values)
        return head + cond + ")", [f.column, *params]
    # '+' keeps the planner off artifact_props_by_value here: without statistics it
    # would range-scan (name, value) once per artifact instead of probing the primary key.
    cond, params = _compare("+p.value", f.op, f.values)
    # scalars and list items have key ''; dict entries are addressed by their key
    return head + "p.key = ? AND " + cond + ")", [f.column, f.key or "", *params]


def _ids_sql(f: Filter) -> list[tuple[str, list[Any]]]:
    """Index-only queries for the ids a filter can match (for a tags=all filter, one per
    tag: any of them bounds the matches), or [] when no index serves the filter well."""
    if f.target == "tags":
        if f.op == "any":
            cond, params = _compare("tag", "in", f.values)
            return [(f"SELECT artifact_id FROM artifact_tags WHERE {cond}", params)]
        return [("SELECT artifact_id FROM artifact_tags WHERE tag = ?", [t]) for t in f.values]
    if f.target == "prop" and f.op not in ("neq", "like"):  # those scan the whole name
        cond, params = _compare("value", f.op, f.values)
        return [
            (
                f"SELECT artifact_id FROM artifact_props WHERE name = ? AND {cond} AND key = ?",
                [f.column, *params, f.key or ""],
            )
        ]
    return []


def _filters_sql(filters: Sequence[Filter], alias: str) -> tuple[list[str], list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    ors: list[str] = []
    or_params: list[Any] = []
    for f in filters:
        sql, p = _filter_sql(f, alias)
        if f.combiner == "or":
            ors.append(f"({sql})")
            or_params.extend(p)
        else:
            conds.append(sql)
            params.extend(p)
    if ors:
        conds.append("(" + " OR ".join(ors) + ")")
        params.extend(or_params)
    return conds, params


# -- sort ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """A validated sort key: a base field or a scalar property (``prop`` True)."""

    field: str
    desc: bool
    prop: bool = False


def parse_sort(sort: str | Sequence[str] | None, atype: ArtifactType | None) -> list[SortKey]:
    """``"k1[:asc|desc],k2"`` or a list of such keys -> validated keys, ``id`` ascending
    appended unless present. No direction means descending; no sort means ``created_at``
    descending."""
    if sort is None:
        items: list[str] = []
    elif isinstance(sort, str):
        items = sort.split(",") if sort.strip() else []
    elif isinstance(sort, Sequence):
        items = []
        for s in sort:
            if not isinstance(s, str):
                raise InvalidInput(f"sort key {s!r} must be text such as 'name:asc'")
            items.extend(s.split(","))
    else:
        raise InvalidInput(f"sort must be text such as 'name:asc,version', not {sort!r}")
    keys: list[SortKey] = []
    for item in items:
        field, sep, direction = item.strip().partition(":")
        field = field.strip()
        direction = direction.strip()
        if not field:
            raise InvalidInput(f"sort {sort!r}: empty sort key")
        if sep and direction not in ("asc", "desc"):
            raise InvalidInput(
                f"sort key {field!r}: direction must be asc or desc, not {direction!r}"
            )
        if any(k.field == field for k in keys):
            raise InvalidInput(f"sort key {field!r} is given twice")
        keys.append(SortKey(field, direction != "asc", _is_prop_sort(field, atype)))
    if not keys:
        keys.append(SortKey("created_at", True))
    if not any(k.field == "id" for k in keys):
        keys.append(SortKey("id", False))
    return keys


def _is_prop_sort(field: str, atype: ArtifactType | None) -> bool:
    if field in _SORT_COLUMNS:
        return False
    if field in ("tags", "description", "properties", "blobs"):
        raise InvalidInput(f"sort key {field!r}: {field} is not sortable")
    prop = atype.properties.get(field) if atype is not None else None
    if prop is None:
        if atype is not None and atype.is_blob_slot(field):
            raise InvalidInput(f"sort key {field!r}: blob fields are not sortable")
        scope = f"type {atype.name!r}" if atype is not None else "a listing across types"
        raise InvalidInput(f"sort key {field!r}: no such sortable field in {scope}")
    if prop.kind in ("list", "dict"):
        raise InvalidInput(f"sort key {field!r}: {prop.kind} properties are not sortable")
    return True


@dataclass(frozen=True)
class _Order:
    joins: str  # LEFT JOINs bringing in sorted-on properties
    join_params: list[Any]
    columns: list[tuple[str, bool, bool]]  # (SQL expression, descending, nullable)


def _order(keys: list[SortKey]) -> _Order:
    joins: list[str] = []
    params: list[Any] = []
    columns: list[tuple[str, bool, bool]] = []
    for key in keys:
        if key.prop:
            alias = f"s{len(joins)}"
            # a LEFT JOIN keeps artifacts lacking the property: they sort as NULL, i.e.
            # lowest. The join hits the primary key exactly, so it never duplicates rows.
            joins.append(
                f" LEFT JOIN artifact_props {alias} ON {alias}.artifact_id = a.id "
                f"AND {alias}.name = ? AND {alias}.key = '' AND {alias}.position = -1"
            )
            params.append(key.field)
            columns.append((f"{alias}.value", key.desc, True))
        else:
            for column in _SORT_COLUMNS[key.field]:
                columns.append((f"a.{column}", key.desc, column == "activated_at"))
    return _Order("".join(joins), params, columns)


def _after_marker(
    columns: list[tuple[str, bool, bool]], marker: Sequence[Any]
) -> tuple[str, list[Any]]:
    """Rows strictly after the marker's values in the full order, as an OR-chain:
    (c1 after m1) OR (c1 = m1 AND c2 after m2) OR ... NULL sorts lowest."""
    disjuncts: list[str] = []
    params: list[Any] = []
    same: list[str] = []
    same_params: list[Any] = []
    for (expr, desc, nullable), value in zip(columns, marker, strict=True):
        after: str | None
        after_params: list[Any] = []
        if value is None:
            after = None if desc else f"{expr} IS NOT NULL"
            same_term, same_term_params = f"{expr} IS NULL", []
        else:
            after = f"{expr} {'<' if desc else '>'} ?"
            if desc and nullable:
                after = f"({after} OR {expr} IS NULL)"
            after_params = [value]
            same_term, same_term_params = f"{expr} = ?", [value]
        if after is not None:
            disjuncts.append("(" + " AND ".join([*same, after]) + ")")
            params.extend(same_params + after_params)
        same.append(same_term)
        same_params.extend(same_term_params)
    if not disjuncts:
        return "0", []
    sql = "(" + " OR ".join(disjuncts) + ")"
    # A redundant bound on the first column lets the planner seek its index instead of
    # filtering the OR-chain row by row from the start.
    expr, desc, nullable = columns[0]
    first = marker[0]
    if first is None:
        if desc:
            sql = f"{expr} IS NULL AND {sql}"
    elif not (desc and nullable):
        sql = f"{expr} {'<=' if desc else '>='} ? AND {sql}"
        params.insert(0, first)
    return sql, params


# -- the queries ----------------------------------------------------------------------


def _scope(alias: str, type_name: str | None, owner: str | None) -> tuple[list[str], list[Any]]:
    conds = [f"{alias}.status != 'deleted'"]
    params: list[Any] = []
    if type_name is not None:
        conds.append(f"{alias}.type_name = ?")
        params.append(type_name)
    if owner is not None:
        # what the default policy lets a non-admin read: its own and public artifacts,
        # none deactivated (glarelite.policy.can_read)
        conds.append(f"({alias}.owner = ? OR {alias}.visibility = 'public')")
        conds.append(f"{alias}.status != 'deactivated'")
        params.append(owner)
    return conds, params


def _latest_sql(owner: str | None, filters: Sequence[Filter]) -> tuple[str, list[Any]]:
    """a is the latest of its (type, name): no other visible artifact passing the filters
    has a higher precedence, the same precedence with a higher build text, or the same
    version with a smaller id. Served by artifacts_by_name (type_name, name, version_key)."""
    conds, params = _scope("b", None, owner)
    fconds, fparams = _filters_sql(filters, "b")
    conds = [
        "b.type_name = a.type_name",
        "b.name = a.name",
        "b.version_key >= a.version_key",
        *conds,
        *fconds,
        "(b.version_key > a.version_key OR b.version > a.version "
        "OR (b.version = a.version AND b.id < a.id))",
    ]
    return "NOT EXISTS (SELECT 1 FROM artifacts b WHERE " + " AND ".join(conds) + ")", [
        *params,
        *fparams,
    ]


def _where(
    *,
    type_name: str | None,
    owner: str | None,
    filters: Sequence[Filter],
    latest: bool,
) -> tuple[list[str], list[Any]]:
    conds, params = _scope("a", type_name, owner)
    fconds, fparams = _filters_sql(filters, "a")
    conds += fconds
    params += fparams
    if latest:
        lsql, lparams = _latest_sql(owner, filters)
        conds.append(lsql)
        params += lparams
    return conds, params


# A filter matching at most this many artifact_props / artifact_tags rows drives the
# query: its ids are looked up by primary key and sorted, instead of walking the sort
# index and probing every artifact.
DRIVE_MAX = 500


def _source(
    conn: sqlite3.Connection, type_name: str | None, filters: Sequence[Filter]
) -> tuple[str, list[Any], list[str]]:
    """The FROM clause (with its parameters and extra conditions) that finds the rows.

    SQLite has no statistics on a fresh catalog and then assumes any equality on an index
    prefix is selective, so ``type_name = ?`` on artifacts_by_type_created (which also
    yields the default order) beats a far better index. Two cases are steered by hand:
    an ``and`` filter on name uses artifacts_by_name; a property or tag filter that
    matches few rows (bounded count on its covering index) drives through a CROSS JOIN,
    which SQLite keeps in the written order.
    """
    and_filters = [f for f in filters if f.combiner == "and"]
    if any(f.field == "name" and f.op in ("eq", "in") for f in and_filters):
        if type_name is not None:
            return "artifacts a INDEXED BY artifacts_by_name", [], []
        # across types the index needs a type_name term: every type is a short IN-list
        return (
            "artifacts a INDEXED BY artifacts_by_name",
            [],
            ["a.type_name IN (SELECT name FROM artifact_types)"],
        )
    best: tuple[int, str, list[Any]] | None = None
    for f in and_filters:
        for sql, params in _ids_sql(f):
            row = conn.execute(
                f"SELECT count(*) FROM ({sql} LIMIT {DRIVE_MAX + 1})", params
            ).fetchone()
            if row[0] <= DRIVE_MAX and (best is None or row[0] < best[0]):
                best = (row[0], sql, params)
    if best is None:
        return "artifacts a", [], []
    return (
        f"(SELECT DISTINCT artifact_id FROM ({best[1]})) m CROSS JOIN artifacts a",
        best[2],
        ["a.id = m.artifact_id"],
    )


def _resolve_type(type_name: str | None, atype: ArtifactType | None) -> str | None:
    if type_name is not None:
        _utf8(type_name, "type name")
    if atype is not None:
        if type_name is None:
            return atype.name
        if type_name != atype.name:
            raise InvalidInput(f"type {type_name!r} does not match definition {atype.name!r}")
    return type_name


def _check_limit(limit: Any) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, str):
        limit = coerce_scalar("integer", limit.strip(), "limit")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInput(f"limit must be an integer, not {limit!r}")
    if limit < 0:
        raise InvalidInput(f"limit must be >= 0, not {limit}")
    return min(limit, MAX_LIMIT)


def select_page(
    conn: sqlite3.Connection,
    *,
    type_name: str | None,
    atype: ArtifactType | None,
    owner: str | None,
    filters: Sequence[Filter],
    sort: str | Sequence[str] | None,
    limit: int | None,
    marker: str | None,
    latest: bool,
) -> tuple[list[Row], str | None]:
    """One page of ``artifacts`` rows (all columns, schema order) and the next marker.

    ``owner`` None is the admin scope; otherwise the caller sees its own artifacts and
    public ones. Deleted artifacts never appear. The order is the sort keys then ``id``
    ascending; an artifact lacking a sorted-on property sorts as if its value were the
    lowest: first when ascending, last when descending (likewise a NULL activated_at).
    ``limit`` None is 25, at most 1000 are returned, 0 returns an empty page. ``marker``
    is the id of the previous page's last row; the page holds the rows strictly after it
    (keyset pagination, no OFFSET). An unknown or invisible marker is NotFound. The next
    marker is the last row's id exactly when the page is full.
    """
    type_name = _resolve_type(type_name, atype)
    keys = parse_sort(sort, atype)
    size = _check_limit(limit)
    order = _order(keys)
    conds, params = _where(type_name=type_name, owner=owner, filters=filters, latest=latest)

    parts: list[tuple[str, list[Any]]] = [("1", [])]
    if marker is not None:
        values = _marker_values(conn, marker, order, type_name, owner, filters, latest)
        parts = _after_marker_parts(order.columns, values)
    if size == 0:
        return [], None

    source, source_params, source_conds = _source(conn, type_name, filters)
    order_by = ", ".join(f"{e} {'DESC' if d else 'ASC'}" for e, d, _ in order.columns)
    where = " AND ".join(source_conds + conds)
    rows: list[Row] = []
    for part, part_params in parts:  # in order: each part's rows follow the previous ones'
        sql = (
            f"SELECT a.* FROM {source}{order.joins} WHERE {where} AND {part} "
            f"ORDER BY {order_by} LIMIT ?"
        )
        rows += conn.execute(
            sql, [*source_params, *order.join_params, *params, *part_params, size - len(rows)]
        ).fetchall()
        if len(rows) == size:
            break
    next_marker = str(rows[-1][0]) if len(rows) == size else None
    return rows, next_marker


# First sort columns whose ties an index reads in order: artifacts_by_type_created and
# artifacts_by_created are (type_name?, created_at, id DESC), read backwards.
_TIE_SEEK = ("a.created_at",)


def _after_marker_parts(
    columns: list[tuple[str, bool, bool]], marker: Sequence[Any]
) -> list[tuple[str, list[Any]]]:
    """The rows after the marker as conditions whose results follow one another in the
    full order. Ordered by created_at, the marker's own timestamp comes first (``= ?`` and
    the rest of the chain: one index seek), then the strictly older (or newer) ones (an
    index range): one OR-chain would start at the tie group's first row and step over
    every row of it before the marker, so a page deep in a million equal timestamps read
    the million."""
    (expr, desc, nullable), first = columns[0], marker[0]
    if expr not in _TIE_SEEK or nullable or first is None or len(columns) == 1:
        return [_after_marker(columns, marker)]
    rest_sql, rest_params = _after_marker(columns[1:], marker[1:])
    return [
        (f"{expr} = ? AND {rest_sql}", [first, *rest_params]),
        (f"{expr} {'<' if desc else '>'} ?", [first]),
    ]


def _marker_values(
    conn: sqlite3.Connection,
    marker: str,
    order: _Order,
    type_name: str | None,
    owner: str | None,
    filters: Sequence[Filter],
    latest: bool,
) -> Sequence[Any]:
    if not isinstance(marker, str):
        raise InvalidInput(f"marker must be an artifact id, not {marker!r}")
    _utf8(marker, "marker")
    if latest:
        # the marker must belong to the latest set, which depends on the filters
        conds, params = _where(type_name=type_name, owner=owner, filters=filters, latest=True)
    else:
        conds, params = _scope("a", type_name, owner)
    exprs = ", ".join(e for e, _, _ in order.columns)
    row = conn.execute(
        f"SELECT {exprs} FROM artifacts a{order.joins} WHERE a.id = ? AND {' AND '.join(conds)}",
        [*order.join_params, marker, *params],
    ).fetchone()
    if row is None:
        raise NotFound(f"marker {marker!r} not found")
    return tuple(row)


def count(
    conn: sqlite3.Connection,
    *,
    type_name: str | None,
    atype: ArtifactType | None,
    owner: str | None,
    filters: Sequence[Filter],
    latest: bool,
) -> int:
    """How many artifacts the listing holds, ignoring paging."""
    type_name = _resolve_type(type_name, atype)
    conds, params = _where(type_name=type_name, owner=owner, filters=filters, latest=latest)
    source, source_params, source_conds = _source(conn, type_name, filters)
    row = conn.execute(
        f"SELECT count(*) FROM {source} WHERE {' AND '.join(source_conds + conds)}",
        [*source_params, *params],
    ).fetchone()
    return int(row[0])
