"""Issue 15 item 5: hooks bound by name for every call style, a download hook on every
read path, hooks for publish/deactivate/reactivate, vetoes before any write, and after
hooks whose failure says the change committed."""

from __future__ import annotations

from pathlib import Path

import pytest

import glarelite
from glarelite.errors import AfterHookFailed

DATA = b"bytes to guard " * 50


class Refused(Exception):
    pass


def active(cat: glarelite.Catalog, name: str = "a") -> str:
    a = cat.create("images", name, properties={"os": "linux"})
    cat.upload(a.id, "file", [DATA])
    cat.activate(a.id)
    return a.id


def test_hooks_bind_arguments_by_name(catalog: glarelite.Catalog) -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    for op in ("upload", "activate", "update"):
        catalog.hooks.before(op, lambda e: seen.append((e.operation, e.artifact_id, e.slot)))
        catalog.hooks.after(op, lambda e: seen.append((e.operation, e.artifact_id, e.slot)))
    catalog.hooks.wrap_upload(lambda e, chunks: (c.upper() for c in chunks))
    a = catalog.create("images", "a", properties={"os": "linux"})
    # the keyword style once skipped the upload wrapper silently
    blob = catalog.upload(artifact_id=a.id, slot="file", source=[b"abc"])
    assert catalog.open_blob(a.id, "file").read() == b"ABC" and blob.size == 3
    # and once raised IndexError in the after hook, after the change committed
    assert catalog.activate(artifact_id=a.id).status == "active"
    catalog.update(a.id, description="d")
    assert seen == [
        ("upload", a.id, "file"),
        ("upload", a.id, "file"),
        ("activate", a.id, None),
        ("activate", a.id, None),
        ("update", a.id, None),
        ("update", a.id, None),
    ]


def test_a_download_veto_covers_every_read_path(catalog: glarelite.Catalog, tmp_path: Path) -> None:
    a, b = active(catalog, "a"), active(catalog, "b")

    def refuse_a(event: glarelite.HookEvent) -> None:
        if event.artifact_id == a:
            raise Refused(f"{event.artifact_id}/{event.slot} is quarantined")

    catalog.hooks.before("download", refuse_a)
    with pytest.raises(Refused):
        catalog.download(a, "file", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(Refused):
        catalog.open_blob(a, "file")
    with pytest.raises(Refused):
        catalog.open_blob(artifact_id=a, slot="file", offset=0, length=2)
    for view in (catalog, catalog.scoped(admin=True)):  # views share the hooks
        opened = {i: o for i, _, o in view.open_blobs([(a, "file"), (b, "file")])}
        with pytest.raises(Refused):
            opened[a]()
        with opened[b]() as f:
            assert f.read() == DATA


def test_after_download_hooks_see_each_opened_item(catalog: glarelite.Catalog) -> None:
    a = active(catalog)
    seen: list[tuple[str | None, str | None]] = []
    catalog.hooks.after("download", lambda e: seen.append((e.artifact_id, e.slot)))
    with catalog.open_blob(a, "file") as f:
        f.read()
    for _, _, opener in catalog.open_blobs([(a, "file")]):
        with opener() as f:
            f.read()
    assert seen == [(a, "file"), (a, "file")]


def test_publish_deactivate_reactivate_have_hooks(catalog: glarelite.Catalog) -> None:
    a = active(catalog)
    vetoed: list[str] = []

    def veto(event: glarelite.HookEvent) -> None:
        vetoed.append(event.operation)
        raise Refused(event.operation)

    for op in ("publish", "deactivate"):
        catalog.hooks.before(op, veto)
    with pytest.raises(Refused):
        catalog.publish(a)
    with pytest.raises(Refused):
        catalog.deactivate(a)
    assert (catalog.get(a).visibility, catalog.get(a).status) == ("private", "active")
    catalog.hooks.remove(veto)
    catalog.deactivate(a)
    catalog.hooks.before("reactivate", veto)
    with pytest.raises(Refused):
        catalog.reactivate(a)
    assert catalog.get(a).status == "deactivated"
    assert vetoed == ["publish", "deactivate", "reactivate"]


def test_a_failing_after_hook_reports_the_committed_change(catalog: glarelite.Catalog) -> None:
    a = active(catalog)
    told: list[str] = []

    def broken(event: glarelite.HookEvent) -> None:
        raise Refused("notification service down")

    catalog.hooks.after("publish", broken)
    catalog.hooks.after("publish", lambda e: told.append(e.result.visibility))
    with pytest.raises(AfterHookFailed, match="publish committed") as caught:
        catalog.publish(a)
    assert isinstance(caught.value.__cause__, Refused)
    assert caught.value.result.visibility == "public"
    assert catalog.get(a).visibility == "public"  # not pretended away
    assert told == ["public"]  # the other after hooks still ran
