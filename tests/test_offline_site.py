"""A disconnected site, for real: two network namespaces joined by one veth pair and
nothing else. The "mirror" namespace serves a mirrored tree with ``python -m
http.server``; from the "edge" namespace, a client using the installed library (the
project's interpreter, run from a folder outside the repository) opens the mirror by
URL, lists every artifact and reads every blob through ``open_blob`` (size + sha256
verified), and the CLI runs there too. From the edge the origin of the external blobs
and any address beyond the veth are unreachable, and the private artifact is absent.

Needs Linux, root and ``ip`` (iproute2); skipped otherwise. The namespaces, the veth
pair and the server are removed at the end, even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import mirror
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, World, build_world, sha

IP = shutil.which("ip")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or IP is None,
    reason="creates network namespaces: needs Linux, root and ip(8)",
)

PORT = 8080
WAIT = 60.0  # bound for the server in the mirror namespace to start on a loaded machine

# Runs in the edge namespace. argv: base URL, expectations (JSON file), origin port.
EDGE = r"""
import hashlib, json, socket, sys, time
import glarelite

base, expected_file, origin_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
expected = json.load(open(expected_file))
out = {"glarelite": glarelite.__file__}

# The server may still be starting: wait for it (bounded), not a timed assertion.
deadline = time.monotonic() + 60
while True:
    try:
        socket.create_connection((expected["mirror_addr"], expected["port"]), 2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)

with glarelite.open_mirror(base) as reader:
    out["ids"] = sorted(a.id for a in reader.iter_all())
    out["blobs"] = {}
    for artifact in reader.iter_all():
        for blob in artifact.iter_blobs():
            _, _, _, artifact_id, *slot = blob.url.split("/")
            with reader.open_blob(artifact_id, "/".join(slot)) as f:
                data = f.read()
            out["blobs"][blob.url] = [len(data), hashlib.sha256(data).hexdigest(), blob.sha256]
            assert reader.blob_url(artifact_id, "/".join(slot)) == base.rstrip("/") + blob.url

unreachable = {}
for host, port in [("127.0.0.1", origin_port), *[(a, 80) for a in expected["outside"]]]:
    try:
        socket.create_connection((host, port), 2).close()
        unreachable[f"{host}:{port}"] = "CONNECTED"
    except OSError as exc:
        unreachable[f"{host}:{port}"] = type(exc).__name__ + ": " + str(exc)
out["unreachable"] = unreachable
print(json.dumps(out))
"""


def ip(*args: str, netns: str | None = None) -> None:
    assert IP is not None
    cmd = [IP, "netns", "exec", netns, IP, *args] if netns else [IP, *args]
    subprocess.run(cmd, check=True, capture_output=True)


def host_addresses() -> list[str]:
    """The host's global IPv4 addresses (outside the site), e.g. its real IP."""
    assert IP is not None
    out = subprocess.run(
        [IP, "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


class Site:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.mirror_ns, self.edge_ns = f"glm-{tag}", f"gle-{tag}"
        self.veth_m, self.veth_e = f"vm{tag}", f"ve{tag}"
        x, y = random.randrange(256), random.randrange(64) * 4
        self.net = f"10.199.{x}"
        self.mirror_addr, self.edge_addr = f"10.199.{x}.{y + 1}", f"10.199.{x}.{y + 2}"
        self.beyond = f"10.199.{x}.{(y + 5) % 256}"  # not on the /30: no route there

    def create(self) -> None:
        ip("netns", "add", self.mirror_ns)
        ip("netns", "add", self.edge_ns)
        ip("link", "add", self.veth_m, "type", "veth", "peer", "name", self.veth_e)
        ip("link", "set", self.veth_m, "netns", self.mirror_ns)
        ip("link", "set", self.veth_e, "netns", self.edge_ns)
        for ns, dev, addr in (
            (self.mirror_ns, self.veth_m, self.mirror_addr),
            (self.edge_ns, self.veth_e, self.edge_addr),
        ):
            ip("addr", "add", f"{addr}/30", "dev", dev, netns=ns)
            ip("link", "set", dev, "up", netns=ns)
            ip("link", "set", "lo", "up", netns=ns)

    def destroy(self) -> None:
        for ns in (self.mirror_ns, self.edge_ns):  # deleting a namespace drops its veth end
            subprocess.run([IP or "ip", "netns", "del", ns], capture_output=True)
        subprocess.run([IP or "ip", "link", "del", self.veth_m], capture_output=True)

    def exec(self, ns: str, *cmd: str) -> list[str]:
        return [IP or "ip", "netns", "exec", ns, *cmd]


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    try:
        s.create()
        yield s
    finally:
        s.destroy()
    netns = subprocess.run([IP or "ip", "netns", "list"], capture_output=True, text=True).stdout
    assert s.mirror_ns not in netns and s.edge_ns not in netns


@pytest.fixture
def world(tmp_path: Path, origin: Origin) -> Iterator[World]:
    w = build_world(tmp_path, origin)
    try:
        yield w
    finally:
        w.catalog.close()


def test_an_offline_site_reads_the_mirror_and_nothing_else(
    world: World, site: Site, origin: Origin, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    report = mirror.sync(world.catalog, str(tree), **QUICK)
    assert report.exit_code == 0, report.failed
    expected_blobs = world.published_urls()
    secret = world.ids["secret"]
    assert any(world.ids["a1"] in u and "/regions/" in u for u in expected_blobs)  # a dict
    outside = [site.beyond, *host_addresses()]
    expectations = tmp_path / "expected.json"
    expectations.write_text(
        json.dumps({"mirror_addr": site.mirror_addr, "port": PORT, "outside": outside})
    )
    base = f"http://{site.mirror_addr}:{PORT}/"
    origin_port = int(origin.url("/").split(":")[2].split("/")[0])

    server = subprocess.Popen(
        site.exec(
            site.mirror_ns,
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            site.mirror_addr,
            str(PORT),
            "--directory",
            str(tree),
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        edge = tmp_path / "edge"  # outside the repository: the installed library is used
        edge.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        run = subprocess.run(
            site.exec(
                site.edge_ns, sys.executable, "-c", EDGE, base, str(expectations), str(origin_port)
            ),
            cwd=edge,
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT + 60,
        )
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout)

        # Every published blob, verified by open_blob, with the catalog's bytes.
        assert seen["blobs"] == {
            url: [len(data), sha(data), sha(data)] for url, data in expected_blobs.items()
        }
        expected_ids = {world.ids[k] for k in ("a1", "a2", "b1", "chart")}
        assert set(seen["ids"]) == expected_ids and secret not in seen["ids"]
        # Nothing beyond the veth: the origin (the host's 127.0.0.1 is not the edge's) and
        # the host's own addresses fail at once or within the 2 s connect timeout.
        assert len(seen["unreachable"]) == 1 + len(outside)
        for where, outcome in seen["unreachable"].items():
            assert outcome != "CONNECTED", where
            assert outcome.split(":")[0] in (
                "ConnectionRefusedError",
                "OSError",
                "TimeoutError",
            ), (where, outcome)
        print(f"\noffline site: {len(seen['blobs'])} blobs verified; unreachable: ", end="")
        print(seen["unreachable"])

        # The CLI works at the site too (installed console script, no network needed).
        cli = shutil.which("glarelite", path=str(Path(sys.executable).parent))
        assert cli is not None
        cat_path = str(world.root / "catalog.db")
        a1 = world.ids["a1"]
        url = subprocess.run(
            site.exec(site.edge_ns, cli, "-c", cat_path, "url", a1, "file", "--mirror", base),
            cwd=edge,
            env=env,
            capture_output=True,
            text=True,
        )
        assert url.returncode == 0, url.stderr
        assert url.stdout.strip() == base.rstrip("/") + f"/artifacts/images/{a1}/file"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
