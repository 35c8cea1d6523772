"""The exception tree: one root, each leaf also a fitting builtin.

The CLI maps each leaf to an exit code (see ``glarelite.cli.EXIT_CODES``), so a script
can tell bad input from a missing artifact from a verification failure.
"""

from __future__ import annotations


class GlareliteError(Exception):
    """Root of every error glarelite raises on purpose."""


class InvalidInput(GlareliteError, ValueError):
    """The caller gave something malformed: unknown field, wrong kind, bad semver, unsafe name."""


class NotFound(GlareliteError, KeyError):
    """No such artifact, type, blob or marker visible to the caller."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(GlareliteError, RuntimeError):
    """The request clashes with the current state: a duplicate, a blob still saving, a lock."""


class Forbidden(GlareliteError, PermissionError):
    """The caller can see the artifact but may not change it, or the catalog is read-only."""


class IllegalTransition(Forbidden):
    """A status change the lifecycle does not allow (or a change to a frozen field)."""


class TooLarge(GlareliteError, ValueError):
    """A blob or blob dict exceeds its size cap."""


class QuotaExceeded(GlareliteError, RuntimeError):
    """A quota on artifact count or stored bytes would be exceeded."""


class VerificationError(GlareliteError, ValueError):
    """Bytes do not match what the catalog recorded."""


class ChecksumMismatch(VerificationError):
    """Size or sha256 of bytes read differ from the record (corrupt store, changed upstream)."""


class UpstreamChanged(VerificationError):
    """An external blob's bytes changed upstream since registration; it is not served."""


class NetworkError(GlareliteError, ConnectionError):
    """An external location could not be fetched (timeouts, resets, HTTP errors).

    ``retryable`` is False when the fetcher already spent the fetch's retry budget (or
    the failure is final, such as a 404): asking again at once repeats what failed. It
    is True for a request that had no retries of its own (a pipelined answer that broke:
    an ordinary fetch, with the budget, may still succeed)."""

    def __init__(self, *args: object, retryable: bool = False) -> None:
        super().__init__(*args)
        self.retryable = retryable


class RefusedLocation(InvalidInput):
    """A URL refused by the location guard (scheme, userinfo, private address, redirect)."""


class LockedError(Conflict):
    """Another process holds the lock (for instance another mirror of the same tree)."""


class DestinationError(GlareliteError, OSError):
    """A mirror destination cannot be written at all (read-only, missing, no permission):
    nothing was changed in it."""


class StorageFull(GlareliteError, OSError):
    """The disk under the catalog file is full or failing (SQLite: database or disk is
    full, disk I/O error): the write did not happen; what was committed before is intact."""


class ReadOnly(Forbidden):
    """A write was attempted on a read-only catalog (a mirror tree)."""


class AfterHookFailed(GlareliteError, RuntimeError):
    """An after hook raised once its operation had already committed: the change stands
    (``result`` holds what the operation returned), only the hook failed (its exception
    is ``__cause__``)."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class SignatureError(VerificationError):
    """A mirror tree is not signed by a trusted key, its signature does not verify, or
    it is older than a generation already seen at the site (a rollback)."""


class JournalTrimmed(GlareliteError, LookupError):
    """The change journal cannot answer "what changed since serial N": its entries after N
    were trimmed (or N is beyond the catalog's serial: another or a restored catalog).
    A reader falls back to a full walk and then follows the journal from ``serial()``."""
