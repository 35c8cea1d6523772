"""Every documented error of docs/cli.md, walked through the CLI (issue 16.4): the exit
code, one line naming what was wrong, and a hint written for that situation in the
CLI's words (never the Python API's); --debug adds a traceback and keeps the code."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mirror
from mirror.dest import open_dest
from mirror.lock import TreeLock
from tests.fixtures.origin import Origin
from tests.test_cli import (  # the CLI fixtures: env, run, ready
    DATA,
    Run,
    env_fixture,
    new_id,
    ok,
    one_line_error,
    ready_fixture,
    run_fixture,
)

__all__ = ["env_fixture", "ready_fixture", "run_fixture"]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
API_WORDS = ("force=True", "repair=True", "allow_hosts", "max_delete=", "pass force")


@dataclass
class Case:
    code: int
    says: str  # in the message
    hint: str | None  # in the hint, after " — " (None: the message says what to do)
    never: tuple[str, ...] = ()  # in no part of the line
    args: Callable[[Run, Path, Origin], list[str]] = field(default=lambda r, p, o: [])


def _published_tree(ready: Run, tmp_path: Path) -> Path:
    artifact = new_id(ready, "ubuntu", "--set", "os=linux")
    ok(ready("upload", artifact, "file", "-", input=DATA))
    ok(ready("activate", artifact))
    ok(ready("publish", artifact))
    tree = tmp_path / "tree"
    ok(ready("mirror", str(tree)))
    return tree


def _draft(ready: Run) -> str:
    return new_id(ready, "ubuntu", "--set", "os=linux")


def _locked(ready: Run, tmp_path: Path) -> list[str]:
    tree = _published_tree(ready, tmp_path)
    lock = TreeLock(open_dest(str(tree), None, create=False)).acquire()
    _held.append(lock)
    return ["mirror", str(tree)]


_held: list[TreeLock] = []


CASES: dict[str, Case] = {
    "no catalog": Case(
        3,
        "no catalog at",
        None,
        never=("show ID",),
        args=lambda r, p, o: ["--catalog", str(p / "none.db"), "list"],
    ),
    "not a catalog": Case(
        2,
        "is not a glarelite catalog",
        "--catalog",
        never=("internal error",),
        args=lambda r, p, o: ["--catalog", str(_text_file(p)), "list"],
    ),
    "init into a missing folder": Case(
        3,
        "no folder",
        "mkdir -p",
        args=lambda r, p, o: ["--catalog", str(p / "typo" / "deep" / "c.db"), "init"],
    ),
    "bad filter": Case(2, "filter", None, args=lambda r, p, o: ["list", "images", "-f", "bad"]),
    "no such artifact": Case(
        3, "nosuch", "glarelite list", args=lambda r, p, o: ["show", "nosuch"]
    ),
    "publish a draft": Case(
        4, "", "glarelite show ID", args=lambda r, p, o: ["publish", _draft(r)]
    ),
    "wrong --sha256": Case(
        5,
        "sha256",
        "--sha256",
        args=lambda r, p, o: [
            "upload",
            _draft(r),
            "file",
            str(_text_file(p)),
            "--sha256",
            "0" * 64,
        ],
    ),
    "a 404 upstream": Case(
        6,
        "404",
        "no such file",
        never=("--retries",),
        args=lambda r, p, o: ["add-location", _draft(r), "file", o.url("/missing")],
    ),
    "connection refused": Case(
        6,
        "",
        "--retries",
        args=lambda r, p, o: ["add-location", _draft(r), "file", "http://127.0.0.1:9/x"],
    ),
    "ftp scheme": Case(
        7,
        "scheme 'ftp'",
        "http:// or https://",
        never=("allow-host", "ALLOW_HOSTS"),
        args=lambda r, p, o: ["add-location", _draft(r), "file", "ftp://example.org/x"],
    ),
    "loopback refused": Case(
        7,
        "loopback",
        "--allow-host",
        args=lambda r, p, o: ["add-location", _draft(r), "file", "http://127.0.0.2:9/x"],
    ),
    "a tree another run holds": Case(
        4,
        "already running",
        "wait for that run",
        never=("remove", "stale"),
        args=lambda r, p, o: _locked(r, p),
    ),
    "--report where it cannot be written": Case(
        2,
        "--report",
        "folder you can write",
        args=lambda r, p, o: [
            "mirror",
            str(p / "never-made"),
            "--report",
            str(p / "no" / "such" / "r.json"),
        ],
    ),
    "download into a missing folder": Case(
        1,
        "out/of/sight/file",
        None,
        never=(".part", ".glarelite-"),
        args=lambda r, p, o: [
            "download",
            _active(r),
            "file",
            "-o",
            str(p / "out/of/sight/file"),
        ],
    ),
    "a tree that cannot be written": Case(
        1,
        "cannot write the mirror tree",
        None,
        args=lambda r, p, o: ["mirror", str(_text_file(p) / "tree")],
    ),
}


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, not a folder\n")
    return path


def _active(ready: Run) -> str:
    artifact = _draft(ready)
    ok(ready("upload", artifact, "file", "-", input=DATA))
    return artifact


@pytest.fixture(autouse=True)
def _release_locks() -> None:
    yield
    while _held:
        _held.pop().release()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_documented_error(
    name: str, debug: bool, ready: Run, tmp_path: Path, origin: Origin
) -> None:
    case = CASES[name]
    args = case.args(ready, tmp_path, origin)
    result = ready(*(["--debug"] if debug else []), *args)
    if debug:
        # --debug shows the traceback and changes nothing else (issue 16.4)
        assert result.exit_code == case.code, (result.exit_code, result.stderr)
        assert "Traceback" in result.stderr
        line = result.stderr.rstrip("\n").rsplit("\n", 1)[-1] + "\n"
    else:
        line = one_line_error(result, case.code)
    message, _, hint = line.removeprefix("glarelite: error: ").rstrip("\n").partition(" — ")
    assert case.says in message, line
    if case.hint is None:
        assert not hint, line
    else:
        assert case.hint in hint, line
    for word in (*case.never, *API_WORDS):
        assert word not in line, (word, line)
    if name == "init into a missing folder":
        assert not (tmp_path / "typo").exists()
    if name == "--report where it cannot be written":
        assert not (tmp_path / "never-made").exists()  # refused before the run


def test_every_documented_exit_code_is_walked() -> None:
    """The exit-code table of docs/cli.md: each failure code has a case above (or, for
    mirror's own codes, a test of its own)."""
    table = DOCS.read_text().split("## Exit codes", 1)[1].split("## Commands", 1)[0]
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)}
    walked = {c.code for c in CASES.values()}
    elsewhere = {
        0: "success",
        8: "tests/test_cli_quota_input.py, tests/test_hooks_quotas.py",
        9: "tests/test_catalog_disk.py::test_cli_full_disk_is_one_line_and_exit_9 (a tmpfs)",
        10: "tests/test_cli_mirror.py::test_mirror_dry_run_report_and_delete",
        130: "tests/test_cli_progress.py::test_cli_says_how_to_resume",
    }
    assert codes - walked - set(elsewhere) == set()
    assert mirror.EXIT_PRUNE_REFUSED == 10
