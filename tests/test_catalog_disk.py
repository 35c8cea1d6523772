"""A full disk under the catalog file: writes fail with StorageFull (a GlareliteError and
an OSError; CLI exit 9, one line), nothing already committed is lost, and the catalog
works again once space is freed (issue 13 #15).

Needs Linux and root (``mount -t tmpfs``); skipped otherwise."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import glarelite
from glarelite import cli
from glarelite.cli import app
from glarelite.errors import GlareliteError, StorageFull

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"),
    reason="mounts a tmpfs: needs Linux, root and mount(8)",
)

TEXT = "d" * 4000  # one artifact's description: a few KiB of WAL per write


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted on a folder of tmp_path, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; the filler is returned so a test can free it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def fill_catalog(cat: glarelite.Catalog) -> StorageFull:
    """Create artifacts until the disk refuses; the error is returned."""
    for i in range(10_000):
        try:
            cat.create("t", f"a{i}", description=TEXT)
        except StorageFull as exc:
            return exc
    raise AssertionError("the disk never filled up")


def test_full_disk_is_storage_full_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    path = small_disk / "c.db"
    with glarelite.open(path, storage=str(tmp_path / "blobs")) as cat:
        cat.define_type("t", blobs=["file"])
        kept = cat.create("t", "kept")
        filler = fill(small_disk)
        exc = fill_catalog(cat)
        assert isinstance(exc, GlareliteError) and isinstance(exc, OSError)
        assert "full" in str(exc) and str(path) in str(exc)
        with pytest.raises(StorageFull):  # again: the connection is not left mid-transaction
            cat.create("t", "again", description=TEXT)
        assert cat.get(kept.id).name == "kept"
        created = len(cat.list("t", limit=10_000))
        filler.unlink()
        cat.create("t", "after", description=TEXT)  # space freed: writes work again
    with glarelite.open(path) as cat:
        assert cat.get(kept.id).name == "kept"
        assert len(cat.list("t", limit=10_000)) == created + 1


def test_cli_full_disk_is_one_line_and_exit_9(small_disk: Path, tmp_path: Path) -> None:
    path = small_disk / "c.db"
    with glarelite.open(path, storage=str(tmp_path / "blobs")) as cat:
        cat.define_type("t", blobs=["file"])
        fill(small_disk)
        fill_catalog(cat)
    result = CliRunner().invoke(
        app, ["--catalog", str(path), "create", "t", "x", "--description", TEXT]
    )
    assert result.exit_code == cli.EXIT_STORAGE == 9, (result.exit_code, result.stderr)
    err = result.stderr
    assert err.count("\n") == 1 and err.startswith("glarelite: error: ") and "full" in err
    assert "Traceback" not in err
