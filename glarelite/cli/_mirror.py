"""The ``mirror`` command: sync a static tree, or ``--check`` one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import (
    app,
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
        for fault in data["faults"]:
            typer.echo(f"  {fault['kind']}: {fault['path']}: {fault['detail']}", err=True)
        return
    if data["dry_run"]:
        typer.echo(
            f"dry run for {data['dest']}: would copy {len(data['would_copy'])} blobs, "
            f"re-hash {data['would_check']}, delete {len(data['would_delete'])} files",
            err=True,
        )
        for item in data["would_copy"]:
            typer.echo(f"  would copy {item.get('path', item)}", err=True)
        for path in data["would_delete"]:
            typer.echo(f"  would delete {path}", err=True)
    else:
        head = "nothing to do" if data["nothing_to_do"] else f"generation {data['generation']}"
        typer.echo(
            f"mirrored into {data['dest']} ({head}): {data['artifacts']} artifacts, "
            f"{data['blobs']} blobs; copied {len(data['copied'])} "
            f"({human_size(data['bytes'])}), skipped {data['skipped']}, "
            f"repaired {len(data['repaired'])}, deleted {len(data['deleted'])}, "
            f"failed {len(data['failed'])} in {data['seconds']:.1f}s",
            err=True,
        )
    for item in data["failed"]:
        typer.echo(
            f"  failed {item.get('path', '?')}: {item.get('error', '')} {item.get('reason', '')}",
            err=True,
        )
    if data["prune"] not in ("not asked", "done", ""):
        typer.echo(f"  prune: {data['prune']}", err=True)
    for warning in data["warnings"]:
        typer.echo(f"  warning: {warning}", err=True)


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
        bool, typer.Option("--force", help="With --delete: allow pruning the tree to nothing.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; change nothing.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash the blobs already in the tree.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="With --verify: replace tree files holding other bytes."),
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
    report_file: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Write the run's report as JSON."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Copy the publishable artifacts into a static tree for sites without internet.

    Exit 5 when a blob failed verification, 6 when one could not be fetched, 10 when
    pruning was refused."""
    import mirror

    st = state()
    options = parse_storage_options(
        dest_option or [],
        os.environ.get(DEST_OPTIONS_ENV),
        option="--dest-option",
        env_name=DEST_OPTIONS_ENV,
    )
    report: Any
    with st.progress_reporter() as progress:
        if check_only:
            report = mirror.check_tree(
                dest, storage_options=options, workers=workers, progress=progress
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
