"""Deciding what a run must do, blob by blob, from the catalog and the tree's state.

For each selected blob path: skip it (the state records these bytes and one ``lstat``
agrees), re-hash the tree file (no record, or the stat disagrees, or ``verify``), or
fetch it (absent). Show views are spooled to a temporary file per type, so a catalog of
100,000 artifacts is not held in memory as objects; a walk plans a page of artifacts at a
time (``mirror.walk``) and keeps the rest in its working tables.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from glarelite import Artifact, tree

from . import redirects as redirecting
from .copy import Source
from .dest import Dest
from .select import Selection, fingerprint

MAX_SOURCES = 4  # alternative catalog slots holding the same bytes
_LABELLED = 8 << 20  # blobs this large get a progress bar, which names the artifact


@dataclass(slots=True)
class Item:
    """One selected artifact."""

    id: str
    type: str
    fingerprint: str
    paths: list[tuple[str, str, int]]  # (tree path, sha256, size) of each blob
    offset: int  # its show view in the type's spool
    length: int
    problem: str = ""  # a reason it cannot be published at all
    # externals="redirect": (tree path, origin URL) of blobs left at their origin, and
    # whether the artifact must be left out (no redirect to bytes that may not match)
    redirects: Sequence[tuple[str, str]] = ()  # shared empty default: no list per item
    withheld: bool = False
    error: str = "InvalidInput"  # the report's error name for ``problem``
    name: str = ""  # the artifact's name: its shard
    linked: bool = False  # selected only because a selected artifact links to it


class Spool:
    """Show views of one type, JSON, on disk. Positional reads and writes only: index
    writers read it from several threads at once."""

    def __init__(self) -> None:
        # Closed by Plan.close at the end of the run.
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="glarelite-mirror-")  # noqa: SIM115
        self._fd = self._file.fileno()
        self._end = 0

    def add(self, data: bytes) -> tuple[int, int]:
        view = memoryview(data)
        start = self._end
        while view:
            n = os.pwrite(self._fd, view, self._end)
            view = view[n:]
            self._end += n
        return start, len(data)

    def get(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        while len(data) < length:  # a short read is legal; loop until complete
            more = os.pread(self._fd, length - len(data), offset + len(data))
            if not more:
                raise OSError(f"spool ended at byte {offset + len(data)}")
            data += more
        return data

    def close(self) -> None:
        self._file.close()


@dataclass
class Plan:
    items: dict[str, list[Item]] = field(default_factory=dict)  # type -> items
    spools: dict[str, Spool] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)  # paths the state and one lstat vouch for
    check: dict[str, tuple[str, int]] = field(default_factory=dict)  # re-hash these
    fetch: dict[str, tuple[str, int]] = field(default_factory=dict)  # absent: copy these
    missing: set[str] = field(default_factory=set)  # fetch targets the state said we had
    sources: dict[str, list[Source]] = field(default_factory=dict)  # sha256 -> sources
    have: dict[str, str] = field(default_factory=dict)  # sha256 -> a good tree path
    path_sources: dict[str, Source] = field(default_factory=dict)  # fetch/check path -> its slot
    labels: dict[str, str] = field(default_factory=dict)  # tree path -> label for people
    redirect: bool = False  # externals="redirect"

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()


def add(
    plan: Plan,
    selection: Selection,
    dest: Dest,
    records: Mapping[str, list[Any]],
    artifact: Artifact,
    verify: bool,
    linked: list[str],
) -> None:
    """Plan one selected artifact: its show view into the type's spool, an Item, and for
    each blob a decision (skip, re-hash or fetch) from ``records`` (the state's rows of
    its blob paths) and one ``lstat``; the ids it links to go to ``linked``."""
    type_name = artifact.type_name
    view = artifact.to_dict()
    definition = selection.definitions[type_name]
    for name, prop in definition.properties.items():
        url = view["properties"].get(name) if prop.kind == "link" else None
        if url:
            # in the tree a link points at the linked artifact's index file
            view["properties"][name] = url + "/index.json"
            linked.append(url.rstrip("/").rsplit("/", 1)[-1])
        elif prop.items == "link" and prop.kind in ("list", "dict"):
            value = view["properties"].get(name)  # lists and dicts of links: each element
            pairs = list(enumerate(value)) if isinstance(value, list) else []
            pairs += list(value.items()) if isinstance(value, dict) else []
            for where, element in pairs:
                if isinstance(element, str) and element:
                    value[where] = element + "/index.json"
                    linked.append(element.rstrip("/").rsplit("/", 1)[-1])
    paths: list[tuple[str, str, int]] = []
    redirects: list[tuple[str, str]] = []
    problem = ""
    error = "InvalidInput"
    withheld = False
    for blob in artifact.iter_blobs():
        if blob.status != "active" or blob.sha256 is None or blob.size is None:
            problem = f"blob {blob.slot} of {artifact.id} is not active"
            continue
        path = tree.blob_path(type_name, artifact.id, blob.field, blob.key)
        if plan.redirect and blob.external:
            # Left at its origin: the index marks it, nginx redirects to it, nothing is copied.
            why = redirecting.refusal(path, blob.external_url)
            if blob.upstream == "changed":
                why = f"it changed upstream at {blob.external_url} (catalog check)"
                error = "ChecksumMismatch"  # as a copy of it would fail: exit 5
            if why:
                problem = f"blob {blob.slot} of {artifact.id} is not redirected to: {why}"
                withheld = True
                continue
            url = str(blob.external_url)
            redirects.append((path, url))
            entry = view["blobs"][blob.field]
            (entry[blob.key] if blob.key else entry)["redirect"] = url
            continue
        paths.append((path, blob.sha256, blob.size))
        if blob.size >= _LABELLED:  # only large blobs get a bar of their own
            plan.labels[path] = f"{type_name}/{artifact.name} {artifact.version} {blob.slot}"
        _decide(plan, dest, records.get(path), path, blob.sha256, blob.size, verify)
        if path in plan.fetch or path in plan.check:
            # Only a blob that may be copied needs where to read it: a walk of a tree
            # that holds everything keeps no source per blob.
            source = Source(artifact.id, blob.slot, blob.external)
            plan.path_sources[path] = source
            sources = plan.sources.setdefault(blob.sha256, [])
            if len(sources) < MAX_SOURCES:
                sources.append(source)
    offset, length = plan.spools[type_name].add(json.dumps(view, separators=(",", ":")).encode())
    item = Item(
        artifact.id,
        type_name,
        item_fingerprint(artifact, plan.redirect),
        paths,
        offset,
        length,
        problem,
        name=artifact.name,
    )
    item.redirects, item.withheld, item.error = redirects or (), withheld, error
    plan.items[type_name].append(item)


def item_fingerprint(artifact: Artifact, redirect: bool) -> str:
    """The artifact's fingerprint, marked when its show view in the tree carries redirect
    marks: switching ``externals`` rewrites exactly the artifacts with external blobs."""
    base = fingerprint(artifact)
    if redirect and any(b.external for b in artifact.iter_blobs()):
        return base + "|redirect"
    return base


def _decide(
    plan: Plan,
    dest: Dest,
    record: list[object] | None,
    path: str,
    sha256: str,
    size: int,
    verify: bool,
) -> None:
    if path in plan.skip or path in plan.check or path in plan.fetch:
        return
    want = (sha256, size)
    known = record is not None and record[0] == sha256 and record[1] == size
    if known and not verify and not dest.local:
        # An object store answers a stat with a request per object: trust the state.
        plan.skip.add(path)
        plan.have.setdefault(sha256, path)
        return
    st = dest.stat(path)
    if st is None:
        plan.fetch[path] = want
        if record is not None:
            plan.missing.add(path)
        return
    if known and not verify and record is not None and st == (size, record[2]):
        plan.skip.add(path)
        plan.have.setdefault(sha256, path)
        return
    if record is not None and not known and st == (record[1], record[2]):
        # The file is as this mirror wrote it and the catalog now records other bytes: a
        # mutable blob replaced while active (issue 17). Replace it, as a new blob.
        plan.fetch[path] = want
        return
    plan.check[path] = want
