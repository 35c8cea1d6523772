"""The ``serve`` command: Glare's v1 API (``glarelite.wsgi``) on cheroot.

cheroot (the CherryPy project's server, maintained): a pool of worker threads, a request
body handed to the application as it arrives (a multi-GB upload is streamed, neither
buffered in memory nor spooled to a temporary file first, as waitress would do), chunked
request bodies, and ``stop()`` that stops accepting and lets running requests finish
(bounded by a timeout): what SIGTERM calls here.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

import glarelite
from glarelite import errors

from ._app import EXIT_ERROR, app, handled, state

DEFAULT_PORT = 9494  # Glare's
SHUTDOWN_TIMEOUT = 30.0  # seconds running requests get to finish after SIGTERM


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cheroot() -> Any:
    try:
        from cheroot import server, wsgi
    except ImportError:
        typer.echo(
            "glarelite: error: serve needs the cheroot WSGI server — "
            "install it with: pip install 'glarelite[serve]'",
            err=True,
        )
        raise typer.Exit(EXIT_ERROR) from None

    class Request(server.HTTPRequest):
        """Honours ``Connection: close`` from the application: it sets it when a refused
        request's body was left unread, which cheroot would otherwise read whole."""

        def send_headers(self) -> None:
            for key, value in self.outheaders:
                if key.lower() == b"connection" and value.lower() == b"close":
                    self.close_connection = True
            super().send_headers()

    class Connection(server.HTTPConnection):
        RequestHandlerClass = Request

    return wsgi, Connection


@app.command("serve")
@handled
def serve_cmd(
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, metavar="PORT", help="Port to listen on (0: any free)."),
    ] = DEFAULT_PORT,
    token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help=(
                "Tokens (X-Auth-Token) and who they act as: 'TOKEN OWNER' or "
                "'TOKEN OWNER admin' per line. Without it, every request acts as admin "
                "and only a loopback HOST is allowed."
            ),
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            metavar="PATH_OR_URL",
            help="Serve a mirror tree (a folder or an http(s) URL) read-only, not --catalog.",
        ),
    ] = None,
    stream_external: Annotated[
        bool,
        typer.Option(
            "--stream-external",
            help="Stream external blobs through instead of redirecting (clients without NAT).",
        ),
    ] = False,
    threads: Annotated[int, typer.Option(min=1, max=512, metavar="N", help="Worker threads.")] = 16,
) -> None:
    """Serve Glare's v1 REST API (python-glareclient's `glare` works against it)."""
    from glarelite import wsgi as api  # here: every other command starts without it

    auth: Any
    if token_file is None:
        if not _is_loopback(host):
            raise errors.InvalidInput(
                f"without --token-file every request acts as admin: listen on loopback "
                f"(127.0.0.1, ::1), not {host}"
            )
        auth = api.admin_auth
        who = "no --token-file: every request acts as admin (loopback only)"
    else:
        auth = api.TokenAuth.from_file(token_file)
        who = f"tokens from {token_file}"
    wsgi, connection_class = _cheroot()
    settings = api.WsgiSettings(stream_external=stream_external)
    logging.basicConfig(format="glarelite serve: %(levelname)s %(message)s")
    if mirror is not None:
        with glarelite.open_mirror(mirror) as tree:
            app_ = api.make_app(tree, auth=auth, settings=settings)
            _run(wsgi, connection_class, app_, host, port, threads, f"mirror {mirror}", who)
    else:
        catalog = state().open()
        app_ = api.make_app(catalog, auth=auth, settings=settings)
        _run(wsgi, connection_class, app_, host, port, threads, str(catalog.path), who)


def _run(
    wsgi: Any,
    connection_class: Any,
    application: Any,
    host: str,
    port: int,
    threads: int,
    what: str,
    who: str,
) -> None:
    server = wsgi.Server((host, port), application, numthreads=threads, server_name="glarelite")
    server.ConnectionClass = connection_class
    server.shutdown_timeout = SHUTDOWN_TIMEOUT
    try:
        server.prepare()
    except OSError as exc:
        raise errors.GlareliteError(f"cannot listen on {host}:{port}: {exc}") from None
    bound_host, bound_port = server.bind_addr[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    typer.echo(f"glarelite: serving {what} on http://{shown}:{bound_port}/ ({who})", err=True)
    stopper: list[threading.Thread] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopper:  # stop in a thread: stop() waits for running requests
            stopper.append(threading.Thread(target=server.stop, name="glarelite-stop"))
            stopper[0].start()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopper:
            stopper[0].join()
        else:
            server.stop()
    typer.echo("glarelite: server stopped", err=True)
