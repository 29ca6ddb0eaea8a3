"""`easel_shared.thumbnails` in one process: a reader of a pending thumbnail waits for the
upload's own store instead of rendering it again, and one whose upload never committed renders
it from the original. (The relay, the route and the assets library: tests/integration/
test_thumbnails.py.)"""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine

from easel_shared.images import thumbnail_ext
from easel_shared.imaging import DEFAULT_MAX_PIXELS, inspect_with_thumbnail
from easel_shared.models import Image as ImageRow
from easel_shared.storage import LocalObjectStore
from easel_shared.thumbnails import Pending, ensure
from tests.fixtures.stack import wait_for


class WatchedStore(LocalObjectStore):
    """A real local store that records what is read, and can hold a thumbnail's write."""

    def __init__(self, root: Path) -> None:
        super().__init__(root=root, signing_secret="s" * 32, public_base_url="http://127.0.0.1:1")
        self.reads: list[str] = []
        self.writing = threading.Event()
        self.go_on = threading.Event()
        self.go_on.set()

    def get(self, key: str) -> bytes:
        self.reads.append(f"get {key}")
        return super().get(key)

    def exists(self, key: str) -> bool:
        self.reads.append(f"exists {key}")
        return super().exists(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if ".thumb." in key:
            self.writing.set()
            assert self.go_on.wait(60)
        super().put(key, data, content_type)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WatchedStore]:
    watched = WatchedStore(tmp_path)
    yield watched
    watched.go_on.set()  # a write a failed test held


def uploaded(store: WatchedStore) -> tuple[ImageRow, bytes]:
    img = Image.frombytes("RGB", (300, 200), random.Random(3).randbytes(300 * 200 * 3))
    out = io.BytesIO()
    img.save(out, format="PNG")
    data = out.getvalue()
    image = ImageRow(id="img_unit", account_id="acc_unit", storage_key="images/acc_unit/img_unit.png",
                     thumbnail_key=f"images/acc_unit/img_unit.thumb.{thumbnail_ext()}", content_type="image/png",
                     width=300, height=200, size_bytes=len(data), source="upload")
    store.put(image.storage_key, data, "image/png")
    return image, data


def test_a_reader_waits_for_the_uploads_own_store(store: WatchedStore) -> None:
    image, data = uploaded(store)
    rendering: Future[bytes | None] = Future()  # the early decode's thumbnail, still rendering
    pending = Pending(store, image, rendering, data, DEFAULT_MAX_PIXELS)
    store.go_on.clear()
    pending.store_after_commit(create_engine("sqlite://"))
    rendering.set_result(inspect_with_thumbnail(data)[1])
    wait_for(store.writing.is_set, what="the thumbnail's write to start")

    reader = threading.Thread(target=ensure, args=(store, image), kwargs={"max_pixels": DEFAULT_MAX_PIXELS})
    reader.start()
    # The write is held, so the upload's store cannot have ended: the reader is waiting for it,
    # and has read nothing (it neither rendered the thumbnail again nor looked for the object).
    reader.join(0.5)
    assert reader.is_alive() and store.reads == []
    store.go_on.set()
    reader.join(60)
    assert not reader.is_alive()
    assert store.reads == []
    assert pending.stored.done() and store.get(image.thumbnail_key) == inspect_with_thumbnail(data)[1]


def test_a_reader_renders_the_thumbnail_of_an_upload_that_did_not_commit(store: WatchedStore) -> None:
    image, data = uploaded(store)
    pending = Pending(store, image, inspect_with_thumbnail(data)[1], data, DEFAULT_MAX_PIXELS)
    pending.drop()
    assert isinstance(pending.stored.exception(), RuntimeError)
    ensure(store, image, max_pixels=DEFAULT_MAX_PIXELS)
    assert store.reads == [f"exists {image.thumbnail_key}", f"get {image.storage_key}"]
    assert store.get(image.thumbnail_key) == inspect_with_thumbnail(data)[1]


def test_a_reader_finds_a_thumbnail_another_process_stored(store: WatchedStore) -> None:
    image, data = uploaded(store)
    store.put(image.thumbnail_key, inspect_with_thumbnail(data)[1], "image/webp")
    ensure(store, image, max_pixels=DEFAULT_MAX_PIXELS)
    assert store.reads == [f"exists {image.thumbnail_key}"]
