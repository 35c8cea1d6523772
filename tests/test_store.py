"""BlobStore and hashing helpers, on a local folder, memory:// and S3 (SeaweedFS)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
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
