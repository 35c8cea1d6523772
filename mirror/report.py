"""What a run did, for people and machines, and the exit status it maps to.

Exit codes (``SyncReport.exit_code``; chosen to agree with ``glarelite.cli``'s table):

====  =====================================================================================
0     OK: every selected blob is in the tree and verified. Also a run with nothing to do
      (``nothing_to_do`` is true) and a dry run.
1     Some blobs failed for a local reason (the tree could not be written: disk full,
      permissions). The tree stays consistent; those artifacts are not published.
5     Some blobs failed verification: the bytes served differ from the catalog's record
      (changed upstream, corrupt store) or the tree holds different bytes at a path.
6     Some blobs could not be fetched (network) — and none failed verification.
10    Refused: the catalog knows none of the artifacts the tree publishes (a different
      catalog?) and ``force`` was not given — nothing was changed (``refused`` says so);
      or pruning (``delete=True``) would empty the tree or remove more than
      ``max_delete`` files — everything else succeeded, nothing was deleted (``prune``
      says so).
====  =====================================================================================

An error that stops the run before it starts is raised, not reported:
``glarelite.LockedError`` when another sync holds the tree (the CLI exits 4 for it),
``glarelite.InvalidInput`` for bad options (2).

``CheckReport.exit_code`` is 0 for a clean tree and 5 when any fault was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_VERIFICATION = 5
EXIT_NETWORK = 6
EXIT_PRUNE_REFUSED = 10

_VERIFICATION_ERRORS = {"ChecksumMismatch", "UpstreamChanged", "VerificationError", "TreeMismatch"}
_NETWORK_ERRORS = {"NetworkError", "ConnectionError", "TimeoutError"}


LIST_MAX = 10_000  # entries a report lists per kind (copied, repaired, failed, would_copy)


@dataclass
class SyncReport:
    dest: str
    dry_run: bool = False
    generation: int = 0
    published: bool = False  # a new generation of the indexes was written
    nothing_to_do: bool = False
    artifacts: int = 0  # artifacts the tree publishes after the run
    blobs: int = 0  # blob files the tree publishes after the run
    copied: list[dict[str, Any]] = field(default_factory=list)
    would_copy: list[dict[str, Any]] = field(default_factory=list)  # dry run
    would_check: int = 0  # dry run: tree files a real run would re-hash
    repaired: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    scanned: int = 0  # blob files checked with one lstat against the state
    # how the run found its work: "no-op" (the journal serial published), "journal" (the
    # artifacts changed since), "walk" (the whole selection), "" (dry run, refused...)
    mode: str = ""
    failed: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    would_delete: list[str] = field(default_factory=list)
    retained: int = 0  # files the tree wrote that are no longer selected, kept (no delete)
    # artifacts the catalog no longer publishes, removed from the tree: id, type,
    # reason (deactivated, deleted, made private), files
    withdrawn: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # ids left as the previous generation had them
    refused: str = ""  # why the run changed nothing (a catalog that knows no published artifact)
    # artifacts of the selected types the catalog does not publish: drafted, private (not
    # named by include_private), deactivated -> how many (those with none are left out)
    not_selected: dict[str, int] = field(default_factory=dict)
    prune: str = "not asked"
    bytes: int = 0  # bytes written into the tree (hard links write none)
    bytes_fetched: int = 0  # bytes read from the catalog (storage or upstream)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # How many of each there were: the lists above stop at LIST_MAX entries (a first
    # mirror of a million blobs does not keep a million dicts), the counts do not.
    copied_count: int = 0
    repaired_count: int = 0
    failed_count: int = 0
    would_copy_count: int = 0
    failed_errors: list[str] = field(default_factory=list)  # every error name among failed

    def add(self, kind: str, entry: dict[str, Any]) -> None:
        """Count ``entry`` as one more of ``kind`` (copied, repaired, failed, would_copy)
        and list it while the list holds fewer than LIST_MAX."""
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + 1)
        listed = getattr(self, kind)
        if len(listed) < LIST_MAX:
            listed.append(entry)
        if kind == "failed":
            error = str(entry.get("error", ""))
            if error not in self.failed_errors:
                self.failed_errors.append(error)

    @property
    def exit_code(self) -> int:
        if self.failed:
            errors = {f.get("error", "") for f in self.failed} | set(self.failed_errors)
            if errors & _VERIFICATION_ERRORS:
                return EXIT_VERIFICATION
            if errors <= _NETWORK_ERRORS:
                return EXIT_NETWORK
            return EXIT_FAILED
        if self.refused or self.prune.startswith("refused"):
            return EXIT_PRUNE_REFUSED
        return EXIT_OK

    @property
    def status(self) -> str:
        code = self.exit_code
        if code == EXIT_OK:
            if self.dry_run:
                return "dry-run"
            return "nothing-to-do" if self.nothing_to_do else "ok"
        if code == EXIT_PRUNE_REFUSED:
            return "refused" if self.refused else "prune-refused"
        return "failed"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "exit_code": self.exit_code}
        out.update(self.__dict__)
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass
class CheckReport:
    dest: str
    generation: int = 0
    artifacts: int = 0
    files: int = 0  # blob files checked
    bytes: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # format 2: bucket and shard files the root no longer pins, kept by the writer for a
    # grace period (readers of the previous root); not a fault
    superseded: int = 0

    @property
    def ok(self) -> bool:
        return not self.faults

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_VERIFICATION

    def fault(self, path: str, kind: str, detail: str) -> None:
        self.faults.append({"path": path, "kind": kind, "detail": detail})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok" if self.ok else "faults", "exit_code": self.exit_code}
        out.update(self.__dict__)
        out["seconds"] = round(self.seconds, 3)
        return out
