"""open_mirror over hostile trees (issue 13, the reader's part): names from an index never
reach a path outside the tree, links are never followed, indexes are bounded in size and
time, servers cannot inflate, redirect away or cut a body into a non-glarelite error, and
a malformed tree raises InvalidInput naming the file. Local trees and trees served by the
origin fixture; the fuzz test at the end mutates a valid tree at random."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote

import pytest
import urllib3
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import glarelite
from glarelite import GlareliteError, tree
from tests import treekit
from tests.fixtures.origin import Origin, PatternBody
from tests.fixtures.pki import tls_origin
from tests.treekit import SECRET, Tree

FAST = glarelite.MirrorSettings(
    timeout=5.0,
    retry=glarelite.RetryPolicy(total=1, backoff_factor=0.0, jitter=0.0),
)
REPO = Path(glarelite.__file__).resolve().parents[1]


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture(params=[1, 2], ids=["fmt1", "fmt2"])
def seed(request: pytest.FixtureRequest) -> Tree:
    """The seed tree in both formats: format 1 (every index read at open) and format 2
    (shards read when a query needs them)."""
    return treekit.build(request.param)


@pytest.fixture
def seed1() -> Tree:
    """A format 1 seed, for the cases about format 1's type indexes."""
    return treekit.build(1)


def held_in(t: Tree, type_name: str) -> str:
    """The start of the path of the file that holds the type's show views."""
    if t.fmt == 1:
        return tree.type_index_path(type_name)
    return f"{tree.ARTIFACTS}/{type_name}/_shards/"


def load(location: Any, **kwargs: Any) -> None:
    """Open the tree and list everything: a format 2 tree reads its shards only then."""
    with glarelite.open_mirror(location, **kwargs) as m:
        list(m.iter_all())


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """tmp_path holds the tree at ./tree and, outside it, the secrets a hostile tree aims at."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return tmp_path


def hostile_blob(t: Tree, artifact_id: str, field_name: str, key: str) -> None:
    """The issue's case: the first image renamed to ``artifact_id`` with a blob dict entry
    ``field_name/key`` whose record states the secret's size and sha256."""
    show = t.shows("images")[0]
    show["id"] = artifact_id
    show["blobs"] = {
        field_name: {
            key: {
                "url": glarelite.internal_url("images", artifact_id, field_name, key),
                "status": "active",
                "size": len(SECRET),
                "sha256": treekit.sha(SECRET),
                "content_type": "text/plain",
                "external": False,
            }
        }
    }


@contextlib.contextmanager
def spy_opens() -> Iterator[list[str]]:
    """Every file path opened (os.open incl. dir_fd-relative, io.open, open), normalised."""
    seen: list[str] = []
    real_os_open, real_io_open = os.open, io.open

    def note(path: Any, dir_fd: int | None = None) -> None:
        if isinstance(path, int):
            return
        text = os.fsdecode(os.fspath(path))
        if dir_fd is not None and not os.path.isabs(text):
            text = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        seen.append(os.path.normpath(os.path.abspath(text)))

    def os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        note(path, dir_fd)
        return real_os_open(path, flags, mode, dir_fd=dir_fd)

    def io_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        note(file)
        return real_io_open(file, *args, **kwargs)

    with (
        mock.patch("os.open", os_open),
        mock.patch("io.open", io_open),
        mock.patch("builtins.open", io_open),
    ):
        yield seen


def outside(seen: list[str], *allowed: Path) -> list[str]:
    """Opened paths that are neither in ``allowed`` nor the interpreter's own files."""
    roots = [str(p.resolve()) for p in allowed]
    roots += [str(REPO), sys.prefix, sys.base_prefix, "/proc", "/dev"]
    return [p for p in seen if not any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)]


def exercise(m: glarelite.MirrorCatalog, downloads: Path) -> list[bytes]:
    """list + get + every blob read whole, ranged and downloaded; the bytes served."""
    served: list[bytes] = []
    for artifact in m.iter_all():
        assert m.get(artifact.id) == artifact
        for blob in artifact.iter_blobs():
            for offset, length in ((None, None), (0, 16), (3, None)):
                with (
                    contextlib.suppress(GlareliteError),
                    m.open_blob(artifact.id, blob.slot, offset=offset, length=length) as f,
                ):
                    while chunk := f.read(4096):
                        served.append(chunk)
            target = downloads / "d.bin"
            with contextlib.suppress(GlareliteError):
                m.download(artifact.id, blob.slot, target)
                served.append(target.read_bytes())
    return served


def leaked(served: list[bytes]) -> bool:
    """Any of the secret's bytes served (a piece of it, or it inside a larger read)."""
    return any(SECRET[:24] in chunk or (len(chunk) >= 8 and chunk in SECRET) for chunk in served)


# -- 1. names from an index never make a path ------------------------------------------------
@pytest.mark.parametrize(
    ("artifact_id", "field_name", "key"),
    [("../..", "..", "secret.txt"), ("..", "..", "secret.txt"), ("x/../../..", "regions", "a")],
)
def test_a_hostile_id_field_or_key_never_reads_outside_a_local_tree(
    seed: Tree, scratch: Path, artifact_id: str, field_name: str, key: str
) -> None:
    hostile_blob(seed, artifact_id, field_name, key)
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    with spy_opens() as seen, pytest.raises(glarelite.InvalidInput) as caught:
        m = glarelite.open_mirror(scratch / "tree")
        exercise(m, scratch)  # only reached on a reader that trusted the index
    assert held_in(seed, "images") in str(caught.value)
    assert outside(seen, scratch / "tree") == []


def test_a_hostile_type_name_never_reads_a_type_index_outside_the_tree(
    seed1: Tree, scratch: Path
) -> None:
    seed = seed1
    entry = seed.root["types"].pop("charts")
    seed.root["types"]["../../x"] = entry
    index = seed.indexes.pop("charts")
    files = treekit.render(seed)
    data = treekit.dump({**index, "type": "../../x"})
    entry["index"].update(size=len(data), sha256=treekit.sha(data))
    files[tree.ROOT_INDEX] = treekit.dump(seed.root)
    treekit.write_tree(scratch / "tree", files)
    (scratch / "x").mkdir()
    (scratch / "x" / "index.json").write_bytes(data)  # <tree>/artifacts/../../x/index.json
    with spy_opens() as seen, pytest.raises(glarelite.InvalidInput, match=r"index\.json"):
        glarelite.open_mirror(scratch / "tree")
    assert outside(seen, scratch / "tree") == []


def test_a_hostile_id_field_or_key_never_requests_outside_the_base_url(
    seed: Tree, origin: Origin
) -> None:
    hostile_blob(seed, "../..", "..", "secret.txt")
    base = treekit.serve_tree(origin, "/site/tree", treekit.render(seed))
    secret = origin.add("/site/secret.txt", data=SECRET)
    with pytest.raises(glarelite.InvalidInput, match=held_in(seed, "images")):
        m = glarelite.open_mirror(base, settings=FAST)
        list(m.iter_all())
        with m.open_blob("../..", "../secret.txt") as f:
            f.read()
    assert secret.hits == 0
    assert all(unquote(r.path).startswith("/site/tree/") for r in origin.requests)


def test_a_blob_url_in_the_index_is_never_the_path_read(seed: Tree, scratch: Path) -> None:
    """The bytes' path comes from the validated names; a different url is refused."""
    record = treekit.blob_record(seed, "images", 1, "file")
    record["url"] = "/../secret.txt"
    record.update(size=len(SECRET), sha256=treekit.sha(SECRET))
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    with pytest.raises(glarelite.InvalidInput, match="is not its internal URL"):
        load(scratch / "tree")


# -- 2. links in a local tree are never followed ----------------------------------------------
def test_a_blob_that_is_a_symlink_is_refused_whole_ranged_and_downloaded(
    seed: Tree, scratch: Path
) -> None:
    record = treekit.blob_record(seed, "images", 1, "file")
    record.update(size=len(SECRET), sha256=treekit.sha(SECRET))  # the index vouches for it
    files = treekit.render(seed)
    treekit.write_tree(scratch / "tree", files)
    artifact_id = seed.shows("images")[1]["id"]
    link = scratch / "tree" / tree.blob_path("images", artifact_id, "file")
    link.unlink()
    link.symlink_to(scratch / "secret.txt")
    with glarelite.open_mirror(scratch / "tree") as m:
        for offset, length in ((None, None), (0, 40), (10, None)):
            with (
                pytest.raises(glarelite.VerificationError, match="symbolic link"),
                m.open_blob(artifact_id, "file", offset=offset, length=length) as f,
            ):
                f.read()
        with pytest.raises(glarelite.VerificationError, match="symbolic link"):
            m.download(artifact_id, "file", scratch / "out.bin")
        assert not (scratch / "out.bin").exists()
        other = seed.shows("images")[0]["id"]
        with m.open_blob(other, "regions/eu") as f:  # the rest of the tree still reads
            assert f.read() == seed.blobs[tree.blob_path("images", other, "regions", "eu")]


@pytest.mark.parametrize(
    "what", ["folder", "root index", "type index", "tree folder", "shard", "bucket", "shards"]
)
def test_a_symlinked_folder_or_index_is_refused(seed: Tree, scratch: Path, what: str) -> None:
    """A link anywhere under the tree: a copy of the real thing sits at the link's target,
    so only refusing the link itself passes."""
    only = {"type index": 1, "shard": 2, "bucket": 2, "shards": 2}.get(what)
    if only is not None and only != seed.fmt:
        pytest.skip(f"format {seed.fmt} has no {what}")
    files = treekit.render(seed)
    treekit.write_tree(scratch / "tree", files)
    treekit.write_tree(scratch / "copy", files)
    t = scratch / "tree"
    name = {
        "folder": "artifacts/images",
        "root index": tree.ROOT_INDEX,
        "type index": tree.type_index_path("charts"),
        "tree folder": "artifacts",
        "shard": seed.fmt == 2 and treekit.shard_file(files, "charts", tree.shard_of("web")),
        "bucket": seed.fmt == 2 and treekit.bucket_file(files, "charts", tree.shard_of("web")[0]),
        "shards": "artifacts/charts/_shards",
    }[what]
    target = t / name
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(scratch / "copy" / name)
    with pytest.raises(glarelite.VerificationError, match="symbolic link"):
        load(t)


def test_a_fifo_or_folder_at_a_blob_path_is_refused_without_waiting(
    seed: Tree, scratch: Path
) -> None:
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    first, second = (s["id"] for s in seed.shows("images"))
    fifo = scratch / "tree" / tree.blob_path("images", first, "file")
    fifo.unlink()
    os.mkfifo(fifo)
    folder = scratch / "tree" / tree.blob_path("images", second, "file")
    folder.unlink()
    folder.mkdir()

    # A writer that would feed the old reader; released at the end whatever happens.
    def feed() -> None:
        with contextlib.suppress(OSError):  # released below: nobody reads, the pipe breaks
            fifo.write_bytes(SECRET)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with glarelite.open_mirror(scratch / "tree") as m:
            for artifact_id in (first, second):
                with (
                    pytest.raises(glarelite.VerificationError, match="not a regular file"),
                    m.open_blob(artifact_id, "file") as f,
                ):
                    f.read()
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(5)


# -- 5. no decompression ----------------------------------------------------------------------
def gzip_bomb(inflated_gib: int = 1) -> bytes:
    """~1 MiB of valid gzip that inflates to ``inflated_gib`` GiB of zeros, built without
    ever holding more than 1 MiB (full-flush blocks are independent, so they repeat)."""
    zeros = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024 * inflated_gib):
        crc = zlib.crc32(zeros, crc)
    size = (inflated_gib << 30) & 0xFFFFFFFF
    trailer = struct.pack("<II", crc, size)
    return gzip.compress(b"")[:10] + block * (1024 * inflated_gib) + c.flush() + trailer


@pytest.mark.parametrize("path", [tree.ROOT_INDEX, "type index", "blob"])
def test_a_gzip_body_is_refused_never_inflated(seed: Tree, origin: Origin, path: str) -> None:
    files = treekit.render(seed)
    base = treekit.serve_tree(origin, "/tree", files)
    chart = seed.shows("charts")[0]["id"]
    if path == "blob":
        path = tree.blob_path("charts", chart, "package")
    elif path == "type index":  # format 2: the chart's shard
        shard = tree.shard_of("web")
        path = (
            treekit.shard_file(files, "charts", shard) if seed.fmt == 2 else held_in(seed, "charts")
        )
    origin.add(f"/tree/{path}", data=gzip_bomb(), headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with (
            pytest.raises(glarelite.NetworkError, match="Content-Encoding 'gzip'"),
            glarelite.open_mirror(base, settings=FAST) as m,
            m.open_blob(chart, "package") as f,
        ):
            f.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"the reader allocated {peak} bytes: it inflated the body"


# -- 6. every index read is bounded -----------------------------------------------------------
def test_an_endless_chunked_index_is_cut_off_at_the_limit(seed: Tree, origin: Origin) -> None:
    base = treekit.serve_tree(origin, "/tree", treekit.render(seed))
    origin.add("/tree/index.json", data=PatternBody(64 << 30), chunked=True)
    limits = dataclasses.replace(FAST, max_root_index_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(glarelite.TooLarge, match=r"index\.json is larger than 1048576"):
            glarelite.open_mirror(base, settings=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_a_huge_local_root_index_is_refused_before_reading(seed: Tree, scratch: Path) -> None:
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    with open(scratch / "tree" / "index.json", "r+b") as f:
        f.truncate(500 << 20)  # sparse: 500 MB that cost nothing
    real_read = os.read
    read: list[int] = []

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        read.append(len(data))
        return data

    with (
        mock.patch("os.read", counting_read),
        pytest.raises(glarelite.TooLarge, match="larger than 16777216 bytes"),
    ):
        glarelite.open_mirror(scratch / "tree")
    assert sum(read) == 0


def test_a_type_index_is_read_no_further_than_the_root_records(
    seed1: Tree, origin: Origin, scratch: Path
) -> None:
    seed = seed1
    files = treekit.render(seed)
    files[tree.type_index_path("charts")] += b" " * (1 << 20)  # grew after the root was sealed
    base = treekit.serve_tree(origin, "/tree", files)
    with pytest.raises(glarelite.VerificationError, match=r"is not the one index\.json publishes"):
        glarelite.open_mirror(base, settings=FAST)
    # A root that records more than max_index_bytes is refused before the index is asked.
    root = json.loads(files[tree.ROOT_INDEX])
    root["types"]["charts"]["index"]["size"] = (64 << 20) + 1
    origin.add("/tree/index.json", data=treekit.dump(root))
    before = len(origin.requests_for("/tree/artifacts/charts/index.json"))
    with pytest.raises(glarelite.TooLarge, match="larger than 67108864"):
        glarelite.open_mirror(base, settings=FAST)
    assert len(origin.requests_for("/tree/artifacts/charts/index.json")) == before


# -- 7. Retry-After is capped -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "cap"), [(None, 30.0), (glarelite.RetryPolicy(total=2, max_retry_after=2.0), 2.0)]
)
def test_retry_after_is_honoured_only_up_to_the_cap(
    seed: Tree, origin: Origin, policy: glarelite.RetryPolicy | None, cap: float
) -> None:
    base = treekit.serve_tree(origin, "/tree", treekit.render(seed))
    origin.add(
        "/tree/index.json",
        data=treekit.render(seed)[tree.ROOT_INDEX],
        fail_first=[503, 429],
        retry_after="21600",
    )
    slept: list[float] = []
    settings_ = (
        glarelite.MirrorSettings() if policy is None else glarelite.MirrorSettings(retry=policy)
    )
    with (
        mock.patch.object(urllib3.util.retry.time, "sleep", slept.append),
        glarelite.open_mirror(base, settings=settings_) as m,
    ):
        assert len(list(m.iter_all())) == 3
    assert len(slept) == 2 and max(slept) <= cap


# -- 9. a total deadline on index reads ------------------------------------------------------
class Trickle:
    """A raw HTTP server that answers every request with a 200 whose body arrives one
    byte every ``interval`` seconds, until stopped."""

    def __init__(self, *, interval: float = 0.05, head: bool = False) -> None:
        self._head = head  # trickle the status line and headers instead of the body
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:  # stopped: the socket is closed
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 60000 + b"\r\n"
            if not self._head:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            for byte in head if self._head else b"{" + b" " * 99999:
                if self._stop.wait(self._interval):
                    return
                conn.sendall(bytes([byte]))

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


def test_an_index_trickled_byte_by_byte_is_cut_off_at_the_deadline() -> None:
    server = Trickle()
    try:
        limits = glarelite.MirrorSettings(timeout=2.0, read_deadline=1.0)
        with pytest.raises(glarelite.NetworkError, match="deadline"):
            glarelite.open_mirror(f"http://127.0.0.1:{server.port}/tree", settings=limits)
    finally:
        server.stop()


def test_headers_trickled_byte_by_byte_are_cut_off_at_the_deadline() -> None:
    """http.client reads a status line and headers with a per-read timeout only: 60 KB
    of one header at a byte per 50 ms would hold the reader for almost an hour."""
    server = Trickle(head=True)
    started = time.monotonic()
    try:
        limits = glarelite.MirrorSettings(timeout=2.0, read_deadline=1.0)
        with pytest.raises(glarelite.NetworkError):
            glarelite.open_mirror(f"http://127.0.0.1:{server.port}/tree", settings=limits)
        assert time.monotonic() - started < 30  # not a timed bound: hours without the fix
    finally:
        server.stop()


# -- 11. malformed trees: InvalidInput naming the file ---------------------------------------
def _mutations() -> list[tuple[str, Any]]:
    def root(fn: Any) -> Any:
        return ("root", fn)

    def images(fn: Any) -> Any:
        return ("images", fn)

    def show(fn: Any) -> Any:
        return ("images", lambda d: fn(d["artifacts"][0]))

    return [
        root(lambda d: d.clear() or d.update(format_version=1, types=[])),
        root(lambda d: d.update(generation="1")),
        root(lambda d: d["types"]["images"].update(definition=["images"])),
        root(lambda d: d["types"]["images"]["definition"].update(properties={"os": "string"})),
        root(lambda d: d["types"]["images"]["definition"].update(blobs="file")),
        root(lambda d: d["types"]["images"]["definition"].update(name="charts")),
        root(lambda d: d["types"]["images"].update(artifacts="3")),
        root(lambda d: d["sha256sums"].update(sha256="../SHA256SUMS")),
        images(lambda d: d.update(artifacts={"a": 1})),
        images(lambda d: d["artifacts"].append("not an artifact")),
        images(lambda d: d["artifacts"].append(dict(d["artifacts"][0]))),  # duplicate id
        show(lambda s: s.pop("id")),
        show(lambda s: s.update(id=7)),
        show(lambda s: s.update(name=None)),
        show(lambda s: s.update(name="\ud800")),
        show(lambda s: s.update(version="9" * 5000)),
        show(lambda s: s.update(version="1.0")),
        show(lambda s: s.update(tags="stable")),
        show(lambda s: s.update(tags=[["nested"]])),
        show(lambda s: s.update(properties=["os"])),
        show(lambda s: s["properties"].update(min_ram="512")),
        show(lambda s: s["properties"].update(unknown=1)),
        show(lambda s: s.update(blobs=[])),
        show(lambda s: s["blobs"].update(file="x")),
        show(lambda s: s["blobs"]["file"].update(size="12")),
        show(lambda s: s["blobs"]["file"].update(sha256=12)),
        show(lambda s: s["blobs"].update(regions={"EU": s["blobs"]["regions"]["eu"]})),
        show(lambda s: s["blobs"].update(nope=None)),
        show(lambda s: s.update(type_name="charts")),
    ]


@pytest.mark.parametrize("case", range(len(_mutations())))
def test_a_malformed_index_raises_invalid_input_naming_the_file(
    seed1: Tree, scratch: Path, case: int
) -> None:
    seed = seed1
    where, mutate = _mutations()[case]
    doc = seed.root if where == "root" else seed.indexes[where]
    mutate(doc)
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    with pytest.raises(glarelite.InvalidInput) as caught:
        glarelite.open_mirror(scratch / "tree")
    named = tree.ROOT_INDEX if where == "root" else tree.type_index_path(where)
    assert f": {named}" in str(caught.value)


def test_an_id_in_two_type_indexes_is_invalid_input_not_a_conflict(
    seed: Tree, scratch: Path
) -> None:
    chart = json.dumps(seed.shows("charts")[0]).replace("000000000003", "000000000001")
    seed.shows("charts")[0] = json.loads(chart)  # the first image's id, urls and all
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    with pytest.raises(glarelite.InvalidInput, match="is listed twice"):
        load(scratch / "tree")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"a":' * 100_000,
        b"\xff\xfe{}",
        b"",
        b"1e999999",
        b"9" * 5000,
    ],
)
@pytest.mark.parametrize("path", [tree.ROOT_INDEX, "artifacts/images/index.json"])
def test_unparseable_indexes_raise_invalid_input(
    seed1: Tree, scratch: Path, raw: bytes, path: str
) -> None:
    seed = seed1
    files = treekit.render(seed)
    files[path] = raw
    if path != tree.ROOT_INDEX:  # sealed, so the reader gets as far as parsing it
        root = json.loads(files[tree.ROOT_INDEX])
        root["types"]["images"]["index"].update(size=len(raw), sha256=treekit.sha(raw))
        files[tree.ROOT_INDEX] = treekit.dump(root)
    treekit.write_tree(scratch / "tree", files)
    with pytest.raises(glarelite.InvalidInput, match=path.replace(".", r"\.")):
        glarelite.open_mirror(scratch / "tree")


# -- 13. a body cut short or reset ------------------------------------------------------------
@pytest.mark.parametrize("how", ["short_after", "reset_after"])
def test_a_blob_cut_short_or_reset_raises_a_glarelite_error(
    seed: Tree, origin: Origin, scratch: Path, how: str
) -> None:
    files = treekit.render(seed)
    base = treekit.serve_tree(origin, "/tree", files)
    artifact_id = seed.shows("images")[0]["id"]
    path = tree.blob_path("images", artifact_id, "file")
    origin.add(f"/tree/{path}", data=files[path], ranges=True, times=None, **{how: 1000})
    with glarelite.open_mirror(base, settings=FAST) as m:
        for offset, length in ((None, None), (10, 2000)):
            with (
                pytest.raises((glarelite.NetworkError, glarelite.ChecksumMismatch)),
                m.open_blob(artifact_id, "file", offset=offset, length=length) as f,
            ):
                while f.read(100):
                    pass
        with pytest.raises((glarelite.NetworkError, glarelite.ChecksumMismatch)):
            m.download(artifact_id, "file", scratch / "out.bin")
        assert not (scratch / "out.bin").exists()


def test_a_range_answered_from_elsewhere_is_refused(seed: Tree, origin: Origin) -> None:
    files = treekit.render(seed)
    base = treekit.serve_tree(origin, "/tree", files)
    artifact_id = seed.shows("images")[0]["id"]
    path = tree.blob_path("images", artifact_id, "file")
    origin.add(f"/tree/{path}", data=files[path], ranges=True, bad_ranges=True)
    with (
        glarelite.open_mirror(base, settings=FAST) as m,
        pytest.raises(glarelite.NetworkError, match="another range"),
    ):
        m.open_blob(artifact_id, "file", offset=100, length=10)


# -- 16. redirects stay under the base -------------------------------------------------------
def test_a_redirect_under_the_base_is_followed(seed: Tree, origin: Origin) -> None:
    files = treekit.render(seed)
    base = treekit.serve_tree(origin, "/tree", files)
    treekit.serve_tree(origin, "/tree/moved", {tree.ROOT_INDEX: files[tree.ROOT_INDEX]})
    origin.add("/tree/index.json", redirect="/tree/moved/index.json", redirect_status=301)
    with glarelite.open_mirror(base, settings=FAST) as m:
        assert m.generation == 1


@pytest.mark.parametrize(
    "where",
    ["other host", "other port", "outside the path", "dot segments", "https to http", "loop"],
)
def test_a_redirect_off_the_base_is_refused(
    seed: Tree, origin: Origin, pki: Path, where: str
) -> None:
    files = treekit.render(seed)
    with Origin() as elsewhere, tls_origin(pki, "localhost") as secure:
        for server in (origin, elsewhere, secure):
            treekit.serve_tree(server, "/tree", files)
            treekit.serve_tree(server, "/other", files)
        base = origin.url("/tree")
        target = {
            "other host": origin.url("/tree/index.json", host="localhost"),
            "other port": elsewhere.url("/tree/index.json"),
            "outside the path": "/other/index.json",
            "dot segments": "/tree/%2e%2e/other/index.json",
            "https to http": origin.url("/tree/index.json", host="localhost"),
            "loop": "/tree/index.json",
        }[where]
        settings_ = FAST
        if where == "https to http":
            base = secure.url("/tree", host="localhost")
            settings_ = glarelite.MirrorSettings(ca_certs=str(pki / "ca.pem"), retry=FAST.retry)
            secure.add("/tree/index.json", redirect=target)
        else:
            origin.add("/tree/index.json", redirect=target)
        error = glarelite.NetworkError if where == "loop" else glarelite.RefusedLocation
        with pytest.raises(error, match="redirect"):
            load(base, settings=settings_)
        assert not elsewhere.requests
        assert not origin.requests_for("/other/index.json")
        assert not origin.requests_for("/tree/%2e%2e/other/index.json")


# -- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"timeout": 0},
        {"read_deadline": -1},
        {"max_index_bytes": -1},
        {"max_redirects": True},
        {"retry": 3},
        {"user_agent": "x\r\ny: z"},
    ],
)
def test_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(glarelite.InvalidInput):
        glarelite.MirrorSettings(**bad)


def test_open_mirror_arguments_override_settings(seed: Tree, scratch: Path) -> None:
    treekit.write_tree(scratch / "tree", treekit.render(seed))
    with glarelite.open_mirror(scratch / "tree", timeout=3.0, retries=0) as m:
        assert len(list(m.iter_all())) == 3
    with pytest.raises(glarelite.InvalidInput):
        glarelite.open_mirror(scratch / "tree", settings="fast")  # type: ignore[arg-type]


# -- the fuzz: mutated valid trees, local and served ------------------------------------------
HOSTILE_TEXT = [
    "..", ".", "../..", "../../secret.txt", "/", "a/b", "/etc/passwd", "\x00", "x\x00y", "",
    "%2e%2e", "secret.txt", "\ud800", "A" * 300, "..\\..", "index.json", "images", "file",
    "00000000-0000-0000-0000-000000000001", "regions", "eu",
]  # fmt: skip
HOSTILE_VALUES = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from([None, 0, -1, 2**70, 1.5, True, [], {}, [[[]]], {"a": {}}, float("nan")]),
    st.text(max_size=8),
    st.integers(),
)
RAW = [b"[" * 50_000, b"\xff", b"", b"null", b"9" * 5000, b'{"format_version": 1}']


def _positions(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _positions(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _positions(v, (*path, i))


@st.composite
def mutated_trees(draw: st.DrawFn, *, links: bool) -> tuple[Tree, list[str]]:
    t = treekit.build(draw(st.sampled_from([1, 2])))
    links_to_make: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        docs = {"root": t.root, **{f"type:{n}": d for n, d in t.indexes.items()}}
        name = draw(st.sampled_from(sorted(docs)))
        doc = docs[name]
        positions = list(_positions(doc))
        where = draw(st.sampled_from(positions))
        ops = ["value", "key", "delete", "dup", "raw", "link", "secret"]
        op = draw(st.sampled_from([*ops, "file", "place"] if t.fmt == 2 else ops))
        if op == "raw" and t.fmt == 2 and name != "root":  # a shard or bucket, pinned as is
            kind = draw(st.sampled_from(["shard", "bucket"]))
            shard = tree.shard_of(t.shows(name[5:])[0]["name"])
            t.sealed_raw[(kind, name[5:], shard if kind == "shard" else shard[0])] = draw(
                st.sampled_from(RAW)
            )
            continue
        if op == "file":  # a field of a shard or bucket file itself
            kind = draw(st.sampled_from(["shard", "bucket"]))
            key = draw(st.sampled_from(["format_version", "type", "shard", "bucket", "shards"]))
            value = draw(HOSTILE_VALUES)

            def edit(_t: str, _p: str, d: dict[str, Any], key: str = key, v: Any = value) -> None:
                if isinstance(d.get("shards"), dict) and key == "shards" and d["shards"]:
                    first = sorted(d["shards"])[0]
                    d["shards"][v if isinstance(v, str) else str(v)] = d["shards"].pop(first)
                else:
                    d[key] = v

            t.edits.append((kind, edit))
            continue
        if op == "place":  # an artifact in a shard its name does not hash to
            items = doc.get("artifacts") if name != "root" else None
            if isinstance(items, list) and items and isinstance(items[0], dict):
                ident = items[0].get("id")
                if isinstance(ident, str):
                    t.placed[ident] = draw(st.sampled_from(["000", "fff", "780", "4b5"]))
            continue
        if op == "raw":
            path = tree.ROOT_INDEX if name == "root" else tree.type_index_path(name[5:])
            t.raw[path] = draw(st.sampled_from(RAW))
            continue
        if op == "link" and links:
            links_to_make.append(
                draw(
                    st.sampled_from(
                        [*sorted(t.blobs), "artifacts/images", "artifacts/images/_shards"]
                    )
                )
            )
            continue
        if op == "dup" and name != "root":
            items = doc.get("artifacts")
            if isinstance(items, list) and items:
                items.append(json.loads(json.dumps(draw(st.sampled_from(items)))))
            continue
        if op == "secret":  # a blob record now vouches for the secret's bytes
            records = list(_walk_blobs(doc))
            if records:
                draw(st.sampled_from(records)).update(size=len(SECRET), sha256=treekit.sha(SECRET))
            continue
        if not where:
            continue
        parent: Any = doc
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        if op == "delete":
            del parent[last]
        elif op == "key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(HOSTILE_TEXT))] = parent.pop(last)
        else:
            parent[last] = draw(HOSTILE_VALUES)
    return t, links_to_make


def _walk_blobs(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict):
        if isinstance(doc.get("url"), str) and "sha256" in doc:
            yield doc
        for v in doc.values():
            yield from _walk_blobs(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _walk_blobs(v)


FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _dump_or_raw(t: Tree) -> dict[str, bytes] | None:
    try:
        return treekit.render(t)
    except (ValueError, TypeError, UnicodeEncodeError):  # not representable as JSON
        return None


@FUZZ
@given(case=mutated_trees(links=True))
def test_fuzz_local_trees_work_or_raise_glarelite_errors_and_stay_inside(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[Tree, list[str]]
) -> None:
    t, links = case
    files = _dump_or_raw(t)
    if files is None:
        return
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as d:
        base = Path(d)
        (base / "secret.txt").write_bytes(SECRET)
        treekit.write_tree(base / "copy", files)
        root = treekit.write_tree(base / "tree", files)
        for link in sorted(set(links), key=len, reverse=True):  # blobs before their folder
            target = root / link
            if target.is_dir():
                import shutil

                shutil.rmtree(target)
                target.symlink_to(base / "copy" / link)
            elif target.exists():
                target.unlink()
                target.symlink_to(base / "secret.txt")
        (base / "dl").mkdir()
        with spy_opens() as seen:
            try:
                with glarelite.open_mirror(root, settings=FAST) as m:
                    served = exercise(m, base / "dl")
                event("opened")
            except GlareliteError as exc:
                event(f"refused: {type(exc).__name__}")
                served = []
        assert outside(seen, root, base / "dl") == []
        assert not leaked(served)


@pytest.fixture(scope="module")
def fuzz_origin() -> Iterator[Origin]:
    with Origin() as server:
        yield server


@FUZZ
@given(case=mutated_trees(links=False))
def test_fuzz_served_trees_work_or_raise_glarelite_errors_and_stay_under_the_base(
    fuzz_origin: Origin, tmp_path_factory: pytest.TempPathFactory, case: tuple[Tree, list[str]]
) -> None:
    t, _ = case
    files = _dump_or_raw(t)
    if files is None:
        return
    fuzz_origin.reset()
    base = treekit.serve_tree(fuzz_origin, "/site/tree", files)
    secret = fuzz_origin.add("/site/secret.txt", data=SECRET)
    fuzz_origin.add("/secret.txt", data=SECRET)
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as d:
        try:
            with glarelite.open_mirror(base, settings=FAST) as m:
                served = exercise(m, Path(d))
            event("opened")
        except GlareliteError as exc:
            event(f"refused: {type(exc).__name__}")
            served = []
    assert secret.hits == 0
    for request in fuzz_origin.requests:
        plain = unquote(request.path)
        assert plain.startswith("/site/tree/") and "/../" not in plain and "/./" not in plain
    assert not leaked(served)
