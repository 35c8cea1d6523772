"""``SyncOptions``: what a ``sync`` run does, as one frozen value (like the library's
``CatalogSettings``), so a caller builds it once, derives variations with
``dataclasses.replace`` and passes it on."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from glarelite import InvalidInput

from .signroot import as_paths

EXTERNALS = ("copy", "redirect")


@dataclass(frozen=True)
class SyncOptions:
    """Options of :func:`mirror.sync`; see its docstring and docs/api.md for each."""

    types: Iterable[str] | None = None
    tags: Iterable[str] | None = None
    names: Iterable[str] | None = None
    include_private: Iterable[str] | None = ()
    workers: int = 8
    delete: bool = False
    force: bool = False
    max_delete: int | None = None
    dry_run: bool = False
    verify: bool = False
    repair: bool = False
    storage_options: Mapping[str, Any] | None = None
    retries: int = 3
    backoff: float = 0.5
    segment_size: int = 64 << 20
    max_segments: int = 4
    checkpoint_every: int = 2000
    fsync: bool = True
    sign_key: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None
    externals: str = "copy"  # "redirect": leave external blobs at their origin (issue 20)
    grace: float = 3600.0  # seconds superseded index files stay for readers of the old root
    scan: int = 20_000  # blobs lstat-checked per run with nothing else to do (0: none)
    # ...for at most this long (None: no bound): on a cold inode cache, 20,000 lstats of
    # files in 20,000 folders take seconds; the next run goes on from where this one stopped
    scan_seconds: float | None = 0.25

    def __post_init__(self) -> None:
        # Iterables become tuples: a generator would be consumed by the first run, and a
        # frozen value must not change under its holder. A lone string stays one name.
        for name in ("types", "tags", "names", "include_private"):
            value = getattr(self, name)
            if value is None or isinstance(value, str):
                continue
            try:
                object.__setattr__(self, name, tuple(value))
            except TypeError:
                raise InvalidInput(f"{name} must be strings, not {value!r}") from None
        if self.storage_options is not None:
            object.__setattr__(self, "storage_options", dict(self.storage_options))
        # One path or several (a key rotation signs with two): always a tuple of paths.
        object.__setattr__(self, "sign_key", as_paths(self.sign_key))
        if self.externals not in EXTERNALS:
            raise InvalidInput(
                f"externals must be one of {', '.join(EXTERNALS)}, not {self.externals!r}"
            )
        if isinstance(self.grace, bool) or not isinstance(self.grace, (int, float)):
            raise InvalidInput(f"grace must be a number of seconds, not {self.grace!r}")
        if not self.grace >= 0:
            raise InvalidInput(f"grace must be >= 0, not {self.grace}")
        if isinstance(self.scan, bool) or not isinstance(self.scan, int) or self.scan < 0:
            raise InvalidInput(f"scan must be an integer >= 0, not {self.scan!r}")
        if self.scan_seconds is not None and (
            isinstance(self.scan_seconds, bool)
            or not isinstance(self.scan_seconds, (int, float))
            or not self.scan_seconds > 0
        ):
            raise InvalidInput(
                f"scan_seconds must be a number of seconds > 0 or None, not {self.scan_seconds!r}"
            )
        if self.workers < 1:
            raise InvalidInput(f"workers must be >= 1, not {self.workers}")

    @classmethod
    def build(cls, options: SyncOptions | None, overrides: Mapping[str, Any]) -> SyncOptions:
        """``options`` (default: the defaults) with keyword ``overrides`` applied."""
        base = options if options is not None else cls()
        if not isinstance(base, SyncOptions):
            raise InvalidInput(f"options must be a mirror.SyncOptions, not {options!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidInput(f"unknown sync option(s): {', '.join(unknown)}")
        if not overrides:
            return base
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        values.update(overrides)
        return cls(**values)
