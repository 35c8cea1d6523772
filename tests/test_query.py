"""glarelite._query on its own: filters, versions, sort and keyset pagination, run on an
in-memory SQLite with schema.sql and rows inserted directly (GLARE-SEMANTICS.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from glarelite import _query
from glarelite._query import Filter, count, parse_filters, parse_sort, select_page, split_in
from glarelite.errors import InvalidInput, NotFound
from glarelite.types import ArtifactType, Property, make_type
from tests.fixtures.rows import insert_artifact, new_db, ts

THING = make_type(
    "thing",
    blobs=["image"],
    blob_dicts=["files"],
    properties={
        "int1": "integer",
        "float1": "number",
        "str1": "string",
        "bool1": "boolean",
        "lst": Property(kind="list", items="string"),
        "ilst": Property(kind="list", items="integer"),
        "d": Property(kind="dict", items="integer"),
    },
)
OTHER = make_type("other", properties={"int1": "string"})


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    db = new_db(THING, OTHER)
    yield db
    db.close()


def add(conn: sqlite3.Connection, id: str, name: str | None = None, **kw: Any) -> str:
    """An artifact named after its id unless told otherwise (names + versions are unique)."""
    atype = kw.pop("atype", THING)
    return insert_artifact(conn, atype, id=id, name=name or id, **kw)


def page(
    conn: sqlite3.Connection,
    filters: Any = (),
    *,
    atype: ArtifactType | None = THING,
    owner: str | None = None,
    sort: Any = None,
    limit: int | None = 1000,
    marker: str | None = None,
    latest: bool = False,
) -> tuple[list[str], str | None]:
    rows, next_marker = select_page(
        conn,
        type_name=atype.name if atype else None,
        atype=atype,
        owner=owner,
        filters=parse_filters(filters, atype),
        sort=sort,
        limit=limit,
        marker=marker,
        latest=latest,
    )
    return [r[0] for r in rows], next_marker


def ids(conn: sqlite3.Connection, filters: Any = (), **kw: Any) -> list[str]:
    return page(conn, filters, **kw)[0]


def matching(conn: sqlite3.Connection, filters: Any = (), **kw: Any) -> set[str]:
    """Ids matching, checked against count() as well."""
    found = ids(conn, filters, **kw)
    kw.pop("sort", None)
    atype = kw.get("atype", THING)
    total = count(
        conn,
        type_name=atype.name if atype else None,
        atype=atype,
        owner=kw.get("owner"),
        filters=parse_filters(filters, atype),
        latest=kw.get("latest", False),
    )
    assert total == len(found)
    return set(found)


def invalid(
    conn: sqlite3.Connection, filters: Any = (), match: str | None = None, **kw: Any
) -> None:
    with pytest.raises(InvalidInput, match=match):
        page(conn, filters, **kw)


# -- parsing -----------------------------------------------------------------------------


def test_defaults_are_and_and_eq() -> None:
    (f,) = parse_filters(["name=foo"], THING)
    assert (f.field, f.combiner, f.op, f.values) == ("name", "and", "eq", ("foo",))
    (f,) = parse_filters(["int1=or:gt:5"], THING)
    assert (f.combiner, f.op, f.values) == ("or", "gt", (5,))
    (f,) = parse_filters(["str1=or:x"], THING)
    assert (f.combiner, f.op, f.values) == ("or", "eq", ("x",))


def test_the_three_input_forms_agree() -> None:
    as_strings = parse_filters(["int1=gt:1000", "int1=lt:2000", "name=a"], THING)
    as_pairs = parse_filters([("int1", "gt:1000"), ("int1", "lt:2000"), ("name", "a")], THING)
    as_mapping = parse_filters({"int1": ["gt:1000", "lt:2000"], "name": "a"}, THING)
    assert as_strings == as_pairs == as_mapping
    assert [f.values for f in as_strings] == [(1000,), (2000,), ("a",)]


def test_plain_python_values_mean_eq() -> None:
    assert parse_filters({"int1": 5, "bool1": True}, THING) == parse_filters(
        ["int1=5", "bool1=true"], THING
    )


@pytest.mark.parametrize("bad", ["name=foo", 5, [("name",)], ["name"], [None], {"name": None}])
def test_malformed_filter_containers(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_filters(bad, THING)


@pytest.mark.parametrize(
    ("filters", "kw"),
    [
        (["name=\ud800"], {}),
        (["str1=in:a,\ud800"], {}),
        (["tags=\ud800"], {}),
        (["\ud800=1"], {}),
        ([], {"marker": "\ud800"}),
        ([], {"marker": 5}),
    ],
)
def test_text_that_sqlite_cannot_bind(conn: sqlite3.Connection, filters: Any, kw: Any) -> None:
    invalid(conn, filters, **kw)


def test_split_in_quotes() -> None:
    assert split_in('"a,b",c') == ["a,b", "c"]
    assert split_in("a,b") == ["a", "b"]
    assert split_in('"x\\"y",z') == ['x"y', "z"]
    assert split_in("a,") == ["a", ""]
    assert split_in("") == [""]
    with pytest.raises(InvalidInput, match="unclosed"):
        split_in('"a,b')
    with pytest.raises(InvalidInput, match="closing quote"):
        split_in('"a"b,c')
    with pytest.raises(InvalidInput, match="double quote"):
        split_in('a"b",c')


# -- filters on base fields --------------------------------------------------------------


def test_string_base_fields(conn: sqlite3.Connection) -> None:
    add(conn, "a", "alpha", owner="o1", status="active")
    add(conn, "b", "beta", owner="o2", status="drafted")
    add(conn, "c", "a,b", owner="o1", status="deactivated", visibility="private")
    assert matching(conn, ["name=alpha"]) == {"a"}
    assert matching(conn, ["name=neq:alpha"]) == {"b", "c"}
    assert matching(conn, ['name=in:"a,b",beta']) == {"b", "c"}
    assert matching(conn, ["owner=o1"]) == {"a", "c"}
    assert matching(conn, ["owner=in:o2,o3"]) == {"b"}
    assert matching(conn, ["status=active"]) == {"a"}
    assert matching(conn, ["status=neq:active"]) == {"b", "c"}
    assert matching(conn, ["visibility=private"]) == {"a", "b", "c"}
    assert matching(conn, ["id=in:a,b,zzz"]) == {"a", "b"}


def test_like_on_name(conn: sqlite3.Connection) -> None:
    add(conn, "a", "alpha")
    add(conn, "b", "alps")
    add(conn, "c", "Also")
    add(conn, "d", "beta")
    assert matching(conn, ["name=like:al%"]) == {"a", "b", "c"}  # SQLite LIKE: ASCII nocase
    assert matching(conn, ["name=like:alp_"]) == {"b"}
    assert matching(conn, ["name=like:%ta"]) == {"d"}


@pytest.mark.parametrize(
    "expr",
    [
        "owner=like:o%",
        "status=like:a%",
        "id=gt:a",
        "name=gt:a",
        "status=bogus",
        "visibility=shared",
        "created_at=eq:2026-01-01T00:00:00Z",
        "created_at=2026-01-01T00:00:00Z",
        "updated_at=neq:2026-01-01",
        "activated_at=in:2026-01-01",
        "created_at=gt:yesterday",
        "created_at=gt:2026-13-01",
        "description=foo",
        "image=foo",
        "files=foo",
        "properties=foo",
        "nosuch=1",
        "name=foo:bar",
        "name=regex:^a",
        "version=like:1%",
        "version=invalid",
        "version=",
        "version=in:1.0,-1",
    ],
)
def test_invalid_base_filters(conn: sqlite3.Connection, expr: str) -> None:
    invalid(conn, [expr], match=expr.split("=")[0])


def test_colon_in_value_needs_explicit_operator(conn: sqlite3.Connection) -> None:
    add(conn, "a", "foo:bar")
    with pytest.raises(InvalidInput, match="unknown operator 'foo'"):
        parse_filters(["name=foo:bar"], THING)
    assert matching(conn, ["name=eq:foo:bar"]) == {"a"}


def test_timestamps_take_ordering_operators(conn: sqlite3.Connection) -> None:
    add(conn, "a", created_at=10, activated_at=10, status="active")
    add(conn, "b", created_at=20, updated_at=40)
    add(conn, "c", created_at=30, activated_at=30, status="active")
    assert matching(conn, [f"created_at=gt:{ts(10)}"]) == {"b", "c"}
    assert matching(conn, [f"created_at=gte:{ts(10)}"]) == {"a", "b", "c"}
    assert matching(conn, ["created_at=lt:2026-01-01T00:00:20Z"]) == {"a"}
    assert matching(conn, ["created_at=lte:2026-01-01T01:00:20+01:00"]) == {"a", "b"}
    assert matching(conn, ["created_at=gt:2026-01-01"]) == {"a", "b", "c"}
    assert matching(conn, ["updated_at=gt:2026-01-01T00:00:35"]) == {"b"}
    # a NULL activated_at matches no comparison
    assert matching(conn, ["activated_at=gt:2020-01-01"]) == {"a", "c"}


def test_deleted_are_never_listed(conn: sqlite3.Connection) -> None:
    add(conn, "a", status="active")
    add(conn, "b", status="deleted")
    assert matching(conn) == {"a"}
    assert matching(conn, ["status=deleted"]) == set()
    assert matching(conn, ["status=neq:active"]) == set()


# -- versions ----------------------------------------------------------------------------


@pytest.fixture
def versioned(conn: sqlite3.Connection) -> sqlite3.Connection:
    versions = ["1.0.0", "1.0.0+b1", "1.2.0", "1.9.0", "1.10.0", "2.0.0-1", "2.0.0-alpha"]
    versions += ["2.0.0-beta.2", "2.0.0-beta.11", "2.0.0", "0.0.0"]
    for i, v in enumerate(versions):
        add(conn, f"v{i:02d}-{v}", "pkg", version=v, created_at=i)
    return conn


def _versions(found: Any) -> list[str]:
    return [i.split("-", 1)[1] for i in found]


def test_version_filters_identity_vs_precedence(versioned: sqlite3.Connection) -> None:
    def v(expr: str) -> set[str]:
        return set(_versions(matching(versioned, [f"version={expr}"])))

    assert v("1.0.0") == {"1.0.0"}
    assert v("1.0.0+b1") == {"1.0.0+b1"}
    assert v("1") == {"1.0.0"}  # coerced: 1 -> 1.0.0
    assert v("neq:1.0.0") == v("gte:0.0.0") - {"1.0.0"}
    assert v("in:1.0,1.2") == {"1.0.0", "1.2.0"}
    assert v("gt:1.0.0") == v("gte:1.2") and "1.0.0+b1" not in v("gt:1.0.0")
    assert v("gte:1.0.0") >= {"1.0.0", "1.0.0+b1"}
    assert v("lt:1.0.0+zzz") == {"0.0.0"}  # build metadata ignored by ordering
    assert v("gte:1.2") == v("gte:1.2.0")
    assert v("gt:1.9.0") >= {"1.10.0"} and "1.10.0" not in v("lt:1.9.0")
    assert v("lt:2.0.0") >= {"2.0.0-1", "2.0.0-alpha", "2.0.0-beta.11"}
    assert v("gt:2.0.0-beta.2") == {"2.0.0-beta.11", "2.0.0"}
    assert v("lt:2.0.0-alpha") == v("lte:2.0.0-1")
    assert v("gte:1.0.0.4") == v("gte:1.0.0")  # 4th component -> build, ignored


def test_version_sort_is_precedence_then_build(versioned: sqlite3.Connection) -> None:
    expected = ["0.0.0", "1.0.0", "1.0.0+b1", "1.2.0", "1.9.0", "1.10.0", "2.0.0-1"]
    expected += ["2.0.0-alpha", "2.0.0-beta.2", "2.0.0-beta.11", "2.0.0"]
    assert _versions(ids(versioned, sort="version:asc")) == expected
    assert _versions(ids(versioned, sort="version")) == expected[::-1]


def test_latest_keeps_the_highest_version_of_each_name(conn: sqlite3.Connection) -> None:
    add(conn, "p1", "pkg", version="1.9.0")
    add(conn, "p2", "pkg", version="1.10.0")
    add(conn, "p3", "pkg", version="2.0.0-beta", owner="bob")  # private to bob
    add(conn, "q1", "other", version="1.0.0")
    add(conn, "q2", "other", version="1.0.0+b2")
    add(conn, "q3", "other", version="1.0.0+b10")
    add(conn, "r1", "gone", version="3.0.0", status="deleted")
    add(conn, "r2", "gone", version="2.0.0")
    add(conn, "s1", "s", version="1.0.0", visibility="public", owner="bob", status="active")
    add(conn, "s2", "s", version="1.0.0", owner="alice")
    add(conn, "x1", "pkg", version="9.0.0", atype=OTHER)
    assert matching(conn, latest=True) == {"p3", "q2", "r2", "s1"}
    # among what alice sees: bob's beta is invisible to her; build text breaks ties
    assert matching(conn, owner="alice", latest=True) == {"p2", "q2", "r2", "s1"}
    # among what passes the other filters
    assert matching(conn, ["version=lt:1.10.0"], latest=True) == {"p1", "q2", "s1"}
    assert matching(conn, ["name=pkg"], latest=True) == {"p3"}
    # across types: one per (type, name)
    assert matching(conn, ["name=pkg"], atype=None, latest=True) == {"p3", "x1"}


# -- properties --------------------------------------------------------------------------


@pytest.fixture
def props(conn: sqlite3.Connection) -> sqlite3.Connection:
    add(conn, "a", properties={"int1": 1500, "float1": 150.5, "str1": "red", "bool1": True})
    add(conn, "b", properties={"int1": 500, "float1": 250.0, "str1": "green", "bool1": False})
    add(conn, "c", properties={"int1": 3000, "str1": "a,b", "lst": ["x", "y"], "d": {"k": 1}})
    add(conn, "e", properties={"lst": ["z"], "ilst": [1, 5], "d": {"k": 7, "j": 2}})
    add(conn, "f", properties={"lst": [], "d": {}})
    add(conn, "o", atype=OTHER, properties={"int1": "1500"})
    return conn


def test_integer_and_number_operators(props: sqlite3.Connection) -> None:
    assert matching(props, ["int1=1500"]) == {"a"}
    assert matching(props, ["int1=gt:1000", "int1=lt:2000"]) == {"a"}
    assert matching(props, ["int1=gte:1500"]) == {"a", "c"}
    assert matching(props, ["int1=lte:1500"]) == {"a", "b"}
    assert matching(props, ["int1=in:500,3000"]) == {"b", "c"}
    # a missing property matches no operator, neq included
    assert matching(props, ["int1=neq:500"]) == {"a", "c"}
    assert matching(props, ["float1=lt:200"]) == {"a"}
    assert matching(props, ["float1=gt:200"]) == {"b"}
    assert matching(props, ["float1=250"]) == {"b"}  # numeric, not text, comparison
    assert matching(props, ["int1=gt:999"]) == {"a", "c"}  # '999' > '1500' as text


def test_string_and_boolean_operators(props: sqlite3.Connection) -> None:
    assert matching(props, ["str1=red"]) == {"a"}
    assert matching(props, ["str1=neq:red"]) == {"b", "c"}
    assert matching(props, ['str1=in:"a,b",green']) == {"b", "c"}
    assert matching(props, ["str1=like:%e%"]) == {"a", "b"}
    assert matching(props, ["bool1=yes"]) == {"a"}
    assert matching(props, ["bool1=eq:false"]) == {"b"}
    assert matching(props, ["bool1=neq:true"]) == {"b"}


def test_list_matches_when_any_element_matches(props: sqlite3.Connection) -> None:
    assert matching(props, ["lst=x"]) == {"c"}
    assert matching(props, ["lst=in:y,z"]) == {"c", "e"}
    assert matching(props, ["lst=neq:x"]) == {"c", "e"}  # c has y
    assert matching(props, ["lst=like:%"]) == {"c", "e"}  # f's list is empty
    assert matching(props, ["ilst=gt:4"]) == {"e"}
    assert matching(props, ["ilst=lt:1"]) == set()


def test_dict_filters(props: sqlite3.Connection) -> None:
    assert matching(props, ["d=k"]) == {"c", "e"}
    assert matching(props, ["d=eq:j"]) == {"e"}
    assert matching(props, ["d=in:j,zz"]) == {"e"}
    assert matching(props, ["d.k=1"]) == {"c"}
    assert matching(props, ["d.k=gt:1"]) == {"e"}
    assert matching(props, ["d.k=in:1,7"]) == {"c", "e"}
    assert matching(props, ["d.j=lt:5"]) == {"e"}
    assert matching(props, ["d.nope=neq:1"]) == set()


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("int1=lala", "int1"),
        ("int1=in:1,lala", "lala"),
        ("int1=like:1%", "like"),
        ("float1=like:1", "like"),
        ("float1=lt:abc", "abc"),
        ("int1=1.5", "1.5"),
        ("bool1=maybe", "maybe"),
        ("bool1=gt:true", "gt"),
        ("bool1=in:true,false", "in"),
        ("str1=gt:a", "gt"),
        ("lst=gt:a", "gt"),
        ("ilst=like:1", "like"),
        ("d=neq:k", "neq"),
        ("d=gt:k", "gt"),
        ("d=like:k", "like"),
        ("d=eq:", "dict key"),
        ("d.k=lala", "lala"),
        ("d.k=like:1", "like"),
        ("int1.k=1", "dict"),
        ("d.=1", "dict key"),
        ("image=x", "blob"),
        ("files.a=x", "blob"),
        ("nosuch=x", "nosuch"),
        ("int1=bogus:1", "unknown operator"),
        ("int1=EQ:1", "unknown operator"),
    ],
)
def test_invalid_property_filters(props: sqlite3.Connection, expr: str, match: str) -> None:
    invalid(props, [expr], match=match)


def test_property_filter_needs_a_type(props: sqlite3.Connection) -> None:
    invalid(props, ["int1=5"], atype=None, match="without an artifact type")
    assert matching(props, ["name=neq:a"], atype=None) == {"b", "c", "e", "f", "o"}


def test_types_do_not_mix(props: sqlite3.Connection) -> None:
    assert matching(props, atype=OTHER) == {"o"}
    assert matching(props, ["int1=1500"], atype=OTHER) == {"o"}  # a string there


# -- tags and combiners ------------------------------------------------------------------


@pytest.fixture
def tagged(conn: sqlite3.Connection) -> sqlite3.Connection:
    add(conn, "a", tags=["red", "big"])
    add(conn, "b", tags=["red"])
    add(conn, "c", tags=["blue", "env:prod"])
    add(conn, "d")
    return conn


def test_tags_all_and_any(tagged: sqlite3.Connection) -> None:
    assert matching(tagged, ["tags=red"]) == {"a", "b"}
    assert matching(tagged, ["tags=red,big"]) == {"a"}
    assert matching(tagged, ["tags-any=big,blue"]) == {"a", "c"}
    assert matching(tagged, ["tags_any=big,blue"]) == {"a", "c"}
    assert matching(tagged, ["tags=in:big,blue"]) == {"a", "c"}  # asked for in an issue
    assert matching(tagged, ["tags="]) == {"a", "b", "c", "d"}
    assert matching(tagged, ["tags-any="]) == {"a", "b", "c", "d"}
    assert matching(tagged, ["tags=env:prod"]) == {"c"}  # a tag may contain ':'
    assert matching(tagged, ["tags=red", "tags=big"]) == {"a"}
    assert parse_filters(["tags="], THING) == []


@pytest.mark.parametrize("expr", ["tags=eq:a", "tags-any=neq:a", "tags=like:a%", "tags=gt:a"])
def test_tags_take_no_operator(tagged: sqlite3.Connection, expr: str) -> None:
    invalid(tagged, [expr], match="no operator")


def test_or_combiner(tagged: sqlite3.Connection) -> None:
    # every 'and' holds; at least one 'or' holds
    assert matching(tagged, ["tags=or:big", "tags=or:blue"]) == {"a", "c"}
    assert matching(tagged, ["tags=or:big", "tags=or:blue", "tags=red"]) == {"a"}
    assert matching(tagged, ["id=or:d", "tags=and:red"]) == set()
    assert matching(tagged, ["id=or:d", "tags=or:red,big"]) == {"a", "d"}
    assert matching(tagged, ["id=and:a", "id=or:a", "id=or:b"]) == {"a"}


# -- scope -------------------------------------------------------------------------------


def test_owner_scope(conn: sqlite3.Connection) -> None:
    add(conn, "a", owner="alice")
    add(conn, "b", owner="bob")
    add(conn, "c", owner="bob", visibility="public", status="active")
    assert matching(conn, owner="alice") == {"a", "c"}
    assert matching(conn, owner="bob") == {"b", "c"}
    assert matching(conn, owner="carol") == {"c"}
    assert matching(conn, owner=None) == {"a", "b", "c"}
    assert matching(conn, ["owner=bob"], owner="alice") == {"c"}


# -- sort --------------------------------------------------------------------------------


def test_default_order_created_desc_then_id(conn: sqlite3.Connection) -> None:
    add(conn, "b", created_at=1)
    add(conn, "a", created_at=1)
    add(conn, "c", created_at=2)
    add(conn, "d", created_at=0)
    assert ids(conn) == ["c", "a", "b", "d"]
    assert ids(conn, sort="created_at") == ["c", "a", "b", "d"]  # no direction: desc
    assert ids(conn, sort="created_at:asc") == ["d", "a", "b", "c"]
    assert ids(conn, sort="id") == ["d", "c", "b", "a"]


def test_multiple_sort_keys(conn: sqlite3.Connection) -> None:
    add(conn, "a", "n1", owner="o2")
    add(conn, "b", "n2", owner="o1")
    add(conn, "c", "n1", owner="o1")
    add(conn, "d", "n2", owner="o1", version="2")
    assert ids(conn, sort="name:asc,owner:asc") == ["c", "a", "b", "d"]
    assert ids(conn, sort=["name:asc", "owner:desc"]) == ["a", "c", "b", "d"]
    assert ids(conn, sort="owner:asc,name") == ["b", "d", "c", "a"]


def test_missing_property_sorts_lowest(props: sqlite3.Connection) -> None:
    assert ids(props, sort="int1:asc") == ["e", "f", "b", "a", "c"]
    assert ids(props, sort="int1:desc") == ["c", "a", "b", "e", "f"]
    assert ids(props, sort="str1:asc") == ["e", "f", "c", "b", "a"]
    assert ids(props, sort="float1,int1:asc") == ["b", "a", "e", "f", "c"]
    assert ids(props, sort="bool1:asc") == ["c", "e", "f", "b", "a"]


def test_activated_at_null_sorts_lowest(conn: sqlite3.Connection) -> None:
    add(conn, "a", activated_at=5, status="active")
    add(conn, "b")
    add(conn, "c", activated_at=1, status="active")
    assert ids(conn, sort="activated_at:asc") == ["b", "c", "a"]
    assert ids(conn, sort="activated_at") == ["a", "c", "b"]


def test_marker_pages_over_null_activated_at(conn: sqlite3.Connection) -> None:
    for i, when in enumerate([3, None, 1, None, 3, 2, None]):
        add(conn, f"a{i}", activated_at=when, status="active" if when else "drafted")
    for sort in ("activated_at", "activated_at:asc", "activated_at,name:asc"):
        full = ids(conn, sort=sort)
        assert len(full) == 7
        for limit in (1, 2, 3):
            walked: list[str] = []
            marker = None
            while True:
                got, marker = page(conn, sort=sort, limit=limit, marker=marker)
                walked += got
                if marker is None:
                    break
            assert walked == full, (sort, limit)


@pytest.mark.parametrize(
    ("sort", "match"),
    [
        ("lst", "list"),
        ("d", "dict"),
        ("tags", "tags"),
        ("image", "blob"),
        ("files", "blob"),
        ("description", "description"),
        ("nosuch", "nosuch"),
        ("name:up", "direction"),
        ("name:ASC", "direction"),
        ("name,,id", "empty"),
        ("name,name:asc", "twice"),
    ],
)
def test_invalid_sorts(conn: sqlite3.Connection, sort: str, match: str) -> None:
    invalid(conn, sort=sort, match=match)


def test_sort_without_type_allows_base_fields_only(conn: sqlite3.Connection) -> None:
    add(conn, "a", "n2")
    add(conn, "b", "n1", atype=OTHER)
    assert ids(conn, atype=None, sort="name:asc") == ["b", "a"]
    assert ids(conn, atype=None, sort="type_name:asc") == ["b", "a"]
    invalid(conn, atype=None, sort="int1", match="across types")


def test_parse_sort_appends_id() -> None:
    keys = parse_sort("name:asc", THING)
    assert [(k.field, k.desc) for k in keys] == [("name", False), ("id", False)]
    keys = parse_sort(None, THING)
    assert [(k.field, k.desc) for k in keys] == [("created_at", True), ("id", False)]
    keys = parse_sort("id:desc,name", THING)
    assert [(k.field, k.desc) for k in keys] == [("id", True), ("name", True)]


# -- limit and marker --------------------------------------------------------------------


@pytest.fixture
def many(conn: sqlite3.Connection) -> sqlite3.Connection:
    for i in range(30):
        add(conn, f"a{i:02d}", created_at=i // 3)  # triples share created_at
    return conn


def test_limit_default_clamp_and_zero(many: sqlite3.Connection, monkeypatch: Any) -> None:
    assert len(ids(many, limit=None)) == 25
    assert page(many, limit=0) == ([], None)
    monkeypatch.setattr(_query, "MAX_LIMIT", 7)
    assert len(ids(many, limit=100000)) == 7


@pytest.mark.parametrize("limit", [-1, "x", 1.5, True])
def test_invalid_limits(many: sqlite3.Connection, limit: Any) -> None:
    invalid(many, limit=limit, match="limit")


def test_clamp_to_one_thousand(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility,"
        " status, created_at, updated_at) VALUES (?, 'thing', 'n', ?, ?, 'o', 'private',"
        " 'drafted', ?, ?)",
        [(f"i{i:04d}", f"0.0.{i}", f"k{i:04d}", ts(i), ts(i)) for i in range(1001)],
    )
    rows, next_marker = page(conn, limit=5000)
    assert len(rows) == 1000 and next_marker == rows[-1]


def test_walk_pages_with_ties(many: sqlite3.Connection) -> None:
    full = ids(many)
    walked: list[str] = []
    marker = None
    while True:
        got, marker = page(many, limit=4, marker=marker)
        walked += got
        assert (marker is not None) == (len(got) == 4)
        if marker is None:
            break
    assert walked == full and len(full) == 30


def test_next_marker_exactly_when_full(many: sqlite3.Connection) -> None:
    got, marker = page(many, limit=30)
    assert marker == got[-1]
    assert page(many, limit=30, marker=marker) == ([], None)
    got, marker = page(many, limit=31)
    assert len(got) == 30 and marker is None


def test_marker_pages_by_property_with_missing_values(props: sqlite3.Connection) -> None:
    for sort in ("int1:asc", "int1", "str1,float1:asc", "bool1:asc,version"):
        full = ids(props, sort=sort)
        for limit in (1, 2, 3):
            walked: list[str] = []
            marker = None
            while True:
                got, marker = page(props, sort=sort, limit=limit, marker=marker)
                walked += got
                if marker is None:
                    break
            assert walked == full, (sort, limit)


def test_unknown_or_invisible_marker(conn: sqlite3.Connection) -> None:
    add(conn, "mine", owner="alice")
    add(conn, "bobs", owner="bob")
    add(conn, "gone", status="deleted")
    add(conn, "foreign", atype=OTHER)
    add(conn, "old", "pkg", version="1.0")
    add(conn, "new", "pkg", version="2.0")
    for marker, kw in [
        ("nosuch", {}),
        ("bobs", {"owner": "alice"}),
        ("gone", {}),
        ("foreign", {}),
        ("old", {"latest": True}),
    ]:
        with pytest.raises(NotFound, match=marker):
            page(conn, marker=marker, **kw)
    full = ids(conn)  # the admin scope sees bob's
    assert page(conn, marker="bobs")[0] == full[full.index("bobs") + 1 :]
    full = ids(conn, latest=True)
    assert page(conn, marker="new", latest=True)[0] == full[full.index("new") + 1 :]


def test_marker_with_latest_walks_the_latest_set(conn: sqlite3.Connection) -> None:
    for i in range(12):
        add(conn, f"a{i:02d}", f"n{i % 5}", version=f"1.{i}", created_at=i % 4)
    full = ids(conn, latest=True)
    assert len(full) == 5
    walked: list[str] = []
    marker = None
    while True:
        got, marker = page(conn, latest=True, limit=2, marker=marker)
        walked += got
        if marker is None:
            break
    assert walked == full


def test_filters_are_parsed_objects(conn: sqlite3.Connection) -> None:
    (f,) = parse_filters(["int1=gt:3"], THING)
    assert isinstance(f, Filter) and f.target == "prop" and f.column == "int1"


def test_type_mismatch_is_invalid(conn: sqlite3.Connection) -> None:
    with pytest.raises(InvalidInput):
        select_page(
            conn,
            type_name="other",
            atype=THING,
            owner=None,
            filters=[],
            sort=None,
            limit=None,
            marker=None,
            latest=False,
        )


@pytest.mark.parametrize("drive_max", [-1, 10_000])
def test_driven_and_scanned_plans_agree(props: sqlite3.Connection, drive_max: int) -> None:
    # with a tiny catalog every property filter drives; DRIVE_MAX -1 forces the scan path
    old = _query.DRIVE_MAX
    _query.DRIVE_MAX = drive_max
    try:
        assert matching(props, ["int1=gt:1000", "lst=neq:zz"]) == {"c"}
        assert matching(props, ["d.k=7", "tags-any="]) == {"e"}
        assert ids(props, ["int1=in:500,1500,3000"], sort="int1:asc", limit=2) == ["b", "a"]
    finally:
        _query.DRIVE_MAX = old


def test_query_plans_use_the_indexes(conn: sqlite3.Connection) -> None:
    captured: list[tuple[str, list[Any]]] = []

    class Spy:
        def execute(self, sql: str, params: Any = ()) -> Any:
            captured.append((sql, list(params)))
            return conn.execute(sql, params)

    def plan(filters: list[str], sort: str | None) -> str:
        captured.clear()
        select_page(
            Spy(),  # type: ignore[arg-type]
            type_name="thing",
            atype=THING,
            owner="alice",
            filters=parse_filters(filters, THING),
            sort=sort,
            limit=50,
            marker=None,
            latest=False,
        )
        sql, params = captured[-1]
        return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    common = plan(["status=active", "visibility=public"], None)
    assert "artifacts_by_type_created" in common and "TEMP B-TREE FOR ORDER BY" not in common
    by_name = plan(["name=pkg"], "version")
    assert "artifacts_by_name (type_name=? AND name=?)" in by_name
    assert "TEMP B-TREE FOR ORDER BY" not in by_name
    # a filter matching few rows drives through its covering index...
    assert "COVERING INDEX artifact_props_by_value" in plan(["int1=5"], None)
    # ...otherwise each candidate is probed by primary key, never by a value range
    old, _query.DRIVE_MAX = _query.DRIVE_MAX, -1
    try:
        prop = plan(["int1=gt:5"], None)
    finally:
        _query.DRIVE_MAX = old
    assert "artifacts_by_type_created" in prop and "artifact_props_by_value" not in prop
    assert "SEARCH p USING PRIMARY KEY (artifact_id=? AND name=? AND key=?)" in prop
