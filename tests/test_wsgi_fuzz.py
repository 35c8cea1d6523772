"""glarelite.wsgi under random requests: whatever the method, path, headers and body, the
answer is never a 5xx (an uncaught exception turned into the generic 500) and never
carries a traceback. Plus the specific hostile inputs the fuzz and the review found."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glarelite
from glarelite import policy, wsgi
from tests import treekit
from tests.test_wsgi import JSON, OCTETS, PATCH, call

DATA = b"fuzz" * 100

METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "X"])
TEXT = st.text(max_size=30)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


@st.composite
def requests(draw: st.DrawFn, art_id: str) -> dict[str, Any]:
    segments = draw(
        st.lists(
            st.one_of(
                st.sampled_from(["artifacts", "images", art_id, "file", "regions", "schemas"]),
                st.sampled_from(["eu", "%41", "a%2Fb", "..", ".", "", "versions", "x%zz"]),
                TEXT,
            ),
            max_size=7,
        )
    )
    headers: dict[str, str] = {}
    for name in draw(
        st.lists(
            st.sampled_from(
                ["Content-Type", "Range", "If-Range", "X-Auth-Token", "Host", "Transfer-Encoding"]
            ),
            unique=True,
        )
    ):
        headers[name] = draw(
            st.one_of(
                HEADER_TEXT,
                st.sampled_from(
                    [
                        "application/json",
                        "application/json-patch+json",
                        wsgi.CUSTOM_LOCATION,
                        "bytes=0-3",
                        "bytes=-1",
                        "bytes=5-2",
                        "bytes=99999999999999999999-",
                        "chunked",
                    ]
                ),
            )
        )
    body = draw(
        st.one_of(
            st.none(),
            st.binary(max_size=64),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(
                        st.sampled_from(["op", "path", "value", "from", "name", "url", "sha256"])
                        | TEXT,
                        inner,
                        max_size=4,
                    )
                ),
                max_leaves=12,
            ).map(lambda v: json.dumps(v).encode()),
            st.lists(
                st.fixed_dictionaries(
                    {
                        "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
                        "path": st.sampled_from(
                            [
                                "/status",
                                "/visibility",
                                "/name",
                                "/tags",
                                "/tags/-",
                                "/os",
                                "/min_ram",
                                "/labels/a",
                                "/arch/0",
                                "/file",
                                "/regions/eu",
                                "/id",
                                "/version",
                                "/description",
                                "/",
                                "",
                                "/x~1y",
                            ]
                        ),
                        "value": st.one_of(
                            st.sampled_from(["active", "deactivated", "public", "drafted"]),
                            st.integers(),
                            TEXT,
                            st.lists(TEXT, max_size=2),
                            st.none(),
                        ),
                        "from": st.sampled_from(["/tags", "/os", "/name", "/labels"]),
                    }
                ),
                max_size=4,
            ).map(lambda v: json.dumps(v).encode()),
        )
    )
    content_length = draw(
        st.one_of(st.none(), st.sampled_from(["", "-1", "abc", "0", "10", "\u00b2"]), HEADER_TEXT)
    )
    return {
        "method": draw(METHODS),
        "path": "/" + "/".join(segments),
        "query": draw(st.one_of(st.just(""), TEXT, st.sampled_from(["limit=-1", "sort=x"]))),
        "headers": headers,
        "body": body,
        "content_length": content_length,
    }


@pytest.fixture
def seeded(catalog: glarelite.Catalog) -> tuple[glarelite.Catalog, str]:
    art = catalog.create("images", "fuzz", properties={"os": "linux"})
    catalog.upload(art.id, "file", DATA)
    catalog.upload(art.id, "regions/eu", DATA)
    return catalog, art.id


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_requests_never_fail_inside(
    seeded: tuple[glarelite.Catalog, str], data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    catalog, art_id = seeded
    owner = wsgi.TokenAuth({"t-admin": glarelite.Scope(), "t-bob": glarelite.Scope.of("bob")})
    for auth in (wsgi.admin_auth, owner):
        app = wsgi.make_app(catalog, auth=auth)
        req = data.draw(requests(art_id))
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="glarelite.wsgi"):
            resp = call(
                app,
                req["method"],
                req["path"],
                query=req["query"],
                body=req["body"],
                headers=req["headers"],
                content_length=req["content_length"],
            )
        assert resp.code < 500, (req, resp)
        assert b"Traceback" not in resp.body
        assert not caplog.records, (req, caplog.text)


def test_a_deeply_nested_patch_value_is_400(catalog: glarelite.Catalog) -> None:
    """A value nested deeper than deepcopy can recurse was an uncaught RecursionError."""
    art = catalog.create("images", "deep", properties={"os": "linux"})
    app = wsgi.make_app(catalog)
    depth = 900
    value = "[" * depth + "]" * depth
    body = f'[{{"op": "add", "path": "/labels", "value": {value}}}]'.encode()
    resp = call(app, "PATCH", f"/artifacts/images/{art.id}", body=body, headers=PATCH)
    assert resp.code == 400, resp.body
    value = "[" * depth + "]" * depth
    body = f'{{"name": "x", "os": "l", "labels": {value}}}'.encode()
    resp = call(app, "POST", "/artifacts/images", body=body, headers=JSON)
    assert resp.code == 400, resp.body


def test_a_content_type_not_in_latin1_is_served(catalog: glarelite.Catalog) -> None:
    """A blob's content type is free text in the library; WSGI header values are latin-1.
    One outside it used to make start_response fail (a 500, the blob unreadable)."""
    art = catalog.create("images", "ct", properties={"os": "linux"})
    catalog.upload(art.id, "file", DATA, content_type="text/plain; name=\u20ac")
    app = wsgi.make_app(catalog)
    seen: list[list[tuple[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        for name, value in headers:
            name.encode("latin-1"), value.encode("latin-1")  # what a server does
        seen.append(headers)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/artifacts/images/{art.id}/file",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
    }
    body = b"".join(app(environ, start_response))
    assert body == DATA and len(seen) == 1
    assert dict(seen[0])["Content-Type"] == "application/octet-stream"
    assert call(app, "GET", f"/artifacts/images/{art.id}/file", headers=OCTETS).code == 200


def test_a_hostile_tree_cannot_split_a_response(tmp_path: Path) -> None:
    """A mirror tree's blob record is text its author chose: a content type or md5 with
    CR LF served as is would add headers of the author's choosing (response splitting)."""
    seed = treekit.build()
    record = treekit.blob_record(seed, "images", 0, "file")
    record["content_type"] = "text/html\r\nSet-Cookie: session=planted"
    record["checksums"] = {"md5": "0" * 32 + "\r\nLocation: http://evil.example/"}
    folder = treekit.write_tree(tmp_path / "tree", treekit.render(seed))
    with glarelite.open_mirror(folder) as tree_catalog:
        app = wsgi.make_app(tree_catalog)
        art_id = seed.shows("images")[0]["id"]
        resp = call(app, "GET", f"/artifacts/images/{art_id}/file")
    assert resp.code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert "content-md5" not in resp.headers
    assert all("\r" not in v and "\n" not in v for v in resp.headers.values())


@pytest.mark.parametrize("length", ["\u00b2", "1\u00b9", " 1", "+1", "1_0"])
@pytest.mark.parametrize("method,path", [("POST", "/artifacts/images"), ("GET", "/nowhere")])
def test_a_content_length_of_other_digits_is_400(
    catalog: glarelite.Catalog, length: str, method: str, path: str
) -> None:
    """'²' is a latin-1 character str.isdigit() accepts and int() refuses: the ValueError
    escaped the app, even from the error path that drains a refused body."""
    app = wsgi.make_app(catalog)
    resp = call(app, method, path, body=b'{"name": "x"}', headers=JSON, content_length=length)
    assert resp.code in (400, 404), resp.body
    assert resp.headers.get("connection") == "close"


class SocketLikeInput(io.BytesIO):
    """wsgi.input as wsgiref gives it: the connection itself. Reading past the declared
    body would wait for bytes the client never sends (PEP 3333: an app must not)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.overread = False

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= len(self.getvalue()):
            self.overread = True  # a real socket would block here
        return super().read(size)


@pytest.mark.parametrize(
    "method,path,body,headers",
    [
        ("POST", "/artifacts/images", b'{"os": "linux"}', JSON),  # no name: 400
        ("POST", "/artifacts/images", b'{"name": "x", "nofield": 1}', JSON),
        ("PATCH", "/artifacts/images/{id}", b'[{"op": "bad"}]', PATCH),
        ("PUT", "/artifacts/images/{id}/file", DATA, OCTETS),  # an active artifact: refused
    ],
)
def test_an_error_after_the_body_was_read_reads_no_further(
    catalog: glarelite.Catalog, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    art = catalog.create("images", "done", properties={"os": "linux"})
    catalog.upload(art.id, "file", DATA)
    catalog.activate(art.id)
    app = wsgi.make_app(catalog)
    stream = SocketLikeInput(body)
    resp = call(app, method, path.format(id=art.id), body=body, headers=headers, stream=stream)
    assert 400 <= resp.code < 500, resp.body
    assert not stream.overread
    assert resp.headers.get("connection") != "close"  # the connection stays usable


def test_head_of_a_blob_asks_the_download_rule(tmp_path: Path) -> None:
    """HEAD answered from the artifact record alone: under a download rule narrower than
    get, GET was 403 and HEAD 200 with the blob's length and checksums."""
    with glarelite.open(
        tmp_path / "c.db", storage=str(tmp_path / "b"), policy={"download": policy.is_admin}
    ) as cat:
        cat.define_type("images", blobs=["file"])
        alice = cat.scoped("alice")
        art = alice.create("images", "a")
        alice.upload(art.id, "file", DATA)
        auth = wsgi.TokenAuth({"t": glarelite.Scope.of("alice")})
        app = wsgi.make_app(cat, auth=auth)
        path = f"/artifacts/images/{art.id}/file"
        token = {"X-Auth-Token": "t"}
        assert call(app, "GET", path, headers=token).code == 403
        resp = call(app, "HEAD", path, headers=token)
        assert resp.code == 403 and "content-md5" not in resp.headers
        assert call(wsgi.make_app(cat), "HEAD", path).code == 200  # admin
