"""Artifact commands: create, show, list, update, the lifecycle transitions, delete."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

import glarelite

from ._app import (
    IdArg,
    JsonOpt,
    app,
    complete_type,
    echo_json,
    handled,
    human_size,
    parse_key_values,
    state,
    table,
)

CATALOG_ENV = "GLARELITE_CATALOG"
STORAGE_OPTIONS_ENV = "GLARELITE_STORAGE_OPTIONS"
DEFAULT_CATALOG = "glarelite.db"


# -- artifacts -------------------------------------------------------------------------
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Set a property; the value is coerced to its kind (lists and dicts as JSON).",
    ),
]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", metavar="TAG", help="Add a tag.")]


@app.command()
@handled
def create(
    type_name: Annotated[
        str, typer.Argument(metavar="TYPE", help="The artifact type.", autocompletion=complete_type)
    ],
    name: Annotated[str, typer.Argument(help="The artifact name.")],
    version: Annotated[
        str | None, typer.Option(metavar="V", help="A semantic version (default 0.0.0).")
    ] = None,
    owner: Annotated[
        str | None, typer.Option(metavar="O", help="The owner (admin only; default: you).")
    ] = None,
    tag: TagOpt = None,
    set_: SetOpt = None,
    description: Annotated[str | None, typer.Option(metavar="TEXT", help="A description.")] = None,
) -> None:
    """Create a drafted, private artifact and print its id alone on stdout (public
    implies active: activate it, then publish it as admin)."""
    art = (
        state()
        .open()
        .create(
            type_name,
            name,
            version=version,
            owner=owner,
            description=description,
            tags=tag or [],
            properties=parse_key_values(set_ or [], "--set"),
        )
    )
    typer.echo(art.id)


def _show_human(art: glarelite.Artifact) -> None:
    rows = [
        ("id", art.id),
        ("type", art.type_name),
        ("name", art.name),
        ("version", art.version),
        ("owner", art.owner),
        ("status", art.status),
        ("visibility", art.visibility),
        ("url", art.url),
        ("description", art.description),
        ("tags", ", ".join(art.tags)),
        ("created_at", art.created_at),
        ("updated_at", art.updated_at),
        ("activated_at", art.activated_at or "-"),
    ]
    for key, value in rows:
        typer.echo(f"{key + ':':<14}{value}")
    if art.properties:
        typer.echo("properties:")
        for key, value in sorted(art.properties.items()):
            shown = value if isinstance(value, str) else json.dumps(value)
            typer.echo(f"  {key}: {shown}")
    typer.echo("blobs:")
    empty = [n for n, v in sorted(art.blobs.items()) if not v]
    for blob in art.iter_blobs():
        where = f"external {blob.external_url}" if blob.external else "internal"
        if blob.external and blob.upstream != "ok":
            where += f" (upstream {blob.upstream})"
        typer.echo(
            f"  {blob.slot}: {blob.status} {human_size(blob.size)} "
            f"sha256:{blob.sha256 or '-'} {blob.url} [{where}]"
        )
    for name in empty:
        typer.echo(f"  {name}: (empty)")


@app.command()
@handled
def show(artifact_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show an artifact (with --json: the show view, as the mirror writes it)."""
    art = state().open().get(artifact_id)
    if as_json:
        echo_json(art.to_dict())
    else:
        _show_human(art)


@app.command("list")
@handled
def list_(
    type_name: Annotated[
        str | None,
        typer.Argument(metavar="TYPE", help="Only this type.", autocompletion=complete_type),
    ] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            metavar="EXPR",
            help="A Glare filter: name=eq:ubuntu, version=gte:1.2, tags=a,b (repeatable).",
        ),
    ] = None,
    sort: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY[:asc|desc]", help="Sort key (repeatable; default desc)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="Page size (default 25, at most 1000).")
    ] = None,
    marker: Annotated[
        str | None, typer.Option(metavar="ID", help="Start after this artifact (paging).")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Only the highest version of each name.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List artifacts: one page, filtered and sorted as Glare does."""
    page = (
        state()
        .open()
        .list(
            type_name,
            filters=filter_ or [],
            sort=sort or None,
            limit=limit,
            marker=marker,
            latest=latest,
        )
    )
    if as_json:
        echo_json(
            {
                "artifacts": [a.to_dict() for a in page.items],
                "next_marker": page.next_marker,
                "total": page.total,
            }
        )
        return
    table(
        [(a.id, a.type_name, a.name, a.version, a.status, a.visibility) for a in page.items],
        ("ID", "TYPE", "NAME", "VERSION", "STATUS", "VISIBILITY"),
    )
    if page.next_marker:
        typer.echo(
            f"{len(page.items)} of {page.total} shown; next page: --marker {page.next_marker}",
            err=True,
        )


@app.command()
@handled
def update(
    artifact_id: IdArg,
    set_: SetOpt = None,
    unset: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY", help="Unset a property (lists [] / dicts {} / default)."),
    ] = None,
    tag: TagOpt = None,
    untag: Annotated[list[str] | None, typer.Option(metavar="TAG", help="Remove a tag.")] = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Rename (drafted only).")] = None,
    version: Annotated[
        str | None, typer.Option(metavar="V", help="Change the version (drafted only).")
    ] = None,
    description: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Replace the description.")
    ] = None,
) -> None:
    """Change properties, tags, name, version or description of an artifact."""
    properties: dict[str, Any] = dict(parse_key_values(set_ or [], "--set"))
    for key in unset or []:
        properties[key] = None
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if version is not None:
        changes["version"] = version
    if description is not None:
        changes["description"] = description
    art = (
        state()
        .open()
        .update(
            artifact_id,
            add_tags=tag or [],
            remove_tags=untag or [],
            properties=properties,
            **changes,
        )
    )
    typer.echo(f"updated {art.id}")


def _transition(verb: str, artifact_id: str) -> None:
    cat = state().open()
    actions: dict[str, Callable[[str], glarelite.Artifact]] = {
        "activate": cat.activate,
        "deactivate": cat.deactivate,
        "reactivate": cat.reactivate,
        "publish": cat.publish,
    }
    art = actions[verb](artifact_id)
    typer.echo(f"{art.id} {art.status} {art.visibility}")


@app.command()
@handled
def activate(artifact_id: IdArg) -> None:
    """drafted -> active (required properties must be set)."""
    _transition("activate", artifact_id)


@app.command()
@handled
def deactivate(artifact_id: IdArg) -> None:
    """active -> deactivated (no longer served or mirrored)."""
    _transition("deactivate", artifact_id)


@app.command()
@handled
def reactivate(artifact_id: IdArg) -> None:
    """deactivated -> active."""
    _transition("reactivate", artifact_id)


@app.command()
@handled
def publish(artifact_id: IdArg) -> None:
    """Make an active artifact public (there is no way back to private)."""
    _transition("publish", artifact_id)


@app.command()
@handled
def delete(
    artifact_id: IdArg,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even while active artifacts link to it.")
    ] = False,
) -> None:
    """Delete an artifact: its records and its internal bytes (external: records only)."""
    state().open().delete(artifact_id, force=force)
    typer.echo(f"deleted {artifact_id}")
