"""Paging benchmark: pages of the default order (newest first, id ascending) when every
artifact of a type shares one ``created_at`` (a bulk import, a coarse clock).

``--artifacts`` rows (default 100,000) are bulk-loaded through SQL into the real schema
of a new catalog (``Catalog.create`` would stamp each with its own time), all with one
timestamp. Then, through ``Catalog.list(limit=1000)``: the first page, a page from the
middle of the tie and one from its end (median of ``--repeat`` runs each), and the whole
type through ``Catalog.iter_all``. Reference, in the same run: the same on a catalog
whose artifacts each have their own timestamp (a tie should cost nothing more).

Measured 2026-12-05 on this machine (2 cores shared with other work, load ~3.8),
100,000 artifacts, ms per page of 1,000 (Artifacts built included), median of 9:

                                        first  middle   end   iter_all
    one created_at, before (schema 2)     178     121    55   12.2 s
    one created_at, after (schema 3)       16      11    11    1.8 s
    distinct created_at (reference)     12-17   11-12  15-23  1.4-1.5 s

and at 1,000,000 artifacts (median of 3; before: --no-walk, ~1,000 such pages):

    one created_at, before (schema 2)    2154    1821   585   (~25 min, estimated)
    one created_at, after (schema 3)       11      10    11   13.0 s
    distinct created_at (reference)     11-25   10-12  10-25  15.8 s

Before, the ascending (type_name, created_at, id) index was read backwards and each
tie group sorted in a temporary B-tree, per page; a marker deep in the tie also stepped
over every row of the tie before it. After: the index is (type_name, created_at, id DESC),
which read backwards is the default order, and the marker's tie group is one seek
(``created_at = ? AND id > ?``) before the older rows' range.

Usage: python bench/paging.py [--artifacts 100000] [--repeat 5] [--no-walk]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import glarelite

CREATED = "2026-01-01T00:00:00.000000Z"


def build(path: Path, n: int, *, tied: bool) -> list[str]:
    """A catalog of ``n`` public active artifacts of type images, all with one created_at
    (``tied``) or each with its own; the ids in the default order."""
    with glarelite.open(path, storage=f"memory://bench-{uuid.uuid4().hex}") as cat:
        cat.define_type("images", blobs=["file"])
    ids = sorted(str(uuid.uuid4()) for _ in range(n))
    # distinct: the k-th id is the k-th newest, so the default order is ids again
    epoch = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stamps = [
        CREATED
        if tied
        else (epoch + timedelta(microseconds=n - k)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for k in range(n)
    ]
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility,"
        " status, created_at, updated_at) VALUES (?, 'images', ?, '1.0.0', '', 'bench',"
        " 'public', 'active', ?, ?)",
        [(i, f"img-{k}", at, at) for k, (i, at) in enumerate(zip(ids, stamps, strict=True))],
    )
    conn.commit()
    conn.close()
    return ids


def measure(path: Path, n: int, repeat: int, *, tied: bool, walk: bool) -> dict[str, float]:
    ids = build(path, n, tied=tied)
    markers = {"first": None, "middle": ids[len(ids) // 2], "end": ids[-1001]}
    out: dict[str, float] = {}
    with glarelite.open(path) as cat:
        for where, marker in markers.items():
            page = cat.list("images", limit=1000, marker=marker)
            start = 0 if marker is None else ids.index(marker) + 1
            assert [a.id for a in page.items] == ids[start : start + 1000], where
            out[f"page_{where}_ms"] = median_ms(
                lambda m=marker: cat.list("images", limit=1000, marker=m), repeat
            )
        if walk:
            t0 = time.perf_counter()
            walked = sum(1 for _ in cat.iter_all("images"))
            out["iter_all_s"] = round(time.perf_counter() - t0, 2)
            assert walked == len(ids)
    return out


def median_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-walk", action="store_true", help="pages only, no iter_all")
    args = parser.parse_args()
    out: dict[str, object] = {"artifacts": args.artifacts, "page": 1000}
    with tempfile.TemporaryDirectory(prefix="glarelite-bench-paging-") as tmp:
        out["one_created_at"] = measure(
            Path(tmp) / "tied.db", args.artifacts, args.repeat, tied=True, walk=not args.no_walk
        )
        out["reference_distinct_created_at"] = measure(
            Path(tmp) / "distinct.db",
            args.artifacts,
            args.repeat,
            tied=False,
            walk=not args.no_walk,
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
