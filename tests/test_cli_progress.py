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
