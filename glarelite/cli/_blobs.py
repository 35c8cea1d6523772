"""Blob commands: upload, add-location, url, download; maintenance: check, gc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import glarelite

from ._app import (
    EXIT_NETWORK,
    EXIT_VERIFICATION,
    IdArg,
    SlotArg,
    app,
    echo_json,
    handled,
    human_size,
    state,
    table,
)

CATALOG_ENV = "GLARELITE_CATALOG"
STORAGE_OPTIONS_ENV = "GLARELITE_STORAGE_OPTIONS"
DEFAULT_CATALOG = "glarelite.db"


# -- blobs -----------------------------------------------------------------------------
def _blob_line(blob: glarelite.Blob) -> str:
    kind = f"external {blob.external_url}" if blob.external else "internal"
    return f"{blob.slot}: {human_size(blob.size)} sha256:{blob.sha256} {blob.url} [{kind}]"


Md5Opt = Annotated[
    str | None, typer.Option(metavar="HEX", help="Refuse unless the bytes have this md5.")
]
Sha1Opt = Annotated[
    str | None, typer.Option(metavar="HEX", help="Refuse unless the bytes have this sha1.")
]


@app.command()
@handled
def upload(
    artifact_id: IdArg,
    slot: SlotArg,
    source: Annotated[str, typer.Argument(metavar="FILE|-", help="A file, or - for stdin.")],
    sha256: Annotated[
        str | None, typer.Option(metavar="HEX", help="Refuse unless the bytes have this sha256.")
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(metavar="MIME", help="Default: guessed from the file name, else binary."),
    ] = None,
    md5: Md5Opt = None,
    sha1: Sha1Opt = None,
) -> None:
    """Upload bytes into a blob of a drafted artifact (verified, stored once)."""
    st = state()
    cat = st.open()
    if source == "-":
        stream: Any = typer.get_binary_stream("stdin")
        size = None
    else:
        path = Path(source)
        if not path.is_file():
            raise typer.BadParameter(f"{source!r} is not a readable file", param_hint="FILE")
        stream = None
        size = path.stat().st_size
        import mimetypes

        content_type = content_type or mimetypes.guess_type(path.name)[0]
    with st.progress_reporter() as progress:
        if stream is None:
            with open(source, "rb") as handle:
                blob = cat.upload(
                    artifact_id,
                    slot,
                    handle,
                    sha256=sha256,
                    size=size,
                    content_type=content_type,
                    progress=progress,
                    md5=md5,
                    sha1=sha1,
                )
        else:
            blob = cat.upload(
                artifact_id,
                slot,
                stream,
                sha256=sha256,
                content_type=content_type,
                progress=progress,
                md5=md5,
                sha1=sha1,
            )
    typer.echo(_blob_line(blob))


@app.command("add-location")
@handled
def add_location(
    artifact_id: IdArg,
    slot: SlotArg,
    url: Annotated[str, typer.Argument(help="An http(s) URL; downloaded once and hashed.")],
    sha256: Annotated[
        str | None, typer.Option(metavar="HEX", help="Refuse unless the bytes have this sha256.")
    ] = None,
    content_type: Annotated[
        str | None, typer.Option(metavar="MIME", help="Default: what the server says.")
    ] = None,
    md5: Md5Opt = None,
    sha1: Sha1Opt = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the blob the slot holds (else: exit 4).")
    ] = False,
) -> None:
    """Register an external blob: fetch the URL once, record size and sha256."""
    st = state()
    cat = st.open()
    with st.progress_reporter() as progress:
        blob = cat.add_location(
            artifact_id,
            slot,
            url,
            sha256=sha256,
            content_type=content_type,
            progress=progress,
            replace=replace,
            md5=md5,
            sha1=sha1,
        )
    typer.echo(_blob_line(blob))


@app.command()
@handled
def url(
    artifact_id: IdArg,
    slot: SlotArg,
    mirror_base_url: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="BASE_URL",
            help="The base URL of a mirror serving the blob (e.g. http://mirror.site).",
        ),
    ] = None,
) -> None:
    """Print the URL a client should fetch for a blob: the mirror's with --mirror, else
    an external blob's own URL, else the internal URL."""
    st = state()
    st.mirror_base_url = mirror_base_url
    typer.echo(st.open().blob_url(artifact_id, slot))


@app.command()
@handled
def download(
    artifact_id: IdArg,
    slot: SlotArg,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE|-",
            help="Where to write (- for stdout). Default: the field or key name, here.",
        ),
    ] = None,
) -> None:
    """Download a blob, verified against its recorded size and sha256."""
    st = state()
    cat = st.open()
    target = output or slot.rstrip("/").rsplit("/", 1)[-1]
    with st.progress_reporter() as progress:
        if target != "-":
            blob = cat.download(artifact_id, slot, target, progress=progress)
            typer.echo(f"{target}: {human_size(blob.size)} sha256:{blob.sha256} verified", err=True)
            return
        art = cat.get(artifact_id)
        known = art.blob(slot)
        key = f"download {artifact_id}/{slot}"
        progress.begin(key, f"download {slot}", known.size if known else None)
        out = typer.get_binary_stream("stdout")
        ok = False
        try:
            with cat.open_blob(artifact_id, slot) as src:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    progress.advance(key, len(chunk))
            out.flush()
            ok = True
        finally:
            progress.end(key, ok=ok)


@app.command("remove-blob")
@handled
def remove_blob(artifact_id: IdArg, slot: SlotArg) -> None:
    """Remove a blob or a blob-dict entry from a drafted artifact."""
    state().open().remove_blob(artifact_id, slot)
    typer.echo(f"removed {slot} from {artifact_id}")


# -- maintenance -----------------------------------------------------------------------
@app.command()
@handled
def check(
    rehash: Annotated[
        bool, typer.Option("--rehash", help="Download and re-hash every external blob.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Re-validate external blobs against their origins.

    Exit 5 when a blob changed upstream, 6 when one is unreachable."""
    st = state()
    cat = st.open()
    with st.progress_reporter(item_keys=("check",)) as progress:
        results = cat.check(rehash=rehash, progress=progress)
    if as_json:
        echo_json([r.to_dict() for r in results])
    else:
        if results:
            table(
                [(r.state, r.artifact_id, r.slot, r.url, r.detail) for r in results],
                ("STATE", "ARTIFACT", "BLOB", "URL", "DETAIL"),
            )
        counts: dict[str, int] = {}
        for r in results:
            counts[r.state] = counts.get(r.state, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
        typer.echo(f"external blobs checked: {len(results)} ({summary})", err=True)
    states = {r.state for r in results}
    if "changed" in states:
        raise typer.Exit(EXIT_VERIFICATION)
    if "unreachable" in states:
        raise typer.Exit(EXIT_NETWORK)


@app.command()
@handled
def gc(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Remove abandoned uploads, temporaries and unreferenced stored objects."""
    report = state().open().gc()
    if as_json:
        echo_json(report.to_dict())
        return
    typer.echo(
        f"abandoned uploads: {report.uploads_abandoned}, temporaries removed: "
        f"{report.temporaries_removed}, S3 multipart uploads aborted: "
        f"{report.uploads_aborted}, objects removed: {report.objects_removed}, "
        f"bytes freed: {report.bytes_freed}"
    )
