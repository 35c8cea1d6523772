"""Link properties: references between artifacts, validated against the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite
from glarelite.errors import Conflict, IllegalTransition, InvalidInput, NotFound


@pytest.fixture
def cat(tmp_path: Path, memory_store: str) -> Iterator[glarelite.Catalog]:
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as c:
        c.define_type("images", blobs=["file"])
        c.define_type(
            "charts",
            properties={
                "image": glarelite.Property("link"),
                "extra": glarelite.Property("link", mutable=True),
            },
        )
        yield c


def test_link_by_id_url_version_and_latest(cat: glarelite.Catalog) -> None:
    v1 = cat.create("images", "base", version="1.0")
    v2 = cat.create("images", "base", version="1.10")
    cat.create("images", "base", version="1.9")
    by_id = cat.create("charts", "a", properties={"image": v1.id})
    assert by_id.properties["image"] == f"/artifacts/images/{v1.id}"
    by_url = cat.create("charts", "b", properties={"image": f"/artifacts/images/{v2.id}"})
    assert by_url.properties["image"] == f"/artifacts/images/{v2.id}"
    by_version = cat.create("charts", "c", properties={"image": "images/base@1.0.0"})
    assert by_version.properties["image"] == f"/artifacts/images/{v1.id}"
    latest = cat.create("charts", "d", properties={"image": "images/base@latest"})
    assert latest.properties["image"] == f"/artifacts/images/{v2.id}"  # semver, not text
    page = cat.list("charts", filters=[f"image=/artifacts/images/{v1.id}"])
    assert {a.name for a in page.items} == {"a", "c"}


@pytest.mark.parametrize(
    "ref", ["images/nope@1.0", "11111111-2222-3333-4444-555555555555", "junk", "images/base"]
)
def test_bad_links_are_refused_and_nothing_written(cat: glarelite.Catalog, ref: str) -> None:
    cat.create("images", "base", version="1.0")
    with pytest.raises(InvalidInput):
        cat.create("charts", "a", properties={"image": ref})
    assert cat.list("charts").total == 0


def test_invisible_targets_cannot_be_linked(cat: glarelite.Catalog) -> None:
    private = cat.scoped("alice").create("images", "secret")
    with pytest.raises(InvalidInput):
        cat.scoped("bob").create("charts", "a", properties={"image": private.id})


def test_active_artifacts_link_only_to_active_ones(cat: glarelite.Catalog) -> None:
    img = cat.create("images", "base")
    chart = cat.create("charts", "c", properties={"image": img.id})
    with pytest.raises(IllegalTransition, match="drafted"):
        cat.activate(chart.id)
    cat.activate(img.id)
    cat.activate(chart.id)
    other = cat.create("images", "other")
    with pytest.raises(IllegalTransition):
        cat.update(chart.id, properties={"extra": other.id})  # mutable, but target drafted
    cat.activate(other.id)
    assert (
        cat.update(chart.id, properties={"extra": other.id}).properties["extra"].endswith(other.id)
    )


def test_delete_refused_while_active_links_point_at_it(cat: glarelite.Catalog) -> None:
    img = cat.create("images", "base")
    cat.activate(img.id)
    chart = cat.create("charts", "c", properties={"image": img.id})
    cat.activate(chart.id)
    with pytest.raises(Conflict, match="linked to by active artifact"):
        cat.delete(img.id)
    cat.deactivate(chart.id)
    cat.activate(chart.id)
    cat.delete(img.id, force=True)
    with pytest.raises(NotFound):
        cat.get(img.id)
