"""gc against an upload that starts while it runs: the upload's temporary survives.

gc reads the live uploads and lists the store's temporaries; an upload that begins
between the two steps must not lose its temporary (it failed with a misleading NotFound,
issue 13 #10). The pause is injected where gc lists the temporaries: the upload starts
just before the listing, or just after it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import glarelite
from glarelite._store import BlobStore

BLOCK = b"race" * 16384


class _Upload:
    """An upload in a thread of its own (its own catalog handle), paused after one chunk."""

    def __init__(self, path: Path, artifact_id: str) -> None:
        self.streaming = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self._path = path
        self._artifact_id = artifact_id
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _chunks(self) -> Iterator[bytes]:
        yield BLOCK
        self.streaming.set()  # asked for a second chunk: the first is in the temporary
        assert self.release.wait(30)
        yield BLOCK

    def _run(self) -> None:
        try:
            with glarelite.open(self._path) as cat:
                cat.upload(self._artifact_id, "file", self._chunks())
        except BaseException as exc:  # reported to the test thread
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        assert self.streaming.wait(30), "the upload never started streaming"

    def finish(self) -> None:
        self.release.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.mark.parametrize("when", ["before-listing", "after-listing"])
def test_upload_starting_during_gc_keeps_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    path = tmp_path / "c.db"
    with glarelite.open(path, storage=str(tmp_path / "blobs")) as cat:
        cat.define_type("images", blobs=["file"])
        art = cat.create("images", "a")
        upload = _Upload(path, art.id)
        original = BlobStore.iter_temporaries

        def paused(self: BlobStore) -> Iterator[Any]:
            if when == "before-listing":
                upload.start()
                yield from original(self)
            else:
                listed = list(original(self))
                upload.start()
                yield from listed

        monkeypatch.setattr(BlobStore, "iter_temporaries", paused)
        report = cat.gc()
        monkeypatch.undo()
        upload.finish()
        assert upload.error is None, repr(upload.error)
        assert report.temporaries_removed == 0
        blob = cat.get(art.id).blob("file")
        assert blob is not None and blob.size == 2 * len(BLOCK)
        assert blob.sha256 == hashlib.sha256(BLOCK * 2).hexdigest()
        with cat.open_blob(art.id, "file") as f:
            assert f.read() == BLOCK * 2
