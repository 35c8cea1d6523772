"""Signed trees (issue 20): Ed25519 keys, ``index.signed.json`` written by ``mirror.sync``
with ``sign_key``, and readers (``open_mirror``, ``check_tree``) that trust keys and refuse
an unsigned, wrongly signed, tampered or rolled-back tree — locally and over http."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import signing, tree
from tests import tree2kit
from tests.fixtures.origin import Origin
from tests.fixtures.static import start_http_server
from tests.test_mirror_support import QUICK, SELECTED, World, build_world, listing


# -- keys ---------------------------------------------------------------------------------
@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two key pairs: 'hub' (the one sites trust) and 'other'."""
    folder = tmp_path / "keys"
    folder.mkdir()
    out = {}
    for name in ("hub", "other"):
        signing.generate_key(folder / name)
        out[name] = folder / name
    return out


def pub(key: Path) -> Path:
    return Path(f"{key}.pub")


def test_generate_key_writes_a_private_file_0600_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "site.key"
    public = signing.generate_key(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub(key).read_text() == public.to_text() + "\n"
    assert len(public.key_id) == 16 and public.key_id == signing.load_public_key(pub(key)).key_id
    assert signing.load_signing_key(key).key_id == public.key_id
    before = key.read_bytes(), pub(key).read_bytes()
    with pytest.raises(glarelite.InvalidInput, match="never overwritten"):
        signing.generate_key(key)
    assert (key.read_bytes(), pub(key).read_bytes()) == before
    # a stray .pub alone also refuses, and writes no private key beside it
    (tmp_path / "lone.pub").write_text("x\n")
    with pytest.raises(glarelite.InvalidInput, match="never overwritten"):
        signing.generate_key(tmp_path / "lone")
    assert not (tmp_path / "lone").exists()


def test_public_keys_load_from_every_documented_form(keys: dict[str, Path]) -> None:
    from cryptography.hazmat.primitives import serialization

    signer = signing.load_signing_key(keys["hub"])
    want = signer.public_key
    text = pub(keys["hub"]).read_text()
    pem = keys["hub"].parent / "hub.pem"
    pem.write_bytes(
        serialization.load_pem_private_key(keys["hub"].read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for form in (pub(keys["hub"]), str(pub(keys["hub"])), text, text.strip(), pem, want.raw, want):
        assert signing.load_public_key(form) == want, form
    for bad in ("not base64!", base64.b64encode(b"short").decode(), keys["hub"], 42, "a\x00b"):
        with pytest.raises(glarelite.InvalidInput):
            signing.load_public_key(bad)
    # a private key file is not a trusted key, and a public one cannot sign
    with pytest.raises(glarelite.InvalidInput):
        signing.load_signing_key(pub(keys["hub"]))


def test_sign_and_verify_round_trip_is_deterministic(keys: dict[str, Path]) -> None:
    hub = signing.load_signing_key(keys["hub"])
    root = b'{"generation": 3}\n'
    signed = signing.sign_root(root, [hub])
    assert signed == signing.sign_root(root, [hub])  # a no-op rerun rewrites nothing
    assert signing.verify_root(signed, [hub.public_key]) == root
    other = signing.load_signing_key(keys["other"]).public_key
    with pytest.raises(glarelite.SignatureError, match="no trusted key"):
        signing.verify_root(signed, [other])
    with pytest.raises(glarelite.InvalidInput):
        signing.verify_root(signed, [])
    # the root inside changed by one character: refused
    data = json.loads(signed)
    data["root"] = data["root"].replace("3", "4")
    with pytest.raises(glarelite.SignatureError, match="does not verify"):
        signing.verify_root(json.dumps(data).encode(), [hub.public_key])


def _signed(keys: dict[str, Path]) -> dict[str, Any]:
    hub = signing.load_signing_key(keys["hub"])
    return dict(json.loads(signing.sign_root(b'{"generation": 1}', [hub])))


def _hostile(keys: dict[str, Path], case: str) -> bytes:
    good = _signed(keys)
    sig = good["signatures"][0]
    if case == "huge":
        return b" " * (signing.MAX_SIGNED_SIZE + 1) + json.dumps(good).encode()
    if case == "not-json":
        return b"\xff{not json"
    if case == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    if case == "nan":
        return json.dumps(good).replace('"format"', '"x": NaN, "format"').encode()
    if case == "duplicate-json-key":
        text = json.dumps(good)
        return text.replace('"root":', '"root": "{}", "root":', 1).encode()
    if case == "not-an-object":
        return b"[]"
    if case == "wrong-format":
        good["format"] = "glarelite-signed-root/99"
    elif case == "root-not-text":
        good["root"] = {"generation": 1}
    elif case == "no-signatures":
        good["signatures"] = []
    elif case == "too-many-signatures":
        good["signatures"] = [dict(sig, key_id=f"k{n}") for n in range(signing.MAX_SIGNATURES + 1)]
    elif case == "signature-not-object":
        good["signatures"] = ["sig"]
    elif case == "signature-extra-field":
        good["signatures"] = [dict(sig, extra=1)]
    elif case == "signature-not-text":
        good["signatures"] = [dict(sig, sig=123)]
    elif case == "bad-base64":
        good["signatures"] = [dict(sig, sig="!!!not base64!!!")]
    elif case == "short-signature":
        good["signatures"] = [dict(sig, sig=base64.b64encode(b"x" * 10).decode())]
    elif case == "unknown-alg":
        good["signatures"] = [dict(sig, alg="rsa-md5")]
    elif case == "duplicate-key-id":
        good["signatures"] = [sig, dict(sig)]
    elif case == "surrogate-root":
        good["root"] = "\ud800"
    return json.dumps(good).encode()


HOSTILE = [
    "huge",
    "not-json",
    "deep",
    "nan",
    "duplicate-json-key",
    "not-an-object",
    "wrong-format",
    "root-not-text",
    "no-signatures",
    "too-many-signatures",
    "signature-not-object",
    "signature-extra-field",
    "signature-not-text",
    "bad-base64",
    "short-signature",
    "unknown-alg",
    "duplicate-key-id",
    "surrogate-root",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_signed_file_is_a_signature_error(keys: dict[str, Path], case: str) -> None:
    trusted = [signing.load_public_key(pub(keys["hub"]))]
    with pytest.raises(glarelite.SignatureError):
        signing.verify_root(_hostile(keys, case), trusted)


def test_a_missing_cryptography_says_how_to_install(
    keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(sys.modules):
        if name == "cryptography" or name.startswith("cryptography."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    for call in (
        lambda: signing.generate_key(tmp_path / "new"),
        lambda: signing.load_signing_key(keys["hub"]),
        lambda: glarelite.open_mirror(tmp_path, trusted_keys=[pub(keys["hub"])]),
    ):
        with pytest.raises(glarelite.GlareliteError, match=r"pip install 'glarelite\[sign\]'"):
            call()


# -- a signed tree --------------------------------------------------------------------------
@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> World:
    w = build_world(tmp_path, origin)
    yield w
    w.catalog.close()


def sync(world: World, dest: Path | str, *sign: Path, **options: Any) -> mirror.SyncReport:
    report = mirror.sync(
        world.catalog, str(dest), sign_key=[str(k) for k in sign] or None, **QUICK, **options
    )
    assert report.exit_code == 0, report.to_dict()
    return report


def add_artifact(world: World, name: str) -> None:
    cat = world.catalog
    artifact = cat.create("images", name, version="1.0", properties={"os": "linux"})
    cat.upload(artifact.id, "file", name.encode() * 100)
    cat.activate(artifact.id)
    cat.publish(artifact.id)


def everything(reader: glarelite.MirrorCatalog) -> list[tuple[str, str, str]]:
    return listing(reader, None, [], None, False)


def test_signed_tree_round_trip_local(world: World, keys: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    signed = (dest / signing.SIGNED_INDEX).read_bytes()
    root = signing.verify_root(signed, [signing.load_public_key(pub(keys["hub"]))])
    assert root == (dest / tree.ROOT_INDEX).read_bytes()  # the exact bytes, for plain readers
    expected = listing(world.catalog, None, SELECTED, None, False)
    with glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])]) as m:
        assert everything(m) == expected
        assert m.generation == 1
        a1 = world.ids["a1"]
        with m.open_blob(a1, "file") as f:
            assert f.read() == world.catalog.open_blob(a1, "file").read()
    # a no-op rerun keeps the signed file byte for byte, and valid
    assert sync(world, dest, keys["hub"]).nothing_to_do
    assert (dest / signing.SIGNED_INDEX).read_bytes() == signed
    # a change: the new generation is signed
    add_artifact(world, "newer")
    sync(world, dest, keys["hub"])
    with glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])]) as m:
        assert m.generation == 2 and "newer" in {a.name for a in m.iter_all()}
    # no trusted keys: read as before (index.json), signed or not
    with glarelite.open_mirror(dest) as m:
        assert m.generation == 2


def test_signed_tree_round_trip_and_tampering_over_http(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    expected = listing(world.catalog, None, SELECTED, None, False)
    with start_http_server(dest) as server:
        with glarelite.open_mirror(server.url, trusted_keys=[pub(keys["hub"])]) as m:
            assert everything(m) == expected
            chart = world.ids["chart"]
            assert (
                m.open_blob(chart, "package").read()
                == world.catalog.open_blob(chart, "package").read()
            )
        with pytest.raises(glarelite.SignatureError, match="no trusted key"):
            glarelite.open_mirror(server.url, trusted_keys=[pub(keys["other"])])
        _flip_one_byte(_a_shard(dest, "images"))
        m = glarelite.open_mirror(server.url, trusted_keys=[pub(keys["hub"])])  # lazy
        with m, pytest.raises(glarelite.VerificationError, match=r"artifacts/images/_shards/"):
            m.list("images")


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b'"name":"') + len(b'"name":"')
    data[at] = ord("z") if data[at] != ord("z") else ord("y")
    path.write_bytes(bytes(data))


def _a_shard(dest: Path, type_name: str) -> Path:
    return sorted((dest / tree.ARTIFACTS / type_name / "_shards").iterdir())[0]


def test_one_changed_shard_byte_is_refused_even_with_a_matching_index_json(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    """An attacker who edits a shard and re-pins it all the way up (its bucket, the root)
    fools a reader without keys; a reader that trusts the hub's key takes the root from
    the signed file, whose bucket pin no longer matches."""
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    path = _a_shard(dest, "images")
    parsed = tree.parse_content_path(path.relative_to(dest).as_posix())
    assert parsed is not None
    # the owner, not the name: a name decides the shard, which the reader checks anyway
    data = path.read_bytes()
    owner = json.loads(data)["artifacts"][0]["owner"].encode()
    path.write_bytes(data.replace(b'"owner":"' + owner + b'"', b'"owner":"eve"'))
    tree2kit.repin(dest, "images", parsed[2], data=path.read_bytes())
    with glarelite.open_mirror(dest) as m:  # fooled: this is what signing is for
        assert m.generation == 1
        assert "eve" in {a.owner for a in m.iter_all("images")}
    m = glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])])
    with (
        m,
        pytest.raises(glarelite.VerificationError, match=r"artifacts/images/_(buckets|shards)/"),
    ):
        m.list("images")
    report = mirror.check_tree(str(dest), trusted_keys=[pub(keys["hub"])])
    assert {(f["path"], f["kind"]) for f in report.faults} >= {(tree.ROOT_INDEX, "signature")}


def test_a_root_signed_by_another_key_is_refused(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    sync(world, dest, keys["other"])
    with pytest.raises(glarelite.SignatureError, match="signed by no trusted key") as exc:
        glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])])
    assert signing.load_public_key(pub(keys["other"])).key_id in str(exc.value)
    # the other key's signature claiming the hub's key id does not verify
    hub_id = signing.load_public_key(pub(keys["hub"])).key_id
    data = json.loads((dest / signing.SIGNED_INDEX).read_bytes())
    data["signatures"][0]["key_id"] = hub_id
    (dest / signing.SIGNED_INDEX).write_text(json.dumps(data))
    with pytest.raises(glarelite.SignatureError, match="does not verify"):
        glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])])


def test_an_unsigned_tree_is_refused_when_keys_are_trusted(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    sync(world, dest)
    with pytest.raises(glarelite.SignatureError, match="not signed"):
        glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])])
    with glarelite.open_mirror(dest) as m:  # no trusted keys: works as before
        assert m.generation == 1
    report = mirror.check_tree(str(dest), trusted_keys=[pub(keys["hub"])])
    assert [(f["path"], f["kind"]) for f in report.faults] == [(signing.SIGNED_INDEX, "signature")]
    assert report.exit_code == mirror.EXIT_VERIFICATION
    assert mirror.check_tree(str(dest)).ok


def test_an_older_signed_generation_is_refused_as_a_rollback(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest, old = tmp_path / "tree", tmp_path / "old"
    seen = tmp_path / "state" / "seen.json"
    seen.parent.mkdir()
    trusted = [pub(keys["hub"])]
    sync(world, dest, keys["hub"])
    shutil.copytree(dest, old)  # generation 1, validly signed
    add_artifact(world, "newer")
    sync(world, dest, keys["hub"])
    # another process at the site reads generation 2 and records it
    code = (
        "import glarelite, sys; "
        "m = glarelite.open_mirror(sys.argv[1], trusted_keys=[sys.argv[2]], seen_file=sys.argv[3]);"
        " print(m.generation)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(dest), str(trusted[0]), str(seen)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert out.stdout.strip() == "2"
    with glarelite.open_mirror(dest, trusted_keys=trusted) as live:
        # the hub's tree is replaced by the older signed generation
        shutil.rmtree(dest)
        shutil.copytree(old, dest)
        with pytest.raises(glarelite.SignatureError, match="rolled-back") as exc:
            glarelite.open_mirror(dest, trusted_keys=trusted, seen_file=seen)
        assert "generation 1" in str(exc.value) and "generation 2" in str(exc.value)
        # without a seen file, one reader still never goes back
        with pytest.raises(glarelite.SignatureError, match="rolled-back"):
            live.refresh()
        assert live.generation == 2
    # the same tree is fine for a site that never saw generation 2: the check is the seen state
    with glarelite.open_mirror(dest, trusted_keys=trusted, seen_file=tmp_path / "fresh") as m:
        assert m.generation == 1
    assert json.loads(seen.read_text()) == {"trees": {str(dest.resolve()): 2}}


def test_seen_file_is_explicit_and_a_damaged_one_is_not_forgotten(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    with pytest.raises(glarelite.InvalidInput, match="needs trusted_keys"):
        glarelite.open_mirror(dest, seen_file=tmp_path / "seen")
    with pytest.raises(glarelite.InvalidInput, match="empty"):
        glarelite.open_mirror(dest, trusted_keys=[])
    for damage in ("{not json", '{"trees": {"x": "2"}}', "[]"):
        (tmp_path / "seen").write_text(damage)
        with pytest.raises(glarelite.InvalidInput, match="damaged"):
            glarelite.open_mirror(
                dest, trusted_keys=[pub(keys["hub"])], seen_file=tmp_path / "seen"
            )


def test_key_rotation_signs_with_both_and_each_key_is_accepted(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    sync(world, dest, keys["hub"], keys["other"])  # the new key joins: re-signed, same root
    data = json.loads((dest / signing.SIGNED_INDEX).read_bytes())
    assert len(data["signatures"]) == 2
    hub, other = pub(keys["hub"]), pub(keys["other"])
    for trusted in ([hub], [other], [other, hub]):
        with glarelite.open_mirror(dest, trusted_keys=trusted) as m:
            assert m.generation == 1
        assert mirror.check_tree(str(dest), trusted_keys=trusted).ok
    sync(world, dest, keys["other"])  # the old key retired
    with pytest.raises(glarelite.SignatureError):
        glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])])
    with pytest.raises(glarelite.InvalidInput, match="twice"):
        mirror.sync(world.catalog, str(dest), sign_key=[keys["other"], keys["other"]])


def test_a_signed_tree_refuses_a_run_without_the_key(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    add_artifact(world, "newer")
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file() and "mirror" not in p.name}
    with pytest.raises(glarelite.InvalidInput, match="is signed"):
        mirror.sync(world.catalog, str(dest), **QUICK)
    assert mirror.sync(world.catalog, str(dest), dry_run=True, **QUICK).dry_run  # may look
    after = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file() and "mirror" not in p.name}
    assert after == before
    # a bad key file fails before anything is touched
    with pytest.raises(glarelite.InvalidInput):
        mirror.sync(world.catalog, str(dest), sign_key=pub(keys["hub"]), **QUICK)
    with pytest.raises(glarelite.InvalidInput):
        mirror.SyncOptions(sign_key=[1])  # type: ignore[list-item]
    assert mirror.SyncOptions(sign_key=keys["hub"]).sign_key == (str(keys["hub"]),)


def test_a_stale_signed_root_is_caught_up_by_the_next_run(
    world: World, keys: dict[str, Path], tmp_path: Path
) -> None:
    """A run killed between index.json and index.signed.json: the next run (even one with
    nothing to do) signs the root that is there."""
    dest = tmp_path / "tree"
    sync(world, dest, keys["hub"])
    (dest / signing.SIGNED_INDEX).unlink()
    assert sync(world, dest, keys["hub"]).nothing_to_do
    with glarelite.open_mirror(dest, trusted_keys=[pub(keys["hub"])]) as m:
        assert m.generation == 1


# -- the command line ----------------------------------------------------------------------
def test_cli_key_generate_mirror_sign_and_check(tmp_path: Path, world: World) -> None:
    from typer.testing import CliRunner

    from glarelite import cli

    runner = CliRunner()
    env = {"GLARELITE_CATALOG": str(world.catalog.path)}

    def run(*args: str) -> Any:
        return runner.invoke(cli.app, list(args), env=env)

    key = tmp_path / "hub.key"
    result = run("key", "generate", str(key))
    assert result.exit_code == 0, result.output
    public_text, key_id = result.stdout.split()
    assert pub(key).read_text().strip() == public_text
    assert signing.load_public_key(public_text).key_id == key_id
    again = run("key", "generate", str(key))
    assert again.exit_code == 2 and again.stderr.count("\n") == 1
    assert "never overwritten" in again.stderr and "Traceback" not in again.output

    dest = tmp_path / "tree"
    result = run("mirror", str(dest), "--sign-key", str(key))
    assert result.exit_code == 0, result.output
    assert (dest / signing.SIGNED_INDEX).exists()
    for trusted in (str(pub(key)), public_text):
        assert run("mirror", "--check", str(dest), "--trusted-key", trusted).exit_code == 0
    signing.generate_key(tmp_path / "other.key")
    result = run("mirror", "--check", str(dest), "--trusted-key", str(tmp_path / "other.key.pub"))
    assert result.exit_code == 5 and "signature" in result.stderr
    unsigned = run("mirror", str(dest))
    assert unsigned.exit_code == 2 and "is signed" in unsigned.stderr
    assert unsigned.stderr.count("\n") == 1
    wrong = run("mirror", str(dest), "--trusted-key", public_text)
    assert wrong.exit_code == 2 and "--check" in wrong.stderr
    bad = run("mirror", str(dest), "--sign-key", str(tmp_path / "missing.key"))
    assert bad.exit_code == 2 and bad.stderr.startswith("glarelite: error: ")


@pytest.mark.s3
def test_a_signed_tree_on_s3(
    world: World, keys: dict[str, Path], seaweedfs: Any, s3_store_url: str
) -> None:
    options = seaweedfs.storage_options
    sync(world, s3_store_url, keys["hub"], storage_options=options)
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]
    signed = fs.cat_file(f"{prefix}/{signing.SIGNED_INDEX}")
    trusted = [signing.load_public_key(pub(keys["hub"]))]
    assert signing.verify_root(signed, trusted) == fs.cat_file(f"{prefix}/{tree.ROOT_INDEX}")
    assert mirror.check_tree(s3_store_url, storage_options=options, trusted_keys=trusted).ok
    again = sync(world, s3_store_url, keys["hub"], storage_options=options)
    assert again.nothing_to_do
    assert fs.cat_file(f"{prefix}/{signing.SIGNED_INDEX}") == signed
    with pytest.raises(glarelite.InvalidInput, match="is signed"):
        mirror.sync(world.catalog, s3_store_url, storage_options=options, **QUICK)
