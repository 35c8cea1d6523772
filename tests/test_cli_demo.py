"""`make demo` end to end: the demo drives the CLI in subprocesses, mirrors, serves the
tree with python -m http.server and verifies every blob; it must exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_clean(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "demo.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("demo OK")
    assert "sha256sum -c passes on every SHA256SUMS.d file" in result.stdout
    assert list((out / "tree" / "SHA256SUMS.d").glob("images/*"))
