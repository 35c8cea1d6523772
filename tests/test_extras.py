"""S3 support is the extra glarelite[s3] (issue 16.7): without s3fs, everything but s3://
works, and an s3:// URL is a clear one-line error naming the extra — library and CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# s3fs made unimportable, as in an environment installed without the extra
BLOCK = "import sys; sys.modules['s3fs'] = None; sys.modules['aiobotocore'] = None\n"


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_s3fs_is_an_extra_not_a_dependency() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    (dependencies,) = re.findall(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)
    assert "s3fs" not in dependencies
    assert re.search(r'^s3 = \["s3fs>=[^"]+"\]$', text, re.M)


def test_without_s3fs_a_folder_works_and_s3_says_which_extra(tmp_path: Path) -> None:
    done = run(
        "import glarelite, mirror\n"
        "cat = glarelite.open('c.db', storage='blobs')\n"
        "cat.define_type('images', blobs=['file'])\n"
        "print(mirror.sync(cat, 'tree').exit_code)\n"
        "s3 = glarelite.open('s.db', storage='s3://bucket/x')\n"
        "s3.define_type('images', blobs=['file'])\n"
        "a = s3.create('images', 'a')\n"
        "for call in (lambda: s3.upload(a.id, 'file', b'bytes'),\n"
        "             lambda: mirror.sync(cat, 's3://bucket/tree')):\n"
        "    try:\n"
        "        call()\n"
        "    except glarelite.GlareliteError as exc:\n"
        "        print(type(exc).__name__, exc)\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0"
    for line in lines[1:]:
        assert "pip install 'glarelite[s3]'" in line, line
    # the same situation on both sides: a URL whose package is missing (exit 2 in the CLI)
    assert [line.split()[0] for line in lines[1:]] == ["InvalidInput", "InvalidInput"]


def test_without_s3fs_the_cli_error_is_one_line(tmp_path: Path) -> None:
    done = run(
        "import glarelite\n"
        "from glarelite.cli import app\n"
        "cat = glarelite.open('c.db', storage='s3://bucket/x')\n"
        "cat.define_type('images', blobs=['file'])\n"
        "a = cat.create('images', 'a')\n"
        "cat.close()\n"
        "app(['--catalog', 'c.db', 'upload', a.id, 'file', '-'])\n",
        tmp_path,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "pip install 'glarelite[s3]'" in done.stderr
