"""The CLI knows Glare's type system (issue 17): rules and blob options on `type define`,
shown by `type show`, enforced on `create`; md5/sha1 and --replace on blob commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.fixtures.origin import Origin
from tests.test_cli import (  # the CLI fixtures: env, run
    Run,
    env_fixture,
    ok,
    one_line_error,
    run_fixture,
)

__all__ = ["env_fixture", "run_fixture"]

HEAT = [
    *("type", "define", "heat_templates"),
    *("--blob", "template:required", "--blob", "notes:mutable:max_size=10"),
    *("--blob-dict", "nested_templates"),
    *("-p", "environment:dict:items=link"),
    *("-p", "disk_format:string:allowed=raw,qcow2"),
    *("-p", "tags_list:list:unique:max_items=2"),
    *("-p", "min_ram:integer:min_value=0"),
    *("-p", "cloud_user:string:max_length=8:pattern=[a-z]+:[0-9]+"),
    *("--checksum", "md5"),
]


def test_type_define_stores_rules_and_blob_options(run: Run, memory_store: str) -> None:
    ok(run("init", "--storage", memory_store))
    ok(run(*HEAT))
    shown = json.loads(ok(run("type", "show", "heat_templates", "--json")).stdout)
    props = shown["properties"]
    assert props["disk_format"]["allowed"] == ["raw", "qcow2"]
    assert props["tags_list"] == {"kind": "list", "items": "string", "unique": True, "max_items": 2}
    assert props["cloud_user"]["pattern"] == "[a-z]+:[0-9]+"  # ':' inside a pattern is kept
    assert props["environment"]["items"] == "link"
    assert shown["blob_options"] == {
        "notes": {"mutable": True, "max_size": 10},
        "template": {"required": True},
    }
    assert shown["checksums"] == ["md5"]
    line = ok(run("type", "show", "heat_templates")).stdout
    assert "template:required" in line and "allowed=raw,qcow2" in line
    assert "checksums: md5" in line
    ok(run(*HEAT))  # the same definition again: a no-op

    err = one_line_error(run("create", "heat_templates", "s", "--set", "disk_format=qcow3"), 2)
    assert "'disk_format'" in err and "rule allowed" in err
    err = one_line_error(run("create", "heat_templates", "s", "--set", "cloud_user=abc:12345"), 2)
    assert "rule max_length" in err
    created = ok(run("create", "heat_templates", "s")).stdout.strip()
    err = one_line_error(run("activate", created), 4)
    assert "required blobs not set: template" in err


def test_bad_rule_flags_are_usage_errors(run: Run, memory_store: str) -> None:
    ok(run("init", "--storage", memory_store))
    # a rule that does not fit its kind: InvalidInput, one line
    err = one_line_error(run("type", "define", "t", "-p", "n:integer:max_length=3"), 2)
    assert "max_length" in err
    # a flag that does not parse: a usage error naming it
    for args in (("-p", "n:string:min_value=x"), ("-p", "n:string:bogus=1"), ("--blob", "f:x")):
        result = run("type", "define", "t", *args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr
        assert args[1].split(":")[-1] in result.stderr
    assert "t:" not in ok(run("type", "list")).stdout  # nothing was defined


def test_blob_commands_take_md5_sha1_and_replace(
    run: Run, memory_store: str, origin: Origin, tmp_path: Path
) -> None:
    ok(run("init", "--storage", memory_store, "--allow-host", "127.0.0.1"))
    ok(run(*HEAT))
    data = b"heat_template_version: 2018-08-31\n"
    origin.add("/t.yaml", data=data)
    art = ok(run("create", "heat_templates", "s")).stdout.strip()
    src = tmp_path / "t.yaml"
    src.write_bytes(data)
    one_line_error(run("upload", art, "template", str(src), "--md5", "0" * 32), 5)
    ok(run("upload", art, "template", str(src), "--sha1", hashlib.sha1(data).hexdigest()))
    url = origin.url("/t.yaml")
    err = one_line_error(run("add-location", art, "template", url), 4)
    assert "already set" in err
    ok(
        run(
            "add-location",
            art,
            "template",
            url,
            "--replace",
            "--md5",
            hashlib.md5(data).hexdigest(),
        )
    )
    ok(run("upload", art, "nested_templates/Nested One.yaml", str(src)))
    shown = json.loads(ok(run("show", art, "--json")).stdout)
    assert shown["blobs"]["template"]["checksums"] == {"md5": hashlib.md5(data).hexdigest()}
    nested = shown["blobs"]["nested_templates"]["Nested One.yaml"]
    assert nested["url"].endswith("/nested_templates/%4Eested%20%4Fne.yaml")
