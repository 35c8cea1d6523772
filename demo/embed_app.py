"""Embedding glarelite: an application that mounts Glare's REST API (``glarelite.wsgi``)
under ``/glare`` beside its own routes. The worked example of docs/embedding.md.

    GET /                   the application's own page
    /glare/...              Glare's v1 API over the catalog: python-glareclient works with
                            ``glare --os-glare-url http://HOST:PORT/glare ...``

Run it:  python demo/embed_app.py --catalog glarelite.db [--port 8080] [--token-file F]
         [--stream-external]

The example serves with the standard library's threaded server to stay dependency-free;
in production put the application on a real WSGI server (``glarelite serve`` uses
cheroot) or call ``make_app`` from your own framework's mount point.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import glarelite
from glarelite import wsgi

PREFIX = "/glare"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_app(
    catalog: glarelite.Catalog | glarelite.MirrorCatalog,
    *,
    auth: wsgi.Auth = wsgi.admin_auth,
    stream_external: bool = False,
) -> WSGIApp:
    """The application: its own page at ``/``, Glare's API mounted at ``/glare``."""
    glare = wsgi.make_app(
        catalog, auth=auth, settings=wsgi.WsgiSettings(stream_external=stream_external)
    )

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            # Mounting, as PEP 3333 means it: the prefix moves from PATH_INFO to SCRIPT_NAME.
            mounted = dict(environ)
            mounted["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + PREFIX
            mounted["PATH_INFO"] = path[len(PREFIX) :] or "/"
            return glare(mounted, start_response)
        if path == "/":
            body = b"my application; artifacts under /glare (Glare v1 API)\n"
            start_response(
                "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return []

    return application


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_in_thread(
    app: WSGIApp, host: str = "127.0.0.1", port: int = 0
) -> tuple[ThreadingWSGIServer, threading.Thread]:
    """Start ``app`` on ``host:port`` (0: any free port) in a daemon thread."""
    server = make_server(host, port, app, ThreadingWSGIServer, QuietHandler)
    assert isinstance(server, ThreadingWSGIServer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An application that mounts glarelite.")
    parser.add_argument("--catalog", default="glarelite.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token-file", help="X-Auth-Token table (else: admin, loopback)")
    parser.add_argument(
        "--stream-external",
        action="store_true",
        help="stream external blobs instead of redirecting to them",
    )
    args = parser.parse_args(argv)
    if not args.token_file and args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("without --token-file every request acts as admin: listen on loopback")
    auth = wsgi.TokenAuth.from_file(args.token_file) if args.token_file else wsgi.admin_auth
    with glarelite.open(args.catalog, create=False) as catalog:
        app = make_app(catalog, auth=auth, stream_external=args.stream_external)
        server = make_server(args.host, args.port, app, ThreadingWSGIServer)
        print(f"serving on http://{args.host}:{server.server_port}{PREFIX}/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
