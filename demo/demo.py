"""glarelite end to end, with no network beyond loopback.

    make demo            (or: .venv/bin/python demo/demo.py [--out DIR] [--keep])

1. starts a local origin that plays "the internet" (a threaded http.server serving
   generated files on 127.0.0.1);
2. builds a catalog through the `glarelite` CLI, in subprocesses: two types, artifacts
   with internal blobs, external blobs (registered from the origin, verified) and a blob
   dict; activates and publishes them, keeps one private;
3. mirrors the catalog into a static tree (and reruns it: nothing to copy);
4. takes "the internet" away, serves the tree with `python -m http.server`, and fetches
   internal URLs as a site without internet would;
5. runs `cat SHA256SUMS.d/*/* | sha256sum -c -` in the tree and reads it back with
   `glarelite.open_mirror`, by path and by URL.

It prints what it did and the verified checksums, cleans up every process it started,
and exits non-zero if any verification fails.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class DemoFailure(Exception):
    """A verification of the demo failed."""


# -- output ------------------------------------------------------------------------------
def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)
    say(f"   ok  {what}")


# -- "the internet": a local origin ----------------------------------------------------------
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def origin_server(folder: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def generate(folder: Path, name: str, size: int, seed: int) -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


# -- the CLI, in subprocesses ------------------------------------------------------------------
def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "glarelite"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "glarelite.cli"]


class Cli:
    def __init__(self, catalog: Path, env: dict[str, str]) -> None:
        self.base = [*cli_command(), "--catalog", str(catalog), "--no-progress"]
        self.env = env

    def __call__(self, *args: str, show: bool = True, expect: int = 0) -> str:
        shown = ["glarelite", *args]
        say("   $ " + " ".join(shlex.quote(a) for a in shown))
        result = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, env=self.env, timeout=300
        )
        if result.returncode != expect:
            raise DemoFailure(
                f"`{' '.join(shown)}` exited {result.returncode}, expected {expect}: "
                f"{result.stderr.strip()}"
            )
        if show:
            for line in result.stdout.rstrip().splitlines():
                say(f"     {line}")
        for line in result.stderr.rstrip().splitlines():  # summaries, and expected errors
            say(f"     {line}")
        return result.stdout.strip()


# -- the offline site ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def static_server(tree: Path) -> Iterator[str]:
    """`python -m http.server` serving the tree, as any static web server would."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/index.json", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise DemoFailure("python -m http.server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fetch(url: str) -> bytes:
    # no proxies: the offline site talks to its own server only
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as resp:
        data: bytes = resp.read()
        return data


# -- the demo --------------------------------------------------------------------------------------
def run(out: Path) -> dict[str, str]:
    """Everything; returns the verified checksums by internal URL."""
    origin_dir, tree = out / "origin", out / "tree"
    origin_dir.mkdir(parents=True)
    catalog = out / "catalog.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLARELITE_")}
    glarelite = Cli(catalog, env)
    verified: dict[str, str] = {}

    step("1. a local origin plays 'the internet'")
    disk, disk_sha = generate(out, "ubuntu-22.04.img", 3 * 1024 * 1024 + 17, seed=1)
    us, us_sha = generate(out, "ubuntu-us.img", 256 * 1024, seed=2)
    _, eu_sha = generate(origin_dir, "ubuntu-eu.img", 512 * 1024 + 3, seed=3)
    _, deb_sha = generate(origin_dir, "debian-12.qcow2", 1024 * 1024, seed=4)
    _, chart_sha = generate(origin_dir, "nginx-1.0.0.tgz", 40 * 1024, seed=5)
    with origin_server(origin_dir) as internet:
        say(f"   serving {origin_dir} at {internet}")

        step("2. build a catalog with the CLI")
        glarelite("init", "--storage", str(out / "blobs"), "--allow-host", "127.0.0.1")
        glarelite(
            "type",
            "define",
            "images",
            "--blob",
            "file",
            "--blob-dict",
            "regions",
            "--property",
            "os:string:required",
            "--property",
            "min_ram:integer:mutable",
        )
        glarelite("type", "define", "charts", "--blob", "chart", "--property", "app:string")

        ubuntu = glarelite(
            "create", "images", "ubuntu", "--version", "22.04", "--set", "os=linux",
            "--set", "min_ram=1024", "--tag", "lts", "--description", "Ubuntu LTS",
        )  # fmt: skip
        glarelite("upload", ubuntu, "file", str(disk), "--sha256", disk_sha)
        glarelite("upload", ubuntu, "regions/us", str(us))
        glarelite(
            "add-location", ubuntu, "regions/eu", f"{internet}/ubuntu-eu.img", "--sha256", eu_sha
        )
        debian = glarelite("create", "images", "debian", "--version", "12", "--set", "os=linux")
        glarelite("add-location", debian, "file", f"{internet}/debian-12.qcow2")
        chart = glarelite("create", "charts", "nginx", "--version", "1.0.0", "--set", "app=web")
        glarelite("add-location", chart, "chart", f"{internet}/nginx-1.0.0.tgz")
        secret = glarelite("create", "images", "internal-only", "--set", "os=linux")
        glarelite("upload", secret, "file", str(us))

        say("   a wrong checksum is refused (exit 5), nothing is recorded:")
        glarelite(
            "add-location", debian, "regions/eu", f"{internet}/ubuntu-eu.img",
            "--sha256", "0" * 64, expect=5,
        )  # fmt: skip
        for artifact_id in (ubuntu, debian, chart, secret):
            glarelite("activate", artifact_id)
        for artifact_id in (ubuntu, debian, chart):
            glarelite("publish", artifact_id)
        glarelite("list", "--sort", "name:asc")
        glarelite("list", "images", "--filter", "version=gte:20", "--filter", "tags=lts")
        view = json.loads(glarelite("show", ubuntu, "--json", show=False))
        check(view["blobs"]["file"]["sha256"] == disk_sha, "internal blob recorded with its sha256")
        eu = view["blobs"]["regions"]["eu"]
        check(eu["external"] and eu["sha256"] == eu_sha, "external blob verified at registration")
        check(str(out / "blobs") not in json.dumps(view), "the show view hides the storage")

        step("3. mirror the catalog into a static tree")
        report = out / "mirror-report.json"
        glarelite("mirror", str(tree), "--report", str(report))
        glarelite("mirror", str(tree))  # a rerun: nothing left to copy
        glarelite("mirror", str(tree), "--check")

    step("4. the internet is gone; a static server at the offline site")
    with static_server(tree) as site:
        say(f"   python -m http.server serves {tree} at {site}")
        expected = {
            f"/artifacts/images/{ubuntu}/file": disk_sha,
            f"/artifacts/images/{ubuntu}/regions/us": us_sha,
            f"/artifacts/images/{ubuntu}/regions/eu": eu_sha,
            f"/artifacts/images/{debian}/file": deb_sha,
            f"/artifacts/charts/{chart}/chart": chart_sha,
        }
        for path, sha in expected.items():
            data = fetch(site + path)
            got = hashlib.sha256(data).hexdigest()
            check(got == sha, f"GET {path} ({len(data)} bytes) sha256 {got[:16]}…")
            verified[path] = got
        shown = json.loads(fetch(f"{site}/artifacts/images/{ubuntu}/index.json"))
        shown.pop("mirror", None)  # what the mirror adds: its generation
        check(shown == view, "artifacts/<type>/<id>/index.json is the show view")
        check(
            not (tree / "artifacts" / "images" / secret).exists(), "private artifact not mirrored"
        )

        step("5. verify the tree: sha256sum -c, then open_mirror")
        sha256sum = shutil.which("sha256sum")
        sums_files = sorted((tree / "SHA256SUMS.d").glob("*/*"))  # one per shard
        if sha256sum:
            say("   $ cat SHA256SUMS.d/*/* | sha256sum -c -")
            result = subprocess.run(
                ["sh", "-c", "cat SHA256SUMS.d/*/* | sha256sum -c -"],
                cwd=tree,
                capture_output=True,
                text=True,
            )
            for line in result.stdout.splitlines():
                say(f"     {line}")
            check(result.returncode == 0, "sha256sum -c passes on every SHA256SUMS.d file")
        else:
            say("   (sha256sum not installed: checking SHA256SUMS.d in Python)")
            lines = [ln for f in sums_files for ln in f.read_text().splitlines()]
            for line in lines:
                digest, name = line.split(maxsplit=1)
                name = name.lstrip("*")
                got = hashlib.sha256((tree / name).read_bytes()).hexdigest()
                check(got == digest, f"{name}: OK")

        import glarelite as lib

        for where in (str(tree), site):
            with contextlib.closing(lib.open_mirror(where)) as mirrored:
                names = sorted(a.name for a in mirrored.iter_all("images"))
                check(names == ["debian", "ubuntu"], f"open_mirror({where!r}) lists {names}")
                copy = out / f"ubuntu-from-mirror-{len(where)}.img"
                mirrored.download(ubuntu, "file", copy)
                got = hashlib.sha256(copy.read_bytes()).hexdigest()
                check(got == disk_sha, f"open_mirror download verified, sha256 {got[:16]}…")
                check(mirrored.get(ubuntu).to_dict() == view, "same show view as the catalog")
    return verified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.out:
        out = args.out.resolve()
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    else:
        out = Path(tempfile.mkdtemp(prefix="glarelite-demo-"))
    say(f"glarelite demo in {out}")
    try:
        verified = run(out)
    except DemoFailure as exc:
        say(f"\nDEMO FAILED: {exc}")
        return 1
    finally:
        if not args.keep and not args.out:
            shutil.rmtree(out, ignore_errors=True)
    step("verified checksums (sha256, as fetched from the offline site)")
    for path, digest in verified.items():
        say(f"   {digest}  {path}")
    say("\ndemo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
