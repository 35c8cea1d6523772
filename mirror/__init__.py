"""mirror: copy a glarelite catalog's blobs into a static tree that any web server can
serve at a site with no internet, check such a tree, and carry it across an air gap
as a bundle (``export_bundle`` / ``import_bundle``).

The tree's format (paths, indexes, SHA256SUMS) is ``glarelite.tree``; sites read a tree
with ``glarelite.open_mirror``. Exit codes of a report: see ``mirror.report``.
"""

from __future__ import annotations

from .bundle import ExportReport, ImportReport, export_bundle, import_bundle
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
    "ExportReport",
    "FromOptions",
    "ImportReport",
    "SyncOptions",
    "SyncReport",
    "check_tree",
    "export_bundle",
    "import_bundle",
    "sync",
    "sync_from",
]
