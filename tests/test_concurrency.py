"""Several processes writing one catalog at once: every write lands, and no
"database is locked" reaches a caller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import glarelite

WRITER = """
import sys, glarelite
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with glarelite.open(path) as cat:
    for i in range(n):
        a = cat.create("t", f"{tag}-{i}", version="1.0", tags=[tag], properties={"n": i})
        if i % 50 == 0:
            cat.update(a.id, description=f"touched by {tag}")
print("ok")
"""


def test_four_processes_times_500_creates(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with glarelite.open(path) as cat:
        cat.define_type("t", properties={"n": "integer"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{k}", "500"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "locked" not in err
        assert out.strip() == "ok"
    with glarelite.open(path) as cat:
        assert cat.list("t").total == 2000
        for k in range(4):
            page = cat.list("t", filters=[f"tags=w{k}"], limit=1000)
            assert page.total == 500
            names = {a.name for a in cat.iter_all("t", filters=[f"tags=w{k}"])}
            assert names == {f"w{k}-{i}" for i in range(500)}
