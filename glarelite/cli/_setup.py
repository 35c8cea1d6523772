"""Commands that set a catalog up: ``init``, ``type define|list|show``, ``quota set|show``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

import glarelite

from ._app import (
    JsonOpt,
    app,
    complete_type,
    echo_json,
    handled,
    json_or_text,
    quota_app,
    state,
    type_app,
)

CATALOG_ENV = "GLARELITE_CATALOG"
STORAGE_OPTIONS_ENV = "GLARELITE_STORAGE_OPTIONS"
DEFAULT_CATALOG = "glarelite.db"


# -- init and types --------------------------------------------------------------------
@app.command()
@handled
def init(
    storage: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help=(
                "Where blobs are stored: a folder or an fsspec URL (s3://bucket/prefix). "
                "Fixed for the life of the catalog. Default: a <name>-blobs folder beside it."
            ),
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST_OR_CIDR",
            help=(
                "Admit a host or network the location guard refuses by default "
                "(loopback, private); remembered by the catalog."
            ),
        ),
    ] = None,
) -> None:
    """Create the catalog (or confirm an existing one); fix its blob storage."""
    st = state()
    existed = st.catalog_path.exists()
    with glarelite.open(
        st.catalog_path,
        storage=storage,
        storage_options=st.storage_options,
        allow_hosts=allow_host or (),
        settings=st.settings(),
    ):
        pass
    where = storage or f"{st.catalog_path.stem}-blobs/ beside it"
    verb = "catalog exists" if existed else "initialised catalog"
    typer.echo(f"{verb}: {st.catalog_path} (blobs: {where})")
    if allow_host:
        typer.echo(f"allowed hosts: {', '.join(allow_host)}")


_KINDS = ("string", "integer", "number", "boolean", "list", "dict", "link")


_RULE_INTS = ("min_length", "max_length", "max_items")
_RULE_NUMBERS = ("min_value", "max_value")


def parse_property(spec: str) -> tuple[str, glarelite.Property]:
    """``NAME:KIND[:required][:mutable][:items=KIND][:default=JSON][:RULE=VALUE]...``;
    ``pattern=REGEX`` comes last and takes the rest of the spec (a regex may hold ':')."""
    name, sep, rest = spec.partition(":")
    pattern = None
    if ":pattern=" in f":{rest}":
        head, _, pattern = f":{rest}".partition(":pattern=")
        rest = head[1:]
    parts = rest.split(":") if sep else ["string"]
    kind, flags = parts[0] or "string", parts[1:]
    if kind not in _KINDS:
        raise typer.BadParameter(
            f"{spec!r}: unknown kind {kind!r}; one of {', '.join(_KINDS)}",
            param_hint="--property",
        )
    options: dict[str, Any] = {"kind": kind}
    if pattern is not None:
        options["pattern"] = pattern
    for flag in flags:
        rule, eq, value = flag.partition("=")
        if flag in ("required", "mutable", "unique"):
            options[flag] = True
        elif rule == "items" and eq:
            options["items"] = value
        elif rule == "default" and eq:
            options["default"] = json_or_text(value)
        elif rule == "allowed" and eq:
            allowed = json_or_text(value)
            options["allowed"] = (
                tuple(allowed) if isinstance(allowed, list) else tuple(value.split(","))
            )
        elif rule in _RULE_INTS + _RULE_NUMBERS and eq:
            number = json_or_text(value)
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise typer.BadParameter(
                    f"{spec!r}: {rule} takes a number, not {value!r}", param_hint="--property"
                )
            options[rule] = number
        else:
            raise typer.BadParameter(
                f"{spec!r}: unknown flag {flag!r} (required, mutable, unique, items=KIND, "
                "default=VALUE, allowed=A,B, min_length=N, max_length=N, min_value=X, "
                "max_value=X, max_items=N, pattern=REGEX)",
                param_hint="--property",
            )
    return name, glarelite.Property(**options)


def parse_blob(spec: str, option: str) -> tuple[str, glarelite.BlobField]:
    """``FIELD[:required][:mutable][:max_size=BYTES]``."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for flag in rest.split(":") if rest else []:
        rule, eq, value = flag.partition("=")
        if flag in ("required", "mutable"):
            options[flag] = True
        elif rule == "max_size" and eq and value.isdigit():
            options["max_size"] = int(value)
        else:
            raise typer.BadParameter(
                f"{spec!r}: unknown flag {flag!r} (required, mutable, max_size=BYTES)",
                param_hint=option,
            )
    return name, glarelite.BlobField(**options)


def _describe_type(atype: glarelite.ArtifactType) -> str:
    parts = []

    def blob_spec(field: str) -> str:
        options = atype.blob_field(field).to_json()
        return field + "".join(
            f":{k}" if v is True else f":{k}={v}" for k, v in sorted(options.items())
        )

    if atype.blobs:
        parts.append("blobs: " + ", ".join(blob_spec(f) for f in atype.blobs))
    if atype.blob_dicts:
        parts.append("blob dicts: " + ", ".join(blob_spec(f) for f in atype.blob_dicts))
    if atype.properties:
        props = []
        for pname, prop in sorted(atype.properties.items()):
            flags = "".join(f":{f}" for f in ("required", "mutable") if getattr(prop, f)) + (
                f":items={prop.items}" if prop.kind in ("list", "dict") else ""
            )
            for rule, value in prop.rules().items():
                if rule == "allowed":
                    value = ",".join(str(v) for v in value)
                flags += f":{rule}" if value is True else f":{rule}={value}"
            props.append(f"{pname}:{prop.kind}{flags}")
        parts.append("properties: " + ", ".join(props))
    if atype.max_blob_size is not None:
        parts.append(f"max blob size: {atype.max_blob_size}")
    if atype.checksums:
        parts.append("checksums: " + ", ".join(atype.checksums))
    return "; ".join(parts) or "(no fields)"


@type_app.command("define")
@handled
def type_define(
    name: Annotated[str, typer.Argument(help="The type name (a URL path segment).")],
    blob: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FIELD[:FLAG]...",
            help="A blob field (one blob); FLAGs: required, mutable, max_size=BYTES.",
        ),
    ] = None,
    blob_dict: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FIELD[:FLAG]...",
            help="A blob-dict field (named blobs FIELD/KEY); FLAGs as for --blob.",
        ),
    ] = None,
    property: Annotated[
        list[str] | None,
        typer.Option(
            "--property",
            "-p",
            metavar="NAME:KIND[:FLAG]...",
            help=(
                "A property: KIND is string, integer, number, boolean, list, dict or link; "
                "FLAGs: required, mutable, items=KIND (list/dict), default=VALUE, and the "
                "rules allowed=A,B, min_length=N, max_length=N, min_value=X, max_value=X, "
                "max_items=N, unique, pattern=REGEX (last)."
            ),
        ),
    ] = None,
    max_blob_size: Annotated[
        int | None, typer.Option(min=0, metavar="BYTES", help="Cap per blob and per blob dict.")
    ] = None,
    checksum: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ALGO", help="Record this digest (md5, sha1) for every blob, beside sha256."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Define an artifact type (again with the same definition: a no-op)."""
    properties = dict(parse_property(p) for p in property or [])
    blobs = [parse_blob(b, "--blob") for b in blob or []]
    blob_dicts = [parse_blob(b, "--blob-dict") for b in blob_dict or []]
    atype = (
        state()
        .open()
        .define_type(
            glarelite.ArtifactType(
                name,
                blobs=tuple(n for n, _ in blobs),  # a repeated name stays an error
                blob_dicts=tuple(n for n, _ in blob_dicts),
                properties=properties,
                max_blob_size=max_blob_size,
                blob_options=dict(blobs + blob_dicts),
                checksums=tuple(checksum or ()),
            )
        )
    )
    if as_json:
        echo_json(atype.to_json())
    else:
        typer.echo(f"{atype.name}: {_describe_type(atype)}")


@type_app.command("list")
@handled
def type_list(as_json: JsonOpt = False) -> None:
    """List the artifact types of the catalog."""
    types = state().open().types()
    if as_json:
        echo_json([t.to_json() for t in types])
        return
    for atype in types:
        typer.echo(f"{atype.name}: {_describe_type(atype)}")


@type_app.command("show")
@handled
def type_show(
    name: Annotated[str, typer.Argument(autocompletion=complete_type)],
    as_json: JsonOpt = False,
) -> None:
    """Show one artifact type."""
    atype = state().open().get_type(name)
    if as_json:
        echo_json(atype.to_json())
    else:
        typer.echo(f"{atype.name}: {_describe_type(atype)}")


# -- quotas ----------------------------------------------------------------------------
ScopeArg = Annotated[str, typer.Argument(help="global, type or owner.", metavar="SCOPE")]
TargetArg = Annotated[
    str, typer.Argument(help="The type or owner name (nothing for global).", metavar="[TARGET]")
]


@quota_app.command("set")
@handled
def quota_set(
    scope: ScopeArg = "global",
    target: TargetArg = "",
    max_artifacts: Annotated[
        int | None, typer.Option("--max-artifacts", help="At most this many artifacts.")
    ] = None,
    max_bytes: Annotated[
        int | None, typer.Option("--max-bytes", help="At most this many stored bytes.")
    ] = None,
) -> None:
    """Set a quota (both limits omitted: remove it). External blobs count toward the
    artifact count, not the stored bytes."""
    quota = (
        state().open().set_quota(scope, target, max_artifacts=max_artifacts, max_bytes=max_bytes)
    )
    typer.echo(_describe_quota(quota))


@quota_app.command("show")
@handled
def quota_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every quota with what is used of it."""
    cat = state().open()
    rows = []
    for quota in cat.quotas():
        artifacts, stored = cat.usage(quota.scope, quota.target)
        rows.append((quota, artifacts, stored))
    if as_json:
        echo_json([{**q.__dict__, "artifacts": n, "stored_bytes": b} for q, n, b in rows])
        return
    for quota, artifacts, stored in rows:
        typer.echo(f"{_describe_quota(quota)}; used: {artifacts} artifacts, {stored} bytes")


def _describe_quota(quota: glarelite.Quota) -> str:
    who = "global" if quota.scope == "global" else f"{quota.scope} {quota.target}"
    limits = [
        f"{name} {value}"
        for name, value in (("max artifacts", quota.max_artifacts), ("max bytes", quota.max_bytes))
        if value is not None
    ]
    return f"{who}: {', '.join(limits) or 'no limit'}"
