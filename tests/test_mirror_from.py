"""Mirrors of mirrors (issue 20): ``mirror.sync_from`` / ``glarelite mirror DEST --from
TREE`` makes a tree identical to another tree, file for file (indexes verbatim, the hub's
signature carried through), incremental by generation, verified, refusing a rollback —
from a folder, over ``python -m http.server``, and along a hub → region → edge chain in
network namespaces where the edge can reach only the region."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import signing, tree
from tests import tree2kit
from tests.fixtures.origin import Origin
from tests.fixtures.static import StaticServer, start_http_server
from tests.test_mirror_support import QUICK, World, build_world, tree_files

ROOT = Path(__file__).resolve().parents[1]
ROOT_FILES = {tree.ROOT_INDEX, signing.SIGNED_INDEX}


def gets(server: StaticServer, since: int = 0) -> list[str]:
    """The paths the static server was asked for, from line ``since`` of its log."""
    lines = server.log.read_text(errors="replace").splitlines()[since:]
    return [m.group(1).lstrip("/") for line in lines if (m := re.search(r'"GET (\S+) HTTP', line))]


def log_lines(server: StaticServer) -> int:
    return len(server.log.read_text(errors="replace").splitlines())


def blob_paths(report: mirror.SyncReport) -> set[str]:
    return {c["path"] for c in report.copied if c["kind"] == "blob"}


def change_hub(w: World, hub: Path, *, sign_key: Path | None = None) -> tuple[str, str]:
    """A new artifact (one new internal blob) and a deactivated one (a2); the hub tree
    re-synced. Returns (new blob path, withdrawn artifact id)."""
    cat = w.catalog
    new = cat.create("images", "n", version="1.0", properties={"os": "linux"})
    cat.upload(new.id, "file", os.urandom(7000))
    cat.activate(new.id)
    cat.publish(new.id)
    cat.deactivate(w.ids["a2"])
    extra: dict[str, Any] = {"sign_key": str(sign_key)} if sign_key else {}
    assert mirror.sync(cat, str(hub), **QUICK, **extra).exit_code == 0
    return tree.blob_path("images", new.id, "file"), w.ids["a2"]


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path / "catalog", origin)
    yield w
    w.catalog.close()


# -- a folder and http.server ----------------------------------------------------------------
def test_hub_region_edge_identical_and_each_change_moves_only_the_change(
    world: World, tmp_path: Path
) -> None:
    hub, region, edge = tmp_path / "hub", tmp_path / "region", tmp_path / "edge"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    first = mirror.sync_from(str(hub), str(region))
    assert first.exit_code == 0 and first.published, first.to_dict()
    assert tree_files(region) == tree_files(hub)
    with start_http_server(region) as server:
        edge_first = mirror.sync_from(server.url, str(edge))
        assert edge_first.exit_code == 0 and edge_first.published
        assert tree_files(edge) == tree_files(hub)
        with glarelite.open_mirror(edge) as a, glarelite.open_mirror(hub) as b:
            assert a.generation == b.generation
            assert [x.id for x in a.iter_all()] == [x.id for x in b.iter_all()]

        # the same generation: a no-op that reads the root only
        mark = log_lines(server)
        again = mirror.sync_from(server.url, str(edge))
        assert again.nothing_to_do and again.exit_code == 0 and not again.copied
        assert set(gets(server, mark)) <= ROOT_FILES

        # a change at the hub reaches the edge with two syncs that each move only it
        new_blob, gone = change_hub(world, hub)
        hop1 = mirror.sync_from(str(hub), str(region))
        assert hop1.exit_code == 0 and hop1.published
        assert blob_paths(hop1) == {new_blob}
        assert [w["id"] for w in hop1.withdrawn] == [gone]
        assert tree_files(region) == tree_files(hub)

        mark = log_lines(server)
        hop2 = mirror.sync_from(server.url, str(edge))
        assert hop2.exit_code == 0 and hop2.published
        assert blob_paths(hop2) == {new_blob}
        assert [w["id"] for w in hop2.withdrawn] == [gone]
        assert any(p.startswith(f"artifacts/images/{gone}/") for p in hop2.deleted)
        assert not (edge / "artifacts" / "images" / gone).exists()  # its folder too
        assert tree_files(edge) == tree_files(hub)
        assert mirror.check_tree(str(edge)).ok
        requested = gets(server, mark)
        new_id = new_blob.split("/")[2]
        # blobs and artifact indexes: the new artifact's only; indexes: root, type
        # indexes (open_mirror reads each once to validate it), SHA256SUMS
        fetched_blobs = {p for p in requested if not tree2kit.is_index_file(p)}
        assert fetched_blobs == {new_blob}
        artifact_indexes = {p for p in requested if p.count("/") == 3 and p.endswith("/index.json")}
        assert artifact_indexes == {tree.artifact_index_path("images", new_id)}
        assert hop2.bytes_fetched < 7000 + sum(
            len(b) for p, b in tree_files(edge).items() if tree2kit.is_index_file(p)
        )
        # the edge's tree passes sha256sum -c as the hub's does
        done = tree2kit.site_check(edge)
        assert done.returncode == 0, done.stderr
        with glarelite.open_mirror(edge) as site:
            assert gone not in {a.id for a in site.iter_all()}
            assert site.open_blob(new_id, "file").read() == (hub / new_blob).read_bytes()


def test_cli_mirror_from(world: World, tmp_path: Path) -> None:
    hub, edge = tmp_path / "hub", tmp_path / "edge"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    with start_http_server(hub) as server:
        done = cli("mirror", str(edge), "--from", server.url, "--json")
        assert done.returncode == 0, done.stderr
        # one summary line, no traceback (not even a helper thread's)
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
        data = json.loads(done.stdout)
        assert data["status"] == "ok" and data["published"] and data["failed"] == []
        assert tree_files(edge) == tree_files(hub)
        again = cli("mirror", str(edge), "--from", server.url, "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["nothing_to_do"]
    refused = cli("mirror", str(edge), "--from", str(hub), "--type", "images")
    assert refused.returncode == 2 and "--type cannot go with --from" in refused.stderr
    assert "Traceback" not in refused.stderr


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "glarelite.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_rollback_is_refused_unless_forced(world: World, tmp_path: Path) -> None:
    hub, older, edge = tmp_path / "hub", tmp_path / "older", tmp_path / "edge"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    shutil.copytree(hub, older)
    change_hub(world, hub)
    assert mirror.sync_from(str(hub), str(edge)).published
    before = tree_files(edge)
    back = mirror.sync_from(str(older), str(edge))
    assert back.exit_code == mirror.EXIT_PRUNE_REFUSED and "rollback" in back.refused
    assert tree_files(edge) == before
    # (grace 0: the newer generation's superseded buckets and shards go at once)
    forced = mirror.sync_from(str(older), str(edge), force=True, grace=0)
    assert forced.exit_code == 0 and forced.published
    assert tree_files(edge) == tree_files(older)


def test_a_catalog_mirror_is_not_overwritten_by_from(world: World, tmp_path: Path) -> None:
    hub, other = tmp_path / "hub", tmp_path / "other"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    assert mirror.sync(world.catalog, str(other), **QUICK).exit_code == 0
    change_hub(world, hub)
    before = tree_files(other)
    out = mirror.sync_from(str(hub), str(other))
    assert out.refused and "mirror of a catalog" in out.refused and tree_files(other) == before
    forced = mirror.sync_from(str(hub), str(other), force=True)
    assert forced.exit_code == 0 and forced.published
    assert tree_files(other) == tree_files(hub)
    assert not (other / ".glarelite-mirror" / "state.json").exists()


# a writer killed mid-run leaves SQLite's sidecars beside its state: a new state.sqlite
# created later beside a stale -wal would replay the old catalog's pages into it
SIDECARS = ("state.sqlite-wal", "state.sqlite-shm", "state.sqlite-journal")


def _crashed_writer_state(dest: Path) -> Path:
    state_dir = dest / tree.STATE_DIR
    assert (state_dir / "state.sqlite").is_file()
    for name in SIDECARS:
        (state_dir / name).write_bytes(b"left by a killed writer")
    return state_dir


@pytest.mark.parametrize("source_format", [tree.FORMAT_V1, tree.FORMAT_VERSION])
def test_a_forced_hop_over_a_catalog_mirror_removes_all_of_its_state(
    world: World, tmp_path: Path, source_format: int
) -> None:
    hub, other = tmp_path / "hub", tmp_path / "other"
    if source_format == tree.FORMAT_V1:
        tree2kit.synth_tree_v1(hub, 5)
    else:
        assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
        change_hub(world, hub)
    assert mirror.sync(world.catalog, str(other), **QUICK).exit_code == 0
    state_dir = _crashed_writer_state(other)
    out = mirror.sync_from(str(hub), str(other))
    assert out.refused and "mirror of a catalog" in out.refused
    assert all((state_dir / name).exists() for name in SIDECARS)  # refused: nothing goes
    forced = mirror.sync_from(str(hub), str(other), force=True, grace=0)
    assert forced.exit_code == 0 and forced.published, forced.to_dict()
    assert tree2kit.root_of(other) == tree2kit.root_of(hub)
    left = sorted(p.name for p in state_dir.iterdir() if p.name.startswith(("state", "head")))
    assert left == []


def test_state_remove_removes_the_sqlite_sidecars_too(world: World, tmp_path: Path) -> None:
    from mirror import state
    from mirror.dest import open_dest

    dest = tmp_path / "dest"
    assert mirror.sync(world.catalog, str(dest), **QUICK).exit_code == 0
    state_dir = _crashed_writer_state(dest)
    (state_dir / "unrelated").write_bytes(b"not the state's")
    state.remove(open_dest(str(dest), None, create=False))
    names = {p.name for p in state_dir.iterdir()}
    assert "unrelated" in names
    assert not names & {"state.sqlite", "head.json", "state.json", *SIDECARS}, names


def test_a_damaged_blob_at_the_source_publishes_nothing(world: World, tmp_path: Path) -> None:
    hub, edge = tmp_path / "hub", tmp_path / "edge"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    assert mirror.sync_from(str(hub), str(edge)).published
    new_blob, _ = change_hub(world, hub)
    before = tree_files(edge)
    data = bytearray((hub / new_blob).read_bytes())
    data[100] ^= 1
    (hub / new_blob).unlink()  # the hub's blob may be a hard link to the catalog's store
    (hub / new_blob).write_bytes(bytes(data))
    out = mirror.sync_from(str(hub), str(edge))
    assert out.exit_code == mirror.EXIT_VERIFICATION and not out.published
    assert [f["path"] for f in out.failed] == [new_blob]
    assert tree_files(edge) == before  # the previous generation, whole, no partial file


# -- signed trees ---------------------------------------------------------------------------
@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    for name in ("hub", "other"):
        signing.generate_key(folder / name)
    return {n: folder / n for n in ("hub", "other")}


def test_the_hub_signature_is_carried_through_and_checked_at_the_edge(
    world: World, tmp_path: Path, keys: dict[str, Path]
) -> None:
    hub, region, edge = tmp_path / "hub", tmp_path / "region", tmp_path / "edge"
    trusted = [f"{keys['hub']}.pub"]
    assert mirror.sync(world.catalog, str(hub), **QUICK, sign_key=str(keys["hub"])).exit_code == 0
    assert mirror.sync_from(str(hub), str(region)).published  # a region without keys carries it
    with start_http_server(region) as server:
        out = mirror.sync_from(server.url, str(edge), trusted_keys=trusted)
        assert out.exit_code == 0 and out.published
        assert tree_files(edge) == tree_files(hub)
        assert (edge / signing.SIGNED_INDEX).read_bytes() == (
            hub / signing.SIGNED_INDEX
        ).read_bytes()
        glarelite.open_mirror(edge, trusted_keys=trusted).close()
        mark = log_lines(server)
        assert mirror.sync_from(server.url, str(edge), trusted_keys=trusted).nothing_to_do
        assert gets(server, mark) == [signing.SIGNED_INDEX]  # one root read

        # a change at the hub, signed, reaches the edge
        new_blob, _ = change_hub(world, hub, sign_key=keys["hub"])
        assert mirror.sync_from(str(hub), str(region)).published
        hop = mirror.sync_from(server.url, str(edge), trusted_keys=trusted)
        assert hop.published and blob_paths(hop) == {new_blob}
        assert tree_files(edge) == tree_files(hub)

        # an edge that trusts another key refuses it, and writes nothing
        fresh = tmp_path / "fresh"
        with pytest.raises(glarelite.SignatureError, match="no trusted key"):
            mirror.sync_from(server.url, str(fresh), trusted_keys=[f"{keys['other']}.pub"])
        assert not (fresh / tree.ROOT_INDEX).exists()

    # a region that alters one index (and re-seals its root to match) is refused
    if tree2kit.is_format2(region):  # a shard, pinned again up to the root
        ref = tree2kit.shard_ref(region, "images", "n")
        altered = (region / ref.path("images")).read_bytes().replace(b'"linux"', b'"LINUX"', 1)
        tree2kit.repin(region, "images", ref.shard, data=altered)
    else:
        images = region / tree.type_index_path("images")
        altered = images.read_bytes().replace(b'"linux"', b'"LINUX"', 1)
        images.write_bytes(altered)
        root = json.loads((region / tree.ROOT_INDEX).read_text())
        root["types"]["images"]["index"]["sha256"] = hashlib.sha256(altered).hexdigest()
        root["types"]["images"]["index"]["size"] = len(altered)
        (region / tree.ROOT_INDEX).write_text(json.dumps(root, indent=1, sort_keys=True) + "\n")
    with start_http_server(region) as server:
        fresh = tmp_path / "fresh2"
        with pytest.raises(glarelite.VerificationError):
            mirror.sync_from(server.url, str(fresh), trusted_keys=trusted)
        assert not (fresh / tree.ROOT_INDEX).exists()
        done = cli("mirror", str(fresh), "--from", server.url, "--trusted-key", trusted[0])
        assert done.returncode == 5, done.stderr
        assert not (fresh / tree.ROOT_INDEX).exists()

    # a region whose signed file is replaced by another key's signature is refused
    (region / signing.SIGNED_INDEX).write_bytes(
        signing.sign_root(
            (region / tree.ROOT_INDEX).read_bytes(), [signing.load_signing_key(keys["other"])]
        )
    )
    with pytest.raises(glarelite.SignatureError):
        mirror.sync_from(str(region), str(tmp_path / "fresh3"), trusted_keys=trusted)
    # the edge that already holds the hub's tree is left as it was
    assert tree_files(edge) == tree_files(hub)


# -- network namespaces --------------------------------------------------------------------
def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Chain:
    """Three network namespaces: hub <-> region <-> edge, two veth pairs on two private
    /30s of this test's own; the edge has no route but its link to the region."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{random.randrange(1000)}"
        self.ns = {n: f"glhop-{n[0]}{tag}" for n in ("hub", "region", "edge")}
        x, y = random.sample(range(64, 252, 4), 2)
        third = random.randrange(100, 200)
        self.hub_ip, self.region_up = f"10.231.{third}.{x + 1}", f"10.231.{third}.{x + 2}"
        self.region_down, self.edge_ip = f"10.231.{third}.{y + 1}", f"10.231.{third}.{y + 2}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.made: list[str] = []

    def up(self) -> None:
        for name in self.ns.values():
            _ip("netns", "add", name)
            self.made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        hub, region, edge = self.ns["hub"], self.ns["region"], self.ns["edge"]
        _ip("-n", hub, "link", "add", "hr0", "type", "veth", "peer", "name", "rh0", "netns", region)
        _ip(
            "-n", region, "link", "add", "re0", "type", "veth", "peer", "name", "er0", "netns", edge
        )
        for ns, dev, addr in (
            (hub, "hr0", self.hub_ip),
            (region, "rh0", self.region_up),
            (region, "re0", self.region_down),
            (edge, "er0", self.edge_ip),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")

    def run(self, where: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            ["ip", "netns", "exec", self.ns[where], *cmd],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    def serve(self, where: str, addr: str, folder: Path, log: Path) -> None:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    *("ip", "netns", "exec", self.ns[where], sys.executable, "-m", "http.server"),
                    *("--bind", addr, "8000", "--directory", str(folder)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        probe = f"import socket; socket.create_connection(({addr!r}, 8000), timeout=1).close()"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.run(where, sys.executable, "-c", probe, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"http.server in {where} did not start: {log.read_text()}")

    def down(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for name in self.made:  # deleting a namespace removes its veth ends
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def chain() -> Iterator[Chain]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    probe = f"glhop-probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns is unavailable here: {made.stderr.strip()[:200]}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    c = Chain()
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_chain_in_network_namespaces(world: World, tmp_path: Path, chain: Chain) -> None:
    hub, region, edge = tmp_path / "hub", tmp_path / "region", tmp_path / "edge"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    region.mkdir()
    chain.serve("hub", chain.hub_ip, hub, tmp_path / "hub.log")
    chain.serve("region", chain.region_down, region, tmp_path / "region.log")
    hub_url, region_url = f"http://{chain.hub_ip}:8000", f"http://{chain.region_down}:8000"

    def hop(where: str, dest: Path, url: str) -> dict[str, Any]:
        done = chain.run(
            where,
            sys.executable,
            "-m",
            "glarelite.cli",
            "mirror",
            str(dest),
            "--from",
            url,
            "--json",
        )
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    assert hop("region", region, hub_url)["published"]
    assert hop("edge", edge, region_url)["published"]
    assert tree_files(edge) == tree_files(hub)

    # the edge reaches the region, never the hub
    connect = "import socket,sys; socket.create_connection((sys.argv[1], 8000), timeout=3).close()"
    assert chain.run("edge", sys.executable, "-c", connect, chain.region_down).returncode == 0
    refused = chain.run("edge", sys.executable, "-c", connect, chain.hub_ip)
    assert refused.returncode != 0 and "Error" in refused.stderr

    new_blob, gone = change_hub(world, hub)
    for where, dest, url in (("region", region, hub_url), ("edge", edge, region_url)):
        data = hop(where, dest, url)
        assert data["published"]
        assert {c["path"] for c in data["copied"] if c["kind"] == "blob"} == {new_blob}
        assert [w["id"] for w in data["withdrawn"]] == [gone]
    assert tree_files(edge) == tree_files(hub)
    assert hop("edge", edge, region_url)["nothing_to_do"]


# -- an S3 destination ------------------------------------------------------------------------
@pytest.mark.s3
def test_sync_from_into_s3(world: World, tmp_path: Path, seaweedfs: Any, s3_store_url: str) -> None:
    hub = tmp_path / "hub"
    options = seaweedfs.storage_options
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]

    def objects() -> dict[str, bytes]:
        fs.invalidate_cache()
        found = {k[len(prefix) + 1 :]: fs.cat(k) for k in fs.find(prefix)}
        return {k: v for k, v in found.items() if not k.startswith(tree.STATE_DIR)}

    first = mirror.sync_from(str(hub), s3_store_url, storage_options=options)
    assert first.exit_code == 0 and first.published, first.to_dict()
    assert objects() == tree_files(hub)
    again = mirror.sync_from(str(hub), s3_store_url, storage_options=options)
    assert again.nothing_to_do and not again.copied

    new_blob, gone = change_hub(world, hub)
    hop = mirror.sync_from(str(hub), s3_store_url, storage_options=options)
    assert hop.exit_code == 0 and blob_paths(hop) == {new_blob}
    assert [w["id"] for w in hop.withdrawn] == [gone]
    assert objects() == tree_files(hub)
    assert mirror.check_tree(s3_store_url, storage_options=options).ok


# -- a hostile or inconsistent source ---------------------------------------------------------
def test_a_source_that_lies_changes_nothing(world: World, tmp_path: Path) -> None:
    hub, edge = tmp_path / "hub", tmp_path / "edge"
    assert mirror.sync(world.catalog, str(hub), **QUICK).exit_code == 0
    assert mirror.sync_from(str(hub), str(edge)).published
    new_blob, _ = change_hub(world, hub)
    before = tree_files(edge)
    new_id = new_blob.split("/")[2]

    # an artifact index that is not its type index's show view
    index = hub / tree.artifact_index_path("images", new_id)
    good = index.read_bytes()
    index.write_bytes(good.replace(b'"name":"n"', b'"name":"x"', 1))
    with pytest.raises(glarelite.VerificationError, match="show view"):
        mirror.sync_from(str(hub), str(edge), attempts=2)
    assert tree_files(edge) == before
    index.write_bytes(good)

    # a blob replaced by a symbolic link to a file outside the tree
    secret = tmp_path / "secret.bin"
    secret.write_bytes((hub / new_blob).read_bytes())
    (hub / new_blob).unlink()
    (hub / new_blob).symlink_to(secret)
    out = mirror.sync_from(str(hub), str(edge))
    assert out.exit_code == mirror.EXIT_VERIFICATION and not out.published
    assert "symbolic link" in out.failed[0]["reason"]
    assert tree_files(edge) == before

    # a sums file that is not the one the root (format 2: its bucket) pins
    (hub / new_blob).unlink()
    (hub / new_blob).write_bytes(secret.read_bytes())
    sums = hub / tree.SUMS
    if tree2kit.is_format2(hub):
        sums = hub / tree.shard_sums_path("images", tree.shard_of("n"))
    sums.write_bytes(sums.read_bytes() + b"\n")
    with pytest.raises(glarelite.VerificationError, match="SHA256SUMS"):
        mirror.sync_from(str(hub), str(edge), attempts=1)
    assert tree_files(edge) == before


# -- format 2: O(change) by content addressing ------------------------------------------------
def test_v2_hop_is_verbatim_a_no_op_reads_the_root_and_one_change_moves_one_shard(
    tmp_path: Path,
) -> None:
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 60)
    with start_http_server(hub) as server:
        first = mirror.sync_from(server.url, str(region))
        assert first.exit_code == 0 and first.published, first.to_dict()
        assert tree_files(region) == tree_files(hub)
        assert mirror.check_tree(str(region)).ok
        assert tree2kit.sums_check(region).returncode == 0

        # the same root: a no-op with 2 reads (the signed root, absent, and the root)
        mark = log_lines(server)
        again = mirror.sync_from(server.url, str(region))
        assert again.nothing_to_do and not again.copied
        assert sorted(gets(server, mark)) == sorted([signing.SIGNED_INDEX, tree.ROOT_INDEX])

        # one artifact changed: its shard, bucket, sums file, artifact index and blob
        # (and the type's sums index, which pins the bucket), nothing else
        new_blob = tree2kit.change_one(hub, shows, 7, 2)
        ref = tree2kit.shard_ref(hub, "images", shows[7]["name"])
        root = tree.Root.from_dict(tree2kit.root_of(hub))
        mark = log_lines(server)
        hop = mirror.sync_from(server.url, str(region))
        assert hop.exit_code == 0 and hop.published
        assert sorted(gets(server, mark)) == sorted(
            [
                signing.SIGNED_INDEX,
                tree.ROOT_INDEX,
                root.types["images"].bucket_path(tree.bucket_of(ref.shard)),
                ref.path("images"),
                tree.shard_sums_path("images", ref.shard),
                tree.type_sums_path("images"),
                tree.artifact_index_path("images", shows[7]["id"]),
                new_blob,
            ]
        )
        assert blob_paths(hop) == {new_blob}
        # the hub kept its superseded bucket and shard; so does the region (grace)
        assert tree_files(region) == tree_files(hub)
        check = mirror.check_tree(str(region))
        assert check.ok and check.superseded == 2, check.faults
        assert tree2kit.sums_check(region).returncode == 0


def test_v2_hop_withdraws_and_removes_superseded_files_after_the_grace(tmp_path: Path) -> None:
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 30)
    assert mirror.sync_from(str(hub), str(region)).published
    first_root = tree.Root.from_dict(tree2kit.root_of(hub))
    gone = tree2kit.withdraw_one(hub, shows, 3, 2)
    hop = mirror.sync_from(str(hub), str(region))
    assert hop.published and [w["id"] for w in hop.withdrawn] == [gone]
    assert not (region / "artifacts" / "images" / gone).exists()
    superseded = [
        first_root.types["images"].bucket_path(b)
        for b, r in first_root.types["images"].buckets.items()
        if r != tree.Root.from_dict(tree2kit.root_of(hub)).types["images"].buckets.get(b)
    ]
    assert superseded and all((region / p).exists() for p in superseded)
    record = json.loads((region / ".glarelite-mirror" / "superseded.json").read_text())
    assert set(superseded) <= set(record["superseded"])
    # within the grace period they stay; after it (grace 0 here) the next run removes them
    assert mirror.sync_from(str(hub), str(region)).nothing_to_do
    assert all((region / p).exists() for p in superseded)
    tree2kit.change_one(hub, shows, 0, 3)
    out = mirror.sync_from(str(hub), str(region), grace=0)
    assert out.published and set(superseded) <= set(out.deleted)
    assert not any((region / p).exists() for p in superseded)
    check = mirror.check_tree(str(region))
    assert check.ok and check.superseded == 0, check.faults


def test_v2_a_hostile_hop_record_deletes_nothing_it_should_not(tmp_path: Path) -> None:
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 10)
    assert mirror.sync_from(str(hub), str(region)).published
    pinned = [p for p in tree_files(region) if "/_shards/" in p or "/_buckets/" in p]
    record = {p: 0 for p in [*pinned, "index.json", "../outside", tree.type_sums_path("images")]}
    (region / ".glarelite-mirror" / "superseded.json").write_text(
        json.dumps({"superseded": record})
    )
    (tmp_path / "outside").write_text("x")
    tree2kit.change_one(hub, shows, 1, 2)
    assert mirror.sync_from(str(hub), str(region), grace=0).published
    assert mirror.check_tree(str(region)).ok and (tmp_path / "outside").exists()


def test_v2_a_source_that_lies_changes_nothing(tmp_path: Path) -> None:
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 10)
    assert mirror.sync_from(str(hub), str(region)).published
    before = tree_files(region)
    tree2kit.change_one(hub, shows, 2, 2)
    ref = tree2kit.shard_ref(hub, "images", shows[2]["name"])
    path = hub / ref.path("images")
    path.write_bytes(path.read_bytes().replace(b"generation 2", b"generation 9"))
    with pytest.raises(glarelite.VerificationError):
        mirror.sync_from(str(hub), str(region), attempts=1)
    assert tree_files(region) == before


def test_v2_the_signature_is_carried_and_checked(tmp_path: Path, keys: dict[str, Path]) -> None:
    hub, region = tmp_path / "hub", tmp_path / "region"
    trusted = [f"{keys['hub']}.pub"]
    shows = tree2kit.synth_tree(hub, 10)
    tree2kit.resign(hub, keys["hub"])
    out = mirror.sync_from(str(hub), str(region), trusted_keys=trusted)
    assert out.published and tree_files(region) == tree_files(hub)
    assert mirror.check_tree(str(region), trusted_keys=trusted).ok
    tree2kit.change_one(hub, shows, 4, 2)
    tree2kit.resign(hub, keys["hub"])
    assert mirror.sync_from(str(hub), str(region), trusted_keys=trusted).published
    assert mirror.check_tree(str(region), trusted_keys=trusted).ok
    # a root re-sealed by someone else is refused, nothing written
    before = tree_files(region)
    tree2kit.change_one(hub, shows, 5, 3)
    tree2kit.resign(hub, keys["other"])
    with pytest.raises(glarelite.SignatureError):
        mirror.sync_from(str(hub), str(region), trusted_keys=trusted)
    assert tree_files(region) == before


def test_v2_the_redirect_rules_are_carried_and_a_hostile_include_refused(tmp_path: Path) -> None:
    from mirror import redirects

    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 10)
    assert mirror.sync_from(str(hub), str(region)).published
    path = tree2kit.redirect_one(hub, shows, 3, 2)
    out = mirror.sync_from(str(hub), str(region))
    assert out.published and not (region / path).exists()
    assert (region / redirects.INCLUDE).read_bytes() == (hub / redirects.INCLUDE).read_bytes()
    assert mirror.check_tree(str(region)).ok
    assert tree_files(region) == tree_files(hub)
    # an include that would smuggle nginx configuration into the edge: refused, unwritten
    before = tree_files(region)
    tree2kit.change_one(hub, shows, 3, 3)  # its blob back in the tree: the rules change
    text = (hub / redirects.INCLUDE).read_text()
    (hub / redirects.INCLUDE).write_text(text.replace("}\n", "}\nserver { listen 81; }\n"))
    with pytest.raises(glarelite.VerificationError, match="redirect include"):
        mirror.sync_from(str(hub), str(region))
    assert tree_files(region) == before
    # the rules go when the source has none left
    (hub / redirects.INCLUDE).unlink()
    tree2kit.change_one(hub, shows, 3, 4)
    assert mirror.sync_from(str(hub), str(region)).published
    assert not (region / redirects.INCLUDE).exists() and mirror.check_tree(str(region)).ok


def test_a_format_1_source_is_copied_as_format_1_then_upgraded_with_the_hub(
    tmp_path: Path,
) -> None:
    """A region relays a hub not yet upgraded (its edges read format 1 too); when the hub
    upgrades, the next hop upgrades the region: format 2, no format 1 file left."""
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree_v1(hub, 20)
    first = mirror.sync_from(str(hub), str(region))
    assert first.published and tree_files(region) == tree_files(hub)
    assert tree2kit.root_of(region)["format_version"] == tree.FORMAT_V1
    assert mirror.check_tree(str(region)).ok
    tree2kit.upgrade(hub, {"images": shows}, 2)
    hop = mirror.sync_from(str(hub), str(region))
    assert hop.published and not hop.withdrawn, hop.to_dict()
    assert tree_files(region) == tree_files(hub)
    assert not (region / tree.SUMS).exists()
    assert not (region / tree.type_index_path("images")).exists()
    check = mirror.check_tree(str(region))
    assert check.ok and not check.warnings, check.faults
    assert tree2kit.sums_check(region).returncode == 0


def test_v2_hop_into_s3(tmp_path: Path, seaweedfs: Any, s3_store_url: str) -> None:
    hub = tmp_path / "hub"
    options = seaweedfs.storage_options
    shows = tree2kit.synth_tree(hub, 30)
    fs, prefix = seaweedfs.other_fs, s3_store_url[len("s3://") :]

    def objects() -> dict[str, bytes]:
        fs.invalidate_cache()
        found = {k[len(prefix) + 1 :]: fs.cat(k) for k in fs.find(prefix)}
        return {k: v for k, v in found.items() if not k.startswith(tree.STATE_DIR)}

    first = mirror.sync_from(str(hub), s3_store_url, storage_options=options)
    assert first.exit_code == 0 and first.published, first.to_dict()
    assert objects() == tree_files(hub)
    again = mirror.sync_from(str(hub), s3_store_url, storage_options=options)
    assert again.nothing_to_do and not again.copied
    new_blob = tree2kit.change_one(hub, shows, 9, 2)
    gone = tree2kit.withdraw_one(hub, shows, 0, 3)
    hop = mirror.sync_from(str(hub), s3_store_url, storage_options=options)
    assert hop.exit_code == 0 and blob_paths(hop) == {new_blob}
    assert [w["id"] for w in hop.withdrawn] == [gone]
    assert objects() == tree_files(hub)  # superseded buckets and shards kept on both sides
    check = mirror.check_tree(s3_store_url, storage_options=options)
    assert check.ok, check.faults


def test_v2_a_shard_dest_still_holds_is_not_fetched_again(tmp_path: Path) -> None:
    """A revert: the hub publishes again the shard and bucket of generation 1, which the
    region still holds (superseded, in their grace period): not fetched, pinned again."""
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 40)
    original = dict(shows[6])
    blob = (hub / tree.blob_path("images", original["id"], "file")).read_bytes()
    ref = tree2kit.shard_ref(hub, "images", original["name"])
    bucket = tree.Root.from_dict(tree2kit.root_of(hub)).types["images"].bucket_path(ref.shard[0])
    with start_http_server(hub) as server:
        assert mirror.sync_from(server.url, str(region)).published
        tree2kit.change_one(hub, shows, 6, 2)
        assert mirror.sync_from(server.url, str(region)).published
        shows[6] = original
        tree2kit.write_artifact(hub, original, blob, 1)
        tree2kit.render(hub, {"images": shows}, 3)
        assert tree2kit.shard_ref(hub, "images", original["name"]) == ref
        mark = log_lines(server)
        back = mirror.sync_from(server.url, str(region))
        assert back.published
        requested = gets(server, mark)
        assert ref.path("images") not in requested and bucket not in requested
        assert tree.artifact_index_path("images", original["id"]) in requested
    record = json.loads((region / ".glarelite-mirror" / "superseded.json").read_text())
    assert ref.path("images") not in record["superseded"] and bucket not in record["superseded"]
    assert tree_files(region) == tree_files(hub)
    assert mirror.check_tree(str(region)).ok


def test_v2_first_hop_goes_shard_by_shard_and_resumes_after_a_bad_blob(tmp_path: Path) -> None:
    """Into a new DEST the shards are copied in batches (more shards here than one batch
    holds); a blob that cannot be had publishes no root, and the next run resumes."""
    from mirror import _hop2

    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 300)
    shards = {tree.shard_of(s["name"]) for s in shows}
    assert len(shards) > _hop2._BATCH
    bad = hub / tree.blob_path("images", shows[-1]["id"], "file")
    good = bad.read_bytes()
    bad.write_bytes(b"X" + good[1:])
    out = mirror.sync_from(str(hub), str(region))
    assert out.exit_code == mirror.EXIT_VERIFICATION and not out.published
    assert [f["path"] for f in out.failed] == [bad.relative_to(hub).as_posix()]
    assert not (region / tree.ROOT_INDEX).exists()
    bad.write_bytes(good)
    again = mirror.sync_from(str(hub), str(region))
    assert again.published and again.exit_code == 0
    # what the first run copied is not copied again
    assert blob_paths(out) and not blob_paths(again) & blob_paths(out)
    assert bad.relative_to(hub).as_posix() in blob_paths(again)
    assert tree_files(region) == tree_files(hub)
    assert mirror.check_tree(str(region)).ok


def test_v2_cli_mirror_from_grace(tmp_path: Path) -> None:
    hub, region = tmp_path / "hub", tmp_path / "region"
    shows = tree2kit.synth_tree(hub, 20)
    assert cli("mirror", str(region), "--from", str(hub)).returncode == 0
    old = {p for p in tree_files(region) if "/_" in p}
    tree2kit.change_one(hub, shows, 2, 2)
    done = cli("mirror", str(region), "--from", str(hub), "--grace", "0", "--json")
    assert done.returncode == 0, done.stderr
    gone = old - {p for p in tree_files(region) if "/_" in p}
    assert len(gone) == 2 and gone <= set(json.loads(done.stdout)["deleted"])
    assert mirror.check_tree(str(region)).superseded == 0
