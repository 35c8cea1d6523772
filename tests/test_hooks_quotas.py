"""What an embedding application needs: hooks around operations and quotas."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glarelite
from glarelite.errors import InvalidInput, QuotaExceeded
from glarelite.hooks import OPERATIONS


class Refused(Exception):
    pass


def test_before_hook_refuses_and_nothing_changes(catalog: glarelite.Catalog) -> None:
    def no_windows(event: glarelite.HookEvent) -> None:
        if event.kwargs.get("properties", {}).get("os") == "windows":
            raise Refused("no windows here")

    catalog.hooks.before("create", no_windows)
    with pytest.raises(Refused):
        catalog.create("images", "w", properties={"os": "windows"})
    assert catalog.list("images").total == 0
    catalog.create("images", "l", properties={"os": "linux"})
    catalog.hooks.remove(no_windows)
    catalog.create("images", "w", properties={"os": "windows"})
    assert catalog.list("images").total == 2


def test_hooks_see_every_operation_in_order(catalog: glarelite.Catalog, tmp_path: Path) -> None:
    seen: list[tuple[str, str, object]] = []
    for op in OPERATIONS:
        catalog.hooks.before(op, lambda e: seen.append(("before", e.operation, e.artifact_id)))
        catalog.hooks.after(op, lambda e: seen.append(("after", e.operation, e.artifact_id)))
    a = catalog.create("images", "x", properties={"os": "l"})
    catalog.update(a.id, description="d")
    catalog.upload(a.id, "file", [b"data"])
    catalog.download(a.id, "file", tmp_path / "out")
    catalog.activate(a.id)
    catalog.deactivate(a.id)
    catalog.reactivate(a.id)
    catalog.delete(a.id)
    ops = [(w, op) for w, op, _ in seen]
    assert ops == [
        (w, op)
        for op in (
            "create",
            "update",
            "upload",
            "download",
            "activate",
            "deactivate",
            "reactivate",
            "delete",
        )
        for w in ("before", "after")
    ]
    assert seen[0][2] is None and seen[2][2] == a.id
    # after-hooks of create see the new artifact
    created = []
    catalog.hooks.after("create", lambda e: created.append(e.result.id))
    b = catalog.create("images", "y")
    assert created == [b.id]


def test_upload_wrapper_transforms_the_stream(catalog: glarelite.Catalog) -> None:
    scanned: list[int] = []

    def upper(event: glarelite.HookEvent, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            scanned.append(len(chunk))
            yield chunk.upper()

    catalog.hooks.wrap_upload(upper)
    a = catalog.create("images", "x")
    blob = catalog.upload(a.id, "file", [b"hello ", b"world"])
    assert blob.sha256 == hashlib.sha256(b"HELLO WORLD").hexdigest()  # hash of bytes stored
    with catalog.open_blob(a.id, "file") as f:
        assert f.read() == b"HELLO WORLD"
    assert scanned == [6, 5]


def test_a_refusing_upload_hook_keeps_the_previous_blob(catalog: glarelite.Catalog) -> None:
    a = catalog.create("images", "x")
    catalog.upload(a.id, "file", [b"clean"])

    def scanner(event: glarelite.HookEvent, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if b"virus" in chunk:
                raise Refused("infected")
            yield chunk

    catalog.hooks.wrap_upload(scanner)
    with pytest.raises(Refused):
        catalog.upload(a.id, "file", [b"a virus"])
    with catalog.open_blob(a.id, "file") as f:
        assert f.read() == b"clean"


def test_hooks_register_as_decorators(catalog: glarelite.Catalog) -> None:
    @catalog.hooks.before("activate")
    def require_license(event: glarelite.HookEvent) -> None:
        if "license" not in event.catalog.get(event.artifact_id).tags:
            raise Refused("tag the license first")

    a = catalog.create("images", "x", properties={"os": "l"})
    with pytest.raises(Refused):
        catalog.activate(a.id)
    catalog.update(a.id, add_tags=["license"])
    assert catalog.activate(a.id).status == "active"


def test_unknown_hook_operation(catalog: glarelite.Catalog) -> None:
    with pytest.raises(InvalidInput):
        catalog.hooks.before("explode", lambda e: None)


def test_artifact_quotas_global_type_owner(catalog: glarelite.Catalog) -> None:
    catalog.define_type("charts")
    catalog.set_quota("type", "images", max_artifacts=2)
    catalog.set_quota("owner", "bob", max_artifacts=1)
    catalog.create("images", "a")
    catalog.create("images", "b")
    with pytest.raises(QuotaExceeded, match="type 'images'"):
        catalog.create("images", "c")
    catalog.create("charts", "a", owner="bob")
    with pytest.raises(QuotaExceeded, match="owner 'bob'"):
        catalog.create("charts", "b", owner="bob")
    catalog.set_quota("global", max_artifacts=3)
    with pytest.raises(QuotaExceeded, match="catalog"):
        catalog.create("charts", "c")
    assert catalog.usage("type", "images")[0] == 2
    catalog.set_quota("global")  # both None: removed
    catalog.create("charts", "c")
    assert {(q.scope, q.target) for q in catalog.quotas()} == {("type", "images"), ("owner", "bob")}
    with pytest.raises(InvalidInput):
        catalog.set_quota("planet", "x", max_bytes=1)
    with pytest.raises(InvalidInput):
        catalog.set_quota("global", max_bytes=-2)  # -1 is Glare's "unlimited"


def test_byte_quotas_declared_and_streaming(catalog: glarelite.Catalog, origin) -> None:  # type: ignore[no-untyped-def]
    catalog.set_quota("owner", "admin", max_bytes=100)
    a = catalog.create("images", "a")
    catalog.upload(a.id, "file", [b"x" * 60])
    with pytest.raises(QuotaExceeded):
        catalog.upload(a.id, "regions/eu", [b"y" * 10], size=50)  # declared: nothing sent
    with pytest.raises(QuotaExceeded):
        catalog.upload(a.id, "regions/eu", iter([b"y" * 30, b"y" * 30]))  # cut while streaming
    catalog.upload(a.id, "regions/eu", [b"y" * 40])
    assert catalog.usage("owner", "admin") == (1, 100)
    assert catalog.get(a.id).blob("regions/us") is None
    # external blobs hold no stored bytes
    other = glarelite.open(catalog.path, allow_hosts=["127.0.0.1"])
    origin.add("/ext", data=b"z" * 500)
    other.add_location(a.id, "regions/us", origin.url("/ext"))
    other.close()
    assert catalog.usage("owner", "admin") == (1, 100)
    # replacing a blob frees its old bytes
    catalog.upload(a.id, "file", [b"x" * 10])
    assert catalog.usage("owner", "admin")[1] == 50


QUOTA_WORKER = """
import sys, glarelite
path, aid, slot, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
declared = sys.argv[5] == "1"
with glarelite.open(path) as cat:
    try:
        cat.upload(aid, slot, iter([b"q" * 1000] * (n // 1000) + [b"q" * (n % 1000)]),
                   size=n if declared else None)
        print("stored")
    except glarelite.QuotaExceeded:
        print("refused")
"""


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40_000), min_size=2, max_size=4),
    declared=st.booleans(),
)
def test_concurrent_uploads_never_exceed_quota_by_more_than_one_blob(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], declared: bool
) -> None:
    folder = tmp_path_factory.mktemp("quota")
    path = folder / "c.db"
    limit = 50_000
    with glarelite.open(path, storage=str(folder / "blobs")) as cat:
        cat.define_type("images", blob_dicts=["parts"])
        cat.set_quota("global", max_bytes=limit)
        a = cat.create("images", "a")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                QUOTA_WORKER,
                str(path),
                a.id,
                f"parts/p{i}",
                str(n),
                "1" if declared else "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, n in enumerate(sizes)
    ]
    outcomes = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert set(outcomes) <= {"stored", "refused"}
    with glarelite.open(path) as cat:
        used = cat.usage()[1]
        stored = sum(b.size or 0 for b in cat.get(a.id).iter_blobs())
    assert used == stored
    assert stored <= limit + (max(sizes) if not declared else 0)
    if declared:
        assert stored <= limit  # declared sizes are reserved up front: no overshoot at all
