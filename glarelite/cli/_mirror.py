"""The ``mirror`` command: sync a static tree, or ``--check`` one."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import (
    EXIT_INTERRUPTED,
    app,
    cli_words,
    complete_type,
    handled,
    human_size,
    parse_storage_options,
    state,
)

CATALOG_ENV = "GLARELITE_CATALOG"
STORAGE_OPTIONS_ENV = "GLARELITE_STORAGE_OPTIONS"
DEFAULT_CATALOG = "glarelite.db"


# -- mirror ----------------------------------------------------------------------------
DEST_OPTIONS_ENV = "GLARELITE_DEST_OPTIONS"


def _cli_words(text: str) -> str:
    """The library's reports speak of its keyword arguments; the CLI user knows options."""
    text = text.replace("allow it with allow_hosts", "allow it with glarelite init --allow-host")
    return cli_words(text).replace("; force to", "; --force to")


def _mirror_summary(report: Any) -> None:
    """A few lines on stderr: what the run did, then each failure or fault."""
    data = report.to_dict()
    if "faults" in data:  # a CheckReport
        typer.echo(
            f"checked {data['dest']}: generation {data['generation']}, "
            f"{data['artifacts']} artifacts, {data['files']} blob files, "
            f"{human_size(data['bytes'])}: {data['status']}",
            err=True,
        )
        if data.get("superseded"):
            typer.echo(
                f"  {data['superseded']} superseded bucket and shard files (kept for readers "
                "of the previous root; the writer removes them after its grace period)",
                err=True,
            )
        for fault in data["faults"]:
            typer.echo(f"  {fault['kind']}: {fault['path']}: {fault['detail']}", err=True)
        for warning in data["warnings"]:
            typer.echo(f"  warning: {warning}", err=True)
        return
    if data["refused"]:
        typer.echo(f"refused: {_cli_words(data['refused'])} (exit 10)", err=True)
        return
    if data["dry_run"]:
        typer.echo(
            f"dry run for {data['dest']}: would copy {_count(data, 'would_copy')} blobs, "
            f"re-hash {data['would_check']}, withdraw {len(data['withdrawn'])} artifacts, "
            f"delete {len(data['would_delete'])} files",
            err=True,
        )
        for item in data["would_copy"]:
            typer.echo(f"  would copy {item.get('path', item)}", err=True)
        for item in data["withdrawn"]:
            typer.echo(
                f"  would withdraw {item['id']} ({item['type']}, {item['reason']})", err=True
            )
        for path in data["would_delete"]:
            typer.echo(f"  would delete {path}", err=True)
    else:
        if data["nothing_to_do"]:
            head = f"nothing to do, generation {data['generation']}"
        elif data["published"]:
            head = f"published generation {data['generation']}"
        else:  # blobs copied or repaired, the indexes already right
            head = f"generation {data['generation']} unchanged"
        typer.echo(
            f"mirrored into {data['dest']} ({head}): {data['artifacts']} artifacts, "
            f"{data['blobs']} blobs; copied {_count(data, 'copied')} "
            f"({human_size(data['bytes'])}), skipped {data['skipped']}, "
            f"repaired {_count(data, 'repaired')}, withdrawn {len(data['withdrawn'])}, "
            f"deleted {len(data['deleted'])}, failed {_count(data, 'failed')} "
            f"in {data['seconds']:.1f}s",
            err=True,
        )
        for item in data["repaired"]:
            typer.echo(f"  repaired {item['path']}: {item['reason']}", err=True)
        for item in data["withdrawn"]:
            typer.echo(f"  withdrew {item['id']} ({item['type']}, {item['reason']})", err=True)
    for item in data["failed"]:
        typer.echo(
            f"  failed {item.get('path', '?')}: {item.get('error', '')} "
            f"{_cli_words(item.get('reason', ''))}",
            err=True,
        )
    if data["prune"] not in ("not asked", "done", ""):
        typer.echo(f"  prune: {_cli_words(data['prune'])}", err=True)
    if data["retained"] and data["prune"] == "not asked":
        typer.echo(
            f"  kept {data['retained']} files no longer selected (--delete removes them)",
            err=True,
        )
    skipped = data.get("not_selected") or {}
    if skipped:
        parts = ", ".join(f"{n} {why}" for why, n in skipped.items())
        hints = []
        if "drafted" in skipped:
            hints.append("glarelite activate ID, then glarelite publish ID, to mirror a draft")
        if "private" in skipped:
            hints.append("glarelite publish ID (as admin) or --include-private NAME")
        tail = f" ({'; '.join(hints)})" if hints else ""
        typer.echo(f"  not mirrored: {parts}{tail}", err=True)
    for warning in data["warnings"]:
        typer.echo(f"  warning: {_cli_words(warning)}", err=True)


@contextlib.contextmanager
def _resume_hint() -> Iterator[None]:
    """Ctrl-C during a mirror run: say that a rerun resumes (exit 130 as ever)."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(
            "glarelite: interrupted — run the same command again to resume: what was "
            "copied is kept, large downloads continue where they stopped",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _writable(path: Path) -> None:
    """--report FILE must be writable before a run that may take hours, not after it."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        problem = "is a folder"
    elif not folder.is_dir():
        problem = "is in a folder that does not exist"
    elif not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = "cannot be written (permission denied)"
    else:
        return
    from glarelite import errors

    from ._app import cli_error

    raise cli_error(
        errors.InvalidInput(f"--report {path} {problem}"),
        "name a file in a folder you can write, or leave --report out",
    )


def _refuse_with_from(**given: bool) -> None:
    """--from copies another tree verbatim: no selection, no signing of its own."""
    used = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if used:
        from glarelite import InvalidInput

        raise InvalidInput(
            f"{', '.join(used)} cannot go with --from: a tree mirrored from another tree is "
            "a verbatim copy (select and sign at the hub)"
        )


@app.command("mirror")
@handled
def mirror_cmd(
    dest: Annotated[
        str, typer.Argument(metavar="DEST", help="The tree: a folder or an fsspec URL.")
    ],
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", metavar="T", help="Only these types.", autocompletion=complete_type),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(metavar="T", help="Only artifacts carrying this tag.")
    ] = None,
    name: Annotated[
        list[str] | None, typer.Option(metavar="N", help="Only artifacts with this name.")
    ] = None,
    include_private: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Also mirror the private artifacts of this name."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Parallel copies.")] = 8,
    delete_: Annotated[
        bool,
        typer.Option("--delete", help="Prune what the tree wrote but no longer selects."),
    ] = False,
    max_delete: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="With --delete: refuse to remove more files."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Go ahead where a run is refused (exit 10); with --delete: prune to nothing.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; change nothing.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash every blob already in the tree.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Accepted for compatibility: damage is always repaired."),
    ] = False,
    check_only: Annotated[
        bool,
        typer.Option("--check", help="Only check the tree at DEST (needs no catalog)."),
    ] = False,
    dest_option: Annotated[
        list[str] | None,
        typer.Option(
            "--dest-option",
            metavar="KEY=VALUE",
            help=f"An fsspec option for DEST (like --storage-option); also ${DEST_OPTIONS_ENV}.",
        ),
    ] = None,
    sign_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--sign-key",
            metavar="PRIVATE_KEY",
            help="Sign the tree's root with this key (repeatable: several during a rotation).",
        ),
    ] = None,
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-key",
            metavar="KEY",
            help="With --check or --from: the tree must be signed by this key (.pub or base64).",
        ),
    ] = None,
    from_tree: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="TREE",
            help="Mirror another tree (a folder or http(s) URL), not the catalog: verbatim.",
        ),
    ] = None,
    externals: Annotated[
        str | None,
        typer.Option(
            "--externals",
            metavar="copy|redirect",
            help="copy (default): external blobs are copied into the tree; redirect: left at "
            "their origin, the tree carries redirect rules (redirects.nginx.conf).",
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Superseded shard and bucket files stay this long for readers (default 3600).",
        ),
    ] = 3600.0,
    scan: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Blobs checked with one lstat per run, from where the last run stopped "
            "(default 20000; 0: none).",
        ),
    ] = 20_000,
    report_file: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Write the run's report as JSON."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Copy the publishable artifacts into a static tree for sites without internet.

    Damaged files are repaired; artifacts the catalog withdrew leave the tree. Exit 5
    when a blob failed verification, 6 when one could not be fetched, 10 when refused."""
    import mirror
    from glarelite import InvalidInput

    if from_tree is not None:
        _refuse_with_from(
            check_only=check_only,
            type=bool(type_),
            tag=bool(tag),
            name=bool(name),
            include_private=bool(include_private),
            delete=delete_,
            max_delete=max_delete is not None,
            dry_run=dry_run,
            verify=verify,
            sign_key=bool(sign_key),
        )
    elif trusted_key and not check_only:
        raise InvalidInput(
            "--trusted-key goes with --check or --from (sites pass it to open_mirror)"
        )
    if sign_key and check_only:
        raise InvalidInput("--sign-key signs a sync; --check only reads the tree")
    if externals is not None and check_only:
        raise InvalidInput("--externals is how a sync writes the tree; --check only reads it")
    st = state()
    if report_file is not None:
        _writable(report_file)
    options = parse_storage_options(
        dest_option or [],
        os.environ.get(DEST_OPTIONS_ENV),
        option="--dest-option",
        env_name=DEST_OPTIONS_ENV,
    )
    report: Any
    with _resume_hint(), st.progress_reporter() as progress:
        if from_tree is not None:
            import glarelite

            retry = glarelite.RetryPolicy(total=st.retries if st.retries is not None else 3)
            report = mirror.sync_from(
                from_tree,
                dest,
                mirror.FromOptions(
                    trusted_keys=trusted_key or None,
                    force=force,
                    storage_options=options,
                    settings=glarelite.MirrorSettings(retry=retry),
                    workers=workers,
                    grace=grace,
                ),
            )
        elif check_only:
            report = mirror.check_tree(
                dest,
                storage_options=options,
                workers=workers,
                progress=progress,
                trusted_keys=trusted_key or None,
            )
        else:
            sync_options = mirror.SyncOptions(
                types=type_ or None,
                tags=tag or None,
                names=name or None,
                include_private=include_private or (),
                workers=workers,
                delete=delete_,
                force=force,
                max_delete=max_delete,
                dry_run=dry_run,
                verify=verify,
                repair=repair,
                storage_options=options,
                retries=st.retries if st.retries is not None else 3,
                sign_key=sign_key or None,
                externals=externals or "copy",
                grace=grace,
                scan=scan,
            )
            report = mirror.sync(st.open(), dest, options=sync_options, progress=progress)
    data = report.to_dict()
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if report_file is not None:
        report_file.write_text(text + "\n")
    if as_json:
        typer.echo(text)
    _mirror_summary(report)
    code = int(report.exit_code)
    if code:
        raise typer.Exit(code)


def _count(data: dict[str, Any], kind: str) -> int:
    """How many of ``kind`` a report counts (its list stops at mirror.report.LIST_MAX)."""
    return max(len(data[kind]), int(data.get(f"{kind}_count", 0)))
