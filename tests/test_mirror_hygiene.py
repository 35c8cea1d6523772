"""Served-tree hygiene (issue 16.5): nothing a static server serves from the tree but the
API, with the nginx block of docs/tutorial.md started as written; no host path in any
file of the tree."""

from __future__ import annotations

import http.client
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import mirror
from glarelite import tree
from mirror.state import STATE
from tests.fixtures import static
from tests.fixtures.glare import start_serve
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def tutorial_nginx_block() -> str:
    text = (DOCS / "tutorial.md").read_text()
    (block,) = re.findall(r"```nginx\n(.*?)```", text, re.S)
    return block


def start_site(block: str, root: Path) -> static.StaticServer:
    """nginx running the tutorial's server block; only its listen and root lines are
    changed (a free loopback port, the test's tree)."""
    assert "    listen 80;\n" in block and "    root /srv/mirror;\n" in block

    def make(port: int) -> static.StaticServer:
        work = Path(tempfile.mkdtemp(prefix="glarelite-nginx-"))
        server = block.replace("    listen 80;\n", f"    listen 127.0.0.1:{port};\n").replace(
            "    root /srv/mirror;\n", f"    root {root.resolve()};\n"
        )
        conf = work / "nginx.conf"
        conf.write_text(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
            "events { worker_connections 64; }\n"
            f"http {{\naccess_log off;\nclient_body_temp_path {work}/body;\n"
            f"proxy_temp_path {work}/proxy;\nfastcgi_temp_path {work}/fastcgi;\n"
            f"uwsgi_temp_path {work}/uwsgi;\nscgi_temp_path {work}/scgi;\n{server}}}\n"
        )
        log = work / "error.log"
        proc = subprocess.Popen(
            [static.NGINX, "-c", str(conf), "-p", str(work), "-e", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return static.StaticServer(proc, port, log, work)

    return static._start(make)


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_no_host_path_in_any_file_of_the_tree(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    mirror.sync(world.catalog, str(dest), **QUICK)
    host_paths = {world.catalog.path.encode(), str(world.root).encode()}
    for path in dest.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(h in data for h in host_paths), path
    assert mirror.sync(world.catalog, str(dest), **QUICK).nothing_to_do


@pytest.mark.skipif(not static.nginx_available(), reason="nginx is not installed")
def test_the_tutorial_nginx_block_serves_the_api_only(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    mirror.sync(world.catalog, str(dest), **QUICK)
    # what a run in progress, or an interrupted one, leaves in the tree
    blob = tree.blob_path("images", world.ids["a1"], "file")
    temp = dest / Path(blob).parent / f".file.glarelite-tmp.host.1.{'0' * 16}"
    temp.write_bytes(b"half a blob")
    partial = dest / tree.STATE_DIR / "partial" / f"{'a' * 64}.json"
    partial.parent.mkdir(exist_ok=True)
    partial.write_text("{}")

    with start_site(tutorial_nginx_block(), dest) as site:
        assert status(f"{site.url}/index.json") == (200, "application/json")
        assert status(f"{site.url}/{blob}") == (200, "application/octet-stream")
        sums = next(p for p in dest.glob("SHA256SUMS.d/*/*"))
        assert status(f"{site.url}/{sums.relative_to(dest).as_posix()}")[0] == 200
        for hidden in (
            STATE,
            f"{tree.STATE_DIR}/lock",
            f"{tree.STATE_DIR}/partial/{partial.name}",
            temp.relative_to(dest).as_posix(),
        ):
            assert (dest / hidden).exists(), hidden
            assert status(f"{site.url}/{hidden}")[0] == 404, hidden


def _served_state(world: World, tmp_path: Path) -> tuple[Path, list[str]]:
    """A mirrored tree and the paths of the writer's own files in it (all present)."""
    dest = tmp_path / "tree"
    assert mirror.sync(world.catalog, str(dest), **QUICK).exit_code == 0
    partial = dest / tree.STATE_DIR / "partial" / f"{'a' * 64}.json"
    partial.parent.mkdir(exist_ok=True)
    partial.write_text("{}")
    hidden = [STATE, f"{tree.STATE_DIR}/lock", f"{tree.STATE_DIR}/partial/{partial.name}"]
    assert all((dest / p).is_file() for p in hidden)
    return dest, hidden


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET with ``path`` sent as written (no client-side normalisation of dot segments)."""
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_python_http_server_serves_the_writer_state_as_the_tutorial_warns(
    world: World, tmp_path: Path
) -> None:
    # docs/tutorial.md says so plainly; if http.server ever stops, the warning can go
    dest, hidden = _served_state(world, tmp_path)
    with static.start_http_server(dest) as site:
        for path in hidden:
            code, body = raw_get(site.url, f"/{path}")
            assert code == 200 and body == (dest / path).read_bytes(), path
    assert "So it serves the mirror's own `.glarelite-mirror/` folder" in " ".join(
        (DOCS / "tutorial.md").read_text().split()
    )


def test_glarelite_serve_never_serves_the_writer_state(world: World, tmp_path: Path) -> None:
    dest, hidden = _served_state(world, tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    server = start_serve(["serve", "--port", "0", "--mirror", str(dest)], cwd=site)
    try:
        blob = tree.blob_path("images", world.ids["a1"], "file")
        code, body = raw_get(server.url, f"/{blob}")
        assert code == 200 and body == (dest / blob).read_bytes()  # the server does serve
        for path in hidden:
            for sent in (
                f"/{path}",
                f"/artifacts/../{path}",
                f"/artifacts/images/../../{path}",
                f"/artifacts/images/{world.ids['a1']}/../../../{path}",
                f"/%2e{path[1:]}",
                f"/artifacts/images/{world.ids['a1']}/file/../../../../{path}",
            ):
                code, body = raw_get(server.url, sent)
                assert code == 404, (sent, code)
                assert b"SQLite format 3" not in body and body != b"{}", sent
    finally:
        code, err = server.stop()
    assert code == 0, err
