"""The ``glarelite`` command line: parse, call the library, print.

This is the only part of glarelite that prints, reads the environment for defaults,
exits, or imports ``mirror``. Every library error becomes one line on stderr and an
exit code from :data:`EXIT_CODES`; ``--debug`` shows the traceback instead.

``_app`` holds what the commands share; each command group has its module
(``_setup``: init, types, quotas; ``_artifacts``; ``_blobs``; ``_mirror``). Importing
them registers their commands on :data:`app`.
"""

from __future__ import annotations

# Registers the commands, in the order `glarelite --help` lists them (init first).
from . import _setup, _artifacts, _blobs, _mirror, _bundle, _keys, _serve  # noqa: F401  # isort: skip
from ._app import (
    CATALOG_ENV,
    DEFAULT_CATALOG,
    EXIT_CODES,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PRUNE_REFUSED,
    EXIT_REFUSED,
    EXIT_STORAGE,
    EXIT_TOO_LARGE,
    EXIT_USAGE,
    EXIT_VERIFICATION,
    STORAGE_OPTIONS_ENV,
    app,
    error_line,
    exit_code_for,
    parse_storage_options,
)
from ._mirror import DEST_OPTIONS_ENV

__all__ = [
    "CATALOG_ENV",
    "DEFAULT_CATALOG",
    "DEST_OPTIONS_ENV",
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PRUNE_REFUSED",
    "EXIT_REFUSED",
    "EXIT_STORAGE",
    "EXIT_TOO_LARGE",
    "EXIT_USAGE",
    "EXIT_VERIFICATION",
    "STORAGE_OPTIONS_ENV",
    "app",
    "error_line",
    "exit_code_for",
    "parse_storage_options",
]
