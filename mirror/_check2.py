"""``check_tree`` of a format 2 tree, streamed shard by shard (memory bounded by a shard
and the artifact ids of one type, not by every blob path of the tree).

Root -> each type's sums index (pinned by the root, listing exactly its buckets) ->
each bucket (pinned by the root) -> each shard (pinned by its bucket) -> each artifact
(its index holds the show view the shard lists) and each blob (there, with the size and
sha256 the shard records); each ``SHA256SUMS.d/<type>/<sss>`` is the one its bucket pins
and lists exactly the shard file and its blobs. On a local tree, the other way round:
a file under ``artifacts/`` that nothing names is a fault, except superseded bucket and
shard files (well-formed content-addressed names the root no longer pins: the writer
keeps them a grace period for readers of the previous root), which are counted; a file
in ``SHA256SUMS.d/`` that no bucket pins is a fault (``sha256sum -c`` would read it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from glarelite import InvalidInput, tree

from . import _tree2
from ._paths import is_inside
from .copy import hash_file
from .dest import Dest
from .progress import SafeProgress
from .report import CheckReport

Reader = Callable[[Dest, str, CheckReport], "bytes | None"]


class Check2:
    def __init__(
        self,
        dest: Dest,
        report: CheckReport,
        progress: SafeProgress,
        pool: ThreadPoolExecutor,
        read: Reader,
        kept: Callable[[str], bool],
    ) -> None:
        self.dest = dest
        self.report = report
        self.progress = progress
        self.pool = pool
        self.read = read
        self.kept = kept  # a file the writer keeps (deselected, until --delete)
        self.local = isinstance(getattr(dest, "root", None), str) and dest.local
        self.retained = 0
        self.pinned: set[str] = set()  # bucket and shard files of the type walked
        self.sums_files: set[tuple[str, str]] = set()  # (type, shard) pinned sums files

    def run(self, data: Any) -> None:
        report = self.report
        try:
            root = tree.Root.from_dict(data)
        except InvalidInput as exc:
            report.fault(tree.ROOT_INDEX, "invalid", str(exc))
            return
        report.generation = root.generation
        self.progress.begin("check", f"check {self.dest.url}", root.counts["bytes"])
        for type_name, entry in sorted(root.types.items()):
            self._type(type_name, entry)
        self.progress.end("check", ok=report.ok)
        if self.local:
            self._walk_top(root)
            self._walk_sums(root)
        if self.retained:
            report.warnings.append(
                f"{self.retained} files are no longer published (kept; mirror --delete "
                "removes them)"
            )

    # -- indexes --------------------------------------------------------------------------
    def _pinned(self, path: str, ref: tree.FileRef, by: str) -> bytes | None:
        raw = self.read(self.dest, path, self.report)
        if raw is not None and not _tree2.matches(raw, ref):
            self.report.fault(path, "index-mismatch", f"differs from what {by} pins")
            return None
        return raw

    def _type(self, type_name: str, entry: tree.RootType) -> None:
        sums_path = tree.type_sums_path(type_name)
        raw = self._pinned(sums_path, entry.sums, tree.ROOT_INDEX)
        if raw is not None:
            want = {
                tree.bucket_path(type_name, b, r.sha256): r.sha256 for b, r in entry.buckets.items()
            }
            self._compare_sums(sums_path, raw, want)
        ids: set[bytes] = set()  # 16 bytes an artifact: bounded, for the unlisted walk
        self.pinned = set()
        for name, ref in sorted(entry.buckets.items()):
            path = tree.bucket_path(type_name, name, ref.sha256)
            self.pinned.add(path)
            raw = self._pinned(path, ref, tree.ROOT_INDEX)
            if raw is None:
                continue
            try:
                bucket = _tree2.bucket(raw, type_name, name)
            except InvalidInput as exc:
                self.report.fault(path, "invalid", str(exc))
                continue
            for shard in sorted(bucket.shards.values(), key=lambda s: s.shard):
                self.pinned.add(shard.path(type_name))
                self.sums_files.add((type_name, shard.shard))
                self._shard(type_name, shard, path, ids)
        if self.local:
            self._walk_type(type_name, ids)

    def _shard(self, type_name: str, ref: tree.ShardRef, by: str, ids: set[bytes]) -> None:
        report = self.report
        path = ref.path(type_name)
        raw = self._pinned(path, ref.file, by)
        try:
            shows = [] if raw is None else _tree2.shard(raw, type_name, ref)
        except InvalidInput as exc:
            report.fault(path, "invalid", str(exc))
            shows = []
        blobs: list[_tree2.Blob] = []
        for number, show in enumerate(shows):
            try:
                artifact_id, found = _tree2.artifact(type_name, show)
            except InvalidInput as exc:
                report.fault(path, "invalid", f"artifact {number}: {exc}")
                continue
            report.artifacts += 1
            ids.add(bytes.fromhex(artifact_id.replace("-", "")))
            for blob in found:
                if blob.url != "/" + blob.path:
                    report.fault(blob.path, "bad-url", f"the index gives url {blob.url!r}")
            blobs += found
            self._artifact_index(type_name, artifact_id, show, path)
            if self.local:
                self._walk_artifact(type_name, artifact_id, found)
        # its sums file: the one the bucket pins, listing exactly the shard and its blobs
        sums_path = tree.shard_sums_path(type_name, ref.shard)
        sums = self._pinned(sums_path, ref.sums, by)
        if sums is not None and raw is not None:
            want = {b.path: b.sha256 for b in blobs}
            want[path] = ref.file.sha256
            self._compare_sums(sums_path, sums, want)
        self._blobs(blobs)

    def _compare_sums(self, path: str, raw: bytes, want: Mapping[str, str]) -> None:
        try:
            listed = tree.parse_sums(raw.decode("utf-8", "replace").splitlines())
        except InvalidInput as exc:
            self.report.fault(path, "invalid", str(exc))
            return
        for name in sorted(set(want) - set(listed)):
            self.report.fault(name, "not-in-sums", f"named by the indexes but absent from {path}")
        for name in sorted(set(listed) - set(want)):
            if not is_inside(name):  # never read: it could name any file
                self.report.fault(name[:200], "invalid", f"{path} names a path outside the tree")
                continue
            self.report.fault(name[:200], "unreferenced", f"listed in {path} but named by no index")
        for name in sorted(set(want) & set(listed)):
            if want[name] != listed[name]:
                self.report.fault(name, "sums-mismatch", f"{path} says {listed[name]}")

    def _artifact_index(
        self, type_name: str, artifact_id: str, show: Mapping[str, Any], by: str
    ) -> None:
        from .check import check_artifact_index

        apath = tree.artifact_index_path(type_name, artifact_id)
        check_artifact_index(self.dest, apath, show, self.report, by)

    def _blobs(self, blobs: list[_tree2.Blob]) -> None:
        report, progress, dest = self.report, self.progress, self.dest

        def verify(blob: _tree2.Blob) -> tuple[_tree2.Blob, str, int, str]:
            try:
                size, sha = hash_file(dest, blob.path, lambda n: progress.advance("check", n))
            except FileNotFoundError:
                return blob, "missing", 0, ""
            except OSError as exc:
                return blob, "unreadable", 0, str(exc)
            return blob, "", size, sha

        for blob, problem, size, sha in self.pool.map(verify, blobs):
            if problem:
                why = f": {sha}" if sha else ""
                report.fault(blob.path, problem, f"a blob the indexes name is not readable{why}")
                continue
            report.files += 1
            report.bytes += size
            if size != blob.size:
                report.fault(
                    blob.path, "size-mismatch", f"{size} bytes, the index records {blob.size}"
                )
            elif sha != blob.sha256:
                report.fault(
                    blob.path, "sha256-mismatch", f"sha256 {sha}, the index records {blob.sha256}"
                )

    # -- the other way round: what the tree serves that nothing names (local trees) --------
    def _abs(self, path: str) -> str:
        return os.path.join(str(getattr(self.dest, "root", "")), *path.split("/"))

    def _unnamed(self, path: str) -> None:
        if tree.is_temporary_name(path.rsplit("/", 1)[-1]):
            return  # reported once, as a warning, by check_tree
        if self.kept(path):
            self.retained += 1
            return
        self.report.fault(path, "unlisted", "served from the tree, yet named by no index")

    def _followed(self, path: str) -> bool:
        """Whether reaching ``path`` goes through a symbolic link (never followed)."""
        root = str(getattr(self.dest, "root", ""))
        real = os.path.join(os.path.realpath(root), *path.split("/"))
        return os.path.realpath(self._abs(path)) != real

    def _listdir(self, path: str) -> list[str] | None:
        """The names in a folder of the tree; None when absent, or a link (a fault)."""
        if not os.path.lexists(self._abs(path)):
            return None
        if self._followed(path):
            self.report.fault(path, "unlisted", "a symbolic link in the tree: never followed")
            return None
        try:
            return sorted(os.listdir(self._abs(path)))
        except OSError:
            return None

    def _files_under(self, path: str) -> list[str]:
        """Every file (or link, never followed) below ``path``, as tree paths."""
        if self._followed(path):
            return [path]  # served through a link: a fault, never walked
        out = []
        for folder, dirs, files in os.walk(self._abs(path)):
            dirs.sort()
            rel = os.path.relpath(folder, str(getattr(self.dest, "root", "")))
            rel = rel.replace(os.sep, "/")
            out += [f"{rel}/{name}" for name in sorted(files)]
            # a link to a folder is listed in dirs and not descended: a file the tree serves
            out += [f"{rel}/{d}" for d in dirs if os.path.islink(os.path.join(folder, d))]
        return out

    def _walk_artifact(self, type_name: str, artifact_id: str, blobs: list[_tree2.Blob]) -> None:
        named = {b.path for b in blobs}
        named.add(tree.artifact_index_path(type_name, artifact_id))
        for path in self._files_under(f"{tree.ARTIFACTS}/{type_name}/{artifact_id}"):
            if path not in named:
                self._unnamed(path)

    def _walk_type(self, type_name: str, ids: set[bytes]) -> None:
        top = f"{tree.ARTIFACTS}/{type_name}"
        names = self._listdir(top)
        if names is None:
            return
        superseded = 0
        for name in names:
            path = f"{top}/{name}"
            if name in ("_buckets", "_shards"):
                for file in self._files_under(path):
                    if file in self.pinned:
                        continue
                    parsed = tree.parse_content_path(file)
                    if parsed is not None and parsed[0] == type_name:
                        superseded += 1
                        continue
                    self._unnamed(file)
                continue
            key = _id_key(name)
            if key is not None and key in ids:
                continue  # walked with its shard
            if name == tree.INDEX_NAME and os.path.isfile(self._abs(path)):
                # the format 1 type index, kept by the upgrade for its grace period
                superseded += 1
                continue
            for file in self._files_under(path) if os.path.isdir(self._abs(path)) else [path]:
                self._unnamed(file)
        self.report.superseded += superseded

    def _walk_top(self, root: tree.Root) -> None:
        top = tree.ARTIFACTS
        names = self._listdir(top)
        if names is None:
            return
        for name in names:
            if name in root.types:
                continue
            path = f"{top}/{name}"
            for file in self._files_under(path) if os.path.isdir(self._abs(path)) else [path]:
                self._unnamed(file)

    def _walk_sums(self, root: tree.Root) -> None:
        """Every file of SHA256SUMS.d/ is one a bucket or the root pins."""
        names = self._listdir(tree.SUMS_DIR)
        if names is None:
            return
        for name in names:
            path = f"{tree.SUMS_DIR}/{name}"
            if name not in root.types or not os.path.isdir(self._abs(path)):
                self._stray(path)
                continue
            for file in self._files_under(path):
                base = file[len(path) + 1 :]
                if base != tree.TYPE_SUMS and (name, base) not in self.sums_files:
                    self._stray(file)

    def _stray(self, path: str) -> None:
        if os.path.isdir(self._abs(path)) and not os.path.islink(self._abs(path)):
            for file in self._files_under(path):
                self._stray(file)
            return
        self.report.fault(
            path, "stray", f"not a sums file a bucket pins: `{tree.SUMS_CHECK}` would read it"
        )


def _id_key(name: str) -> bytes | None:
    try:
        from ._paths import check_artifact_id

        return bytes.fromhex(check_artifact_id(name).replace("-", ""))
    except (InvalidInput, ValueError):
        return None
