"""mirror.sync copying many small external blobs in batches (``Copier.run_batch`` over
``Catalog.open_blobs``): the tree holds every blob, a blob that fails is reported exactly
as the ordinary path reports it, and a blob that fails once is copied anyway."""

from __future__ import annotations

import hashlib
import json
import random
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import glarelite
import mirror
from glarelite import tree
from glarelite.errors import GlareliteError
from mirror.copy import describe
from tests.fixtures.origin import Origin
from tests.test_mirror_support import QUICK, define_types, open_catalog, temporaries, tree_files

SMALL = 200
KEYS_PER_ARTIFACT = 50
ODD = "/odd.bin"


@dataclass
class Mirrored:
    """A published catalog: ``files`` tree path -> bytes, ``paths`` tree path -> origin
    path (external blobs), ``odd`` the tree path of the blob served at ``ODD``."""

    catalog: glarelite.Catalog
    server: Origin
    files: dict[str, bytes] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    odd: str = ""
    odd_slot: tuple[str, str] = ("", "")

    def external(self, artifact_id: str, slot: str, path: str, data: bytes) -> str:
        self.server.add(path, data=data, ranges=True, etag=True)
        blob = self.catalog.add_location(artifact_id, slot, self.server.url(path))
        tree_path = blob.url.lstrip("/")
        self.files[tree_path] = data
        self.paths[tree_path] = path
        return tree_path


@pytest.fixture
def server() -> Iterator[Origin]:
    with Origin() as s:
        yield s


@pytest.fixture
def world(tmp_path: Path, server: Origin) -> Iterator[Mirrored]:
    """SMALL small external blobs over a few artifacts, an internal blob, one external
    blob too big for a batch, and the odd one in an artifact of its own. Jobs go largest
    first, 26 to a batch with 2 workers: the odd one's size puts it mid-batch."""
    cat = open_catalog(tmp_path)
    define_types(cat)
    w = Mirrored(cat, server)
    rng = random.Random(11)
    artifacts = []
    for n in range(SMALL):
        if n % KEYS_PER_ARTIFACT == 0:
            artifacts.append(cat.create("images", f"s{n}", properties={"os": "linux"}).id)
        size = 40_000 - 190 * n  # distinct sizes, largest first: the odd one sits mid-way
        w.external(artifacts[-1], f"regions/k{n}", f"/s{n}", rng.randbytes(size))
    internal = rng.randbytes(5000)
    w.files[cat.upload(artifacts[0], "file", internal).url.lstrip("/")] = internal
    w.external(artifacts[1], "file", "/big.bin", rng.randbytes(1_500_000))
    odd = cat.create("images", "odd", properties={"os": "linux"}).id
    w.odd = w.external(odd, "file", ODD, rng.randbytes(22_800))  # 92nd largest small job
    w.odd_slot = (odd, "file")
    for artifact_id in [*artifacts, odd]:
        cat.activate(artifact_id)
        cat.publish(artifact_id)
    yield w
    cat.close()


def blob_bytes(cat: glarelite.Catalog, artifact_id: str, slot: str) -> bytes:
    with cat.open_blob(artifact_id, slot) as f:
        return f.read()


def gets_during(server: Origin, since: int) -> Counter[str]:
    return Counter(r.path for r in server.requests[since:] if r.method == "GET")


def sync(world: Mirrored, dest: Path, **options: Any) -> mirror.SyncReport:
    return mirror.sync(world.catalog, str(dest), workers=2, **{**QUICK, **options})


def assert_tree_holds(dest: Path, expected: dict[str, bytes]) -> None:
    files = tree_files(dest)
    for path, data in expected.items():
        assert files.get(path) == data, path
    assert temporaries(dest) == []


def test_many_small_external_blobs_are_mirrored_and_verify(world: Mirrored, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    n = len(world.server.requests)
    report = sync(world, dest)
    assert (report.exit_code, report.failed) == (0, [])
    assert sorted(c["path"] for c in report.copied) == sorted(world.files)
    assert report.blobs == len(world.files)
    assert_tree_holds(dest, world.files)
    assert mirror.check_tree(str(dest)).ok
    # every external blob was asked for exactly once: nothing fell back, nothing re-sent
    assert gets_during(world.server, n) == Counter(world.paths.values())
    # a rerun has nothing to do and asks nothing
    n = len(world.server.requests)
    assert sync(world, dest).nothing_to_do
    assert world.server.requests[n:] == []


def _changed(world: Mirrored) -> None:
    data = world.files[world.odd]
    world.server.add(ODD, data=bytes(b ^ 1 for b in data))


FAILING: dict[str, tuple[Any, str]] = {
    # kind -> (how the route fails for good, the error class the report gives)
    "404": (lambda w: w.server.add(ODD, status=404), "NetworkError"),
    "500 always": (lambda w: w.server.add(ODD, fail_first=[500] * 1000), "NetworkError"),
    "changed upstream": (_changed, "ChecksumMismatch"),
}


@pytest.mark.parametrize("kind", list(FAILING))
def test_a_blob_failing_for_good_is_reported_as_the_ordinary_path_reports_it(
    world: Mirrored, tmp_path: Path, kind: str
) -> None:
    rig, error = FAILING[kind]
    rig(world)
    dest = tmp_path / "tree"
    n = len(world.server.requests)

    report = sync(world, dest)

    gets = gets_during(world.server, n)
    others = {p: d for p, d in world.files.items() if p != world.odd}
    [failure] = report.failed
    try:  # what the ordinary path says about that blob
        blob_bytes(world.catalog, *world.odd_slot)
    except GlareliteError as exc:
        ordinary = exc
    else:
        raise AssertionError("the odd blob should fail the ordinary way too")
    assert failure == {"path": world.odd, "error": error, "reason": describe(ordinary)}
    assert type(ordinary).__name__ == error
    assert report.exit_code == (
        mirror.EXIT_NETWORK if error == "NetworkError" else mirror.EXIT_VERIFICATION
    )
    assert sorted(c["path"] for c in report.copied) == sorted(others)
    assert_tree_holds(dest, others)
    assert not (dest / world.odd).exists()
    others_asked = {p: gets[world.paths[p]] for p in others if p in world.paths}
    assert set(others_asked.values()) == {1}  # the neighbours: once each, no re-sends
    if error == "ChecksumMismatch":
        assert gets[ODD] == 1  # bytes that differ are not fetched again
    else:
        assert gets[ODD] >= 2


FLAKY: dict[str, dict[str, Any]] = {
    "500 once": {"fail_first": [500]},
    "429 once": {"fail_first": [429]},
    "reset mid-body once": {"ranges": True, "etag": True, "reset_after": 5000},
    "short body once": {"ranges": True, "etag": True, "short_after": 5000},
    "chunked": {"chunked": True},
}


@pytest.mark.parametrize("kind", list(FLAKY))
def test_a_blob_failing_once_is_copied_all_the_same(
    world: Mirrored, tmp_path: Path, kind: str
) -> None:
    world.server.add(ODD, data=world.files[world.odd], **FLAKY[kind])
    dest = tmp_path / "tree"
    n = len(world.server.requests)

    report = sync(world, dest)

    assert (report.exit_code, report.failed) == (0, [])
    assert sorted(c["path"] for c in report.copied) == sorted(world.files)
    assert_tree_holds(dest, world.files)
    assert mirror.check_tree(str(dest)).ok
    gets = gets_during(world.server, n)
    assert gets[ODD] == 2  # the pipeline's answer was not taken; the ordinary path's was
    assert all(gets[p] >= 1 for p in world.paths.values())


def test_a_batch_whose_pipeline_breaks_hands_the_rest_to_the_ordinary_path(
    world: Mirrored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not one blob failing but the batch itself (its generator raising): what it did not
    reach is copied the ordinary way, nothing is lost or reported failed."""
    real = glarelite.Catalog.open_blobs
    broke = []

    def breaking(self: glarelite.Catalog, slots: Any) -> Any:
        for n, item in enumerate(real(self, slots)):
            if n == 3 and not broke:
                broke.append(n)
                raise OSError("the pipeline fell over")
            yield item

    monkeypatch.setattr(glarelite.Catalog, "open_blobs", breaking)
    dest = tmp_path / "tree"
    report = sync(world, dest)
    assert broke and (report.exit_code, report.failed) == (0, [])
    assert_tree_holds(dest, world.files)


def test_stray_partial_records_and_their_temporaries_are_cleaned(
    world: Mirrored, tmp_path: Path
) -> None:
    """A record save killed before its rename leaves a temporary in the partial folder; a
    record naming a path outside the tree's temporaries is dropped, never followed."""
    dest = tmp_path / "tree"
    partials = dest / ".glarelite-mirror/partial"
    partials.mkdir(parents=True)
    dead = tree.temporary_name("x.json", tree.host_label(socket.gethostname()), 2**22 + 7, "0" * 16)
    (partials / dead).write_text("{}")
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    big = next(p for p, d in world.files.items() if len(d) == 1_500_000)
    digest = hashlib.sha256(world.files[big]).hexdigest()
    record = {"temp": "../precious.txt", "size": 1_500_000, "sha256": digest, "segments": []}
    (partials / f"{digest}.json").write_text(json.dumps(record))
    report = sync(world, dest, segment_size=256 << 10)
    assert (report.exit_code, report.failed) == (0, [])
    assert victim.read_text() == "keep me"
    assert list(partials.iterdir()) == []
    assert_tree_holds(dest, world.files)
