"""An upload's thumbnail, stored after the upload has answered.

An upload answers once its original is stored and its row committed; its thumbnail follows
(rendering and writing it was the last ~10 ms of a 10 MiB upload's answer, `bench/upload.py`).
No one may be handed a thumbnail URL that fails meanwhile, so:

- The upload's transaction writes an `image.thumbnail` outbox row (`StoreThumbnail`, the
  image's id as its subject). While that row is pending, the object may not be stored yet.
- Right after the commit, the process that committed stores the thumbnail on a thread of its
  own (`Pending`), from the decode that validated the upload, and marks the row delivered.
- If that process dies first, an api process's background relay (`ThumbnailRelay`) renders it
  from the original, `relay.AFTER_COMMIT_GRACE` after the commit.
- Whoever needs the object sooner calls `ensure`: the thumbnail route before it redirects, the
  assets library before it copies. It waits for this process's own store, or finds the object
  stored, or renders it from the original itself.

Two processes rendering one image write the same key with the same picture: harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from easel_shared import relay
from easel_shared.db import session_scope
from easel_shared.imaging import THUMBNAIL_CONTENT_TYPE, ImageRejected, make_thumbnail
from easel_shared.messages import StoreThumbnail
from easel_shared.models import Image
from easel_shared.repositories import boards, outbox
from easel_shared.storage import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

TOPIC = outbox.STORE_THUMBNAIL
#: How long `ensure` waits for this process's own store before it renders the thumbnail itself.
WAIT_SECONDS = 30.0
#: Pending rows one background pass takes.
BATCH = 20

# Two threads: a thumbnail is ~10 ms of CPU, and more would only compete with the requests.
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="thumbnail-store")
_lock = threading.Lock()
#: Thumbnails this process is storing after their upload's commit: image id -> stored.
_storing: dict[str, Future[None]] = {}


def is_pending(session: Session, image_id: str) -> bool:
    """Whether the image's thumbnail may not be stored yet (its upload's row is pending)."""
    return bool(session.exec(select(outbox.thumbnail_pending(image_id))).one())


def render_from_original(store: ObjectStore, image: Image, max_pixels: int) -> None:
    """Render the image's thumbnail from its stored original and store it. Raises
    `ObjectNotFound` when the original is gone."""
    store.put(image.thumbnail_key, make_thumbnail(store.get(image.storage_key), max_pixels=max_pixels),
              THUMBNAIL_CONTENT_TYPE)


def rendered(thumbnail: bytes | Future[bytes | None], data: bytes, max_pixels: int) -> bytes:
    """An upload's thumbnail: rendered already, or once the early decode's thread has rendered
    it (rendered here from the bytes if that thread could not)."""
    if isinstance(thumbnail, bytes):
        return thumbnail
    made = thumbnail.result()
    return made if made is not None else make_thumbnail(data, max_pixels=max_pixels)


def ensure(store: ObjectStore, image: Image, *, max_pixels: int, wait_seconds: float = WAIT_SECONDS) -> None:
    """Make sure the thumbnail of an image whose row is pending (`is_pending`) is stored: wait
    for this process's own store, else find it stored, else render it from the original. Raises
    like `render_from_original`."""
    with _lock:
        storing = _storing.get(image.id)
    if storing is not None:
        try:
            storing.result(wait_seconds)
        except FutureTimeout:
            log.warning("the thumbnail of %s is not stored after %.0f s; rendering it again", image.id, wait_seconds)
        except Exception:
            log.info("the store of %s's thumbnail failed; rendering it here", image.id)
        else:
            return
    if not store.exists(image.thumbnail_key):
        render_from_original(store, image, max_pixels)


class Pending:
    """One upload's thumbnail, to be stored after its transaction commits::

        pending = Pending(store, image, thumbnail, data, max_pixels)
        try:
            with session_scope(engine) as session:
                ...
                pending.mark(session)
        except BaseException:
            pending.drop()
            raise
        pending.store_after_commit(engine)

    ``thumbnail``: the rendered bytes, or a future of them (None from it: render them from
    ``data``)."""

    def __init__(self, store: ObjectStore, image: Image, thumbnail: bytes | Future[bytes | None], data: bytes,
                 max_pixels: int) -> None:
        self._store = store
        self._image = image
        self._thumbnail = thumbnail
        self._data: bytes | None = data
        self._max_pixels = max_pixels
        self._row_id: int | None = None
        self.stored: Future[None] = Future()
        # Known from now on: the live event of the commit may reach a client before
        # `store_after_commit` runs, and the route it asks must wait for this store.
        with _lock:
            _storing[image.id] = self.stored

    def mark(self, session: Session) -> None:
        """Write the pending row in the upload's transaction."""
        row = outbox.enqueue(session, StoreThumbnail(image_id=self._image.id), self._image.account_id,
                             subject_id=self._image.id)
        session.flush()
        self._row_id = row.id

    def drop(self) -> None:
        """The transaction did not commit: nothing to store."""
        self._end(RuntimeError("the upload did not commit"))

    def store_after_commit(self, engine: Engine) -> None:
        _pool.submit(self._run, engine)

    def _run(self, engine: Engine) -> None:
        try:
            assert self._data is not None
            self._store.put(self._image.thumbnail_key, rendered(self._thumbnail, self._data, self._max_pixels),
                            THUMBNAIL_CONTENT_TYPE)
        except Exception as exc:
            # The row stays pending: the background relay renders it from the original.
            log.warning("could not store the thumbnail of %s; the outbox relay will", self._image.id, exc_info=True)
            self._end(exc)
            return
        if self._row_id is not None:
            relay.delivered(engine, [self._row_id])
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        self._data = None
        self._thumbnail = b""
        with _lock:
            _storing.pop(self._image.id, None)
        if error is None:
            self.stored.set_result(None)
        else:
            self.stored.set_exception(error)


class ThumbnailRelay:
    """The background pass for thumbnails whose upload's process did not store them (it died, or
    storage failed): rendered from the original. Run by the api's relay thread."""

    topic = TOPIC

    def __init__(self, store: ObjectStore, max_pixels: int) -> None:
        self.store = store
        self.max_pixels = max_pixels

    def relay_written(self, engine: Engine, rows: Sequence[relay.Written]) -> None:
        """Nothing: the upload's own `Pending` stores its thumbnail after the commit."""

    def relay_pending(self, engine: Engine) -> bool:
        with session_scope(engine) as session:
            rows = relay.claim_settled_later(session, TOPIC, BATCH)
            work = [(row.id, StoreThumbnail.model_validate(row.payload).image_id) for row in rows]
            images = boards.images_by_id(session, [image_id for _, image_id in work])
        for row_id, image_id in work:
            image = images.get(image_id)
            if image is not None:
                try:
                    ensure(self.store, image, max_pixels=self.max_pixels)
                except ObjectNotFound:
                    log.info("the original of %s is gone: no thumbnail to render", image_id)
                except ImageRejected as exc:  # a stored original was validated once: never expected
                    log.error("the thumbnail of %s cannot be rendered: %s", image_id, exc.message)
            assert row_id is not None
            with session_scope(engine) as session:
                outbox.mark_processed(session, [row_id])
        return len(work) >= BATCH
