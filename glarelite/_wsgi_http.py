"""HTTP plumbing of ``glarelite.wsgi``: hostile-input checks on the request (path, query,
bodies), Glare's error bodies, JSON responses and byte ranges. No catalog logic here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any, BinaryIO
from urllib.parse import parse_qsl

from . import errors

StartResponse = Callable[..., Any]
Environ = Mapping[str, Any]

MAX_PATH = 4096
MAX_QUERY = 64 * 1024
MAX_QUERY_FIELDS = 256
# JSON bodies nest this deep at most: a patch copies values recursively (deepcopy), so a
# deeper one was a RecursionError, i.e. a 500, instead of the client's 400.
MAX_JSON_DEPTH = 64
# A path segment: ids, type and field names and blob-dict keys all fit; the library checks
# each more strictly, this only keeps control bytes, separators and '..' out early.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,254}\Z")
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})\Z")


class HttpError(Exception):
    """An error answered as is: a status, Glare's body and extra headers."""

    def __init__(
        self, code: int, message: str, headers: Sequence[tuple[str, str]] = (), kind: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.headers = list(headers)
        self.kind = kind or HTTPStatus(code).phrase.replace(" ", "")


# glarelite error -> HTTP status, the most specific class first (Glare's fault map).
ERROR_STATUS: tuple[tuple[type[errors.GlareliteError], int], ...] = (
    (errors.NotFound, 404),
    (errors.InvalidInput, 400),  # RefusedLocation included: the URL given is refused
    (errors.Forbidden, 403),  # IllegalTransition, ReadOnly included
    (errors.LockedError, 423),
    (errors.Conflict, 409),
    (errors.TooLarge, 413),
    (errors.QuotaExceeded, 413),
    (errors.UpstreamChanged, 502),
    (errors.NetworkError, 502),
)


def status_for(exc: errors.GlareliteError, *, writing: bool) -> int:
    """The HTTP status Glare would answer. A checksum that does not match is the client's
    fault on a write (it gave the sha256) and the store's on a read."""
    for cls, code in ERROR_STATUS:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, errors.VerificationError) and writing:
        return 400
    return 500


def status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def error_body(code: int, message: str, kind: str) -> bytes:
    """Glare's fault body; glareclient reads ``error.message``."""
    status = HTTPStatus(code)
    body = {
        "code": code,
        "title": status.phrase,
        "explanation": status.description,
        "error": {"message": message, "type": kind},
    }
    return json.dumps(body).encode()


def respond_error(
    start_response: StartResponse,
    code: int,
    message: str,
    kind: str,
    headers: Sequence[tuple[str, str]] = (),
    close: bool = False,
) -> list[bytes]:
    body = error_body(code, message, kind)
    extra = [("Connection", "close")] if close else []
    start_response(
        status_line(code),
        [
            ("Content-Type", "application/json; charset=UTF-8"),
            ("Content-Length", str(len(body))),
            *headers,
            *extra,
        ],
    )
    return [body]


def respond_json(
    start_response: StartResponse,
    data: Any,
    *,
    code: int = 200,
    content_type: str = "application/json",
    head: bool = False,
) -> list[bytes]:
    body = json.dumps(data, ensure_ascii=False).encode()
    start_response(
        status_line(code),
        [("Content-Type", f"{content_type}; charset=UTF-8"), ("Content-Length", str(len(body)))],
    )
    return [] if head else [body]


def path_segments(environ: Environ) -> list[str]:
    """PATH_INFO split into checked segments; anything unsafe is a 404 (no such route)."""
    raw = environ.get("PATH_INFO", "") or "/"
    if not isinstance(raw, str) or len(raw) > MAX_PATH:
        raise HttpError(414 if isinstance(raw, str) else 400, "the request path is too long")
    try:  # PEP 3333: the path arrives as latin-1 text of the raw bytes
        path = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise HttpError(404, "the request path is not UTF-8") from None
    parts = path.split("/")
    if parts[0] != "":
        raise HttpError(404, f"no route {path!r}")
    parts = parts[1:]
    if parts and parts[-1] == "":
        parts.pop()  # one trailing slash is tolerated
    # /artifacts/{type}/{id}/{field}/{key}: everything after the field is a blob-dict key,
    # free text as Glare allows it (python-glareclient sends it unquoted, so a key with a
    # '/' arrives as several segments); it is checked as a key by the caller, not here.
    fixed = parts[:4] if parts[:1] == ["artifacts"] else parts
    for part in fixed:
        if not _SEGMENT.match(part):
            raise HttpError(404, f"no route {path!r}")
    if len(parts) > 4 and parts[:1] == ["artifacts"]:
        if any(part in ("", ".", "..") for part in parts[4:]):
            # HTTP clients remove dot segments; one that arrives was put there on purpose
            raise HttpError(404, f"no route {path!r}")
        key = "/".join(parts[4:])
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key):
            raise HttpError(404, f"no route {path!r}")
        return [*parts[:4], key]
    return parts


def query_pairs(environ: Environ) -> list[tuple[str, str]]:
    """The query string as (name, value) pairs in order, bounded in size and count."""
    text = environ.get("QUERY_STRING", "") or ""
    if len(text) > MAX_QUERY:
        raise HttpError(414, "the query string is too long")
    try:
        text = text.encode("latin-1").decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except ValueError:  # too many fields, bad percent-encoding or not UTF-8
        raise HttpError(400, "the query string is malformed or has too many fields") from None


def content_type(environ: Environ) -> str:
    """The media type of the request body, without parameters; 400 when missing."""
    value = environ.get("CONTENT_TYPE") or ""
    media = value.split(";", 1)[0].strip().lower()
    if not media:
        raise HttpError(400, "Content-Type must be specified.")
    return media


def content_length(environ: Environ) -> int | None:
    """The declared body length, None for a chunked body; 411 when there is neither."""
    value = environ.get("CONTENT_LENGTH") or ""
    if value == "":
        encoding = str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if "chunked" in encoding or environ.get("wsgi.input_terminated"):
            return None
        raise HttpError(411, "Content-Length or a chunked body is required")
    if not _is_length(value):
        raise HttpError(400, "Content-Length must be a non negative integer.")
    return int(value)


def _is_length(value: str) -> bool:
    # ASCII digits only: str.isdigit() also takes '²' (latin-1), which int() refuses
    return value.isascii() and value.isdigit() and len(value) <= 19


def body_chunks(environ: Environ, length: int | None, chunk_size: int) -> Iterator[bytes]:
    """The request body in chunks of at most ``chunk_size`` bytes, never more than
    declared. A body that ends before its Content-Length is an error, so a cut upload is
    never stored as a whole blob."""
    stream: BinaryIO = environ["wsgi.input"]
    if length is None:
        while True:
            data = stream.read(chunk_size)
            if not data:
                return
            yield data
    remaining = length
    while remaining > 0:
        data = stream.read(min(chunk_size, remaining))
        if not data:
            raise errors.InvalidInput(
                f"the request body ended after {length - remaining} of {length} bytes"
            )
        remaining -= len(data)
        yield data


def read_json(environ: Environ, limit: int) -> Any:
    """A JSON request body of at most ``limit`` bytes (413 beyond)."""
    length = content_length(environ)
    if length is not None and length > limit:
        raise HttpError(413, f"a JSON body may have at most {limit} bytes")
    data = bytearray()
    for chunk in body_chunks(environ, length, 64 * 1024):
        data += chunk
        if len(data) > limit:
            raise HttpError(413, f"a JSON body may have at most {limit} bytes")
    try:
        value = json.loads(bytes(data))
    except (ValueError, RecursionError):
        raise HttpError(400, "the request body is not valid JSON") from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise HttpError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """True when lists/objects in ``value`` nest deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return False


def sendable(text: str) -> bool:
    """Whether a server can send ``text`` as a header value as is (latin-1, no control
    characters). Stored values need not be: a content type given to the library, or
    any text of a mirror tree's record (hostile until proven: a CR LF in it would split
    the response), and one that cannot be sent fails start_response after the answer
    was chosen."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range -> (offset, length); None for no (or an ignorable) Range.
    Raises HttpError 416 when the range cannot be satisfied."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole blob is sent
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        length = min(int(last), size)
        if length == 0:
            raise unsatisfiable(size)
        return size - length, length
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable(size)
    return start, end - start + 1


def unsatisfiable(size: int) -> HttpError:
    return HttpError(
        416, "range not satisfiable", [("Content-Range", f"bytes */{size}")], "RangeNotSatisfiable"
    )


def content_range(wanted: tuple[int, int], size: int) -> str:
    return f"bytes {wanted[0]}-{wanted[0] + wanted[1] - 1}/{size}"


def held_back(reader: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """Stream a blob, one chunk behind the reader: the last chunk goes out only after the
    reader's end-of-file check (size and sha256) passed, so a blob that fails it reaches
    the client short of its Content-Length and is never taken as whole."""
    with reader:
        pending = reader.read(chunk_size)
        while pending:
            nxt = reader.read(chunk_size)
            yield pending
            pending = nxt


class BoundedInput:
    """``wsgi.input`` that never reads past the declared ``Content-Length`` (PEP 3333:
    some servers, wsgiref among them, hand over the connection itself, where a read past
    the body waits for bytes that never come). It counts what is left, so an error
    answer drains only the unread rest."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.read(want)
        self.remaining -= len(data)
        return data


def bound_input(environ: dict[str, Any]) -> None:
    """Put a :class:`BoundedInput` in place of ``wsgi.input`` when a length is declared."""
    value = environ.get("CONTENT_LENGTH") or ""
    stream = environ.get("wsgi.input")
    if stream is not None and isinstance(value, str) and _is_length(value):
        environ["wsgi.input"] = BoundedInput(stream, int(value))


def drain(environ: Environ, limit: int) -> bool:
    """Read and drop an unread request body of at most ``limit`` bytes so the connection
    can serve the next request; False when it is larger (the connection must close)."""
    value = environ.get("CONTENT_LENGTH") or ""
    if value == "":
        return not str(environ.get("HTTP_TRANSFER_ENCODING", ""))
    stream = environ.get("wsgi.input")
    if not _is_length(value) or not isinstance(stream, BoundedInput):
        return False
    if stream.remaining > limit:
        return False
    try:
        while stream.remaining > 0:
            if not stream.read(64 * 1024):
                return False  # the body ended early: the connection is broken
    except (errors.GlareliteError, OSError):
        return False
    return True
