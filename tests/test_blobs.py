"""Internal blobs through the catalog, the same suite on a local folder, memory:// and a
real S3 server (SeaweedFS): streaming upload, content addressing, the saving state,
failure leaves the slot as it was, caps, corruption detection, delete and gc."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

import glarelite
from glarelite import _slots
from glarelite.errors import (
    ChecksumMismatch,
    Conflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
    TooLarge,
)


@pytest.fixture(params=["local", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(storage URL, storage options) for each kind of storage."""
    if request.param == "local":
        yield str(tmp_path / "blobs"), {}
    elif request.param == "memory":
        root = f"glarelite-blobs-{uuid.uuid4().hex}"
        yield f"memory://{root}", {}
        fs = fsspec.filesystem("memory")
        if fs.exists(root):
            fs.rm(root, recursive=True)
    else:
        server = request.getfixturevalue("seaweedfs")
        yield server.url(f"blobs-{uuid.uuid4().hex}"), server.storage_options


@pytest.fixture
def cat(tmp_path: Path, backend: tuple[str, dict[str, Any]]) -> Iterator[glarelite.Catalog]:
    url, options = backend
    with glarelite.open(tmp_path / "c.db", storage=url, storage_options=options) as c:
        c.define_type(
            "images", blobs=["file", "kernel"], blob_dicts=["regions"], max_blob_size=1 << 20
        )
        yield c


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(cat: glarelite.Catalog, aid: str, slot: str) -> bytes:
    with cat.open_blob(aid, slot) as f:
        return f.read()


def test_upload_from_path_file_and_iterator(cat: glarelite.Catalog, tmp_path: Path) -> None:
    a = cat.create("images", "u")
    p = tmp_path / "f.bin"
    p.write_bytes(b"path bytes")
    b1 = cat.upload(a.id, "file", p, content_type="application/x-raw", algorithms=["md5"])
    assert (b1.size, b1.sha256, b1.status) == (10, sha(b"path bytes"), "active")
    assert b1.checksums == {"md5": hashlib.md5(b"path bytes").hexdigest()}
    assert b1.url == f"/artifacts/images/{a.id}/file"
    cat.upload(a.id, "kernel", io.BytesIO(b"file object"))
    cat.upload(a.id, "regions/eu", iter([b"it", b"er", b""]))
    got = cat.get(a.id)
    assert got.blob("file").content_type == "application/x-raw"
    assert got.blob("regions/eu").sha256 == sha(b"iter")
    assert read_all(cat, a.id, "kernel") == b"file object"
    view = got.to_dict()
    assert view["blobs"]["regions"]["eu"]["url"] == f"/artifacts/images/{a.id}/regions/eu"
    text = repr(view)
    assert "blobs/sha256" not in text and "memory://" not in text and "s3://" not in text


def test_same_bytes_are_stored_once(cat: glarelite.Catalog) -> None:
    a, b = cat.create("images", "a"), cat.create("images", "b")
    cat.upload(a.id, "file", [b"same"])
    cat.upload(b.id, "regions/eu", [b"same"])
    store = _slots.store_of(cat)
    assert [d for d, _ in store.iter_objects()] == ["sha256:" + sha(b"same")]
    cat.delete(a.id)  # still referenced by b
    assert read_all(cat, b.id, "regions/eu") == b"same"
    cat.delete(b.id)
    assert list(store.iter_objects()) == []


def test_bad_slots_and_sources(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    # Keys such as "../x" and "UP" are valid since issue 17 (Glare's free-text keys, kept
    # inside their folder by encoding: tests/test_types_keys.py); these stay invalid.
    for slot in (
        "nope",
        "file/x",
        "regions",
        "regions/",
        "regions/a\x00b",
        "regions/a\nb",
        "regions/" + "k" * 256,
        "../file",
    ):
        with pytest.raises(InvalidInput):
            cat.upload(a.id, slot, [b"x"])
    with pytest.raises(InvalidInput):
        cat.upload(a.id, "file", io.StringIO("text"))
    with pytest.raises(InvalidInput):
        cat.upload(a.id, "file", [b"x"], sha256="xyz")
    assert cat.get(a.id).blobs == {"file": None, "kernel": None, "regions": {}}


def test_expected_checksum_and_size(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "file", [b"old"])
    with pytest.raises(ChecksumMismatch):
        cat.upload(a.id, "file", [b"new"], sha256=sha(b"other"))
    with pytest.raises(ChecksumMismatch):
        cat.upload(a.id, "file", [b"new"], size=4)
    assert read_all(cat, a.id, "file") == b"old"  # the slot is as it was
    cat.upload(a.id, "file", [b"new"], sha256="sha256:" + sha(b"new"), size=3)
    assert read_all(cat, a.id, "file") == b"new"
    store = _slots.store_of(cat)
    assert [d for d, _ in store.iter_objects()] == ["sha256:" + sha(b"new")]  # old released
    assert list(store.iter_temporaries()) == []


def test_caps_per_blob_and_per_dict(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    with pytest.raises(TooLarge):
        cat.upload(a.id, "file", [b"x"], size=(1 << 20) + 1)  # declared: nothing sent
    with pytest.raises(TooLarge):
        cat.upload(a.id, "file", iter([b"x" * (1 << 19)] * 3))  # cut while streaming
    cat.upload(a.id, "regions/eu", [b"x" * (600 << 10)])
    with pytest.raises(TooLarge):
        cat.upload(a.id, "regions/us", [b"y" * (600 << 10)])  # dict sum over the cap
    got = cat.get(a.id)
    assert got.blob("file") is None and set(got.blobs["regions"]) == {"eu"}
    assert list(_slots.store_of(cat).iter_temporaries()) == []


def test_failure_mid_stream_leaves_previous(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "file", [b"first"])

    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("source died")

    with pytest.raises(OSError, match="source died"):
        cat.upload(a.id, "file", broken())
    assert read_all(cat, a.id, "file") == b"first"
    assert cat.get(a.id).blob("file").status == "active"


def test_saving_slot_is_a_conflict(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a", properties={})
    seen: dict[str, Exception] = {}

    def chunks() -> Iterator[bytes]:
        yield b"x"
        for op, call in {
            "upload": lambda: cat.upload(a.id, "file", [b"y"]),
            "read": lambda: cat.open_blob(a.id, "file"),
            "activate": lambda: cat.activate(a.id),
            "delete": lambda: cat.delete(a.id),
        }.items():
            try:
                call()
            except Conflict as exc:
                seen[op] = exc
        yield b"z"

    cat.upload(a.id, "file", chunks())
    assert set(seen) == {"upload", "read", "activate", "delete"}
    assert read_all(cat, a.id, "file") == b"xz"
    assert cat.get(a.id).status == "drafted"


def test_blobs_of_active_artifacts_are_immutable(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "file", [b"x"])
    cat.activate(a.id)
    with pytest.raises(IllegalTransition):
        cat.upload(a.id, "file", [b"y"])
    with pytest.raises(IllegalTransition):
        cat.remove_blob(a.id, "file")
    with pytest.raises(NotFound):
        cat.open_blob(a.id, "kernel")


def test_remove_blob_from_drafted(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "regions/eu", [b"x"])
    cat.remove_blob(a.id, "regions/eu")
    assert cat.get(a.id).blobs["regions"] == {}
    with pytest.raises(NotFound):
        cat.remove_blob(a.id, "regions/eu")
    assert list(_slots.store_of(cat).iter_objects()) == []


def test_corruption_behind_the_catalogs_back_is_detected(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    data = os.urandom(300_000)
    cat.upload(a.id, "file", [data])
    store = _slots.store_of(cat)
    path = store.object_path("sha256:" + sha(data))
    for corrupt in (bytes([data[0] ^ 1]) + data[1:], data[:-10]):
        with store.fs.open(path, "wb") as f:
            f.write(corrupt)
        store.fs.invalidate_cache()
        with pytest.raises(ChecksumMismatch), cat.open_blob(a.id, "file") as f:
            while f.read(65536):
                pass
        with pytest.raises(ChecksumMismatch):
            cat.download(a.id, "file", Path(os.environ.get("TMPDIR", "/tmp")) / f"d-{uuid.uuid4()}")


def test_download_is_atomic_and_verified(cat: glarelite.Catalog, tmp_path: Path) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "file", [b"payload"])
    out = tmp_path / "out.bin"
    cat.download(a.id, "file", out)
    assert out.read_bytes() == b"payload"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_ranged_reads_say_they_are_unverified(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    data = bytes(range(256)) * 100
    cat.upload(a.id, "file", [data])
    with cat.open_blob(a.id, "file", offset=1000, length=500) as f:
        assert f.read() == data[1000:1500]
        assert f.verified_on_eof is False  # type: ignore[attr-defined]
    with cat.open_blob(a.id, "file", offset=25_000) as f:
        assert f.read() == data[25_000:]
    with cat.open_blob(a.id, "file") as f:
        assert f.verified_on_eof is True  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput):
        cat.open_blob(a.id, "file", offset=-1)


def test_gc_restores_an_upload_whose_process_died(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "file", [b"keep me"])
    slot = _slots._reserve(cat, a.id, "file", None, internal=True)
    # pretend the reserving process died: a token of a pid that cannot exist
    with cat._database.write() as conn:
        conn.execute(
            "UPDATE blobs SET upload_token = ? WHERE artifact_id = ?",
            (f"{_slots._HOST}:999999999:{uuid.uuid4().hex}", a.id),
        )
    with pytest.raises(Conflict):
        cat.open_blob(a.id, "file")
    report = cat.gc()
    assert report.uploads_abandoned == 1
    assert read_all(cat, a.id, "file") == b"keep me"
    assert slot.previous_digest == "sha256:" + sha(b"keep me")


KILLED_UPLOAD = """
import sys, glarelite
path, storage, aid = sys.argv[1], sys.argv[2], sys.argv[3]
def chunks():
    block = bytes(range(256)) * 4096
    for i in range(100000):
        if i == 20:
            print("streaming", flush=True)
        yield block
with glarelite.open(path, storage=storage) as cat:
    cat.upload(aid, "file", chunks())
"""


@pytest.mark.slow
def test_sigkill_mid_upload_then_gc_and_retry(tmp_path: Path) -> None:
    storage = str(tmp_path / "blobs")
    path = tmp_path / "c.db"
    with glarelite.open(path, storage=storage) as cat:
        cat.define_type("images", blobs=["file"])
        a = cat.create("images", "a")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOAD, str(path), storage, a.id],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"streaming"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with glarelite.open(path) as cat:
        store = _slots.store_of(cat)
        assert list(store.iter_objects()) == []  # nothing partial at a final path
        assert len(list(store.iter_temporaries())) == 1
        with pytest.raises(Conflict):
            cat.upload(a.id, "file", [b"retry"])  # still 'saving' until gc
        report = cat.gc()
        assert (report.uploads_abandoned, report.temporaries_removed) == (1, 1)
        assert list(store.iter_temporaries()) == []
        cat.upload(a.id, "file", [b"retry"])
        assert read_all(cat, a.id, "file") == b"retry"


def test_gc_removes_orphans_and_keeps_referenced(cat: glarelite.Catalog) -> None:
    a = cat.create("images", "a")
    cat.upload(a.id, "file", [b"referenced"])
    store = _slots.store_of(cat)
    orphan = store.write([b"orphan"])
    store.commit(orphan)
    report = cat.gc()
    assert report.objects_removed == 1 and report.bytes_freed == len(b"orphan")
    assert [d for d, _ in store.iter_objects()] == ["sha256:" + sha(b"referenced")]
    assert cat.gc().objects_removed == 0


FLAT_MEMORY = """
import sys, glarelite
path, storage = sys.argv[1], sys.argv[2]
GIB2 = 2 << 30
def chunks():
    block = bytearray(range(256)) * 4096  # 1 MiB, varied so nothing is trivially constant
    for i in range(GIB2 // len(block)):
        block[:8] = i.to_bytes(8, "big")
        yield bytes(block)
with glarelite.open(path, storage=storage) as cat:
    cat.define_type("images", blobs=["file"])
    a = cat.create("images", "big")
    blob = cat.upload(a.id, "file", chunks())
    assert blob.size == GIB2
    n = 0
    with cat.open_blob(a.id, "file") as f:  # verifies size and sha256 at the end
        while chunk := f.read(1 << 20):
            n += len(chunk)
    assert n == GIB2
# VmHWM, not ru_maxrss: on Linux ru_maxrss can carry the parent's peak across fork/exec
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


@pytest.mark.slow
def test_two_gib_upload_and_read_back_stays_under_150_mib(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", FLAT_MEMORY, str(tmp_path / "c.db"), str(tmp_path / "blobs")],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_kib = int(out.stdout.strip())
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
