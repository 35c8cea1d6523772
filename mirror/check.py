"""``check_tree``: verify an existing tree from its own files alone (no catalog).

Every index must be what the root index publishes, every blob an index names must be in
SHA256SUMS with the same sha256 (and nothing else may be there), every artifact index
must hold the show view its type index lists, and every file in SHA256SUMS must have the
size and sha256 recorded. Each violation is a fault naming its path.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from glarelite import InvalidInput, Progress, SignatureError, signing, tree

from .copy import hash_file
from .dest import Dest, open_dest
from .progress import SafeProgress
from .report import CheckReport


def check_tree(
    dest: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    workers: int = 4,
    progress: Progress | None = None,
    trusted_keys: Iterable[Any] | None = None,
) -> CheckReport:
    """Check the tree at ``dest`` (a folder or fsspec URL); ``report.ok`` when clean.
    With ``trusted_keys``, ``index.signed.json`` must be signed by one of them and hold
    the exact bytes of ``index.json`` (a "signature" fault otherwise)."""
    started = time.monotonic()
    keys = None
    if trusted_keys is not None:
        keys = [signing.load_public_key(k) for k in trusted_keys]
        if not keys:
            raise InvalidInput("trusted_keys is empty: give at least one key, or None")
    target = open_dest(dest, storage_options, create=False)
    report = CheckReport(dest=target.url)
    try:
        if keys is not None:
            _check_signature(target, report, keys)
        _check(target, report, SafeProgress(progress), max(1, workers))
    finally:
        report.seconds = time.monotonic() - started
    return report


def _check_signature(dest: Dest, report: CheckReport, keys: list[signing.PublicKey]) -> None:
    signed = dest.read_bytes(signing.SIGNED_INDEX)
    if signed is None:
        report.fault(signing.SIGNED_INDEX, "signature", "the tree is not signed")
        return
    try:
        root = signing.verify_root(signed, keys)
    except SignatureError as exc:
        report.fault(signing.SIGNED_INDEX, "signature", str(exc))
        return
    if root != dest.read_bytes(tree.ROOT_INDEX):
        report.fault(
            tree.ROOT_INDEX, "signature", f"differs from the root signed in {signing.SIGNED_INDEX}"
        )


def _load_json(dest: Dest, path: str, report: CheckReport) -> tuple[Any, bytes] | None:
    raw = dest.read_bytes(path)
    if raw is None:
        report.fault(path, "missing", "the file is absent")
        return None
    try:
        return json.loads(raw), raw
    except ValueError as exc:
        report.fault(path, "invalid", f"not JSON: {exc}")
        return None


def _check(dest: Dest, report: CheckReport, progress: SafeProgress, workers: int) -> None:
    loaded = _load_json(dest, tree.ROOT_INDEX, report)
    if loaded is None:
        return
    try:
        root = tree.RootIndex.from_dict(loaded[0])
    except InvalidInput as exc:
        report.fault(tree.ROOT_INDEX, "invalid", str(exc))
        return
    report.generation = root.generation

    sums: dict[str, str] = {}
    raw_sums = dest.read_bytes(tree.SUMS)
    if raw_sums is None:
        report.fault(tree.SUMS, "missing", "the file is absent")
    else:
        digest = hashlib.sha256(raw_sums).hexdigest()
        if (len(raw_sums), digest) != (root.sums_size, root.sums_sha256):
            report.fault(tree.SUMS, "index-mismatch", "differs from what the root index records")
        try:
            sums = tree.parse_sums(raw_sums.decode("utf-8", "replace").splitlines())
        except InvalidInput as exc:
            report.fault(tree.SUMS, "invalid", str(exc))

    referenced: dict[str, tuple[str, int]] = {}
    for type_name, entry in sorted(root.types.items()):
        _check_type(dest, report, type_name, entry, sums, referenced)
    for path in sorted(set(sums) - set(referenced)):
        report.fault(path, "unreferenced", f"listed in {tree.SUMS} but named by no index")

    # Blob files: size and sha256 against SHA256SUMS (and the indexes' sizes).
    todo = sorted(sums.items())
    progress.begin(
        "check", f"check {dest.url}", sum(referenced.get(p, ("", 0))[1] for p, _ in todo)
    )

    def verify(item: tuple[str, str]) -> tuple[str, str, int, str]:
        path, _ = item
        try:
            size, sha = hash_file(dest, path, lambda n: progress.advance("check", n))
        except FileNotFoundError:
            return path, "missing", 0, ""
        except OSError as exc:
            return path, "unreadable", 0, str(exc)
        return path, "", size, sha

    with ThreadPoolExecutor(workers, thread_name_prefix="mirror-check") as pool:
        for path, problem, size, sha in pool.map(verify, todo):
            if problem:
                report.fault(path, problem, "a blob listed in SHA256SUMS is not readable")
                continue
            report.files += 1
            report.bytes += size
            want_size = referenced.get(path, ("", size))[1]
            if size != want_size:
                report.fault(path, "size-mismatch", f"{size} bytes, the index records {want_size}")
            elif sha != sums[path]:
                report.fault(
                    path, "sha256-mismatch", f"sha256 {sha}, SHA256SUMS records {sums[path]}"
                )
    progress.end("check", ok=report.ok)

    if dest.local:
        stray = [p for p, _, _ in dest.iter_temporaries()]
        if stray:
            report.warnings.append(
                f"{len(stray)} temporaries in the tree (a sync running or interrupted), "
                f"e.g. {stray[0]}"
            )


def _check_type(
    dest: Dest,
    report: CheckReport,
    type_name: str,
    entry: tree.TypeEntry,
    sums: dict[str, str],
    referenced: dict[str, tuple[str, int]],
) -> None:
    path = tree.type_index_path(type_name)
    loaded = _load_json(dest, path, report)
    if loaded is None:
        return
    data, raw = loaded
    if (len(raw), hashlib.sha256(raw).hexdigest()) != (entry.index_size, entry.index_sha256):
        report.fault(path, "index-mismatch", "differs from what the root index records")
    try:
        shows = tree.check_type_index(data, type_name)
    except InvalidInput as exc:
        report.fault(path, "invalid", str(exc))
        return
    if len(shows) != entry.artifacts:
        report.fault(path, "count-mismatch", f"{len(shows)} artifacts, root says {entry.artifacts}")
    for show in shows:
        artifact_id = str(show.get("id", ""))
        report.artifacts += 1
        for field_name, key, blob in tree.iter_blob_entries(show):
            bpath = tree.blob_path(type_name, artifact_id, field_name, key)
            sha, size = str(blob.get("sha256")), int(blob.get("size") or 0)
            referenced[bpath] = (sha, size)
            if blob.get("url") != "/" + bpath:
                report.fault(bpath, "bad-url", f"the index gives url {blob.get('url')!r}")
            listed = sums.get(bpath)
            if listed is None:
                report.fault(bpath, "not-in-sums", f"named by {path} but absent from {tree.SUMS}")
            elif listed != sha:
                report.fault(bpath, "sums-mismatch", f"{path} says {sha}, {tree.SUMS} {listed}")
        apath = tree.artifact_index_path(type_name, artifact_id)
        own = _load_json(dest, apath, report)
        if own is None:
            continue
        body = own[0]
        if isinstance(body, dict):
            body.pop(tree.MIRROR_KEY, None)
        if body != show:
            report.fault(apath, "index-mismatch", f"differs from its entry in {path}")
