"""The full walk of a sync run, streaming: the memory it holds does not grow with the
catalog.

A run walks when the journal cannot say what changed: a first mirror, an upgrade, a
changed selection, ``verify``, ``delete``, a dry run, links, redirect mode. The catalog
is read a page (``PAGE`` artifacts) at a time; each page is planned against the state's
rows of its blob paths (one ``IN`` query, one ``lstat`` per blob) and goes into the run's
working tables (``mirror.worktable``), its show views into a spool file per type. Every
later step reads those tables a page at a time: tree files re-hashed, blobs copied
(largest first, from one ordered table of the distinct sha256 to fetch), withdrawals
found by an anti-join of the state against the selection, the indexes published shard
by shard (``mirror.publish``), the files to prune found like withdrawals. Python holds a
page of artifacts, a window of copy jobs and the shard refs (4,096 per type at most);
the report lists at most ``report.LIST_MAX`` entries of a kind.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from glarelite import (
    Artifact,
    DestinationError,
    NotFound,
    ReadableCatalog,
    StorageFull,
    tree,
)

from . import partial
from . import plan as planning
from . import prune as pruning
from ._paths import is_blob_path, is_index_path
from .copy import DEFER_MAX, Job, Outcome, Source, hash_file
from .dest import Dest
from .publish import publish, report_outcome
from .state import Tracked
from .worktable import CHECK, FETCH, SKIP, WorkTable, chunks

if TYPE_CHECKING:
    from .sync import _Run

PAGE = 500  # artifacts planned at a time
WINDOW = 1024  # distinct blobs (sha256) made into copy jobs at a time
BATCH_MAX = 256  # small blobs per task (one pipeline per task)
UNKNOWN = "unknown to the catalog"


class Walk:
    """One walk of a run (``run`` holds the options, the copier and the report)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.report = run.report
        self.legacy = False
        self.spools: dict[str, planning.Spool] = {}
        self.window = planning.Plan(redirect=run.redirect, spools=self.spools)
        self._work: WorkTable | None = None

    @property
    def work(self) -> WorkTable:
        assert self._work is not None
        return self._work

    def execute(self) -> None:
        try:
            self._execute()
        except sqlite3.Error as exc:
            # The state file or the working tables could not be written or read (a full
            # disk under the tree or the temporary folder...): a GlareliteError, never a
            # raw sqlite3 one. What was saved before is intact: the next run goes on.
            text = " ".join(str(exc).split())
            if "full" in text or "I/O" in text:
                raise StorageFull(f"the mirror's state could not be written: {text}") from exc
            raise DestinationError(f"the mirror's state failed: {text}") from exc

    def _execute(self) -> None:
        run = self.run
        state = run.store.open_walk(dry_run=run.dry_run)
        run.state = state
        self.legacy = state.legacy
        if state.problem:
            self.report.warnings.append(state.problem)
        if not state.published.generation:
            # No memory of earlier runs: generations still only go up for readers.
            state.published.generation = tree_generation(run.dest)
        self._work = WorkTable(run.store.connection)
        run.work = self._work
        for type_name in run.selection.types:
            self.spools[type_name] = planning.Spool()
        try:
            self._plan()
            self.work.planned()
            if run.dest.local:  # blob files checked with one lstat against the state
                self.report.scanned = self.work.count("paths", "action != ?", (FETCH,))
            self._decide()
        finally:
            run.work = None
            for spool in self.spools.values():
                spool.close()
            self.work.close()

    # -- 1. planning, a page at a time -------------------------------------------------------
    def _plan(self) -> None:
        run = self.run
        for type_name in run.selection.types:
            page: list[Artifact] = []
            for artifact in run.selection.iter_type(run.catalog, type_name):
                page.append(artifact)
                if len(page) == PAGE:
                    self._plan_page(page)
                    page = []
            if page:
                self._plan_page(page)
        # Linked artifacts come along (of the selected types), so links in the tree
        # resolve; a private target only when it was named, like any private artifact.
        while True:
            pending = self.work.pending_links()
            if not pending:
                break
            targets = []
            for target_id in pending:
                try:
                    target = run.catalog.get(target_id)
                except NotFound:
                    continue
                private_ok = target.name in run.selection.include_private
                if (
                    target.status == "active"
                    and target.type_name in self.spools
                    and (target.visibility == "public" or private_ok)
                ):
                    targets.append(target)
            for start in range(0, len(targets), PAGE):
                self._plan_page(targets[start : start + PAGE], linked=True)

    def _plan_page(self, artifacts: list[Artifact], linked: bool = False) -> None:
        run, work = self.run, self.work
        records = run.store.blob_records(
            tree.blob_path(a.type_name, a.id, b.field, b.key)
            for a in artifacts
            for b in a.iter_blobs()
        )
        plan = planning.Plan(redirect=run.redirect, spools=self.spools)
        links: list[str] = []
        for artifact in artifacts:
            plan.items.setdefault(artifact.type_name, [])
            planning.add(plan, run.selection, run.dest, records, artifact, run.verify, links)
        items = [i for v in plan.items.values() for i in v]
        work.add_items(
            (
                i.id,
                i.type,
                i.name,
                i.fingerprint,
                i.offset,
                i.length,
                i.problem,
                i.error,
                int(i.withheld),
                int(linked),
                list(i.redirects),
            )
            for i in items
        )
        rows = []
        for item in items:
            for path, sha, size in item.paths:
                action = FETCH if path in plan.fetch else CHECK if path in plan.check else SKIP
                source = plan.path_sources.get(path)
                rows.append(
                    (
                        path,
                        item.id,
                        sha,
                        size,
                        action,
                        int(path in plan.missing),
                        source.slot if source else None,
                        int(source.external) if source else None,
                        plan.labels.get(path),
                    )
                )
        work.add_paths(rows)
        work.add_links(links)

    # -- 2. what the run will do ---------------------------------------------------------------
    def _decide(self) -> None:
        run, report, work = self.run, self.report, self.work
        state = run.state
        count = self._scalar("SELECT count(*) FROM main.artifacts")
        withdrawn, unknown, withdrawn_published = self._absent()
        report.withdrawn = withdrawn
        still = count - withdrawn_published
        selected = work.count("items")
        if count and unknown == count:
            report.refused = (
                f"this catalog knows none of the {count} artifacts the tree publishes "
                "(a different catalog?); nothing was changed; force to publish it anyway"
            )
        elif selected == 0 and still:
            report.refused = (
                f"the selection matches no artifact, yet the catalog still publishes {still} "
                "that the tree publishes (a typo in a type, tag or name?); nothing was "
                "changed; force to publish an empty tree"
            )
        if report.refused and not run.force:
            report.generation = state.published.generation
            report.artifacts = count
            return
        report.refused = ""
        if run.dry_run:
            self._dry_run(selected)
            return
        with run.pool() as executor:
            self._check(executor)
            self._copy(executor)
            work.finish_copies()
            self._sweep_partials()
            run.dest.sync_dirs()
            self._problems()
            out = publish(
                run.dest,
                run.store,
                state,
                work,
                self.window,
                run.selection,
                executor,
                verify=run.verify,
                legacy=self.legacy,
            )
        self._finish(out)

    def _finish(self, out: Any) -> None:
        run, report, state = self.run, self.report, self.run.state
        p = state.published
        p.catalog = catalog_id(run.catalog)
        p.selection = run.signature
        p.serial = run.serial if run.serial is not None else -1
        p.selected = {t: 0 for t in run.selection.types}
        for type_name, n in self.work.conn.execute(
            "SELECT type, count(*) FROM run.items GROUP BY type"
        ):
            p.selected[type_name] = n
        now = time.time()
        for path in out.retired:
            state.retired.setdefault(path, now)
        # A format 1 tree always has its SHA256SUMS (retired with its type indexes): only
        # then are the held types worth a pass over the index rows.
        if self.legacy or run.dest.stat(tree.SUMS) is not None:
            run._retire_format1(now, self._held_types())
        drop = sorted(set(out.drop))
        for path in drop:
            # Recorded as retired and due at once (no root pins it): the state about to be
            # saved no longer names its shard, so only this row has a run killed before
            # the removal below remove it.
            state.retired[path] = 0.0
        # The state names the new root before any file goes; until the removals are
        # done it is not "complete", so a run killed in between is finished by the next.
        p.complete = not report.failed and not (report.withdrawn or drop)
        run.store.save(state, also=out.apply)
        run._withdraw()
        for path in drop:
            run.dest.delete(path)
            state.retired.pop(path, None)
        p.complete = not report.failed
        report.generation = out.generation
        report.published = out.changed
        report.artifacts = out.artifacts
        report.blobs = out.blobs
        report_outcome(report, out)
        run.store.save(state, upload=False)  # the withdrawn files' rows go before pruning
        self._prune(out.artifacts)
        run._remove_retired(now)
        run.store.save(state)

    def _held_types(self) -> set[str]:
        """Types the tree holds artifact index files of (a format 1 tree's type indexes
        may be there to retire)."""
        return {
            r[0]
            for r in self.work.conn.execute(
                "SELECT DISTINCT substr(path, 11, instr(substr(path, 11), '/') - 1) "
                "FROM main.indexes"
            )
        }

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        row = self.work.conn.execute(sql, params).fetchone()
        return int(row[0] or 0)

    # -- withdrawal --------------------------------------------------------------------------
    def _absent(self) -> tuple[list[dict[str, Any]], int, int]:
        """The artifacts the tree holds files of that this run does not select, and which
        of them the catalog no longer publishes (those are withdrawn, ``delete`` or not):
        the withdrawn (by id), how many published ones the catalog does not know, and how
        many withdrawn ones were published."""
        conn, run = self.work.conn, self.run
        planned = "NOT IN (SELECT id FROM run.items)"
        # The type a held artifact is of: as published, else as its files' paths say.
        conn.execute(
            "INSERT OR IGNORE INTO run.held SELECT id, type, 1 FROM main.artifacts "
            f"WHERE id {planned}"
        )
        conn.execute(
            "INSERT OR IGNORE INTO run.held SELECT aid, t, 0 FROM (SELECT "
            "substr(rest, instr(rest, '/') + 1, length(rest) - instr(rest, '/') - 11) AS aid, "
            "substr(rest, 1, instr(rest, '/') - 1) AS t FROM "
            f"(SELECT substr(path, 11) AS rest FROM main.indexes)) WHERE aid {planned}"
        )
        conn.execute(
            "INSERT OR IGNORE INTO run.held SELECT artifact_id, "
            "substr(path, 11, instr(substr(path, 11), '/') - 1), 0 FROM main.blobs "
            f"WHERE artifact_id {planned}"
        )
        withdrawn: list[dict[str, Any]] = []
        unknown = withdrawn_published = 0
        last = ""
        while True:
            rows = conn.execute(
                "SELECT h.id, h.type, h.published, a.type, a.fingerprint FROM run.held h "
                "LEFT JOIN main.artifacts a ON a.id = h.id WHERE h.id > ? ORDER BY h.id LIMIT 500",
                (last,),
            ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            for artifact_id, type_name, published, old_type, old_fp in rows:
                entry = [old_type, old_fp] if old_type is not None else None
                reason = run._withdraw_reason(artifact_id, entry)
                if reason == UNKNOWN:
                    unknown += published
                if not reason:
                    continue
                withdrawn_published += published
                withdrawn.append(
                    {
                        "id": artifact_id,
                        "type": type_name,
                        "reason": "deleted" if reason == UNKNOWN else reason,
                        "files": self._files_of(artifact_id, type_name),
                    }
                )
        return withdrawn, unknown, withdrawn_published

    def _files_of(self, artifact_id: str, type_name: str) -> list[str]:
        conn = self.work.conn
        files = [
            r[0]
            for r in conn.execute(
                "SELECT path FROM main.blobs WHERE artifact_id = ?", (artifact_id,)
            )
            if is_blob_path(r[0]) and r[0].split("/")[1] == type_name
        ]
        index = tree.artifact_index_path(type_name, artifact_id)
        # Also when the state does not name it: a run killed after writing it, before
        # saving its row, leaves it there (the id is one the tree held: the file is ours).
        known = conn.execute("SELECT 1 FROM main.indexes WHERE path = ?", (index,)).fetchone()
        if known or self.run.dest.stat(index) is not None:
            files.append(index)
        return sorted(files)

    # -- 3. tree files that need re-hashing ------------------------------------------------
    def _check(self, executor: ThreadPoolExecutor) -> None:
        run, report, conn = self.run, self.report, self.work.conn
        report.skipped += self.work.count("paths", "action = ?", (SKIP,))
        total = self._scalar("SELECT sum(size) FROM run.paths WHERE action = ?", (CHECK,))
        if not self.work.count("paths", "action = ?", (CHECK,)):
            return
        run.progress.begin("verify", "verify tree files", total)

        def check(path: str) -> tuple[int, str, BaseException | None]:
            try:
                size, sha = hash_file(run.dest, path, lambda n: run.progress.advance("verify", n))
            except OSError as exc:
                return -1, "", exc
            return size, sha, None

        last = ""
        while True:
            rows = conn.execute(
                "SELECT path, sha256, size FROM run.paths WHERE action = ? AND path > ? "
                "ORDER BY path LIMIT 1000",
                (CHECK, last),
            ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            bad = []
            for (path, want_sha, want_size), (size, sha, exc) in zip(
                rows, executor.map(check, [r[0] for r in rows]), strict=True
            ):
                if exc is None and (size, sha) == (want_size, want_sha):
                    run._record(path, want_sha, want_size)
                    report.skipped += 1
                    continue
                found = f"{type(exc).__name__}: {exc}" if exc else f"{size} bytes, sha256 {sha}"
                # The tree is ours: fetch the catalog's bytes again and rename them over it.
                bad.append((FETCH, f"held different bytes ({found})", path))
            conn.executemany(
                "UPDATE run.paths SET action = ?, missing = 1, reason = ? WHERE path = ?", bad
            )
            self.flush(upload=False)
        self.work.checked()
        run.progress.end("verify")

    def flush(self, *, upload: bool = True) -> None:
        """Save what is verified so far: its blob rows into the state (then dropped from
        memory; the working tables learn what is good from what failed, at the end)."""
        run = self.run
        run.good.clear()
        run.store.save(run.state, upload=upload)
        run.state.blobs = Tracked()

    # -- 4. copies ---------------------------------------------------------------------------
    def _copy(self, executor: ThreadPoolExecutor) -> None:
        run, conn = self.run, self.work.conn
        conn.execute(
            "INSERT INTO run.groups (sha256, size) SELECT sha256, max(size) FROM run.paths "
            "WHERE action = ? GROUP BY sha256 ORDER BY max(size) DESC, sha256",
            (FETCH,),
        )
        have = "EXISTS (SELECT 1 FROM run.paths p WHERE p.sha256 = g.sha256 AND p.good = 1)"
        groups = self._scalar("SELECT count(*) FROM run.groups")
        if not groups:
            return
        total = self._scalar(f"SELECT sum(size) FROM run.groups g WHERE NOT {have}")
        small = self._scalar(
            f"SELECT count(*) FROM run.groups g WHERE size <= ? AND NOT {have}", (DEFER_MAX,)
        )
        # Enough batches to keep every worker busy, few enough to amortize each one.
        size = max(8, min(BATCH_MAX, -(-small // (run.workers * 4)) if small else 1))
        run._pump(self.window, self._tasks(size), total, executor)
        self.flush()

    def _tasks(self, size: int) -> Iterator[tuple[Callable[[Any], list[Outcome]], Any]]:
        """Copy tasks, a window of blobs at a time, largest first: one task per large job;
        small ones fetched from the catalog in batches of ``size``, so that one request
        per blob does not dominate (Catalog.open_blobs pipelines them)."""
        run, conn, plan = self.run, self.work.conn, self.window
        last = 0
        while True:
            rows = conn.execute(
                "SELECT g.rowid, g.sha256, g.size, p.path, p.missing, p.label, p.reason "
                "FROM run.groups g JOIN run.paths p ON p.sha256 = g.sha256 AND +p.action = ? "
                "WHERE g.rowid > ? AND g.rowid <= ? ORDER BY g.rowid, p.path",
                (FETCH, last, last + WINDOW),
            ).fetchall()
            if not rows:
                return
            last += WINDOW
            groups: dict[str, tuple[str, int, list[str]]] = {}
            for _, sha, blob_size, path, missing, label, reason in rows:
                groups.setdefault(sha, (sha, blob_size, []))[2].append(path)
                plan.fetch[path] = (sha, blob_size)
                if missing:
                    plan.missing.add(path)
                if label:
                    plan.labels[path] = label
                if reason:
                    run._repair_reasons[path] = reason
            shas = list(groups)
            plan.have.update(self.work.good_paths(shas))
            for chunk in chunks(shas):
                marks = ",".join("?" * len(chunk))
                for sha, aid, slot, external in conn.execute(
                    "SELECT sha256, id, slot, external FROM run.paths "
                    f"WHERE sha256 IN ({marks}) AND slot IS NOT NULL ORDER BY rowid",
                    chunk,
                ):
                    sources = plan.sources.setdefault(sha, [])
                    if len(sources) < planning.MAX_SOURCES:
                        sources.append(Source(aid, slot, bool(external)))
            batch: list[Job] = []
            for group in groups.values():
                sha, blob_size, _ = group
                if plan.have.get(sha) is None and plan.sources.get(sha) and blob_size <= DEFER_MAX:
                    batch.append(run._job(plan, group))
                    if len(batch) == size:
                        yield run.copier.run_batch, batch
                        batch = []
                else:
                    yield run.copier.run, run._job(plan, group)
            if batch:
                yield run.copier.run_batch, batch

    def _sweep_partials(self) -> None:
        """Keep the partial downloads of blobs that failed in this run (the next one
        resumes them); drop the others' records and temporaries."""
        kept = 0
        for sha256 in partial.recorded(self.run.dest):
            if sha256 in self.run.failed_shas:
                kept += 1
            else:
                partial.drop(self.run.dest, sha256, with_temp=True)
        if kept:
            self.report.warnings.append(
                f"kept {kept} partial downloads in the tree: the next run resumes them"
            )

    def _problems(self) -> None:
        for type_name, artifact_id, error, problem in self.work.conn.execute(
            "SELECT type, id, error, problem FROM run.items WHERE problem != '' ORDER BY rowid"
        ).fetchall():
            self.run._fail(tree.artifact_index_path(type_name, artifact_id), error, problem)

    # -- 5. prune and dry run ----------------------------------------------------------------
    def _candidates(self) -> list[str]:
        """Files the tree wrote that no selected artifact names: index files first, then
        blobs."""
        conn = self.work.conn
        # Checked again, though the load checked every row: only the tree's own kinds of
        # file are ever removed.
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT path FROM main.indexes WHERE path NOT IN (SELECT 'artifacts/' || type "
                "|| '/' || id || '/index.json' FROM run.items) ORDER BY path"
            )
            if is_index_path(r[0])
        ]
        blobs = [
            r[0]
            for r in conn.execute(
                "SELECT path FROM main.blobs WHERE path NOT IN (SELECT path FROM run.paths) "
                "AND path NOT IN (SELECT path FROM run.kept_paths) ORDER BY path"
            )
            if is_blob_path(r[0])
        ]
        return indexes + blobs

    def _prune(self, published: int) -> None:
        run, report, state = self.run, self.report, self.run.state
        candidates = self._candidates()
        decision = pruning.judge(
            candidates, published_artifacts=published, force=run.force, max_delete=run.max_delete
        )
        state.published.retained = len(candidates)
        report.retained = len(candidates)
        if not run.delete:
            return
        if report.failed:
            report.prune = "skipped: some blobs failed; nothing is pruned after an unclean run"
            return
        if decision.refused:
            report.prune = decision.refused
            report.would_delete = decision.candidates
            return
        # The new indexes no longer name these: save that before any file goes.
        run.store.save(state)
        report.deleted = pruning.apply(run.dest, state, decision.candidates)
        state.published.retained = 0
        report.retained = 0
        report.prune = f"done: {len(report.deleted)} files removed"

    def _dry_run(self, selected: int) -> None:
        run, report, conn = self.run, self.report, self.work.conn
        report.skipped = self.work.count("paths", "action = ?", (SKIP,))
        report.would_check = self.work.count("paths", "action = ?", (CHECK,))
        for path, sha, size, missing in conn.execute(
            "SELECT path, sha256, size, missing FROM run.paths WHERE action = ? ORDER BY path",
            (FETCH,),
        ):
            report.add(
                "would_copy", {"path": path, "size": size, "sha256": sha, "missing": bool(missing)}
            )
        report.generation = run.state.published.generation
        report.artifacts = selected
        withdrawn = {f for w in report.withdrawn for f in w["files"]}
        candidates = [c for c in self._candidates() if c not in withdrawn]
        decision = pruning.judge(
            candidates, published_artifacts=selected, force=run.force, max_delete=run.max_delete
        )
        report.retained = len(candidates)
        if run.delete:
            report.would_delete = candidates
            report.prune = decision.refused or f"would remove {len(candidates)} files"
        report.nothing_to_do = (
            not report.would_copy_count
            and not report.would_check
            and not candidates
            and not report.withdrawn
        )


def tree_generation(dest: Dest) -> int:
    """The generation of the root index already in the tree (0 when none)."""
    raw = dest.read_bytes(tree.ROOT_INDEX)
    if raw is None:
        return 0
    try:
        data = json.loads(raw)
        if tree.format_of(data) == tree.FORMAT_V1:
            return tree.RootIndex.from_dict(data).generation
        return tree.Root.from_dict(data).generation
    except (ValueError, RecursionError):  # a hostile tree file
        return 0


def catalog_id(catalog: ReadableCatalog) -> str:
    """Which catalog a tree was built from, as the state records it: a digest of its
    path, since the state sits in the tree and a host path must not be served."""
    return hashlib.sha256(catalog.path.encode()).hexdigest()[:32]
