"""A hypothesis state machine over the lifecycle: after every step the catalog agrees
with a plain model of what each operation should have done, and illegal steps change
nothing."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import glarelite
from glarelite.errors import Conflict, GlareliteError, IllegalTransition, NotFound

NAMES = st.sampled_from(["a", "b"])
VERSIONS = st.sampled_from(["1", "1.0.0", "2.0-rc.1", "1.0.0+b"])
OWNERS = st.sampled_from(["alice", "bob"])
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

    def _clash(self, aid: str | None, owner: str, name: str, version: str, vis: str) -> bool:
        for other_id, m in self.model.items():
            if other_id == aid or (m["name"], m["version"]) != (name, version):
                continue
            if vis == "public" and m["visibility"] == "public":
                return True
            if vis == "private" and m["visibility"] == "private" and m["owner"] == owner:
                return True
        return False

    @rule(target=ids, name=NAMES, version=VERSIONS, owner=OWNERS, req=st.booleans())
    def create(self, name: str, version: str, owner: str, req: bool) -> str:
        props = {"req": "x"} if req else {}
        clash = self._clash(None, owner, name, CANON[version], "private")
        try:
            a = self.cat.create("t", name, version=version, owner=owner, properties=props)
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

    def _transition(self, aid: str, target: str, method: str) -> None:
        m = self.model.get(aid)
        try:
            getattr(self.cat, method)(aid)
        except NotFound:
            assert m is None
            return
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

    @rule(aid=ids)
    def activate(self, aid: str) -> None:
        self._transition(aid, "active", "activate")

    @rule(aid=ids)
    def deactivate(self, aid: str) -> None:
        self._transition(aid, "deactivated", "deactivate")

    @rule(aid=ids)
    def reactivate(self, aid: str) -> None:
        self._transition(aid, "active", "reactivate")

    @rule(aid=ids)
    def publish(self, aid: str) -> None:
        m = self.model.get(aid)
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

    @rule(aid=ids, version=VERSIONS, req=st.booleans())
    def update(self, aid: str, version: str, req: bool) -> None:
        m = self.model.get(aid)
        # an active artifact accepts an update that leaves its frozen fields as they are
        unchanged = m is not None and (m["version"], m["req"]) == (CANON[version], req)
        try:
            self.cat.update(aid, version=version, properties={"req": "x" if req else None})
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

    @rule(aid=ids)
    def delete(self, aid: str) -> None:
        try:
            self.cat.delete(aid)
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
