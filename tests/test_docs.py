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
from glarelite import cli, wsgi

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


# -- signatures: every call documented in docs/api.md matches the code's -------------------
#
# Three places document a signature: a fenced ```python block under a `### `name`` heading
# (full signatures, annotations compared too), a `class X(Protocol):` block (each method),
# and, in the section of a class, the first cell of a table row or the lead of a bullet
# (``- `method(args) -> T` — ...``: names, kinds and defaults, and the return type's head).
# A default written `…` stands for "a sentinel the prose explains"; a parameter list that
# ends in `...` documents only its first parameters.

import ast  # noqa: E402
import dataclasses  # noqa: E402
import inspect  # noqa: E402

import mirror  # noqa: E402

_NAMESPACE: dict[str, Any] = {
    **{n: getattr(glarelite, n) for n in glarelite.__all__},
    **{n: getattr(mirror, n) for n in mirror.__all__},
    "glarelite": glarelite,
    "mirror": mirror,
    # glarelite.wsgi is a public submodule, not re-exported: its defaults by their names
    **{n: getattr(wsgi, n) for n in ("admin_auth", "WsgiSettings")},
}


@dataclasses.dataclass
class DocSig:
    where: str  # "api.md:<line>" for the message
    target: str  # dotted: "glarelite.open", "Catalog.scoped", "mirror.SyncOptions"
    node: ast.FunctionDef
    partial: bool
    full: bool  # a fenced signature: annotations compared too


def _resolve(target: str) -> Any:
    parts = target.split(".")
    obj: Any = _NAMESPACE[parts[0]]
    for part in parts[1:]:
        obj = getattr(obj, part)
    return obj


def _as_def(name: str, params: str, ret: str | None) -> tuple[ast.FunctionDef, bool]:
    params = params.replace("…", "...").strip()
    partial = False
    stripped = params.rstrip().rstrip(",").rstrip()
    if stripped == "..." or stripped.endswith(", ..."):
        partial = True
        params = stripped[: -len("...")].rstrip().rstrip(",")
    source = f"def {name}({params})" + (f" -> {ret}" if ret else "") + ": pass"
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node, partial


def _split_call(text: str) -> tuple[str, str, str | None] | None:
    """``callee(params) -> ret`` into its three parts (parentheses may nest)."""
    m = re.match(r"\s*([A-Za-z_][\w.]*)\(", text)
    if not m:
        return None
    depth, i = 0, m.end() - 1
    for i in range(m.end() - 1, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                break
    params = text[m.end() : i]
    rest = text[i + 1 :].split("#", 1)[0].strip()
    ret = rest[2:].strip() if rest.startswith("->") else None
    return m.group(1), params, ret or None


def _sections(text: str) -> list[tuple[str, int, str]]:
    """(heading name, first line number, body) per ``### `name` `` section."""
    lines = text.splitlines()
    out: list[tuple[str, int, list[str]]] = []
    for n, line in enumerate(lines, 1):
        m = re.match(r"#{2,3} `([\w.]+)`", line)
        if m:
            out.append((m.group(1), n, []))
        elif line.startswith("## "):
            out.append(("", n, []))
        elif out:
            out[-1][2].append(line)
    return [(name, n, "\n".join(body)) for name, n, body in out if name]


def documented_signatures(text: str | None = None) -> list[DocSig]:
    found: list[DocSig] = []
    for name, start, body in _sections(_api_text() if text is None else text):
        obj = _NAMESPACE.get(name)
        # fenced signatures
        for block in re.finditer(r"```python\n(.*?)```", body, re.S):
            line = start + body[: block.start()].count("\n") + 2
            code = block.group(1)
            if code.lstrip().startswith("class "):
                tree = ast.parse(code.replace("…", "..."))
                cls = tree.body[0]
                assert isinstance(cls, ast.ClassDef)
                for item in cls.body:
                    if isinstance(item, ast.FunctionDef):
                        found.append(
                            DocSig(f"api.md:{line}", f"{cls.name}.{item.name}", item, False, True)
                        )
                continue
            for stmt in re.split(r"\n(?=\S)", code):
                parts = _split_call(stmt)
                if parts is None or parts[0] in ("import", "from"):
                    continue
                callee, params, ret = parts
                if callee.split(".")[0] not in _NAMESPACE:
                    continue
                node, partial = _as_def(callee.split(".")[-1], params, ret)
                found.append(DocSig(f"api.md:{line}", callee, node, partial, True))
        # methods in a class's section: table rows and bullets
        if not inspect.isclass(obj):
            continue
        for m in re.finditer(r"^\| `([^`]+)` \||^- ((?:[^—\n]|\n  )+)", body, re.M):
            line = start + body[: m.start()].count("\n") + 1
            spans = [m.group(1)] if m.group(1) else re.findall(r"`([^`]+)`", m.group(2))
            for span in spans:
                parts = _split_call(" ".join(span.split()))
                if parts is None or "." in parts[0]:
                    continue
                callee, params, ret = parts
                node, partial = _as_def(callee, params, ret)
                found.append(DocSig(f"api.md:{line}", f"{name}.{callee}", node, partial, False))
    return found


_FACTORY = repr(dataclasses._HAS_DEFAULT_FACTORY)  # type: ignore[attr-defined]


def _code_default(obj: Any, param: inspect.Parameter) -> Any:
    if repr(param.default) == _FACTORY and dataclasses.is_dataclass(obj):
        fld = {f.name: f for f in dataclasses.fields(obj)}[param.name]
        return fld.default_factory()  # type: ignore[misc]
    return param.default


def _norm(annotation: str) -> str:
    text = ast.unparse(ast.parse(annotation, mode="eval"))
    return re.sub(r"\b_List\b|\bbuiltins\.list\b", "list", text)


def _head(annotation: str) -> str:
    return _norm(annotation).split("[", 1)[0].split(" ", 1)[0]


def signature_problems(doc: DocSig) -> list[str]:
    try:
        obj = _resolve(doc.target)
    except (KeyError, AttributeError):
        return [f"{doc.where}: {doc.target} does not exist"]
    static = obj
    if "." in doc.target:
        owner = _resolve(doc.target.rsplit(".", 1)[0])
        if inspect.isclass(owner):
            static = inspect.getattr_static(owner, doc.target.rsplit(".", 1)[1])
    if isinstance(static, property):
        return [f"{doc.where}: {doc.target} is a property, documented as a call"]
    sig = inspect.signature(obj)
    code = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    args = doc.node.args
    documented: list[tuple[ast.arg, inspect._ParameterKind, ast.expr | None]] = []
    positional = [*args.posonlyargs, *args.args]
    pos_defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for i, a in enumerate(positional):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if i < len(args.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        documented.append((a, kind, pos_defaults[i]))
    if args.vararg:
        documented.append((args.vararg, inspect.Parameter.VAR_POSITIONAL, None))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        documented.append((a, inspect.Parameter.KEYWORD_ONLY, d))
    if args.kwarg:
        documented.append((args.kwarg, inspect.Parameter.VAR_KEYWORD, None))
    documented = [d for d in documented if d[0].arg not in ("self", "cls")]

    problems: list[str] = []
    where = f"{doc.where}: {doc.target}"
    names = [d[0].arg for d in documented]
    code_names = [p.name for p in code]
    expected = code_names[: len(names)] if doc.partial else code_names
    if names != expected:
        return [f"{where}: parameters {names}, the code has {code_names}"]
    for (arg, kind, default), param in zip(documented, code, strict=False):
        if kind != param.kind and not (
            doc.partial and kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            problems.append(
                f"{where}: {arg.arg} is {kind.description}, the code's is {param.kind.description}"
            )
        has_default = param.default is not inspect.Parameter.empty
        if default is None:
            if has_default and kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                problems.append(f"{where}: {arg.arg} has a default in the code")
        elif not has_default:
            problems.append(f"{where}: {arg.arg} has no default in the code")
        elif not (isinstance(default, ast.Constant) and default.value is Ellipsis):
            text = ast.unparse(default)
            try:
                value = eval(text, {"__builtins__": {}}, dict(_NAMESPACE))
            except Exception as exc:
                problems.append(f"{where}: default of {arg.arg} {text!r} does not evaluate: {exc}")
            else:
                actual = _code_default(obj, param)
                if value != actual:
                    problems.append(f"{where}: {arg.arg}={text}, the code's default is {actual!r}")
        if doc.full and arg.annotation is not None:
            if not isinstance(param.annotation, str):
                continue  # not postponed: compared by mypy, not here
            if _norm(ast.unparse(arg.annotation)) != _norm(param.annotation):
                problems.append(
                    f"{where}: {arg.arg}: {ast.unparse(arg.annotation)}, the code "
                    f"says {param.annotation}"
                )
    if doc.node.returns is not None and isinstance(sig.return_annotation, str):
        mine = ast.unparse(doc.node.returns)
        if doc.full:
            same = _norm(mine) == _norm(sig.return_annotation)
        else:
            same = _head(mine) == _head(sig.return_annotation)
        if not same:
            problems.append(f"{where}: returns {mine}, the code says {sig.return_annotation}")
    return problems


SIGNATURES = documented_signatures()


def test_signatures_are_found() -> None:
    targets = {d.target for d in SIGNATURES}
    for expected in (
        "glarelite.open",
        "Catalog.update",
        "mirror.sync",
        "MirrorCatalog.list",
        "Progress.begin",
        "HttpSettings",
        "Scope.of",
        "Hooks.before",
    ):
        assert expected in targets, expected


@pytest.mark.parametrize("doc", SIGNATURES, ids=lambda d: f"{d.target}@{d.where}")
def test_documented_signature_matches_the_code(doc: DocSig) -> None:
    problems = signature_problems(doc)
    assert not problems, "\n".join(problems)


PLANTED_DRIFT = [
    ("glarelite.open(\n    path: str | Path,\n", "glarelite.open(\n    path: str,\n", "path: str"),
    (
        "    create: bool = True,\n) -> Catalog",
        "    create: bool = False,\n) -> Catalog",
        "create=False",
    ),
    (
        "| `get(artifact_id) -> Artifact` |",
        "| `get(artifact_id, *, deep=False) -> Artifact` |",
        "the code has",
    ),
    (
        "| `delete(artifact_id, *, force=False)",
        "| `delete(artifact_id, force=False)",
        "keyword-only",
    ),
    ("| `quotas() -> list[Quota]` |", "| `quotas() -> dict[str, Quota]` |", "returns dict"),
    ("| `close()` |", "| `close_all()` |", "does not exist"),
    (
        "    def end(self, key: str, ok: bool = True)",
        "    def end(self, key: str, ok: int = True)",
        "ok: int",
    ),
    ("    max_segments: int = 4,", "    max_segments: int = 5,", "max_segments=5"),
    ("- `remove(hook)` —", "- `remove(hook, operation)` —", "the code has"),
]


@pytest.mark.parametrize("old,new,expected", PLANTED_DRIFT, ids=lambda v: str(v)[:30])
def test_planted_drift_is_caught(old: str, new: str, expected: str) -> None:
    text = _api_text()
    assert text.count(old) == 1, old
    before = [p for d in documented_signatures(text) for p in signature_problems(d)]
    after = [
        p for d in documented_signatures(text.replace(old, new)) for p in signature_problems(d)
    ]
    assert before == []
    assert len(after) == 1 and expected in after[0], after
