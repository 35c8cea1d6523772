"""The ``bundle`` commands: carry a mirror tree across an air gap in one file
(see ``mirror.bundle``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import app, handled, human_size

bundle_app = typer.Typer(
    help="Carry a mirror tree to a site without network, in one file.", no_args_is_help=True
)
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("export")
@handled
def bundle_export(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="The file to write.")],
    tree_path: Annotated[
        Path,
        typer.Option("--tree", metavar="TREE", help="The mirror tree to export (a folder)."),
    ],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="GENERATION|BUNDLE",
            help="Only what changed since this generation (exported before from TREE) "
            "or since the generation of this bundle file.",
        ),
    ] = None,
    gzip: Annotated[bool, typer.Option("--gzip", help="Compress the bundle (tar.gz).")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Write one file holding the tree's generation (or only its change since a base).

    Exit 5 when a file of the tree does not match its index (nothing is written)."""
    import mirror

    base: int | str | None = None
    if since is not None:
        base = int(since) if since.isdigit() else since
    report = mirror.export_bundle(
        tree_path, bundle, since=base, compression="gz" if gzip else "none"
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    kind = "full" if report.base_generation is None else f"since {report.base_generation}"
    typer.echo(
        f"exported generation {report.generation} ({kind}) to {report.bundle}: "
        f"{report.files} files ({human_size(report.bytes)}), {len(report.removed)} removed",
        err=True,
    )
    for warning in report.warnings:
        typer.echo(f"  warning: {warning}", err=True)


@bundle_app.command("import")
@handled
def bundle_import(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="The bundle file.")],
    dest: Annotated[
        Path, typer.Argument(metavar="DEST", help="The site's tree (a folder, made if missing).")
    ],
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            metavar="SECONDS",
            help="Keep the bucket and shard files the new generation no longer pins this "
            "long (readers of the previous root); default 3600.",
        ),
    ] = 3600.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Verify every byte of BUNDLE, then publish it into DEST (index.json last).

    Exit 5 for a corrupt bundle, 4 when its base is not DEST's generation (the message
    names the generation needed); the site is unchanged either way."""
    import mirror

    report = mirror.import_bundle(bundle, dest, grace=grace)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    if report.nothing_to_do:
        head = f"nothing to do, {report.dest} already holds generation {report.generation}"
    else:
        before = report.previous_generation
        head = (
            f"imported generation {report.generation} into {report.dest} (was "
            f"{'empty' if before is None else f'generation {before}'}): {report.files} files "
            f"({human_size(report.bytes)})"
        )
    typer.echo(f"{head}, {len(report.removed)} removed", err=True)
