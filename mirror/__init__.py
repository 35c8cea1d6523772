"""mirror: copy a glarelite catalog's blobs into a static tree that any web server can
serve at a site with no internet, and check such a tree.

The tree's format (paths, indexes, SHA256SUMS) is ``glarelite.tree``; sites read a tree
with ``glarelite.open_mirror``. Exit codes of a report: see ``mirror.report``.
"""

from __future__ import annotations

from .check import check_tree
from .hop import FromOptions, sync_from
from .options import SyncOptions
from .report import (
    EXIT_FAILED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_PRUNE_REFUSED,
    EXIT_VERIFICATION,
    CheckReport,
    SyncReport,
)
from .sync import sync

__all__ = [
    "EXIT_FAILED",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_PRUNE_REFUSED",
    "EXIT_VERIFICATION",
    "CheckReport",
    "FromOptions",
    "SyncOptions",
    "SyncReport",
    "check_tree",
    "sync",
    "sync_from",
]
