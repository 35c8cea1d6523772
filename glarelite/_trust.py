"""The reader's side of signed trees: load the root from ``index.signed.json``, verify it
against trusted keys, and refuse a rollback (a generation older than one already seen).

The highest generation seen per tree lives in memory (a ``refresh`` never goes back)
and, when the caller names a ``seen_file``, in that file, so that it holds across
processes at the site. The file is JSON ``{"trees": {location: generation}}``, updated
under an exclusive lock and replaced atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from . import fsutil, signing
from .errors import InvalidInput, NotFound, SignatureError

_MAX_SEEN_FILE = 4 << 20


class Trust:
    def __init__(
        self,
        trusted_keys: Iterable[Any],
        seen_file: str | os.PathLike[str] | None,
    ) -> None:
        if isinstance(trusted_keys, (str, bytes, os.PathLike)):
            trusted_keys = [trusted_keys]
        try:
            keys = [signing.load_public_key(k) for k in trusted_keys]
        except TypeError:
            raise InvalidInput("trusted_keys must be a list of keys or key files") from None
        if not keys:
            raise InvalidInput("trusted_keys is empty: give at least one key, or None")
        self.keys = keys
        self.seen_file = os.fspath(seen_file) if seen_file is not None else None
        self.highest = 0

    @classmethod
    def build(cls, trusted_keys: Iterable[Any] | None, seen_file: Any) -> Trust | None:
        """None when no key is trusted (the tree is read unsigned, as before)."""
        if trusted_keys is None:
            if seen_file is not None:
                raise InvalidInput("seen_file needs trusted_keys: only signed roots count")
            return None
        return cls(trusted_keys, seen_file)

    def load_root(self, open_file: Callable[[str], IO[bytes]], where: str) -> bytes:
        """The verified root index bytes of the tree at ``where``; ``open_file(path)``
        opens a file of the tree (NotFound when absent)."""
        name = f"{where}/{signing.SIGNED_INDEX}"
        try:
            f = open_file(signing.SIGNED_INDEX)
        except NotFound:
            raise SignatureError(
                f"mirror tree {where} is not signed (no {signing.SIGNED_INDEX}) and trusted "
                "keys were given: refused"
            ) from None
        try:
            data = _read_bounded(f, signing.MAX_SIGNED_SIZE, name)
        finally:
            f.close()
        root = signing.verify_root(data, self.keys, where=name)
        generation = signing.root_generation(root, where=name)
        self._not_older(where, generation)
        return root

    def _not_older(self, where: str, generation: int) -> None:
        if generation < self.highest:
            raise _rollback(where, generation, self.highest, "this reader")
        if self.seen_file is not None:
            with _locked(self.seen_file):
                trees = _load_seen(self.seen_file)
                seen = trees.get(where, 0)
                if generation < seen:
                    raise _rollback(where, generation, seen, self.seen_file)
                if generation > seen:
                    trees[where] = generation
                    _save_seen(self.seen_file, trees)
        self.highest = generation


def _rollback(where: str, generation: int, seen: int, by: str) -> SignatureError:
    return SignatureError(
        f"mirror tree {where} is at generation {generation}, older than generation {seen} "
        f"already seen ({by}): a rolled-back or replayed tree is refused"
    )


def _read_bounded(f: IO[bytes], limit: int, name: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        data = f.read(min(1 << 20, limit + 1 - total))
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        total += len(data)
        if total > limit:
            raise SignatureError(f"{name} is larger than {limit} bytes: refused")


@contextlib.contextmanager
def _locked(seen_file: str) -> Iterator[None]:
    import fcntl

    try:
        fd = os.open(seen_file + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot lock the seen file {seen_file}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a small write only
        yield
    finally:
        os.close(fd)


def _load_seen(seen_file: str) -> dict[str, int]:
    try:
        with open(seen_file, "rb") as f:
            raw = f.read(_MAX_SEEN_FILE + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"cannot read the seen file {seen_file}: {exc.strerror}") from None
    # A damaged file must not silently forget what was seen: that would allow a rollback.
    problem = f"the seen file {seen_file} is damaged; repair or remove it knowingly"
    if len(raw) > _MAX_SEEN_FILE:
        raise InvalidInput(problem)
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidInput(problem) from None
    trees = data.get("trees") if isinstance(data, dict) else None
    if not isinstance(trees, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in trees.values()
    ):
        raise InvalidInput(problem)
    return trees


def _save_seen(seen_file: str, trees: dict[str, int]) -> None:
    # atomic and durable (the folder fsynced): a lost rename would forget a generation
    text = json.dumps({"trees": trees}, indent=1, sort_keys=True) + "\n"
    try:
        with fsutil.atomic_file(seen_file) as out:
            out.write(text.encode())
    except OSError as exc:
        raise InvalidInput(f"cannot write the seen file {seen_file}: {exc.strerror}") from None
