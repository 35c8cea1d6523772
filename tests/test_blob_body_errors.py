"""An external blob served short or reset mid-body, every time: the catalog's reads raise
a GlareliteError (NetworkError or ChecksumMismatch), never urllib3's ProtocolError, and
no unverified byte reaches a file (issue 13 #13, catalog side)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import glarelite
from glarelite.errors import ChecksumMismatch, NetworkError
from tests.fixtures.origin import Origin

DATA = random.Random(13).randbytes(300_000)
FRAMINGS: list[dict[str, Any]] = [
    {"ranges": True},
    {"ranges": False},
    {"ranges": False, "chunked": True},
    {"ranges": False, "content_length": False},
]


@pytest.fixture
def cat(tmp_path: Path) -> Iterator[glarelite.Catalog]:
    http = glarelite.HttpSettings(
        allow_hosts=("127.0.0.1",),
        retry=glarelite.RetryPolicy(total=1, backoff_factor=0, jitter=0),
        read_timeout=10,
    )
    settings = glarelite.CatalogSettings(http=http)
    with glarelite.open(tmp_path / "c.db", settings=settings) as catalog:
        catalog.define_type("t", blobs=["file"])
        yield catalog


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: ",".join(f))
@pytest.mark.parametrize("fault", ["reset_after", "short_after"])
@pytest.mark.parametrize("how", ["open_blob", "download", "open_blobs"])
def test_broken_body_is_a_glarelite_error(
    cat: glarelite.Catalog,
    origin: Origin,
    tmp_path: Path,
    framing: dict[str, Any],
    fault: str,
    how: str,
) -> None:
    origin.add("/x", data=DATA, ranges=True)
    art = cat.create("t", "a")
    cat.add_location(art.id, "file", origin.url("/x"))
    origin.add("/x", data=DATA, times=None, **framing, **{fault: 100_000})
    out = tmp_path / "out.bin"
    with pytest.raises((NetworkError, ChecksumMismatch)):
        if how == "open_blob":
            with cat.open_blob(art.id, "file") as f:
                while f.read(65536):
                    pass
        elif how == "download":
            cat.download(art.id, "file", out)
        else:
            for _aid, _slot, opener in cat.open_blobs([(art.id, "file")]):
                with opener() as f:
                    while f.read(65536):
                        pass
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp*")) == []
