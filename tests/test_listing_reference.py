"""select_page / count against a plain-Python reference of GLARE-SEMANTICS (filters,
versions, latest, sort, keyset paging) over random small catalogs.

The reference works on structured values the strategies produced (version parts, Python
datetimes, typed property values), never on glarelite's parsing or version keys, so it
checks those too.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glarelite import _query
from glarelite.types import Property, make_type
from tests.fixtures.rows import EPOCH, insert_artifact, new_db, ts

THING = make_type(
    "thing",
    properties={
        "int1": "integer",
        "float1": "number",
        "str1": "string",
        "bool1": "boolean",
        "lst": Property(kind="list", items="string"),
        "d": Property(kind="dict", items="integer"),
    },
)
OTHER = make_type("other", properties={"int1": "integer"})

NAMES = ["a", "b", "ab", "a,b", "B", "a_b"]
OWNERS = ["alice", "bob", "carol"]
STATUSES = ["drafted", "active", "deactivated", "deleted"]
TAGS = ["red", "blue", "env:prod"]
STRS = ["x", "y", "X", "x,y", "z:z", 'q"t']
PATTERNS = ["x%", "%y", "_", "X%", "%,%", "%", "a%", "%b", "a_b", "A%"]
DICT_KEYS = ["a", "b", "c"]
PRE = [None, "1", "2", "11", "alpha", "alpha.1", "beta.2", "beta.11"]
BUILD = [None, "b1", "b2", "b10"]
ORDERING = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Ver:
    major: int
    minor: int
    patch: int
    pre: str | None
    build: str | None

    @property
    def text(self) -> str:
        out = f"{self.major}.{self.minor}.{self.patch}"
        out += f"-{self.pre}" if self.pre else ""
        return out + (f"+{self.build}" if self.build else "")

    @property
    def precedence(self) -> tuple[Any, ...]:
        # a release is above its pre-releases; numeric identifiers below alphanumeric
        if self.pre is None:
            return (self.major, self.minor, self.patch, 1, ())
        idents = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in self.pre.split("."))
        return (self.major, self.minor, self.patch, 0, idents)

    def spelled(self, short: bool) -> str:
        """The text a user may type: partial forms coerce (1 -> 1.0.0, 1.2 -> 1.2.0)."""
        if short and self.pre is None and self.build is None and self.patch == 0:
            return str(self.major) if self.minor == 0 else f"{self.major}.{self.minor}"
        return self.text


versions = st.builds(
    Ver,
    st.integers(0, 2),
    st.sampled_from([0, 1, 9, 10]),
    st.integers(0, 1),
    st.sampled_from(PRE),
    st.sampled_from(BUILD),
)


@dataclass
class Art:
    id: str
    type_name: str
    name: str
    version: Ver
    owner: str
    visibility: str
    status: str
    tags: set[str]
    created_at: int
    updated_at: int
    activated_at: int | None
    props: dict[str, Any] = field(default_factory=dict)

    def base(self, name: str) -> Any:
        if name == "version":
            return (self.version.precedence, self.version.text)
        if name in ("created_at", "updated_at", "activated_at"):
            value = getattr(self, name)
            return None if value is None else ts(value)
        return getattr(self, name)


@st.composite
def catalogs(draw: st.DrawFn) -> list[Art]:
    n = draw(st.integers(3, 24))
    ids = draw(st.lists(st.integers(0, 63), min_size=n, max_size=n, unique=True))
    arts = []
    for i in ids:
        status = draw(st.sampled_from(STATUSES))
        created = draw(st.integers(0, 5))
        art = Art(
            id=f"{i:02x}",
            type_name=draw(st.sampled_from(["thing", "thing", "thing", "other"])),
            name=draw(st.sampled_from(NAMES)),
            version=draw(versions),
            owner=draw(st.sampled_from(OWNERS)),
            visibility=draw(st.sampled_from(["private", "public"])),
            status=status,
            tags=set(draw(st.lists(st.sampled_from(TAGS), max_size=3))),
            created_at=created,
            updated_at=created + draw(st.integers(0, 3)),
            activated_at=(
                None if status in ("drafted", "deleted") else draw(st.integers(0, 8) | st.none())
            ),
        )
        props: dict[str, Any] = {"int1": draw(st.none() | st.integers(-3, 3))}
        if art.type_name == "thing":
            props["float1"] = draw(st.none() | st.sampled_from([-1.5, 0.0, 2.0, 2.5]))
            props["str1"] = draw(st.none() | st.sampled_from(STRS))
            props["bool1"] = draw(st.none() | st.booleans())
            props["lst"] = draw(st.lists(st.sampled_from(STRS), max_size=3))
            props["d"] = draw(
                st.dictionaries(st.sampled_from(DICT_KEYS), st.integers(-2, 2), max_size=3)
            )
        art.props = {k: v for k, v in props.items() if v is not None}
        arts.append(art)
    return arts


# -- filters: a rendered expression plus the predicate the reference applies ---------------


@dataclass(frozen=True)
class Flt:
    text: str  # "field=expr" as a user writes it
    combiner: str
    test: Any  # Art -> bool
    constrains: bool = True  # 'tags=' adds no constraint at all


def _quote(value: str) -> str:
    if "," in value or '"' in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _like(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.ASCII | re.DOTALL)


def _compare(op: str, have: Any, want: Any) -> bool:
    if op == "like":
        return isinstance(have, str) and _like(want).fullmatch(have) is not None
    if op == "in":
        return bool(have in want)
    return bool(
        {
            "eq": have == want,
            "neq": have != want,
            "gt": have > want,
            "gte": have >= want,
            "lt": have < want,
            "lte": have <= want,
        }[op]
    )


def _render(draw: st.DrawFn, field_name: str, op: str, raw: list[str]) -> tuple[str, str]:
    combiner = draw(st.sampled_from(["", "and:", "or:"]))
    if op == "in":
        expr = "in:" + ",".join(_quote(v) for v in raw)
    elif op == "eq" and ":" not in raw[0] and draw(st.booleans()):
        expr = raw[0]  # eq is the default operator
    else:
        expr = f"{op}:{raw[0]}"
    return f"{field_name}={combiner}{expr}", ("or" if combiner == "or:" else "and")


def _parse_when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@st.composite
def filters(draw: st.DrawFn, typed: bool, arts: list[Art], only: list[str] | None = None) -> Flt:
    fields = ["name", "owner", "status", "visibility", "id", "version", "created_at"]
    fields += ["updated_at", "activated_at", "tags", "tags-any"]
    if typed:
        fields += ["int1", "float1", "str1", "bool1", "lst", "d", "d.a", "d.b"]
    name = draw(st.sampled_from(only or fields))

    if name in ("tags", "tags-any"):
        tags = draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True))
        combiner = draw(st.sampled_from(["", "and:", "or:"]))
        any_of = name == "tags-any"
        prefix = ""
        if name == "tags" and draw(st.booleans()):
            prefix, any_of = "in:", True
        wanted = set(tags)

        def tag_test(art: Art) -> bool:
            return bool(art.tags & wanted) if any_of else wanted <= art.tags

        return Flt(
            f"{name}={combiner}{prefix}{','.join(tags)}",
            "or" if combiner == "or:" else "and",
            tag_test,
            constrains=bool(tags),
        )

    if name == "version":
        op = draw(st.sampled_from(["eq", "neq", "in", *ORDERING]))
        # mostly versions near the catalog's: the same precedence, any build
        vers = [a.version for a in arts]
        near = [Ver(v.major, v.minor, v.patch, v.pre, b) for v in vers for b in BUILD]
        some = (
            st.one_of(st.sampled_from(near), st.sampled_from(near), versions) if near else versions
        )
        vs = draw(st.lists(some, min_size=1, max_size=3 if op == "in" else 1))
        raw = [v.spelled(draw(st.booleans())) for v in vs]
        text, comb = _render(draw, name, op, raw)
        if op in ORDERING:
            return Flt(text, comb, lambda a: _compare(op, a.version.precedence, vs[0].precedence))
        wanted = [v.text for v in vs]  # identity: build metadata included
        return Flt(
            text, comb, lambda a: _compare(op, a.version.text, wanted if op == "in" else wanted[0])
        )

    if name.endswith("_at"):
        op = draw(st.sampled_from(ORDERING))
        k = draw(st.integers(0, 9))
        spelled = draw(
            st.sampled_from(
                [
                    ts(k),
                    f"2026-01-01T00:00:{k:02d}Z",
                    f"2026-01-01T01:00:{k:02d}+01:00",
                    f"2026-01-01 00:00:{k:02d}",
                    f"2025-12-31T23:00:{k:02d}-01:00",
                ]
            )
        )
        text, comb = _render(draw, name, op, [spelled])
        when = _parse_when(spelled)

        def time_test(art: Art) -> bool:
            value = art.base(name)
            return value is not None and _compare(op, _parse_when(value), when)

        return Flt(text, comb, time_test)

    base_values = {
        "name": [*NAMES, "zz"],
        "owner": [*OWNERS, "dave"],
        "status": STATUSES,
        "visibility": ["private", "public"],
        "id": [a.id for a in arts] + ["zz"],
    }
    if name in base_values:
        ops = ["eq", "neq", "in"] + (["like"] if name == "name" else [])
        op = draw(st.sampled_from(ops))
        pool = PATTERNS if op == "like" else base_values[name]
        raw = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3 if op == "in" else 1))
        text, comb = _render(draw, name, op, raw)
        want: Any = raw if op == "in" else raw[0]
        return Flt(text, comb, lambda a: _compare(op, a.base(name), want))

    if name == "d":
        op = draw(st.sampled_from(["eq", "in"]))
        keys = draw(st.lists(st.sampled_from([*DICT_KEYS, "z"]), min_size=1, max_size=2))
        text, comb = _render(draw, name, op, keys if op == "in" else keys[:1])
        wanted_keys = set(keys if op == "in" else keys[:1])
        return Flt(text, comb, lambda a: bool(set(a.props.get("d", {})) & wanted_keys))

    # property values: (op choices, candidate text -> typed value)
    numeric = ["eq", "neq", "in", *ORDERING]
    if name in ("int1", "d.a", "d.b"):
        ops, pool = numeric, {str(i): i for i in range(-3, 4)}
    elif name == "float1":
        pool = {"-1.5": -1.5, "0": 0.0, "2": 2.0, "2.5": 2.5, "1e0": 1.0}
        ops = numeric
    elif name == "bool1":
        ops, pool = ["eq", "neq"], {"true": True, "false": False, "yes": True, "0": False}
    else:  # str1, lst
        ops, pool = ["eq", "neq", "in", "like"], {s: s for s in STRS}
    op = draw(st.sampled_from(ops))
    if op == "like":
        pool = {p: p for p in PATTERNS}
    raw = draw(st.lists(st.sampled_from(sorted(pool)), min_size=1, max_size=3 if op == "in" else 1))
    text, comb = _render(draw, name, op, raw)
    typed_want: Any = [pool[r] for r in raw] if op == "in" else pool[raw[0]]

    def prop_test(art: Art) -> bool:
        if name.startswith("d."):
            values = art.props.get("d", {})
            key = name[2:]
            have = [values[key]] if key in values else []
        elif name == "lst":
            have = art.props.get("lst", [])  # any element matches
        else:
            have = [art.props[name]] if name in art.props else []  # missing matches nothing
        return any(_compare(op, h, typed_want) for h in have)

    return Flt(text, comb, prop_test)


SORTABLE_BASE = ["id", "name", "owner", "status", "visibility", "version", "created_at"]
SORTABLE_BASE += ["updated_at", "activated_at", "type_name"]
SORTABLE_PROPS = ["int1", "float1", "str1", "bool1"]


@st.composite
def sorts(draw: st.DrawFn, typed: bool, only: str | None = None) -> list[tuple[str, str | None]]:
    if only:
        return [(only, draw(st.sampled_from([None, "asc", "desc"])))]
    pool = SORTABLE_BASE + (SORTABLE_PROPS if typed else [])
    # nullable keys and version (two columns) first more often: their paging is subtle
    first = ["activated_at", "version"] + (["int1", "str1", "bool1"] if typed else [])
    keys = draw(st.lists(st.sampled_from(first), max_size=1))
    keys += draw(st.lists(st.sampled_from(pool), max_size=2))
    keys = list(dict.fromkeys(keys))
    return [(k, draw(st.sampled_from([None, "asc", "desc"]))) for k in keys]


# -- the reference -----------------------------------------------------------------------


def reference(
    arts: list[Art],
    *,
    typed: bool,
    owner: str | None,
    flts: list[Flt],
    sort: list[tuple[str, str | None]],
    latest: bool,
) -> list[str]:
    def visible(a: Art) -> bool:
        return (
            a.status != "deleted"
            and (not typed or a.type_name == "thing")
            # a non-admin reads its own and public artifacts, never deactivated ones
            # (Glare's download_deactivated, applied to every read: issue 15)
            and (
                owner is None
                or ((a.owner == owner or a.visibility == "public") and a.status != "deactivated")
            )
        )

    active = [f for f in flts if f.constrains]
    ands = [f for f in active if f.combiner == "and"]
    ors = [f for f in active if f.combiner == "or"]

    def passes(a: Art) -> bool:
        return all(f.test(a) for f in ands) and (not ors or any(f.test(a) for f in ors))

    rows = [a for a in arts if visible(a) and passes(a)]
    if latest:

        def rank(a: Art) -> tuple[Any, ...]:
            return (a.version.precedence, a.version.text)

        best: dict[tuple[str, str], Art] = {}
        for a in rows:
            cur = best.get((a.type_name, a.name))
            # highest precedence, then build text, then the smallest id
            if cur is None or rank(a) > rank(cur) or (rank(a) == rank(cur) and a.id < cur.id):
                best[(a.type_name, a.name)] = a
        rows = list(best.values())

    keys = [(k, d != "asc") for k, d in sort] or [("created_at", True)]
    if "id" not in [k for k, _ in keys]:
        keys.append(("id", False))

    def value(a: Art, k: str) -> Any:
        return a.props.get(k) if k in SORTABLE_PROPS else a.base(k)

    def cmp(x: Art, y: Art) -> int:
        for k, desc in keys:
            vx, vy = value(x, k), value(y, k)
            if vx == vy:
                continue
            # a missing value sorts lowest
            lower = vx is None or (vy is not None and vx < vy)
            return (1 if lower else -1) if desc else (-1 if lower else 1)
        return 0

    return [a.id for a in sorted(rows, key=functools.cmp_to_key(cmp))]


def build(arts: list[Art]) -> tuple[sqlite3.Connection, list[Art]]:
    conn = new_db(THING, OTHER)
    kept = []
    for a in arts:
        try:
            insert_artifact(
                conn,
                THING if a.type_name == "thing" else OTHER,
                id=a.id,
                name=a.name,
                version=a.version.text,
                owner=a.owner,
                visibility=a.visibility,
                status=a.status,
                tags=a.tags,
                properties=a.props,
                created_at=a.created_at,
                updated_at=a.updated_at,
                activated_at=a.activated_at,
            )
        except sqlite3.IntegrityError:
            continue  # a uniqueness clash: this artifact could not exist
        kept.append(a)
    return conn, kept


PROPERTY_FIELDS = ["tags", "tags-any", "int1", "float1", "str1", "bool1", "lst", "d", "d.a", "d.b"]


@st.composite
def scenarios(draw: st.DrawFn, focus: str | None = None) -> dict[str, Any]:
    """A catalog, a listing request over it, and how the SQL is steered. ``focus``
    'version' or 'props' draws at least one filter, all of that group."""
    typed = focus == "props" or draw(st.booleans()) or draw(st.booleans())
    arts = draw(catalogs())
    only = {"version": ["version"], "props": PROPERTY_FIELDS}.get(focus or "")
    flt = filters(typed, arts, only)
    return {
        "arts": arts,
        "typed": typed,
        "owner": draw(st.sampled_from([None, None, *OWNERS, "dave"])),  # None: admin
        "flts": draw(st.lists(flt, min_size=1 if focus else 0, max_size=2)),
        "sort": draw(sorts(typed, "version" if focus == "version" else None)),
        "sort_as_list": draw(st.booleans()),
        "latest": draw(st.integers(0, 3)) == 0,
        "limit": draw(st.sampled_from([1, 2, 3, 5, None])),
        "drive_max": draw(st.sampled_from([-1, _query.DRIVE_MAX])),
    }


def check(s: dict[str, Any]) -> None:
    """count() and a walk over every page by markers agree with the reference."""
    conn, arts = build(s["arts"])
    atype = THING if s["typed"] else None
    keys = [k if d is None else f"{k}:{d}" for k, d in s["sort"]]
    sort: Any = (keys if s["sort_as_list"] else ",".join(keys)) or None
    expected = reference(
        arts,
        typed=s["typed"],
        owner=s["owner"],
        flts=s["flts"],
        sort=s["sort"],
        latest=s["latest"],
    )
    old, _query.DRIVE_MAX = _query.DRIVE_MAX, s["drive_max"]
    try:
        parsed = _query.parse_filters([f.text for f in s["flts"]], atype)
        common = {
            "type_name": "thing" if s["typed"] else None,
            "atype": atype,
            "owner": s["owner"],
            "filters": parsed,
            "latest": s["latest"],
        }
        assert _query.count(conn, **common) == len(expected)
        size = s["limit"] or _query.DEFAULT_LIMIT
        walked: list[str] = []
        marker = None
        for _ in range(len(expected) + 2):
            rows, marker = _query.select_page(
                conn, sort=sort, limit=s["limit"], marker=marker, **common
            )
            assert len(rows) <= size
            # a next marker exactly when the page is full
            assert marker == (rows[-1][0] if len(rows) == size else None)
            walked += [r[0] for r in rows]
            if marker is None:
                break
        assert walked == expected
    finally:
        _query.DRIVE_MAX = old
        conn.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_listing_matches_reference(s: dict[str, Any]) -> None:
    check(s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(focus="version"))
def test_version_filters_and_sort_match_reference(s: dict[str, Any]) -> None:
    check(s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(focus="props"))
def test_property_and_tag_filters_match_reference(s: dict[str, Any]) -> None:
    check(s)


def test_reference_epoch_matches_fixture() -> None:
    # the reference reads fixture timestamps back with fromisoformat
    assert _parse_when(ts(0)) == EPOCH
