"""Issue 15: Glare's permission model, enforced in one place (glarelite.policy), with two
owners and an admin, through the Python API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import glarelite
from glarelite import cli
from glarelite.cli import app
from glarelite.errors import Forbidden, InvalidInput, NotFound, UpstreamChanged
from tests.fixtures.origin import Origin

DATA = b"vulnerable image bytes " * 100


@pytest.fixture(name="cat")
def cat_fixture(tmp_path: Path) -> Iterator[glarelite.Catalog]:
    with glarelite.open(tmp_path / "c.db", storage=str(tmp_path / "blobs")) as cat:
        cat.define_type("images", blobs=["file"])
        yield cat


def active(cat: glarelite.Catalog, owner: str, name: str) -> str:
    """An active artifact of ``owner`` with a blob."""
    view = cat.scoped(owner)
    a = view.create("images", name)
    view.upload(a.id, "file", [DATA])
    view.activate(a.id)
    return a.id


# -- admin-only actions (Glare: publish, deactivate, reactivate) ---------------------------
def test_owners_may_not_publish_deactivate_or_reactivate(cat: glarelite.Catalog) -> None:
    alice = cat.scoped("alice")
    a = active(cat, "alice", "a")
    with pytest.raises(Forbidden):
        alice.publish(a)
    with pytest.raises(Forbidden):
        alice.update(a, visibility="public")  # the same action by another door
    with pytest.raises(Forbidden):
        alice.deactivate(a)
    assert cat.get(a).status == "active" and cat.get(a).visibility == "private"
    cat.deactivate(a)
    with pytest.raises(NotFound):  # she cannot even see it now
        alice.reactivate(a)
    with pytest.raises(NotFound):
        alice.activate(a)  # deactivated -> active is a reactivation, whatever the verb
    assert cat.reactivate(a).status == "active"
    assert cat.publish(a).visibility == "public"


def test_public_artifacts_change_and_go_only_by_admin(cat: glarelite.Catalog) -> None:
    alice, bob = cat.scoped("alice"), cat.scoped("bob")
    a = active(cat, "alice", "a")
    cat.publish(a)
    for view in (alice, bob):
        with pytest.raises(Forbidden):
            view.update(a, description="changed")
        with pytest.raises(Forbidden):
            view.delete(a)
    assert cat.update(a, description="by admin").description == "by admin"
    cat.delete(a)
    with pytest.raises(NotFound):
        cat.get(a)


def test_a_deactivated_artifact_is_deleted_only_by_admin(cat: glarelite.Catalog) -> None:
    a = active(cat, "alice", "a")
    cat.deactivate(a)
    with pytest.raises(NotFound):
        cat.scoped("alice").delete(a)
    cat.delete(a)


# -- reads of a deactivated artifact are admin-only (Glare: download_deactivated) ----------
def test_deactivated_artifacts_are_read_by_admin_only(
    cat: glarelite.Catalog, tmp_path: Path
) -> None:
    a = active(cat, "alice", "a")
    b = active(cat, "alice", "b")
    for x in (a, b):
        cat.publish(x)
    cat.deactivate(a)
    for view in (cat.scoped("alice"), cat.scoped("bob")):
        with pytest.raises(NotFound):
            view.get(a)
        with pytest.raises(NotFound):
            view.open_blob(a, "file")
        with pytest.raises(NotFound):
            view.open_blob(a, "file", offset=1, length=3)
        with pytest.raises(NotFound):
            view.download(a, "file", tmp_path / "out")
        with pytest.raises(NotFound):
            view.blob_url(a, "file")
        opened = {i: o for i, _, o in view.open_blobs([(a, "file"), (b, "file")])}
        with pytest.raises(NotFound):
            opened[a]()
        with opened[b]() as f:
            assert f.read() == DATA
        assert [x.id for x in view.list("images").items] == [b]
        assert view.list("images").total == 1
        assert [x.id for x in view.list("images", latest=True).items] == [b]
        assert [x.id for x in view.list("images", filters=["status=deactivated"]).items] == []
    assert {x.id for x in cat.list("images").items} == {a, b}
    with cat.open_blob(a, "file") as f:
        assert f.read() == DATA
    assert not (tmp_path / "out").exists()


def test_links_cannot_reach_a_deactivated_artifact(tmp_path: Path) -> None:
    with glarelite.open(tmp_path / "c.db", storage=str(tmp_path / "b")) as cat:
        cat.define_type("images", blobs=["file"])
        cat.define_type("apps", properties={"base": "link"})
        a = active(cat, "alice", "base")
        cat.deactivate(a)
        with pytest.raises(InvalidInput):
            cat.scoped("alice").create("apps", "x", properties={"base": a})
        with pytest.raises(InvalidInput):
            cat.scoped("alice").create("apps", "x", properties={"base": "images/base@latest"})


# -- public implies active (Glare's 400) ------------------------------------------------------
def test_an_artifact_cannot_be_created_public(cat: glarelite.Catalog) -> None:
    for view in (cat, cat.scoped("alice")):
        with pytest.raises(InvalidInput, match="public implies active"):
            view.create("images", "p", visibility="public")
    assert cat.list("images").total == 0


def test_only_an_active_artifact_is_published(cat: glarelite.Catalog) -> None:
    a = cat.scoped("alice").create("images", "a")
    with pytest.raises(glarelite.IllegalTransition):
        cat.publish(a.id)
    with pytest.raises(Forbidden):
        cat.scoped("alice").update(a.id, visibility="public")


# -- an application's own rules ------------------------------------------------------------------
def test_an_embedding_replaces_rules(tmp_path: Path) -> None:
    def owners_publish(scope: glarelite.Scope, target: Any) -> bool:
        return scope.admin or (target is not None and target.owner == scope.owner)

    def nobody_deletes(scope: glarelite.Scope, target: Any) -> bool:
        return False

    policy = glarelite.Policy({"publish": owners_publish, "delete": nobody_deletes})
    with glarelite.open(tmp_path / "c.db", storage=str(tmp_path / "b"), policy=policy) as cat:
        cat.define_type("images", blobs=["file"])
        a = active(cat, "alice", "a")
        assert cat.scoped("alice").publish(a).visibility == "public"
        with pytest.raises(Forbidden):
            cat.delete(a)  # not even an admin: the application said so
        with pytest.raises(Forbidden):
            cat.scoped("alice").deactivate(a)  # the other defaults stay Glare's


def test_a_get_rule_hides_artifacts_everywhere(tmp_path: Path) -> None:
    def no_secrets(scope: glarelite.Scope, target: Any) -> bool:
        return scope.admin or (
            target is not None
            and target.owner in (scope.owner, "publisher")
            and target.status != "deactivated"
        )

    with glarelite.open(
        tmp_path / "c.db", storage=str(tmp_path / "b"), policy={"get": no_secrets}
    ) as cat:
        cat.define_type("images", blobs=["file"])
        hidden, shown = active(cat, "carol", "h"), active(cat, "publisher", "s")
        cat.publish(hidden)
        cat.publish(shown)
        bob = cat.scoped("bob")
        with pytest.raises(NotFound):
            bob.get(hidden)
        with pytest.raises(NotFound):
            bob.open_blob(hidden, "file")
        assert [x.id for x in bob.list("images").items] == [shown]


def test_unknown_actions_and_bad_rules_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="publsh"):
        glarelite.Policy({"publsh": lambda s, t: True})
    with pytest.raises(InvalidInput):
        glarelite.Policy({"publish": "admin"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        glarelite.open(tmp_path / "c.db", policy=42)  # type: ignore[arg-type]


# -- a blob changed upstream is handed out by no path ---------------------------------------------
def test_a_changed_blob_is_never_handed_out(tmp_path: Path, origin: Origin) -> None:
    origin.add("/img", data=DATA)
    settings = glarelite.CatalogSettings(mirror_base_url="https://mirror.example/")
    with (
        glarelite.open(
            tmp_path / "c.db", storage=str(tmp_path / "b"), allow_hosts=["127.0.0.1"]
        ) as plain,
        glarelite.open(tmp_path / "c.db", settings=settings) as mirrored,
    ):
        plain.define_type("images", blobs=["file"])
        a = plain.create("images", "a")
        plain.add_location(a.id, "file", origin.url("/img"))
        plain.activate(a.id)
        assert plain.blob_url(a.id, "file") == origin.url("/img")
        origin.add("/img", data=b"other bytes " * 10)
        [result] = plain.check(rehash=True)
        assert result.state == "changed"
        for cat in (plain, mirrored):
            with pytest.raises(UpstreamChanged):
                cat.blob_url(a.id, "file")
            with pytest.raises(UpstreamChanged):
                cat.open_blob(a.id, "file")
            with pytest.raises(UpstreamChanged):
                cat.open_blob(a.id, "file", offset=0, length=4)
            [(_, _, opener)] = list(cat.open_blobs([(a.id, "file")]))
            with pytest.raises(UpstreamChanged):
                opener()
        origin.add("/img", data=DATA)  # the origin is fixed: check clears the mark
        [result] = plain.check(rehash=True)
        assert result.state == "unchanged"
        assert plain.blob_url(a.id, "file") == origin.url("/img")
        with plain.open_blob(a.id, "file", offset=0, length=4) as f:
            assert f.read() == DATA[:4]


# -- the CLI --------------------------------------------------------------------------------------
def test_cli_applies_the_policy(tmp_path: Path, memory_store: str) -> None:
    runner = CliRunner()
    env = {"GLARELITE_CATALOG": str(tmp_path / "cat.db"), "GLARELITE_ALLOW_HOSTS": None}

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    def ok(*args: str) -> str:
        result = run(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return str(result.stdout)

    def fails(code: int, *args: str) -> str:
        result = run(*args)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
        return str(result.stderr)

    ok("init", "--storage", memory_store)
    ok("type", "define", "images", "--blob", "file")
    src = tmp_path / "f"
    src.write_bytes(DATA)
    a = ok("--as", "alice", "create", "images", "a").strip()
    ok("--as", "alice", "upload", a, "file", str(src))
    ok("--as", "alice", "activate", a)
    for verb in ("publish", "deactivate"):
        fails(cli.EXIT_CONFLICT, "--as", "alice", verb, a)
    ok("publish", a)
    fails(cli.EXIT_CONFLICT, "--as", "alice", "delete", a)  # public: admin only
    fails(cli.EXIT_CONFLICT, "--as", "bob", "update", a, "--description", "x")
    ok("deactivate", a)
    for who in ("alice", "bob"):
        fails(cli.EXIT_NOT_FOUND, "--as", who, "show", a)
        fails(cli.EXIT_NOT_FOUND, "--as", who, "download", a, "file", "-o", "-")
        fails(cli.EXIT_NOT_FOUND, "--as", who, "url", a, "file")
        fails(cli.EXIT_NOT_FOUND, "--as", who, "reactivate", a)
        assert json.loads(ok("--as", who, "list", "images", "--json"))["artifacts"] == []
    assert json.loads(ok("show", a, "--json"))["status"] == "deactivated"
    ok("reactivate", a)
    # public implies active: the CLI has no way to create a public artifact
    assert run("create", "images", "p", "--public").exit_code == 2


def test_a_change_the_caller_may_not_read_back_still_returns_it(tmp_path: Path) -> None:
    """A rule may let an owner deactivate what it then cannot read: the committed change
    is returned, not hidden behind a NotFound that would pretend it did not happen."""
    with glarelite.open(
        tmp_path / "c.db",
        storage=str(tmp_path / "b"),
        policy={"deactivate": glarelite.policy.admin_or_owner},
    ) as cat:
        cat.define_type("images", blobs=["file"])
        a = active(cat, "alice", "a")
        alice = cat.scoped("alice")
        assert alice.deactivate(a).status == "deactivated"
        with pytest.raises(NotFound):
            alice.get(a)
