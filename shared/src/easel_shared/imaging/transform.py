"""Images derived from a validated upload: thumbnails and crops, and PNG encoding."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Final

from PIL import Image

from easel_shared.imaging.arriving import ArrivingBytes
from easel_shared.imaging.base import DEFAULT_MAX_PIXELS, CropRejected, ImageInfo
from easel_shared.imaging.formats import JPEG, WEBP, webp_is_lossless
from easel_shared.imaging.validate import decoded, decoded_while_arriving

_THUMBNAIL_QUALITY: Final = 85
_JPEG_QUALITY: Final = 95
_WEBP_QUALITY: Final = 95
_EXIF_ORIENTATION: Final = 0x0112


# Errors Pillow's EXIF parser raises on malformed metadata.
_EXIF_ERRORS: Final = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    SyntaxError,
    struct.error,
)

# EXIF orientation -> transposition that displays the image upright (the
# same table as ImageOps.exif_transpose).
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> int:
    """EXIF orientation (1-8); malformed or missing EXIF counts as upright."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _EXIF_ERRORS:  # metadata noise, not a broken image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale: scale to 8 bits instead of clipping to white.
        image = image.convert("I").point(lambda v: v * (1 / 256))
    target = "RGBA" if image.has_transparency_data else "RGB"
    return image if image.mode == target else image.convert(target)


def make_thumbnail(data: bytes, *, max_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Render a display thumbnail (:data:`THUMBNAIL_CONTENT_TYPE`).

    First frame only, EXIF orientation applied, converted to RGB or RGBA
    (when the source has transparency), scaled down so that the longer side is
    at most ``max_side`` while keeping the aspect ratio (never scaled up).
    Raises :class:`ImageRejected` like :func:`inspect_image`.
    """
    return inspect_with_thumbnail(data, max_side=max_side, max_pixels=max_pixels)[1]


def inspect_with_thumbnail(data: bytes, *, max_side: int = 256,
                           max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageInfo, bytes]:
    """:func:`inspect_image` and :func:`make_thumbnail` from one decode: the description of a
    valid image and its thumbnail. Raises :class:`ImageRejected` like :func:`inspect_image`."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    # One working copy: a mode conversion of the full image (most images need none).
    with decoded(data, max_pixels, working_copies=1) as (image, info, _):
        return info, _thumbnail(image, max_side)


def inspect_with_thumbnail_while_arriving(
    body: ArrivingBytes, *, max_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS,
    on_decoded: Callable[[ImageInfo], None] | None = None,
) -> tuple[ImageInfo, bytes]:
    """:func:`inspect_with_thumbnail` of a file whose bytes are still arriving (see
    :func:`~.validate.decoded_while_arriving`, whose exceptions it raises). ``on_decoded`` is
    told the description as soon as the image is known to be valid, before the thumbnail is
    rendered."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    with decoded_while_arriving(body, max_pixels, working_copies=1) as (image, info, _):
        if on_decoded is not None:
            on_decoded(info)
        return info, _thumbnail(image, max_side)


def _thumbnail(image: Image.Image, max_side: int) -> bytes:
    """The display thumbnail of a decoded first frame (which it may close)."""
    icc_profile = image.info.get("icc_profile")
    # An RGB profile only stays valid if no colour-space conversion happens.
    keep_icc = isinstance(icc_profile, bytes) and image.mode in ("RGB", "RGBA", "P")
    transpose = _UPRIGHT.get(_orientation(image))
    thumb = _to_rgb_or_rgba(image)
    if thumb is not image:
        image.close()  # the converted copy replaces the decoded frame
    # Scaled down in place first (the full-size buffer goes), turned upright after: the
    # same picture as turning first, without a second full-size copy.
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if transpose is not None:
        thumb = thumb.transpose(transpose)
    out = io.BytesIO()
    thumb.save(
        out,
        format="WEBP",
        quality=_THUMBNAIL_QUALITY,
        method=2,
        icc_profile=icc_profile if keep_icc else None,
    )
    thumb.close()
    return out.getvalue()


def crop_image(
    data: bytes,
    *,
    x: int,
    y: int,
    width: int,
    height: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[bytes, ImageInfo]:
    """Crop the first frame to the box at ``(x, y)`` of ``width`` x ``height``.

    Coordinates are in stored-pixel space (EXIF orientation not applied, same
    as :class:`ImageInfo`).  The result is encoded in the input's format: PNG
    stays PNG, JPEG at quality 95, WebP lossless if the input was lossless,
    else quality 95.  The EXIF orientation tag and ICC profile are carried
    over; other metadata is dropped.

    Raises :class:`ImageRejected` for a bad image and :class:`CropRejected`
    (code ``invalid_crop``) for a bad box.
    """
    # One working copy: the cropped region (at most the whole image).
    with decoded(data, max_pixels, working_copies=1) as (image, info, fmt):
        if x < 0 or y < 0:
            raise CropRejected("The crop position must not be negative.")
        if width < 1 or height < 1:
            raise CropRejected("The crop width and height must be at least 1 pixel.")
        if x + width > info.width or y + height > info.height:
            raise CropRejected(f"The crop box must lie within the {info.width}x{info.height} image.")

        cropped = image.crop((x, y, x + width, y + height))
        options: dict[str, object] = {}
        icc_profile = image.info.get("icc_profile")
        if isinstance(icc_profile, bytes):
            options["icc_profile"] = icc_profile
        orientation = _orientation(image)
        if orientation != 1:
            exif = Image.Exif()
            exif[_EXIF_ORIENTATION] = orientation
            options["exif"] = exif.tobytes()
        if fmt is JPEG:
            options["quality"] = _JPEG_QUALITY
        elif fmt is WEBP:
            if webp_is_lossless(data):
                options["lossless"] = True
            else:
                options["quality"] = _WEBP_QUALITY

        image.close()  # the crop is all that is needed now
        out = io.BytesIO()
        cropped.save(out, format=fmt.pil_format, **options)
        cropped.close()
    result = ImageInfo(
        content_type=fmt.content_type,
        extension=fmt.extension,
        width=width,
        height=height,
        frames=1,
    )
    return out.getvalue(), result


def encode_png(img: Image.Image) -> bytes:
    """Encode a Pillow image as PNG bytes (first/current frame only).

    Modes PNG cannot store (CMYK, YCbCr, F, ...) are converted to RGB, or
    RGBA if the image has transparency.
    """
    if img.mode == "I":
        img = img.convert("I;16")  # 32-bit greyscale: PNG stores up to 16 bits
    elif img.mode not in ("1", "L", "LA", "I;16", "I;16B", "P", "RGB", "RGBA"):
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
