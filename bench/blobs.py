"""Blob benchmark, each figure beside a reference tool timed in the same run.

(1) Upload a 1 GiB file to local storage (streamed, hashed, fsynced, renamed into its
    content address) beside ``cp`` of the same file, beside ``cp`` + ``sync FILE``
    (our upload is durable; plain cp is not) and beside ``sha256sum SRC && cp SRC DST``
    (our upload hashes every byte; cp does not). Target: upload <= 1.25x cp.
(2) 256 MiB put and get against a real SeaweedFS (started here, killed at the end)
    through the catalog, beside raw s3fs ``put_file`` / ``get_file`` of the same file.
    Target: >= 0.9x raw s3fs throughput.

Each figure is the best of --repeat runs, the contenders taking turns. Each local upload
goes to a new catalog, and the previous one is removed (untimed) first, as cp's DST is.

Usage: python bench/blobs.py [--local-mib 1024] [--s3-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import glarelite
from tests.fixtures.seaweed import _start, _stop, _weed_binary


def make_file(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for i in range(mib):
            f.write(i.to_bytes(8, "big") + block[8:])


def best(
    fns: dict[str, Callable[[], object]],
    repeat: int,
    untimed: dict[str, Callable[[], object]] | None = None,
) -> dict[str, float]:
    """The best of ``repeat`` timings of each function, taken in turns (a b c a b c …):
    on a shared machine a burst of load then hits every contender, not one. ``untimed``
    names a step to run, not timed, before each call of the function of the same name."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if untimed and name in untimed:
                untimed[name]()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}


def bench_local(folder: Path, mib: int, repeat: int) -> None:
    src = folder / "src.bin"
    make_file(src, mib)
    dst = folder / "copy.bin"

    def cp() -> None:
        subprocess.run(["cp", str(src), str(dst)], check=True)

    def cp_sync() -> None:
        subprocess.run(["cp", str(src), str(dst)], check=True)
        subprocess.run(["sync", str(dst)], check=True)

    def hash_cp() -> None:
        subprocess.run(["sha256sum", str(src)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cp", str(src), str(dst)], check=True)

    uploads: list[Path] = []

    def drop_previous_upload() -> None:
        # cp replaces its DST each time; keeping every uploaded copy instead would leave
        # the upload alone to fill fresh page cache (which, in a VM, can cost more than
        # the copy itself). So the previous upload goes first, untimed.
        while uploads:
            shutil.rmtree(uploads.pop())

    def upload() -> None:
        # a new catalog and storage each time: the same bytes twice would be deduplicated
        sub = folder / uuid.uuid4().hex
        uploads.append(sub)
        with glarelite.open(sub / "c.db", storage=str(sub / "blobs")) as cat:
            cat.define_type("t", blobs=["f"])
            a = cat.create("t", "x")
            cat.upload(a.id, "f", src)

    times = best(
        {"cp": cp, "cp_sync": cp_sync, "hash_cp": hash_cp, "upload": upload},
        repeat,
        untimed={"upload": drop_previous_upload},
    )
    t_cp, t_cps, t_hcp, t_up = (times[k] for k in ("cp", "cp_sync", "hash_cp", "upload"))
    print(
        f"local upload {mib} MiB: glarelite {t_up:.2f} s   cp {t_cp:.2f} s   "
        f"cp+sync {t_cps:.2f} s   sha256sum+cp {t_hcp:.2f} s"
    )
    print(
        f"  ratio upload/cp {t_up / t_cp:.2f} (target <= 1.25)   "
        f"upload/(cp+sync) {t_up / t_cps:.2f}   upload/(sha256sum+cp) {t_up / t_hcp:.2f}"
    )


def bench_s3(folder: Path, mib: int, repeat: int) -> None:
    import s3fs

    src = folder / "s3src.bin"
    make_file(src, mib)
    weed_dir = Path(tempfile.mkdtemp(prefix="glb-weed-"))  # every byte put: removed below
    proc, server, _log = _start(_weed_binary(), weed_dir)
    try:
        deadline = time.monotonic() + 30
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **server.storage_options)
        while time.monotonic() < deadline:
            try:
                fs.ls(server.bucket)
                break
            except Exception:
                time.sleep(0.3)
        raw_key = f"{server.bucket}/raw/{uuid.uuid4().hex}"

        def raw_put() -> None:
            fs.put_file(str(src), raw_key)

        def raw_get() -> None:
            fs.get_file(raw_key, str(folder / "raw-get.bin"))

        cats: list[tuple[glarelite.Catalog, str]] = []

        def put() -> None:
            sub = folder / uuid.uuid4().hex
            cat = glarelite.open(
                sub / "c.db",
                storage=server.url(f"glarelite/{uuid.uuid4().hex}"),
                storage_options=server.storage_options,
            )
            cat.define_type("t", blobs=["f"])
            a = cat.create("t", "x")
            cat.upload(a.id, "f", src)
            cats.append((cat, a.id))

        def get() -> None:
            cat, aid = cats[-1]
            cat.download(aid, "f", folder / "get.bin")

        times = best({"raw_put": raw_put, "put": put}, repeat)
        times.update(best({"raw_get": raw_get, "get": get}, repeat))
        t_rp, t_p, t_rg, t_g = (times[k] for k in ("raw_put", "put", "raw_get", "get"))
        for cat, _ in cats:
            cat.close()
        print(
            f"s3 (SeaweedFS) {mib} MiB put: glarelite {t_p:.2f} s   raw s3fs {t_rp:.2f} s   "
            f"throughput ratio {t_rp / t_p:.2f} (target >= 0.9)"
        )
        print(
            f"s3 (SeaweedFS) {mib} MiB get: glarelite {t_g:.2f} s   raw s3fs {t_rg:.2f} s   "
            f"throughput ratio {t_rg / t_g:.2f} (target >= 0.9; ours verifies sha256)"
        )
    finally:
        _stop(proc)
        shutil.rmtree(weed_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--local-mib", type=int, default=1024)
    ap.add_argument("--s3-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_local(Path(tmp), args.local_mib, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        bench_s3(Path(tmp), args.s3_mib, args.repeat)


if __name__ == "__main__":
    main()
