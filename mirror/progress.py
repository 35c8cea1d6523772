"""Progress from worker threads, serialised: a Progress implementation (the CLI's rich
bars) need not be thread-safe."""

from __future__ import annotations

import threading

from glarelite import NULL_PROGRESS, Progress


class SafeProgress:
    def __init__(self, progress: Progress | None) -> None:
        self._progress: Progress = progress if progress is not None else NULL_PROGRESS
        self._lock = threading.Lock()

    def begin(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            self._progress.begin(key, description, total)

    def advance(self, key: str, amount: int) -> None:
        with self._lock:
            self._progress.advance(key, amount)

    def end(self, key: str, ok: bool = True) -> None:
        with self._lock:
            self._progress.end(key, ok)
