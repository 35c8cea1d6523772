"""What every command shares: the typer apps, exit codes and the one-line errors,
the global options (the catalog, scope, storage options), completion, option types and
output helpers. The commands live in the sibling modules, one group each."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast

import typer

import glarelite
from glarelite import errors
from glarelite.progress import NULL_PROGRESS, Progress
from glarelite.settings import ALLOW_HOSTS_ENV, parse_allow_hosts

from ._format import human_size as human_size  # the command modules take it from here

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
EXIT_STORAGE = 9  # the disk under the catalog file is full or failing
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
    errors.SignatureError: EXIT_VERIFICATION,
    errors.NetworkError: EXIT_NETWORK,
    errors.RefusedLocation: EXIT_REFUSED,
    errors.TooLarge: EXIT_TOO_LARGE,
    errors.QuotaExceeded: EXIT_TOO_LARGE,
    errors.DestinationError: EXIT_ERROR,  # a tree that cannot be written, like a local file
    errors.StorageFull: EXIT_STORAGE,
    errors.AfterHookFailed: EXIT_ERROR,  # the change committed; an embedding's hook failed
    errors.JournalTrimmed: EXIT_ERROR,  # no command reads the journal yet
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
    errors.SignatureError: (
        "check the trusted keys (--trusted-key), and that the tree is the hub's latest"
    ),
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


# Library messages that name a Python argument, in the CLI's words. A clause that the
# CLI's own hint says better is dropped (so the advice is given once).
_API_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"; allow it with allow_hosts or \$\w+ if that is intended"), ""),
    (re.compile(r"allow it with allow_hosts or (\$\w+)"), r"allow it with --allow-host or \1"),
    (re.compile(r"\bpass force=True\b"), "pass --force"),
    (re.compile(r"\bforce=True\b"), "--force"),
    (re.compile(r"\bdelete with force\b"), "delete with --force"),
    (re.compile(r"\bmax_delete=(\d+)"), r"--max-delete \1"),
    (re.compile(r"\ballow_hosts\b"), "--allow-host"),
)
_HTTP_STATUS = re.compile(r": HTTP (\d{3})\b")


def cli_words(message: str) -> str:
    for pattern, replacement in _API_PHRASES:
        message = pattern.sub(replacement, message)
    return message


def _hint_for(exc: BaseException) -> str | None:
    """What to do next, for this situation (the message decides, not only the class)."""
    message = str(exc)
    if hasattr(exc, "cli_hint"):  # raised by the CLI itself, for one situation
        return cast("str | None", exc.cli_hint)
    if isinstance(exc, errors.NotFound) and message.startswith("no catalog at"):
        return None  # the message says how to create or name one
    if isinstance(exc, errors.RefusedLocation):
        if message.startswith("scheme "):
            return "register an http:// or https:// URL"
        if "redirect" in message:
            return "register the final URL, or ask its server to redirect less"
        if "address" in message:
            return "admit the host with glarelite init --allow-host HOST or $GLARELITE_ALLOW_HOSTS"
        return "check the URL"
    if isinstance(exc, errors.NetworkError):
        status = _HTTP_STATUS.search(message)
        if status and status.group(1) == "404":
            return "the server has no such file: check the URL"
        if status and status.group(1).startswith("4") and status.group(1) != "429":
            return "the server refused the request: check the URL and its access rights"
        if "certificate" in message:
            return "check the server's TLS certificate"
    if isinstance(exc, errors.LockedError):
        if "remove " in message:  # an object-store tree: the message names the lock object
            return None
        return "wait for that run to end (a killed run's lock is released with it)"
    for cls in type(exc).__mro__:
        if cls in _HINTS:
            return _HINTS[cls]
    return None


def error_line(exc: BaseException) -> str:
    """The one line printed for ``exc``: what was wrong, then what to do."""
    message = cli_words(" ".join(str(exc).split())) or type(exc).__name__
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
    allow_hosts: tuple[str, ...] = ()  # from $GLARELITE_ALLOW_HOSTS: the library reads no env
    _catalog: glarelite.Catalog | None = None

    def settings(self) -> glarelite.CatalogSettings:
        http = glarelite.HttpSettings(allow_hosts=self.allow_hosts)
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
            with not_a_catalog(self.catalog_path):
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
        from ._progress import RichProgress

        with RichProgress(item_keys=item_keys) as bars:
            yield bars


def cli_error(exc: errors.GlareliteError, hint: str | None) -> errors.GlareliteError:
    """``exc`` with the hint the CLI prints for it (None: the message says it all)."""
    exc.cli_hint = hint  # type: ignore[attr-defined]
    return exc


@contextlib.contextmanager
def not_a_catalog(path: Path) -> Iterator[None]:
    """A file that is not an SQLite database is a user's mistake, not an internal error."""
    import sqlite3

    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise cli_error(
            errors.InvalidInput(f"{path} is not a glarelite catalog ({exc})"),
            f"name the catalog file with --catalog or ${CATALOG_ENV}",
        ) from exc


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


def _traceback(st: State) -> None:
    """--debug: the traceback first; the line and the exit code stay the same."""
    if st.debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


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
            _traceback(st)
            typer.echo("glarelite: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except errors.GlareliteError as exc:
            _traceback(st)
            _fail(exc)
        except OSError as exc:
            _traceback(st)
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            typer.echo(f"glarelite: error: {what}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:
            _traceback(st)
            told = _input_error(exc)
            if told is not None:
                _fail(told)
            typer.echo(
                f"glarelite: internal error: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())} — rerun with --debug for the traceback",
                err=True,
            )
            raise typer.Exit(EXIT_ERROR) from None

    return cast(F, wrapper)


def _input_error(exc: Exception) -> errors.GlareliteError | None:
    """An error of a storage library that means the user's input is missing something
    (credentials for s3://), as the usage error it is; None for anything else."""
    try:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError
    except ImportError:  # no S3 extra: then no botocore error either
        return None
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return errors.InvalidInput(
            f"no usable credentials for s3:// ({exc}): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or give key= and secret= with "
            "--storage-option / --dest-option"
        )
    return None


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


def json_or_text(value: str) -> Any:
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
        target[leaf] = json_or_text(text)
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
        allow_hosts=parse_allow_hosts(os.environ.get(ALLOW_HOSTS_ENV)),
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


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in (header, *rows):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
