"""The ``key`` commands: signing keys for mirror trees (see ``glarelite.signing``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app, handled

key_app = typer.Typer(help="Signing keys for mirror trees.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("generate")
@handled
def key_generate(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PRIVATE_KEY_PATH",
            help="Where to write the private key (mode 0600); the public key goes to PATH.pub.",
        ),
    ],
) -> None:
    """Write a new Ed25519 key pair; print the public key and its key id.

    Never overwrites a file: exit 2 when PATH or PATH.pub exists."""
    from glarelite import signing

    public = signing.generate_key(path)
    typer.echo(f"{public.to_text()} {public.key_id}")
    typer.echo(
        f"wrote the private key {path} (keep it secret) and the public key {path}.pub "
        f"(key id {public.key_id}: give it to the sites)",
        err=True,
    )
