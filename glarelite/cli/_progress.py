"""Progress drawing for the command line: :class:`glarelite.Progress` on rich bars.

Only the CLI uses this module. The library reports through the ``Progress`` protocol and
never draws; here each ``begin`` becomes a rich task on stderr, removed again at ``end``
so that a mirror of thousands of blobs shows only what is in flight plus its totals.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as _RichProgress
from rich.table import Column
from rich.text import Text

from ._format import human_size as _human  # one definition for every size the CLI prints


def counts_items(key: str, item_keys: Collection[str]) -> bool:
    """Whether the task ``key`` counts items (artifacts, blobs) rather than bytes. The
    Progress protocol has no unit: the CLI names the item-counting keys of the work it
    runs (``Catalog.check`` reports "check" in blobs; everything else counts bytes)."""
    return key in item_keys


class _AmountColumn(ProgressColumn):
    """Bytes (``12.3/45.6 MB``) for transfers, ``n/m`` for item counts."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn(binary_units=True)
        self._items = MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        column = self._items if task.fields.get("items") else self._bytes
        return Text.from_markup(str(column.render(task)))


class _SpeedColumn(ProgressColumn):
    def __init__(self) -> None:
        super().__init__()
        self._speed = TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("items"):
            return Text("")
        rendered = self._speed.render(task)
        return rendered if isinstance(rendered, Text) else Text(str(rendered))


class RichProgress:
    """A :class:`glarelite.Progress` drawn with rich on ``console`` (stderr by default).

    Use it as a context manager around the work. Thread-safe: mirror workers report
    from several threads at once.
    """

    def __init__(self, console: Console | None = None, *, item_keys: Collection[str] = ()) -> None:
        self.console = console or Console(stderr=True)
        self.item_keys = frozenset(item_keys)
        # One line per bar at any width: the description gives way (ellipsis in the
        # middle is not available: the label ends with the field, the start names the
        # type and artifact, so it is cut at the end), the numbers keep their room.
        narrow = self.console.width < 100
        self._bars = _RichProgress(
            SpinnerColumn(),
            TextColumn(
                "[progress.description]{task.description}",
                table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=12),
            ),
            BarColumn(bar_width=10 if narrow else 30),
            TaskProgressColumn(),
            _AmountColumn(),
            *(() if narrow else (_SpeedColumn(),)),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            expand=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self.failed: list[str] = []

    # -- context -------------------------------------------------------------------
    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._interrupted(issubclass(exc_type, KeyboardInterrupt))
        self._bars.stop()

    def _interrupted(self, by_user: bool) -> None:
        """Bars still open when the work stopped: neither done nor failed."""
        word = "interrupted" if by_user else "stopped"
        with self._lock:
            open_tasks, self._tasks = list(self._tasks.values()), {}
            for task in open_tasks:
                current = self._bars.tasks[self._index(task)]
                self._bars.update(task, description=f"[yellow]‖ {word}[/] {current.description}")
                self._bars.stop_task(task)
        if open_tasks and by_user:
            self.console.print(
                "[yellow]‖[/] interrupted: run the same command again to resume "
                "(what was copied is kept; large downloads continue where they stopped)",
                highlight=False,
            )

    # -- the Progress protocol -----------------------------------------------------
    def begin(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            old = self._tasks.pop(key, None)
            if old is not None:
                self._bars.remove_task(old)
            self._tasks[key] = self._bars.add_task(
                _short(description), total=total, items=counts_items(key, self.item_keys)
            )

    def advance(self, key: str, amount: int) -> None:
        with self._lock:
            task = self._tasks.get(key)
        if task is not None:
            self._bars.advance(task, amount)

    def end(self, key: str, ok: bool = True) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
            if task is None:
                return
            if not ok:
                self.failed.append(key)
            current = self._bars.tasks[self._index(task)]
            if counts_items(key, self.item_keys) or not ok:
                # summaries stay on screen; failures too, marked
                mark = "[green]✓[/]" if ok else "[red]✗[/]"
                self._bars.update(
                    task,
                    description=f"{mark} {current.description}",
                    total=current.total if current.total is not None else current.completed,
                )
                self._bars.stop_task(task)
            else:
                self._bars.remove_task(task)
                self.console.print(
                    f"[green]✓[/] {current.description} ({_human(int(current.completed))})",
                    highlight=False,
                )

    def _index(self, task: TaskID) -> int:
        for i, t in enumerate(self._bars.tasks):
            if t.id == task:
                return i
        raise KeyError(task)


def _short(text: str, width: int = 60) -> str:
    """Long descriptions (tree paths, URLs) keep their start (the type, the artifact)
    and their end (the field); the middle (an id, a folder) gives way."""
    if len(text) <= width:
        return text
    head = width // 2
    return text[:head] + "…" + text[-(width - head - 1) :]
