"""Glare's v1 REST API over a catalog, as a WSGI application (PEP 3333, no framework).

``make_app(catalog)`` answers what python-glareclient (the ``glare`` CLI and its Python
client) sends, so an application that embeds glarelite can mount it, and a mirror tree
(``glarelite.open_mirror``) can be served read-only at an offline site::

    GET    /                                   version discovery (also /versions)
    GET    /schemas, /schemas/{type}           type schemas with Glare's annotations
    GET    /artifacts/{type}                   list: filters, sort, limit, marker, next/first
    POST   /artifacts/{type}                   create (JSON)
    GET    /artifacts/{type}/{id}              show
    PATCH  /artifacts/{type}/{id}              update (application/json-patch+json)
    DELETE /artifacts/{type}/{id}              delete
    PUT    /artifacts/{type}/{id}/{blob}[/{key}]  upload (streamed) or, with Glare's
                                               custom-location type, add an external blob
    GET    /artifacts/{type}/{id}/{blob}[/{key}]  download (Range, HEAD); an external blob
                                               redirects (301) unless streamed
    DELETE /artifacts/{type}/{id}/{blob}[/{key}]  remove a blob

Who is asking is decided by ``auth``: a callable from the WSGI environ to a
:class:`~glarelite.Scope` (None: 401). :class:`TokenAuth` maps ``X-Auth-Token`` values
to owners or admin; :func:`admin_auth` treats every request as admin (loopback only).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from . import _wsgi_glare as glare
from . import _wsgi_http as http
from ._names import check_key, decode_key, split_slot
from .catalog import Catalog
from .errors import GlareliteError, InvalidInput, NotFound, ReadOnly
from .mirror_reader import MirrorCatalog
from .models import Artifact
from .policy import Scope
from .types import ArtifactType

__all__ = [
    "CUSTOM_LOCATION",
    "Auth",
    "TokenAuth",
    "WsgiSettings",
    "admin_auth",
    "make_app",
]

LOG = logging.getLogger("glarelite.wsgi")

CUSTOM_LOCATION = "application/vnd+openstack.glare-custom-location+json"
JSON_PATCH = "application/json-patch+json"
API_VERSION = "1.1"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Auth = Callable[[Mapping[str, Any]], "Scope | None"]
Readable = Catalog | MirrorCatalog

_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_TOKEN_FILE_MAX = 1 << 20
_OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class WsgiSettings:
    """Options of the application.

    ``stream_external``: stream external blobs through (fetched and verified by the
    catalog) instead of redirecting to them, for clients with no route to the internet;
    per request ``?stream=1`` does the same. A mirror always streams. ``max_json_body``:
    bytes a JSON request body may have. ``chunk_size``: bytes read or sent at a time.
    ``drain_limit``: an unread request body up to this size is read and dropped after
    an error, so the connection stays usable; a larger one closes it.
    """

    stream_external: bool = False
    max_json_body: int = 1 << 20
    chunk_size: int = 1 << 20
    drain_limit: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_json_body", "chunk_size", "drain_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer, not {value!r}")


def admin_auth(environ: Mapping[str, Any]) -> Scope:
    """Every request acts as admin: only for a server that listens on loopback."""
    return Scope()


class TokenAuth:
    """``X-Auth-Token`` -> scope, from a table of tokens.

    A token file has one token a line: ``TOKEN OWNER`` acts as that owner, ``TOKEN OWNER
    admin`` as admin (new artifacts belong to OWNER); blank lines and ``#`` comments are
    skipped. Tokens are kept as sha256 digests and compared in constant time."""

    def __init__(self, tokens: Mapping[str, Scope]) -> None:
        self._digests: dict[bytes, Scope] = {}
        for token, scope in tokens.items():
            if not isinstance(token, str) or not token or not token.isprintable():
                raise InvalidInput("a token must be a non-empty printable string")
            if not isinstance(scope, Scope):
                raise InvalidInput(f"a token's scope must be a glarelite.Scope, not {scope!r}")
            self._digests[_digest(token)] = scope

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TokenAuth:
        file = Path(path)
        try:
            with file.open("rb") as handle:
                raw = handle.read(_TOKEN_FILE_MAX + 1)
        except OSError as exc:
            raise NotFound(f"cannot read the token file {file}: {exc.strerror or exc}") from None
        if len(raw) > _TOKEN_FILE_MAX:
            raise InvalidInput(f"the token file {file} is larger than {_TOKEN_FILE_MAX} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"the token file {file} is not UTF-8") from None
        tokens: dict[str, Scope] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) not in (2, 3) or (len(words) == 3 and words[2] != "admin"):
                raise InvalidInput(
                    f"{file}:{number}: expected 'TOKEN OWNER' or 'TOKEN OWNER admin'"
                )
            if words[0] in tokens:
                raise InvalidInput(f"{file}:{number}: this token is listed twice")
            owner = Scope.of(words[1]).owner  # validates the owner name
            tokens[words[0]] = Scope(owner, admin=True) if len(words) == 3 else Scope.of(owner)
        if not tokens:
            raise InvalidInput(f"the token file {file} lists no token")
        return cls(tokens)

    def __call__(self, environ: Mapping[str, Any]) -> Scope | None:
        token = environ.get("HTTP_X_AUTH_TOKEN")
        if not isinstance(token, str) or not token or len(token) > 4096:
            return None
        wanted = _digest(token)
        found = None
        for digest, scope in self._digests.items():  # no early exit: constant time
            if hmac.compare_digest(digest, wanted):
                found = scope
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def make_app(
    catalog: Catalog | MirrorCatalog,
    *,
    auth: Auth = admin_auth,
    settings: WsgiSettings | None = None,
) -> WSGIApp:
    """A WSGI application speaking Glare's v1 API over ``catalog`` (a ``Catalog``, whose
    scoped views follow ``auth``, or a read-only ``MirrorCatalog``)."""
    return _GlareApp(catalog, auth, settings or WsgiSettings())


class _GlareApp:
    def __init__(self, catalog: Readable, auth: Auth, settings: WsgiSettings) -> None:
        self.catalog = catalog
        self.auth = auth
        self.settings = settings
        self.read_only = isinstance(catalog, MirrorCatalog)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        writing = method in _WRITES
        try:
            http.bound_input(environ)
            return self._route(environ, start_response, method)
        except http.HttpError as exc:
            return self._error(environ, start_response, exc.code, str(exc), exc.kind, exc.headers)
        except GlareliteError as exc:
            code = http.status_for(exc, writing=writing)
            if code >= 500 and code != 502:
                LOG.error("%s %s: %s", method, environ.get("PATH_INFO"), exc)
            return self._error(environ, start_response, code, str(exc), type(exc).__name__)
        except Exception:
            LOG.exception("%s %s failed", method, environ.get("PATH_INFO"))
            return self._error(
                environ, start_response, 500, "The server has an internal error.", "InternalError"
            )

    def _error(
        self,
        environ: Mapping[str, Any],
        start_response: StartResponse,
        code: int,
        message: str,
        kind: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        keep = http.drain(environ, self.settings.drain_limit)
        return http.respond_error(start_response, code, message, kind, headers or [], not keep)

    # -- routing -------------------------------------------------------------------
    def _route(
        self, environ: dict[str, Any], start_response: StartResponse, method: str
    ) -> Iterable[bytes]:
        parts = http.path_segments(environ)
        if not parts or parts == ["versions"]:
            self._allow(method, "GET, HEAD")
            return http.respond_json(start_response, self._versions(environ), head=method == "HEAD")
        scope = self.auth(environ)
        if scope is None:
            raise http.HttpError(
                401,
                "Authentication required: send a valid X-Auth-Token.",
                [("WWW-Authenticate", 'Token realm="glarelite"')],
            )
        if method in _WRITES and self.read_only:
            raise ReadOnly(
                "this server serves a read-only mirror tree: artifacts and blobs are changed "
                "in the catalog it mirrors"
            )
        cat = self._view(scope)
        head = method == "HEAD"
        if parts[0] == "schemas" and len(parts) <= 2:
            self._allow(method, "GET, HEAD")
            if len(parts) == 1:
                body = {"schemas": {t.name: glare.type_schema(t) for t in cat.types()}}
            else:
                atype = cat.get_type(parts[1])
                body = {"schemas": {atype.name: glare.type_schema(atype)}}
            return http.respond_json(
                start_response, body, content_type="application/schema+json", head=head
            )
        if parts[0] != "artifacts" or not 2 <= len(parts) <= 5:
            raise http.HttpError(404, f"no route /{'/'.join(parts)}")
        atype = cat.get_type(parts[1])
        if len(parts) == 2:
            self._allow(method, "GET, HEAD, POST")
            if method == "POST":
                return self._create(environ, start_response, cast(Catalog, cat), atype)
            return http.respond_json(start_response, self._list(environ, cat, atype), head=head)
        artifact = _artifact(cat, atype, parts[2])
        if len(parts) == 3:
            self._allow(method, "GET, HEAD, PATCH, DELETE")
            if method == "PATCH":
                return self._patch(environ, start_response, cast(Catalog, cat), atype, artifact)
            if method == "DELETE":
                cast(Catalog, cat).delete(artifact.id)
                start_response("204 No Content", [("Content-Length", "0")])
                return []
            return http.respond_json(
                start_response, glare.artifact_view(artifact, atype), head=head
            )
        slot = parts[3] if len(parts) == 4 else f"{parts[3]}/{_request_key(parts[4])}"
        field, _key = split_slot(slot)
        if not atype.is_blob_slot(field):
            raise NotFound(f"type {atype.name!r} has no blob field {field!r}")
        self._allow(method, "GET, HEAD, PUT, DELETE")
        if method == "PUT":
            return self._put_blob(
                environ, start_response, cast(Catalog, cat), atype, artifact, slot
            )
        if method == "DELETE":
            writer = cast(Catalog, cat)
            writer.remove_blob(artifact.id, slot)
            return http.respond_json(
                start_response, glare.artifact_view(writer.get(artifact.id), atype)
            )
        return self._get_blob(environ, start_response, cat, artifact, slot)

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method not in [m.strip() for m in allowed.split(",")]:
            raise http.HttpError(
                405, f"The method {method} is not allowed here.", [("Allow", allowed)]
            )

    def _view(self, scope: Scope) -> Readable:
        if isinstance(self.catalog, MirrorCatalog):
            return self.catalog  # a tree holds what its catalog published: no scopes
        if scope.admin:
            return self.catalog.scoped(scope.owner, admin=True)
        return self.catalog.scoped(scope.owner)

    @staticmethod
    def _versions(environ: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "versions": [
                {
                    "id": f"v{API_VERSION}",
                    "links": [{"rel": "self", "href": _base_url(environ) + "/"}],
                    "status": "STABLE",
                    "min_version": "1.0",
                    "version": API_VERSION,
                }
            ]
        }

    # -- artifacts -----------------------------------------------------------------
    def _list(
        self, environ: Mapping[str, Any], cat: Readable, atype: ArtifactType
    ) -> dict[str, Any]:
        pairs = http.query_pairs(environ)
        filters: list[tuple[str, str]] = []
        options: dict[str, str] = {}
        latest = False
        for name, value in pairs:
            if name in ("marker", "limit", "sort", "stream"):
                options[name] = value
            elif name == "version" and value == "latest":
                latest = True
            else:
                filters.append((name, value))
        limit_text = options.get("limit")
        limit = None
        if limit_text is not None:
            try:
                limit = int(limit_text)
            except ValueError:
                raise InvalidInput("Limit param must be an integer.") from None
            if limit < 0:
                raise InvalidInput("Limit param must be positive.")
        page = cat.list(
            atype.name,
            filters=filters,
            sort=options.get("sort") or None,
            limit=limit,
            marker=options.get("marker") or None,
            latest=latest,
        )
        base = f"/artifacts/{atype.name}"
        kept = [(k, v) for k, v in pairs if k != "marker"]
        body: dict[str, Any] = {
            "type_name": atype.name,
            "artifacts": [glare.artifact_view(a, atype) for a in page.items],
            "first": f"{base}?{urlencode(kept)}" if kept else base,
            "schema": f"/schemas/{atype.name}",
        }
        if page.next_marker is not None:
            body["next"] = f"{base}?{urlencode([*kept, ('marker', page.next_marker)])}"
        return body

    def _create(
        self,
        environ: Mapping[str, Any],
        start_response: StartResponse,
        cat: Catalog,
        atype: ArtifactType,
    ) -> list[bytes]:
        _expect_type(environ, ("application/json",))
        values = http.read_json(environ, self.settings.max_json_body)
        created = cat.create(atype.name, **glare.create_arguments(atype, values))
        return http.respond_json(start_response, glare.artifact_view(created, atype), code=201)

    def _patch(
        self,
        environ: Mapping[str, Any],
        start_response: StartResponse,
        cat: Catalog,
        atype: ArtifactType,
        artifact: Artifact,
    ) -> list[bytes]:
        _expect_type(environ, (JSON_PATCH,))
        patch = http.read_json(environ, self.settings.max_json_body)
        before = glare.artifact_view(artifact, atype)
        after = glare.apply_patch(before, patch)
        glare.apply_changes(cat, atype, before, after)
        return http.respond_json(start_response, glare.artifact_view(cat.get(artifact.id), atype))

    # -- blobs ---------------------------------------------------------------------
    def _put_blob(
        self,
        environ: Mapping[str, Any],
        start_response: StartResponse,
        cat: Catalog,
        atype: ArtifactType,
        artifact: Artifact,
        slot: str,
    ) -> list[bytes]:
        media = http.content_type(environ)
        if media == CUSTOM_LOCATION:
            data = http.read_json(environ, self.settings.max_json_body)
            url, sha256 = _location(data)
            cat.add_location(artifact.id, slot, url, sha256=sha256)
        else:
            length = http.content_length(environ)
            chunks = http.body_chunks(environ, length, self.settings.chunk_size)
            cat.upload(
                artifact.id,
                slot,
                chunks,
                content_type=environ.get("CONTENT_TYPE") or media,
                size=length,
                algorithms=("md5", "sha1"),  # Glare's client checks Content-MD5
            )
        return http.respond_json(start_response, glare.artifact_view(cat.get(artifact.id), atype))

    def _get_blob(
        self,
        environ: Mapping[str, Any],
        start_response: StartResponse,
        cat: Readable,
        artifact: Artifact,
        slot: str,
    ) -> Iterable[bytes]:
        blob = artifact.blob(slot)
        if blob is None:
            raise NotFound(f"artifact {artifact.id} has no blob {slot}")
        if blob.status != "active":
            raise http.HttpError(409, f"blob {slot} is still being written", kind="Conflict")
        if environ.get("REQUEST_METHOD") == "HEAD":
            # HEAD opens nothing: ask the download rule as GET's open_blob would
            cat.blob_url(artifact.id, slot)
        media = blob.content_type
        headers = [("Content-Type", media if http.sendable(media) else _OCTETS)]
        for name, header in (("md5", "Content-MD5"), ("sha1", "X-Openstack-Glare-Content-SHA1")):
            digest = blob.checksums.get(name)
            if digest is not None and http.sendable(digest):  # a hostile tree's may not be
                headers.append((header, digest))
        if blob.sha256:
            headers.append(("X-Openstack-Glare-Content-SHA256", blob.sha256))
        query = dict(http.query_pairs(environ))
        stream = (
            self.read_only
            or self.settings.stream_external
            or query.get("stream", "") in ("1", "true", "yes")
        )
        if blob.external and not stream:
            location = cat.blob_url(artifact.id, slot)
            start_response(
                "301 Moved Permanently",
                [*headers, ("Location", location), ("Content-Length", "0")],
            )
            return []
        size = blob.size or 0
        headers += [("Accept-Ranges", "bytes"), ("ETag", f'"{blob.sha256}"')]
        wanted = http.parse_range(environ.get("HTTP_RANGE"), size)
        if_range = environ.get("HTTP_IF_RANGE")
        if wanted is not None and if_range and if_range != f'"{blob.sha256}"':
            wanted = None  # the client's copy is of other bytes: send the whole blob
        if wanted is None:
            status, length = "200 OK", size
        else:
            status, length = "206 Partial Content", wanted[1]
            headers.append(("Content-Range", http.content_range(wanted, size)))
        if environ.get("REQUEST_METHOD") == "HEAD":
            start_response(status, [*headers, ("Content-Length", str(length))])
            return []
        if wanted is None:
            reader = cat.open_blob(artifact.id, slot)  # verified when read to the end
        else:
            reader = cat.open_blob(artifact.id, slot, offset=wanted[0], length=wanted[1])
        start_response(status, [*headers, ("Content-Length", str(length))])
        return _Body(http.held_back(reader, self.settings.chunk_size), reader)


class _Body:
    """A response body that closes its blob reader even when the server stops early."""

    def __init__(self, chunks: Iterable[bytes], reader: Any) -> None:
        self._chunks = iter(chunks)
        self._reader = reader

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise
        except Exception:
            LOG.exception("a blob stream failed; the response is cut short")
            raise

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._reader.close()


def _request_key(text: str) -> str:
    """A blob-dict key as a request names it: its canonical encoding (what internal URLs
    carry, :func:`glarelite.encode_key`) when it is one, else the key itself, as
    python-glareclient sends it. Only a key holding ``%`` and hex digits can be read both
    ways; such a key is reached by its encoding."""
    try:
        return decode_key(text)
    except InvalidInput:
        return check_key(text)


def _artifact(cat: Readable, atype: ArtifactType, artifact_id: str) -> Artifact:
    artifact = cat.get(artifact_id)
    if artifact.type_name != atype.name:
        raise NotFound(f"no artifact {artifact_id} of type {atype.name}")
    return artifact


def _expect_type(environ: Mapping[str, Any], expected: tuple[str, ...]) -> None:
    media = http.content_type(environ)
    if media not in expected:
        raise http.HttpError(415, f"Invalid content type: {media}. Expected: {', '.join(expected)}")


def _location(data: Any) -> tuple[str, str | None]:
    """Glare's custom-location body -> (url, sha256). glarelite downloads the URL once and
    records its size and sha256 itself, so only a sha256 claim can be checked: an md5 or
    sha1 claim is refused rather than recorded unverified."""
    if not isinstance(data, dict):
        raise InvalidInput("the location body must be a JSON object")
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidInput(
            "url is required when specifying external location. "
            f"Cannot find 'url' in request body: {sorted(data)}"
        )
    location_type = data.get("location_type", "external")
    if location_type != "external":
        raise InvalidInput(f"Incorrect location type {location_type!r}: only 'external'")
    for name in ("md5", "sha1"):
        if data.get(name) is not None:
            raise InvalidInput(
                f"a {name} checksum cannot be verified here: give sha256 (the catalog "
                "downloads the URL once and checks it)"
            )
    sha256 = data.get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise InvalidInput("sha256 must be a hex string")
    return url, sha256


def _base_url(environ: Mapping[str, Any]) -> str:
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = environ.get("HTTP_HOST")
    if not isinstance(host, str) or not host or len(host) > 255 or not host.isprintable():
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return f"{scheme}://{host}{environ.get('SCRIPT_NAME', '')}"
