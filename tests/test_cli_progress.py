"""Progress drawing: rich bars on a terminal, nothing when piped."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

import glarelite
from glarelite.cli import app
from glarelite.cli._progress import RichProgress, counts_items


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=100), buffer


def test_rich_progress_is_a_progress() -> None:
    console, _ = _console()
    bars: glarelite.Progress = RichProgress(console)
    assert bars is not None


def test_rich_progress_draws_bytes_and_items() -> None:
    console, buffer = _console()
    with RichProgress(console, item_keys=("check",)) as bars:
        bars.begin("upload a/file", "upload file", 2048)
        bars.advance("upload a/file", 1024)
        bars.advance("upload a/file", 1024)
        bars.end("upload a/file")
        bars.begin("check", "check external blobs", 3)
        for _ in range(3):
            bars.advance("check", 1)
        bars.end("check")
        bars.begin("download a/x", "download x", None)
        bars.advance("download a/x", 10)
        bars.end("download a/x", ok=False)
        bars.advance("unknown", 5)  # ignored
        bars.end("unknown")
    text = buffer.getvalue()
    assert "upload file" in text and "2.0 KiB" in text
    assert "check external blobs" in text and "3/3" in text
    assert "download x" in text and "✗" in text
    assert bars.failed == ["download a/x"]


def test_rich_progress_from_threads() -> None:
    console, buffer = _console()
    with RichProgress(console) as bars:

        def work(n: int) -> None:
            key = f"copy {n}"
            bars.begin(key, key, 100)
            for _ in range(10):
                bars.advance(key, 10)
            bars.end(key)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(f"copy {n}" in buffer.getvalue() for n in range(8))


def test_counts_items() -> None:
    assert counts_items("check", {"check"})
    assert not counts_items("check", ())
    assert not counts_items("upload abc/file", {"check"})


def test_cli_is_quiet_when_piped(tmp_path: Path, memory_store: str) -> None:
    runner = CliRunner(env={"GLARELITE_CATALOG": str(tmp_path / "c.db")})
    assert runner.invoke(app, ["init", "--storage", memory_store]).exit_code == 0
    assert runner.invoke(app, ["type", "define", "t", "--blob", "file"]).exit_code == 0
    artifact_id = runner.invoke(app, ["create", "t", "n"]).stdout.strip()
    result = runner.invoke(app, ["upload", artifact_id, "file", "-"], input=b"x" * 5000)
    assert result.exit_code == 0
    assert result.stderr == ""  # no bars, no spinner: stderr is not a terminal
    forced = runner.invoke(
        app, ["--progress", "download", artifact_id, "file", "-o", str(tmp_path / "o")]
    )
    assert forced.exit_code == 0
    assert "download file" in forced.stderr


# -- issue 16.8: 80 columns, the artifact named, interruption shown as such -------------
def _drawn(buffer: io.StringIO) -> list[str]:
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    return [line for chunk in text.split("\r") for line in chunk.split("\n") if line.strip()]


def test_bars_fit_80_columns_and_name_the_artifact() -> None:
    from rich.cells import cell_len

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80)
    with RichProgress(console) as bars:
        bars.begin("mirror", "mirror into /srv/a/rather/long/path/to/the/site/mirror", 10 << 30)
        bars.begin("copy x", "images/ubuntu-server-minimal 24.04.1 regions/eu-central", 1 << 30)
        bars.advance("mirror", 3 << 30)
        bars.advance("copy x", 1 << 29)
        bars._bars.refresh()
    lines = _drawn(buffer)
    assert lines and all(cell_len(line) <= 80 for line in lines), lines
    assert any("images/ubuntu" in line for line in lines)  # the type and the artifact


def test_an_interruption_is_not_drawn_as_done() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80)
    try:
        with RichProgress(console) as bars:
            bars.begin("mirror", "mirror into tree", 100)
            bars.advance("mirror", 40)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    text = "\n".join(_drawn(buffer))
    assert "✓" not in text and "interrupted" in text
    assert "run the same command again to resume" in text


def test_sync_leaves_the_bar_open_when_interrupted(tmp_path: Path, origin: object) -> None:
    """The library ends the overall bar only when the copy finished: a Ctrl-C between
    two blobs is not reported as a success."""
    import pytest

    import mirror
    from tests.test_mirror_support import QUICK, RecordingProgress, build_world

    world = build_world(tmp_path, origin)  # type: ignore[arg-type]

    class Interrupting(RecordingProgress):
        def advance(self, key: str, amount: int) -> None:
            super().advance(key, amount)
            if key == "mirror":
                raise KeyboardInterrupt

    progress = Interrupting()
    try:
        with pytest.raises(KeyboardInterrupt):
            mirror.sync(world.catalog, str(tmp_path / "t"), workers=1, progress=progress, **QUICK)
    finally:
        world.catalog.close()
    assert ("begin", "mirror") in [c[:2] for c in progress.calls]
    assert not [c for c in progress.calls if c[:2] == ("end", "mirror") and c[2]]


def test_cli_says_how_to_resume(tmp_path: Path, memory_store: str, monkeypatch: object) -> None:
    import mirror

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    env = {"GLARELITE_CATALOG": str(tmp_path / "c.db"), "GLARELITE_STORAGE_OPTIONS": None}
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--storage", memory_store], env=env).exit_code == 0
    monkeypatch.setattr(mirror, "sync", interrupted)  # type: ignore[attr-defined]
    result = runner.invoke(app, ["mirror", str(tmp_path / "t")], env=env)
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.stderr
