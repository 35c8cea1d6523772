"""``check_tree``: verify an existing tree from its own files alone (no catalog).

A format 2 tree is checked by ``_check2`` (shard by shard, from the root's pins). A
format 1 tree (below) is still checked, with a warning that the next ``mirror`` upgrades
it; a format this glarelite does not know is one fault naming it.

Format 1: every index must be what the root index publishes, every blob an index names must be in
SHA256SUMS with the same sha256 (and nothing else may be there), every artifact index
must hold the show view its type index lists, and every file in SHA256SUMS must have the
size and sha256 recorded. Each violation is a fault naming its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from glarelite import InvalidInput, Progress, SignatureError, signing, tree
from glarelite.tree import check_identifier, check_key

from ._check2 import Check2
from ._paths import check_artifact_id, check_type_name, is_inside
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
        target.close()
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


def _read(dest: Dest, path: str, report: CheckReport) -> bytes | None:
    """The file's bytes; a fault when absent or unreadable (a link, not a file)."""
    try:
        raw = dest.read_bytes(path)
    except OSError as exc:
        report.fault(path, "unreadable", str(exc))
        return None
    if raw is None:
        report.fault(path, "missing", "the file is absent")
    return raw


def check_artifact_index(
    dest: Dest, apath: str, show: Mapping[str, Any], report: CheckReport, by: str
) -> None:
    """The artifact index at ``apath`` must hold ``show``, the view its index ``by`` lists
    (besides the mirror key); an "index-mismatch" fault otherwise."""
    own = _load_json(dest, apath, report)
    if own is None:
        return
    body = own[0]
    if isinstance(body, dict):
        body.pop(tree.MIRROR_KEY, None)
    try:
        same = body == show
    except RecursionError:  # a hostile, deeply nested view
        same = False
    if not same:
        report.fault(apath, "index-mismatch", f"differs from its entry in {by}")


def _load_json(dest: Dest, path: str, report: CheckReport) -> tuple[Any, bytes] | None:
    raw = _read(dest, path, report)
    if raw is None:
        return None
    try:
        return json.loads(raw), raw
    except (ValueError, RecursionError) as exc:
        report.fault(path, "invalid", f"not JSON: {str(exc)[:200]}")
        return None


def _blob_entries(show: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(field, key, blob dict) of a show view read from the tree, each name checked
    before it becomes a path; InvalidInput naming what is wrong."""
    blobs = show.get("blobs") or {}
    if not isinstance(blobs, Mapping):
        raise InvalidInput("its 'blobs' is not an object")
    out = []
    for name, value in sorted(blobs.items()):
        if not value:
            continue
        check_identifier(name, "blob field")
        if not isinstance(value, Mapping):
            raise InvalidInput(f"blob field {name!r} is not an object")
        if "url" in value and "status" in value and isinstance(value.get("url"), str):
            out.append((name, "", value))
            continue
        for key, blob in sorted(value.items()):
            check_key(key)
            if not isinstance(blob, Mapping):
                raise InvalidInput(f"blob {name}/{key} is not an object")
            out.append((name, key, blob))
    for name, key, blob in out:
        size = blob.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            where = f"{name}/{key}" if key else name
            raise InvalidInput(f"blob {where} has no valid size: {str(size)[:80]!r}")
    return out


def _check(dest: Dest, report: CheckReport, progress: SafeProgress, workers: int) -> None:
    loaded = _load_json(dest, tree.ROOT_INDEX, report)
    if loaded is None:
        return
    try:
        version = tree.format_of(loaded[0])
    except InvalidInput as exc:
        report.fault(tree.ROOT_INDEX, "unsupported-format", str(exc))
        return
    if version == tree.FORMAT_VERSION:
        with ThreadPoolExecutor(workers, thread_name_prefix="mirror-check") as pool:
            Check2(dest, report, progress, pool, _read, _kept(dest)).run(loaded[0])
        _warn_temporaries(dest, report)
        return
    report.warnings.append(
        f"a format {version} tree: the next `glarelite mirror` upgrades it to format "
        f"{tree.FORMAT_VERSION}"
    )
    _check_v1(dest, report, progress, workers, loaded[0])


def _kept(dest: Dest) -> Callable[[str], bool]:
    """Whether the writer wrote a file and keeps it (no longer selected, kept until
    ``--delete``): its state is read once, and only when an unnamed file is found."""
    kept: list[set[str]] = []

    def check(path: str) -> bool:
        if not kept:
            from .state import load

            state = load(dest)
            kept.append(set(state.blobs) | state.indexes)
        return path in kept[0]

    return check


def _warn_temporaries(dest: Dest, report: CheckReport) -> None:
    if dest.local:
        stray = [p for p, _, _ in dest.iter_temporaries()]
        if stray:
            report.warnings.append(
                f"{len(stray)} temporaries in the tree (a sync running or interrupted), "
                f"e.g. {stray[0]}"
            )


def _check_v1(
    dest: Dest, report: CheckReport, progress: SafeProgress, workers: int, data: Any
) -> None:
    """A format 1 tree: one type index per type and one SHA256SUMS."""
    try:
        root = tree.RootIndex.from_dict(data)
    except InvalidInput as exc:
        report.fault(tree.ROOT_INDEX, "invalid", str(exc))
        return
    report.generation = root.generation

    sums: dict[str, str] = {}
    raw_sums = _read(dest, tree.SUMS, report)
    if raw_sums is not None:
        digest = hashlib.sha256(raw_sums).hexdigest()
        if (len(raw_sums), digest) != (root.sums_size, root.sums_sha256):
            report.fault(tree.SUMS, "index-mismatch", "differs from what the root index records")
        try:
            sums = tree.parse_sums(raw_sums.decode("utf-8", "replace").splitlines())
        except InvalidInput as exc:
            report.fault(tree.SUMS, "invalid", str(exc))
        for path in sorted(sums):
            if not is_inside(path):  # never read: it could name any file
                del sums[path]
                report.fault(path[:200], "invalid", f"{tree.SUMS} names a path outside the tree")

    referenced: dict[str, tuple[str, int]] = {}
    for type_name, entry in sorted(root.types.items()):
        try:
            check_type_name(type_name)
        except InvalidInput as exc:
            report.fault(tree.ROOT_INDEX, "invalid", str(exc))
            continue
        _check_type(dest, report, type_name, entry, sums, referenced)
    indexes = _type_index_lines(root, sums, report)
    for path in sorted(set(sums) - set(referenced) - indexes):
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
                why = f": {sha}" if sha else ""
                report.fault(path, problem, f"a blob listed in SHA256SUMS is not readable{why}")
                continue
            if path not in indexes:  # counts are of blob files
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
        _check_unlisted(dest, report, set(referenced) | set(sums))
    _warn_temporaries(dest, report)


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
        shows: list[Any] = tree.check_type_index(data, type_name)  # items unchecked yet
    except InvalidInput as exc:
        report.fault(path, "invalid", str(exc))
        return
    if len(shows) != entry.artifacts:
        report.fault(path, "count-mismatch", f"{len(shows)} artifacts, root says {entry.artifacts}")
    for number, show in enumerate(shows):
        if not isinstance(show, Mapping):
            report.fault(path, "invalid", f"artifact {number} is not an object")
            continue
        try:
            artifact_id = check_artifact_id(show.get("id"))
            entries = _blob_entries(show)
        except InvalidInput as exc:
            report.fault(path, "invalid", f"artifact {number}: {exc}")
            continue
        report.artifacts += 1
        for field_name, key, blob in entries:
            bpath = tree.blob_path(type_name, artifact_id, field_name, key)
            sha, size = str(blob.get("sha256")), int(blob["size"])
            if blob.get("url") != "/" + bpath:
                report.fault(bpath, "bad-url", f"the index gives url {blob.get('url')!r}")
            if blob.get("external") is True and isinstance(blob.get("redirect"), str):
                continue  # left at its origin (--externals=redirect): no file, no sums line
            referenced[bpath] = (sha, size)
            listed = sums.get(bpath)
            if listed is None:
                report.fault(bpath, "not-in-sums", f"named by {path} but absent from {tree.SUMS}")
            elif listed != sha:
                report.fault(bpath, "sums-mismatch", f"{path} says {sha}, {tree.SUMS} {listed}")
        apath = tree.artifact_index_path(type_name, artifact_id)
        referenced.setdefault(apath, ("", 0))  # named: not "unlisted"
        check_artifact_index(dest, apath, show, report, path)


def _type_index_lines(root: tree.RootIndex, sums: dict[str, str], report: CheckReport) -> set[str]:
    """SHA256SUMS lists each type index too: with the sha256 the root index records."""
    paths = set()
    for type_name, entry in root.types.items():
        path = tree.type_index_path(type_name)
        paths.add(path)
        listed = sums.get(path)
        if listed is not None and listed != entry.index_sha256:
            report.fault(path, "sums-mismatch", f"the root index says {entry.index_sha256}")
    return paths


def _check_unlisted(dest: Dest, report: CheckReport, named: set[str]) -> None:
    """The other way round: every file the tree serves under artifacts/ is one the
    indexes publish. Files the mirror wrote and keeps (no longer selected, kept until
    ``--delete``) are a warning; any other is a fault: served, yet named by no index."""
    from .state import load

    root = getattr(dest, "root", None)
    if not isinstance(root, str):
        return
    state = load(dest)
    kept = set(state.blobs) | state.indexes
    retained = 0
    top = os.path.join(root, tree.ARTIFACTS)
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            parts = path.split("/")
            if path in named or tree.is_temporary_name(name):
                continue
            if len(parts) == 3 and name == tree.INDEX_NAME:
                continue  # a type index: checked against the root index
            if path in kept:
                retained += 1
                continue
            report.fault(path, "unlisted", "served from the tree, yet named by no index")
    if retained:
        report.warnings.append(
            f"{retained} files are no longer published (kept; mirror --delete removes them)"
        )
