"""Validating uploads by content: header checks first, then a full decode of the first frame."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageFile

from easel_shared.imaging.base import DEFAULT_MAX_PIXELS, ImageInfo, ImageRejected, corrupt, unsupported
from easel_shared.imaging.budget import decode_budget, image_bytes
from easel_shared.imaging.formats import (
    BY_CONTENT_TYPE,
    PNG,
    ImageFormat,
    check_png_deflate,
    check_structure,
    header_dimensions,
    sniff_format,
)


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


@contextmanager
def decoded(
    data: bytes, max_pixels: int, *, working_copies: int = 0
) -> Iterator[tuple[Image.Image, ImageInfo, ImageFormat]]:
    """Validate ``data`` fully and yield its decoded first frame, closed when the block ends.

    The decode waits for its share of the process's decode budget (see :mod:`.budget`): the
    pixels of the first frame plus ``working_copies`` full-size RGBA copies the caller will
    make while the block runs."""
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    content_type = sniff_format(data)
    if content_type is None:
        raise unsupported()
    fmt = BY_CONTENT_TYPE[content_type]
    limit = _pixel_limit(max_pixels)

    # 1. Header-only checks: pixel budget, then container completeness.
    width, height = header_dimensions(data, fmt)
    _check_dimensions(width, height, limit)
    check_structure(data, fmt)
    if fmt is PNG and ImageFile.LOAD_TRUNCATED_IMAGES:  # read only
        check_png_deflate(data)

    # 2. Pillow, restricted to the sniffed format, opens the header; the first frame is decoded
    #    once the memory it needs is reserved.
    with contextlib.ExitStack() as held:
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt.pil_format])
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
        yield image, info, fmt


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Validate an upload by content and describe it.

    Raises :class:`ImageRejected` with code ``unsupported_format`` or
    ``invalid_image``.  The whole first frame is decoded, so a returned
    :class:`ImageInfo` means the image is usable.
    """
    with decoded(data, max_pixels) as (_, info, _):
        return info
