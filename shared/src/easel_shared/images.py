"""Storing images: original bytes unchanged, plus a thumbnail for the reference strip."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from easel_shared.ids import new_id
from easel_shared.imaging import THUMBNAIL_CONTENT_TYPE, ImageInfo, make_thumbnail
from easel_shared.models import Image
from easel_shared.storage import ObjectStore

_writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="image-writer")

_THUMB_EXT = {"image/webp": "webp", "image/png": "png", "image/jpeg": "jpg"}


def thumbnail_ext() -> str:
    return _THUMB_EXT.get(THUMBNAIL_CONTENT_TYPE, "bin")


def store_image(store: ObjectStore, account_id: str, data: bytes, info: ImageInfo, source: str,
                image_id: str | None = None, thumbnail: bytes | None = None) -> Image:
    """Write the bytes and a thumbnail (`thumbnail`: one already rendered, e.g. by
    `inspect_with_thumbnail` from the decode that validated the bytes); the caller adds the
    returned row to its session."""
    image_id = image_id or new_id("img")
    key = f"images/{account_id}/{image_id}.{info.extension}"
    thumb_key = f"images/{account_id}/{image_id}.thumb.{thumbnail_ext()}"
    # The original's upload overlaps the thumbnail's rendering (both mostly release the GIL).
    original = _writer.submit(store.put, key, data, info.content_type)
    try:
        store.put(thumb_key, thumbnail if thumbnail is not None else make_thumbnail(data), THUMBNAIL_CONTENT_TYPE)
    finally:
        original.result()
    return Image(
        id=image_id,
        account_id=account_id,
        storage_key=key,
        thumbnail_key=thumb_key,
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        size_bytes=len(data),
        source=source,
    )
