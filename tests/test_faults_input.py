"""Proof under bad input: generated type, field and key names, versions, filters,
property values, sort keys, limits, markers, blob slots, checksums and URLs go through
the public API of a catalog on a local storage folder.

For every call (``Checked.call``):

* it works, or it raises a ``glarelite.GlareliteError`` subclass — any other exception
  fails the test;
* a call that raised left every row of every table as it was (no half-written record);
* no blob is left ``saving``, no temporary is left in the store, and every stored object
  is whole (re-hashed against its name);
* no file appears outside the catalog file (and its -wal/-shm) and the storage root: not
  beside them, not in the working directory, not anywhere else under ``tmp_path``;
* what was accepted is path-safe: type and field names and the internal URLs built
  from them are segments of ``[a-z0-9._-]``, never ``.`` or ``..``; a blob-dict key
  (free text since issue 17) is one segment of its percent-encoding, never ``.`` or
  ``..``, that decodes back to that key only.

Host names are answered by a fake resolver and connections to anything but loopback
fail at once, so generated URLs never reach a real network.
"""

from __future__ import annotations

import errno
import hashlib
import io
import ipaddress
import os
import re
import socket
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import glarelite
from glarelite import GlareliteError
from glarelite._names import decode_key, encode_key
from tests.fixtures.origin import Origin

TABLES = ("settings", "artifact_types", "artifacts", "artifact_tags", "artifact_props")
TABLES += ("blobs", "quotas")
CATALOG_FILES = {"c.db", "c.db-wal", "c.db-shm"}
SAFE_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
# A blob-dict key segment (issue 17: keys are free text, percent-encoded): lower-case
# letters, digits, '_', '-', '.' (never first) and %XX escapes with upper-case hex.
SAFE_KEY_SEGMENT = re.compile(r"(?:[a-z0-9_-]|%[0-9A-F]{2})(?:[a-z0-9._-]|%[0-9A-F]{2})*\Z")
FAST = glarelite.HttpSettings(
    retry=glarelite.RetryPolicy(total=0, backoff_factor=0.0, jitter=0.0),
    connect_timeout=2.0,
    read_timeout=5.0,
)
SETTINGS = settings(
    deadline=None,
    database=None,  # the catalog lives in tmp_path: replayed examples would not match it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the checks around every call --------------------------------------------------------
@dataclass
class Checked:
    cat: glarelite.Catalog
    tmp: Path  # everything the test may write is under here
    home: Path  # the catalog's folder: c.db and the storage root "store"
    cwd: Path
    siblings: set[str] = field(default_factory=set)  # what is beside tmp_path at the start
    examples: int = 0
    calls: int = 0
    refused: int = 0
    hashed: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.home / "store"

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.cat._database.read() as conn:
            return {
                t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES
            }

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or None when it raised a GlareliteError."""
        before = self.rows()
        self.calls += 1
        try:
            result = fn(*args, **kwargs)
            if hasattr(result, "read"):  # a blob stream: read it to the end (verified)
                with result:
                    while result.read(1 << 16):
                        pass
        except GlareliteError as exc:
            self.refused += 1
            assert self.rows() == before, f"{fn.__name__} raised {exc!r} but changed rows"
            result = None
        self.check_files()
        return result

    def check_files(self) -> None:
        with self.cat._database.read() as conn:
            saving = conn.execute("SELECT COUNT(*) FROM blobs WHERE status = 'saving'")
            assert saving.fetchone()[0] == 0, "a blob was left saving"
        for dirpath, dirnames, filenames in os.walk(self.tmp):
            here = Path(dirpath)
            for name in filenames:
                path = here / name
                if here == self.home and name in CATALOG_FILES:
                    continue
                assert self.store in path.parents, f"a file appeared outside the store: {path}"
                self.check_object(path)
            if here == self.cwd:
                assert dirnames == [] and filenames == [], "something was written to the cwd"

    def check_object(self, path: Path) -> None:
        rel = path.relative_to(self.store).parts
        assert rel[:2] == ("blobs", "sha256") and len(rel) == 4, f"not an object: {path}"
        key = (str(path), path.stat().st_size)
        if key not in self.hashed:
            self.hashed[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        assert self.hashed[key] == rel[2] + rel[3], f"partial or wrong bytes at {path}"

    def done(self, name: str) -> None:
        assert set(os.listdir(self.tmp.parent)) == self.siblings, "written beside tmp_path"
        print(f"{name}: {self.examples} examples, {self.calls} calls, {self.refused} refused")
        assert 0 < self.refused < self.calls, "the inputs were all refused or all accepted"


def assert_safe_url(url: str) -> None:
    parts = url.split("/")
    assert parts[:2] == ["", "artifacts"], url
    assert len(parts) <= 6, url  # type, id, field and at most one key segment
    for segment in parts[2:5]:
        assert SAFE_SEGMENT.match(segment) and segment not in (".", ".."), url
    for segment in parts[5:]:
        assert SAFE_KEY_SEGMENT.match(segment) and segment not in (".", ".."), url
        assert encode_key(decode_key(segment)) == segment, url  # one key, one name


# -- the network stays on loopback ---------------------------------------------------------
def fake_getaddrinfo(real: Callable[..., Any]) -> Callable[..., Any]:
    """Names resolve by a hash: to loopback, a private, a public address, or nowhere."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            pass
        else:
            return real(host, port, *args, **kwargs)  # literals (urllib3 connecting)
        choice = zlib.crc32(name.encode("utf-8", "replace")) % 4
        if name == "localhost" or choice == 0:
            address = "127.0.0.1"
        elif choice == 1:
            address = "10.1.2.3"
        elif choice == 2:
            address = "93.184.216.34"
        else:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(address, port, *args, **kwargs)

    return getaddrinfo


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo(socket.getaddrinfo))
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else ""
        if not (isinstance(host, str) and ipaddress.ip_address(host).is_loopback):
            raise OSError(errno.ENETUNREACH, "tests: only loopback is reachable")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


# -- the catalog the inputs are thrown at --------------------------------------------------
PROPERTIES = {
    "s": glarelite.Property("string"),
    "i": glarelite.Property("integer", mutable=True),
    "n": glarelite.Property("number"),
    "b": glarelite.Property("boolean"),
    "l": glarelite.Property("list"),
    "li": glarelite.Property("list", items="integer"),
    "d": glarelite.Property("dict", items="number"),
    "ds": glarelite.Property("dict", mutable=True),
    "dflt": glarelite.Property("integer", default=7),
    "ref": glarelite.Property("link"),
}


@pytest.fixture
def checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Origin, loopback_only: None
) -> Iterator[Checked]:
    home, cwd = tmp_path / "catalog", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    origin.add("/ok.bin", data=b"external bytes\n" * 100)
    origin.add("/redirect", redirect="/ok.bin")
    origin.add("/to-private", redirect="http://10.0.0.1/x")
    with glarelite.open(
        home / "c.db",
        storage=str(home / "store"),
        allow_hosts=["127.0.0.1"],
        settings=glarelite.CatalogSettings(http=FAST),
    ) as cat:
        cat.define_type(
            "images",
            blobs=["file", "kernel"],
            blob_dicts=["regions"],
            properties=PROPERTIES,
            max_blob_size=1 << 20,
        )
        a = cat.create("images", "alpha", version="1.2.3", tags=["x", "y"])
        cat.update(a.id, properties={"s": "str", "i": 5, "l": ["p", "q"], "d": {"k": 1.5}})
        cat.upload(a.id, "file", [b"alpha file"])
        cat.add_location(a.id, "regions/eu", origin.url("/ok.bin"))
        cat.activate(a.id)
        cat.publish(a.id)
        b = cat.create("images", "beta", version="2.0.0-rc.1", properties={"ref": a.id})
        cat.upload(b.id, "regions/us", [b"beta us"])
        cat.create("images", "gamma", owner="bob", properties={"b": True, "n": 2.5})
        state = Checked(cat, tmp_path, home, cwd, set(os.listdir(tmp_path.parent)))
        state.origin = origin  # type: ignore[attr-defined]
        state.check_files()
        yield state


# -- strategies ----------------------------------------------------------------------------
NASTY_TEXT = [
    "",
    ".",
    "..",
    "../x",
    "..\\x",
    "a/b",
    "a/../b",
    "/etc",
    "/",
    "%2e%2e",
    "%2e%2e%2fx",
    "%2F",
    "a%00",
    "a\x00b",
    "\x00",
    " a",
    "a ",
    "a\tb",
    "a\nb",
    "A",
    "Images",
    "é",
    "ǅ",
    "ﬁle",
    "İ",
    "ı",
    "\u202ex",
    "😀",
    "a.b",
    "a-b",
    "-a",
    "_a",
    "1a",
    "con",
    "nul",
    "a:b",
    "a\\b",
    "~",
    "*",
    "?",
    "a;b",
    "a'b",
    'a"b',
    "images",
    "file",
    "kernel",
    "regions",
    "id",
    "tags",
    "name",
    "latest",
    "index",
    "properties",
    "blobs",
    "tags_any",
    "s",
    "d",
    "ref",
    "\ud800",
]
LONG = st.sampled_from([63, 64, 128, 129, 256, 5000]).map(lambda n: "a" * n)
NASTY = st.one_of(st.sampled_from(NASTY_TEXT), LONG)
HASHABLE_NON_STR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=6)
)
NON_STR = st.one_of(
    HASHABLE_NON_STR,
    st.lists(st.text(max_size=3), max_size=2),
    st.builds(object),
)
NAMES = st.one_of(
    NASTY,
    NASTY,
    st.text(max_size=70),
    st.from_regex(r"[a-z][a-z0-9_]{0,66}", fullmatch=True),
    st.text(alphabet="./%\\\x00azAZ09_-:~é", max_size=10),
)
ANY_NAME = st.one_of(NAMES, NAMES, NAMES, NON_STR)
KEY_NAME = st.one_of(NAMES, NAMES, NAMES, HASHABLE_NON_STR)  # dict keys
KINDS = st.sampled_from(
    ["string", "integer", "number", "boolean", "list", "dict", "link", "", "str", "INT",
     "blob", "list[string]", "dict:number"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["1", "1.5", "yes", "off", "nan", "inf", "-0", "1e999"]),
    LONG,
)
VALUES = st.one_of(
    SCALARS,
    st.binary(max_size=6),
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=6), HASHABLE_NON_STR), SCALARS, max_size=3),
    st.sampled_from(
        ["[1, 2]", '{"a": 1}', "[", "{}", "[[1]]", '{"a": {"b": 1}}', "null", '"x"', "[1e999]"]
    ),
    st.lists(st.lists(SCALARS, max_size=2), max_size=2),
    st.integers(254, 257).map(lambda n: list(range(n))),
    st.integers(254, 257).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.frozensets(st.integers(), max_size=3),
    st.builds(object),
)
PROPERTY_MAPS = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(sorted(PROPERTIES)), KEY_NAME), VALUES, max_size=4),
    NON_STR,
    st.text(max_size=5),
)
VERSIONS = st.one_of(
    st.from_regex(
        r"\d{1,45}(\.\d{1,4}){0,4}(-[0-9A-Za-z.-]{0,8})?(\+[0-9A-Za-z.-]{0,8})?", fullmatch=True
    ),
    st.sampled_from(["", "-1", "v1", "1..2", "1.2.3-", "1.2.3+", "1.0.0-01", "1.2.3.4-x", " 1"]),
    st.integers(min_value=-5, max_value=10**45),
    st.text(max_size=12),
    NON_STR,
)
TAGS = st.one_of(
    st.lists(st.one_of(st.text(max_size=8), NASTY, st.sampled_from(["a,b", "a/b"])), max_size=4),
    st.text(max_size=4),
    NON_STR,
    st.integers(255, 256).map(lambda n: [str(i) for i in range(n)]),
)  # fmt: skip
VISIBILITIES = st.one_of(st.sampled_from(["private", "public", "PUBLIC", "", "shared"]), NON_STR)
DESCRIPTIONS = st.one_of(
    st.none(), st.text(max_size=30), st.integers(4096, 4097).map(lambda n: "d" * n), NON_STR
)


def one_bad(**fields: tuple[Any, Any]) -> Any:
    """Keyword arguments that are all well formed (the first strategy of each pair) but
    usually one, drawn from anything (the second): each validation is reached without an
    earlier one masking it. Now and then every argument is drawn from anything."""
    names = sorted(fields)

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        bad = draw(st.sampled_from([None, "*", *names, *names]))
        return {n: draw(fields[n][1] if bad in (n, "*") else fields[n][0]) for n in names}

    return build()


def anything(good: Any, *bad: Any) -> Any:
    return st.one_of(good, *bad)


IDENTIFIER = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
KEY = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)


# -- 1. type definitions: names of types, fields and keys ----------------------------------
def test_generated_type_field_and_key_names(checked: Checked) -> None:
    cat = checked.cat

    @settings(SETTINGS, max_examples=120)
    @given(
        args=one_bad(
            type_name=(IDENTIFIER, ANY_NAME),
            blobs=(st.lists(IDENTIFIER, max_size=2), st.lists(ANY_NAME, max_size=3)),
            dicts=(st.lists(IDENTIFIER, max_size=2), st.lists(ANY_NAME, max_size=2)),
            props=(
                st.dictionaries(IDENTIFIER, st.tuples(st.just("string"), st.none(), KINDS)),
                st.dictionaries(KEY_NAME, st.tuples(KINDS, VALUES, KINDS), max_size=3),
            ),
            max_size=(
                st.one_of(st.none(), st.integers(0, 2**40)),
                st.one_of(st.integers(-3, 2**70), st.floats(), st.text(max_size=3), NON_STR),
            ),
            key=(KEY, ANY_NAME),
        )
    )
    def run(args: dict[str, Any]) -> None:
        checked.examples += 1

        def define_type() -> glarelite.ArtifactType:
            properties = {
                name: glarelite.Property(kind, default=default, items=items)  # type: ignore[arg-type]
                for name, (kind, default, items) in args["props"].items()
            }
            return cat.define_type(
                args["type_name"],
                blobs=args["blobs"],
                blob_dicts=args["dicts"],
                properties=properties,
                max_blob_size=args["max_size"],
            )

        atype = checked.call(define_type)
        checked.call(cat.get_type, args["type_name"])
        if atype is None:
            return
        for name in (atype.name, *atype.blobs, *atype.blob_dicts, *atype.properties):
            assert SAFE_SEGMENT.match(name) and "." not in name, name
        art = checked.call(cat.create, atype.name, "x", version=checked.examples)
        if art is None:
            return
        for blob_field in atype.blobs:
            blob = checked.call(cat.upload, art.id, blob_field, [b"bytes"])
            if blob is not None:
                assert_safe_url(blob.url)
        for dict_field in atype.blob_dicts:
            for slot in (f"{dict_field}/{args['key']}", f"{dict_field}/a/b", dict_field):
                blob = checked.call(cat.upload, art.id, slot, [b"dict bytes"])
                if blob is not None:
                    assert_safe_url(blob.url)
                    checked.call(cat.open_blob, art.id, slot)
        checked.call(cat.delete, art.id)

    run()
    checked.done("names")


# -- 2. artifacts: names, versions, owners, tags, property values of every kind -------------
GOOD_TAGS = st.lists(st.from_regex(r"[a-z0-9:. -]{1,10}", fullmatch=True), max_size=3)
GOOD_VERSIONS = st.one_of(
    st.none(),
    st.from_regex(r"(0|[1-9]\d{0,5})(\.(0|[1-9]\d{0,3})){0,2}(-[a-z]{1,5}(\.[1-9]\d?)?)?",
                  fullmatch=True),
)  # fmt: skip
GOOD_PROPERTIES = st.fixed_dictionaries(
    {},
    optional={
        "s": st.text(max_size=20),
        "i": st.integers(-(2**63), 2**63 - 1),
        "n": st.floats(allow_nan=False, allow_infinity=False),
        "b": st.one_of(st.booleans(), st.sampled_from(["yes", "off", "1"])),
        "l": st.lists(st.text(max_size=5), max_size=3),
        "li": st.lists(st.integers(-100, 100), max_size=3),
        "d": st.dictionaries(st.text(min_size=1, max_size=5), st.floats(-1e9, 1e9), max_size=2),
        "ds": st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=2),
        "dflt": st.one_of(st.none(), st.integers(0, 9)),
        "ref": st.sampled_from(["images/alpha@1.2.3", "images/alpha@latest"]),
    },
)


def test_generated_artifact_fields_and_property_values(checked: Checked) -> None:
    cat = checked.cat
    update_fields = {
        "name": (st.text(min_size=1, max_size=10), st.one_of(st.just(""), LONG, NON_STR)),
        "version": (GOOD_VERSIONS, VERSIONS),
        "description": (st.text(max_size=10), DESCRIPTIONS),
        "visibility": (st.sampled_from(["private", "public"]), VISIBILITIES),
        "tags": (GOOD_TAGS, TAGS),
        "add_tags": (GOOD_TAGS, TAGS),
        "remove_tags": (GOOD_TAGS, TAGS),
        "properties": (GOOD_PROPERTIES, PROPERTY_MAPS),
    }
    base = {"type_name": "images", "name": "n", "version": None, "owner": None}
    base |= {"visibility": "private", "description": None, "tags": [], "properties": {}}

    @settings(SETTINGS, max_examples=150)
    @given(
        args=one_bad(
            type_name=(st.just("images"), ANY_NAME),
            name=(st.text(min_size=1, max_size=20), st.one_of(NASTY, NON_STR)),
            version=(GOOD_VERSIONS, VERSIONS),
            owner=(
                st.one_of(st.none(), st.sampled_from(["admin", "bob", "carol"])),
                st.one_of(st.text(max_size=10), LONG, NON_STR),
            ),
            visibility=(st.just("private"), VISIBILITIES),
            description=(st.one_of(st.none(), st.text(max_size=20)), DESCRIPTIONS),
            tags=(GOOD_TAGS, TAGS),
            properties=(GOOD_PROPERTIES, PROPERTY_MAPS),
        ),
        update=st.lists(st.sampled_from(sorted(update_fields)), max_size=3).flatmap(
            lambda keys: one_bad(**{k: update_fields[k] for k in keys})
        ),
        scope=st.one_of(st.none(), st.none(), st.sampled_from(["bob", "carol"]), NASTY),
        pick=st.integers(min_value=0),
    )
    @example(args=base | {"name": "\ud800"}, update={}, scope=None, pick=1)
    @example(args=base, update={"tags": "ab"}, scope=None, pick=1)
    @example(args=base, update={"properties": ["s"]}, scope=None, pick=1)
    @example(
        args=base | {"properties": {"l": "[1, 2]", "d": '{"k": 1}'}}, update={}, scope=None, pick=1
    )
    def run(args: dict[str, Any], update: dict[str, Any], scope: str | None, pick: int) -> None:
        checked.examples += 1
        view = cat if scope is None else checked.call(cat.scoped, scope)
        if view is None:
            return
        args = dict(args)  # explicit examples share their dicts
        type_name, name = args.pop("type_name"), args.pop("name")
        art = checked.call(view.create, type_name, name, **args)
        ids = [a.id for a in cat.iter_all()]
        target = art.id if art is not None and pick % 3 else ids[pick % len(ids)]
        checked.call(view.update, target, **update)
        if pick % 2:
            checked.call(view.activate, target)
        got = checked.call(view.get, target)
        if got is not None:
            assert_safe_url(got.url)

    run()
    checked.done("artifacts")


# -- 3. listings: filter expressions, sort keys, limits, markers ----------------------------
FIELDS = [
    "id", "type_name", "name", "owner", "status", "visibility", "version", "created_at",
    "updated_at", "activated_at", "tags", "tags-any", "tags_any", "description", "blobs",
    "file", "regions", "s", "i", "n", "b", "l", "li", "d", "d.k", "d.", "ds.x.y", "ref",
    "dflt", "nope", "", "=", "s.k",
]  # fmt: skip
EXPR_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["1", "1.5", "-3", "1e999", "nan", "true", "yes", "alpha", "1.2.3", "2.0.0-rc.1",
         "1.0.0+b", "2026-01-01T00:00:00Z", "2026-13-45", "1970-01-01", "a,b", '"a,b",c',
         '"unclosed', 'a"b', '"a"x', "%", "_", "k", ":", "::", "eq:", "\x00"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    LONG,
)  # fmt: skip
ANY_FILTER = st.builds(
    lambda f, c, o, v: f"{f}={c}{o}{v}",
    st.one_of(st.sampled_from(FIELDS), NASTY),
    st.sampled_from(["", "", "and:", "or:", "AND:", "xor:", ":"]),
    st.sampled_from(["", "eq:", "neq:", "in:", "like:", "gt:", "gte:", "lt:", "lte:", "EQ:",
                     "le:", "::"]),
    EXPR_VALUES,
)  # fmt: skip
WORD = st.from_regex(r"[a-z0-9 %_,]{0,8}", fullmatch=True)
NUMBER = st.integers(-1000, 1000).map(str)
GOOD_FILTER = st.one_of(
    st.builds("name={}{}".format, st.sampled_from(["", "or:", "like:", "neq:", "in:"]), WORD),
    st.builds("status={}".format, st.sampled_from(["active", "drafted", "in:active,deleted"])),
    st.builds("visibility={}".format, st.sampled_from(["public", "neq:private"])),
    st.builds("version={}{}".format, st.sampled_from(["", "gt:", "lte:", "in:"]), GOOD_VERSIONS
              .filter(lambda v: v is not None)),
    st.builds("i={}{}".format, st.sampled_from(["", "gt:", "lte:", "neq:", "in:"]), NUMBER),
    st.builds("n=lt:{}".format, NUMBER),
    st.builds("b={}".format, st.sampled_from(["true", "no", "neq:1"])),
    st.builds("l={}{}".format, st.sampled_from(["", "in:", "neq:"]), WORD),
    st.builds("li=gte:{}".format, NUMBER),
    st.builds("d.k=gt:{}".format, NUMBER),
    st.builds("d={}".format, st.sampled_from(["k", "in:k,x", "eq:x"])),
    st.builds("{}={}".format, st.sampled_from(["tags", "tags-any", "tags"]), WORD),
    st.builds("created_at=gt:{}".format, st.sampled_from(["2020-01-01", "2999-01-01T00:00Z"])),
)  # fmt: skip
FILTERS = st.one_of(
    st.lists(st.one_of(ANY_FILTER, ANY_FILTER, st.text(max_size=20), GOOD_FILTER), max_size=4),
    st.dictionaries(
        st.one_of(st.sampled_from(FIELDS), HASHABLE_NON_STR),
        st.one_of(EXPR_VALUES, SCALARS),
        max_size=3,
    ),
    st.lists(st.tuples(st.one_of(st.sampled_from(FIELDS), NON_STR), SCALARS), max_size=2),
    st.text(max_size=10),
    NON_STR,
)
SORTABLE = ["id", "name", "owner", "status", "visibility", "version", "created_at",
            "updated_at", "activated_at", "s", "i", "n", "b", "dflt"]  # fmt: skip
SORT_KEYS = st.sampled_from([*FIELDS, "version", "s", "l", "d", "tags", "x"])
GOOD_SORT = st.lists(
    st.builds(str.__add__, st.sampled_from(SORTABLE), st.sampled_from(["", ":asc", ":desc"])),
    max_size=3,
    unique_by=lambda k: k.partition(":")[0],
).map(",".join)
SORTS = st.one_of(
    st.lists(
        st.builds(str.__add__, SORT_KEYS, st.sampled_from(["", ":asc", ":desc", ":ASC", ":up"])),
        max_size=3,
    ).map(",".join),
    st.lists(SORT_KEYS, max_size=3),
    st.text(max_size=12),
    NON_STR,
)
LIMITS = st.one_of(st.integers(-5, 30), st.sampled_from([True, 1.5, "10", 10**30, 1001]))


def test_generated_filters_sorts_limits_and_markers(checked: Checked) -> None:
    cat = checked.cat
    ids = [a.id for a in cat.iter_all()]
    gone = cat.create("images", "deleted")
    cat.delete(gone.id)
    base = {"type_name": "images", "filters": [], "sort": None, "limit": None, "marker": None}
    base["latest"] = False

    @settings(SETTINGS, max_examples=200)
    @given(
        args=one_bad(
            type_name=(st.sampled_from(["images", "images", None]), ANY_NAME),
            filters=(st.lists(GOOD_FILTER, max_size=3), FILTERS),
            sort=(st.one_of(st.none(), GOOD_SORT), SORTS),
            limit=(st.one_of(st.none(), st.integers(0, 1000)), LIMITS),
            marker=(
                st.one_of(st.none(), st.sampled_from(ids)),
                st.one_of(st.just(gone.id), st.uuids().map(str), ANY_NAME),
            ),
            latest=(st.booleans(), st.sampled_from([None, "yes", 1, "no"])),
        ),
        scope=st.one_of(st.none(), st.just("bob")),
    )
    @example(args=base | {"marker": "\ud800"}, scope=None)
    @example(args=base | {"filters": ["name=\ud800"]}, scope=None)
    @example(args=base | {"marker": gone.id}, scope="bob")
    def run(args: dict[str, Any], scope: str | None) -> None:
        checked.examples += 1
        view = cat if scope is None else cat.scoped(scope)
        args = dict(args)
        page = checked.call(view.list, args.pop("type_name"), **args)
        if page is not None:
            assert page.total >= len(page.items)
            assert all(a.status != "deleted" for a in page.items)

    run()
    checked.done("listings")


# -- 4. blobs: slots, sources, checksums, sizes, ranges ------------------------------------
SLOT_FIELDS = st.sampled_from(["file", "kernel", "regions", "nope", "FILE", "", "regions/"])
GOOD_SLOTS = st.one_of(st.sampled_from(["file", "kernel"]), KEY.map(lambda k: f"regions/{k}"))
SLOTS = st.one_of(
    st.builds("{}/{}".format, SLOT_FIELDS, NAMES),
    SLOT_FIELDS,
    NAMES,
    NON_STR,
)
PAYLOAD = b"payload"
SHA256S = st.one_of(
    st.just("sha256:" + hashlib.sha256(PAYLOAD).hexdigest().upper()),
    st.just("md5:" + hashlib.md5(PAYLOAD).hexdigest()),
    st.text(alphabet="0123456789abcdefABCDEF:sha", min_size=60, max_size=72),
    st.text(max_size=8),
    NON_STR,
)
SIZES = st.one_of(st.sampled_from([6, 0, -1, 2**21, True, 7.0, "7"]), NON_STR)
OFFSETS = st.one_of(st.integers(-2, 12), st.sampled_from([2**64, 1.5, "1", True]), NON_STR)


def test_generated_blob_slots_sources_and_checksums(checked: Checked) -> None:
    cat = checked.cat
    art = cat.create("images", "blobs")
    paths = [str(checked.home / "store" / ".." / "c.db"), str(checked.tmp / "missing")]
    bad_sources = st.one_of(
        st.sampled_from([["text"], [b"pay", "load"], [1, 2], "a\x00b", 5, None]),
        st.builds(io.StringIO, st.just("text")),
        st.sampled_from(paths),
        st.text(max_size=10),  # a relative path in the (empty) working directory
        st.lists(st.binary(max_size=20), max_size=3),
        st.just([b"x" * (1 << 20), b"y"]),  # over the cap
    )
    base = {"slot": "file", "source": [PAYLOAD], "sha256": None, "size": None}
    base |= {"content_type": None, "algorithms": (), "artifact": art.id}

    @settings(SETTINGS, max_examples=150)
    @given(
        args=one_bad(
            slot=(GOOD_SLOTS, SLOTS),
            source=(
                st.one_of(
                    st.just([PAYLOAD]), st.just(PAYLOAD), st.builds(io.BytesIO, st.just(PAYLOAD))
                ),
                bad_sources,
            ),
            sha256=(st.sampled_from([None, hashlib.sha256(PAYLOAD).hexdigest()]), SHA256S),
            size=(st.sampled_from([None, len(PAYLOAD)]), SIZES),
            content_type=(st.none(), st.one_of(st.text(max_size=10), NON_STR)),
            algorithms=(
                st.sampled_from([(), ["md5"], ("sha1", "SHA512")]),
                st.one_of(
                    st.lists(st.sampled_from(["nope", "", "shake_128", "md5"]), max_size=2),
                    st.text(max_size=4),
                    NON_STR,
                ),
            ),
            artifact=(st.just(art.id), ANY_NAME),
        ),
        read=one_bad(
            offset=(st.one_of(st.none(), st.integers(0, 7)), OFFSETS),
            length=(st.one_of(st.none(), st.integers(0, 7)), OFFSETS),
        ),
        remove=st.booleans(),
    )
    @example(args=base | {"source": "a\x00b"}, read={}, remove=False)
    @example(args=base | {"source": "\ud800"}, read={}, remove=False)
    @example(args=base | {"source": paths[0]}, read={"offset": 2}, remove=True)
    @example(args=base | {"algorithms": "md5"}, read={"length": 3}, remove=False)
    @example(args=base | {"content_type": "a\r\nb"}, read={}, remove=False)
    @example(args=base | {"slot": "regions/\ud800"}, read={}, remove=False)
    def run(args: dict[str, Any], read: dict[str, Any], remove: bool) -> None:
        checked.examples += 1
        args = dict(args)
        artifact, slot = args.pop("artifact"), args.pop("slot")
        blob = checked.call(cat.upload, artifact, slot, args.pop("source"), **args)
        if blob is not None:
            assert_safe_url(blob.url)
        checked.call(cat.open_blob, artifact, slot, **read)
        checked.call(cat.blob_url, artifact, slot)
        if remove:
            checked.call(cat.remove_blob, artifact, slot)

    run()
    checked.done("blobs")


# -- 5. external locations: schemes, hosts, userinfo, ports, IPv6 forms ---------------------
HOSTS = st.one_of(
    st.sampled_from(
        ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::]",
         "[fe80::1%25eth0]", "[fe80::1]", "[fd00::1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]",
         "[2606:4700::1111]", "[::1", "::1]", "[zz::1]", "0.0.0.0", "0", "2130706433",
         "0x7f.1", "0177.0.0.1", "127.1", "169.254.169.254", "10.0.0.1", "192.168.1.1",
         "93.184.216.34", "255.255.255.255", "224.0.0.1", "xn--nxasmq6b", "bücher.example",
         "a..b", ".", "", "a_b.example", "EXAMPLE.com", "ex ample", "ex\x00ample",
         "%31%32%37.0.0.1", "1.1.1.1.1", "[::1]:80"]
    ),
    st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,10}){0,3}", fullmatch=True),
    st.text(max_size=12),
)  # fmt: skip
USERINFO = st.sampled_from(["user@", "user:pw@", ":@", "@", "a@b@", "%40@"])
SCHEMES = st.one_of(
    st.sampled_from(["https", "HTTP", "ftp", "file", "gopher", "", "javascript", "data", "s3",
                     "memory", "h ttp", "http+unix"]),
    st.text(max_size=6),
)  # fmt: skip
PORTS = st.one_of(
    st.sampled_from(["", ":0", ":1", ":80", ":65535", ":65536", ":-1", ":x", ":", ":99999999"]),
    st.integers(1, 65535).map(lambda p: f":{p}"),
)
PATHS = st.one_of(
    st.sampled_from(["/redirect", "/to-private", "/missing", "", "/../ok.bin",
                     "/%2e%2e/ok.bin", "/ok.bin#frag", "/ok.bin?q=1", "/\x00", "/é"]),
    st.text(max_size=10).map(lambda t: "/" + t),
)  # fmt: skip
EXTERNAL = b"external bytes\n" * 100


def test_generated_external_locations(checked: Checked) -> None:
    cat = checked.cat
    art = cat.create("images", "externals")
    port = f":{checked.origin.port}"  # type: ignore[attr-defined]

    @settings(SETTINGS, max_examples=150)
    @given(
        args=one_bad(
            scheme=(st.just("http"), SCHEMES),
            sep=(st.just("://"), st.sampled_from([":/", ":", "", ":///", "//"])),
            userinfo=(st.just(""), USERINFO),
            host=(st.sampled_from(["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"]), HOSTS),
            port=(st.just(port), PORTS),
            path=(st.sampled_from(["/ok.bin", "/redirect"]), PATHS),
            raw=(st.none(), st.one_of(st.text(max_size=30), NON_STR)),
            slot=(GOOD_SLOTS, SLOTS),
            sha256=(
                st.sampled_from([None, hashlib.sha256(EXTERNAL).hexdigest()]),
                SHA256S,
            ),
        )
    )
    def run(args: dict[str, Any]) -> None:
        checked.examples += 1
        url = "{scheme}{sep}{userinfo}{host}{port}{path}".format(**args)
        if args["raw"] is not None:
            url = args["raw"]
        blob = checked.call(cat.add_location, art.id, args["slot"], url, sha256=args["sha256"])
        if blob is not None:
            assert blob.external and blob.size == len(EXTERNAL)
            assert_safe_url(blob.url)
            checked.call(cat.remove_blob, art.id, args["slot"])

    run()
    checked.done("locations")


# -- the smallest failing cases the generators found, pinned --------------------------------
FOUND: dict[str, Callable[[glarelite.Catalog, str], Any]] = {
    "type name not a str": lambda cat, aid: cat.get_type([]),  # type: ignore[arg-type]
    "type name an object": lambda cat, aid: cat.get_type(object()),  # type: ignore[arg-type]
    "max_blob_size a str": lambda cat, aid: cat.define_type("t", max_blob_size=""),  # type: ignore[arg-type]
    "max_blob_size a float": lambda cat, aid: cat.define_type("t", max_blob_size=1.5),  # type: ignore[arg-type]
    "properties not a mapping (update)": lambda cat, aid: cat.update(aid, properties=True),  # type: ignore[arg-type]
    "properties not a mapping (create)": lambda cat, aid: cat.create(
        "images",
        "p",
        properties=[("s", "x")],  # type: ignore[arg-type]
    ),
    "tags an int": lambda cat, aid: cat.update(aid, add_tags=5),  # type: ignore[arg-type]
    "algorithms None": lambda cat, aid: cat.upload(aid, "file", [b"x"], algorithms=None),  # type: ignore[arg-type]
    "algorithms unknown": lambda cat, aid: cat.upload(aid, "file", [b"x"], algorithms="nope"),
    "content_type an object": lambda cat, aid: cat.upload(
        aid,
        "file",
        [b"x"],
        content_type=object(),  # type: ignore[arg-type]
    ),
    "content_type two lines": lambda cat, aid: cat.upload(
        aid, "file", [b"x"], content_type="text/plain\r\nX-Evil: 1"
    ),
    "source path with NUL": lambda cat, aid: cat.upload(aid, "file", "a\x00b"),
    "source path a lone surrogate": lambda cat, aid: cat.upload(aid, "file", "\ud800"),
    "marker a lone surrogate": lambda cat, aid: cat.list("images", marker="\ud800"),
    "name a lone surrogate": lambda cat, aid: cat.create("images", "\ud800"),
    "tag a lone surrogate": lambda cat, aid: cat.update(aid, add_tags=["\ud800"]),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_found_inputs_are_refused_and_change_nothing(checked: Checked, case: str) -> None:
    target = checked.cat.create("images", "target", tags=["keep"])
    before = checked.rows()
    with pytest.raises(glarelite.InvalidInput):
        FOUND[case](checked.cat, target.id)
    assert checked.rows() == before
    checked.check_files()


def test_none_for_tags_means_no_tags(checked: Checked) -> None:
    """``tags=None`` (like a property set to None) is an empty set, not a TypeError."""
    cat = checked.cat
    art = cat.create("images", "tags", tags=None)  # type: ignore[arg-type]
    assert cat.update(art.id, tags=["a"], add_tags=None, remove_tags=None).tags == ("a",)  # type: ignore[arg-type]
    assert cat.update(art.id, tags=None).tags == ()  # type: ignore[arg-type]
