"""Storing images: original bytes unchanged, plus a thumbnail for the reference strip."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from easel_shared.ids import new_id
from easel_shared.imaging import THUMBNAIL_CONTENT_TYPE, ImageInfo, make_thumbnail, sniff_format
from easel_shared.imaging.formats import BY_CONTENT_TYPE
from easel_shared.models import Image
from easel_shared.storage import ObjectStore

log = logging.getLogger(__name__)
_writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="image-writer")

_THUMB_EXT = {"image/webp": "webp", "image/png": "png", "image/jpeg": "jpg"}


def thumbnail_ext() -> str:
    return _THUMB_EXT.get(THUMBNAIL_CONTENT_TYPE, "bin")


@dataclass(frozen=True)
class EarlyOriginal:
    """An original whose write started before its bytes were validated (an upload: the write
    overlaps the decode). Pass it to `store_image` once they are valid, else to `discard`."""

    image_id: str
    key: str
    content_type: str
    written: Future[None]


def start_original(store: ObjectStore, account_id: str, data: bytes) -> EarlyOriginal | None:
    """Start writing `data` as an image's original, in the format its magic bytes name (None
    when they name none: the validation refuses it anyway)."""
    fmt = BY_CONTENT_TYPE.get(sniff_format(data[:16]) or "")
    if fmt is None:
        return None
    image_id = new_id("img")
    key = f"images/{account_id}/{image_id}.{fmt.extension}"
    return EarlyOriginal(image_id, key, fmt.content_type, _writer.submit(store.put, key, data, fmt.content_type))


def discard(store: ObjectStore, early: EarlyOriginal) -> None:
    """Refused bytes: wait for their write, then delete them. Best effort: an object left
    behind belongs to no row, and the orphan collector removes it after its grace period."""
    try:
        early.written.result()
        store.delete(early.key)
    except Exception:
        log.warning("could not remove the refused upload %s; the orphan collector will", early.key, exc_info=True)


def store_image(store: ObjectStore, account_id: str, data: bytes, info: ImageInfo, source: str,
                image_id: str | None = None, thumbnail: bytes | None = None,
                early: EarlyOriginal | None = None) -> Image:
    """Write the bytes and a thumbnail (`thumbnail`: one already rendered, e.g. by
    `inspect_with_thumbnail` from the decode that validated the bytes); the caller adds the
    returned row to its session. `early`: the original's write already started
    (`start_original`)."""
    image, original = _start(store, account_id, data, info, source, image_id, early)
    # The original's upload overlaps the thumbnail's rendering (both mostly release the GIL).
    try:
        put_thumbnail(store, image, thumbnail if thumbnail is not None else make_thumbnail(data))
    finally:
        original.result()
    return image


def store_original(store: ObjectStore, account_id: str, data: bytes, info: ImageInfo, source: str,
                   early: EarlyOriginal | None = None) -> Image:
    """`store_image` without the thumbnail: the original written (or its early write waited
    for) and the row that will point at both. The caller stores the thumbnail (an upload: after
    the row commits, `easel_shared.thumbnails`)."""
    image, original = _start(store, account_id, data, info, source, None, early)
    original.result()
    return image


def put_thumbnail(store: ObjectStore, image: Image, thumbnail: bytes) -> None:
    store.put(image.thumbnail_key, thumbnail, THUMBNAIL_CONTENT_TYPE)


def _start(store: ObjectStore, account_id: str, data: bytes, info: ImageInfo, source: str,
           image_id: str | None, early: EarlyOriginal | None) -> tuple[Image, Future[None]]:
    """The image's row, and the original's write (started now unless `early` started it)."""
    if early is not None and early.content_type != info.content_type:
        discard(store, early)  # the magic bytes and the decoder disagree: write it as decoded
        early = None
    image_id = early.image_id if early is not None else image_id or new_id("img")
    key = early.key if early is not None else f"images/{account_id}/{image_id}.{info.extension}"
    original = early.written if early is not None else _writer.submit(store.put, key, data, info.content_type)
    image = Image(
        id=image_id,
        account_id=account_id,
        storage_key=key,
        thumbnail_key=f"images/{account_id}/{image_id}.thumb.{thumbnail_ext()}",
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        size_bytes=len(data),
        source=source,
    )
    return image, original
