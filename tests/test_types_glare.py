"""Glare's type system (issue 17): validators, blob options, lists and dicts of links,
Glare's spellings, with Glare's own image, heat template and murano package types."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import glarelite
from glarelite import BlobField, Property
from glarelite.errors import ChecksumMismatch, Conflict, IllegalTransition, InvalidInput, TooLarge
from tests.fixtures.origin import Origin
from tests.test_mirror_support import sums_check

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker")


def glare_types() -> list[glarelite.ArtifactType]:
    """Glare's image, heat template and murano package (glare/objects/*.py) in glarelite."""
    images = glarelite.ArtifactType(
        "images",
        blobs=("image",),
        blob_options={"image": BlobField(max_size=1073741824000)},
        checksums=("md5", "sha1"),
        properties={
            "container_format": Property("string", allowed=CONTAINER_FORMATS),
            "disk_format": Property("string", allowed=DISK_FORMATS),
            "min_ram": Property("integer", min_value=0),
            "min_disk": Property("integer", min_value=0),
            "image_indirect_url": Property("string"),
            "cloud_user": Property("string", max_length=64, pattern=r"[a-z_][a-z0-9_-]*"),
        },
    )
    heat = glarelite.ArtifactType(
        "heat_templates",
        blobs=("template",),
        blob_dicts=("nested_templates",),
        blob_options={"template": BlobField(required=True)},
        properties={
            "environment": Property("dict", items="link"),
            "default_envs": Property("dict", max_items=10),
        },
    )
    murano = glarelite.ArtifactType(
        "murano_packages",
        blobs=("package",),
        properties={
            "package_name": Property("string", required=True, min_length=1, max_length=80),
            "dependencies": Property("list", items="link", unique=True, max_items=50),
            "tags_list": Property("list", unique=True, max_items=3),
        },
    )
    return [images, heat, murano]


@pytest.fixture
def cat(tmp_path: Path, memory_store: str) -> Iterator[glarelite.Catalog]:
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as c:
        for atype in glare_types():
            c.define_type(atype)
        yield c


# -- validators ------------------------------------------------------------------------
def test_value_outside_the_allowed_set_names_field_and_rule(cat: glarelite.Catalog) -> None:
    with pytest.raises(InvalidInput, match=r"'disk_format'.*'qcow3'.*rule allowed"):
        cat.create("images", "cirros", properties={"disk_format": "qcow3"})
    art = cat.create("images", "cirros", properties={"disk_format": "qcow2"})
    with pytest.raises(InvalidInput, match=r"'container_format'.*rule allowed"):
        cat.update(art.id, properties={"container_format": "tarball"})
    assert (
        cat.update(art.id, properties={"container_format": "bare"}).properties["container_format"]
        == "bare"
    )


def test_too_long_and_too_short_strings(cat: glarelite.Catalog) -> None:
    with pytest.raises(InvalidInput, match=r"'cloud_user'.*65 characters.*rule max_length"):
        cat.create("images", "x", properties={"cloud_user": "u" * 65})
    with pytest.raises(InvalidInput, match=r"'package_name'.*rule min_length"):
        cat.create("murano_packages", "p", properties={"package_name": ""})
    art = cat.create("murano_packages", "p", properties={"package_name": "io.murano"})
    with pytest.raises(InvalidInput, match=r"'package_name'.*rule max_length"):
        cat.update(art.id, properties={"package_name": "n" * 81})


def test_pattern_is_matched_in_full(cat: glarelite.Catalog) -> None:
    with pytest.raises(InvalidInput, match=r"'cloud_user'.*rule pattern"):
        cat.create("images", "x", properties={"cloud_user": "Ubuntu"})
    with pytest.raises(InvalidInput, match=r"rule pattern"):
        cat.create("images", "x", properties={"cloud_user": "ubuntu!"})  # a prefix is no match
    assert cat.create("images", "x", properties={"cloud_user": "ubuntu"})


def test_min_and_max_number(cat: glarelite.Catalog, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"'min_ram'.*-1 is below 0.*rule min_value"):
        cat.create("images", "x", properties={"min_ram": -1})
    cat.define_type("flavors", properties={"ratio": Property("number", max_value=2.5)})
    with pytest.raises(InvalidInput, match=r"'ratio'.*rule max_value"):
        cat.create("flavors", "f", properties={"ratio": "2.6"})
    assert cat.create("flavors", "f", properties={"ratio": 2.5}).properties["ratio"] == 2.5


def test_max_items_and_unique(cat: glarelite.Catalog) -> None:
    with pytest.raises(InvalidInput, match=r"'tags_list'.*rule max_items"):
        cat.create("murano_packages", "p", properties={"tags_list": ["a", "b", "c", "d"]})
    with pytest.raises(InvalidInput, match=r"'tags_list'.*rule unique"):
        cat.create("murano_packages", "p", properties={"tags_list": ["a", "a"]})
    with pytest.raises(InvalidInput, match=r"'default_envs'.*rule max_items"):
        cat.create(
            "heat_templates", "t", properties={"default_envs": {str(i): "v" for i in range(11)}}
        )
    art = cat.create("murano_packages", "p", properties={"tags_list": ["a", "b"]})
    with pytest.raises(InvalidInput, match=r"rule unique"):
        cat.update(art.id, properties={"tags_list": ["b", "b"]})


def test_rules_apply_to_each_list_element(cat: glarelite.Catalog) -> None:
    cat.define_type(
        "bundles",
        properties={"formats": Property("list", allowed=DISK_FORMATS, max_length=5)},
    )
    with pytest.raises(InvalidInput, match=r"'formats' item.*'qcow3'.*rule allowed"):
        cat.create("bundles", "b", properties={"formats": ["raw", "qcow3"]})
    assert cat.create("bundles", "b", properties={"formats": ["raw", "iso"]})


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        (lambda: Property("boolean", allowed=(True,)), "rule 'allowed' applies to"),
        (lambda: Property("integer", max_length=3), "rule 'max_length' applies to strings"),
        (lambda: Property("string", min_value=1), "rule 'min_value' applies to"),
        (lambda: Property("string", pattern="("), "not a valid regular expression"),
        (lambda: Property("string", max_items=2), "rule 'max_items' applies to lists"),
        (lambda: Property("dict", unique=True), "rule 'unique' applies to lists only"),
        (lambda: Property("integer", allowed=("x",)), "allowed value"),
        (lambda: Property("string", min_length=5, max_length=2), "above rule"),
        (lambda: Property("string", max_length=-1), "integer >= 0"),
        (lambda: Property("integer", min_value=float("nan")), "finite number"),
        (lambda: Property("string", allowed="raw"), "list of values"),
    ],
)
def test_a_rule_that_does_not_fit_its_kind_is_refused(prop: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        prop()  # type: ignore[operator]


def test_rules_are_stored_in_the_catalog_and_read_back(tmp_path: Path, memory_store: str) -> None:
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as c:
        for atype in glare_types():
            c.define_type(atype)
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as c:  # a fresh type cache
        images = c.get_type("images")
        assert images.properties["disk_format"].allowed == DISK_FORMATS
        assert images.properties["cloud_user"].rules() == {
            "max_length": 64,
            "pattern": r"[a-z_][a-z0-9_-]*",
        }
        assert images.checksums == ("md5", "sha1")
        heat = c.get_type("heat_templates")
        assert heat.blob_field("template").required
        assert heat.properties["environment"].items == "link"
        with pytest.raises(InvalidInput, match="rule allowed"):
            c.create("images", "x", properties={"disk_format": "nope"})
        # the same definition again is accepted, a changed one is not
        for atype in glare_types():
            c.define_type(atype)
        with pytest.raises(Conflict):
            c.define_type(
                glarelite.ArtifactType(
                    "images", blobs=("image",), properties={"disk_format": Property("string")}
                )
            )


def test_a_definition_stored_before_rules_existed_still_loads(
    tmp_path: Path, memory_store: str
) -> None:
    old = {
        "name": "legacy",
        "blobs": ["file"],
        "blob_dicts": ["regions"],
        "properties": {
            "n": {"kind": "integer", "required": True},
            "l": {"kind": "list", "items": "string"},
        },
        "max_blob_size": 10,
    }
    text = json.dumps(old, sort_keys=True, separators=(",", ":"))
    with glarelite.open(tmp_path / "c.db", storage=memory_store) as c:
        with c._core.database.write() as conn:
            conn.execute(
                "INSERT INTO artifact_types(name, definition, created_at) VALUES (?, ?, ?)",
                ("legacy", text, "2026-01-01T00:00:00.000000Z"),
            )
        atype = c.get_type("legacy")
        assert atype.blob_options == {} and atype.checksums == ()
        assert atype.dumps() == text  # defining it again is not a Conflict
        c.define_type(
            "legacy",
            blobs=["file"],
            blob_dicts=["regions"],
            max_blob_size=10,
            properties={"n": Property("integer", required=True), "l": Property("list")},
        )
        art = c.create("legacy", "a", properties={"n": 1})
        assert art.properties["n"] == 1


# -- blob options ------------------------------------------------------------------------
def test_a_missing_required_blob_refuses_activation(cat: glarelite.Catalog) -> None:
    tpl = cat.create("heat_templates", "stack")
    with pytest.raises(IllegalTransition, match=r"required blobs not set: template"):
        cat.activate(tpl.id)
    assert cat.get(tpl.id).status == "drafted"
    cat.upload(tpl.id, "template", b"heat_template_version: 2018-08-31\n")
    assert cat.activate(tpl.id).status == "active"


def test_a_required_blob_dict_needs_one_entry(cat: glarelite.Catalog) -> None:
    cat.define_type(
        glarelite.ArtifactType(
            "bundles", blob_dicts=("parts",), blob_options={"parts": BlobField(required=True)}
        )
    )
    art = cat.create("bundles", "b")
    with pytest.raises(IllegalTransition, match="required blobs not set: parts"):
        cat.activate(art.id)
    cat.upload(art.id, "parts/RegionOne", b"x")
    assert cat.activate(art.id).status == "active"


def test_mutable_blob_may_be_replaced_while_active(cat: glarelite.Catalog) -> None:
    cat.define_type(
        glarelite.ArtifactType(
            "configs",
            blobs=("body", "notes"),
            blob_options={"notes": BlobField(mutable=True), "body": BlobField(required=True)},
        )
    )
    art = cat.create("configs", "c")
    cat.upload(art.id, "body", b"v1")
    cat.upload(art.id, "notes", b"n1")
    cat.activate(art.id)
    blob = cat.upload(art.id, "notes", b"n2")
    assert blob.size == 2
    with cat.open_blob(art.id, "notes") as f:
        assert f.read() == b"n2"
    with pytest.raises(IllegalTransition, match="only drafted artifacts"):
        cat.upload(art.id, "body", b"v2")  # not mutable
    before = cat.get(art.id).updated_at
    cat.remove_blob(art.id, "notes")
    after = cat.get(art.id)
    assert after.blobs["notes"] is None
    assert after.updated_at > before  # what a mirror's next sync looks for
    cat.deactivate(art.id)
    with pytest.raises(IllegalTransition, match="deactivated"):
        cat.upload(art.id, "notes", b"n3")  # Glare: a deactivated artifact changes nothing


def test_a_required_mutable_blob_cannot_be_removed_while_active(cat: glarelite.Catalog) -> None:
    cat.define_type(
        glarelite.ArtifactType(
            "configs",
            blobs=("body",),
            blob_options={"body": BlobField(required=True, mutable=True)},
        )
    )
    art = cat.create("configs", "c")
    cat.upload(art.id, "body", b"v1")
    cat.activate(art.id)
    assert cat.upload(art.id, "body", b"v22").size == 3
    with pytest.raises(IllegalTransition, match="required"):
        cat.remove_blob(art.id, "body")


def test_size_cap_per_blob_field(cat: glarelite.Catalog) -> None:
    cat.define_type(
        glarelite.ArtifactType(
            "capped",
            blobs=("small", "big"),
            blob_dicts=("parts",),
            max_blob_size=100,
            blob_options={"small": BlobField(max_size=4), "parts": BlobField(max_size=6)},
        )
    )
    art = cat.create("capped", "c")
    with pytest.raises(TooLarge):
        cat.upload(art.id, "small", b"12345")
    with pytest.raises(TooLarge):
        cat.upload(art.id, "small", b"12345", size=5)  # refused before any byte moves
    assert cat.get(art.id).blobs["small"] is None
    cat.upload(art.id, "small", b"1234")
    cat.upload(art.id, "big", b"x" * 100)  # the type's cap, not the field's
    with pytest.raises(TooLarge):
        cat.upload(art.id, "big", b"x" * 101)
    cat.upload(art.id, "parts/a", b"1234")
    with pytest.raises(TooLarge):
        cat.upload(art.id, "parts/b", b"123")  # the dict's sum is over 6


def test_type_checksums_are_recorded_for_every_upload(cat: glarelite.Catalog) -> None:
    import hashlib

    art = cat.create("images", "cirros")
    blob = cat.upload(art.id, "image", b"cirros bytes")
    assert blob.checksums["md5"] == hashlib.md5(b"cirros bytes").hexdigest()
    assert blob.checksums["sha1"] == hashlib.sha1(b"cirros bytes").hexdigest()


def test_activated_at_is_set_on_each_activation(cat: glarelite.Catalog) -> None:
    art = cat.create("murano_packages", "p", properties={"package_name": "io.murano"})
    assert cat.get(art.id).activated_at is None
    first = cat.activate(art.id).activated_at
    assert first is not None
    cat.deactivate(art.id)
    assert cat.get(art.id).activated_at == first
    again = cat.reactivate(art.id).activated_at
    assert again is not None and again > first


# -- lists and dicts of links --------------------------------------------------------------
def _active_env(cat: glarelite.Catalog, name: str) -> glarelite.Artifact:
    env = cat.create("heat_templates", name)
    cat.upload(env.id, "template", b"parameters: {}\n")
    return cat.activate(env.id)


def test_a_dict_of_links_to_a_drafted_target_refuses_activation(cat: glarelite.Catalog) -> None:
    env_ok = _active_env(cat, "env-ok")
    env_draft = cat.create("heat_templates", "env-draft")
    stack = cat.create(
        "heat_templates",
        "stack",
        properties={"environment": {"prod": env_ok.id, "dev": "heat_templates/env-draft@latest"}},
    )
    assert stack.properties["environment"] == {
        "prod": f"/artifacts/heat_templates/{env_ok.id}",
        "dev": f"/artifacts/heat_templates/{env_draft.id}",
    }
    cat.upload(stack.id, "template", b"resources: {}\n")
    with pytest.raises(IllegalTransition, match=r"link environment\['dev'\].*drafted"):
        cat.activate(stack.id)
    cat.upload(env_draft.id, "template", b"parameters: {}\n")
    cat.activate(env_draft.id)
    assert cat.activate(stack.id).status == "active"
    # an element filter finds it, as for a single link
    page = cat.list(
        "heat_templates", filters=[f"environment.dev=/artifacts/heat_templates/{env_draft.id}"]
    )
    assert [a.id for a in page.items] == [stack.id]


def test_a_list_of_links_checks_each_element(cat: glarelite.Catalog) -> None:
    dep = cat.create("murano_packages", "dep", properties={"package_name": "io.dep"})
    with pytest.raises(InvalidInput, match=r"link dependencies\[1\].*no artifact"):
        cat.create(
            "murano_packages",
            "app",
            properties={"package_name": "io.app", "dependencies": [dep.id, "nope/x@1"]},
        )
    with pytest.raises(InvalidInput, match="rule unique"):  # two spellings, one target
        cat.create(
            "murano_packages",
            "app",
            properties={
                "package_name": "io.app",
                "dependencies": [dep.id, "murano_packages/dep@latest"],
            },
        )
    app = cat.create(
        "murano_packages", "app", properties={"package_name": "io.app", "dependencies": [dep.id]}
    )
    with pytest.raises(IllegalTransition, match=r"link dependencies\[0\].*drafted"):
        cat.activate(app.id)
    cat.activate(dep.id)
    cat.activate(app.id)
    # delete is refused while an active artifact links to it, unless forced
    with pytest.raises(Conflict, match="dependencies"):
        cat.delete(dep.id)
    cat.delete(dep.id, force=True)
    with pytest.raises(glarelite.NotFound):
        cat.get(dep.id)


def test_links_in_a_dict_to_invisible_targets_are_refused(cat: glarelite.Catalog) -> None:
    secret = cat.scoped("alice").create("heat_templates", "secret")
    bob = cat.scoped("bob")
    with pytest.raises(InvalidInput, match=r"link environment\['x'\].*no artifact"):
        bob.create("heat_templates", "stack", properties={"environment": {"x": secret.id}})


def test_lists_and_dicts_of_links_are_followed_by_the_mirror(
    cat: glarelite.Catalog, tmp_path: Path
) -> None:
    import mirror
    from glarelite import tree

    env = cat.publish(_active_env(cat, "env").id)  # a link pulls in public targets only
    dep = cat.create("murano_packages", "dep", properties={"package_name": "io.dep"})
    cat.activate(dep.id)
    cat.publish(dep.id)
    stack = cat.create("heat_templates", "stack", properties={"environment": {"prod": env.id}})
    cat.upload(stack.id, "template", b"resources: {}\n")
    cat.activate(stack.id)
    cat.publish(stack.id)
    app = cat.create(
        "murano_packages", "app", properties={"package_name": "io.app", "dependencies": [dep.id]}
    )
    cat.activate(app.id)
    cat.publish(app.id)
    dest = tmp_path / "tree"
    report = mirror.sync(cat, str(dest), names=["stack", "app"], backoff=0.01, retries=1)
    assert report.exit_code == 0
    shown = json.loads((dest / tree.artifact_index_path("heat_templates", stack.id)).read_text())
    link = shown["properties"]["environment"]["prod"]
    assert link == f"/artifacts/heat_templates/{env.id}/index.json"
    assert (dest / link.lstrip("/")).is_file()  # the linked artifact came along
    shown = json.loads((dest / tree.artifact_index_path("murano_packages", app.id)).read_text())
    (link,) = shown["properties"]["dependencies"]
    assert (dest / link.lstrip("/")).is_file()


# -- Glare's spellings -----------------------------------------------------------------------
def test_version_latest_is_a_filter(cat: glarelite.Catalog) -> None:
    ids = {}
    for name, version in (("cirros", "0.3.5"), ("cirros", "0.10.0"), ("fedora", "38")):
        ids[name, version] = cat.create("images", name, version=version).id
    page = cat.list("images", filters=["version=latest"], sort="name:asc")
    assert [a.id for a in page.items] == [ids["cirros", "0.10.0"], ids["fedora", "38"]]
    assert page.total == 2
    both = cat.list("images", filters={"version": "latest", "name": "cirros"})
    assert [a.id for a in both.items] == [ids["cirros", "0.10.0"]]
    for bad in ("version=or:latest", "version=neq:latest", "version=in:latest,1.0"):
        with pytest.raises(InvalidInput, match="version"):
            cat.list("images", filters=[bad])


def test_an_empty_name_filter_is_invalid(cat: glarelite.Catalog) -> None:
    cat.create("images", "cirros")
    for bad in ("name=", "name=eq:", "name=or:"):
        with pytest.raises(InvalidInput, match="name"):
            cat.list("images", filters=[bad])


def located_catalog(tmp_path: Path) -> glarelite.Catalog:
    cat = glarelite.open(
        tmp_path / "loc.db", storage=str(tmp_path / "loc-blobs"), allow_hosts=["127.0.0.1"]
    )
    for atype in glare_types():
        cat.define_type(atype)
    return cat


def test_adding_a_location_to_an_occupied_slot_is_a_conflict(
    tmp_path: Path, origin: Origin
) -> None:
    origin.add("/cirros.img", data=b"external cirros")
    url = origin.url("/cirros.img")
    with located_catalog(tmp_path) as cat:
        art = cat.create("images", "cirros")
        cat.upload(art.id, "image", b"internal")
        with pytest.raises(Conflict, match="already set"):
            cat.add_location(art.id, "image", url)
        with cat.open_blob(art.id, "image") as f:
            assert f.read() == b"internal"  # untouched
        cat.remove_blob(art.id, "image")
        assert cat.add_location(art.id, "image", url).external
        with pytest.raises(Conflict, match="already set"):
            cat.add_location(art.id, "image", url)
        assert cat.add_location(art.id, "image", url, replace=True).external  # asked for


# -- md5 and sha1 beside sha256 ------------------------------------------------------------
def test_add_location_records_and_verifies_md5_and_sha1(tmp_path: Path, origin: Origin) -> None:
    body = b"external cirros " * 1000
    origin.add("/cirros.img", data=body)
    url = origin.url("/cirros.img")
    md5, sha1 = hashlib.md5(body).hexdigest(), hashlib.sha1(body).hexdigest()
    with located_catalog(tmp_path) as cat:
        art = cat.create("images", "cirros")
        with pytest.raises(ChecksumMismatch, match="md5"):
            cat.add_location(art.id, "image", url, md5=hashlib.md5(b"other").hexdigest())
        with pytest.raises(ChecksumMismatch, match="sha1"):
            cat.add_location(art.id, "image", url, md5=md5, sha1="0" * 40)
        assert cat.get(art.id).blobs["image"] is None  # nothing recorded
        with pytest.raises(InvalidInput, match="md5"):
            cat.add_location(art.id, "image", url, md5="xyz")
        blob = cat.add_location(art.id, "image", url, md5=md5.upper(), sha1=f"sha1:{sha1}")
        assert blob.checksums == {"md5": md5, "sha1": sha1}  # the type asks for both
        # a type that asks for none still records and checks what the caller gives
        cat.define_type("files", blobs=["file"])
        plain = cat.create("files", "f")
        assert cat.add_location(plain.id, "file", url, md5=md5).checksums == {"md5": md5}
        other = cat.create("files", "g")
        assert cat.add_location(other.id, "file", url).checksums == {}


def test_upload_verifies_md5_and_sha1(cat: glarelite.Catalog) -> None:
    art = cat.create("images", "cirros")
    with pytest.raises(ChecksumMismatch, match="md5"):
        cat.upload(art.id, "image", b"bytes", md5=hashlib.md5(b"other").hexdigest())
    assert cat.get(art.id).blobs["image"] is None
    with pytest.raises(ChecksumMismatch, match="sha1"):
        cat.upload(art.id, "image", b"bytes", sha1=hashlib.sha1(b"other").hexdigest())
    blob = cat.upload(
        art.id,
        "image",
        b"bytes",
        md5=hashlib.md5(b"bytes").hexdigest(),
        sha1=hashlib.sha1(b"bytes").hexdigest(),
    )
    assert blob.checksums["md5"] == hashlib.md5(b"bytes").hexdigest()


def test_the_types_in_docs_are_the_types_tested_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/glare-types.md's example runs, and declares what this file exercises."""
    text = (Path(__file__).parent.parent / "docs" / "glare-types.md").read_text()
    source = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(source, "docs/glare-types.md", "exec"), scope)
    tested = {t.name: t for t in glare_types()}
    murano = tested["murano_packages"]
    tested["murano_packages"] = glarelite.ArtifactType(
        murano.name,
        blobs=murano.blobs,
        properties={k: v for k, v in murano.properties.items() if k != "tags_list"},
    )
    for name in ("images", "heat_templates", "murano_packages"):
        documented = scope[name]
        assert isinstance(documented, glarelite.ArtifactType)
        assert documented.dumps() == tested[name].dumps(), name
    with glarelite.open(tmp_path / "catalog.db") as cat:
        assert [t.name for t in cat.types()] == ["heat_templates", "images", "murano_packages"]


@pytest.mark.parametrize(
    "definition",
    [
        {},
        {"name": "t", "blobs": "file"},
        {"name": "t", "properties": []},
        {"name": "t", "properties": {"p": 1}},
        {"name": "t", "properties": {"p": {"kind": "string", "allowed": 5}}},
        {"name": "t", "properties": {"p": {"kind": "string", "pattern": "("}}},
        {"name": "t", "properties": {"p": {"kind": "string", "max_length": "9"}}},
        {"name": "t", "properties": {"p": {"kind": "list", "unique": "yes"}}},
        {"name": "t", "properties": {"p": {"kind": "integer", "min_value": [1]}}},
        {"name": "t", "properties": {"p": {"kind": "dict", "items": "dict"}}},
        {"name": "t", "blobs": ["f"], "blob_options": ["f"]},
        {"name": "t", "blobs": ["f"], "blob_options": {"f": {"required": "no"}}},
        {"name": "t", "blobs": ["f"], "blob_options": {"g": {"required": True}}},
        {"name": "t", "blobs": ["f"], "blob_options": {"f": {"max_size": -1}}},
        {"name": "t", "checksums": ["crc32"]},
        {"name": "t", "checksums": 5},
        {"name": "../t"},
    ],
)
def test_a_hostile_stored_definition_is_invalid_input(definition: dict[str, object]) -> None:
    """Definitions are read from mirror trees too: never another exception."""
    with pytest.raises(InvalidInput):
        glarelite.ArtifactType.from_json(definition)


def test_a_mutable_blob_changed_while_active_reaches_the_mirror(
    cat: glarelite.Catalog, tmp_path: Path
) -> None:

    import mirror
    from glarelite import tree

    cat.define_type(
        glarelite.ArtifactType(
            "configs",
            blobs=("body",),
            blob_dicts=("notes",),
            blob_options={"notes": BlobField(mutable=True)},
        )
    )
    art = cat.create("configs", "c")
    cat.upload(art.id, "body", b"body")
    cat.upload(art.id, "notes/Region One", b"v1")
    cat.activate(art.id)
    cat.publish(art.id)
    dest = tmp_path / "tree"
    quick = {"backoff": 0.01, "retries": 1}
    assert mirror.sync(cat, str(dest), **quick).exit_code == 0
    path = dest / tree.blob_path("configs", art.id, "notes", "Region One")
    assert path.read_bytes() == b"v1"
    cat.upload(art.id, "notes/Region One", b"v2")
    report = mirror.sync(cat, str(dest), **quick)
    assert report.exit_code == 0, json.dumps(report.to_dict())
    assert path.read_bytes() == b"v2"
    cat.remove_blob(art.id, "notes/Region One")
    report = mirror.sync(cat, str(dest), **quick)
    assert report.exit_code == 0 and report.retained == 1  # no longer published, kept
    assert mirror.sync(cat, str(dest), delete=True, **quick).exit_code == 0
    assert not path.exists()
    with glarelite.open_mirror(dest) as reader:
        assert reader.get(art.id).blobs["notes"] == {}
    run = sums_check(dest)
    assert run.returncode == 0, run.stdout + run.stderr
