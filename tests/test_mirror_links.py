"""Links in a mirror: a link points at the linked artifact's index in the tree, and a
linked artifact comes along into the tree even when the selection did not name it."""

from __future__ import annotations

import json
from pathlib import Path

import glarelite
import mirror
from glarelite import tree
from tests.test_mirror_support import QUICK, type_views


def test_links_resolve_inside_the_tree(tmp_path: Path, memory_store: str) -> None:
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as cat:
        cat.define_type("images", blobs=["file"])
        cat.define_type("charts", properties={"image": glarelite.Property("link")})
        base = cat.create("images", "base", version="1.0")
        cat.upload(base.id, "file", [b"base bytes"])
        cat.activate(base.id)
        cat.publish(base.id)
        hidden = cat.create("images", "hidden")  # private: never pulled in by a link
        cat.activate(hidden.id)
        chart = cat.create("charts", "web", properties={"image": "images/base@latest"})
        cat.activate(chart.id)
        cat.publish(chart.id)
        other = cat.create("charts", "secretive", properties={"image": hidden.id})
        cat.activate(other.id)
        cat.publish(other.id)

        dest = tmp_path / "tree"
        # only charts named "web" are selected: the image it links to comes along
        report = mirror.sync(cat, str(dest), names=["web"], **QUICK)
        assert report.exit_code == 0

    index = json.loads((dest / tree.artifact_index_path("charts", chart.id)).read_text())
    link = index["properties"]["image"]
    assert link == f"/artifacts/images/{base.id}/index.json"
    assert (dest / link.lstrip("/")).is_file()
    assert (dest / tree.blob_path("images", base.id, "file")).read_bytes() == b"base bytes"
    assert not (dest / "artifacts" / "images" / hidden.id).exists()
    assert [a["id"] for a in type_views(dest, "images")] == [base.id]
