"""The ``glarelite`` command line: parse, call the library, print.

This is the only module of glarelite that prints, reads the environment for defaults,
exits, or imports ``mirror``. Every library error becomes one line on stderr and an
exit code from :data:`EXIT_CODES`; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast

import typer

import glarelite
from glarelite import errors
from glarelite.progress import NULL_PROGRESS, Progress

CATALOG_ENV = "GLARELITE_CATALOG"
STORAGE_OPTIONS_ENV = "GLARELITE_STORAGE_OPTIONS"
DEFAULT_CATALOG = "glarelite.db"

# -- exit codes ------------------------------------------------------------------------
EXIT_OK = 0
EXIT_ERROR = 1  # anything not below (an unexpected error, a local file that cannot be written)
EXIT_USAGE = 2  # typer's own usage errors, and InvalidInput from the library
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4  # conflict or illegal state (lifecycle, ownership, locks)
EXIT_VERIFICATION = 5
EXIT_NETWORK = 6
EXIT_REFUSED = 7  # a URL refused by the location guard
EXIT_TOO_LARGE = 8  # a size cap or a quota
EXIT_PRUNE_REFUSED = 10  # mirror --delete refused to prune (see mirror.report)
EXIT_INTERRUPTED = 130

#: Exception class -> exit code. The most specific class in an error's MRO wins.
EXIT_CODES: dict[type[BaseException], int] = {
    errors.GlareliteError: EXIT_ERROR,
    errors.InvalidInput: EXIT_USAGE,
    errors.NotFound: EXIT_NOT_FOUND,
    errors.Conflict: EXIT_CONFLICT,
    errors.LockedError: EXIT_CONFLICT,
    errors.Forbidden: EXIT_CONFLICT,
    errors.IllegalTransition: EXIT_CONFLICT,
    errors.ReadOnly: EXIT_CONFLICT,
    errors.VerificationError: EXIT_VERIFICATION,
    errors.ChecksumMismatch: EXIT_VERIFICATION,
    errors.UpstreamChanged: EXIT_VERIFICATION,
    errors.NetworkError: EXIT_NETWORK,
    errors.RefusedLocation: EXIT_REFUSED,
    errors.TooLarge: EXIT_TOO_LARGE,
    errors.QuotaExceeded: EXIT_TOO_LARGE,
    errors.DestinationError: EXIT_ERROR,  # a tree that cannot be written, like a local file
}

# What to do next, per error kind: appended to the one-line message.
_HINTS: dict[type[BaseException], str] = {
    errors.NotFound: "check the id, type or field (glarelite list, glarelite show ID)",
    errors.IllegalTransition: "see the artifact's status with glarelite show ID",
    errors.Forbidden: "act as its owner or as admin",
    errors.LockedError: "wait for the other process or remove a stale lock",
    errors.Conflict: "see the current state with glarelite show ID",
    errors.ChecksumMismatch: "the bytes are not the ones expected; check the source or --sha256",
    errors.UpstreamChanged: "run glarelite check to re-validate external blobs",
    errors.VerificationError: "the bytes are not the ones recorded",
    errors.NetworkError: "check the URL and the network, or retry (--retries, --timeout)",
    errors.RefusedLocation: (
        "allow the host with glarelite init --allow-host HOST or $GLARELITE_ALLOW_HOSTS"
    ),
    errors.TooLarge: "the blob exceeds its size cap",
    errors.QuotaExceeded: "raise the quota or free space (delete, gc)",
}


def exit_code_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_ERROR


def _hint_for(exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        if cls in _HINTS:
            return _HINTS[cls]
    return None


def error_line(exc: BaseException) -> str:
    """The one line printed for ``exc``: what was wrong, then what to do."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    hint = _hint_for(exc)
    if hint and hint not in message:
        message = f"{message} — {hint}"
    return f"glarelite: error: {message}"


# -- state shared by the callback and the commands -------------------------------------
@dataclass
class State:
    catalog_path: Path = Path(DEFAULT_CATALOG)
    storage_options: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    retries: int | None = None
    timeout: float | None = None
    debug: bool = False
    progress: bool | None = None  # None: on when stderr is a terminal
    mirror_base_url: str | None = None
    _catalog: glarelite.Catalog | None = None

    def settings(self) -> glarelite.CatalogSettings:
        http = glarelite.HttpSettings()
        if self.retries is not None:
            http = replace(http, retry=replace(http.retry, total=self.retries))
        if self.timeout is not None:
            http = replace(http, connect_timeout=self.timeout, read_timeout=self.timeout)
        return glarelite.CatalogSettings(http=http, mirror_base_url=self.mirror_base_url)

    def open(self) -> glarelite.Catalog:
        """The catalog named by --catalog, which must exist (see ``init``)."""
        if self._catalog is None:
            if not self.catalog_path.exists():
                raise errors.NotFound(
                    f"no catalog at {self.catalog_path}; create one with glarelite init, "
                    f"or name it with --catalog or ${CATALOG_ENV}"
                )
            self._catalog = glarelite.open(
                self.catalog_path,
                storage_options=self.storage_options,
                owner=self.owner,
                settings=self.settings(),
                create=False,
            )
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return sys.stderr.isatty()

    @contextlib.contextmanager
    def progress_reporter(self, item_keys: Sequence[str] = ()) -> Iterator[Progress]:
        """A rich progress display on a terminal; nothing when stderr is piped.
        ``item_keys``: the progress keys whose totals count items, not bytes."""
        if not self.show_progress():
            yield NULL_PROGRESS
            return
        from ._cli_progress import RichProgress

        with RichProgress(item_keys=item_keys) as bars:
            yield bars


_STATE: contextvars.ContextVar[State] = contextvars.ContextVar("glarelite_cli_state")


def state() -> State:
    try:
        return _STATE.get()
    except LookupError:  # a command invoked without the app callback (not via `app`)
        st = State()
        _STATE.set(st)
        return st


# -- the app ---------------------------------------------------------------------------
app = typer.Typer(
    name="glarelite",
    help=(
        "An artifact catalog modelled on OpenStack Glare, with a mirror for sites "
        "that have no internet."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
type_app = typer.Typer(help="Define and list artifact types.", no_args_is_help=True)
app.add_typer(type_app, name="type")
quota_app = typer.Typer(
    help="Set and show quotas on artifacts and stored bytes.", no_args_is_help=True
)
app.add_typer(quota_app, name="quota")

F = TypeVar("F", bound=Callable[..., Any])


def _fail(exc: BaseException, code: int | None = None) -> NoReturn:
    typer.echo(error_line(exc), err=True)
    raise typer.Exit(exit_code_for(exc) if code is None else code)


def handled(func: F) -> F:
    """Run a command body: library errors become one stderr line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        st = state()
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt:
            if st.debug:
                raise
            typer.echo("glarelite: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except errors.GlareliteError as exc:
            if st.debug:
                raise
            _fail(exc)
        except OSError as exc:
            if st.debug:
                raise
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            typer.echo(f"glarelite: error: {what}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:
            if st.debug:
                raise
            typer.echo(
                f"glarelite: internal error: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())} — rerun with --debug for the traceback",
                err=True,
            )
            raise typer.Exit(EXIT_ERROR) from None

    return cast(F, wrapper)


def _version_callback(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("glarelite")
        except metadata.PackageNotFoundError:  # pragma: no cover - bare checkout
            version = "unknown"
        typer.echo(f"glarelite {version}")
        raise typer.Exit()


def parse_key_values(items: Sequence[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` strings -> dict (later wins); a missing ``=`` is a usage error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_storage_options(
    items: Sequence[str],
    env_text: str | None,
    *,
    option: str = "--storage-option",
    env_name: str = STORAGE_OPTIONS_ENV,
) -> dict[str, Any]:
    """``$GLARELITE_STORAGE_OPTIONS`` (a JSON object), then ``--storage-option KEY=VALUE``.

    Values are JSON when they parse (``anon=true``, ``client_kwargs={"region_name": "x"}``),
    text otherwise; a dotted key sets a nested one (``client_kwargs.endpoint_url=URL``)."""
    options: dict[str, Any] = {}
    if env_text:
        try:
            loaded = json.loads(env_text)
        except ValueError as exc:
            raise typer.BadParameter(f"${env_name} is not JSON: {exc}", param_hint=option) from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"${env_name} must be a JSON object", param_hint=option)
        options.update(loaded)
    for key, text in parse_key_values(items, option).items():
        target = options
        *parents, leaf = key.split(".")
        for part in parents:
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = {}
                target[part] = nested
            target = nested
        target[leaf] = _json_or_text(text)
    return options


@app.callback()
def main(
    ctx: typer.Context,
    catalog: Annotated[
        Path,
        typer.Option(
            "--catalog",
            "-c",
            metavar="PATH",
            envvar=CATALOG_ENV,
            help=f"The catalog file (default: ${CATALOG_ENV}, else ./{DEFAULT_CATALOG}).",
            show_default=False,
        ),
    ] = Path(DEFAULT_CATALOG),
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            metavar="KEY=VALUE",
            help=(
                "An fsspec storage option for this run (credentials, endpoint), never "
                f"stored; JSON values allowed; dotted keys nest. Also ${STORAGE_OPTIONS_ENV} "
                "(a JSON object)."
            ),
        ),
    ] = None,
    as_owner: Annotated[
        str | None,
        typer.Option("--as", metavar="OWNER", help="Act in OWNER's scope instead of as admin."),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            min=0, metavar="N", help="Retries of a failed fetch of an external URL (default 5)."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            help="Connect and read timeout for external URLs, seconds.",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Draw progress bars (default: only when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """glarelite: an embeddable artifact catalog and a mirror for disconnected sites."""
    st = State(
        catalog_path=catalog,
        storage_options=parse_storage_options(
            storage_option or [], os.environ.get(STORAGE_OPTIONS_ENV)
        ),
        owner=as_owner,
        retries=retries,
        timeout=timeout,
        debug=debug,
        progress=progress,
    )
    _STATE.set(st)
    ctx.call_on_close(st.close)


# -- completion of ids and type names --------------------------------------------------
def _completion_catalog(ctx: typer.Context) -> glarelite.Catalog | None:
    root = ctx.find_root()
    path = root.params.get("catalog") or os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG
    if not Path(path).exists():
        return None
    return glarelite.open(path, create=False)


def complete_type(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        cat = _completion_catalog(ctx)
        if cat is None:
            return []
        with cat:
            return [t.name for t in cat.types() if t.name.startswith(incomplete)]
    except Exception:
        return []


def complete_id(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    try:
        cat = _completion_catalog(ctx)
        if cat is None:
            return []
        with cat:
            return [
                (a.id, f"{a.type_name} {a.name} {a.version} ({a.status})")
                for a in cat.iter_all()
                if a.id.startswith(incomplete)
            ][:200]
    except Exception:
        return []


def complete_slot(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        cat = _completion_catalog(ctx)
        artifact_id = ctx.params.get("artifact_id")
        if cat is None or not artifact_id:
            return []
        with cat:
            art = cat.get(artifact_id)
            atype = cat.get_type(art.type_name)
            slots = list(atype.blobs) + [f"{d}/" for d in atype.blob_dicts]
            slots += [b.slot for b in art.iter_blobs() if b.key]
            return sorted(s for s in set(slots) if s.startswith(incomplete))
    except Exception:
        return []


# -- shared option and argument types --------------------------------------------------
IdArg = Annotated[
    str, typer.Argument(metavar="ID", help="The artifact id.", autocompletion=complete_id)
]
SlotArg = Annotated[
    str,
    typer.Argument(
        metavar="FIELD[/KEY]",
        help="A blob field, or a blob-dict field and a key.",
        autocompletion=complete_slot,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (the show view).")]


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in (header, *rows):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


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


def parse_property(spec: str) -> tuple[str, glarelite.Property]:
    """``NAME:KIND[:required][:mutable][:items=KIND][:default=JSON]``."""
    name, sep, rest = spec.partition(":")
    parts = rest.split(":") if sep else ["string"]
    kind, flags = parts[0] or "string", parts[1:]
    if kind not in _KINDS:
        raise typer.BadParameter(
            f"{spec!r}: unknown kind {kind!r}; one of {', '.join(_KINDS)}",
            param_hint="--property",
        )
    options: dict[str, Any] = {"kind": kind}
    for flag in flags:
        if flag in ("required", "mutable"):
            options[flag] = True
        elif flag.startswith("items="):
            options["items"] = flag[len("items=") :]
        elif flag.startswith("default="):
            options["default"] = _json_or_text(flag[len("default=") :])
        else:
            raise typer.BadParameter(
                f"{spec!r}: unknown flag {flag!r} (required, mutable, items=KIND, default=VALUE)",
                param_hint="--property",
            )
    return name, glarelite.Property(**options)


def _describe_type(atype: glarelite.ArtifactType) -> str:
    parts = []
    if atype.blobs:
        parts.append("blobs: " + ", ".join(atype.blobs))
    if atype.blob_dicts:
        parts.append("blob dicts: " + ", ".join(atype.blob_dicts))
    if atype.properties:
        props = []
        for pname, prop in sorted(atype.properties.items()):
            flags = "".join(f":{f}" for f in ("required", "mutable") if getattr(prop, f)) + (
                f":items={prop.items}" if prop.kind in ("list", "dict") else ""
            )
            props.append(f"{pname}:{prop.kind}{flags}")
        parts.append("properties: " + ", ".join(props))
    if atype.max_blob_size is not None:
        parts.append(f"max blob size: {atype.max_blob_size}")
    return "; ".join(parts) or "(no fields)"


@type_app.command("define")
@handled
def type_define(
    name: Annotated[str, typer.Argument(help="The type name (a URL path segment).")],
    blob: Annotated[
        list[str] | None, typer.Option(metavar="FIELD", help="A blob field (one blob).")
    ] = None,
    blob_dict: Annotated[
        list[str] | None,
        typer.Option(metavar="FIELD", help="A blob-dict field (named blobs FIELD/KEY)."),
    ] = None,
    property: Annotated[
        list[str] | None,
        typer.Option(
            "--property",
            "-p",
            metavar="NAME:KIND[:FLAG]...",
            help=(
                "A property: KIND is string, integer, number, boolean, list, dict or link; "
                "FLAGs: required, mutable, items=KIND (list/dict), default=VALUE."
            ),
        ),
    ] = None,
    max_blob_size: Annotated[
        int | None, typer.Option(min=0, metavar="BYTES", help="Cap per blob and per blob dict.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Define an artifact type (again with the same definition: a no-op)."""
    properties = dict(parse_property(p) for p in property or [])
    atype = (
        state()
        .open()
        .define_type(
            name,
            blobs=blob or [],
            blob_dicts=blob_dict or [],
            properties=properties,
            max_blob_size=max_blob_size,
        )
    )
    if as_json:
        _echo_json(atype.to_json())
    else:
        typer.echo(f"{atype.name}: {_describe_type(atype)}")


@type_app.command("list")
@handled
def type_list(as_json: JsonOpt = False) -> None:
    """List the artifact types of the catalog."""
    types = state().open().types()
    if as_json:
        _echo_json([t.to_json() for t in types])
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
        _echo_json(atype.to_json())
    else:
        typer.echo(f"{atype.name}: {_describe_type(atype)}")


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
    public: Annotated[bool, typer.Option("--public", help="Create it public.")] = False,
    tag: TagOpt = None,
    set_: SetOpt = None,
    description: Annotated[str | None, typer.Option(metavar="TEXT", help="A description.")] = None,
) -> None:
    """Create a drafted artifact and print its id alone on stdout."""
    art = (
        state()
        .open()
        .create(
            type_name,
            name,
            version=version,
            owner=owner,
            visibility="public" if public else "private",
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
            f"  {blob.slot}: {blob.status} {_human_size(blob.size)} "
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
        _echo_json(art.to_dict())
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
        _echo_json(
            {
                "artifacts": [a.to_dict() for a in page.items],
                "next_marker": page.next_marker,
                "total": page.total,
            }
        )
        return
    _table(
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


# -- blobs -----------------------------------------------------------------------------
def _blob_line(blob: glarelite.Blob) -> str:
    kind = f"external {blob.external_url}" if blob.external else "internal"
    return f"{blob.slot}: {_human_size(blob.size)} sha256:{blob.sha256} {blob.url} [{kind}]"


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
                )
        else:
            blob = cat.upload(
                artifact_id,
                slot,
                stream,
                sha256=sha256,
                content_type=content_type,
                progress=progress,
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
) -> None:
    """Register an external blob: fetch the URL once, record size and sha256."""
    st = state()
    cat = st.open()
    with st.progress_reporter() as progress:
        blob = cat.add_location(
            artifact_id, slot, url, sha256=sha256, content_type=content_type, progress=progress
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
            typer.echo(
                f"{target}: {_human_size(blob.size)} sha256:{blob.sha256} verified", err=True
            )
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
        _echo_json([r.to_dict() for r in results])
    else:
        if results:
            _table(
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
        _echo_json(report.to_dict())
        return
    typer.echo(
        f"abandoned uploads: {report.uploads_abandoned}, temporaries removed: "
        f"{report.temporaries_removed}, objects removed: {report.objects_removed}, "
        f"bytes freed: {report.bytes_freed}"
    )


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
        _echo_json([{**q.__dict__, "artifacts": n, "stored_bytes": b} for q, n, b in rows])
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


# -- mirror ----------------------------------------------------------------------------
DEST_OPTIONS_ENV = "GLARELITE_DEST_OPTIONS"


def _mirror_summary(report: Any) -> None:
    """A few lines on stderr: what the run did, then each failure or fault."""
    data = report.to_dict()
    if "faults" in data:  # a CheckReport
        typer.echo(
            f"checked {data['dest']}: generation {data['generation']}, "
            f"{data['artifacts']} artifacts, {data['files']} blob files, "
            f"{_human_size(data['bytes'])}: {data['status']}",
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
            f"({_human_size(data['bytes'])}), skipped {data['skipped']}, "
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
            report = mirror.sync(
                st.open(),
                dest,
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
                progress=progress,
            )
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


if __name__ == "__main__":  # python -m glarelite.cli
    app(prog_name="glarelite")
