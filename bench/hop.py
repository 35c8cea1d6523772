"""Benchmark: mirrors of mirrors and bundles on tree format 2, at N artifacts (default
10,000, one 16-byte blob each, one type), the hub served by python -m http.server
(requests counted from its log).

  first hop, no-op hop (target: 2 requests), hop after one changed artifact (target:
  its bucket, shard, sums files, artifact index and blob besides the root), each with
  requests, bytes fetched, seconds and the process's peak RSS so far; then a full bundle
  and an incremental bundle (--since) after one change: their sizes.

    python bench/hop.py [--artifacts 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mirror
from tests import tree2kit
from tests.fixtures.static import start_http_server, start_nginx


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def requests(log: Path, since: int) -> tuple[int, list[str]]:
    lines = log.read_text(errors="replace").splitlines()
    paths = [m.group(1) for line in lines[since:] if (m := re.search(r'"GET (\S+) HTTP', line))]
    return len(lines), paths


def hops(args: argparse.Namespace, hub: Path, region: Path, shows: list[dict[str, object]]) -> None:
    # python -m http.server logs every request (the nginx fixture keeps no access log)
    server = start_nginx(hub) if args.nginx else start_http_server(hub)
    kind = "nginx (no access log: requests not counted)" if args.nginx else "python -m http.server"
    print(f"source served by {kind}")
    with server:
        mark = 0

        def hop(label: str) -> None:
            nonlocal mark
            t = time.monotonic()
            report = mirror.sync_from(server.url, str(region))
            took = time.monotonic() - t
            mark, paths = requests(server.log, mark)
            assert report.exit_code == 0, report.to_dict()
            print(
                f"{label:<24} {len(paths):>6} requests {report.bytes_fetched:>11,} bytes "
                f"{took:7.3f} s  peak RSS {rss_mib():6.1f} MiB"
            )
            if len(paths) <= 10:
                for p in sorted(paths):
                    print(f"    GET {p}")

        hop("first hop")
        hop("no-op hop")
        tree2kit.change_one(hub, shows, args.artifacts // 2, 2)  # type: ignore[arg-type]
        hop("hop after one change")
    started = time.monotonic()
    result = mirror.check_tree(str(region))
    print(
        f"check_tree of the region: ok={result.ok} superseded={result.superseded} "
        f"{time.monotonic() - started:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument(
        "--nginx", action="store_true", help="serve with nginx (times only: no access log)"
    )
    parser.add_argument("--bundles-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hop-") as tmp:
        hub, region = Path(tmp, "hub"), Path(tmp, "region")
        started = time.monotonic()
        shows = tree2kit.synth_tree(hub, args.artifacts)
        print(
            f"built a format 2 tree of {args.artifacts} artifacts in "
            f"{time.monotonic() - started:.1f} s"
        )
        if args.bundles_only:
            tree2kit.change_one(hub, shows, args.artifacts // 2, 2)
        else:
            hops(args, hub, region, shows)  # ends at generation 2
        full = mirror.export_bundle(hub, Path(tmp, "full.tar"))
        tree2kit.change_one(hub, shows, args.artifacts // 3, 3)
        inc = mirror.export_bundle(hub, Path(tmp, "inc.tar"), since=2)
        print(
            f"bundle: full {os.path.getsize(Path(tmp, 'full.tar')):,} bytes ({full.files} files); "
            f"--since after one change {os.path.getsize(Path(tmp, 'inc.tar')):,} bytes "
            f"({inc.files} files, {inc.bytes:,} bytes of them)"
        )


if __name__ == "__main__":
    main()
