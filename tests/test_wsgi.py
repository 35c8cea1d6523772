"""glarelite.wsgi called as a WSGI application (PEP 3333 environ in, status and body out):
Glare's routes, error bodies and statuses, auth, hostile requests, streaming bodies."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import glarelite
from glarelite import wsgi
from glarelite._wsgi_glare import apply_patch
from tests.fixtures.origin import Origin

DATA = bytes(range(256)) * 300


@dataclass
class Response:
    code: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return str(self.json["error"]["message"])


class CountingInput(io.BytesIO):
    """wsgi.input that records the largest read asked for and the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0
        self.given = 0

    def read(self, size: int | None = -1) -> bytes:
        self.largest = max(self.largest, size if size is not None and size >= 0 else 1 << 62)
        out = super().read(size)
        self.given += len(out)
        return out


def call(
    app: Any,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    content_length: str | None = None,
    chunked: bool = False,
    stream: io.BytesIO | None = None,
) -> Response:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "9494",
        "HTTP_HOST": "127.0.0.1:9494",
        "SCRIPT_NAME": "",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream if stream is not None else io.BytesIO(body or b""),
        "wsgi.errors": io.StringIO(),
    }
    if body is not None and not chunked:
        environ["CONTENT_LENGTH"] = str(len(body))
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else f"HTTP_{key}"] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["code"] = int(status.split()[0])
        seen["headers"] = {k.lower(): v for k, v in response_headers}

    result = app(environ, start_response)
    try:
        out = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Response(seen["code"], seen["headers"], out)


JSON = {"Content-Type": "application/json"}
PATCH = {"Content-Type": "application/json-patch+json"}
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def app(catalog: glarelite.Catalog) -> Any:
    return wsgi.make_app(catalog)


def _create(app: Any, **values: Any) -> dict[str, Any]:
    values.setdefault("name", "ubuntu")
    values.setdefault("os", "linux")
    resp = call(app, "POST", "/artifacts/images", body=json.dumps(values).encode(), headers=JSON)
    assert resp.code == 201, resp.body
    return resp.json  # type: ignore[no-any-return]


def test_version_discovery_needs_no_token(catalog: glarelite.Catalog) -> None:
    app = wsgi.make_app(catalog, auth=wsgi.TokenAuth({"t": glarelite.Scope.of("a")}))
    for path in ("/", "/versions"):
        resp = call(app, "GET", path)
        assert resp.code == 200
        (version,) = resp.json["versions"]
        assert version["links"][0]["href"] == "http://127.0.0.1:9494/"
    assert call(app, "GET", "/schemas").code == 401


def test_schemas(app: Any) -> None:
    resp = call(app, "GET", "/schemas")
    assert resp.code == 200 and resp.headers["content-type"].startswith("application/schema+json")
    schema = resp.json["schemas"]["images"]
    assert schema["version"] == "1.0"
    props = schema["properties"]
    assert props["os"]["required_on_activate"] is True and props["os"]["glareType"] == "String"
    assert props["min_ram"]["mutable"] is True and "gte" in props["min_ram"]["filter_ops"]
    assert props["file"]["glareType"] == "Blob" and props["regions"]["glareType"] == "Folder"
    assert call(app, "GET", "/schemas/images").json == {"schemas": {"images": schema}}
    missing = call(app, "GET", "/schemas/nope")
    assert missing.code == 404 and missing.json["error"]["type"] == "NotFound"


def test_create_show_and_the_flat_view(app: Any, catalog: glarelite.Catalog) -> None:
    art = _create(app, version="1.2", min_ram=512, tags=["a"], labels={"k": "v"})
    assert art["status"] == "drafted" and art["owner"] == "admin" and art["version"] == "1.2.0"
    assert art["min_ram"] == 512 and art["labels"] == {"k": "v"} and art["tags"] == ["a"]
    assert art["file"] is None and art["regions"] == {} and art["ratio"] is None
    shown = call(app, "GET", f"/artifacts/images/{art['id']}")
    assert shown.code == 200 and shown.json == art
    assert catalog.get(art["id"]).properties["min_ram"] == 512


@pytest.mark.parametrize(
    ("values", "code", "needle"),
    [
        ({"os": "x"}, 400, "Name must be specified"),
        ({"name": "a", "status": "active"}, 400, "status is not allowed"),
        ({"name": "a", "visibility": "public"}, 400, "visibility is not allowed"),
        ({"name": "a", "owner": "eve"}, 400, "owner is not allowed"),
        ({"name": "a", "file": {}}, 400, "blob field 'file'"),
        ({"name": "a", "nope": 1}, 400, "no field 'nope'"),
        ({"name": "a", "min_ram": "lots"}, 400, "min_ram"),
        ({"name": "a", "version": "invalid"}, 400, "version"),
    ],
)
def test_create_refusals(app: Any, values: dict[str, Any], code: int, needle: str) -> None:
    resp = call(app, "POST", "/artifacts/images", body=json.dumps(values).encode(), headers=JSON)
    assert resp.code == code and needle in resp.message, resp.body
    assert set(resp.json) == {"code", "title", "explanation", "error"}
    assert resp.json["code"] == code


def test_create_body_checks(app: Any) -> None:
    path = "/artifacts/images"
    assert call(app, "POST", path, body=b"[1]", headers=JSON).code == 400
    assert call(app, "POST", path, body=b"{nope", headers=JSON).code == 400
    assert call(app, "POST", path, body=b"{}").code == 400  # no Content-Type
    assert call(app, "POST", path, body=b"{}", headers={"Content-Type": "text/plain"}).code == 415
    nested = b"[" * 100_000 + b"]" * 100_000
    assert call(app, "POST", path, body=nested, headers=JSON).code == 400
    big = json.dumps({"name": "x", "description": "d" * (2 << 20)}).encode()
    stream = CountingInput(big)
    resp = call(app, "POST", path, body=big, headers=JSON, stream=stream)
    assert resp.code == 413 and stream.given == 0  # refused on the declared length
    assert resp.headers["connection"] == "close"  # the unread body ends the connection
    chunked = CountingInput(big)
    resp = call(app, "POST", path, body=big, headers=JSON, chunked=True, stream=chunked)
    assert resp.code == 413 and chunked.given < (1 << 20) + (128 << 10)


def test_list_filters_sort_paging_and_links(app: Any) -> None:
    made = [_create(app, name="img", version=f"1.{i}", min_ram=i * 100) for i in range(5)]
    _create(app, name="other", version="9")
    query = "name=img&min_ram=gte:100&sort=version:asc&limit=2"
    page = call(app, "GET", "/artifacts/images", query=query).json
    assert [a["version"] for a in page["artifacts"]] == ["1.1.0", "1.2.0"]
    assert page["type_name"] == "images" and page["schema"] == "/schemas/images"
    assert page["first"] == f"/artifacts/images?{query.replace(':', '%3A')}"
    seen = [a["id"] for a in page["artifacts"]]
    while "next" in page:
        path, _, q = page["next"].partition("?")
        page = call(app, "GET", path, query=q).json
        seen += [a["id"] for a in page["artifacts"]]
    assert seen == [a["id"] for a in made[1:]]
    latest = call(app, "GET", "/artifacts/images", query="version=latest&name=img").json
    assert [a["version"] for a in latest["artifacts"]] == ["1.4.0"]
    for bad in ("limit=x", "limit=-1", "bogus=1", "sort=name:sideways", "min_ram=lala"):
        resp = call(app, "GET", "/artifacts/images", query=bad)
        assert resp.code == 400, bad
    assert call(app, "GET", "/artifacts/images", query="marker=nope").code == 404
    assert call(app, "GET", "/artifacts/nope").code == 404


def test_patch_maps_to_the_catalog(app: Any, catalog: glarelite.Catalog) -> None:
    art = _create(app, min_ram=1, arch=["x86"])
    path = f"/artifacts/images/{art['id']}"

    def patch(ops: list[dict[str, Any]]) -> Response:
        return call(app, "PATCH", path, body=json.dumps(ops).encode(), headers=PATCH)

    resp = patch(
        [
            {"op": "replace", "path": "/min_ram", "value": 2},
            {"op": "add", "path": "/arch/-", "value": "arm"},
            {"op": "add", "path": "/tags", "value": ["x", "y"]},
            {"op": "replace", "path": "/description", "value": "d"},
            {"op": "add", "path": "/labels/k", "value": "v"},
        ]
    )
    assert resp.code == 200, resp.body
    got = catalog.get(art["id"])
    assert got.properties["min_ram"] == 2 and got.properties["arch"] == ["x86", "arm"]
    assert set(got.tags) == {"x", "y"} and got.description == "d"
    assert got.properties["labels"] == {"k": "v"}
    assert patch([{"op": "replace", "path": "/min_ram", "value": None}]).json["min_ram"] is None
    for ops, code in (
        ([{"op": "replace", "path": "/owner", "value": "eve"}], 403),
        ([{"op": "replace", "path": "/id", "value": "x"}], 403),
        ([{"op": "replace", "path": "/file", "value": {"size": 1}}], 403),
        ([{"op": "add", "path": "/regions/eu", "value": {}}], 403),
        ([{"op": "add", "path": "/nope", "value": 1}], 400),
        ([{"op": "replace", "path": "/status", "value": "deleted"}], 403),
        ([{"op": "replace", "path": "/status", "value": "gone"}], 400),
        ([{"op": "replace", "path": "/visibility", "value": "public"}], 403),  # not active
        ([{"op": "test", "path": "/name", "value": "other"}], 400),
        ([{"op": "jump", "path": "/name"}], 400),
        ({"op": "add"}, 400),
    ):
        resp = patch(ops)  # type: ignore[arg-type]
        assert resp.code == code, (ops, resp.body)
    assert catalog.get(art["id"]).status == "drafted"
    bad_type = call(app, "PATCH", path, body=b"[]", headers=JSON)
    assert bad_type.code == 415
    # status and visibility in one patch: activate, then publish
    resp = patch(
        [
            {"op": "replace", "path": "/status", "value": "active"},
            {"op": "replace", "path": "/visibility", "value": "public"},
        ]
    )
    assert resp.code == 200 and (resp.json["status"], resp.json["visibility"]) == (
        "active",
        "public",
    )
    deactivated = patch([{"op": "replace", "path": "/status", "value": "deactivated"}])
    assert deactivated.json["status"] == "deactivated"
    resp = patch(
        [
            {"op": "replace", "path": "/status", "value": "active"},
            {"op": "replace", "path": "/description", "value": "back"},
        ]
    )
    assert resp.code == 200 and resp.json["description"] == "back"


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    assert apply_patch(doc, [{"op": "move", "from": "/c", "path": "/a/d"}]) == {
        "a": {"b": [1, 2], "d": 1}
    }
    assert apply_patch(doc, [{"op": "copy", "from": "/a/b/0", "path": "/a/b/0"}])["a"]["b"] == [
        1,
        1,
        2,
    ]
    assert apply_patch(doc, [{"op": "remove", "path": "/a/b/1"}])["a"]["b"] == [1]
    assert apply_patch({"x~/y": 1}, [{"op": "remove", "path": "/x~0~1y"}]) == {}
    assert doc == {"a": {"b": [1, 2]}, "c": 1}  # never changed in place
    for bad in (
        [{"op": "remove", "path": "/a/b/2"}],
        [{"op": "remove", "path": "/a/b/01"}],
        [{"op": "add", "path": "/a/b/9", "value": 0}],
        [{"op": "move", "from": "/a", "path": "/a/x"}],
        [{"op": "remove", "path": ""}],
        [{"op": "add", "path": "a", "value": 0}],
        [{"op": "add", "path": "/c/x", "value": 0}],
        [{"op": "add", "path": "", "value": []}],
        "nope",
        [{"op": "add", "path": "/x", "value": 1}] * 2000,
    ):
        with pytest.raises(glarelite.InvalidInput):
            apply_patch(doc, bad)


def test_upload_streams_in_bounded_chunks(app: Any, catalog: glarelite.Catalog) -> None:
    art = _create(app)
    path = f"/artifacts/images/{art['id']}/file"
    app = wsgi.make_app(catalog, settings=wsgi.WsgiSettings(chunk_size=4096))
    stream = CountingInput(DATA)
    resp = call(app, "PUT", path, body=DATA, headers=OCTETS, stream=stream)
    assert resp.code == 200, resp.body
    assert stream.largest == 4096 and stream.given == len(DATA)
    blob = resp.json["file"]
    assert blob["size"] == len(DATA) and blob["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert blob["md5"] == hashlib.md5(DATA).hexdigest()
    assert blob["sha1"] == hashlib.sha1(DATA).hexdigest()
    # chunked: no Content-Length, read to the end the server signals
    resp = call(
        app, "PUT", path + "/../regions/eu", body=b"x", headers=OCTETS
    )  # a '..' segment is no route
    assert resp.code == 404
    chunked = CountingInput(b"chunked body")
    resp = call(
        app,
        "PUT",
        f"/artifacts/images/{art['id']}/regions/eu",
        body=b"chunked body",
        chunked=True,
        stream=chunked,
        headers={"Content-Type": "text/plain"},
    )
    assert resp.code == 200 and resp.json["regions"]["eu"]["size"] == 12
    assert resp.json["regions"]["eu"]["content_type"] == "text/plain"


def test_a_cut_upload_keeps_the_previous_blob(app: Any, catalog: glarelite.Catalog) -> None:
    art = _create(app)
    path = f"/artifacts/images/{art['id']}/file"
    assert call(app, "PUT", path, body=b"old", headers=OCTETS).code == 200
    short = io.BytesIO(DATA[:1000])  # the client went away after 1000 of len(DATA) bytes
    resp = call(app, "PUT", path, stream=short, content_length=str(len(DATA)), headers=OCTETS)
    assert resp.code == 400 and "ended after 1000" in resp.message
    assert resp.headers["connection"] == "close"
    with catalog.open_blob(art["id"], "file") as reader:
        assert reader.read() == b"old"
    resp = call(app, "PUT", path, body=b"", headers=OCTETS, content_length="x")
    assert resp.code == 400
    no_length = call(app, "PUT", path, headers=OCTETS)
    assert no_length.code == 411
    assert call(app, "PUT", path, body=b"abc").code == 400  # no Content-Type


def test_size_caps_and_quotas_are_413(catalog: glarelite.Catalog) -> None:
    catalog.define_type("small", blobs=["file"], max_blob_size=100)
    # drain_limit 1: a refused body is left unread (the connection closes), so what the
    # upload itself read shows
    app = wsgi.make_app(catalog, settings=wsgi.WsgiSettings(drain_limit=1, chunk_size=1000))
    resp = call(app, "POST", "/artifacts/small", body=b'{"name": "s"}', headers=JSON)
    path = f"/artifacts/small/{resp.json['id']}/file"
    declared = CountingInput(DATA)
    resp = call(app, "PUT", path, body=DATA, headers=OCTETS, stream=declared)
    assert resp.code == 413 and resp.json["error"]["type"] == "TooLarge"
    assert declared.given == 0  # over the cap by its Content-Length: nothing read
    assert resp.headers["connection"] == "close"
    chunked = CountingInput(DATA)
    resp = call(app, "PUT", path, body=DATA, headers=OCTETS, chunked=True, stream=chunked)
    assert resp.code == 413 and chunked.given <= 2000  # cut at the cap, a chunk or two read
    catalog.set_quota(max_artifacts=1)
    resp = call(app, "POST", "/artifacts/small", body=b'{"name": "t"}', headers=JSON)
    assert resp.code == 413 and resp.json["error"]["type"] == "QuotaExceeded"


def test_download_range_head_and_headers(app: Any) -> None:
    art = _create(app)
    path = f"/artifacts/images/{art['id']}/file"
    call(app, "PUT", path, body=DATA, headers={"Content-Type": "application/x-raw"})
    resp = call(app, "GET", path)
    assert resp.code == 200 and resp.body == DATA
    assert resp.headers["content-type"] == "application/x-raw"
    assert resp.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
    assert resp.headers["x-openstack-glare-content-sha256"] == hashlib.sha256(DATA).hexdigest()
    assert resp.headers["content-length"] == str(len(DATA))
    resp = call(app, "GET", path, headers={"Range": "bytes=10-19"})
    assert resp.code == 206 and resp.body == DATA[10:20]
    assert resp.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    assert call(app, "GET", path, headers={"Range": "bytes=-5"}).body == DATA[-5:]
    resp = call(app, "GET", path, headers={"Range": f"bytes={len(DATA)}-"})
    assert resp.code == 416 and resp.headers["content-range"] == f"bytes */{len(DATA)}"
    resp = call(app, "GET", path, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert resp.code == 200 and resp.body == DATA
    resp = call(app, "HEAD", path)
    assert (
        resp.code == 200 and resp.body == b"" and resp.headers["content-length"] == str(len(DATA))
    )
    assert call(app, "GET", f"/artifacts/images/{art['id']}/regions/eu").code == 404
    assert call(app, "GET", f"/artifacts/images/{art['id']}/nofield").code == 404


def test_a_corrupt_blob_is_never_sent_whole(app: Any, catalog: glarelite.Catalog) -> None:
    """The last chunk is held back until the reader verified size and sha256 at its end."""
    import fsspec

    art = _create(app)
    path = f"/artifacts/images/{art['id']}/file"
    call(app, "PUT", path, body=DATA, headers=OCTETS)
    fs, root = fsspec.core.url_to_fs(catalog.storage)
    (stored,) = [p for p in fs.find(root) if "/blobs/" in p]
    with fs.open(stored, "wb") as handle:
        handle.write(DATA[:-1] + b"\x00")  # same size, other bytes
    small = wsgi.make_app(catalog, settings=wsgi.WsgiSettings(chunk_size=1000))
    environ_body: list[bytes] = []
    with pytest.raises(glarelite.ChecksumMismatch):
        result = small(_environ("GET", path), lambda status, headers: None)
        for chunk in result:
            environ_body.append(chunk)
    assert 0 < len(b"".join(environ_body)) < len(DATA)


def _environ(method: str, path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
    }


def test_external_blobs_redirect_or_stream(catalog: glarelite.Catalog, origin: Origin) -> None:
    glarelite.open(catalog.path, allow_hosts=["127.0.0.1"]).close()  # remembered by the file
    origin.add("/ext.img", data=DATA, ranges=True)
    app = wsgi.make_app(catalog)
    art = _create(app)
    path = f"/artifacts/images/{art['id']}/regions/eu"
    body = {"url": origin.url("/ext.img"), "md5": None, "sha1": None, "sha256": None}
    loc = {"Content-Type": wsgi.CUSTOM_LOCATION}
    resp = call(app, "PUT", path, body=json.dumps(body).encode(), headers=loc)
    assert resp.code == 200, resp.body
    assert resp.json["regions"]["eu"]["sha256"] == hashlib.sha256(DATA).hexdigest()
    resp = call(app, "GET", path)
    assert resp.code == 301 and resp.headers["location"] == origin.url("/ext.img")
    assert resp.headers["x-openstack-glare-content-sha256"] == hashlib.sha256(DATA).hexdigest()
    assert call(app, "GET", path, query="stream=1").body == DATA
    streaming = wsgi.make_app(catalog, settings=wsgi.WsgiSettings(stream_external=True))
    resp = call(streaming, "GET", path, headers={"Range": "bytes=5-9"})
    assert resp.code == 206 and resp.body == DATA[5:10]
    for bad, needle in (
        ({"md5": "x"}, "'url'"),
        ({"url": origin.url("/ext.img"), "location_type": "internal"}, "location type"),
        ({"url": origin.url("/ext.img"), "sha1": "0" * 40}, "sha1"),
        ({"url": origin.url("/ext.img"), "sha256": "0" * 64}, "sha256"),
        ({"url": "http://169.254.169.254/"}, "169.254.169.254"),
        ({"url": "file:///etc/passwd"}, "file"),
        ([], "JSON object"),
    ):
        resp = call(
            app, "PUT", path.replace("eu", "us"), body=json.dumps(bad).encode(), headers=loc
        )
        assert resp.code == 400 and needle in resp.message, (bad, resp.body)
    resp = call(app, "DELETE", path)
    assert resp.code == 200 and resp.json["regions"] == {}


def test_delete_artifact_and_methods(app: Any, catalog: glarelite.Catalog) -> None:
    art = _create(app)
    path = f"/artifacts/images/{art['id']}"
    resp = call(app, "POST", path, body=b"{}", headers=JSON)
    assert resp.code == 405 and resp.headers["allow"] == "GET, HEAD, PATCH, DELETE"
    assert call(app, "PUT", "/artifacts/images", body=b"", headers=OCTETS).code == 405
    assert call(app, "DELETE", "/schemas").code == 405
    assert call(app, "GET", f"/artifacts/other/{art['id']}").code == 404
    catalog.define_type("other", blobs=["file"])
    assert call(app, "GET", f"/artifacts/other/{art['id']}").code == 404  # wrong type
    assert call(app, "DELETE", f"/artifacts/other/{art['id']}").code == 404
    resp = call(app, "DELETE", path)
    assert resp.code == 204 and resp.body == b""
    assert call(app, "GET", path).code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/artifacts/../etc",
        "/artifacts/images/..",
        "/artifacts/images/%2e%2e",
        "/artifacts/images/a\x00b",
        "/artifacts//images",
        "/artifacts/images/" + "a" * 300,
        "/" + "a/" * 3000,
        "/artifacts/images/x/file/a/b",
        "/elsewhere",
        "relative",
        "/artifacts/\u00e9",
    ],
)
def test_hostile_paths_are_404(app: Any, path: str) -> None:
    resp = call(app, "GET", path)
    assert resp.code in (404, 414) and resp.json["code"] == resp.code


def test_hostile_queries(app: Any) -> None:
    assert call(app, "GET", "/artifacts/images", query="a=1&" * 300).code == 400
    assert call(app, "GET", "/artifacts/images", query="x" * 70_000).code == 414
    assert call(app, "GET", "/artifacts/images", query="name=%ff").code == 400
    resp = call(app, "GET", "/artifacts/images", query="name=%00")
    assert resp.code in (200, 400)


def test_token_auth_scopes(catalog: glarelite.Catalog, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# who is who\nadm ops admin\nalice-t alice\n\nbob-t bob  # bob\n")
    app = wsgi.make_app(catalog, auth=wsgi.TokenAuth.from_file(tokens))

    def as_(token: str | None, method: str, path: str, **kw: Any) -> Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["X-Auth-Token"] = token
        return call(app, method, path, headers=headers, **kw)

    resp = as_(None, "GET", "/artifacts/images")
    assert resp.code == 401 and resp.headers["www-authenticate"].startswith("Token")
    assert as_("wrong", "GET", "/artifacts/images").code == 401
    body = json.dumps({"name": "a", "os": "x"}).encode()
    art = as_("alice-t", "POST", "/artifacts/images", body=body, headers=JSON).json
    assert art["owner"] == "alice"
    path = f"/artifacts/images/{art['id']}"
    assert as_("bob-t", "GET", path).code == 404  # private to alice: invisible, not forbidden
    assert as_("adm", "GET", path).code == 200
    catalog.activate(art["id"])
    catalog.publish(art["id"])
    assert as_("bob-t", "GET", path).code == 200
    resp = as_("bob-t", "DELETE", path)
    assert resp.code == 403 and resp.json["error"]["type"] == "Forbidden"
    made = as_("adm", "POST", "/artifacts/images", body=body, headers=JSON).json
    assert made["owner"] == "ops"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no token"),
        ("t\n", "TOKEN OWNER"),
        ("t a root\n", "TOKEN OWNER"),
        ("t a\nt b\n", "twice"),
        ("t " + "o" * 300 + "\n", "owner"),
    ],
)
def test_token_file_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(glarelite.InvalidInput, match=needle):
        wsgi.TokenAuth.from_file(path)


def test_token_file_missing_or_binary(tmp_path: Path) -> None:
    with pytest.raises(glarelite.NotFound):
        wsgi.TokenAuth.from_file(tmp_path / "none")
    (tmp_path / "bin").write_bytes(b"\xff\xfe t a")
    with pytest.raises(glarelite.InvalidInput):
        wsgi.TokenAuth.from_file(tmp_path / "bin")


def test_unexpected_errors_are_a_generic_500_and_logged(
    catalog: glarelite.Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(environ: Mapping[str, Any]) -> glarelite.Scope:
        raise RuntimeError("secret detail /etc/shadow")

    app = wsgi.make_app(catalog, auth=broken)
    with caplog.at_level(logging.ERROR, logger="glarelite.wsgi"):
        resp = call(app, "GET", "/artifacts/images")
    assert resp.code == 500 and "secret" not in resp.body.decode()
    assert resp.json["error"]["message"] == "The server has an internal error."
    assert "secret detail" in caplog.text


def test_settings_are_checked() -> None:
    for bad in (0, -1, True, "1"):
        with pytest.raises(glarelite.InvalidInput):
            wsgi.WsgiSettings(chunk_size=bad)  # type: ignore[arg-type]


@pytest.fixture
def mirror_tree(catalog: glarelite.Catalog, tmp_path: Path) -> Iterator[glarelite.MirrorCatalog]:
    import mirror

    art = catalog.create("images", "pub", properties={"os": "x"})
    catalog.upload(art.id, "file", DATA)
    catalog.activate(art.id)
    catalog.publish(art.id)
    assert mirror.sync(catalog, str(tmp_path / "tree")).exit_code == 0
    with glarelite.open_mirror(tmp_path / "tree") as tree:
        yield tree


def test_a_mirror_is_read_only(mirror_tree: glarelite.MirrorCatalog) -> None:
    app = wsgi.make_app(mirror_tree)
    (art,) = call(app, "GET", "/artifacts/images").json["artifacts"]
    path = f"/artifacts/images/{art['id']}"
    assert call(app, "GET", f"{path}/file").body == DATA
    for method, target, body, headers in (
        ("POST", "/artifacts/images", b'{"name": "x"}', JSON),
        ("PATCH", path, b"[]", PATCH),
        ("DELETE", path, None, {}),
        ("PUT", f"{path}/file", DATA, OCTETS),
        ("DELETE", f"{path}/file", None, {}),
    ):
        stream = CountingInput(body or b"")
        resp = call(app, method, target, body=body, headers=headers, stream=stream)
        assert resp.code == 403 and resp.json["error"]["type"] == "ReadOnly", method
        assert "read-only mirror" in resp.message


def test_parse_range() -> None:
    from glarelite._wsgi_http import HttpError, parse_range

    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-4", 10) == (0, 5)
    assert parse_range("bytes=5-", 10) == (5, 5)
    assert parse_range("bytes=-3", 10) == (7, 3)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("bytes=2-100", 10) == (2, 8)
    assert parse_range("bytes=0-1,4-5", 10) is None  # multi-range: whole body
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=" + "9" * 40 + "-", 10) is None  # absurd: ignored
    for bad in ("bytes=10-", "bytes=5-2", "bytes=-0"):
        with pytest.raises(HttpError, match="not satisfiable"):
            parse_range(bad, 10)


def test_serve_without_cheroot_says_how_to_install_it(
    catalog: glarelite.Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from typer.testing import CliRunner

    from glarelite.cli import app as cli_app

    monkeypatch.setitem(sys.modules, "cheroot", None)  # import cheroot -> ImportError
    result = CliRunner().invoke(cli_app, ["--catalog", catalog.path, "serve", "--port", "0"])
    assert result.exit_code == 1
    assert "pip install 'glarelite[serve]'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["serve", "--host", "10.0.0.1"], 2, "without --token-file"),
        (["serve", "--token-file", "/nonexistent/tokens"], 3, "cannot read the token file"),
        (["serve", "--mirror", "/nonexistent/tree"], 3, ""),
    ],
)
def test_serve_refusals(
    catalog: glarelite.Catalog, args: list[str], code: int, needle: str
) -> None:
    from typer.testing import CliRunner

    from glarelite.cli import app as cli_app

    result = CliRunner().invoke(cli_app, ["--catalog", catalog.path, *args, "--port", "0"])
    assert result.exit_code == code, result.output
    assert result.output.startswith("glarelite: error: ") and needle in result.output
    assert "Traceback" not in result.output
