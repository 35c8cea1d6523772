"""The quota commands, and generated bad input through the command line: every run
either works or fails with one line on stderr and a documented exit code."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glarelite import cli
from tests.test_cli import Run, ok, one_line_error
from tests.test_cli import env_fixture as env_fixture  # re-exported: pytest finds fixtures by name
from tests.test_cli import ready_fixture as ready_fixture
from tests.test_cli import run_fixture as run_fixture


def test_quota_set_show_and_refusal(ready: Run) -> None:
    out = ok(ready("quota", "set", "type", "images", "--max-artifacts", "1")).stdout
    assert "max artifacts 1" in out
    ok(ready("create", "images", "a", "--set", "os=linux"))
    one_line_error(ready("create", "images", "b", "--set", "os=linux"), cli.EXIT_TOO_LARGE)
    shown = ok(ready("quota", "show")).stdout
    assert "type images: max artifacts 1; used: 1 artifacts, 0 bytes" in shown
    ok(ready("quota", "set", "type", "images"))  # no limits: removed
    assert ok(ready("quota", "show")).stdout.strip() == ""
    one_line_error(ready("quota", "set", "planet", "x", "--max-bytes", "1"), cli.EXIT_USAGE)


CODES = {
    0,
    cli.EXIT_USAGE,
    cli.EXIT_NOT_FOUND,
    cli.EXIT_CONFLICT,
    cli.EXIT_VERIFICATION,
    cli.EXIT_NETWORK,
    cli.EXIT_REFUSED,
    cli.EXIT_TOO_LARGE,
}
TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + './:-_=,"%@ \\é'),
    max_size=40,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(["create", "list", "update", "url", "add-location", "show"]),
    a=TEXT,
    b=TEXT,
)
def test_generated_arguments_never_trace(ready: Run, command: str, a: str, b: str) -> None:
    argv = {
        "create": ["create", "images", a or "x", "--version", b, "--set", f"os={a}"],
        "list": ["list", "images", "--filter", a, "--sort", b],
        "update": ["update", a or "x", "--set", f"{b}=1"],
        "url": ["url", a or "x", b or "file"],
        "add-location": ["add-location", a or "x", "file", b],
        "show": ["show", a or "x"],
    }[command]
    result = ready(*argv)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.exit_code in CODES, (argv, result.exit_code, result.stderr)
    if result.exit_code and not result.stderr.startswith("Usage:"):  # typer's usage block
        assert result.stderr.startswith("glarelite: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
