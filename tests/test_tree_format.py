"""The format 2 tree contract (glarelite.tree) and its builder (mirror.layout): what the
writer and every reader agree on, checked without a catalog or a sync."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glarelite import InvalidInput, tree
from mirror import layout
from tests import treekit


def _shows() -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    t = treekit.build(fmt=1)
    return {n: (dict(d["definition"]), list(d["artifacts"])) for n, d in t.indexes.items()}


def test_render_pins_every_file_by_hash_from_the_root() -> None:
    files = layout.render(_shows())
    root = tree.Root.from_dict(json.loads(files[tree.ROOT_INDEX]))
    assert root.counts == {"types": 2, "artifacts": 3, "blobs": 5, "bytes": 6020}
    reached = {tree.ROOT_INDEX}
    for name, entry in root.types.items():
        sums = files[tree.type_sums_path(name)]
        assert (hashlib.sha256(sums).hexdigest(), len(sums)) == (entry.sums.sha256, entry.sums.size)
        reached.add(tree.type_sums_path(name))
        for b, ref in entry.buckets.items():
            data = files[entry.bucket_path(b)]
            assert hashlib.sha256(data).hexdigest() == ref.sha256 and len(data) == ref.size
            bucket = tree.Bucket.from_dict(json.loads(data), name, b)
            reached.add(entry.bucket_path(b))
            for shard, sref in bucket.shards.items():
                raw = files[sref.path(name)]
                assert hashlib.sha256(raw).hexdigest() == sref.file.sha256
                shows = tree.check_shard(json.loads(raw), name, shard)
                assert [s["name"] for s in shows] == sorted(s["name"] for s in shows)
                sums_file = files[tree.shard_sums_path(name, shard)]
                assert hashlib.sha256(sums_file).hexdigest() == sref.sums.sha256
                lines = tree.parse_sums(sums_file.decode().splitlines())
                assert lines[sref.path(name)] == sref.file.sha256
                assert len(lines) == sref.blobs + 1
                reached |= {sref.path(name), tree.shard_sums_path(name, shard)}
    assert reached == set(files)  # nothing unpinned


def test_same_views_same_names_one_change_one_shard() -> None:
    shows = _shows()
    first = layout.render(shows)
    assert layout.render(shows) == first  # deterministic: an unchanged shard keeps its name
    images = shows["images"][1]
    images[0] = {**images[0], "description": "changed"}
    second = layout.render(shows)
    changed = {p for p in set(first) | set(second) if first.get(p) != second.get(p)}
    shard = tree.shard_of(str(images[0]["name"]))
    # the changed shard (old and new name), its sums file, its bucket (old and new), the
    # images sums index and the root: nothing of charts
    assert all("charts" not in p for p in changed)
    assert tree.shard_sums_path("images", shard) in changed
    assert len([p for p in changed if "/_shards/" in p]) == 2
    assert len([p for p in changed if "/_buckets/" in p]) == 2
    assert len(changed) == 7


def test_the_documented_one_liner_checks_every_file(tmp_path: Path) -> None:
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum")
    t = treekit.build(fmt=1)
    files = {**layout.render(_shows()), **t.blobs}
    treekit.write_tree(tmp_path, files)
    ok = subprocess.run(tree.SUMS_CHECK, shell=True, cwd=tmp_path, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    checked = ok.stdout.decode().count(": OK")
    assert checked == len([p for p in files if p.startswith("artifacts/")])
    blob = next(iter(t.blobs))
    (tmp_path / blob).write_bytes(b"tampered")
    bad = subprocess.run(tree.SUMS_CHECK, shell=True, cwd=tmp_path, capture_output=True)
    assert bad.returncode != 0 and blob in bad.stdout.decode()


@pytest.mark.parametrize("version", [0, 3, "2", None, True, 2.0])
def test_unknown_formats_are_refused_saying_to_upgrade(version: object) -> None:
    files = layout.render(_shows())
    data = json.loads(files[tree.ROOT_INDEX])
    data["format_version"] = version
    if version == 2.0:  # JSON 2.0 is a float: not the integer 2
        data = json.loads(
            json.dumps(data).replace('"format_version": 2.0', '"format_version": 2.5')
        )
    with pytest.raises(InvalidInput, match="upgrade glarelite"):
        tree.Root.from_dict(data)


def test_a_format_1_root_is_told_apart() -> None:
    t = treekit.build(fmt=1)
    assert tree.format_of(t.root) == tree.FORMAT_V1
    with pytest.raises(InvalidInput, match="format 1"):
        tree.Root.from_dict(t.root)


def test_a_shard_must_hold_only_its_own_names() -> None:
    files = layout.render(_shows())
    path = next(p for p in files if "/_shards/" in p)
    parsed = tree.parse_content_path(path)
    assert parsed is not None
    type_name, _kind, shard, _ = parsed
    data = json.loads(files[path])
    data["artifacts"][0]["name"] = "not-of-this-shard-" + shard
    assert tree.shard_of(data["artifacts"][0]["name"]) != shard
    with pytest.raises(InvalidInput, match="another shard"):
        tree.check_shard(data, type_name, shard)
    with pytest.raises(InvalidInput, match="another type or shard"):
        tree.check_shard(json.loads(files[path]), type_name, "fff" if shard != "fff" else "000")


@pytest.mark.parametrize("name", ["\ud800", "a\udfffb", "\udc80" * 3])
def test_a_name_that_is_not_unicode_text_is_invalid_input_not_an_encode_error(name: str) -> None:
    # a lone surrogate has no UTF-8 form: the contract says so itself, as InvalidInput
    with pytest.raises(InvalidInput, match="not valid Unicode") as raised:
        tree.shard_of(name)
    assert not isinstance(raised.value, UnicodeError)
    files = layout.render(_shows())
    path = next(p for p in files if "/_shards/" in p)
    parsed = tree.parse_content_path(path)
    assert parsed is not None
    type_name, _kind, shard, _ = parsed
    data = json.loads(files[path])
    data["artifacts"][0]["name"] = name
    with pytest.raises(InvalidInput, match="not valid Unicode") as raised:
        tree.check_shard(data, type_name, shard)
    assert not isinstance(raised.value, UnicodeError)


def test_a_bucket_must_list_only_its_own_shards() -> None:
    files = layout.render(_shows())
    path = next(p for p in files if "/_buckets/" in p)
    parsed = tree.parse_content_path(path)
    assert parsed is not None
    type_name, _, bucket, _ = parsed
    data = json.loads(files[path])
    other = "0" if bucket != "0" else "1"
    data["shards"] = {other + s[1:]: v for s, v in data["shards"].items()}
    with pytest.raises(InvalidInput, match="another bucket"):
        tree.Bucket.from_dict(data, type_name, bucket)


@given(st.text(max_size=120))
def test_content_paths_parse_only_from_their_one_spelling(text: str) -> None:
    parsed = tree.parse_content_path(text)
    if parsed is not None:
        type_name, kind, part, sha = parsed
        build = tree.shard_path if kind == "shard" else tree.bucket_path
        assert build(type_name, part, sha) == text
        assert ".." not in text and "//" not in text


@pytest.mark.parametrize(
    "path",
    [
        "artifacts/images/_shards/abc." + "0" * 64 + ".json",
        "artifacts/images/_buckets/a." + "f" * 64 + ".json",
    ],
)
def test_content_paths_round_trip(path: str) -> None:
    parsed = tree.parse_content_path(path)
    assert parsed is not None
    assert parsed[0] == "images"


@pytest.mark.parametrize(
    "path",
    [
        "artifacts/images/_shards/ab." + "0" * 64 + ".json",  # a bucket-sized shard name
        "artifacts/images/_buckets/ab." + "0" * 64 + ".json",
        "artifacts/images/_shards/abc." + "0" * 63 + ".json",
        "artifacts/Images/_shards/abc." + "0" * 64 + ".json",
        "artifacts/../_shards/abc." + "0" * 64 + ".json",
        "artifacts/images/_shards/ABC." + "0" * 64 + ".json",
        "artifacts/images/_other/abc." + "0" * 64 + ".json",
        "artifacts/images/_shards/abc." + "0" * 64 + ".json/x",
    ],
)
def test_malformed_content_paths_are_not_index_paths(path: str) -> None:
    assert tree.parse_content_path(path) is None


def test_hostile_counts_and_digests_are_refused() -> None:
    files = layout.render(_shows())
    root = json.loads(files[tree.ROOT_INDEX])
    entry = root["types"]["images"]
    for mutate in (
        lambda e: e.update(artifacts=-1),
        lambda e: e.update(artifacts=True),
        lambda e: e["sums"].update(sha256="../../etc/passwd"),
        lambda e: e["buckets"].update({"g": e["sums"]}),
        lambda e: e["buckets"].update({"..": e["sums"]}),
        lambda e: e.update(buckets=[]),
    ):
        bad = json.loads(json.dumps(root))
        mutate(bad["types"]["images"])
        with pytest.raises(InvalidInput):
            tree.Root.from_dict(bad)
    assert entry  # the untouched root still parses
    tree.Root.from_dict(root)
