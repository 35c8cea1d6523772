"""A fork server for the crash tests: it imports glarelite once, then forks one child
per request, so a test can SIGKILL a real process at many points for little cost.

Run as ``python -m tests.faults.forkserver`` from the repository root. Protocol: JSON
requests on stdin, one line each; text lines on stdout.

    -> {"scenario": "upload", "path": "<catalog file>", "options": {...},
        "ctx": {...}, "kill_at": <n> | null}
    <- forked <pid>                  the server
    <- ready <pid>                   the child, catalog open, right before the operation
    <- done <pid> <json labels>      the child, when the operation completed
    <- error <pid> <message>         the child, when it raised
    -> reap                          the test (after its SIGKILL, if it sends one)
    <- exit <pid> <code>             the server: exit code, or minus the signal number

A child is reaped only when the test says so: until then its pid stays taken (a zombie
at worst), so the test's SIGKILL can never reach an unrelated process.

``kill_at`` n makes the child SIGKILL itself at its n-th kill point. Kill points are
every durable step of the operation: before and after each COMMIT of a write
transaction, before and after each move, drop or delete of a stored object, right after
a rename (before the directory fsync), and a few chunks of the streamed source.
``done`` lists the labels of the points passed, so a first run counts them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import glarelite
from glarelite import _store
from tests.faults import scenarios

with contextlib.suppress(ImportError):  # preloaded: every child would import it otherwise
    import s3fs  # noqa: F401


def say(line: str) -> None:
    # one write(2) per line: atomic on a pipe, and no stdio buffer shared with the parent
    os.write(1, (line.replace("\n", " ") + "\n").encode())


class Steps:
    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.labels: list[str] = []

    def hit(self, label: str) -> None:
        self.labels.append(label)
        if len(self.labels) == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


class StepConnection:
    """The catalog's sqlite3 connection with kill points around each write COMMIT."""

    def __init__(self, conn: Any, steps: Steps) -> None:
        self._conn, self._steps = conn, steps
        self._writing = False
        self._first = ""

    def execute(self, sql: str, *args: Any) -> Any:
        verb = sql.strip().upper()
        if verb.startswith("BEGIN IMMEDIATE"):
            self._writing, self._first = True, ""
        elif self._writing and not self._first and not verb.startswith(("SELECT", "COMMIT")):
            self._first = " ".join(sql.split()[:3])
        if verb == "COMMIT" and self._writing:
            self._writing = False
            what = self._first or "checks only"
            self._steps.hit(f"before COMMIT ({what})")
            result = self._conn.execute(sql, *args)
            self._steps.hit(f"after COMMIT ({what})")
            return result
        if verb == "ROLLBACK":
            self._writing = False
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def around(steps: Steps, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        steps.hit(f"before {name}")
        result = func(*args, **kwargs)
        steps.hit(f"after {name}")
        return result

    return wrapper


def instrument(cat: glarelite.Catalog, steps: Steps) -> None:
    database = cat._database
    database.conn = StepConnection(database.conn, steps)  # type: ignore[assignment]
    for name in ("write_direct", "commit", "discard", "delete", "remove_temporary"):
        method = getattr(_store.BlobStore, name, None)
        if method is not None:
            setattr(_store.BlobStore, name, around(steps, f"store.{name}", method))
    fsync_dir = _store.fsync_dir  # glarelite.fsutil.fsync_dir, as _store calls it

    def fsync_after_rename(path: str) -> None:
        steps.hit("after rename, before the directory fsync")
        fsync_dir(path)

    _store.fsync_dir = fsync_after_rename


def child(request: dict[str, Any]) -> None:
    steps = Steps(request.get("kill_at"))
    _, op = scenarios.SCENARIOS[request["scenario"]]
    cat = glarelite.open(request["path"], storage_options=request.get("options") or None)
    instrument(cat, steps)
    say(f"ready {os.getpid()}")
    op(cat, request.get("ctx") or {}, steps.hit)
    cat.close()
    say(f"done {os.getpid()} {json.dumps(steps.labels)}")


def main() -> None:
    while True:
        line = sys.stdin.readline()
        if not line:
            return  # the test closed our stdin: stop
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(request)
            except BaseException as exc:  # reported to the test, which fails on it
                say(f"error {os.getpid()} {type(exc).__name__}: {exc}")
                code = 1
            os._exit(code)
        say(f"forked {pid}")
        sys.stdin.readline()  # "reap"
        _, status = os.waitpid(pid, 0)
        say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    main()
