"""Quotas and usage through a non-admin view: an owner reads its own usage and the quotas
that apply to it; another owner's counts (its private artifacts included) and the
catalog-wide totals are the admin's (Glare: list_project_quotas is admin_or_owner,
list_all_quotas is admin)."""

from __future__ import annotations

import pytest

import glarelite
from glarelite.errors import Forbidden


def test_an_owner_sees_only_its_own_usage_and_quotas(catalog: glarelite.Catalog) -> None:
    alice, bob = catalog.scoped("alice"), catalog.scoped("bob")
    for n in range(3):
        alice.create("images", f"secret{n}")  # private
    bob.create("images", "b")
    catalog.set_quota("type", "images", max_artifacts=10)
    catalog.set_quota("type", "images", owner="alice", max_artifacts=5)
    catalog.set_quota("owner", "alice", max_bytes=1000)
    for asked in (
        ("owner", "alice", None),
        ("type", "images", "alice"),
        ("type", "images", None),  # the fullest owner's: alice's
        ("global", "", None),
    ):
        with pytest.raises(Forbidden):
            bob.usage(asked[0], asked[1], owner=asked[2])
    assert bob.usage("owner", "bob") == (1, 0)
    assert bob.usage("type", "images", owner="bob") == (1, 0)
    assert alice.usage("owner", "alice") == (3, 0)
    assert {(q.scope, q.target, q.owner) for q in bob.quotas()} == {("type", "images", None)}
    assert len(alice.quotas()) == 3 and len(catalog.quotas()) == 3
    assert catalog.usage("owner", "alice") == (3, 0)
