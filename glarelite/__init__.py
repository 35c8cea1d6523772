"""glarelite: an artifact catalog that embeds in any Python application, modelled on
OpenStack Glare, plus a mirror for sites that have no internet.

The public API is exactly ``__all__``; everything in ``_modules`` is private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import fsutil, policy
from ._core import CatalogSettings
from ._maintenance import CheckResult, GcReport
from ._readable import ReadableCatalog
from .catalog import Catalog, open
from .errors import (
    AfterHookFailed,
    ChecksumMismatch,
    Conflict,
    DestinationError,
    Forbidden,
    GlareliteError,
    IllegalTransition,
    InvalidInput,
    JournalTrimmed,
    LockedError,
    NetworkError,
    NotFound,
    QuotaExceeded,
    ReadOnly,
    RefusedLocation,
    SignatureError,
    StorageFull,
    TooLarge,
    UpstreamChanged,
    VerificationError,
)
from .hooks import HookEvent, Hooks
from .models import Artifact, Blob, Change, Page
from .policy import Policy, Scope
from .progress import NULL_PROGRESS, Progress
from .quotas import Quota
from .settings import HttpSettings, RetryPolicy
from .types import ArtifactType, BlobField, Property
from .urls import decode_key, encode_key, internal_url, join_base

if TYPE_CHECKING:
    from . import signing, tree
    from .mirror_reader import (
        MirrorCatalog,
        MirrorSettings,
        TreeFiles,
        open_mirror,
        open_tree_files,
    )

# Loaded on first use: a catalog needs neither the tree format nor the tree reader.
_LAZY = {"tree": (".tree", None), "MirrorCatalog": (".mirror_reader", "MirrorCatalog"),
         "MirrorSettings": (".mirror_reader", "MirrorSettings"),
         "open_mirror": (".mirror_reader", "open_mirror"),
         "TreeFiles": (".mirror_reader", "TreeFiles"),
         "open_tree_files": (".mirror_reader", "open_tree_files"),
         "signing": (".signing", None)}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'glarelite' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "NULL_PROGRESS",
    "AfterHookFailed",
    "Artifact",
    "ArtifactType",
    "Blob",
    "BlobField",
    "Catalog",
    "CatalogSettings",
    "Change",
    "CheckResult",
    "ChecksumMismatch",
    "Conflict",
    "DestinationError",
    "Forbidden",
    "GcReport",
    "GlareliteError",
    "HookEvent",
    "Hooks",
    "HttpSettings",
    "IllegalTransition",
    "InvalidInput",
    "JournalTrimmed",
    "LockedError",
    "MirrorCatalog",
    "MirrorSettings",
    "NetworkError",
    "NotFound",
    "Page",
    "Policy",
    "Progress",
    "Property",
    "Quota",
    "QuotaExceeded",
    "ReadOnly",
    "ReadableCatalog",
    "RefusedLocation",
    "RetryPolicy",
    "Scope",
    "SignatureError",
    "StorageFull",
    "TooLarge",
    "TreeFiles",
    "UpstreamChanged",
    "VerificationError",
    "decode_key",
    "encode_key",
    "fsutil",
    "internal_url",
    "join_base",
    "open",
    "open_mirror",
    "open_tree_files",
    "policy",
    "signing",
    "tree",
]
