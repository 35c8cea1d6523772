"""The layers of docs/concepts.md and DESIGN, enforced on the source (AST, no dependency):

- the library (``glarelite/`` but its ``cli/``) never imports ``mirror`` or the CLI;
- ``mirror/`` uses only the names ``glarelite/__init__.py`` exports (``__all__``);
- no module but the CLI prints, reads the environment or exits the process.

Each rule is also run on a planted violation, so a checker that finds nothing fails."""

from __future__ import annotations

import ast
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = frozenset(glarelite.__all__)

# Known violations, each (file, what). Empty: nothing may join it without a reason here.
KNOWN: set[tuple[str, str]] = set()

_PRINTING = {"print", "breakpoint", "input"}
_EXITING = {("sys", "exit"), ("os", "_exit"), ("os", "abort")}
_ENVIRON = {("os", "environ"), ("os", "getenv"), ("os", "putenv"), ("os", "unsetenv")}
_STREAMS = {("sys", "stdout"), ("sys", "stderr"), ("sys", "stdin")}


def _modules(root: Path, package: str) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        yield rel, _parse(path.read_text(encoding="utf-8"), rel)


@functools.lru_cache(maxsize=512)
def _parse(text: str, rel: str) -> ast.Module:
    return ast.parse(text, filename=rel)  # cached: the planted tests rescan the same files


def _imports(module: ast.Module, rel: str) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """Every import as (absolute module, names imported from it, line)."""
    package = rel.rsplit("/", 1)[0].replace("/", ".")
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            yield base, tuple(a.name for a in node.names), node.lineno


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return ()


def _side_effects(module: ast.Module) -> Iterator[tuple[str, int]]:
    """Printing, reading the environment, exiting: the CLI's business only."""
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _PRINTING:
                yield f"calls {node.func.id}()", node.lineno
            elif node.func.id in ("exit", "quit"):
                yield "exits the process", node.lineno
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = _dotted(node)
            if pair in _EXITING:
                yield "exits the process", node.lineno
            elif pair in _ENVIRON:
                yield "reads os.environ", node.lineno
            elif pair in _STREAMS:
                yield f"writes {'.'.join(pair)}", node.lineno
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "sys"):
            for alias in node.names:
                if (node.module, alias.name) in _ENVIRON:
                    yield "reads os.environ", node.lineno
                elif (node.module, alias.name) in _EXITING | _STREAMS:
                    yield f"imports {node.module}.{alias.name}", node.lineno


def violations(root: Path) -> list[str]:
    found: list[str] = []

    def add(rel: str, line: int, what: str) -> None:
        if (rel, what) not in KNOWN:
            found.append(f"{rel}:{line}: {what}")

    for rel, module in _modules(root, "glarelite"):
        if rel.startswith("glarelite/cli/"):
            continue
        for name, _, line in _imports(module, rel):
            top = name.split(".")
            if top[0] == "mirror":
                add(rel, line, f"imports {name} (the library never imports the mirror)")
            elif top[:2] == ["glarelite", "cli"]:
                add(rel, line, f"imports {name} (the library never imports the CLI)")
        for what, line in _side_effects(module):
            add(rel, line, what)

    for rel, module in _modules(root, "mirror"):
        glarelite_aliases: set[str] = set()
        for name, names, line in _imports(module, rel):
            top = name.split(".")
            if top[0] == "glarelite" and len(top) > 1:
                if top[1] not in PUBLIC:
                    add(rel, line, f"imports {name} (not in glarelite.__all__)")
            elif name == "glarelite":
                for n in names:
                    if n not in PUBLIC:
                        add(rel, line, f"imports glarelite.{n} (not in glarelite.__all__)")
                if not names:
                    glarelite_aliases.add("glarelite")
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "glarelite" and alias.asname:
                        glarelite_aliases.add(alias.asname)
        for node in ast.walk(module):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in glarelite_aliases
                and node.attr not in PUBLIC
            ):
                add(rel, node.lineno, f"uses glarelite.{node.attr} (not in glarelite.__all__)")
        for what, line in _side_effects(module):
            add(rel, line, what)
    return found


def test_the_layers_hold() -> None:
    assert violations(ROOT) == []


def test_the_known_list_names_real_files() -> None:
    for rel, _ in KNOWN:
        assert (ROOT / rel).is_file(), rel


PLANTED = {
    "glarelite/_planted_a.py": ("import mirror\n", "imports mirror"),
    "glarelite/_planted_b.py": ("from .cli import app\n", "imports glarelite.cli"),
    "glarelite/_planted_c.py": ("from glarelite.cli._app import x\n", "imports glarelite.cli"),
    "glarelite/_planted_d.py": ("print('hi')\n", "calls print()"),
    "glarelite/_planted_e.py": ("import os\nx = os.environ.get('A')\n", "reads os.environ"),
    "glarelite/_planted_f.py": ("import os\nx = os.getenv('A')\n", "reads os.environ"),
    "glarelite/_planted_g.py": ("from os import environ\n", "reads os.environ"),
    "glarelite/_planted_h.py": ("import sys\nsys.exit(1)\n", "exits the process"),
    "glarelite/_planted_i.py": ("import sys\nsys.stderr.write('x')\n", "writes sys.stderr"),
    "mirror/_planted_j.py": ("from glarelite._db import utcnow\n", "imports glarelite._db"),
    "mirror/_planted_k.py": ("from glarelite import _db\n", "imports glarelite._db"),
    "mirror/_planted_l.py": ("from glarelite import Catalog, _http\n", "glarelite._http"),
    "mirror/_planted_m.py": ("import glarelite\nx = glarelite._db\n", "uses glarelite._db"),
    "mirror/_planted_n.py": ("import glarelite as g\nx = g._store\n", "uses glarelite._store"),
    "mirror/_planted_o.py": ("exit(3)\n", "exits the process"),
    "mirror/_planted_p.py": ("import os\nos.environ['A'] = '1'\n", "reads os.environ"),
}


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for package in ("glarelite", "mirror"):
        shutil.copytree(ROOT / package, root / package)
    return root


@pytest.mark.parametrize("rel", sorted(PLANTED))
def test_a_planted_violation_is_found(copy: Path, rel: str) -> None:
    source, expected = PLANTED[rel]
    planted = copy / rel
    planted.write_text(source)
    try:
        found = violations(copy)
    finally:
        planted.unlink()
    assert len(found) == 1 and found[0].startswith(rel) and expected in found[0], found


def test_the_cli_may_do_all_of_it(copy: Path) -> None:
    planted = copy / "glarelite/cli/_planted.py"
    planted.write_text("import os, sys\nimport mirror\nprint(os.environ)\nsys.exit(0)\n")
    try:
        assert violations(copy) == []
    finally:
        planted.unlink()
