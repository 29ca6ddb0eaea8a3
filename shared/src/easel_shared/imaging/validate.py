"""Validating uploads by content: header checks first, then a full decode of the first frame."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO, Final, cast

from PIL import Image, ImageFile

from easel_shared.imaging.arriving import ArrivingBytes
from easel_shared.imaging.base import DEFAULT_MAX_PIXELS, ImageInfo, ImageRejected, corrupt, unsupported
from easel_shared.imaging.budget import decode_budget, image_bytes
from easel_shared.imaging.formats import (
    BY_CONTENT_TYPE,
    JPEG,
    PNG,
    ImageFormat,
    check_png_deflate,
    check_structure,
    header_dimensions,
    sniff_format,
)

# Bytes of a file that must have arrived before its header is read while the rest arrives: a PNG's
# dimensions are in its first 24 bytes; a JPEG's follow its metadata segments (EXIF, ICC, XMP), of
# which a few hundred KiB hold all but the rarest files (those are decoded once they have arrived).
_HEAD_BYTES: Final = 256 * 1024
# Pillow decodes these from a stream as it reads it; its WebP decoder reads the whole file first.
_STREAMED_FORMATS: Final = (PNG, JPEG)


# Container checks of files decoded while they arrive (each waits at most for its file's deadline).
_checks: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="image-check")


class NotStreamable(Exception):
    """The file's format is not decoded while it arrives (the caller decodes it once it has)."""


def _pixel_limit(max_pixels: int) -> int:
    pillow_limit = Image.MAX_IMAGE_PIXELS  # read only, never assigned here
    if pillow_limit is not None:
        return min(max_pixels, pillow_limit)
    return max_pixels


def _check_dimensions(width: int, height: int, limit: int) -> None:
    if width < 1 or height < 1:
        raise ImageRejected("invalid_image", "The image has no pixels.")
    if width * height > limit:
        raise ImageRejected(
            "invalid_image",
            f"The image is too large: {width}x{height} pixels exceeds the limit of {limit:,} pixels.",
        )


def _checked_header(head: bytes, max_pixels: int) -> tuple[ImageFormat, int]:
    """The format the magic bytes name and the pixel limit, once the header's dimensions are
    within it: (format, limit). ``head`` may be only the start of the file."""
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    content_type = sniff_format(head)
    if content_type is None:
        raise unsupported()
    fmt = BY_CONTENT_TYPE[content_type]
    limit = _pixel_limit(max_pixels)
    width, height = header_dimensions(head, fmt)
    _check_dimensions(width, height, limit)
    return fmt, limit


def _check_container(data: bytes, fmt: ImageFormat) -> None:
    """The whole file's container is complete (see :func:`check_structure`)."""
    check_structure(data, fmt)
    if fmt is PNG and ImageFile.LOAD_TRUNCATED_IMAGES:  # read only
        check_png_deflate(data)


@contextmanager
def _loaded(fp: IO[bytes], fmt: ImageFormat, limit: int,
            working_copies: int) -> Iterator[tuple[Image.Image, ImageInfo]]:
    """Pillow, restricted to the sniffed format, opens the header from ``fp``; the first frame
    is decoded once the memory it needs is reserved. Closed when the block ends."""
    with contextlib.ExitStack() as held:
        try:
            image = Image.open(fp, formats=[fmt.pil_format])
            held.callback(image.close)
            if image.format not in fmt.pil_opened_as:
                raise corrupt()
            # Pillow's own idea of the size is what we decode; check it too.
            _check_dimensions(image.width, image.height, limit)
            frames = int(getattr(image, "n_frames", 1))
            image.seek(0)
            cost = image_bytes(image.width, image.height, image.mode)
            cost += working_copies * image_bytes(image.width, image.height)
            held.enter_context(decode_budget().reserve(cost))
            image.load()  # decodes all pixel data of frame 0; raises if truncated
        except ImageRejected:
            raise
        except MemoryError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # The warning only arrives here if warning filters turn it into an
            # exception; the header check above normally pre-empts both.
            raise ImageRejected("invalid_image", f"The image is too large: the limit is {limit:,} pixels.") from exc
        except Exception as exc:  # any decoder failure means a broken file
            raise corrupt() from exc

        info = ImageInfo(
            content_type=fmt.content_type,
            extension=fmt.extension,
            width=image.width,
            height=image.height,
            frames=max(frames, 1),
        )
        yield image, info


@contextmanager
def decoded(
    data: bytes, max_pixels: int, *, working_copies: int = 0
) -> Iterator[tuple[Image.Image, ImageInfo, ImageFormat]]:
    """Validate ``data`` fully and yield its decoded first frame, closed when the block ends.

    The decode waits for its share of the process's decode budget (see :mod:`.budget`): the
    pixels of the first frame plus ``working_copies`` full-size RGBA copies the caller will
    make while the block runs."""
    # 1. Header-only checks: pixel budget, then container completeness.
    fmt, limit = _checked_header(data, max_pixels)
    _check_container(data, fmt)
    # 2. The decode.
    with _loaded(io.BytesIO(data), fmt, limit, working_copies) as (image, info):
        yield image, info, fmt


@contextmanager
def decoded_while_arriving(
    body: ArrivingBytes, max_pixels: int, *, working_copies: int = 0
) -> Iterator[tuple[Image.Image, ImageInfo, ImageFormat]]:
    """:func:`decoded` of a file whose bytes are still arriving: the decode reads them as they
    come, and the block runs once the whole file is there and its container is checked.

    Every check of :func:`decoded` is made on the same bytes, only in another order (the
    container check, which needs the whole file, comes after the decode). Raises
    :class:`ImageRejected` like :func:`decoded`, :class:`NotStreamable` for a format whose
    decoder reads the whole file first (WebP), and what ``body`` raises when it is abandoned
    (:class:`~.arriving.BodyAbandoned`, also as the cause of an ``invalid_image``). A caller
    that wants the exact answer of :func:`decoded` for a refused file asks it again."""
    head = body.head(_HEAD_BYTES)
    named = BY_CONTENT_TYPE.get(sniff_format(head) or "")
    if named is not None and named not in _STREAMED_FORMATS:
        raise NotStreamable(named.content_type)  # before its header, which may need the whole file
    fmt, limit = _checked_header(head, max_pixels)
    # The container check needs the whole file: another thread makes it once the file is whole,
    # while this one decodes (a PNG's CRCs cost milliseconds per 10 MB).
    container = _checks.submit(lambda: _check_container(body.whole(), fmt))
    with _loaded(cast(IO[bytes], body), fmt, limit, working_copies) as (image, info):
        container.result()
        yield image, info, fmt


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Validate an upload by content and describe it.

    Raises :class:`ImageRejected` with code ``unsupported_format`` or
    ``invalid_image``.  The whole first frame is decoded, so a returned
    :class:`ImageInfo` means the image is usable.
    """
    with decoded(data, max_pixels) as (_, info, _):
        return info
