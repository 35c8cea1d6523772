"""Catalog maintenance: re-validation of external blobs (check) and garbage collection."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._db import utcnow
from ._hashing import split_digest
from ._slots import _restore, release, token_is_dead
from .errors import InvalidInput, NetworkError, NotFound, TooLarge
from .progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from ._core import Core
    from ._http import Fetcher
    from .policy import Scope


# -- check of external blobs -------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """What ``check`` found for one external blob."""

    artifact_id: str
    type_name: str
    slot: str
    url: str
    state: str  # 'unchanged' | 'changed' | 'unreachable'
    size: int | None
    sha256: str | None
    new_size: int | None = None
    new_sha256: str | None = None
    detail: str = ""
    method: str = "rehash"  # 'conditional' when a 304 answered

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class GcReport:
    uploads_abandoned: int = 0
    uploads_aborted: int = 0  # S3 multipart uploads left by a killed process
    temporaries_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check(
    core: Core, scope: Scope, *, rehash: bool = False, progress: Progress | None = None
) -> list[CheckResult]:
    """Re-validate every active external blob visible to the caller."""
    progress = progress or NULL_PROGRESS
    fetcher = core.fetcher
    # what a non-admin may read (the default policy): its own and public, not deactivated
    owner_clause = (
        ""
        if scope.admin
        else "AND (a.owner = ? OR a.visibility = 'public') AND a.status != 'deactivated'"
    )
    params: tuple[str, ...] = () if scope.admin else (scope.owner,)
    with core.database.read() as conn:
        rows = conn.execute(
            "SELECT b.artifact_id, a.type_name, b.field, b.key, b.location, b.size, b.digest, "
            "b.etag, b.last_modified FROM blobs b JOIN artifacts a ON a.id = b.artifact_id "
            f"WHERE b.external = 1 AND b.status = 'active' {owner_clause} "
            "ORDER BY b.artifact_id, b.field, b.key",
            params,
        ).fetchall()
        if not scope.admin:  # a replaced get rule narrows this too: no id, no URL leaks
            rows = [r for r in rows if _readable(core, conn, scope, r[0])]
    results = []
    progress.begin("check", "check external blobs", len(rows))
    for artifact_id, type_name, field_name, key, location, size, digest, etag, lm in rows:
        slot = f"{field_name}/{key}" if key else field_name
        base = CheckResult(
            artifact_id, type_name, slot, location, "unchanged", size, split_digest(digest)[1]
        )
        result = _check_one(fetcher, base, etag, lm, rehash)
        upstream = "ok" if result.state == "unchanged" else result.state
        with core.database.write() as conn:
            now = utcnow()
            before = conn.execute(
                "SELECT upstream FROM blobs WHERE artifact_id = ? AND field = ? AND key = ?",
                (artifact_id, field_name, key),
            ).fetchone()
            conn.execute(
                "UPDATE blobs SET upstream = ?, verified_at = CASE WHEN ? = 'ok' THEN ? "
                "ELSE verified_at END WHERE artifact_id = ? AND field = ? AND key = ?",
                (upstream, upstream, now, artifact_id, field_name, key),
            )
            if before is not None and before[0] != upstream:
                # The show view carries the blob's upstream state: a change of it is a
                # change of the artifact (a mirror's incremental run goes by updated_at).
                conn.execute("UPDATE artifacts SET updated_at = ? WHERE id = ?", (now, artifact_id))
        results.append(result)
        progress.advance("check", 1)
    progress.end("check")
    return results


def _readable(core: Core, conn: Any, scope: Scope, artifact_id: str) -> bool:
    try:
        core.visible_row(conn, scope, artifact_id)
    except NotFound:
        return False
    return True


def _check_one(
    fetcher: Fetcher, base: CheckResult, etag: str | None, lm: str | None, rehash: bool
) -> CheckResult:
    """Conditional GET first (a 304 proves nothing changed), else a full re-hash."""
    try:
        if (
            not rehash
            and (etag or lm)
            and fetcher.revalidate(base.url, etag=etag, last_modified=lm)
        ):
            return replace(base, method="conditional")
        reg = fetcher.register(base.url)
    except (NetworkError, TooLarge, InvalidInput) as exc:
        return replace(base, state="unreachable", detail=str(exc))
    if reg.sha256 != base.sha256 or reg.size != base.size:
        return replace(
            base,
            state="changed",
            new_size=reg.size,
            new_sha256=reg.sha256,
            detail="the bytes served differ from the registered ones",
        )
    return base


# -- garbage collection ------------------------------------------------------------------
def gc(core: Core, scope: Scope, *, stale_after: float | None = None) -> GcReport:
    """Clean what interrupted uploads and deletes left: uploads stuck in ``saving`` whose
    process is gone (or older than ``stale_after`` seconds), their temporaries, and stored
    objects that nothing references."""
    from datetime import datetime, timedelta, timezone

    core.authorize("gc", scope)
    age = core.settings.stale_after if stale_after is None else stale_after
    cutoff = (datetime.now(timezone.utc) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    report = GcReport()
    candidates: list[str | None] = []
    st = core.store
    # The temporaries are listed before the live uploads are read: an upload reserves its
    # slot before it writes a temporary, so every temporary listed here belongs to an
    # upload the read below sees as live, and one that starts later is not listed at all.
    # (The other order removed the temporary of an upload starting between the steps.)
    temporaries = list(st.iter_temporaries())
    with core.database.write() as conn:
        stuck = conn.execute(
            "SELECT artifact_id, field, key, upload_token, updated_at FROM blobs "
            "WHERE status = 'saving'"
        ).fetchall()
        live_tags = set()
        for artifact_id, field_name, key, token, updated_at in stuck:
            if token_is_dead(token) or updated_at < cutoff:
                where = "artifact_id = ? AND field = ? AND key = ? AND upload_token IS ?"
                candidates.append(_restore(conn, where, (artifact_id, field_name, key, token)))
                report.uploads_abandoned += 1
                report.details.append(f"abandoned upload {artifact_id}/{field_name}/{key}")
            elif token:
                live_tags.add(token.rsplit(":", 1)[-1])
    cutoff_ts = datetime.now(timezone.utc).timestamp() - age
    for path, tag, modified in temporaries:
        if tag in live_tags and (modified is None or modified >= cutoff_ts):
            continue
        st.remove_temporary(path)
        report.temporaries_removed += 1
    for path, upload_id, initiated in st.iter_multipart_uploads():
        # Only old ones, whose upload is not live: an upload that began after the slots
        # were read above is young, so it is never cut off.
        if initiated is None or initiated >= cutoff_ts or st.temporary_tag(path) in live_tags:
            continue
        st.abort_multipart_upload(path, upload_id)
        report.uploads_aborted += 1
        report.details.append(f"aborted multipart upload {path}")
    for digest, _size in st.iter_objects():
        candidates.append(digest)
    report.objects_removed, report.bytes_freed = release(core, candidates)
    return report
