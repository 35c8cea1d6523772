"""The command line through typer's CliRunner: every command, and every error path that
the CLI promises a distinct exit code and a one-line message for."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import glarelite
from glarelite import cli, errors
from glarelite.cli import app
from tests.fixtures.origin import Origin

Run = Callable[..., Result]
DATA = b"glarelite bytes " * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def one_line_error(result: Result, code: int) -> str:
    """The result failed with ``code`` and said so in exactly one stderr line."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("glarelite: error: "), err
    return err


@pytest.fixture(name="env")
def env_fixture(tmp_path: Path, memory_store: str) -> dict[str, str | None]:
    return {
        "GLARELITE_CATALOG": str(tmp_path / "cat.db"),
        "GLARELITE_ALLOW_HOSTS": None,
        "GLARELITE_STORAGE_OPTIONS": None,
    }


@pytest.fixture(name="run")
def run_fixture(env: dict[str, str | None]) -> Run:
    runner = CliRunner()

    def invoke(*args: str, input: bytes | str | None = None, **extra_env: str | None) -> Result:
        merged = {**env, **extra_env}
        return runner.invoke(
            app, ["--retries", "0", "--timeout", "5", *args], input=input, env=merged
        )

    return invoke


@pytest.fixture(name="ready")
def ready_fixture(run: Run, memory_store: str) -> Run:
    """A catalog with type ``images`` (blob ``file``, blob dict ``regions``), 127.0.0.1
    allowed."""
    ok(run("init", "--storage", memory_store, "--allow-host", "127.0.0.1"))
    ok(
        run(
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
            "--property",
            "arch:list:items=string",
            "--property",
            "labels:dict",
        )
    )
    return run


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def new_id(run: Run, *args: str) -> str:
    result = ok(run("create", "images", *args))
    out = result.stdout
    assert out.count("\n") == 1  # the id alone, for id=$(glarelite create ...)
    return out.strip()


@pytest.fixture
def drafted(ready: Run) -> str:
    return new_id(ready, "ubuntu", "--version", "1.2", "--set", "os=linux")


@pytest.fixture
def active(ready: Run, drafted: str, tmp_path: Path) -> str:
    src = tmp_path / "disk.img"
    src.write_bytes(DATA)
    ok(ready("upload", drafted, "file", str(src)))
    ok(ready("activate", drafted))
    return drafted


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- init, types -------------------------------------------------------------------------
def test_help_lists_commands(run: Run) -> None:
    result = ok(run("--help"))
    for name in ("init", "create", "mirror", "add-location", "type"):
        assert name in result.stdout


def test_version(run: Run) -> None:
    assert ok(run("--version")).stdout.startswith("glarelite ")


def test_init_is_idempotent_and_storage_is_fixed(run: Run, memory_store: str, env: dict) -> None:
    first = ok(run("init", "--storage", memory_store))
    assert "initialised catalog" in first.stdout
    assert Path(env["GLARELITE_CATALOG"]).exists()
    assert "catalog exists" in ok(run("init", "--storage", memory_store)).stdout
    err = one_line_error(run("init", "--storage", "memory://elsewhere"), cli.EXIT_CONFLICT)
    assert "fixed at creation" in err


def test_init_default_storage_beside_catalog(run: Run, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()  # init creates no folders (issue 16.4: tests/test_cli_errors.py)
    result = ok(run("--catalog", str(tmp_path / "x" / "glarelite.db"), "init"))
    assert "glarelite-blobs" in result.stdout


def test_missing_catalog_is_not_found(run: Run) -> None:
    err = one_line_error(run("list"), cli.EXIT_NOT_FOUND)
    assert "glarelite init" in err


def test_type_define_list_show(ready: Run) -> None:
    listed = ok(ready("type", "list")).stdout
    assert "images:" in listed and "os:string:required" in listed
    data = json.loads(ok(ready("type", "list", "--json")).stdout)
    assert data[0]["blob_dicts"] == ["regions"]
    shown = json.loads(ok(ready("type", "show", "images", "--json")).stdout)
    assert shown["properties"]["min_ram"] == {"kind": "integer", "mutable": True}
    # the same definition again is a no-op; a different one a conflict
    ok(
        ready(
            "type",
            "define",
            "images",
            "--blob",
            "file",
            "--blob-dict",
            "regions",
            "-p",
            "os:string:required",
            "-p",
            "min_ram:integer:mutable",
            "-p",
            "arch:list",
            "-p",
            "labels:dict",
        )
    )
    one_line_error(ready("type", "define", "images", "--blob", "other"), cli.EXIT_CONFLICT)


def test_type_define_bad_input(ready: Run) -> None:
    result = ready("type", "define", "t", "--property", "x:float")
    assert result.exit_code == 2 and "unknown kind" in result.stderr
    result = ready("type", "define", "t", "--property", "x:string:shiny")
    assert result.exit_code == 2 and "unknown flag" in result.stderr
    one_line_error(ready("type", "define", "Bad-Name"), cli.EXIT_USAGE)
    one_line_error(ready("type", "show", "nope"), cli.EXIT_NOT_FOUND)


# -- create, show, list, update --------------------------------------------------------------
def test_create_prints_id_and_show(ready: Run) -> None:
    artifact_id = new_id(
        ready,
        "ubuntu",
        "--version",
        "1.2",
        "--tag",
        "lts",
        "--tag",
        "x86",
        "--set",
        "os=linux",
        "--set",
        "min_ram=512",
        "--set",
        'arch=["amd64","arm64"]',
        "--set",
        'labels={"tier": "gold"}',
        "--description",
        "the image",
    )
    view = json.loads(ok(ready("show", artifact_id, "--json")).stdout)
    assert view["id"] == artifact_id and view["version"] == "1.2.0"
    assert view["properties"] == {
        "os": "linux",
        "min_ram": 512,
        "arch": ["amd64", "arm64"],
        "labels": {"tier": "gold"},
    }
    assert view["tags"] == ["lts", "x86"] and view["description"] == "the image"
    assert view["blobs"] == {"file": None, "regions": {}}
    human = ok(ready("show", artifact_id)).stdout
    assert "status:       drafted" in human and "min_ram: 512" in human


def test_show_json_is_the_show_view(ready: Run, active: str, env: dict) -> None:
    view = json.loads(ok(ready("show", active, "--json")).stdout)
    with glarelite.open(env["GLARELITE_CATALOG"], create=False) as cat:
        assert view == cat.get(active).to_dict()
    assert view["blobs"]["file"]["sha256"] == SHA
    assert "memory://" not in json.dumps(view)  # never where the bytes are stored


def test_create_errors(ready: Run) -> None:
    one_line_error(ready("create", "nope", "x"), cli.EXIT_NOT_FOUND)
    err = one_line_error(ready("create", "images", "x", "--version", "invalid"), cli.EXIT_USAGE)
    assert "version" in err
    one_line_error(ready("create", "images", "x", "--set", "min_ram=lala"), cli.EXIT_USAGE)
    one_line_error(ready("create", "images", "x", "--set", "arch=notjson"), cli.EXIT_USAGE)
    one_line_error(ready("create", "images", "x", "--set", "unknown=1"), cli.EXIT_USAGE)
    result = ready("create", "images", "x", "--set", "novalue")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    new_id(ready, "dup", "--version", "1.0")
    err = one_line_error(ready("create", "images", "dup", "--version", "1"), cli.EXIT_CONFLICT)


def test_list_filters_sort_paging_json(ready: Run) -> None:
    ids = {v: new_id(ready, "ubuntu", "--version", v, "--tag", f"t{v}") for v in ("1.9", "1.10")}
    other = new_id(ready, "debian", "--version", "2", "--tag", "t1.9")
    table = ok(ready("list", "images")).stdout.splitlines()
    assert table[0].split() == ["ID", "TYPE", "NAME", "VERSION", "STATUS", "VISIBILITY"]
    assert len(table) == 4
    data = json.loads(
        ok(
            ready(
                "list",
                "images",
                "--filter",
                "name=eq:ubuntu",
                "--filter",
                "version=gte:1.2.0",
                "--sort",
                "version:asc",
                "--json",
            )
        ).stdout
    )
    assert [a["id"] for a in data["artifacts"]] == [ids["1.9"], ids["1.10"]]
    assert data["total"] == 2 and data["next_marker"] is None
    plain = json.loads(ok(ready("list", "--filter", "name=debian", "--json")).stdout)
    assert [a["id"] for a in plain["artifacts"]] == [other]
    tagged = json.loads(ok(ready("list", "images", "-f", "tags=t1.9", "--json")).stdout)
    assert {a["id"] for a in tagged["artifacts"]} == {ids["1.9"], other}
    page = ready("list", "images", "--sort", "name:asc", "--limit", "1")
    assert "--marker" in ok(page).stderr
    first = json.loads(ok(ready("list", "--sort", "name:asc", "--limit", "1", "--json")).stdout)
    assert first["next_marker"] == other and first["total"] == 3
    second = json.loads(
        ok(ready("list", "--sort", "name:asc", "--limit", "1", "--marker", other, "--json")).stdout
    )
    assert second["artifacts"][0]["name"] == "ubuntu"
    latest = json.loads(ok(ready("list", "images", "--latest", "--json")).stdout)
    assert {a["version"] for a in latest["artifacts"]} == {"1.10.0", "2.0.0"}


def test_list_errors(ready: Run) -> None:
    one_line_error(ready("list", "--filter", "bogus=1"), cli.EXIT_USAGE)
    one_line_error(ready("list", "images", "--filter", "version=gte:nope"), cli.EXIT_USAGE)
    one_line_error(ready("list", "--sort", "tags"), cli.EXIT_USAGE)
    one_line_error(ready("list", "--marker", "no-such-id"), cli.EXIT_NOT_FOUND)
    one_line_error(ready("list", "nosuchtype"), cli.EXIT_NOT_FOUND)


def test_update(ready: Run, drafted: str) -> None:
    result = ok(
        ready(
            "update",
            drafted,
            "--set",
            "min_ram=1024",
            "--tag",
            "a",
            "--tag",
            "b",
            "--name",
            "ubuntu-lts",
            "--version",
            "2.0",
            "--description",
            "new",
        )
    )
    assert drafted in result.stdout
    ok(ready("update", drafted, "--untag", "a", "--unset", "min_ram"))
    view = json.loads(ok(ready("show", drafted, "--json")).stdout)
    assert view["tags"] == ["b"] and "min_ram" not in view["properties"]
    assert view["name"] == "ubuntu-lts" and view["version"] == "2.0.0"
    one_line_error(ready("update", "missing-id", "--tag", "x"), cli.EXIT_NOT_FOUND)
    one_line_error(ready("update", drafted, "--set", "min_ram=big"), cli.EXIT_USAGE)
    one_line_error(ready("update", drafted, "--version", "x.y"), cli.EXIT_USAGE)


def test_update_active_frozen_fields(ready: Run, active: str) -> None:
    ok(ready("update", active, "--set", "min_ram=2048", "--tag", "ok"))
    err = one_line_error(ready("update", active, "--set", "os=bsd"), cli.EXIT_CONFLICT)
    assert "mutable" in err
    one_line_error(ready("update", active, "--version", "9"), cli.EXIT_CONFLICT)


# -- lifecycle ---------------------------------------------------------------------------------
def test_lifecycle(ready: Run, active: str) -> None:
    assert ok(ready("publish", active)).stdout.split()[1:] == ["active", "public"]
    assert "deactivated" in ok(ready("deactivate", active)).stdout
    one_line_error(ready("update", active, "--tag", "x"), cli.EXIT_CONFLICT)
    assert "active" in ok(ready("reactivate", active)).stdout
    one_line_error(ready("reactivate", active), cli.EXIT_CONFLICT)
    assert "deleted" in ok(ready("delete", active)).stdout
    one_line_error(ready("show", active), cli.EXIT_NOT_FOUND)
    one_line_error(ready("delete", active), cli.EXIT_NOT_FOUND)


def test_illegal_transitions(ready: Run, drafted: str) -> None:
    err = one_line_error(ready("deactivate", drafted), cli.EXIT_CONFLICT)
    assert "drafted" in err
    one_line_error(ready("publish", drafted), cli.EXIT_CONFLICT)  # publishing requires active
    one_line_error(ready("reactivate", drafted), cli.EXIT_CONFLICT)
    bare = new_id(ready, "noos")
    err = one_line_error(ready("activate", bare), cli.EXIT_CONFLICT)
    assert "os" in err  # the required property it lacks
    for verb in ("activate", "deactivate", "reactivate", "publish", "delete"):
        one_line_error(ready(verb, "no-such-id"), cli.EXIT_NOT_FOUND)


def test_publish_conflicts_with_public_twin(ready: Run, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    a = new_id(ready, "twin", "--set", "os=linux", "--owner", "alice")
    b = new_id(ready, "twin", "--set", "os=linux", "--owner", "bob")
    for artifact_id in (a, b):
        ok(ready("activate", artifact_id))
    ok(ready("publish", a))
    one_line_error(ready("publish", b), cli.EXIT_CONFLICT)


def test_scope_as_owner(ready: Run, active: str) -> None:
    ok(ready("publish", active))
    # bob sees the public artifact but may not change it; he does not see private ones
    one_line_error(ready("--as", "bob", "deactivate", active), cli.EXIT_CONFLICT)
    private = new_id(ready, "secret", "--set", "os=x")
    one_line_error(ready("--as", "bob", "show", private), cli.EXIT_NOT_FOUND)
    mine = ok(ready("--as", "bob", "create", "images", "own")).stdout.strip()
    assert json.loads(ok(ready("show", mine, "--json")).stdout)["owner"] == "bob"


# -- blobs ----------------------------------------------------------------------------------
def test_upload_file_and_stdin_download_url(ready: Run, drafted: str, tmp_path: Path) -> None:
    src = tmp_path / "disk.img"
    src.write_bytes(DATA)
    result = ok(ready("upload", drafted, "file", str(src), "--sha256", SHA))
    assert SHA in result.stdout and "[internal]" in result.stdout
    ok(ready("upload", drafted, "regions/eu", "-", input=DATA))
    view = json.loads(ok(ready("show", drafted, "--json")).stdout)
    assert view["blobs"]["regions"]["eu"]["sha256"] == SHA
    assert view["blobs"]["regions"]["eu"]["size"] == len(DATA)
    url = ok(ready("url", drafted, "regions/eu")).stdout.strip()
    assert url == f"/artifacts/images/{drafted}/regions/eu"
    out = tmp_path / "out.img"
    ok(ready("download", drafted, "file", "-o", str(out)))
    assert out.read_bytes() == DATA
    streamed = ok(ready("download", drafted, "regions/eu", "-o", "-"))
    assert streamed.stdout_bytes == DATA
    ok(ready("remove-blob", drafted, "regions/eu"))
    one_line_error(ready("download", drafted, "regions/eu", "-o", "-"), cli.EXIT_NOT_FOUND)


def test_download_default_name(ready: Run, active: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok(ready("download", active, "file"))
    assert (tmp_path / "file").read_bytes() == DATA


def test_upload_errors(ready: Run, active: str, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(DATA)
    drafted = new_id(ready, "another")
    err = one_line_error(
        ready("upload", drafted, "file", str(src), "--sha256", "0" * 64), cli.EXIT_VERIFICATION
    )
    assert "sha256" in err.lower()
    one_line_error(ready("upload", drafted, "file", str(src), "--sha256", "xyz"), cli.EXIT_USAGE)
    one_line_error(ready("upload", drafted, "nofield", str(src)), cli.EXIT_USAGE)
    one_line_error(ready("upload", "no-such-id", "file", str(src)), cli.EXIT_NOT_FOUND)
    # blobs of an active artifact are immutable
    one_line_error(ready("upload", active, "file", str(src)), cli.EXIT_CONFLICT)
    missing = ready("upload", drafted, "file", str(tmp_path / "absent"))
    assert missing.exit_code == 2 and "absent" in missing.stderr


def test_too_large(ready: Run, tmp_path: Path) -> None:
    ok(ready("type", "define", "tiny", "--blob", "file", "--max-blob-size", "10"))
    artifact_id = ok(ready("create", "tiny", "t")).stdout.strip()
    src = tmp_path / "f"
    src.write_bytes(b"x" * 100)
    one_line_error(ready("upload", artifact_id, "file", str(src)), cli.EXIT_TOO_LARGE)


def test_add_location_and_download_external(
    ready: Run, drafted: str, origin: Origin, tmp_path: Path
) -> None:
    origin.add("/eu.img", data=DATA, etag=True)
    result = ok(
        ready("add-location", drafted, "regions/eu", origin.url("/eu.img"), "--sha256", SHA)
    )
    assert "external" in result.stdout and SHA in result.stdout
    view = json.loads(ok(ready("show", drafted, "--json")).stdout)
    blob = view["blobs"]["regions"]["eu"]
    assert blob["external"] is True and blob["external_url"] == origin.url("/eu.img")
    assert blob["url"] == f"/artifacts/images/{drafted}/regions/eu"
    assert ok(ready("url", drafted, "regions/eu")).stdout.strip() == origin.url("/eu.img")
    out = tmp_path / "eu"
    ok(ready("download", drafted, "regions/eu", "-o", str(out)))
    assert out.read_bytes() == DATA
    human = ok(ready("show", drafted)).stdout
    assert "external " + origin.url("/eu.img") in human


def test_add_location_checksum_mismatch(ready: Run, drafted: str, origin: Origin) -> None:
    origin.add("/x", data=DATA)
    err = one_line_error(
        ready("add-location", drafted, "file", origin.url("/x"), "--sha256", "1" * 64),
        cli.EXIT_VERIFICATION,
    )
    assert "sha256" in err.lower()
    view = json.loads(ok(ready("show", drafted, "--json")).stdout)
    assert view["blobs"]["file"] is None  # nothing recorded


def test_add_location_refused(run: Run, memory_store: str, origin: Origin) -> None:
    ok(run("init", "--storage", memory_store))  # no --allow-host: loopback is refused
    ok(run("type", "define", "images", "--blob", "file"))
    artifact_id = ok(run("create", "images", "x")).stdout.strip()
    origin.add("/x", data=DATA)
    err = one_line_error(
        run("add-location", artifact_id, "file", origin.url("/x")), cli.EXIT_REFUSED
    )
    assert "--allow-host" in err
    err = one_line_error(
        run("add-location", artifact_id, "file", "file:///etc/passwd"), cli.EXIT_REFUSED
    )
    assert origin.requests == []
    # the environment variable admits it too
    ok(
        run(
            "add-location", artifact_id, "file", origin.url("/x"), GLARELITE_ALLOW_HOSTS="127.0.0.1"
        )
    )


def test_add_location_network_failure(ready: Run, drafted: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}/gone"
    err = one_line_error(ready("add-location", drafted, "file", url), cli.EXIT_NETWORK)
    assert "127.0.0.1" in err
    view = json.loads(ok(ready("show", drafted, "--json")).stdout)
    assert view["blobs"]["file"] is None


def test_add_location_http_error_is_network(ready: Run, drafted: str, origin: Origin) -> None:
    one_line_error(
        ready("add-location", drafted, "file", origin.url("/not-there")), cli.EXIT_NETWORK
    )


# -- check, gc ------------------------------------------------------------------------------
def test_check_unchanged_changed_and_unreachable(ready: Run, drafted: str, tmp_path: Path) -> None:
    with Origin() as server:
        server.add("/v", versions=[DATA, DATA, b"different"], etag=True)
        ok(ready("add-location", drafted, "file", server.url("/v")))
        ok(ready("activate", drafted))
        result = ok(ready("check", "--json"))
        assert [r["state"] for r in json.loads(result.stdout)] == ["unchanged"]
        result = ready("check", "--rehash")
        assert result.exit_code == cli.EXIT_VERIFICATION
        assert "changed" in result.stdout
        # a changed blob is not served
        one_line_error(ready("download", drafted, "file", "-o", "-"), cli.EXIT_VERIFICATION)
    other = new_id(ready, "other", "--set", "os=x")
    with Origin() as server:
        server.add("/w", data=b"w")
        ok(ready("add-location", other, "file", server.url("/w")))
    result = ready("check", "--json")  # the origin is gone now
    assert result.exit_code == cli.EXIT_NETWORK
    states = {r["artifact_id"]: r["state"] for r in json.loads(result.stdout)}
    assert states[other] == "unreachable"


def test_check_empty_and_gc(ready: Run) -> None:
    assert "checked: 0" in ok(ready("check")).stderr
    report = json.loads(ok(ready("gc", "--json")).stdout)
    assert report["objects_removed"] == 0
    assert "objects removed" in ok(ready("gc")).stdout


# -- global behaviour ---------------------------------------------------------------------------
def test_debug_shows_the_exception(ready: Run) -> None:
    result = ready("--debug", "show", "no-such-id")
    # the traceback, then the same line and exit code as without --debug (issue 16.4)
    assert result.exit_code == cli.EXIT_NOT_FOUND
    assert "Traceback" in result.stderr and "errors.NotFound" in result.stderr
    assert result.stderr.rstrip("\n").rsplit("\n", 1)[-1].startswith("glarelite: error: ")


def test_usage_error_is_typers_exit_2(ready: Run) -> None:
    assert ready("show").exit_code == 2
    assert ready("no-such-command").exit_code == 2
    assert ready("list", "--limit", "many").exit_code == 2


def test_storage_options_parsing() -> None:
    opts = cli.parse_storage_options(
        ["anon=true", "client_kwargs.endpoint_url=http://127.0.0.1:9000", "key=abc"],
        '{"secret": "s", "client_kwargs": {"region_name": "x"}}',
    )
    assert opts == {
        "secret": "s",
        "anon": True,
        "key": "abc",
        "client_kwargs": {"region_name": "x", "endpoint_url": "http://127.0.0.1:9000"},
    }
    with pytest.raises(Exception, match="JSON"):
        cli.parse_storage_options([], "not json")


def test_bad_storage_option_env(ready: Run) -> None:
    result = ready("list", GLARELITE_STORAGE_OPTIONS="[1]")
    assert result.exit_code == 2 and "JSON object" in result.stderr


def test_storage_options_reach_the_store(ready: Run, active: str, tmp_path: Path) -> None:
    # memory:// ignores unknown options; the run must still work with some given
    out = tmp_path / "o"
    ok(
        ready(
            "--storage-option",
            "skip_instance_cache=true",
            "download",
            active,
            "file",
            "-o",
            str(out),
        )
    )
    assert out.read_bytes() == DATA


def test_exit_code_table_covers_every_error_class() -> None:
    leaves = [getattr(errors, n) for n in dir(errors) if n[0].isupper()]
    for cls in leaves:
        if isinstance(cls, type) and issubclass(cls, errors.GlareliteError):
            assert cls in cli.EXIT_CODES, cls
    assert cli.exit_code_for(errors.RefusedLocation("x")) == cli.EXIT_REFUSED
    assert cli.exit_code_for(errors.ReadOnly("x")) == cli.EXIT_CONFLICT
    assert cli.exit_code_for(ValueError("x")) == cli.EXIT_ERROR


def test_error_line_is_one_line() -> None:
    line = cli.error_line(errors.NotFound("no\nartifact   x"))
    assert "\n" not in line and line.startswith("glarelite: error: no artifact x")


def test_shell_completion(
    ready: Run, drafted: str, env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner(env=env)
    result = runner.invoke(
        app,
        [],
        prog_name="glarelite",
        env={
            "_GLARELITE_COMPLETE": "complete_bash",
            "COMP_WORDS": f"glarelite show {drafted[:4]}",
            "COMP_CWORD": "2",
        },
    )
    assert drafted in result.stdout
    result = runner.invoke(
        app,
        [],
        prog_name="glarelite",
        env={
            "_GLARELITE_COMPLETE": "complete_bash",
            "COMP_WORDS": f"glarelite upload {drafted} reg",
            "COMP_CWORD": "3",
        },
    )
    assert "regions/" in result.stdout
    # --show-completion names no shell: typer asks shellingham, which reads the process
    # tree, and a CI runner's may hold no shell at all ("Shell  not supported.", seen
    # under xdist and in a clean-clone CI run). The shell is the user's; here it is bash.
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    script = runner.invoke(app, ["--show-completion"], prog_name="glarelite")
    assert "_GLARELITE_COMPLETE" in script.stdout, (
        script.exit_code,
        repr(script.exception),
        script.output[-2000:],
    )


def test_module_entry_point(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "glarelite.cli", "--catalog", str(tmp_path / "c.db"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == cli.EXIT_NOT_FOUND
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_url_with_mirror_base(ready: Run, active: str) -> None:
    result = ok(ready("url", active, "file", "--mirror", "http://mirror.site/"))
    assert result.stdout.strip() == f"http://mirror.site/artifacts/images/{active}/file"


def test_delete_refused_while_linked_unless_forced(ready: Run, active: str) -> None:
    ok(ready("type", "define", "bundles", "--property", "base:link"))
    bundle = ok(ready("create", "bundles", "b", "--set", f"base={active}")).stdout.strip()
    view = json.loads(ok(ready("show", bundle, "--json")).stdout)
    assert view["properties"]["base"] == f"/artifacts/images/{active}"
    ok(ready("activate", bundle))
    one_line_error(ready("delete", active), cli.EXIT_CONFLICT)
    ok(ready("delete", active, "--force"))


def test_local_file_error_is_one_line(ready: Run, active: str, tmp_path: Path) -> None:
    err = one_line_error(
        ready("download", active, "file", "-o", str(tmp_path / "no" / "dir" / "f")),
        cli.EXIT_ERROR,
    )
    assert "No such file or directory" in err
    assert not list(tmp_path.glob("**/*.part"))
