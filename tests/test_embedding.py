"""docs/embedding.md's worked example (demo/embed_app.py): an application that mounts
glarelite.wsgi under /glare, served on 127.0.0.1 in a thread and fetched through with
http.client (which never follows redirects by itself)."""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3

import glarelite
from demo.embed_app import make_app, serve_in_thread
from glarelite import wsgi
from tests.fixtures.origin import Origin

INTERNAL = bytes(range(256)) * 64  # 16 KiB
EXTERNAL = b"external bytes " * 500


@dataclass
class Served:
    catalog: glarelite.Catalog
    artifact: glarelite.Artifact
    origin: Origin
    port: int

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def _start(catalog: glarelite.Catalog | glarelite.MirrorCatalog, **options: Any) -> Iterator[int]:
    server, thread = serve_in_thread(make_app(catalog, **options))
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def built(catalog: glarelite.Catalog, origin: Origin) -> glarelite.Artifact:
    origin.add("/ext.img", data=EXTERNAL, etag=True, ranges=True)
    art = catalog.create("images", "ubuntu", version="1.0", properties={"os": "linux"})
    catalog.upload(art.id, "file", INTERNAL, content_type="application/x-raw-disk-image")
    catalog.upload(art.id, "regions/us", b"us bytes")
    catalog.add_location(art.id, "regions/eu", origin.url("/ext.img"))
    catalog.activate(art.id)
    return catalog.publish(art.id)


@pytest.fixture
def allowed(catalog: glarelite.Catalog, tmp_path: Path) -> None:
    # The library reads no environment: the catalog remembers the allowed test origin
    # (before the catalog's fetcher is made, so it sees the stored entry).
    glarelite.open(tmp_path / "catalog.db", allow_hosts=["127.0.0.1"]).close()


@pytest.fixture
def served(
    allowed: None, catalog: glarelite.Catalog, built: glarelite.Artifact, origin: Origin
) -> Iterator[Served]:
    for port in _start(catalog):
        yield Served(catalog, built, origin, port)


def test_show_and_list(served: Served) -> None:
    art = served.artifact
    status, headers, body = served.get(f"/glare/artifacts/images/{art.id}")
    assert status == 200 and headers["content-type"].startswith("application/json")
    shown = json.loads(body)  # Glare's flat view: properties and blobs at the top level
    assert (shown["id"], shown["name"], shown["os"]) == (art.id, "ubuntu", "linux")
    assert shown["file"]["sha256"] == hashlib.sha256(INTERNAL).hexdigest()
    assert set(shown["regions"]) == {"eu", "us"}
    status, _, body = served.get("/glare/artifacts/images?name=ubuntu&version=gte:1.0&limit=5")
    page = json.loads(body)
    assert status == 200 and [a["id"] for a in page["artifacts"]] == [art.id]
    status, _, body = served.get("/glare/artifacts/images?name=eq:debian")
    assert json.loads(body)["artifacts"] == []
    status, _, body = served.get("/")  # the application's own route, beside the mount
    assert status == 200 and b"/glare" in body
    assert served.get("/elsewhere")[0] == 404


def test_internal_blob_whole_head_and_ranges(served: Served) -> None:
    base = f"/glare/artifacts/images/{served.artifact.id}"
    status, headers, body = served.get(f"{base}/file")
    assert status == 200 and body == INTERNAL
    assert headers["etag"] == f'"{hashlib.sha256(INTERNAL).hexdigest()}"'
    assert headers["content-type"] == "application/x-raw-disk-image"
    assert headers["accept-ranges"] == "bytes"
    status, headers, body = served.get(f"{base}/file", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(INTERNAL))
    status, headers, body = served.get(f"{base}/file", {"Range": "bytes=100-199"})
    assert status == 206 and body == INTERNAL[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(INTERNAL)}"
    status, _, body = served.get(f"{base}/file", {"Range": "bytes=-10"})
    assert status == 206 and body == INTERNAL[-10:]
    status, _, body = served.get(f"{base}/file", {"Range": "bytes=16000-"})
    assert status == 206 and body == INTERNAL[16000:]
    status, headers, _ = served.get(f"{base}/file", {"Range": f"bytes={len(INTERNAL)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(INTERNAL)}"
    # If-Range with other bytes' tag: the whole blob
    status, _, body = served.get(f"{base}/file", {"Range": "bytes=0-9", "If-Range": '"x"'})
    assert status == 200 and body == INTERNAL
    status, _, body = served.get(f"{base}/regions/us")
    assert status == 200 and body == b"us bytes"


def test_external_blob_redirects_or_streams(served: Served) -> None:
    base = f"/glare/artifacts/images/{served.artifact.id}/regions/eu"
    status, headers, _ = served.get(base)  # 301, as Glare answered
    assert status == 301 and headers["location"] == served.origin.url("/ext.img")
    status, _, body = served.get(f"{base}?stream=1")
    assert status == 200 and body == EXTERNAL
    status, headers, body = served.get(f"{base}?stream=1", {"Range": "bytes=15-29"})
    assert status == 206 and body == EXTERNAL[15:30]


def test_stream_external_setting(
    allowed: None, catalog: glarelite.Catalog, built: glarelite.Artifact, origin: Origin
) -> None:
    for port in _start(catalog, stream_external=True):
        served = Served(catalog, built, origin, port)
        status, _, body = served.get(f"/glare/artifacts/images/{built.id}/regions/eu")
        assert status == 200 and body == EXTERNAL


def test_errors(served: Served) -> None:
    art = served.artifact
    base = "/glare/artifacts/images"
    assert served.get(f"{base}/no-such-id")[0] == 404
    assert served.get(f"/glare/artifacts/other/{art.id}")[0] == 404
    assert served.get(f"{base}/{art.id}/regions/asia")[0] == 404
    assert served.get(f"{base}/{art.id}/nofield")[0] == 404
    assert served.get(f"{base}?bogus=1")[0] == 400
    assert served.get(f"{base}?limit=x")[0] == 400
    assert served.get("/glare/elsewhere")[0] == 404
    assert served.get(f"{base}/{art.id}/..%2f..%2fetc")[0] == 404
    status, headers, body = served.get(f"{base}/{art.id}", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD, PATCH, DELETE"
    error = json.loads(body)  # Glare's fault body
    assert error["code"] == 405 and "message" in error["error"]
    # an active artifact's blobs are frozen
    status, _, body = served.get(f"{base}/{art.id}/file", method="DELETE")
    assert status == 403 and json.loads(body)["error"]["type"] == "IllegalTransition"


def test_private_artifacts_follow_the_scope(
    allowed: None, catalog: glarelite.Catalog, built: glarelite.Artifact, origin: Origin
) -> None:
    hidden = catalog.create("images", "secret", properties={"os": "x"})
    auth = wsgi.TokenAuth({"bob-token": glarelite.Scope.of("bob")})
    for port in _start(catalog, auth=auth):
        served = Served(catalog, built, origin, port)
        bob = {"X-Auth-Token": "bob-token"}
        assert served.get(f"/glare/artifacts/images/{hidden.id}", bob)[0] == 404
        assert served.get(f"/glare/artifacts/images/{built.id}", bob)[0] == 200
        _, _, body = served.get("/glare/artifacts/images", bob)
        assert [a["id"] for a in json.loads(body)["artifacts"]] == [built.id]
        assert served.get(f"/glare/artifacts/images/{built.id}", bob, "DELETE")[0] == 403
        assert served.get(f"/glare/artifacts/images/{built.id}")[0] == 401  # no token
        assert served.get(f"/glare/artifacts/images/{built.id}", {"X-Auth-Token": "x"})[0] == 401
    assert catalog.get(built.id).status == "active"


def test_runs_as_a_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, str(root / "demo" / "embed_app.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--stream-external" in result.stdout
    assert "--token-file" in result.stdout


def test_serves_a_mirror_too(
    allowed: None,
    catalog: glarelite.Catalog,
    built: glarelite.Artifact,
    origin: Origin,
    tmp_path: Path,
) -> None:
    import mirror

    report = mirror.sync(catalog, str(tmp_path / "tree"))
    assert report.exit_code == 0, report.to_dict()
    origin.stop()  # the site has no internet: everything comes from the tree
    with glarelite.open_mirror(tmp_path / "tree") as site:
        for port in _start(site):
            served = Served(catalog, built, origin, port)
            base = f"/glare/artifacts/images/{built.id}"
            status, _, body = served.get(base)
            assert status == 200 and json.loads(body)["id"] == built.id
            assert served.get(f"{base}/file")[2] == INTERNAL
            status, _, body = served.get(f"{base}/regions/eu")  # external: streamed
            assert status == 200 and body == EXTERNAL
            status, _, body = served.get(f"{base}/file", {"Range": "bytes=10-19"})
            assert status == 206 and body == INTERNAL[10:20]
            page = json.loads(served.get("/glare/artifacts/images?name=ubuntu")[2])
            assert [a["id"] for a in page["artifacts"]] == [built.id]
            status, _, body = served.get(base, method="DELETE")  # a tree is read-only
            assert status == 403 and json.loads(body)["error"]["type"] == "ReadOnly"


def test_glare_keys_have_one_url_for_the_app_and_a_mirror(
    allowed: None, catalog: glarelite.Catalog, tmp_path: Path, http_server: Any
) -> None:
    """Issue 17: a free-text key is reached at ``join_base(base, blob.url)`` both from the
    example app (Glare's API mounted at /glare) and from a static server of the mirror
    tree; the app also takes the key as python-glareclient sends it, unquoted."""
    import mirror

    keys = {"RegionOne": b"r1", "a b": b"ab", "a/b": b"slash", "..": b"dots", "ü": b"u"}
    art = catalog.create("images", "keys", properties={"os": "linux"})
    for key, data in keys.items():
        catalog.upload(art.id, f"regions/{key}", data)
    catalog.activate(art.id)
    catalog.publish(art.id)
    assert mirror.sync(catalog, str(tmp_path / "tree")).exit_code == 0
    static = http_server(tmp_path / "tree")
    for port in _start(catalog):
        app = f"http://127.0.0.1:{port}/glare"
        for key, data in keys.items():
            url = catalog.get(art.id).blobs["regions"][key].url
            for base in (app, static):
                reply = urllib3.request("GET", glarelite.join_base(base, url), retries=False)
                assert reply.status == 200 and reply.data == data, (base, key)
            if "/" not in key and key.strip(".") != "":  # Glare's own spelling, quoted once
                raw = f"{app}/artifacts/images/{art.id}/regions/{urllib.parse.quote(key)}"
                reply = urllib3.request("GET", raw, retries=False)
                assert reply.status == 200 and reply.data == data, key
        # A key has one name in a URL: '..' spelled as a dot segment names no key, neither
        # in the app (no route) nor in the tree (the static server leaves the folder).
        bad = urllib3.request("GET", f"{app}/artifacts/images/{art.id}/regions/%2e%2e")
        assert bad.status == 404
        bad = urllib3.request("GET", f"{static}/artifacts/images/{art.id}/regions/%2e%2e")
        assert bad.data != b"dots"
