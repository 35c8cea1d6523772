"""``sync``: make a static tree at DEST hold every selected blob of a catalog.

A run: lock the tree → read its state → (nothing changed? stop here, having read no
blob) → plan → re-hash the tree files that need it → copy what is missing or damaged
(parallel, verified, atomic) → publish indexes → withdraw what the catalog no longer
publishes → save state → prune when asked and clean.

The tree is the mirror's own: a blob file that is missing, or whose bytes differ from the
catalog's record, is fetched again and replaced (a new file renamed over the path, so a
hard link to damaged bytes is broken, and every path of that inode is re-checked since
they share its stat). A rerun notices damage from one ``lstat`` per blob (size and
mtime against the state); damage that kept both needs ``verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, cast

from glarelite import (
    DestinationError,
    Forbidden,
    GlareliteError,
    NotFound,
    Progress,
    ReadableCatalog,
    tree,
)

from . import journal as journaling
from . import partial, signroot
from . import plan as planning
from . import redirects as redirecting
from . import scan as scanning
from .copy import DEFER_MAX, Cancelled, Copier, Job, Outcome, describe, hash_file
from .dest import Dest, open_dest, temporary_is_abandoned
from .lock import TreeLock
from .options import SyncOptions
from .progress import SafeProgress
from .report import SyncReport
from .select import Selection
from .state import State, Store, Tracked
from .walk import BATCH_MAX, Walk, catalog_id
from .walk import UNKNOWN as _UNKNOWN
from .worktable import WorkTable

_SCAN_CHUNK = 1000  # state rows read at a time by the bounded scan


def sync(
    catalog: ReadableCatalog,
    dest: str,
    options: SyncOptions | None = None,
    *,
    progress: Progress | None = None,
    **overrides: Any,
) -> SyncReport:
    """Mirror the selected blobs of ``catalog`` (a ``glarelite.Catalog`` or, to mirror a
    tree onwards, a ``MirrorCatalog``) into ``dest`` (a folder or fsspec URL), as
    ``options`` (a :class:`SyncOptions`) say. Keyword arguments named like its fields
    (``workers=2``) are a convenience: they override ``options`` for this call; an
    unknown one raises glarelite.InvalidInput.

    Selection: active artifacts that are public, narrowed by ``types``, ``tags`` (an
    artifact must carry all of them) and ``names``; private ones only when their name is
    in ``include_private``. A tree file that is missing or holds other bytes than the
    catalog's is fetched again and replaced (reported in ``repaired``); when its bytes
    cannot be had, the artifact stays published as the previous generation had it (and
    the failure is reported). ``verify`` re-hashes every blob already in the tree instead
    of trusting one ``lstat``; ``repair`` is accepted for compatibility (repairing is
    always on). An artifact the tree published that the catalog no longer publishes
    (deactivated, deleted, made private) is withdrawn: its files and index entries go,
    ``delete`` or not. ``delete`` prunes what merely fell out of the selection (see
    ``mirror.prune``). When the catalog knows none of the artifacts the tree publishes
    (a different catalog?), nothing is changed unless ``force``.
    ``dry_run`` reports what would change and writes nothing (it takes no lock).
    ``sign_key`` (one private key file or several) signs the tree's root after every
    run (``index.signed.json``, see ``glarelite.signing``); a signed tree refuses a run
    without it (InvalidInput). ``workers`` blobs are copied at once; a blob of at least
    twice ``segment_size`` is read as up to ``max_segments`` parallel ranges.
    ``fsync=False`` (local trees) skips flushing each file before its rename: safe
    against a killed run, not power loss. ``externals="redirect"`` leaves external blobs
    at their origin: indexes mark them, ``redirects.nginx.conf`` maps their internal URLs
    to the origin, and one changed upstream is left out (see ``mirror.redirects``).
    Raises glarelite.LockedError when another sync of ``dest`` is running, and
    glarelite.DestinationError when ``dest`` cannot be written at all (read-only, no
    permission); failures of single blobs are in the report instead.
    """
    started = time.monotonic()
    opts = SyncOptions.build(options, overrides)
    dry_run = opts.dry_run
    sign_keys = signroot.load_keys(cast("tuple[str, ...]", opts.sign_key))
    selection = Selection.build(
        catalog,
        types=opts.types,
        tags=opts.tags,
        names=opts.names,
        include_private=opts.include_private,
    )
    try:
        target = open_dest(dest, opts.storage_options, create=not dry_run, fsync=opts.fsync)
        lock = None if dry_run else TreeLock(target).acquire()
    except OSError as exc:
        if isinstance(exc, GlareliteError):
            raise
        # the tree is untouched: a clear error, not a report of a run that never began
        error = DestinationError(f"cannot write the mirror tree {dest}: {exc.strerror or exc}")
        error.errno = exc.errno
        raise error from exc
    report = SyncReport(dest=target.url, dry_run=dry_run)
    run: _Run | None = None
    try:
        run = _Run(
            catalog,
            target,
            selection,
            report,
            SafeProgress(progress),
            workers=opts.workers,
            delete=opts.delete,
            force=opts.force,
            max_delete=opts.max_delete,
            dry_run=dry_run,
            verify=opts.verify,
            repair=opts.repair,
            checkpoint_every=opts.checkpoint_every,
            redirect=opts.externals == "redirect",
            grace=float(opts.grace),
            scan=opts.scan,
            scan_seconds=opts.scan_seconds,
            copier_options={
                "retries": opts.retries,
                "backoff": opts.backoff,
                "segment_size": opts.segment_size,
                "max_segments": opts.max_segments,
            },
        )
        if not dry_run and not sign_keys:
            signroot.refuse_unsigned_publish(target)
        run.execute(crashed=lock is not None and lock.previous is not None)
        if not dry_run and sign_keys:
            # Every run, a no-op one too: a tree signed for the first time, a new key
            # during a rotation, or a run killed before it signed are all caught up here.
            signroot.sign(target, sign_keys)
        if run.walked:  # count queries: not on a no-op or journal run
            report.not_selected = selection.not_selected(catalog)
    finally:
        if lock is not None:
            lock.release()
        if run is not None:
            run.store.close()
        report.seconds = time.monotonic() - started
    return report


class _Run:
    def __init__(
        self,
        catalog: ReadableCatalog,
        dest: Dest,
        selection: Selection,
        report: SyncReport,
        progress: SafeProgress,
        *,
        workers: int,
        delete: bool,
        force: bool,
        max_delete: int | None,
        dry_run: bool,
        verify: bool,
        repair: bool,
        checkpoint_every: int,
        copier_options: dict[str, Any],
        redirect: bool = False,
        grace: float = 3600.0,
        scan: int = 200_000,
        scan_seconds: float | None = None,
    ) -> None:
        self.catalog = catalog
        self.dest = dest
        self.selection = selection
        self.report = report
        self.progress = progress
        self.workers = workers
        self.delete = delete
        self.force = force
        self.max_delete = max_delete
        self.dry_run = dry_run
        self.verify = verify
        self.repair = repair
        self.checkpoint_every = max(1, checkpoint_every)
        self.redirect = redirect
        # The mode is part of what the tree publishes: switching it is never a no-op.
        self.signature = selection.signature + ("|externals=redirect" if redirect else "")
        self.stop = threading.Event()
        self.copier = Copier(catalog, dest, progress=progress, stop=self.stop, **copier_options)
        self.state = State()
        self.store = Store(dest)
        self.grace = grace
        self.scan = scan
        self.scan_seconds = scan_seconds
        self.serial: int | None = None
        self.walked = False  # the whole selection was walked (the report's hints need it)
        self.good: set[str] = set()
        self._repair_reasons: dict[str, str] = {}  # path -> why it is being replaced
        self.failed_shas: set[str] = set()  # blobs that failed (their partials are kept)
        self.work: WorkTable | None = None  # a walk's working tables, while it runs
        self._since_checkpoint = 0

    # -- the run ------------------------------------------------------------------------
    def execute(self, *, crashed: bool) -> None:
        # The serial first: a change committed while this run walks is seen by the next.
        self.serial = _catalog_serial(self.catalog)
        if crashed:
            self._clean_temporaries()
        if not self.verify and self._fast():
            return
        self.walked = True
        self.report.mode = "walk" if not self.dry_run else ""
        Walk(self).execute()

    def _retire_format1(self, now: float, held: set[str]) -> None:
        """A format 1 tree's type indexes and SHA256SUMS: superseded by the new root, kept
        for the grace period like any superseded index file (``held``: the types the
        tree holds artifact index files of)."""
        types = {*self.selection.types, *held}
        for path in [tree.SUMS, *(tree.type_index_path(t) for t in sorted(types))]:
            if path not in self.state.retired and self.dest.stat(path) is not None:
                self.state.retired[path] = now

    def _remove_retired(self, now: float) -> None:
        """Remove superseded index files older than the grace period (never one the
        current root pins again: publishing a file takes it off the list)."""
        due = sorted(p for p, since in self.state.retired.items() if now - since >= self.grace)
        if not due:
            return
        for path in due:
            # A row naming a file the root pins is wrong (the state is hostile input):
            # the row goes, the file stays.
            if not self.store.pinned(path, self.state.published.types):
                self.dest.delete(path)
            del self.state.retired[path]
        self.dest.remove_empty_dirs(due)
        self.dest.sync_dirs()

    # -- fast paths ------------------------------------------------------------------
    def _fast(self) -> bool:
        """A run with nothing to do, or one driven by the journal: True when done,
        False when the whole selection must be walked. Decided from the catalog's
        journal serial and a few state rows — no catalog walk, no count query — after
        the bounded lstat scan of ``scan`` blobs (self-healing)."""
        if self.serial is None:
            return False  # a catalog without a journal (a mirror tree): walk
        head = self.store.head()
        if head is None or not (head.complete and head.generation and head.serial >= 0):
            return False
        if head.catalog != catalog_id(self.catalog) or head.selection != self.signature:
            return False
        if set(head.types) != set(self.selection.types) or (self.delete and head.retained):
            return False
        definitions = self.selection.definitions
        if any(head.types[t].get("definition") != definitions[t].to_json() for t in head.types):
            return False  # a type's definition changed (not in the journal): walk
        raw = self.dest.read_bytes(tree.ROOT_INDEX)
        if raw is None or hashlib.sha256(raw).hexdigest() != head.root_sha256:
            return False  # a crash between root and state, or someone else wrote it
        if (self.dest.stat(redirecting.INCLUDE) is None) == self.redirect:
            return False  # the redirect rules are missing, or left from a redirect run
        cursor = self._scan(head.scan_cursor)
        if cursor is None:
            return False  # damage found: the walk repairs it
        if head.serial != self.serial:
            if self.dry_run or self.delete or self.redirect:
                # the walk reports what would change, prunes, and writes the redirect
                # rules whole
                return False
            try:
                return journaling.run_changes(self, head, cursor)
            except journaling.WalkInstead:
                self.state = State()
                self.good = set()
                return False
        due = self.store.retired_due(time.time(), self.grace)
        if not self.dry_run and (cursor != head.scan_cursor or due):
            try:
                self.state = self.store.load_partial([], self.selection.types)
            except (ValueError, TypeError, sqlite3.Error):
                self.state = State()
                return False  # a state that does not read back: the walk rebuilds it
            self.state.published.scan_cursor = cursor
            self._remove_retired(time.time())
            self.store.save(self.state)
        report = self.report
        report.mode = "no-op"
        report.nothing_to_do = True
        report.generation = head.generation
        report.artifacts = sum(int(t.get("artifacts", 0)) for t in head.types.values())
        report.blobs = sum(int(t.get("blobs", 0)) for t in head.types.values())
        report.skipped = report.blobs
        report.retained = head.retained
        return True

    @contextlib.contextmanager
    def pool(self) -> Iterator[ThreadPoolExecutor]:
        """``workers`` threads for copies and index writes. On any failure (Ctrl-C too)
        the copies stop, what was verified so far is saved, and the error goes on."""
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="mirror")
        try:
            yield executor
        except BaseException:
            self.stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
            self._checkpoint(force=True)
            raise
        executor.shutdown(wait=True)

    def _scan(self, cursor: str) -> str | None:
        """lstat up to ``scan`` blobs from ``cursor`` on (wrapping round), for at most
        ``scan_seconds``: the next cursor ("" after a full round), or None when one is
        missing or changed. Remote trees: not scanned (a request per object); ``verify``
        re-hashes them."""
        if not self.scan or not self.dest.local:
            return cursor
        deadline = scanning.deadline(self.scan_seconds)
        at, wrapped, checked = cursor, False, 0
        try:
            while checked < self.scan:
                rows = self.store.read_blobs(at, min(_SCAN_CHUNK, self.scan - checked))
                if wrapped:
                    rows = [r for r in rows if r[0] <= cursor]
                if not rows:
                    if wrapped or not cursor:
                        at = ""  # every blob checked: start again from the first next time
                        break
                    wrapped, at = True, ""
                    continue
                done = scanning.unchanged(self.dest, rows, deadline)
                if done is None:
                    return None  # damage found: the walk repairs it
                if done:
                    checked += done
                    at = rows[done - 1][0]
                if done < len(rows):
                    break  # out of time: the next run goes on from here
        except (ValueError, OSError, sqlite3.Error):
            return None
        self.report.scanned = checked
        return at

    # -- phase 1: tree files that need re-hashing ------------------------------------------
    def _check_tree_files(self, plan: planning.Plan, executor: ThreadPoolExecutor) -> None:
        self.good.update(plan.skip)
        self.report.skipped += len(plan.skip)
        if not plan.check:
            return
        total = sum(size for _, size in plan.check.values())
        self.progress.begin("verify", "verify tree files", total)

        def check(path: str) -> tuple[str, int, str, BaseException | None]:
            try:
                size, sha = hash_file(self.dest, path, lambda n: self.progress.advance("verify", n))
            except OSError as exc:
                return path, -1, "", exc
            return path, size, sha, None

        for path, size, sha, exc in executor.map(check, sorted(plan.check)):
            want_sha, want_size = plan.check[path]
            if exc is None and (size, sha) == (want_size, want_sha):
                self._record(path, want_sha, want_size)
                plan.have.setdefault(want_sha, path)
                self.report.skipped += 1
                continue
            found = f"{type(exc).__name__}: {exc}" if exc else f"{size} bytes, sha256 {sha}"
            # The tree is ours: fetch the catalog's bytes again and rename them over it.
            plan.fetch[path] = (want_sha, want_size)
            plan.missing.add(path)
            self._repair_reasons[path] = f"held different bytes ({found})"
        self.progress.end("verify")

    # -- phase 2: copies ------------------------------------------------------------------
    def _groups(self, plan: planning.Plan) -> list[tuple[str, int, list[str]]]:
        """(sha256, size, tree paths) of each blob to fetch, largest first (a big blob
        started last would run alone at the end), paths in order within a blob. Plain
        tuples: the Job objects are made batch by batch (``_tasks``), so a walk of a
        million blobs does not hold a million jobs with their source lists."""
        groups: dict[str, tuple[str, int, list[str]]] = {}
        for path in sorted(plan.fetch):
            sha, size = plan.fetch[path]
            group = groups.get(sha)
            if group is None:
                group = groups[sha] = (sha, size, [])
            group[2].append(path)
        return sorted(groups.values(), key=lambda g: -g[1])

    def _job(self, plan: planning.Plan, group: tuple[str, int, list[str]]) -> Job:
        """The copy job of one blob; where to read it is the job's now (dropped from the
        plan, which a walk keeps to the jobs in flight)."""
        sha, size, targets = group
        label = plan.labels.get(targets[0], targets[0])
        for path in targets:
            plan.labels.pop(path, None)
        return Job(sha, size, targets, plan.sources.pop(sha, []), plan.have.pop(sha, None), label)

    def _copy(self, plan: planning.Plan, executor: ThreadPoolExecutor) -> None:
        groups = self._groups(plan)
        if not groups:
            return
        total = sum(size for sha, size, _ in groups if plan.have.get(sha) is None)
        self._pump(plan, self._tasks(plan, groups), total, executor)

    def _pump(
        self,
        plan: planning.Plan,
        tasks: Iterator[tuple[Callable[[Any], list[Outcome]], Any]],
        total: int,
        executor: ThreadPoolExecutor,
    ) -> None:
        """Run copy ``tasks`` (``plan.fetch`` names the paths they copy), a few per worker
        at a time, collecting outcomes as they finish."""
        self.progress.begin("mirror", f"mirror into {self.dest.url}", total)
        pending: set[Future[list[Outcome]]] = set()
        finished = False
        try:
            # Bounded submission: a million queued futures would hold a million closures.
            for run, work in tasks:
                pending.add(executor.submit(run, work))
                if len(pending) >= self.workers * 4:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    self._collect(plan, done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                self._collect(plan, done)
            finished = True
        finally:
            # Interrupted (Ctrl-C, an error): the bar is left open, neither done nor
            # failed; the drawing shows it as interrupted.
            if finished:
                self.progress.end("mirror", ok=not self.report.failed)

    def _tasks(
        self, plan: planning.Plan, groups: list[tuple[str, int, list[str]]]
    ) -> Iterator[tuple[Callable[[Any], list[Outcome]], Any]]:
        """One task per large job; small ones fetched from the catalog go in batches, so
        that one request per blob does not dominate (Catalog.open_blobs pipelines them)."""

        def batched(group: tuple[str, int, list[str]]) -> bool:
            sha, size, _ = group
            return plan.have.get(sha) is None and bool(plan.sources.get(sha)) and size <= DEFER_MAX

        count = sum(1 for g in groups if batched(g))
        # Enough batches to keep every worker busy, few enough to amortize each one.
        size = max(8, min(BATCH_MAX, -(-count // (self.workers * 4)) if count else 1))
        for group in groups:  # largest first (as sorted): a big one started last runs alone
            if not batched(group):
                yield self.copier.run, self._job(plan, group)
        batch: list[Job] = []
        for group in groups:
            if batched(group):
                batch.append(self._job(plan, group))
                if len(batch) == size:
                    yield self.copier.run_batch, batch
                    batch = []
        if batch:
            yield self.copier.run_batch, batch

    def _collect(self, plan: planning.Plan, done: set[Future[list[Outcome]]]) -> None:
        for future in done:
            try:
                outcomes = future.result()
            except Cancelled:
                raise
            for o in outcomes:
                # Done with (copied or failed): dropped from the plan.
                sha, size = plan.fetch.pop(o.path)
                missing = o.path in plan.missing
                plan.missing.discard(o.path)
                why = self._repair_reasons.pop(o.path, None)
                if missing and why is None:
                    why = "was missing from the tree"
                if not o.ok:
                    reason = f"{why}; not repaired: {o.reason}" if why else o.reason
                    self.failed_shas.add(sha)
                    if self.work is not None:
                        self.work.add_failed(o.path)
                    self._fail(o.path, o.error, reason)
                    continue
                self._record(o.path, sha, size, o.stat)
                self.report.bytes += o.written
                self.report.bytes_fetched += o.fetched
                entry = {"path": o.path, "size": size, "sha256": sha, "how": o.how}
                if missing:
                    self.report.add("repaired", {**entry, "reason": why})
                else:
                    self.report.add("copied", entry)
                self._since_checkpoint += 1
        self._checkpoint()

    def _record(self, path: str, sha: str, size: int, stat: tuple[int, int] | None = None) -> None:
        if stat is None:
            stat = self.dest.stat(path) if self.dest.local else (size, 0)
        self.state.blobs[path] = [sha, size, stat[1] if stat else 0]
        self.good.add(path)

    def _fail(self, path: str, error: str, reason: str) -> None:
        self.report.add("failed", {"path": path, "error": error, "reason": reason})

    def _problems(self, plan: planning.Plan) -> None:
        for items in plan.items.values():
            for item in items:
                if item.problem:
                    path = tree.artifact_index_path(item.type, item.id)
                    self._fail(path, item.error, item.problem)

    def _checkpoint(self, force: bool = False) -> None:
        """Save the blobs verified so far, so a killed run's successor skips them. The
        published part is left as it was: the indexes are not written yet."""
        if self.dry_run or not (force or self._since_checkpoint >= self.checkpoint_every):
            return
        self._since_checkpoint = 0
        try:
            self.dest.sync_dirs()
            if self.work is not None:  # a walk: its blob rows go to the file, not kept
                self.good.clear()
                self.store.save(self.state)
                self.state.blobs = Tracked()
            else:
                self.store.save(self.state)
        except (OSError, sqlite3.Error) as exc:
            self.report.warnings.append(f"state checkpoint failed: {describe(exc)}")

    # -- withdrawal ------------------------------------------------------------------------
    def _withdraw_reason(self, artifact_id: str, published: list[str] | None) -> str:
        """Why the catalog no longer publishes this artifact ("" when it still would and
        it merely fell out of the selection)."""
        try:
            artifact = self.catalog.get(artifact_id)
        except NotFound:
            return _UNKNOWN
        except Forbidden:
            return "no longer readable"
        if artifact.status != "active":
            return str(artifact.status)
        if artifact.visibility != "public" and artifact.name not in self.selection.include_private:
            # Withdrawn when the tree published it as public; a private one published by
            # name merely fell out of the selection.
            was_public = published is not None and published[1].split("|")[2:3] == ["public"]
            return "made private" if was_public else ""
        return ""

    def _withdraw(self) -> None:
        """Remove the withdrawn artifacts' files. The indexes just published no longer
        name them; other artifacts' paths are their own files (a hard link or a copy), so
        bytes they share stay where they are published."""
        files = [f for w in self.report.withdrawn for f in w["files"]]
        if not files:
            return
        # artifact indexes first, then blobs: never an index naming a missing blob
        for path in sorted(files, key=lambda f: not f.endswith("/" + tree.INDEX_NAME)):
            self.dest.delete(path)
            self.state.indexes.discard(path)
            self.state.blobs.pop(path, None)
        self.dest.remove_empty_dirs(files)
        self.dest.sync_dirs()

    def _sweep_partials(self, plan: planning.Plan) -> None:
        """Keep the partial downloads of blobs that failed in this run (the next one
        resumes them); drop the others' records and temporaries."""
        kept = 0
        for sha256 in partial.recorded(self.dest):
            if sha256 in self.failed_shas:
                kept += 1
            else:
                partial.drop(self.dest, sha256, with_temp=True)
        if kept:
            self.report.warnings.append(
                f"kept {kept} partial downloads in the tree: the next run resumes them"
            )

    def _clean_temporaries(self) -> None:
        """A previous run died: remove the temporaries it left (this host's dead pids),
        except partial downloads it recorded, which this run resumes."""
        removed = 0
        resumable = {t for t in partial.recorded(self.dest).values() if t}
        for path, host, pid in list(self.dest.iter_temporaries()):
            if path in resumable:
                continue
            if temporary_is_abandoned(host, pid):
                self.dest.delete(path)
                removed += 1
        if removed:
            self.report.warnings.append(f"removed {removed} temporaries left by an interrupted run")


def _catalog_serial(catalog: ReadableCatalog) -> int | None:
    """The catalog's journal serial; None for a catalog without one (a mirror tree)."""
    serial = getattr(catalog, "serial", None)
    if not callable(serial):
        return None
    try:
        value = serial()
    except GlareliteError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
