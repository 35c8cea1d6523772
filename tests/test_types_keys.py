"""Blob-dict keys as Glare allows them (issue 17): free text, mapped to one path-safe,
reversible, case-fold-safe path segment in internal URLs and in mirror trees."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import urllib3

import glarelite
import mirror
from glarelite._names import check_key, decode_key, encode_key, split_slot
from glarelite.errors import InvalidInput
from glarelite.urls import internal_url, join_base
from tests.test_mirror_support import sums_check, sums_text

QUICK = {"backoff": 0.01, "retries": 1}
ID = "01890000-0000-7000-8000-000000000000"

# The keys of the issue, Glare's own (heat's nested templates), and every trick we know.
KEYS = [
    "RegionOne",
    "regionone",  # must not share a file with RegionOne on a case-insensitive disk
    "Nested.yaml",
    "a b",
    "ü",
    "u\u0308",  # the same letter, decomposed: another key, another name
    "..",
    ".",
    ".hidden",
    "a/b",
    "../../etc/passwd",
    "%2e%2e",
    "%2E%2E",
    "%252e",
    "\uff0e\uff0e",  # fullwidth full stops: NFKC-folds to ".."
    "\u2024\u2024",  # one-dot leaders
    "a\\b",
    "..\\..",
    "~",
    "*?[]",
    "\u202e\u0627",  # right-to-left override
    "k" * 255,
]


@pytest.mark.parametrize("key", KEYS)
def test_every_key_encodes_to_one_safe_segment_and_back(key: str) -> None:
    assert check_key(key) == key
    segment = encode_key(key)
    assert decode_key(segment) == key
    assert 0 < len(segment) <= 255
    assert "/" not in segment and "\\" not in segment and "\x00" not in segment
    assert not segment.startswith(".")  # never '.', '..' or a hidden name
    assert all(c.isascii() and c.isprintable() and c not in " \t\n*?[" for c in segment)
    # inside its folder whatever a path library makes of it
    assert posixpath.dirname(posixpath.normpath(posixpath.join("/tree/f", segment))) == "/tree/f"
    # a URL decoded once by a static server is that very file name
    url = join_base("http://h", internal_url("t", ID, "f", key))
    path = urllib3.util.parse_url(url).path or ""
    assert unquote(path) == f"/artifacts/t/{ID}/f/{segment}"


def test_encoded_names_never_collide_case_insensitively() -> None:
    folded = {encode_key(k).lower() for k in KEYS}
    assert len(folded) == len(set(KEYS))
    assert encode_key("RegionOne") == "%52egion%4Fne"
    assert encode_key("a b") == "a%20b"
    assert encode_key("..") == "%2E."
    assert encode_key("a/b") == "a%2Fb"
    assert encode_key("Nested.yaml") == "%4Eested.yaml"
    assert encode_key("plain-key_1.txt") == "plain-key_1.txt"  # the old keys keep their path


@pytest.mark.parametrize(
    "bad",
    ["", "\x00", "a\x00b", "a\nb", "a\tb", "\x7f", "\x85", "\ud800", "k" * 256, "ü" * 100, 7],
)
def test_keys_that_cannot_be_one_file_name_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput):
        check_key(bad)


@pytest.mark.parametrize(
    "segment",
    ["", ".", "..", "%2e.", "%61", "A", "a/b", "a%2", "a%zz", "%C3", "%2E%2E/x", "a b", "%00"],
)
def test_only_the_canonical_spelling_decodes(segment: str) -> None:
    with pytest.raises(InvalidInput):
        decode_key(segment)


def test_slot_key_is_everything_after_the_first_slash() -> None:
    assert split_slot("nested/a/b") == ("nested", "a/b")
    assert split_slot("nested/../x") == ("nested", "../x")
    with pytest.raises(InvalidInput):
        split_slot("nested/a\nb")


# -- catalog, mirror tree, reader ------------------------------------------------------
ISSUE_KEYS = ["RegionOne", "Nested.yaml", "a b", "ü", "..", "a/b", "%2e%2e", "\uff0e\uff0e"]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[tuple[glarelite.Catalog, str, dict[str, bytes]]]:
    with glarelite.open(tmp_path / "c.db", storage=str(tmp_path / "blobs")) as cat:
        cat.define_type("heat_templates", blobs=["template"], blob_dicts=["nested_templates"])
        art = cat.create("heat_templates", "stack", visibility="private")
        data = {}
        cat.upload(art.id, "template", b"heat_template_version: 2018-08-31\n")
        for i, key in enumerate(ISSUE_KEYS):
            data[key] = f"resources: {i} {key}\n".encode()
            cat.upload(art.id, f"nested_templates/{key}", data[key])
        cat.activate(art.id)
        cat.publish(art.id)
        yield cat, art.id, data


def test_the_catalog_keeps_keys_and_shows_encoded_urls(
    catalog: tuple[glarelite.Catalog, str, dict[str, bytes]],
) -> None:
    cat, art_id, data = catalog
    shown = cat.get(art_id).blobs["nested_templates"]
    assert sorted(shown) == sorted(ISSUE_KEYS)
    for key, payload in data.items():
        blob = shown[key]
        assert blob.key == key
        assert blob.url == f"/artifacts/heat_templates/{art_id}/nested_templates/{encode_key(key)}"
        with cat.open_blob(art_id, f"nested_templates/{key}") as f:
            assert f.read() == payload
    with pytest.raises(glarelite.NotFound):
        cat.open_blob(art_id, "nested_templates/%2E.")  # an encoded name is not the key


def _check_tree(dest: Path, art_id: str, data: dict[str, bytes]) -> None:
    # every key is one file right under its field's folder, named by its encoding
    folder = dest / "artifacts" / "heat_templates" / art_id / "nested_templates"
    assert sorted(os.listdir(folder)) == sorted(encode_key(k) for k in data)
    for key, payload in data.items():
        assert (folder / encode_key(key)).read_bytes() == payload
    sums = sums_text(dest)
    assert "\\" not in sums  # GNU sha256sum escapes '\\' and newlines: none to escape
    run = sums_check(dest)
    assert run.returncode == 0, run.stdout + run.stderr
    # every key, the template, the artifact's shard and the type's bucket (the sums files
    # list the shards and buckets too)
    assert len(sums.splitlines()) == len(data) + 3


def test_mirror_tree_and_reader_round_trip_every_key(
    catalog: tuple[glarelite.Catalog, str, dict[str, bytes]], tmp_path: Path
) -> None:
    cat, art_id, data = catalog
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    _check_tree(dest, art_id, data)
    assert mirror.check_tree(str(dest)).ok
    with glarelite.open_mirror(dest) as reader:
        shown = reader.get(art_id).blobs["nested_templates"]
        assert sorted(shown) == sorted(ISSUE_KEYS)
        assert reader.get(art_id).to_dict() == cat.get(art_id).to_dict()
        for key, payload in data.items():
            with reader.open_blob(art_id, f"nested_templates/{key}") as f:
                assert f.read() == payload
    assert mirror.sync(cat, str(dest), **QUICK).nothing_to_do  # a rerun finds it all in place


@pytest.mark.parametrize("server", ["http_server", "nginx_server"])
def test_a_served_tree_resolves_every_key(
    catalog: tuple[glarelite.Catalog, str, dict[str, bytes]],
    tmp_path: Path,
    server: str,
    request: pytest.FixtureRequest,
) -> None:
    cat, art_id, data = catalog
    dest = tmp_path / "tree"
    assert mirror.sync(cat, str(dest), **QUICK).exit_code == 0
    serve: Callable[[Path], str] = request.getfixturevalue(server)
    base = serve(dest)
    http = urllib3.PoolManager(retries=False)
    for key, payload in data.items():
        url = cat.get(art_id).blobs["nested_templates"][key].url
        reply = http.request("GET", join_base(base, url))
        assert reply.status == 200 and reply.data == payload, key
    with glarelite.open_mirror(base) as reader:
        for key, payload in data.items():
            with reader.open_blob(art_id, f"nested_templates/{key}") as f:
                assert f.read() == payload
