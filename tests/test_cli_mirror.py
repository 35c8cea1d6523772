"""`glarelite mirror` through CliRunner: selection, reruns, check, prune, reports, and the
exit codes of its failures (verification 5, network 6, lock 4, prune refused 10)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from glarelite import cli
from tests.fixtures.origin import Origin
from tests.test_cli import (  # the CLI fixtures: env, run, ready
    DATA,
    Run,
    env_fixture,
    new_id,
    ok,
    one_line_error,
    ready_fixture,
    run_fixture,
)
from tests.test_mirror_support import sums_check, sums_text

__all__ = ["env_fixture", "ready_fixture", "run_fixture"]


@pytest.fixture
def published(ready: Run, tmp_path: Path) -> dict[str, str]:
    """An internal image, one with a blob dict, a private one; all active."""
    src = tmp_path / "disk.img"
    src.write_bytes(DATA)
    ids = {}
    ids["ubuntu"] = new_id(ready, "ubuntu", "--version", "1", "--set", "os=linux", "--tag", "lts")
    ok(ready("upload", ids["ubuntu"], "file", str(src)))
    ok(ready("upload", ids["ubuntu"], "regions/us", "-", input=b"us"))
    ids["secret"] = new_id(ready, "secret", "--set", "os=linux")
    ok(ready("upload", ids["secret"], "file", "-", input=b"private bytes"))
    for name in ("ubuntu", "secret"):
        ok(ready("activate", ids[name]))
    ok(ready("publish", ids["ubuntu"]))
    return ids


def tree_paths(tree: Path) -> set[str]:
    return {
        p.relative_to(tree).as_posix()
        for p in tree.rglob("*")
        if p.is_file() and ".glarelite-mirror" not in p.parts
    }


def test_mirror_writes_the_tree(ready: Run, published: dict[str, str], tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    result = ok(ready("mirror", str(tree)))
    assert result.stdout == ""  # the summary goes to stderr
    assert "mirrored into" in result.stderr and "failed 0" in result.stderr
    ubuntu = published["ubuntu"]
    assert (tree / f"artifacts/images/{ubuntu}/file").read_bytes() == DATA
    assert (tree / f"artifacts/images/{ubuntu}/regions/us").read_bytes() == b"us"
    assert "index.json" in tree_paths(tree)
    assert any(p.startswith("SHA256SUMS.d/images/") for p in tree_paths(tree))
    assert not any(published["secret"] in p for p in tree_paths(tree))  # private: never
    index = json.loads((tree / f"artifacts/images/{ubuntu}/index.json").read_text())
    index.pop("mirror", None)
    assert index == json.loads(ok(ready("show", ubuntu, "--json")).stdout)
    sums = sums_text(tree)
    assert f"{hashlib.sha256(DATA).hexdigest()}  artifacts/images/{ubuntu}/file" in sums
    again = ok(ready("mirror", str(tree), "--json"))
    report = json.loads(again.stdout)
    assert report["nothing_to_do"] is True and report["copied"] == []
    assert "nothing to do" in again.stderr


def test_mirror_selection_and_private(
    ready: Run, published: dict[str, str], tmp_path: Path
) -> None:
    other = new_id(ready, "debian", "--set", "os=linux")
    ok(ready("activate", other))
    ok(ready("publish", other))
    tree = tmp_path / "t"
    ok(ready("mirror", str(tree), "--type", "images", "--tag", "lts", "--name", "ubuntu"))
    paths = tree_paths(tree)
    assert any(published["ubuntu"] in p for p in paths)
    assert not any(other in p for p in paths)
    ok(ready("mirror", str(tree), "--include-private", "secret"))
    assert any(published["secret"] in p for p in tree_paths(tree))


def test_mirror_dry_run_report_and_delete(
    ready: Run, published: dict[str, str], tmp_path: Path
) -> None:
    tree = tmp_path / "t"
    report_file = tmp_path / "report.json"
    dry = ok(ready("mirror", str(tree), "--dry-run", "--report", str(report_file)))
    assert "would copy 2 blobs" in dry.stderr
    assert json.loads(report_file.read_text())["dry_run"] is True
    assert not (tree / "index.json").exists()
    ok(ready("mirror", str(tree), "--report", str(report_file), "--workers", "2"))
    report = json.loads(report_file.read_text())
    assert report["status"] == "ok" and len(report["copied"]) == 2
    # a selection that matches nothing (a typo?) is refused without --force (exit 10),
    # --delete or not; nothing deleted
    for extra in ([], ["--delete"]):
        refused = ready("mirror", str(tree), "--name", "ubuntoo", *extra)
        assert refused.exit_code == cli.EXIT_PRUNE_REFUSED, refused.stderr
        assert "--force" in refused.stderr and "force=True" not in refused.stderr
        assert any(published["ubuntu"] in p for p in tree_paths(tree))
    # a deactivated artifact is withdrawn by a plain run
    ok(ready("deactivate", published["ubuntu"]))
    withdrawn = ok(ready("mirror", str(tree)))
    assert f"withdrew {published['ubuntu']}" in withdrawn.stderr
    assert not any(published["ubuntu"] in p for p in tree_paths(tree))


def test_mirror_check_and_verify(ready: Run, published: dict[str, str], tmp_path: Path) -> None:
    tree = tmp_path / "t"
    ok(ready("mirror", str(tree)))
    checked = ok(ready("mirror", str(tree), "--check"))
    assert ": ok" in checked.stderr
    blob = tree / f"artifacts/images/{published['ubuntu']}/file"
    blob.write_bytes(b"tampered" + DATA[8:])
    bad = ready("mirror", str(tree), "--check", "--json")
    assert bad.exit_code == cli.EXIT_VERIFICATION
    faults = json.loads(bad.stdout)["faults"]
    assert any(f["path"].endswith(f"{published['ubuntu']}/file") for f in faults)
    assert "Traceback" not in bad.stderr
    # the next run notices (the file's mtime moved) and puts the catalog's bytes back
    repaired = ok(ready("mirror", str(tree)))
    assert "repaired 1" in repaired.stderr
    assert blob.read_bytes() == DATA
    ok(ready("mirror", str(tree), "--check"))


def test_mirror_check_of_a_missing_tree(run: Run, tmp_path: Path) -> None:
    result = run("mirror", str(tmp_path / "nothing"), "--check")
    assert result.exit_code != 0 and "Traceback" not in result.stderr


def test_mirror_network_failure(ready: Run, tmp_path: Path) -> None:
    artifact_id = new_id(ready, "remote", "--set", "os=linux")
    with Origin() as server:
        server.add("/r", data=b"remote bytes")
        ok(ready("add-location", artifact_id, "file", server.url("/r")))
    ok(ready("activate", artifact_id))
    ok(ready("publish", artifact_id))
    result: Result = ready("mirror", str(tmp_path / "t"))  # the origin is gone
    assert result.exit_code == cli.EXIT_NETWORK, result.stderr
    assert "failed" in result.stderr and "Traceback" not in result.stderr


def test_mirror_verification_failure(ready: Run, tmp_path: Path) -> None:
    artifact_id = new_id(ready, "moving", "--set", "os=linux")
    with Origin() as server:
        server.add("/m", versions=[b"registered bytes", b"other bytes now!"])
        ok(ready("add-location", artifact_id, "file", server.url("/m")))
        ok(ready("activate", artifact_id))
        ok(ready("publish", artifact_id))
        result = ready("mirror", str(tmp_path / "t"))
    assert result.exit_code == cli.EXIT_VERIFICATION, result.stderr


def test_mirror_locked_tree(ready: Run, published: dict[str, str], tmp_path: Path) -> None:
    from mirror.dest import open_dest
    from mirror.lock import TreeLock

    tree = tmp_path / "t"
    ok(ready("mirror", str(tree)))
    lock = TreeLock(open_dest(str(tree), None, create=False)).acquire()
    try:
        err = one_line_error(ready("mirror", str(tree)), cli.EXIT_CONFLICT)
        assert "already running" in err
    finally:
        lock.release()
    ok(ready("mirror", str(tree)))


def test_mirror_bad_options(ready: Run, tmp_path: Path) -> None:
    assert ready("mirror", str(tmp_path), "--workers", "0").exit_code == 2
    one_line_error(ready("mirror", str(tmp_path / "t"), "--type", "nosuch"), cli.EXIT_NOT_FOUND)
    result = ready("mirror", str(tmp_path / "t"), "--dest-option", "novalue")
    assert result.exit_code == 2


@pytest.mark.s3
@pytest.mark.xdist_group("seaweedfs")
def test_s3_storage_and_destination_from_the_cli(
    run: Run, seaweedfs: Any, s3_store_url: str, tmp_path: Path, env: dict[str, Any]
) -> None:
    options = seaweedfs.storage_options
    as_env = {"GLARELITE_STORAGE_OPTIONS": json.dumps(options)}
    # init with the options in the environment; later commands with --storage-option
    ok(run("init", "--storage", s3_store_url, **as_env))
    flags = [
        "--storage-option",
        f"key={options['key']}",
        "--storage-option",
        f"secret={options['secret']}",
        "--storage-option",
        f"client_kwargs={json.dumps(options['client_kwargs'])}",
        "--storage-option",
        "config_kwargs.s3.addressing_style=path",
    ]
    ok(run(*flags, "type", "define", "images", "--blob", "file"))
    artifact_id = ok(run(*flags, "create", "images", "on-s3")).stdout.strip()
    ok(run(*flags, "upload", artifact_id, "file", "-", input=DATA))
    out = tmp_path / "back"
    ok(run("download", artifact_id, "file", "-o", str(out), **as_env))
    assert out.read_bytes() == DATA
    ok(run(*flags, "activate", artifact_id))
    ok(run(*flags, "publish", artifact_id))
    # without credentials, the storage cannot be read: an error line, no traceback
    anonymous = run("download", artifact_id, "file", "-o", "-", GLARELITE_STORAGE_OPTIONS="{}")
    assert anonymous.exit_code != 0 and "Traceback" not in anonymous.stderr
    assert options["secret"] not in anonymous.stderr
    # mirror into a bucket prefix, options for the destination by environment
    dest = f"{s3_store_url}-tree"
    ok(run(*flags, "mirror", dest, GLARELITE_DEST_OPTIONS=json.dumps(options)))
    dest_flags = [f"--dest-option={value}" for value in flags[1::2]]
    ok(run("mirror", dest, "--check", *dest_flags))
    fs = seaweedfs.filesystem()
    key = dest[len("s3://") :] + f"/artifacts/images/{artifact_id}/file"
    assert fs.cat(key) == DATA
    # credentials are never stored in the catalog
    raw = Path(env["GLARELITE_CATALOG"]).read_bytes()
    for path in Path(env["GLARELITE_CATALOG"]).parent.glob("cat.db*"):
        raw += path.read_bytes()
    assert options["secret"].encode() not in raw and options["key"].encode() not in raw


def test_forgetting_to_publish_is_reported_and_the_empty_tree_checks(
    ready: Run, tmp_path: Path
) -> None:
    """Issue 16.3: a drafted and a private artifact, nothing public: exit 0, a word about
    each with what to do, no generation claimed twice, and `sha256sum -c` passes."""

    draft = new_id(ready, "draft", "--set", "os=linux")
    ok(ready("upload", draft, "file", "-", input=b"draft bytes"))
    private = new_id(ready, "private", "--set", "os=linux")
    ok(ready("upload", private, "file", "-", input=b"private bytes"))
    ok(ready("activate", private))
    tree = tmp_path / "tree"
    first = ok(ready("mirror", str(tree)))
    assert "published generation 1" in first.stderr
    assert "not mirrored: 1 drafted, 1 private" in first.stderr
    assert "glarelite publish ID" in first.stderr and "--include-private" in first.stderr
    done = sums_check(tree)
    assert done.returncode == 0, done.stderr
    again = ok(ready("mirror", str(tree)))
    assert "nothing to do, generation 1" in again.stderr
    assert "published generation" not in again.stderr


def test_plain_mirror_of_a_withdrawn_catalog_is_not_a_prune_refusal(
    ready: Run, published: dict[str, str], tmp_path: Path
) -> None:
    """Issue 16.2: no --delete, nothing selected since everything was deactivated: exit 0,
    no word of pruning; --force without --delete is documented, not a silent no-op."""
    tree = tmp_path / "tree"
    ok(ready("mirror", str(tree)))
    ok(ready("deactivate", published["ubuntu"]))
    result = ok(ready("mirror", str(tree)))
    assert "prune" not in result.stderr and "withdrawn 1" in result.stderr
    assert "published generation 2" in result.stderr


def test_grace_and_scan_reach_the_run(
    ready: Run, published: dict[str, str], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    ok(ready("mirror", str(tree)))
    report = json.loads(ok(ready("mirror", str(tree), "--scan", "0", "--json")).stdout)
    assert (report["mode"], report["scanned"], report["nothing_to_do"]) == ("no-op", 0, True)
    report = json.loads(ok(ready("mirror", str(tree), "--scan", "1", "--json")).stdout)
    assert (report["mode"], report["scanned"]) == ("no-op", 1)
    ok(ready("update", published["ubuntu"], "--tag", "changed"))
    before = sorted(p.name for p in tree.glob("artifacts/images/_shards/*"))
    report = json.loads(ok(ready("mirror", str(tree), "--grace", "0", "--json")).stdout)
    assert report["mode"] == "journal" and report["published"]
    after = sorted(p.name for p in tree.glob("artifacts/images/_shards/*"))
    assert len(after) == len(before) and after != before  # the old shard went at once
    bad = ready("mirror", str(tree), "--grace", "-1")
    assert bad.exit_code == 2
