"""``ReadableCatalog``: ``Catalog`` and ``MirrorCatalog`` answer the same read API.

mypy (strict, in the quality gate) proves the types fit (glarelite/_readable.py); these
tests pin the rest at run time: the same members, the same parameters and defaults."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import glarelite
import mirror
from glarelite import Catalog, MirrorCatalog, ReadableCatalog

MEMBERS = sorted(
    name
    for name, value in vars(ReadableCatalog).items()
    if (callable(value) or isinstance(value, property))
    and (not name.startswith("_") or name in ("__enter__", "__exit__"))
)


def _shape(func: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(func)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_the_protocol_is_the_read_api() -> None:
    assert "ReadableCatalog" in glarelite.__all__
    assert {"get", "list", "iter_all", "open_blob", "open_blobs", "download", "path"} <= set(
        MEMBERS
    )
    assert not {"create", "upload", "delete", "update"} & set(MEMBERS)


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize("cls", [Catalog, MirrorCatalog], ids=lambda c: c.__name__)
def test_both_readers_have_the_same_parameters(cls: type, name: str) -> None:
    mine = getattr(ReadableCatalog, name)
    theirs = inspect.getattr_static(cls, name)
    if isinstance(mine, property):
        assert isinstance(theirs, property), f"{cls.__name__}.{name} is not a property"
        return
    assert _shape(theirs) == _shape(mine), f"{cls.__name__}.{name} differs from the protocol"


def test_both_readers_are_instances(catalog: Catalog, tmp_path: Path) -> None:
    assert isinstance(catalog, ReadableCatalog)
    art = catalog.create("images", "a", properties={"os": "linux"})
    catalog.upload(art.id, "file", b"x")
    catalog.activate(art.id)
    catalog.publish(art.id)
    assert mirror.sync(catalog, str(tmp_path / "tree")).exit_code == 0
    with glarelite.open_mirror(tmp_path / "tree") as tree:
        assert isinstance(tree, ReadableCatalog)
        source: ReadableCatalog = tree  # a tree mirrors onwards as a source
        assert mirror.sync(source, str(tmp_path / "again")).exit_code == 0
    assert not isinstance(object(), ReadableCatalog)
