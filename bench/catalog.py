"""Catalog benchmark: creates per second beside raw sqlite3, and list latency on a big
catalog.

(1) N creates through ``Catalog.create`` (each its own transaction: validation, semver,
    tags, properties) beside N raw sqlite3 single-row INSERT transactions on the same
    settings (WAL, synchronous=NORMAL), in the same run. Target: >= 5,000 creates/s.
(2) p50/p99 of ``Catalog.list`` (filtered, sorted, limit 50) on a catalog of
    ``--artifacts`` artifacts (default 1,000,000), bulk-loaded through SQL into the real
    schema. Target: p99 <= 5 ms. The raw-sqlite reference is the same SELECT of ids.

(3) ``--compare-journal``: creates/s with the change journal beside the same creates on a
    catalog whose journal triggers were dropped and whose create writes no entry,
    alternating rounds in one run. Target: with the journal >= 0.90x without it.
    Measured (10,000 creates, 7 rounds, 2-core VM, ext4): 0.95x wall (4,765 vs 5,008
    creates/s), 0.96x CPU; 0.89x with the trigger on the artifact insert that schema 4
    dropped (see schema.sql). Then serial() and a changes() page of 1000 on a journal of
    ``--journal-entries`` (1,000,000): p50 0.015 ms and 1.3 ms.

Usage: python bench/catalog.py [--creates 20000] [--artifacts 1000000] [--queries 500]
       python bench/catalog.py --compare-journal [--creates 20000] [--rounds 5]
                               [--journal-entries 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import glarelite
from glarelite import _journal, _semver


def api_creates(path: Path, n: int, *, journal: bool = True) -> tuple[float, float]:
    """Creates per second of wall time and per second of this process's CPU time, through
    Catalog.create on a new catalog at ``path``; ``journal=False`` drops the journal's
    triggers first and makes the create's own entry (``_journal.record``) a no-op (the
    reference: the catalog without a journal)."""
    store = f"memory://bench-{uuid.uuid4().hex}"
    with glarelite.open(path, storage=store) as cat:
        cat.define_type("images", blobs=["file"], properties={"os": "string", "ram": "integer"})
    if not journal:
        conn = sqlite3.connect(path, isolation_level=None)
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'journal_%'"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.close()
    record = _journal.record
    if not journal:
        _journal.record = lambda *args: None
    try:
        with glarelite.open(path, storage=store) as cat:
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                cat.create(
                    "images",
                    f"img-{i}",
                    version=f"1.{i % 100}.0",
                    tags=["bench"],
                    properties={"os": "linux", "ram": i},
                )
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert cat.serial() == (n if journal else 0)
    finally:
        _journal.record = record
    return n / wall, n / cpu


def compare_journal(folder: Path, n: int, rounds: int) -> None:
    """Alternate rounds with and without the journal, so that the load of a shared machine
    falls on both alike; the medians and their ratio are the figure."""
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for r in range(rounds):
        for journal in (True, False) if r % 2 else (False, True):
            path = folder / f"cmp-{r}-{journal}.db"
            runs[journal].append(api_creates(path, n, journal=journal))
            for leftover in folder.glob(f"{path.name}*"):
                leftover.unlink()
    for journal, label in ((True, "with journal"), (False, "without journal")):
        walls = "  ".join(f"{w:7,.0f}" for w, _ in runs[journal])
        print(f"  {label:16} wall {walls} creates/s")
    for k, what in ((0, "wall"), (1, "CPU")):
        a = statistics.median(x[k] for x in runs[True])
        b = statistics.median(x[k] for x in runs[False])
        print(
            f"creates per {what} second: with journal {a:,.0f}   without {b:,.0f}   "
            f"ratio {a / b:.3f} (median of {rounds} rounds of {n:,}; target >= 0.90)"
        )


def journal_reads(folder: Path, entries: int, queries: int) -> None:
    """p50/p99 of ``serial()`` and of one page of ``changes()`` (limit 1000, from a random
    serial) on a journal of ``entries`` entries naming entries/10 artifacts ten times each,
    bulk-loaded through SQL (creates would take minutes)."""
    path = folder / "journal.db"
    glarelite.open(path, storage="memory://bench-journal").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    ids = [str(uuid.uuid4()) for _ in range(max(1, entries // 10))]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO changes (artifact_id, type_name, at) VALUES (?, 'images', ?)",
        ((ids[i % len(ids)], f"2026-01-01T00:00:00.{i % 1000000:06d}Z") for i in range(entries)),
    )
    conn.execute("COMMIT")
    conn.close()
    rnd = random.Random(7)
    with glarelite.open(path) as cat:
        serial_ms, page_ms = [], []
        for _ in range(queries):
            t0 = time.perf_counter()
            top = cat.serial()
            serial_ms.append((time.perf_counter() - t0) * 1000)
            since = rnd.randrange(0, max(1, top - 1000))
            t0 = time.perf_counter()
            page = cat.changes(since, limit=1000)
            page_ms.append((time.perf_counter() - t0) * 1000)
        assert top == entries and page
    print(
        f"journal reads on {entries:,} entries: serial() p50 {pct(serial_ms, 50):.3f} ms "
        f"p99 {pct(serial_ms, 99):.3f} ms;  changes(since, limit=1000) p50 "
        f"{pct(page_ms, 50):.2f} ms p99 {pct(page_ms, 99):.2f} ms ({len(page)} artifacts)"
    )


def bench_creates(folder: Path, n: int) -> tuple[float, float]:
    api = api_creates(folder / "creates.db", n)[0]

    raw = sqlite3.connect(folder / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute("CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT, version TEXT, created TEXT)")
    t0 = time.perf_counter()
    for i in range(n):
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            (str(uuid.uuid4()), f"img-{i}", "1.0.0", time.time()),
        )
        raw.execute("COMMIT")
    ref = n / (time.perf_counter() - t0)
    raw.close()
    return api, ref


def build_big(path: Path, n: int) -> None:
    """Bulk-load n artifacts into the real schema (the API's create would take minutes)."""
    glarelite.open(path, storage="memory://bench-big").close()
    with glarelite.open(path) as cat:
        cat.define_type("images", blobs=["file"], properties={"os": "string", "ram": "integer"})
        cat.define_type("charts", blobs=["file"])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    rnd = random.Random(7)
    base = time.time() - n
    conn.execute("BEGIN")
    for start in range(0, n, 10_000):
        arts, props, tags = [], [], []
        for i in range(start, min(n, start + 10_000)):
            aid = str(uuid.UUID(int=rnd.getrandbits(128)))
            tname = "images" if i % 4 else "charts"
            version, key = _semver.canonical(f"{i // 20000}.{i % 7}.{i % 3}")
            status = ("active", "active", "active", "drafted", "deactivated")[i % 5]
            vis = "public" if i % 3 == 0 and status == "active" else "private"
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i)) + f".{i % 1000000:06d}Z"
            os_name = ("linux", "windows", "bsd")[i % 3]
            arts.append(
                (
                    aid,
                    tname,
                    f"name-{i % 20000}",
                    version,
                    key,
                    f"owner-{i % 100}",
                    vis,
                    status,
                    "",
                    json.dumps([f"t{i % 10}"]),
                    json.dumps({"os": os_name, "ram": i % 4096}),
                    ts,
                    ts,
                    ts if status != "drafted" else None,
                )
            )
            tags.append((aid, f"t{i % 10}"))
            if tname == "images":
                props.append((aid, "os", "", -1, os_name))
                props.append((aid, "ram", "", -1, i % 4096))
        conn.executemany(
            "INSERT INTO artifacts (id, type_name, name, version, version_key, owner, visibility, "
            "status, description, tags, properties, created_at, updated_at, activated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            arts,
        )
        conn.executemany("INSERT INTO artifact_tags VALUES (?, ?)", tags)
        conn.executemany("INSERT INTO artifact_props VALUES (?, ?, ?, ?, ?)", props)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


QUERIES = [
    (
        "type+status+visibility, newest first",
        {"type_name": "images", "filters": ["status=active", "visibility=public"], "sort": None},
    ),
    (
        "type+property eq, newest first",
        {"type_name": "images", "filters": ["os=linux", "status=active"], "sort": None},
    ),
    (
        "name eq, sort version",
        {"type_name": "images", "filters": ["name=name-123"], "sort": "version"},
    ),
    (
        "tag + ram range, sort name:asc",
        {"type_name": "images", "filters": ["tags=t3", "ram=gte:4000"], "sort": "name:asc"},
    ),
]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench_list(path: Path, queries: int) -> None:
    with glarelite.open(path) as cat:
        owner_cat = cat.scoped("owner-7")
        for label, q in QUERIES:
            for who, c in (("admin", cat), ("owner", owner_cat)):
                times = []
                marker = None
                budget = time.perf_counter() + 15  # a slow query is reported, not waited on
                for k in range(queries):
                    if k >= 20 and time.perf_counter() > budget:
                        break
                    t0 = time.perf_counter()
                    page = c.list(
                        q["type_name"],
                        filters=q["filters"],
                        sort=q["sort"],
                        limit=50,
                        marker=marker,
                    )
                    times.append((time.perf_counter() - t0) * 1000)
                    # every 5th query pages on, so markers are exercised too
                    marker = page.next_marker if k % 5 and page.next_marker else None
                print(
                    f"  list [{who:5}] {label:40} p50 {pct(times, 50):6.2f} ms  "
                    f"p99 {pct(times, 99):6.2f} ms  (rows {len(page.items)})"
                )
    # reference: the raw SELECT of one page of ids by the most common query
    conn = sqlite3.connect(path)
    times = []
    for _ in range(queries):
        t0 = time.perf_counter()
        conn.execute(
            "SELECT id FROM artifacts WHERE type_name='images' AND status='active' AND "
            "visibility='public' ORDER BY created_at DESC, id LIMIT 50"
        ).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    print(
        f"  raw sqlite3 reference (ids only, first query)    p50 {pct(times, 50):6.2f} ms  "
        f"p99 {pct(times, 99):6.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=20_000)
    ap.add_argument("--artifacts", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--keep", type=Path, help="reuse/keep the big catalog at this path")
    ap.add_argument(
        "--compare-journal", action="store_true", help="only: creates/s with vs without journal"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--journal-entries",
        type=int,
        default=1_000_000,
        help="with --compare-journal: the journal serial()/changes() are timed on",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.compare_journal:
            compare_journal(folder, args.creates, args.rounds)
            journal_reads(folder, args.journal_entries, args.queries)
            return
        api, ref = bench_creates(folder, args.creates)
        print(
            f"creates: glarelite {api:,.0f}/s   raw sqlite3 {ref:,.0f}/s   "
            f"ratio {api / ref:.2f} (target >= 5,000/s)"
        )
        big = args.keep or folder / "big.db"
        if not big.exists():
            t0 = time.perf_counter()
            build_big(big, args.artifacts)
            print(f"bulk-loaded {args.artifacts:,} artifacts in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        with glarelite.open(big) as cat:
            total = cat.list("images", filters=["status=active"]).total
        print(
            f"count of active images: {total:,} in {(time.perf_counter() - t0) * 1000:.0f} ms "
            "(Page.total is lazy: a page alone does not pay for it)"
        )
        print(f"list, limit 50, on {args.artifacts:,} artifacts (target p99 <= 5 ms):")
        bench_list(big, args.queries)


if __name__ == "__main__":
    main()
