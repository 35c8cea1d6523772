"""A replaced ``get`` rule narrows reads everywhere (docs/concepts.md, "Permissions"):
listings (items, paging markers, totals) and links by name included. The SQL scope of a
listing is the default rule's; what a narrower rule hides must not come out of a page's
``next_marker`` or ``total``, nor be reachable as a link by 'type/name@version'."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite
from glarelite.errors import InvalidInput, NotFound
from glarelite.policy import Scope, Target
from tests.fixtures.origin import Origin

DATA = b"bytes " * 100


def own_only(scope: Scope, target: Target | None) -> bool:
    """Public artifacts are not readable by other owners (an embedding's own rule)."""
    return scope.admin or target is None or target.owner == scope.owner


@pytest.fixture(name="cat")
def cat_fixture(tmp_path: Path) -> Iterator[glarelite.Catalog]:
    with glarelite.open(
        tmp_path / "c.db",
        storage=str(tmp_path / "blobs"),
        policy={"get": own_only},
        allow_hosts=["127.0.0.1"],
    ) as cat:
        cat.define_type("images", blobs=["file"])
        cat.define_type("apps", properties={"base": "link"})
        yield cat


def public(cat: glarelite.Catalog, owner: str, name: str, version: str = "1.0.0") -> str:
    view = cat.scoped(owner)
    a = view.create("images", name, version=version)
    view.upload(a.id, "file", [DATA])
    view.activate(a.id)
    cat.publish(a.id)
    return a.id


def test_a_page_never_names_a_hidden_artifact(cat: glarelite.Catalog) -> None:
    hidden = {public(cat, "alice", f"a{i}") for i in range(3)}  # sorted first by name
    mine = [public(cat, "bob", f"b{i}") for i in range(3)]
    bob = cat.scoped("bob")
    page = bob.list("images", sort="name:asc", limit=2)
    assert [a.id for a in page.items] == mine[:2]
    assert page.next_marker not in hidden
    assert page.total == 3
    rest = bob.list("images", sort="name:asc", limit=2, marker=page.next_marker)
    assert [a.id for a in rest.items] == mine[2:]
    assert [a.id for a in bob.iter_all("images", sort="name:asc", limit=1)] == mine
    with pytest.raises(NotFound):  # a hidden artifact is no marker either
        bob.list("images", sort="name:asc", marker=sorted(hidden)[0])


def test_a_page_is_filled_past_hidden_artifacts(cat: glarelite.Catalog) -> None:
    for i in range(4):
        public(cat, "alice", f"a{i}")
    mine = public(cat, "bob", "z")
    page = cat.scoped("bob").list("images", sort="name:asc", limit=2)
    assert [a.id for a in page.items] == [mine]
    assert page.next_marker is None


def test_a_link_by_name_cannot_reach_what_get_hides(cat: glarelite.Catalog) -> None:
    a = public(cat, "alice", "base")
    bob = cat.scoped("bob")
    for ref in (a, "images/base@1.0.0", "images/base@latest"):
        with pytest.raises(InvalidInput):
            bob.create("apps", "x", properties={"base": ref})
    older = public(cat, "bob", "base2", "1.0.0")
    public(cat, "alice", "base2", "2.0.0")  # the highest version is alice's
    app = bob.create("apps", "y", properties={"base": "images/base2@latest"})
    assert older in app.properties["base"]


def test_check_covers_only_what_get_lets_the_scope_read(
    cat: glarelite.Catalog, origin: Origin
) -> None:
    origin.add("/ext", data=DATA)
    view = cat.scoped("alice")
    a = view.create("images", "ext")
    view.add_location(a.id, "file", origin.url("/ext"))
    view.activate(a.id)
    cat.publish(a.id)
    assert [r.artifact_id for r in view.check()] == [a.id]
    assert cat.scoped("bob").check() == []  # no id, no URL of what bob cannot read
    assert [r.artifact_id for r in cat.check()] == [a.id]
