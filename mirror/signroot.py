"""Signing a tree's root: ``index.signed.json`` holds the exact bytes of ``index.json``
and an Ed25519 signature by each sign key (see ``glarelite.signing``).

It is written right after the root index, replaced whole (temporary + rename), and
rewritten only when its content would change: Ed25519 is deterministic, so a rerun that
publishes nothing new leaves it byte for byte as it was, and still valid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from glarelite import InvalidInput, signing, tree

from .dest import Dest


def load_keys(paths: Sequence[str]) -> list[signing.SigningKey]:
    """The private keys of ``--sign-key`` / ``SyncOptions.sign_key`` (loaded before any
    work, so a bad key file fails the run before the tree is touched)."""
    keys = [signing.load_signing_key(p) for p in paths]
    if len({k.key_id for k in keys}) != len(keys):
        raise InvalidInput("the same sign key is given twice")
    return keys


def refuse_unsigned_publish(dest: Dest) -> None:
    """A signed tree stays signed: publishing a new root without a key would leave a
    stale signed root that edges trusting the key keep reading (or, dropped, an unsigned
    tree they refuse). Either way the edges would silently stop moving forward."""
    if dest.stat(signing.SIGNED_INDEX) is not None:
        raise InvalidInput(
            f"the tree {dest.url} is signed ({signing.SIGNED_INDEX}): pass the sign key "
            f"(--sign-key), or delete {signing.SIGNED_INDEX} to publish it unsigned "
            "(sites that trust a key will then refuse it)"
        )


def sign(dest: Dest, keys: Sequence[signing.SigningKey]) -> bool:
    """Sign the root index now in the tree; True when ``index.signed.json`` changed."""
    root = dest.read_bytes(tree.ROOT_INDEX)
    if root is None:
        return False  # nothing published yet (an empty selection): nothing to sign
    signed = signing.sign_root(root, keys)
    if dest.read_bytes(signing.SIGNED_INDEX) == signed:
        return False
    dest.write_file(signing.SIGNED_INDEX, [signed])
    dest.sync_dirs()
    return True


def as_paths(value: Any) -> tuple[str, ...]:
    """``sign_key`` as given (one path or several) as a tuple of paths."""
    if value is None:
        return ()
    if isinstance(value, (str, os.PathLike)):
        return (str(os.fspath(value)),)
    try:
        items = tuple(value)
    except TypeError:
        raise InvalidInput(f"sign_key must be key file paths, not {value!r}") from None
    if not all(isinstance(v, (str, os.PathLike)) for v in items):
        raise InvalidInput(f"sign_key must be key file paths, not {value!r}")
    return tuple(str(os.fspath(v)) for v in items)
