"""Issue 15 item 4: quotas counted as Glare counts them, per owner and per owner and type,
-1 unlimited, through the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import glarelite
from glarelite import cli
from glarelite.cli import app
from glarelite.errors import InvalidInput, QuotaExceeded


def test_a_type_quota_counts_each_owner_apart(catalog: glarelite.Catalog) -> None:
    alice, bob = catalog.scoped("alice"), catalog.scoped("bob")
    catalog.set_quota("type", "images", max_artifacts=3)
    for n in range(3):
        alice.create("images", f"a{n}")
    with pytest.raises(QuotaExceeded, match="type 'images' for owner 'alice'"):
        alice.create("images", "a3")
    for n in range(3):  # alice's use does not eat bob's
        bob.create("images", f"b{n}")
    with pytest.raises(QuotaExceeded):
        bob.create("images", "b3")
    assert catalog.usage("type", "images") == (3, 0)
    assert catalog.usage("type", "images", owner="bob") == (3, 0)


def test_an_owner_quota_overrides_the_type_default(catalog: glarelite.Catalog) -> None:
    alice, bob = catalog.scoped("alice"), catalog.scoped("bob")
    catalog.define_type("charts")
    catalog.set_quota("type", "images", max_artifacts=1)
    catalog.set_quota("type", "images", owner="alice", max_artifacts=-1)  # unlimited
    catalog.set_quota("type", "images", owner="bob", max_artifacts=2)
    for n in range(5):
        alice.create("images", f"a{n}")
    bob.create("images", "b0")
    bob.create("images", "b1")
    with pytest.raises(QuotaExceeded):
        bob.create("images", "b2")
    catalog.scoped("carol").create("images", "c0")
    with pytest.raises(QuotaExceeded):  # carol has no quota of her own: the default
        catalog.scoped("carol").create("images", "c1")
    catalog.set_quota("owner", "alice", max_artifacts=6)  # her total, across types
    alice.create("charts", "x")
    with pytest.raises(QuotaExceeded, match="owner 'alice'"):
        alice.create("charts", "y")
    assert {(q.scope, q.target, q.owner, q.max_artifacts) for q in catalog.quotas()} == {
        ("type", "images", None, 1),
        ("type", "images", "alice", -1),
        ("type", "images", "bob", 2),
        ("owner", "alice", None, 6),
    }
    catalog.set_quota("type", "images", owner="bob")  # removed: bob falls back to 1
    with pytest.raises(QuotaExceeded):
        bob.create("images", "b2")


def test_per_owner_byte_quotas(catalog: glarelite.Catalog) -> None:
    alice, bob = catalog.scoped("alice"), catalog.scoped("bob")
    catalog.set_quota("type", "images", max_bytes=100)
    a, b = alice.create("images", "a"), bob.create("images", "b")
    alice.upload(a.id, "file", [b"x" * 100])
    bob.upload(b.id, "file", [b"y" * 100])  # bob's bytes are his own
    with pytest.raises(QuotaExceeded, match="alice"):
        alice.upload(a.id, "regions/eu", [b"z"])
    catalog.set_quota("type", "images", owner="alice", max_bytes=-1)
    alice.upload(a.id, "regions/eu", [b"z" * 500])
    assert catalog.usage("type", "images", owner="alice") == (1, 600)


def test_bad_quotas_are_refused(catalog: glarelite.Catalog) -> None:
    for kwargs in (
        {"scope": "owner", "target": "alice", "owner": "bob"},
        {"scope": "type", "target": "images", "owner": ""},
        {"scope": "type", "target": "a/b"},
        {"scope": "global", "max_artifacts": -2},
    ):
        with pytest.raises(InvalidInput):
            catalog.set_quota(**{"max_artifacts": 1, **kwargs})
    with pytest.raises(glarelite.Forbidden):
        catalog.scoped("alice").set_quota("owner", "alice", max_artifacts=-1)


def test_cli_quota_per_owner_and_type(tmp_path: Path, memory_store: str) -> None:
    runner = CliRunner()
    env = {"GLARELITE_CATALOG": str(tmp_path / "cat.db"), "GLARELITE_ALLOW_HOSTS": None}

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    def ok(*args: str) -> str:
        result = run(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return str(result.stdout)

    ok("init", "--storage", memory_store)
    ok("type", "define", "images", "--blob", "file")
    assert "type images: max artifacts 1" in ok(
        "quota", "set", "type", "images", "--max-artifacts", "1"
    )
    out = ok("quota", "set", "type", "images", "--owner", "alice", "--max-artifacts", "-1")
    assert "type images for owner alice: max artifacts unlimited" in out
    for n in range(3):
        ok("--as", "alice", "create", "images", f"a{n}")
    ok("--as", "bob", "create", "images", "b0")
    result = run("--as", "bob", "create", "images", "b1")
    assert result.exit_code == cli.EXIT_TOO_LARGE and "bob" in result.stderr
    shown = json.loads(ok("quota", "show", "--json"))
    assert {(q["scope"], q["target"], q["owner"], q["artifacts"]) for q in shown} == {
        ("type", "images", None, 3),
        ("type", "images", "alice", 3),
    }
    text = ok("quota", "show")
    assert "type images for owner alice: max artifacts unlimited; used: 3 artifacts" in text
