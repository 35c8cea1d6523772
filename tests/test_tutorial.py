"""docs/tutorial.md runs as written (issue 16.6): every ``sh`` and ``python`` block, in
order, verbatim, in one bash, in a fresh home folder, on loopback (the tutorial's own
"upstream" and "site" servers). Only a block marked ``tutorial-test: skip`` is left out
(the install step; tests/test_cli_demo.py runs the demo). The nginx block is started as
written by tests/test_mirror_hygiene.py."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
PORTS = (8930, 8931)  # the tutorial's site and upstream


def blocks() -> list[tuple[str, str]]:
    """(language, text) of each block to run, in order."""
    found = re.finditer(
        r"(<!-- tutorial-test: skip[^>]*-->\n)?```(\w+)\n(.*?)```", TUTORIAL.read_text(), re.S
    )
    return [
        (m.group(2), m.group(3)) for m in found if not m.group(1) and m.group(2) in ("sh", "python")
    ]


def script() -> str:
    parts = ["set -euo pipefail"]
    for language, text in blocks():
        if language == "sh":
            parts.append(text)
        else:  # a python block goes to the python on PATH, as a reader would run it
            parts.append(f"python3 - <<'TUTORIAL_PY'\n{text}TUTORIAL_PY")
    return "\n".join(parts) + "\n"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_tutorial_has_blocks_to_run() -> None:
    languages = [language for language, _ in blocks()]
    assert languages.count("sh") >= 8 and languages.count("python") == 1
    text = script()
    for needed in ("glarelite mirror", "sha256sum -c", "add-location", "open_mirror"):
        assert needed in text
    assert "jq " not in text and "/srv/" not in text and "sudo" not in text


@pytest.mark.slow
@pytest.mark.xdist_group("tutorial-ports")
def test_every_block_of_the_tutorial_runs(tmp_path: Path) -> None:
    busy = [p for p in PORTS if not port_free(p)]
    assert not busy, f"the tutorial's ports {busy} are taken on this machine"
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "LANG": "C.UTF-8",
    }
    proc = subprocess.Popen(
        ["bash", "-c", script()],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the tutorial's background servers: stopped with it
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.returncode == 0, err[-3000:] + "\n--- stdout:\n" + out[-1500:]
    assert ": FAILED" not in out
    assert "artifacts/images/index.json: OK" in out
    assert (home / "artifacts" / "file").exists() and (home / "artifacts" / "ubuntu.img").exists()
    assert (home / "mirror" / "SHA256SUMS").exists()
    assert "ubuntu 22.4.0 " in out  # the python block read the mirror back over HTTP
