"""``glarelite.fsutil``: one helper each for time, process liveness and atomic writes (with
the fsync rule of its docstring), and no copies of them elsewhere."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import glarelite
from glarelite import fsutil

ROOT = Path(__file__).resolve().parent.parent


def test_utcnow_formats() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fsutil.utcnow())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fsutil.utcnow("seconds"))
    assert "fsutil" in glarelite.__all__


def test_pid_alive() -> None:
    assert fsutil.pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not fsutil.pid_alive(child.pid)  # exited and reaped
    # not a process we can know about: never taken as dead (a lock is not stolen on a guess)
    assert fsutil.pid_alive(0) and fsutil.pid_alive(-1)
    assert not fsutil.pid_alive(2**80)  # no such pid can exist (no OverflowError)


class Recorder:
    """Records fsync and rename calls, in order, by what they touched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            kind = "dir" if os.path.isdir(path) else "file"
            self.calls.append((f"fsync-{kind}", os.path.basename(path)))
            real_fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            self.calls.append(("replace", os.path.basename(os.fspath(dst))))
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_atomic_file_follows_the_fsync_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder(monkeypatch)
    final = tmp_path / "out.bin"
    with fsutil.atomic_file(final) as out:
        out.write(b"new")
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["fsync-file", "replace", "fsync-dir"]  # data, then rename, then folder
    assert rec.calls[1][1] == "out.bin" and rec.calls[2][1] == tmp_path.name
    assert final.read_bytes() == b"new"

    rec.calls.clear()
    with fsutil.atomic_file(final, durable=False) as out:
        out.write(b"newer")
    assert [c[0] for c in rec.calls] == ["replace"]
    assert final.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_replace_follows_the_fsync_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    tmp = tmp_path / "t.part"
    tmp.write_bytes(b"x")
    fsutil.replace(tmp, tmp_path / "final")
    assert [c[0] for c in rec.calls] == ["fsync-file", "replace", "fsync-dir"]
    rec.calls.clear()
    tmp.write_bytes(b"y")
    fsutil.replace(tmp, tmp_path / "final", durable=False)
    assert [c[0] for c in rec.calls] == ["replace"]
    assert (tmp_path / "final").read_bytes() == b"y"


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), fsutil.atomic_file(final) as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left


def test_fsync_dir_is_best_effort(tmp_path: Path) -> None:
    fsutil.fsync_dir(tmp_path / "missing")  # nothing to do, no error
    fsutil.fsync_dir(tmp_path)


# The helpers that used to be copied across glarelite/ and mirror/: each is defined once.
HELPERS = {"utcnow", "_utcnow", "fsync_dir", "_fsync_dir", "_fsync_path", "fsync_file",
           "pid_alive", "_pid_alive", "human_size", "_human"}  # fmt: skip
HOMES = {"glarelite/fsutil.py", "glarelite/cli/_format.py"}  # human_size: the CLI's display


def test_each_helper_is_defined_once() -> None:
    found: dict[str, list[str]] = {}
    for package in ("glarelite", "mirror"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name in HELPERS:
                    found.setdefault(node.name.lstrip("_"), []).append(rel)
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in ("gethostname", "kill")
                    and rel != "glarelite/fsutil.py"
                ):
                    found.setdefault(node.attr, []).append(rel)
    copies = {name: where for name, where in found.items() if len(where) > 1 or
              not set(where) <= HOMES}  # fmt: skip
    assert copies == {}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_download_writes_by_the_rule(
    catalog: glarelite.Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = catalog.create("images", "a", properties={"os": "linux"})
    catalog.upload(art.id, "file", b"bytes")
    out = tmp_path / "dl"
    out.mkdir()
    rec = Recorder(monkeypatch)
    catalog.download(art.id, "file", out / "a.img")
    mine = [c for c in rec.calls if c[1] in ("a.img", "dl") or c[1].startswith(".a.img")]
    assert [c[0] for c in mine] == ["fsync-file", "replace", "fsync-dir"]
    assert (out / "a.img").read_bytes() == b"bytes"
    assert [p.name for p in out.iterdir()] == ["a.img"]
