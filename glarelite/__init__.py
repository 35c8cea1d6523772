"""glarelite: an artifact catalog that embeds in any Python application, modelled on
OpenStack Glare, plus a mirror for sites that have no internet.

The public API is exactly ``__all__``; everything in ``_modules`` is private.
"""

from __future__ import annotations

from . import tree
from ._maintenance import CheckResult, GcReport
from .catalog import Catalog, CatalogSettings, Scope, open
from .errors import (
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
    StorageFull,
    TooLarge,
    UpstreamChanged,
    VerificationError,
)
from .hooks import HookEvent, Hooks
from .mirror_reader import MirrorCatalog, open_mirror
from .models import Artifact, Blob, Change, Page
from .progress import NULL_PROGRESS, Progress
from .quotas import Quota
from .settings import HttpSettings, RetryPolicy
from .types import ArtifactType, Property
from .urls import internal_url

__all__ = [
    "NULL_PROGRESS",
    "Artifact",
    "ArtifactType",
    "Blob",
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
    "NetworkError",
    "NotFound",
    "Page",
    "Progress",
    "Property",
    "Quota",
    "QuotaExceeded",
    "ReadOnly",
    "RefusedLocation",
    "RetryPolicy",
    "Scope",
    "StorageFull",
    "TooLarge",
    "UpstreamChanged",
    "VerificationError",
    "internal_url",
    "open",
    "open_mirror",
    "tree",
]
