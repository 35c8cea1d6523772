"""Embedding glarelite: a small WSGI app that serves ``/artifacts/...`` from a catalog.

Standard library only (``wsgiref``); this is the worked example of docs/embedding.md.

    GET  /artifacts/{type}                      a page of artifacts (JSON; Glare query
                                                parameters: filters, sort, limit, marker)
    GET  /artifacts/{type}/{id}                 one artifact: the show view (JSON)
    GET  /artifacts/{type}/{id}/{field}[/{key}] a blob's bytes (HEAD too, single Range)

An internal blob is streamed from the catalog's storage. An external blob is answered
with ``302 Found`` to its external URL, as Glare did; clients that cannot reach the
internet (compute nodes without NAT) ask for ``?stream=1``, or the app is created with
``stream_external=True``, and the bytes are fetched, verified and streamed through.

Run it:  python demo/embed_app.py --catalog glarelite.db --port 8080 [--stream-external]
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from socketserver import ThreadingMixIn
from typing import Any, BinaryIO
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import glarelite

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

CHUNK = 1 << 20
# Query parameters that are not filters (everything else is a Glare filter: name=eq:x).
_PAGING = {"sort", "limit", "marker", "latest", "stream"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")

# glarelite error -> HTTP status. Most specific first.
STATUS: list[tuple[type[Exception], str]] = [
    (glarelite.NotFound, "404 Not Found"),
    (glarelite.RefusedLocation, "502 Bad Gateway"),
    (glarelite.InvalidInput, "400 Bad Request"),
    (glarelite.Forbidden, "403 Forbidden"),
    (glarelite.Conflict, "409 Conflict"),
    (glarelite.UpstreamChanged, "502 Bad Gateway"),
    (glarelite.VerificationError, "500 Internal Server Error"),
    (glarelite.NetworkError, "502 Bad Gateway"),
]


class HttpError(Exception):
    def __init__(
        self,
        status: str,
        message: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


Readable = glarelite.Catalog | glarelite.MirrorCatalog


def make_app(catalog: Readable, *, stream_external: bool = False) -> WSGIApp:
    """A WSGI application serving ``catalog`` under ``/artifacts``.

    ``stream_external``: stream external blobs through instead of redirecting (for
    clients without a route to the internet); per request, ``?stream=1`` does the same.
    A mirror (``glarelite.open_mirror``) holds every blob's bytes, so it always streams.
    """
    stream_external = stream_external or isinstance(catalog, glarelite.MirrorCatalog)

    def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method not in ("GET", "HEAD"):
                raise HttpError("405 Method Not Allowed", "read-only", [("Allow", "GET, HEAD")])
            path = environ.get("PATH_INFO", "")
            query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            parts = [p for p in path.split("/") if p]
            if len(parts) < 2 or parts[0] != "artifacts" or len(parts) > 5:
                raise HttpError("404 Not Found", f"no route {path}")
            if len(parts) == 2:
                return _json(start_response, method, _list(catalog, parts[1], query))
            artifact = catalog.get(parts[2])
            if artifact.type_name != parts[1]:
                raise glarelite.NotFound(f"no artifact {parts[2]} of type {parts[1]}")
            if len(parts) == 3:
                return _json(start_response, method, artifact.to_dict())
            # a key segment is the key's encoding, as in a mirror tree: one URL, both places
            slot = "/".join([parts[3], *(glarelite.decode_key(k) for k in parts[4:])])
            stream = stream_external or dict(query).get("stream", "") in ("1", "true", "yes")
            return _blob(catalog, artifact, slot, environ, start_response, stream)
        except HttpError as exc:
            return _error(start_response, exc.status, str(exc), exc.headers)
        except glarelite.GlareliteError as exc:
            for cls, status in STATUS:
                if isinstance(exc, cls):
                    return _error(start_response, status, str(exc))
            return _error(start_response, "500 Internal Server Error", str(exc))

    return application


def _list(catalog: Readable, type_name: str, query: list[tuple[str, str]]) -> Any:
    options = dict(query)
    filters = [(k, v) for k, v in query if k not in _PAGING]
    limit = options.get("limit")
    if limit is not None and not limit.lstrip("-").isdigit():
        raise glarelite.InvalidInput(f"limit must be an integer, not {limit!r}")
    page = catalog.list(
        type_name,
        filters=filters,
        sort=options.get("sort") or None,
        limit=int(limit) if limit is not None else None,
        marker=options.get("marker") or None,
        latest=options.get("latest", "") in ("1", "true", "yes"),
    )
    return {
        "artifacts": [a.to_dict() for a in page.items],
        "next_marker": page.next_marker,
        "total": page.total,
    }


def _json(start_response: StartResponse, method: str, data: Any) -> list[bytes]:
    body = json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n"
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [] if method == "HEAD" else [body]


def _error(
    start_response: StartResponse,
    status: str,
    message: str,
    headers: Sequence[tuple[str, str]] = (),
) -> list[bytes]:
    body = json.dumps({"error": message}).encode() + b"\n"
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers],
    )
    return [body]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range -> (offset, length); None for no (or an ignorable) Range.

    Raises HttpError 416 when the range cannot be satisfied."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multiple ranges or another unit: ignore, send the whole blob
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = min(int(last), size)
        if length == 0:
            raise _unsatisfiable(size)
        return size - length, length
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return start, end - start + 1


def _unsatisfiable(size: int) -> HttpError:
    return HttpError(
        "416 Range Not Satisfiable", "range not satisfiable", [("Content-Range", f"bytes */{size}")]
    )


def _blob(
    catalog: Readable,
    artifact: glarelite.Artifact,
    slot: str,
    environ: Environ,
    start_response: StartResponse,
    stream_external: bool,
) -> Iterable[bytes]:
    blob = artifact.blob(slot)
    if blob is None:
        raise glarelite.NotFound(f"artifact {artifact.id} has no blob {slot}")
    if blob.status != "active":
        raise glarelite.Conflict(f"blob {slot} is still being written")
    if blob.external and not stream_external:
        start_response(
            "302 Found",
            [("Location", catalog.blob_url(artifact.id, slot)), ("Content-Length", "0")],
        )
        return []
    size = blob.size or 0
    headers = [
        ("Content-Type", blob.content_type),
        ("Accept-Ranges", "bytes"),
        ("ETag", f'"{blob.sha256}"'),
        ("Digest", f"sha-256={blob.sha256}"),  # hex here; clients compare with the show view
    ]
    wanted = parse_range(environ.get("HTTP_RANGE"), size)
    if_range = environ.get("HTTP_IF_RANGE")
    if wanted is not None and if_range and if_range != f'"{blob.sha256}"':
        wanted = None  # the client's copy is of other bytes: send the whole blob
    if environ.get("REQUEST_METHOD") == "HEAD":
        length = wanted[1] if wanted else size
        status = "206 Partial Content" if wanted else "200 OK"
        if wanted:
            headers.append(("Content-Range", _content_range(wanted, size)))
        start_response(status, [*headers, ("Content-Length", str(length))])
        return []
    if wanted is None:
        reader = catalog.open_blob(artifact.id, slot)  # verified when read to the end
        start_response("200 OK", [*headers, ("Content-Length", str(size))])
    else:
        reader = catalog.open_blob(artifact.id, slot, offset=wanted[0], length=wanted[1])
        headers.append(("Content-Range", _content_range(wanted, size)))
        start_response("206 Partial Content", [*headers, ("Content-Length", str(wanted[1]))])
    return _chunks(reader)


def _content_range(wanted: tuple[int, int], size: int) -> str:
    return f"bytes {wanted[0]}-{wanted[0] + wanted[1] - 1}/{size}"


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    """Stream a blob; a mismatch found at the end raises, and the server drops the
    connection before the response is complete, so a client never takes it as whole."""
    with reader:
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                return
            yield chunk


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
    parser = argparse.ArgumentParser(description="Serve a glarelite catalog over HTTP.")
    parser.add_argument("--catalog", default="glarelite.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--stream-external",
        action="store_true",
        help="stream external blobs instead of redirecting to them",
    )
    args = parser.parse_args(argv)
    with glarelite.open(args.catalog, create=False) as catalog:
        app = make_app(catalog, stream_external=args.stream_external)
        server = make_server(args.host, args.port, app, ThreadingWSGIServer)
        print(f"serving {args.catalog} on http://{args.host}:{server.server_port}/artifacts/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
