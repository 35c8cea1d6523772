"""A hypothesis state machine over the lifecycle: after every step the catalog agrees
with a plain model of what each operation should have done, and illegal steps change
nothing.

Each step is taken by an admin or by one of two owners, and the model applies Glare's
default policy (glarelite.policy): no sequence of calls by an owner reaches a state the
policy forbids it (publishing, deactivating, reactivating, changing or deleting a public
artifact, reading a deactivated one)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import glarelite
from glarelite.errors import Conflict, Forbidden, GlareliteError, IllegalTransition, NotFound

NAMES = st.sampled_from(["a", "b"])
VERSIONS = st.sampled_from(["1", "1.0.0", "2.0-rc.1", "1.0.0+b"])
OWNERS = st.sampled_from(["alice", "bob"])
WHO = st.sampled_from(["admin", "alice", "bob"])  # who takes the step
CANON = {"1": "1.0.0", "1.0.0": "1.0.0", "2.0-rc.1": "2.0.0-rc.1", "1.0.0+b": "1.0.0+b"}
ALLOWED = {("drafted", "active"), ("active", "deactivated"), ("deactivated", "active")}


class Lifecycle(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.cat = glarelite.open(
            Path(self.dir.name) / "c.db", storage=f"memory://sm-{uuid.uuid4().hex}"
        )
        self.cat.define_type("t", properties={"req": glarelite.Property("string", required=True)})
        self.model: dict[str, dict] = {}

    def teardown(self) -> None:
        self.cat.close()
        self.dir.cleanup()

    def _as(self, who: str) -> glarelite.Catalog:
        return self.cat if who == "admin" else self.cat.scoped(who)

    def _readable(self, m: dict | None, who: str) -> bool:
        """The default ``get`` rule: admin; else own or public, never deactivated."""
        if m is None:
            return False
        if who == "admin":
            return True
        return m["status"] != "deactivated" and (m["owner"] == who or m["visibility"] == "public")

    def _denied(self, m: dict | None, who: str, allowed: bool, call: object) -> bool:
        """Run ``call``; True when the policy refused it, as the model says it must:
        NotFound where the caller may not read the artifact, Forbidden where it may
        read it but not do the action. False when the policy let it through."""
        if not self._readable(m, who):
            try:
                call()  # type: ignore[operator]
            except NotFound:
                return True
            raise AssertionError(f"{who} reached an artifact it may not read")
        if not allowed:
            try:
                call()  # type: ignore[operator]
            except IllegalTransition:
                raise AssertionError("refused by the lifecycle, not the policy") from None
            except Forbidden:
                return True
            raise AssertionError(f"{who} did what the policy forbids")
        return False

    def _clash(self, aid: str | None, owner: str, name: str, version: str, vis: str) -> bool:
        for other_id, m in self.model.items():
            if other_id == aid or (m["name"], m["version"]) != (name, version):
                continue
            if vis == "public" and m["visibility"] == "public":
                return True
            if vis == "private" and m["visibility"] == "private" and m["owner"] == owner:
                return True
        return False

    @rule(target=ids, name=NAMES, version=VERSIONS, owner=OWNERS, req=st.booleans(), who=WHO)
    def create(self, name: str, version: str, owner: str, req: bool, who: str) -> str:
        props = {"req": "x"} if req else {}
        clash = self._clash(None, owner, name, CANON[version], "private")
        try:
            a = self._as(who).create("t", name, version=version, owner=owner, properties=props)
        except Forbidden:
            assert who not in ("admin", owner)  # only an admin creates for another owner
            return "missing"
        except Conflict:
            assert clash
            return "missing"
        assert not clash
        self.model[a.id] = {
            "name": name,
            "version": CANON[version],
            "owner": owner,
            "visibility": "private",
            "status": "drafted",
            "req": req,
        }
        return a.id

    def _transition(self, aid: str, target: str, method: str, who: str) -> None:
        m = self.model.get(aid)
        call = getattr(self._as(who), method)
        if not self._readable(m, who):
            with_denial = self._denied(m, who, False, lambda: call(aid))
            assert with_denial
            return
        assert m is not None
        if method == "reactivate" and m["status"] != "deactivated":
            allowed = True  # the lifecycle refuses it first, whoever asks
        elif target == "deactivated" or m["status"] == "deactivated":
            allowed = who == "admin"  # deactivate, reactivate: context_is_admin
        else:
            allowed = who in ("admin", m["owner"])  # activate: admin_or_owner
        if self._denied(m, who, allowed, lambda: call(aid)):
            return
        try:
            call(aid)
        except NotFound:
            raise AssertionError("a readable artifact was not found") from None
        except IllegalTransition:
            assert m is not None
            legal = (m["status"], target) in ALLOWED or m["status"] == target
            if method == "reactivate":
                legal = m["status"] == "deactivated"
            if target == "active" and m["status"] == "drafted" and not m["req"]:
                legal = False
            assert not legal
            return
        assert m is not None
        if method == "reactivate":
            assert m["status"] == "deactivated"
        assert m["status"] == target or (m["status"], target) in ALLOWED
        if m["status"] == "drafted":
            assert m["req"]
        m["status"] = target

    @rule(aid=ids, who=WHO)
    def activate(self, aid: str, who: str) -> None:
        self._transition(aid, "active", "activate", who)

    @rule(aid=ids, who=WHO)
    def deactivate(self, aid: str, who: str) -> None:
        self._transition(aid, "deactivated", "deactivate", who)

    @rule(aid=ids, who=WHO)
    def reactivate(self, aid: str, who: str) -> None:
        self._transition(aid, "active", "reactivate", who)

    @rule(aid=ids, who=WHO)
    def publish(self, aid: str, who: str) -> None:
        m = self.model.get(aid)
        # artifact:publish is context_is_admin (and update_public before it)
        if self._denied(m, who, who == "admin", lambda: self._as(who).publish(aid)):
            return
        try:
            self.cat.publish(aid)
        except NotFound:
            assert m is None
        except IllegalTransition:  # only an active artifact changes (drafted ones stay private)
            assert m is not None and m["status"] != "active"
        except Conflict:
            assert m is not None and self._clash(aid, m["owner"], m["name"], m["version"], "public")
        else:
            assert m is not None and m["status"] == "active"
            m["visibility"] = "public"

    @rule(aid=ids, version=VERSIONS, req=st.booleans(), who=WHO)
    def update(self, aid: str, version: str, req: bool, who: str) -> None:
        m = self.model.get(aid)
        view = self._as(who)
        # artifact:update = admin_or_owner and update_public
        allowed = who == "admin" or (
            m is not None and m["owner"] == who and m["visibility"] != "public"
        )
        props = {"req": "x" if req else None}
        if self._denied(
            m, who, allowed, lambda: view.update(aid, version=version, properties=props)
        ):
            return
        # an active artifact accepts an update that leaves its frozen fields as they are
        unchanged = m is not None and (m["version"], m["req"]) == (CANON[version], req)
        try:
            view.update(aid, version=version, properties=props)
        except NotFound:
            assert m is None
        except IllegalTransition:
            assert m is not None
            assert m["status"] == "deactivated" or (m["status"] == "active" and not unchanged)
        except Conflict:
            assert m is not None
            assert self._clash(aid, m["owner"], m["name"], CANON[version], m["visibility"])
        else:
            assert m is not None
            assert m["status"] == "drafted" or (m["status"] == "active" and unchanged)
            m["version"], m["req"] = CANON[version], req

    @rule(aid=ids, who=WHO)
    def delete(self, aid: str, who: str) -> None:
        m = self.model.get(aid)
        # artifact:delete = admin_or_owner and delete_public and delete_deactivated
        allowed = who == "admin" or (
            m is not None
            and m["owner"] == who
            and m["visibility"] != "public"
            and m["status"] != "deactivated"
        )
        if self._denied(m, who, allowed, lambda: self._as(who).delete(aid)):
            return
        try:
            self._as(who).delete(aid)
        except NotFound:
            assert aid not in self.model
        else:
            del self.model[aid]

    @invariant()
    def catalog_matches_model(self) -> None:
        listed = {a.id: a for a in self.cat.iter_all("t")}
        assert set(listed) == set(self.model)
        for aid, m in self.model.items():
            a = listed[aid]
            assert (a.status, a.visibility, a.version, a.owner) == (
                m["status"],
                m["visibility"],
                m["version"],
                m["owner"],
            )
            assert (a.activated_at is not None) == (m["status"] != "drafted")

    @invariant()
    def owners_read_what_the_policy_lets_them(self) -> None:
        for who in ("alice", "bob"):
            view = self.cat.scoped(who)
            expected = {aid for aid, m in self.model.items() if self._readable(m, who)}
            assert {a.id for a in view.iter_all("t")} == expected
            for aid in set(self.model) - expected:
                try:
                    view.get(aid)
                except NotFound:
                    continue
                raise AssertionError(f"{who} read {aid}, which the policy forbids")

    @invariant()
    def no_duplicate_identities(self) -> None:
        seen = set()
        for a in self.cat.iter_all("t"):
            key = (a.name, a.version, a.owner if a.visibility == "private" else "*public*")
            assert key not in seen
            seen.add(key)


Lifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestLifecycle = Lifecycle.TestCase


def test_errors_share_one_root() -> None:
    for exc in (Conflict, NotFound, IllegalTransition):
        assert issubclass(exc, GlareliteError)
