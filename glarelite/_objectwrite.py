"""Writers of one object on an object store: S3 multipart uploads with parts in flight
while the next is hashed, and fsspec's own files for the other stores. ``commit`` makes
the object appear whole; ``abort`` leaves nothing."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Protocol, cast

from ._hashing import CHUNK, BytesLike


class ObjectWriter(Protocol):
    """Bytes on their way to one object: ``commit`` makes it appear whole, ``abort`` leaves
    nothing (and never raises)."""

    def write(self, data: bytes, /) -> object: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class FsspecWriter:
    """A file fsspec opened for writing (memory://, object stores other than S3)."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.write = f.write

    def commit(self) -> None:
        self._f.close()

    def abort(self) -> None:
        # close() would upload what was buffered; discard() aborts a multipart upload.
        discard = getattr(self._f, "discard", None)
        if callable(discard):
            with contextlib.suppress(Exception):
                discard()
        with contextlib.suppress(Exception):
            self._f.close()


class S3Upload:
    """One S3 object uploaded in parts of ``part_size``, up to ``in_flight`` at once.

    ``write`` only keeps the bytes for the part being filled; a full part goes to a small
    thread pool (through s3fs's ``call_s3``) while the caller reads and hashes the next
    one, so memory is bounded by the parts in flight whatever the object's size. Part
    numbers are fixed in ``write``'s order, whatever order the uploads finish in. An
    object smaller than one part is a single ``put_object`` at ``commit``; a larger one
    appears only when ``commit`` completes the multipart upload. ``abort`` waits for the
    parts in flight, then aborts the multipart upload, so no part outlives it.
    """

    def __init__(self, fs: Any, path: str, part_size: int, in_flight: int) -> None:
        if part_size < 5 * CHUNK or in_flight < 1:
            raise ValueError("S3 parts are at least 5 MiB, and one at least must be in flight")
        self._fs = fs
        self._path = path
        bucket, key, _ = fs.split_path(path)
        self._where = {"Bucket": bucket, "Key": key}
        self._part_size = part_size
        self._in_flight_max = in_flight
        # Views of the (immutable) bytes written: joined once, when the part is sent.
        self._pieces: list[memoryview] = []
        self._filled = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future[dict[str, Any]]] = deque()
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1

    def write(self, data: BytesLike, /) -> None:
        if not isinstance(data, bytes):  # a view must not change under us
            data = bytes(data)
        view = memoryview(data)
        while view.nbytes:
            take = min(self._part_size - self._filled, view.nbytes)
            self._pieces.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled >= self._part_size:
                self._send_part()

    def _take_part(self) -> bytes:
        # bytes, not a bytearray: aiohttp would copy a bytearray once more, and s3fs's
        # retries send the same object again (a stream would be at its end by then).
        body = b"".join(self._pieces)
        self._pieces, self._filled = [], 0
        return body

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._call("create_multipart_upload")["UploadId"]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._in_flight_max, thread_name_prefix="glarelite-s3-part"
            )
        # A free slot first, then the part's bytes: one part less in memory meanwhile.
        while len(self._in_flight) >= self._in_flight_max:
            self._parts.append(self._in_flight.popleft().result())  # raises a part's error
        for future in self._in_flight:  # a later part that failed: stop now, not at the end
            if future.done() and future.exception() is not None:
                future.result()
        number, self._next_part = self._next_part, self._next_part + 1
        self._in_flight.append(self._pool.submit(self._upload_part, number, self._take_part()))

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        out = self._call("upload_part", UploadId=self._upload_id, PartNumber=number, Body=body)
        part: dict[str, Any] = {"PartNumber": number, "ETag": out["ETag"]}
        if "ChecksumSHA256" in out:  # as s3fs does: only present when asked for
            part["ChecksumSHA256"] = out["ChecksumSHA256"]
        return part

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._fs.call_s3(method, **self._where, **kwargs))

    def commit(self) -> None:
        if self._upload_id is None:
            self._call("put_object", Body=self._take_part())
        else:
            if self._filled:
                self._send_part()  # the last part may be short
            while self._in_flight:
                self._parts.append(self._in_flight.popleft().result())
            self._call(
                "complete_multipart_upload",
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=_part_number)},
            )
            self._upload_id = None
        self._shutdown()
        self._fs.invalidate_cache(self._path)

    def abort(self) -> None:
        self._pieces, self._filled = [], 0
        for future in self._in_flight:
            future.cancel()
        # A part still uploading when the upload is aborted could be stored after the
        # abort (S3 says so): wait for every part first, failed or not.
        while True:
            try:
                wait_futures(self._in_flight)
                break
            except BaseException:  # KeyboardInterrupt: the parts must still finish first
                continue
        self._in_flight.clear()
        self._shutdown()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(Exception):
                self._call("abort_multipart_upload", UploadId=upload_id)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _part_number(part: Mapping[str, Any]) -> int:
    return int(part["PartNumber"])
