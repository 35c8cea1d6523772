"""BlobStore and hashing helpers, on a local folder, memory:// and S3 (SeaweedFS)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glarelite._hashing import (
    CHUNK,
    Hasher,
    iter_source,
    make_digest,
    parse_sha256,
    split_digest,
)
from glarelite._store import BlobStore, VerifyingReader
from glarelite.errors import ChecksumMismatch, InvalidInput, NotFound, TooLarge

REPO = Path(__file__).resolve().parents[1]
KIB = 1024
MIB = 1024 * KIB


@dataclass
class Backend:
    name: str
    url: str
    options: dict[str, Any] | None
    raw: Any  # a separate fsspec handle, to change objects behind the store's back
    bucket: str | None = None


@pytest.fixture(
    params=[
        "local",
        "memory",
        pytest.param("s3", marks=[pytest.mark.s3, pytest.mark.xdist_group("seaweedfs")]),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield Backend(
            "local", str(tmp_path / "store"), None, fsspec.filesystem("file", auto_mkdir=True)
        )
    elif request.param == "memory":
        root = f"glarelite-test-{uuid.uuid4().hex}"
        raw = fsspec.filesystem("memory")
        yield Backend("memory", f"memory://{root}", None, raw)
        with contextlib.suppress(FileNotFoundError):
            raw.rm(f"/{root}", recursive=True)
    else:
        server = request.getfixturevalue("seaweedfs")
        url = request.getfixturevalue("s3_store_url")
        yield Backend("s3", url, server.storage_options, server.other_fs, server.bucket)


@pytest.fixture
def store(backend: Backend) -> BlobStore:
    return BlobStore(backend.url, backend.options)


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def chunked(data: bytes, size: int = 64 * KIB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stored(store: BlobStore, data: bytes) -> str:
    written = store.write(chunked(data))
    store.commit(written)
    return written.digest


def read_verified(store: BlobStore, digest: str, size: int) -> bytes:
    out = io.BytesIO()
    with store.reader(digest, size) as reader:
        shutil.copyfileobj(reader, out)
        assert reader.verified
    return out.getvalue()


# -- write, commit, read ---------------------------------------------------------------


def test_write_commit_open_round_trip(store: BlobStore) -> None:
    data = blob(3 * MIB + 123)
    progress: list[int] = []
    written = store.write(
        chunked(data), extra_algorithms=("md5", "sha1"), on_progress=progress.append
    )
    assert written.digest == sha(data)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert written.size == len(data)
    assert written.checksums == {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
    }
    assert progress == sorted(progress) and progress[-1] == len(data)
    # Written but not committed: only a temporary exists.
    assert [t.path for t in store.iter_temporaries()] == [written.temp_path]
    assert not store.exists(written.digest)

    store.commit(written)
    assert store.exists(written.digest)
    assert store.size(written.digest) == len(data)
    assert list(store.iter_temporaries()) == []
    with store.open(written.digest) as f:
        assert f.read() == data
    assert read_verified(store, written.digest, len(data)) == data
    store.commit(written)  # again: a no-op
    assert list(store.iter_objects()) == [(written.digest, len(data))]


def test_same_bytes_are_stored_once(store: BlobStore) -> None:
    data = blob(200 * KIB, seed=1)
    first = store.write(chunked(data))
    second = store.write(chunked(data, 7 * KIB))  # other chunking, same bytes
    assert first.digest == second.digest and first.temp_path != second.temp_path
    store.commit(first)
    store.commit(second)
    assert list(store.iter_objects()) == [(sha(data), len(data))]
    assert list(store.iter_temporaries()) == []


def test_empty_blob(store: BlobStore) -> None:
    written = store.write([])
    assert written.digest == sha(b"") and written.size == 0
    store.commit(written)
    assert read_verified(store, written.digest, 0) == b""


def test_bytes_and_tag_accepted(store: BlobStore) -> None:
    written = store.write(b"abc", tag="upload-1")
    assert [(t.path, t.tag) for t in store.iter_temporaries()] == [(written.temp_path, "upload-1")]
    store.commit(written)
    assert store.size(written.digest) == 3


def test_too_large_removes_the_temporary(store: BlobStore) -> None:
    data = blob(10 * KIB)
    with pytest.raises(TooLarge):
        store.write(chunked(data, KIB), max_size=len(data) - 1)
    assert list(store.iter_temporaries()) == []
    assert list(store.iter_objects()) == []
    written = store.write(chunked(data, KIB), max_size=len(data))  # exactly the cap is fine
    assert written.size == len(data)


def test_checksum_mismatch_removes_the_temporary(store: BlobStore) -> None:
    data = blob(50 * KIB)
    with pytest.raises(ChecksumMismatch, match="expected sha256:"):
        store.write(chunked(data), expected_sha256=sha(b"other"))
    assert list(store.iter_temporaries()) == []
    for expected in (sha(data), sha(data).split(":")[1].upper()):
        assert store.write(chunked(data), expected_sha256=expected).digest == sha(data)


def test_failing_source_removes_the_temporary(store: BlobStore, backend: Backend) -> None:
    def source() -> Iterator[bytes]:
        # More than one multipart part on S3, so an upload is in progress when it fails.
        for i in range(20):
            yield bytes([i]) * MIB
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        store.write(source())
    assert list(store.iter_temporaries()) == []
    assert list(store.iter_objects()) == []
    if backend.bucket is not None:
        uploads = backend.raw.list_multipart_uploads(backend.bucket)
        prefix = backend.url.split("/", 3)[3]
        assert [u for u in uploads if u["Key"].startswith(prefix)] == []


def test_text_chunk_is_refused_and_cleaned_up(store: BlobStore) -> None:
    with pytest.raises(InvalidInput, match="text"):
        store.write([b"abc", "def"])  # type: ignore[list-item]
    assert list(store.iter_temporaries()) == []


def test_bad_arguments_are_refused_before_writing(store: BlobStore) -> None:
    for kwargs in (
        {"max_size": -1},
        {"expected_sha256": "sha256:xyz"},
        {"expected_sha256": "md5:" + "0" * 32},
        {"tag": "a/b"},
        {"extra_algorithms": ("nope",)},
        {"extra_algorithms": ("shake_128",)},
    ):
        with pytest.raises(InvalidInput):
            store.write([b"x"], **kwargs)
    assert list(store.iter_temporaries()) == []


def test_discard_and_commit_after_discard(store: BlobStore) -> None:
    written = store.write([b"discard me"])
    store.discard(written)
    store.discard(written)  # missing is fine
    assert list(store.iter_temporaries()) == []
    with pytest.raises(NotFound):
        store.commit(written)
    assert not store.exists(written.digest)


# -- verification on read ----------------------------------------------------------------


def test_reader_detects_same_size_corruption(store: BlobStore, backend: Backend) -> None:
    data = blob(2 * MIB + 5, seed=2)
    digest = stored(store, data)
    backend.raw.pipe_file(store.object_path(digest), blob(len(data), seed=3))
    received: list[bytes] = []
    with store.reader(digest, len(data)) as reader:  # noqa: SIM117 - the raise is the point
        with pytest.raises(ChecksumMismatch, match="sha256 of the bytes read") as caught:
            for chunk in reader.iter_chunks(256 * KIB):
                received.append(chunk)
    assert digest in str(caught.value)
    # The chunk that completed the wrong hash was not handed out.
    assert sum(map(len, received)) < len(data)
    with pytest.raises(ChecksumMismatch):  # and the reader stays failed
        reader.read(1)


def test_reader_detects_truncated_object(store: BlobStore, backend: Backend) -> None:
    data = blob(300 * KIB, seed=4)
    digest = stored(store, data)
    backend.raw.pipe_file(store.object_path(digest), data[:-10])
    with pytest.raises(ChecksumMismatch, match=rf"read {len(data) - 10} bytes, recorded size"):
        read_verified(store, digest, len(data))
    # A range that reaches past the cut is not silently short either.
    with (
        store.reader(digest, len(data), offset=len(data) - 100, length=100) as reader,
        pytest.raises(ChecksumMismatch, match="ends before byte"),
    ):
        reader.read()


def test_reader_detects_extra_bytes(store: BlobStore, backend: Backend) -> None:
    data = blob(100 * KIB, seed=5)
    digest = stored(store, data)
    backend.raw.pipe_file(store.object_path(digest), data + b"tail")
    with pytest.raises(ChecksumMismatch, match="more bytes than the recorded size"):
        read_verified(store, digest, len(data))


def test_commit_repairs_an_object_of_the_wrong_size(store: BlobStore, backend: Backend) -> None:
    data = blob(64 * KIB, seed=6)
    digest = stored(store, data)
    backend.raw.pipe_file(store.object_path(digest), data[:100])
    assert stored(store, data) == digest
    assert read_verified(store, digest, len(data)) == data


def test_ranged_open_and_reader(store: BlobStore) -> None:
    data = blob(MIB + 77, seed=7)
    digest = stored(store, data)
    with store.open(digest, offset=1000) as f:
        assert f.read(50) == data[1000:1050]
    with store.reader(digest, len(data), offset=1000, length=5000) as reader:
        assert not reader.verified_on_eof
        assert reader.read() == data[1000:6000]
        assert reader.read() == b""
    with store.reader(digest, len(data), offset=len(data) - 10, length=100) as reader:
        assert reader.read() == data[-10:]  # clipped to the recorded size
    with store.reader(digest, len(data), offset=0, length=len(data)) as reader:
        assert reader.verified_on_eof
        assert b"".join(reader.iter_chunks()) == data
        assert reader.verified
    with pytest.raises(InvalidInput):
        store.open(digest, offset=-1)


# -- listing and deleting (gc) --------------------------------------------------------------


def test_listing_and_deleting(store: BlobStore, backend: Backend) -> None:
    a, b = blob(1000, seed=8), blob(2000, seed=9)
    da, db = stored(store, a), stored(store, b)
    pending = store.write([b"in flight"], tag="tok123")
    # Stray names are neither objects nor temporaries of this store.
    backend.raw.pipe_file(store.object_path(da).rsplit("/", 2)[0] + "/zz/not-a-digest", b"x")
    backend.raw.pipe_file(pending.temp_path.rsplit("/", 1)[0] + "/README", b"x")

    assert list(store.iter_objects()) == sorted([(da, len(a)), (db, len(b))])
    temporaries = list(store.iter_temporaries())
    assert [(t.path, t.tag) for t in temporaries] == [(pending.temp_path, "tok123")]
    assert isinstance(temporaries[0].modified, float)

    store.remove_temporary(pending.temp_path)
    store.remove_temporary(pending.temp_path)  # missing is fine
    assert list(store.iter_temporaries()) == []
    with pytest.raises(InvalidInput):
        store.remove_temporary(store.object_path(da))  # gc may only remove temporaries

    store.delete(da)
    store.delete(da)  # missing is fine
    assert not store.exists(da)
    with pytest.raises(NotFound):
        store.size(da)
    with pytest.raises(NotFound):
        store.open(da)
    assert list(store.iter_objects()) == [(db, len(b))]


def test_store_repr_hides_storage_options(store: BlobStore, backend: Backend) -> None:
    assert "secret" not in repr(store).lower()
    assert backend.name in ("local", "memory") or "s3" in repr(store)


def test_unusable_urls_are_refused() -> None:
    for url in ("", "nosuchprotocol://x"):
        with pytest.raises(InvalidInput):
            BlobStore(url)
    with pytest.raises(InvalidInput):
        BlobStore("s3://", {"anon": True})


def test_listing_a_store_never_written(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "never"))
    assert list(store.iter_objects()) == []
    assert list(store.iter_temporaries()) == []
    assert not store.exists(sha(b""))


# -- VerifyingReader on its own -------------------------------------------------------------


class ReadOnly:
    """A file with read and close only (like an HTTP body adapter)."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 1000))  # short reads, as a socket gives

    def close(self) -> None:
        self.closed = True


def test_verifying_reader_over_a_read_only_file() -> None:
    data = blob(10_000, seed=10)
    raw = ReadOnly(data)
    with VerifyingReader(raw, size=len(data), sha256=sha(data)) as reader:
        out = io.BytesIO()
        shutil.copyfileobj(reader, out)
        assert out.getvalue() == data and reader.verified and reader.bytes_read == len(data)
    assert raw.closed


def test_verifying_reader_empty_but_wrong_hash() -> None:
    reader = VerifyingReader(io.BytesIO(b""), size=0, sha256=sha(b"x"))
    with pytest.raises(ChecksumMismatch, match="sha256"):
        reader.read()


# -- iter_source ---------------------------------------------------------------------------


def test_iter_source_path_file_iterator_and_bytes(tmp_path: Path) -> None:
    data = blob(2 * CHUNK + 10, seed=11)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert b"".join(iter_source(path)) == data
    assert [len(c) for c in iter_source(str(path))] == [CHUNK, CHUNK, 10]
    with open(path, "rb") as f:
        assert b"".join(iter_source(f, chunk_size=1000)) == data
        assert not f.closed  # the caller's file stays the caller's
    parts: list[bytes | bytearray | memoryview] = [b"ab", bytearray(b"cd"), memoryview(b"ef"), b""]
    assert list(iter_source(iter(parts))) == [b"ab", b"cd", b"ef"]
    assert [len(c) for c in iter_source(b"xyz" * 10, chunk_size=7)] == [7, 7, 7, 7, 2]


def test_iter_source_refuses_text(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("hello")
    with open(path) as text, pytest.raises(InvalidInput, match="text"):
        iter_source(text)
    with pytest.raises(InvalidInput, match="text"):
        iter_source(io.StringIO("hello"))
    with pytest.raises(InvalidInput, match="text"):
        list(iter_source(iter([b"ok", "text"])))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="int"):
        list(iter_source([1, 2, 3]))  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        iter_source(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cannot read"):
        list(iter_source(tmp_path / "missing"))


# -- hashing helpers -------------------------------------------------------------------------


def test_digest_strings() -> None:
    hexdigest = hashlib.sha256(b"x").hexdigest()
    assert make_digest(hexdigest.upper()) == f"sha256:{hexdigest}"
    assert split_digest(f"SHA256:{hexdigest}") == ("sha256", hexdigest)
    assert parse_sha256(hexdigest) == parse_sha256(f"sha256:{hexdigest}") == hexdigest
    for bad in ("", hexdigest, f"sha256:{hexdigest[:-1]}", f"sha256:{hexdigest[:-1]}g", "x:ab"):
        with pytest.raises(InvalidInput):
            split_digest(bad)
    with pytest.raises(InvalidInput):
        make_digest("abc")


def test_hasher_extras() -> None:
    hasher = Hasher("md5")  # one name, not its letters
    hasher.update(b"ab")
    hasher.update(memoryview(b"c"))
    assert hasher.size == 3 and hasher.digest == sha(b"abc")
    assert hasher.checksums() == {"md5": hashlib.md5(b"abc").hexdigest()}
    assert Hasher(("sha256", "SHA512")).checksums() == {"sha512": hashlib.sha512().hexdigest()}


@given(st.binary(max_size=4096), st.lists(st.integers(min_value=1, max_value=600), max_size=20))
def test_hasher_does_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    hasher, pos = Hasher(), 0
    for cut in cuts:
        hasher.update(data[pos : pos + cut])
        pos += cut
    hasher.update(data[pos:])
    assert (hasher.size, hasher.digest) == (len(data), sha(data))


# -- crash safety and memory, in real subprocesses ---------------------------------------------

GENERATOR = """
import os, sys
BLOCK = bytearray(os.urandom(1 << 20))

def generated(count, pause_after=None):
    # A fast stream that is not constant: a random block stamped with a counter.
    for i in range(count):
        BLOCK[:8] = i.to_bytes(8, "big")
        yield bytes(BLOCK)
        if i == pause_after:
            print("written", flush=True)
            sys.stdin.read()  # the parent kills us here; it never closes stdin first
"""


def run_child(script: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = textwrap.dedent(GENERATOR) + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, text=True, **kwargs
    )


@pytest.mark.slow
def test_sigkill_mid_write_leaves_only_a_temporary(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = run_child(
        """
        from glarelite._store import BlobStore
        store = BlobStore(sys.argv[1])
        store.commit(store.write(generated(200, pause_after=63), tag="killed"))
        print("committed", flush=True)
        """,
        str(root),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "written\n"
        # The hashing side waits in the source; the writing thread drains what it was
        # handed: kill once the 64 chunks are on disk (but the upload is not complete).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sizes = [p.stat().st_size for p in (root / "tmp").glob("*")]
            if sizes and sizes[0] >= 64 * MIB:
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        store = BlobStore(str(root))
        assert list(store.iter_objects()) == []
        assert not any(p.is_file() for p in (root / "blobs").rglob("*"))
        temporaries = list(store.iter_temporaries())
        assert [t.tag for t in temporaries] == ["killed"]
        assert os.path.getsize(temporaries[0].path) >= 64 * MIB  # the partial upload
        store.remove_temporary(temporaries[0].path)  # what gc does once it is old enough
        assert list(store.iter_temporaries()) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.stdout.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_gib_round_trip_keeps_memory_flat(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = run_child(
        """
        import contextlib, hashlib, resource
        from glarelite._store import BlobStore
        store = BlobStore(sys.argv[1])
        check = hashlib.sha256()
        def source():
            for chunk in generated(2048):
                check.update(chunk)
                yield chunk
        written = store.write(source())
        assert written.digest == "sha256:" + check.hexdigest()
        store.commit(written)
        total = 0
        with store.reader(written.digest, written.size) as reader:
            for chunk in reader.iter_chunks():
                total += len(chunk)
            assert reader.verified
        # Linux carries the parent's peak into ru_maxrss across fork+exec (a big pytest
        # process would count); VmHWM is this process's own peak.
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with contextlib.suppress(OSError):
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak_kib = int(line.split()[1])
        print(written.size, total, peak_kib)
        """,
        str(root),
        stdout=subprocess.PIPE,
    )
    try:
        out, _ = child.communicate()
        assert child.returncode == 0
        size, total, peak_kib = map(int, out.split())
        assert size == total == 2048 * MIB
        assert peak_kib * KIB < 150 * MIB, f"peak RSS {peak_kib // 1024} MiB"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(root, ignore_errors=True)


# -- local writes: the copy (or write) runs beside the hashing ----------------------------------


def glarelite_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("glarelite-")]


linux_copy = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "copy_file_range"),
    reason="copy_file_range and file-to-file sendfile are Linux's",
)


@linux_copy
def test_local_path_source_is_copied_then_the_copy_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(20 * MIB + 5, seed=12)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    copies: list[int] = []
    real_copy = os.copy_file_range

    def counting_copy(src: int, dst: int, count: int, *args: Any) -> int:
        copies.append(count)
        return real_copy(src, dst, count, *args)

    monkeypatch.setattr(os, "copy_file_range", counting_copy)
    store = BlobStore(str(tmp_path / "store"))
    progress: list[int] = []
    written = store.write(iter_source(path), extra_algorithms=("md5",), on_progress=progress.append)
    assert copies  # the in-kernel copy was used
    assert (written.digest, written.size) == (sha(data), len(data))
    assert written.checksums == {"md5": hashlib.md5(data).hexdigest()}
    assert progress == sorted(progress) and progress[-1] == len(data) and len(progress) > 1
    store.commit(written)
    assert read_verified(store, written.digest, len(data)) == data
    assert glarelite_threads() == []


@linux_copy
def test_local_copy_keeps_a_bounded_lead_over_the_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("glarelite._localwrite._COPY_STEP", MIB)
    monkeypatch.setattr("glarelite._localwrite._COPY_LEAD", 3 * MIB)
    data = blob(16 * MIB, seed=17)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    hashed = [0]
    leads: list[int] = []
    copied = [0]
    real_copy = os.copy_file_range

    def copy(src: int, dst: int, count: int, *args: Any) -> int:
        leads.append(copied[0] - hashed[0])
        n = real_copy(src, dst, count, *args)
        copied[0] += n
        return n

    def slow_progress(done: int) -> None:
        hashed[0] = done
        time.sleep(0.01)  # the hashing is the slow side

    monkeypatch.setattr(os, "copy_file_range", copy)
    store = BlobStore(str(tmp_path / "store"))
    written = store.write(iter_source(path), on_progress=slow_progress)
    assert written.digest == sha(data)
    assert max(leads) <= 3 * MIB  # never more than the lead ahead when copying on
    assert max(leads) >= 2 * MIB  # but it did run ahead


@linux_copy
def test_local_copy_falls_back_when_the_kernel_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(3 * MIB + 1, seed=13)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    refused: list[str] = []

    def refuse(name: str, code: int) -> Any:
        def call(*args: Any) -> int:
            refused.append(name)
            raise OSError(code, os.strerror(code))

        return call

    monkeypatch.setattr(os, "copy_file_range", refuse("copy_file_range", errno.EXDEV))
    monkeypatch.setattr(os, "sendfile", refuse("sendfile", errno.EINVAL))
    store = BlobStore(str(tmp_path / "store"))
    written = store.write(iter_source(path))
    assert refused == ["copy_file_range", "sendfile"]  # each tried once, then read/write
    assert written.digest == sha(data)
    store.commit(written)
    assert read_verified(store, written.digest, len(data)) == data


def test_local_path_source_over_the_cap(tmp_path: Path) -> None:
    data = blob(10 * MIB, seed=14)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    store = BlobStore(str(tmp_path / "store"))
    progress: list[int] = []
    with pytest.raises(TooLarge):
        store.write(iter_source(path), max_size=len(data) - 1, on_progress=progress.append)
    assert progress and progress[-1] <= len(data) - 1
    assert list(store.iter_temporaries()) == []
    written = store.write(iter_source(path), max_size=len(data))  # exactly the cap is fine
    assert written.digest == sha(data)
    assert glarelite_threads() == []


@pytest.mark.parametrize("kind", ["path", "chunks"])
def test_local_failures_stop_the_writer_and_remove_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    data = blob(12 * MIB, seed=15)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    store = BlobStore(str(tmp_path / "store"))

    def source() -> Any:
        return iter_source(path) if kind == "path" else chunked(data, MIB)

    def fail_at_4_mib(done: int) -> None:
        if done >= 4 * MIB:
            raise KeyboardInterrupt  # also an interruption: nothing left behind

    with pytest.raises(KeyboardInterrupt):
        store.write(source(), on_progress=fail_at_4_mib)
    assert list(store.iter_temporaries()) == []
    assert glarelite_threads() == []

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")  # the writing thread's error reaches us

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        store.write(source())
    assert list(store.iter_temporaries()) == []
    assert glarelite_threads() == []


@linux_copy
def test_local_sources_elsewhere_are_read_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_copy(*args: Any) -> int:
        raise AssertionError("copy_file_range used for a file of another file system")

    monkeypatch.setattr(os, "copy_file_range", no_copy)
    store = BlobStore(str(tmp_path / "store"))
    # /proc files claim size 0: an in-kernel copy would store nothing.
    proc = Path("/proc/version")
    if proc.exists():
        written = store.write(iter_source(proc))
        assert written.size > 0 and written.digest == sha(proc.read_bytes())
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        data = blob(3 * MIB, seed=18)
        other = shm / f"glarelite-test-{uuid.uuid4().hex}"
        other.write_bytes(data)
        try:
            assert store.write(iter_source(other)).digest == sha(data)
        finally:
            other.unlink()


def test_local_fifo_source_is_read_in_chunks(tmp_path: Path) -> None:
    data = blob(3 * MIB + 7, seed=16)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    store = BlobStore(str(tmp_path / "store"))
    try:
        written = store.write(iter_source(fifo))
    finally:
        feeder.join()
    assert written.digest == sha(data)


# -- S3: parts uploaded concurrently through s3fs's client ------------------------------------

PART = 5 * MIB  # S3's smallest part: many parts from little data


class S3Spy:
    """Wraps ``fs.call_s3``: records calls, can slow or fail parts, counts parts in flight."""

    def __init__(self, fs: Any, slow: dict[int, float] | None = None, fail: int | None = None):
        self.real = fs.call_s3
        self.slow = slow or {}
        self.fail = fail
        self.events: list[tuple[str, int | None]] = []
        self.lock = threading.Lock()
        self.active = self.peak = 0

    def methods(self) -> list[str]:
        return [m for m, _ in self.events if not m.endswith(":done")]

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        number = kwargs.get("PartNumber")
        with self.lock:
            self.events.append((method, number))
            if method == "upload_part":
                self.active += 1
                self.peak = max(self.peak, self.active)
        try:
            if method == "upload_part":
                time.sleep(self.slow.get(number, 0.0))
                if number == self.fail:
                    raise OSError(f"part {number} failed")
            return self.real(method, *args, **kwargs)
        finally:
            with self.lock:
                if method == "upload_part":
                    self.active -= 1
                self.events.append((f"{method}:done", number))


@pytest.fixture
def s3(
    seaweedfs: Any, s3_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[BlobStore, Any]]:
    monkeypatch.setattr("glarelite._store._OBJECT_STORE_BLOCK", PART)
    monkeypatch.setattr("glarelite._store._PARTS_IN_FLIGHT", 3)
    store = BlobStore(s3_store_url, seaweedfs.storage_options)
    yield store, seaweedfs


def spy_on(store: BlobStore, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> S3Spy:
    spy = S3Spy(store.fs, **kwargs)
    monkeypatch.setattr(store.fs, "call_s3", spy)
    return spy


def pending_uploads(store: BlobStore, server: Any) -> list[Any]:
    prefix = store.root.split("/", 1)[1]
    uploads = server.other_fs.list_multipart_uploads(server.bucket)
    return [u for u in uploads if u["Key"].startswith(prefix)]


def distinct_parts(count: int, tail: int) -> bytes:
    # Every part different, so parts stored out of order could not hash right.
    return b"".join(blob(PART, seed=100 + i) for i in range(count)) + blob(tail, seed=99)


@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
@pytest.mark.parametrize("direct", [True, False])
def test_s3_parts_in_flight_at_once_keep_their_order(
    s3: tuple[BlobStore, Any], monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    store, server = s3
    data = distinct_parts(7, 12_345)  # 8 parts, the last one short
    # Early parts are the slow ones: they finish after later parts.
    spy = spy_on(store, monkeypatch, slow={1: 0.6, 2: 0.4, 3: 0.2, 4: 0.3})
    progress: list[int] = []
    if direct:
        written = store.write_direct(
            chunked(data, 3 * MIB + 1), expected_sha256=sha(data), on_progress=progress.append
        )
    else:
        written = store.write(chunked(data, 3 * MIB + 1), on_progress=progress.append)
        store.commit(written)
    assert (written.digest, written.size) == (sha(data), len(data))
    assert progress == sorted(progress) and progress[-1] == len(data)
    methods = spy.methods()
    assert methods.count("upload_part") == 8
    assert methods.count("create_multipart_upload") == 1
    assert methods.count("complete_multipart_upload") == 1
    assert "abort_multipart_upload" not in methods and "put_object" not in methods
    assert spy.peak == 3  # concurrent, and never more than allowed
    finished = [n for m, n in spy.events if m == "upload_part:done"]
    assert finished != sorted(finished)  # parts did finish out of order
    assert read_verified(store, written.digest, len(data)) == data
    assert list(store.iter_temporaries()) == []
    assert pending_uploads(store, server) == []


@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
@pytest.mark.parametrize(
    ("size", "parts"), [(0, 0), (1000, 0), (PART - 1, 0), (PART, 1), (PART + 1, 2), (2 * PART, 2)]
)
def test_s3_part_boundaries(
    s3: tuple[BlobStore, Any], monkeypatch: pytest.MonkeyPatch, size: int, parts: int
) -> None:
    store, _ = s3
    data = blob(size, seed=size)
    spy = spy_on(store, monkeypatch)
    written = store.write_direct(chunked(data, MIB), expected_sha256=sha(data))
    methods = spy.methods()
    assert methods.count("upload_part") == parts
    # Smaller than one part: a single put_object, no multipart upload at all.
    assert methods.count("put_object") == (parts == 0)
    assert methods.count("create_multipart_upload") == (parts > 0)
    assert store.size(written.digest) == size
    assert read_verified(store, written.digest, size) == data


@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
def test_s3_direct_checksum_mismatch_aborts_after_the_parts(
    s3: tuple[BlobStore, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, server = s3
    data = distinct_parts(4, 100)
    claimed = sha(b"something else")
    spy = spy_on(store, monkeypatch, slow={3: 0.5, 4: 0.3})
    with pytest.raises(ChecksumMismatch):
        store.write_direct(chunked(data, MIB), expected_sha256=claimed)
    methods = spy.methods()
    assert "complete_multipart_upload" not in methods
    assert methods.count("abort_multipart_upload") == 1
    # Every part had finished before the abort: none can land after it.
    abort_at = spy.events.index(("abort_multipart_upload", None))
    # 4 full parts were handed over (a part not started yet may be cancelled instead); the
    # short tail was never sent.
    started = methods.count("upload_part")
    assert 3 <= started <= 4
    assert sum(m == "upload_part:done" for m, _ in spy.events[:abort_at]) == started
    assert not store.exists(claimed)
    assert list(store.iter_objects()) == []
    assert pending_uploads(store, server) == []


@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("failure", ["source", "part", "cap"])
def test_s3_failure_mid_stream_leaves_nothing(
    s3: tuple[BlobStore, Any], monkeypatch: pytest.MonkeyPatch, direct: bool, failure: str
) -> None:
    store, server = s3
    data = distinct_parts(6, 0)
    read = [0]

    def source() -> Iterator[bytes]:
        for chunk in chunked(data, MIB):
            if failure == "source" and read[0] >= 4 * PART:
                raise RuntimeError("source failed")
            read[0] += len(chunk)
            yield chunk

    spy = spy_on(store, monkeypatch, fail=2 if failure == "part" else None, slow={1: 0.2})
    cap = 3 * PART + 1 if failure == "cap" else None
    expected = {"source": RuntimeError, "part": OSError, "cap": TooLarge}[failure]
    with pytest.raises(expected):
        if direct:
            store.write_direct(source(), expected_sha256=sha(data), max_size=cap)
        else:
            store.write(source(), max_size=cap)
    methods = spy.methods()
    assert methods.count("create_multipart_upload") == 1
    assert methods.count("abort_multipart_upload") == 1
    assert "complete_multipart_upload" not in methods
    if failure == "part":
        assert read[0] < len(data)  # the failed part stopped the stream early
    assert list(store.iter_objects()) == []
    assert list(store.iter_temporaries()) == []
    assert pending_uploads(store, server) == []


S3_FLAT_MEMORY = """
import hashlib, sys
from glarelite._store import BlobStore
options = {
    "key": sys.argv[2], "secret": sys.argv[3],
    "client_kwargs": {"endpoint_url": sys.argv[4], "region_name": "us-east-1"},
    "config_kwargs": {"s3": {"addressing_style": "path"}},
}
store = BlobStore(sys.argv[1], options)
def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
store.write_direct([b"warm up"], expected_sha256=hashlib.sha256(b"warm up").hexdigest())
before = peak_kib()
check = hashlib.sha256()
for chunk in generated(int(sys.argv[5])):
    check.update(chunk)
written = store.write_direct(generated(int(sys.argv[5])), expected_sha256=check.hexdigest())
print(before, peak_kib())
"""


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
def test_s3_upload_memory_stays_flat(seaweedfs: Any, s3_store_url: str) -> None:
    from glarelite._store import _OBJECT_STORE_BLOCK, _PARTS_IN_FLIGHT

    mib = 400  # 25 parts: more than the memory allowed below
    child = run_child(
        S3_FLAT_MEMORY,
        s3_store_url,
        seaweedfs.key,
        seaweedfs.secret,
        seaweedfs.endpoint_url,
        str(mib),
        stdout=subprocess.PIPE,
    )
    out, _ = child.communicate()
    assert child.returncode == 0
    before, after = map(int, out.split())
    # Each part in flight is held twice over plain http (ours, and aiohttp's copy of
    # botocore's BytesIO), plus the part being filled and joined, plus slack.
    bound = (2 * _PARTS_IN_FLIGHT + 3) * _OBJECT_STORE_BLOCK
    assert bound < mib * MIB
    assert (after - before) * KIB < bound, f"grew {(after - before) // 1024} MiB"


@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
def test_gc_aborts_old_multipart_uploads_under_the_storage_root_only(
    seaweedfs: Any, s3_store_url: str, tmp_path: Path
) -> None:
    """A process killed mid-upload leaves a multipart upload whose parts are billed until
    aborted: gc aborts those under the storage root once older than stale_after, and
    nothing younger, and nothing outside the root."""
    import glarelite

    s3 = seaweedfs.other_fs
    bucket, prefix = seaweedfs.bucket, s3_store_url.split("/", 3)[3]
    elsewhere = f"other-{uuid.uuid4().hex}"

    def start_upload(key: str) -> str:
        upload = s3.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        s3.call_s3(
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * 1024,
        )
        return str(upload["UploadId"])

    def pending() -> set[str]:
        uploads = s3.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
        return {u["Key"] for u in uploads or []}

    ours = {f"{prefix}/tmp/{uuid.uuid4().hex}.deadtag", f"{prefix}/blobs/sha256/ab/{'c' * 62}"}
    # Another program's uploads: elsewhere in the bucket, and beside our folders.
    foreign = [f"{elsewhere}/tmp/{uuid.uuid4().hex}.deadtag", f"{prefix}/notes/draft.txt"]
    ids = {key: start_upload(key) for key in [*ours, *foreign]}
    catalog = glarelite.open(
        tmp_path / "c.db", storage=s3_store_url, storage_options=seaweedfs.storage_options
    )
    try:
        young = catalog.gc(stale_after=3600)  # all of them were started a moment ago
        assert young.uploads_aborted == 0 and ours | set(foreign) <= pending()
        time.sleep(1.1)  # S3 timestamps have one-second resolution
        report = catalog.gc(stale_after=1)
        assert report.uploads_aborted == 2
        assert not ours & pending() and set(foreign) <= pending()
        assert sorted(d for d in report.details if "multipart" in d) == sorted(
            f"aborted multipart upload {bucket}/{key}" for key in ours
        )
    finally:
        catalog.close()
        for key in foreign:
            s3.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=ids[key])
