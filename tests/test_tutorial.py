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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
PORTS = (8930, 8931)  # the tutorial's site and upstream


def blocks(*marks: str) -> list[tuple[str, str]]:
    """(language, text) of each block to run, in order: the unmarked ones, and those
    marked ``<!-- tutorial-test: MARK ... -->`` with one of ``marks``."""
    found = re.finditer(
        r"(?:<!-- tutorial-test: (\w+)[^>]*-->\n)?```(\w+)\n(.*?)```", TUTORIAL.read_text(), re.S
    )
    return [
        (m.group(2), m.group(3))
        for m in found
        if (not m.group(1) or m.group(1) in marks) and m.group(2) in ("sh", "python")
    ]


def script(*marks: str) -> str:
    parts = ["set -euo pipefail"]
    for language, text in blocks(*marks):
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


def ports_in_use(patience: float = 15.0) -> list[int]:
    """The tutorial's ports still taken after waiting up to ``patience`` seconds (a
    server being stopped lets go of its port a moment later)."""
    deadline = time.monotonic() + patience
    while True:
        busy = [p for p in PORTS if not port_free(p)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


@contextlib.contextmanager
def tutorial_ports() -> Iterator[None]:
    """The tutorial's fixed ports, for one run at a time on this machine (whatever the
    xdist worker or checkout): an flock, released by the kernel if the test dies."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "glarelite-tutorial-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_tutorial(home: Path, *marks: str, **env: str) -> tuple[str, str]:
    with tutorial_ports():
        return _run_tutorial(home, *marks, **env)


def _run_tutorial(home: Path, *marks: str, **env: str) -> tuple[str, str]:
    busy = ports_in_use()
    assert not busy, f"the tutorial's ports {busy} are taken on this machine"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen(
        ["bash", "-c", script(*marks)],
        cwd=home,
        env={
            "HOME": str(home),
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8",
            **env,
        },
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
        ports_in_use()  # the servers it started are gone before the next test starts its own
    assert proc.returncode == 0, err[-3000:] + "\n--- stdout:\n" + out[-1500:]
    return out, err


@pytest.mark.slow
def test_every_block_of_the_tutorial_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out, _ = run_tutorial(home)
    assert ": FAILED" not in out
    assert re.search(r"artifacts/images/_shards/[0-9a-f]{3}\.[0-9a-f]{64}\.json: OK", out)
    assert re.search(r"artifacts/images/[0-9a-f-]{36}/file: OK", out)
    assert (home / "artifacts" / "file").exists() and (home / "artifacts" / "ubuntu.img").exists()
    assert list((home / "mirror" / "SHA256SUMS.d" / "images").iterdir())
    assert "ubuntu 22.4.0 " in out  # the python block read the mirror back over HTTP


@pytest.mark.slow
@pytest.mark.s3
def test_the_s3_walkthrough_runs(tmp_path: Path, seaweedfs: Any) -> None:
    """The tutorial again, with its S3 blocks, against SeaweedFS: a tree in a bucket,
    a policy that publishes its API only, read anonymously by curl and the reader."""
    out, _ = run_tutorial(
        tmp_path / "home",
        "s3",
        S3_ENDPOINT=seaweedfs.endpoint_url,
        BUCKET=seaweedfs.bucket,
        AWS_ACCESS_KEY_ID=seaweedfs.key,
        AWS_SECRET_ACCESS_KEY=seaweedfs.secret,
        AWS_DEFAULT_REGION="us-east-1",
    )
    assert "\n403\n" in out  # the mirror's state is not public
    assert "['ubuntu']" in out  # the reader listed the artifact over anonymous HTTP
