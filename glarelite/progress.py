"""The progress protocol: long work (uploads, registrations, downloads, mirror runs)
reports through it; the library never draws anything itself. The CLI implements it
with rich progress bars on a terminal and with nothing when piped."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, key: str, description: str, total: int | None) -> None:
        """A unit of work named ``key`` starts; ``total`` bytes (or items) if known."""

    def advance(self, key: str, amount: int) -> None:
        """``amount`` more bytes (or items) of ``key`` are done."""

    def end(self, key: str, ok: bool = True) -> None:
        """``key`` is finished (``ok=False``: it failed)."""


class NullProgress:
    """Reports nothing; the default."""

    def begin(self, key: str, description: str, total: int | None) -> None:
        return None

    def advance(self, key: str, amount: int) -> None:
        return None

    def end(self, key: str, ok: bool = True) -> None:
        return None


NULL_PROGRESS = NullProgress()
