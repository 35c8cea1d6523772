"""The docs keep up with the code: every CLI command is in docs/cli.md, every public
name in docs/api.md, every exit code in the table, every relative link resolves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

import glarelite
from glarelite import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every leaf command of the typer app, as typed: ``"type define"``, ``"mirror"``."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [" ".join(prefix)]
    out: list[str] = []
    for name, sub in sorted(subcommands.items()):
        if getattr(sub, "hidden", False):
            continue
        out.extend(command_paths(sub, (*prefix, name)))
    return out


COMMANDS = command_paths(typer.main.get_command(cli.app))


def test_the_walk_finds_commands_and_groups() -> None:
    assert "init" in COMMANDS and "type define" in COMMANDS and "mirror" in COMMANDS
    assert "type" not in COMMANDS  # a group: its leaves are listed instead


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_command_is_documented(command: str) -> None:
    text = (DOCS / "cli.md").read_text()
    assert f"### `{command}`" in text, f"docs/cli.md has no section for `glarelite {command}`"
    assert f"glarelite {command}" in text, f"docs/cli.md shows no usage of {command}"


def test_every_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    group = typer.main.get_command(cli.app)
    missing = []

    def walk(command: Any) -> None:
        for param in getattr(command, "params", []):
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in ("--help",) and opt not in text:
                    missing.append(f"{command.name}: {opt}")
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(group)
    assert not missing, f"options missing from docs/cli.md: {missing}"


def test_every_exit_code_is_in_the_table() -> None:
    text = (DOCS / "cli.md").read_text()
    codes = {v for k, v in vars(cli).items() if k.startswith("EXIT_") and isinstance(v, int)}
    for code in codes:
        assert re.search(rf"^\| {code} \|", text, re.M), f"exit code {code} not in docs/cli.md"
    for cls in cli.EXIT_CODES:
        assert f"`{cls.__name__}`" in text, f"{cls.__name__} not in the exit-code table"


def _api_text() -> str:
    return (DOCS / "api.md").read_text()


@pytest.mark.parametrize("name", glarelite.__all__)
def test_every_public_name_is_in_api_md(name: str) -> None:
    assert f"`{name}`" in _api_text(), f"docs/api.md does not document glarelite.{name}"


def test_every_mirror_name_is_in_api_md() -> None:
    import mirror

    names = getattr(mirror, "__all__", None)
    assert names, "mirror/__init__.py declares no __all__"
    text = _api_text()
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"docs/api.md does not document mirror names: {missing}"


def _slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


MARKDOWN = sorted([*DOCS.glob("*.md"), ROOT / "README.md"])


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no anchor {target}"


def test_docs_exist() -> None:
    for name in ("tutorial", "concepts", "api", "cli", "embedding"):
        assert (DOCS / f"{name}.md").stat().st_size > 1000, name
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_readme_python_example_runs(
    tmp_path: Path, origin: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    origin.add("/ubuntu.img", data=b"eu bytes")
    (tmp_path / "ubuntu-22.04.img").write_bytes(b"disk bytes")
    monkeypatch.chdir(tmp_path)
    # The library reads no environment: the catalog remembers the allowed test origin.
    glarelite.open(tmp_path / "glarelite.db", allow_hosts=["127.0.0.1"]).close()
    source = code.group(1).replace("https://example.eu/ubuntu.img", origin.url("/ubuntu.img"))
    exec(compile(source, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    import hashlib

    assert printed.split() == ["ubuntu", "22.4.0", hashlib.sha256(b"disk bytes").hexdigest()]


NGINX_WRAPPER = """\
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
{server}
}}
"""


@pytest.mark.nginx
def test_tutorial_nginx_snippet_serves_a_mirror(catalog: glarelite.Catalog, tmp_path: Path) -> None:
    """The server block of docs/tutorial.md, as printed, serves a mirror tree."""
    import os
    import shutil
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request

    import mirror

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.skip("nginx is not installed")
    art = catalog.create("images", "ubuntu", properties={"os": "linux"})
    catalog.upload(art.id, "file", b"0123456789" * 1000)
    catalog.activate(art.id)
    catalog.publish(art.id)
    tree = tmp_path / "tree"
    assert mirror.sync(catalog, str(tree)).exit_code == 0

    tutorial = (DOCS / "tutorial.md").read_text()
    block = re.search(r"```nginx\n(.*?)```", tutorial, re.S)
    assert block is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = block.group(1).replace("listen 80;", f"listen 127.0.0.1:{port};")
    server = server.replace("root /srv/mirror;", f"root {tree};")
    assert f"root {tree};" in server and f"127.0.0.1:{port}" in server
    work = tmp_path / "nginx"
    work.mkdir()
    conf = work / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_WRAPPER.format(user=user, work=work, server=server))
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(work), "-e", str(work / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                opener.open(f"{base}/index.json", timeout=2).close()
                break
            except OSError:
                log = (work / "error.log").read_text() if (work / "error.log").exists() else ""
                assert proc.poll() is None, f"nginx exited: {log}"
                assert time.monotonic() < deadline, f"nginx did not start: {log}"
                time.sleep(0.1)
        with opener.open(f"{base}/artifacts/images/{art.id}/file") as resp:
            assert resp.read() == b"0123456789" * 1000
            assert resp.headers["Content-Type"] == "application/octet-stream"
        with opener.open(f"{base}/artifacts/images/{art.id}/index.json") as resp:
            assert resp.headers["Content-Type"].startswith("application/json")
            assert json.loads(resp.read())["id"] == art.id
        ranged = urllib.request.Request(
            f"{base}/artifacts/images/{art.id}/file", headers={"Range": "bytes=5-9"}
        )
        with opener.open(ranged) as resp:
            assert resp.status == 206 and resp.read() == b"56789"
        with pytest.raises(urllib.error.HTTPError) as listing:  # no autoindex
            opener.open(f"{base}/artifacts/images/")
        assert listing.value.code in (403, 404)
        with glarelite.open_mirror(base) as site:
            assert [a.id for a in site.iter_all("images")] == [art.id]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)
