"""Invalid input on the command line is a usage error (exit 2) with one clear line, never
an internal error: input that overflows a parser, a number too wide to store, a
destination URL no file system knows, object storage without credentials."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import glarelite
from glarelite import cli
from glarelite.errors import InvalidInput
from tests.test_cli import Run, ok, one_line_error
from tests.test_cli import env_fixture as env_fixture  # re-exported: pytest finds fixtures by name
from tests.test_cli import ready_fixture as ready_fixture
from tests.test_cli import run_fixture as run_fixture

DEEP = "[" * 5000 + "]" * 5000  # deeper than json's recursion allows


@pytest.mark.parametrize("prop", ["arch", "labels"])
def test_deeply_nested_set_value(ready: Run, prop: str) -> None:
    err = one_line_error(ready("create", "images", "x", "--set", f"{prop}={DEEP}"), cli.EXIT_USAGE)
    assert prop in err and "nested" in err


def test_deeply_nested_value_through_update(ready: Run) -> None:
    artifact_id = ok(ready("create", "images", "x", "--set", "os=linux")).stdout.strip()
    err = one_line_error(ready("update", artifact_id, "--set", f"arch={DEEP}"), cli.EXIT_USAGE)
    assert "nested" in err


@pytest.mark.parametrize(
    "version",
    ["9" * 5000, "1." + "9" * 5000, "1.2." + "9" * 5000, "1.0.0-" + "9" * 5000],
)
def test_huge_version_number(ready: Run, version: str) -> None:
    err = one_line_error(ready("create", "images", "x", "--version", version), cli.EXIT_USAGE)
    assert "digits" in err and len(err) < 500  # says what, without echoing 5,000 digits


def test_huge_version_in_a_filter(ready: Run) -> None:
    err = one_line_error(
        ready("list", "images", "--filter", "version=gte:" + "9" * 5000), cli.EXIT_USAGE
    )
    assert "digits" in err


@pytest.mark.parametrize("option", ["--max-bytes", "--max-artifacts"])
def test_quota_wider_than_storable(ready: Run, option: str) -> None:
    err = one_line_error(ready("quota", "set", "global", option, "1" * 26), cli.EXIT_USAGE)
    assert option.lstrip("-").replace("-", "_") in err
    ok(ready("quota", "set", "global", option, str(2**63 - 1)))  # the widest that fits


def test_library_quota_wider_than_storable() -> None:
    with pytest.raises(InvalidInput, match="max_bytes"):
        glarelite.Quota("global", "", max_bytes=2**63)


def test_mirror_to_an_unknown_protocol(ready: Run) -> None:
    err = one_line_error(ready("mirror", "zz://x"), cli.EXIT_USAGE)
    assert "zz" in err


def test_mirror_to_s3_without_s3fs(ready: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs -> ImportError
    registry = sys.modules["fsspec.registry"]._registry  # protocols already imported
    for name in ("s3", "s3a"):
        monkeypatch.delitem(registry, name, raising=False)
    err = one_line_error(ready("mirror", "s3://bucket/tree"), cli.EXIT_USAGE)
    assert "s3fs" in err and "install" in err.lower()


def test_mirror_to_s3_without_credentials(
    ready: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No credentials anywhere botocore looks, and no instance metadata lookup (no network);
    # the endpoint is a closed local port in case anything were sent.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = ready(
        "mirror",
        "s3://bucket/tree",
        "--dest-option",
        "client_kwargs.endpoint_url=http://127.0.0.1:9",
    )
    err = one_line_error(result, cli.EXIT_USAGE)
    assert "credentials" in err and "AWS_ACCESS_KEY_ID" in err
