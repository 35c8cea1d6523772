"""mirror.dest: the local destination's write path (temporaries, hashing in place,
writeback hints, the folder cache)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from glarelite import tree
from mirror.dest import LocalDest, open_dest, temp_path


def local(tmp_path: Path, fsync: bool = True) -> LocalDest:
    dest = open_dest(str(tmp_path / "tree"), None, create=True, fsync=fsync)
    assert isinstance(dest, LocalDest)
    return dest


def test_hash_range_maps_written_ranges_and_reads_past_a_short_file(tmp_path: Path) -> None:
    dest = local(tmp_path)
    data = os.urandom(3 * 65536 + 123)
    temp = dest.new_temp("artifacts/t/a/file")
    temp.preallocate(len(data))
    temp.pwrite(data, 0)
    buffer = memoryview(bytearray(4096))
    for offset, length in [(0, len(data)), (1, 70000), (65536, 65536), (len(data) - 5, 5)]:
        h = hashlib.sha256()
        temp.hash_range(h, offset, length, buffer)
        assert h.hexdigest() == hashlib.sha256(data[offset : offset + length]).hexdigest()
    temp.discard()

    # Not preallocated and shorter than the range asked: the pread path, no SIGBUS.
    temp = dest.new_temp("artifacts/t/a/other")
    temp.write(data[:1000])
    h = hashlib.sha256()
    temp.hash_range(h, 0, 1000, buffer)
    assert h.hexdigest() == hashlib.sha256(data[:1000]).hexdigest()
    try:
        temp.hash_range(hashlib.sha256(), 0, 2000, buffer)
    except OSError as exc:
        assert "short read" in str(exc)
    else:
        raise AssertionError("hashing past the end of a temporary must fail")
    temp.discard()


def test_writeback_hint_then_commit_gives_the_bytes(tmp_path: Path) -> None:
    for fsync in (True, False):
        dest = local(tmp_path / str(fsync), fsync=fsync)
        data = os.urandom(200_000)
        temp = dest.new_temp("artifacts/t/a/file")
        temp.pwrite(data, 0)
        temp.start_writeback(0, len(data))
        temp.commit()
        assert (Path(dest.root) / "artifacts/t/a/file").read_bytes() == data


def test_temporary_names_are_unique_and_recognised(tmp_path: Path) -> None:
    names = {temp_path("artifacts/t/a/file") for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        folder, _, base = name.rpartition("/")
        assert folder == "artifacts/t/a"
        assert tree.is_temporary_name(base) is not None


def test_a_folder_removed_behind_the_run_is_made_again(tmp_path: Path) -> None:
    dest = local(tmp_path)
    dest.write_file("artifacts/t/a/file", [b"one"])
    shutil.rmtree(Path(dest.root) / "artifacts/t/a")  # someone else removes it
    dest.write_file("artifacts/t/a/file", [b"two"])
    assert (Path(dest.root) / "artifacts/t/a/file").read_bytes() == b"two"


def test_paths_outside_the_tree_are_refused(tmp_path: Path) -> None:
    dest = local(tmp_path)
    for bad in ("/etc/passwd", "artifacts/../../x", ".."):
        try:
            dest.abspath(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    assert dest.abspath("") == dest.root
    assert dest.abspath("a..b/c") == f"{dest.root}/a..b/c"
