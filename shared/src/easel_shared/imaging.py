"""Pure, in-memory image handling for uploads to Image Nodes.

Everything here works on ``bytes`` and Pillow images only: no filesystem, no
network, no web framework.  The HTTP layer maps :class:`ImageRejected` and
:class:`CropRejected` to API error responses via their ``code``.

Decisions (product contract):

* The format is judged by CONTENT only: magic bytes first (:func:`sniff_format`),
  then a full Pillow decode restricted to the sniffed format.  Filenames and
  declared content types are never consulted (the API does not even accept
  them here).
* Bytes that are not PNG/JPEG/WebP by signature -- other image formats (GIF,
  BMP, TIFF, ...), text, PDF, empty input -- are ``unsupported_format``.
  Bytes that carry a PNG/JPEG/WebP signature but do not decode (corrupt,
  truncated, zero-sized, too many pixels) are ``invalid_image``.
* The pixel limit is enforced from the header dimensions, parsed by this
  module itself *before* Pillow is asked to open the data, so no pixel buffer
  (not even libwebp's animation canvas, which Pillow allocates while
  *opening* a WebP) is ever allocated for an oversized image.  The effective
  limit is ``min(max_pixels, PIL.Image.MAX_IMAGE_PIXELS)``: staying at or
  below Pillow's own limit guarantees that Pillow never emits its
  ``DecompressionBombWarning`` (and never raises ``DecompressionBombError``)
  for an image we accept.  Should either still surface (defence in depth),
  it is converted to ``invalid_image``.  This module never changes Pillow's
  global state (``MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``)
  nor the process-wide warning filters (``warnings.catch_warnings`` is not
  thread-safe).
* Truncation is refused independently of ``ImageFile.LOAD_TRUNCATED_IMAGES``:
  besides Pillow's full ``load()``, a structural check runs on the raw bytes
  (PNG: every chunk present with a valid CRC up to ``IEND``; JPEG: an EOI
  marker after the first scan; WebP: the RIFF container is complete).  So
  even if some other code flips that Pillow global, truncated uploads still
  fail.
* Multi-frame files (APNG, animated WebP, JPEG/MPO): ``frames`` reports the
  frame count, but only the first frame (Pillow frame 0) is decoded and used
  for thumbnails and crops.  The caller stores the original bytes unchanged.
* Dimensions: :class:`ImageInfo` reports the dimensions of the pixel data AS
  STORED, i.e. EXIF orientation is NOT applied, and :func:`crop_image` takes
  its box in those same stored-pixel coordinates.  Crops keep the EXIF
  orientation tag (and the ICC profile) so they display the same way as the
  original.  Thumbnails are for display only, so they have the orientation
  applied (and carry no EXIF).
* The upload size limit (:data:`MAX_UPLOAD_BYTES`) is enforced by the caller
  while streaming; the functions here do not re-check it.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, ImageFile

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "THUMBNAIL_CONTENT_TYPE",
    "CropRejected",
    "ImageInfo",
    "ImageRejected",
    "crop_image",
    "encode_png",
    "inspect_image",
    "make_thumbnail",
    "sniff_format",
]

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS: Final = 50_000_000

#: Thumbnails are WebP: small, and they keep transparency.
THUMBNAIL_CONTENT_TYPE: Final = "image/webp"
_THUMBNAIL_QUALITY: Final = 85
_JPEG_QUALITY: Final = 95
_WEBP_QUALITY: Final = 95

ImageRejectCode = Literal["unsupported_format", "invalid_image"]

_UNSUPPORTED_MESSAGE: Final = "Only PNG, JPEG and WebP images are supported."
_CORRUPT_MESSAGE: Final = "The image file is corrupt or truncated."

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
_EXIF_ORIENTATION: Final = 0x0112
_INFLATE_STEP: Final = 1 << 20


class ImageRejected(Exception):
    """The uploaded bytes are not an acceptable image."""

    code: ImageRejectCode
    message: str

    def __init__(self, code: ImageRejectCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CropRejected(Exception):
    """The requested crop box is not valid for the image."""

    code: Literal["invalid_crop"]
    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = "invalid_crop"
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    content_type: str  # image/png | image/jpeg | image/webp
    extension: str  # png | jpg | webp
    width: int  # stored pixel width (EXIF orientation NOT applied)
    height: int  # stored pixel height (EXIF orientation NOT applied)
    frames: int


@dataclass(frozen=True)
class _Format:
    content_type: str
    extension: str
    pil_format: str  # name passed to Image.open(formats=[...]) and save()
    pil_opened_as: frozenset[str]  # acceptable values of Image.format


_PNG: Final = _Format("image/png", "png", "PNG", frozenset({"PNG"}))
# A JPEG with a Multi-Picture (MPO) segment is still a JPEG; Pillow's JPEG
# plugin hands those to its MPO class.
_JPEG: Final = _Format("image/jpeg", "jpg", "JPEG", frozenset({"JPEG", "MPO"}))
_WEBP: Final = _Format("image/webp", "webp", "WEBP", frozenset({"WEBP"}))
_BY_CONTENT_TYPE: Final = {f.content_type: f for f in (_PNG, _JPEG, _WEBP)}


def _unsupported() -> ImageRejected:
    return ImageRejected("unsupported_format", _UNSUPPORTED_MESSAGE)


def _corrupt() -> ImageRejected:
    return ImageRejected("invalid_image", _CORRUPT_MESSAGE)


# --------------------------------------------------------------------------
# Sniffing and header parsing (no Pillow involved)
# --------------------------------------------------------------------------


def sniff_format(head: bytes) -> str | None:
    """Return the content type implied by the magic bytes, or ``None``.

    Only PNG, JPEG and WebP are recognised.  ``head`` may be just the start of
    the data; at least 12 bytes are needed to recognise WebP (``RIFF`` alone
    is also WAV/AVI), 8 for PNG and 3 for JPEG.
    """
    if head.startswith(_PNG_SIGNATURE):
        return _PNG.content_type
    if head.startswith(_JPEG_SIGNATURE):
        return _JPEG.content_type
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _WEBP.content_type
    return None


def _png_chunks(data: bytes) -> list[tuple[int, bytes, int, int]]:
    """``(chunk_start, type, payload_start, payload_end)`` up to ``IEND``.

    The 4-byte CRC follows at ``payload_end``.  Raises if the data ends before
    a complete ``IEND`` chunk, i.e. the file is truncated.
    """
    chunks: list[tuple[int, bytes, int, int]] = []
    n = len(data)
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > n:
            raise _corrupt()
        length, chunk_type = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + int(length)
        if int(length) > 0x7FFFFFFF or end + 4 > n:
            raise _corrupt()
        chunks.append((pos, bytes(chunk_type), pos + 8, end))
        if chunk_type == b"IEND":
            return chunks
        pos = end + 4


def _png_dimensions(data: bytes) -> tuple[int, int]:
    # The IHDR chunk must come first: length 13, type, width, height (BE).
    if len(data) < 24 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise _corrupt()
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE_MARKERS: Final = frozenset({0x01, 0xD8, 0xD9, *range(0xD0, 0xD8)})


def _jpeg_scan_start(data: bytes) -> tuple[int, int, int]:
    """Walk the JPEG marker segments up to the first SOS.

    Returns ``(width, height, offset_after_sos_header)``.  If several SOF
    segments occur, the largest one wins (Pillow keeps the last one; taking
    the largest keeps the pixel check conservative).
    """
    n = len(data)
    pos = 2  # after SOI
    width = height = -1
    while True:
        # Skip anything up to and including the 0xFF fill bytes of a marker.
        while pos < n and data[pos] != 0xFF:
            pos += 1
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise _corrupt()  # no scan before the end: truncated
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE_MARKERS or marker == 0x00:
            continue
        if pos + 2 > n:
            raise _corrupt()
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            raise _corrupt()
        if marker in _JPEG_SOF_MARKERS:
            if length < 7:
                raise _corrupt()
            h, w = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if int(w) * int(h) >= width * height:
                width, height = int(w), int(h)
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data follows
            if width < 0:
                raise _corrupt()  # scan without a frame header
            return width, height, pos


def _webp_chunks(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """Return ``(fourcc, payload_start, payload_end)`` for RIFF sub-chunks."""
    chunks: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end:
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        payload_end = pos + 8 + int(size)
        if payload_end > end:
            raise _corrupt()
        chunks.append((fourcc, pos + 8, payload_end))
        pos = payload_end + (int(size) & 1)  # chunks are padded to even sizes
    return chunks


def _webp_riff_end(data: bytes) -> int:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = 8 + int(riff_size)
    if end > len(data):
        raise _corrupt()  # the container promises more bytes than we have
    return end


def _webp_dimensions(data: bytes) -> tuple[int, int]:
    chunks = _webp_chunks(data, 12, _webp_riff_end(data))
    if not chunks:
        raise _corrupt()
    fourcc, start, end = chunks[0]
    payload = data[start:end]
    if fourcc == b"VP8X" and len(payload) >= 10:
        # Extended format: 24-bit little-endian canvas width/height minus one.
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        return width, height
    if fourcc == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        # Lossless: 14-bit width-1 and height-1 packed after the signature.
        (bits,) = struct.unpack("<I", payload[1:5])
        return (int(bits) & 0x3FFF) + 1, ((int(bits) >> 14) & 0x3FFF) + 1
    if fourcc == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        # Lossy key frame: 14-bit width and height (top 2 bits are scaling).
        w, h = struct.unpack("<HH", payload[6:10])
        return int(w) & 0x3FFF, int(h) & 0x3FFF
    raise _corrupt()


def _webp_is_lossless(data: bytes) -> bool:
    """Whether the (first) image bitstream of a WebP file is VP8L."""
    for fourcc, start, end in _webp_chunks(data, 12, _webp_riff_end(data)):
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        if fourcc == b"ANMF":
            # Animation frame: 16-byte frame header, then ALPH/VP8/VP8L.
            for sub, _, _ in _webp_chunks(data, start + 16, end):
                if sub in (b"VP8L", b"VP8 "):
                    return sub == b"VP8L"
    return False


def _header_dimensions(data: bytes, fmt: _Format) -> tuple[int, int]:
    """Width and height as declared by the file header (nothing decoded)."""
    if fmt is _PNG:
        return _png_dimensions(data)
    if fmt is _JPEG:
        width, height, _ = _jpeg_scan_start(data)
        return width, height
    return _webp_dimensions(data)


def _check_structure(data: bytes, fmt: _Format) -> None:
    """Refuse truncated/corrupt containers without relying on Pillow globals."""
    if fmt is _PNG:
        chunks = _png_chunks(data)  # raises unless complete up to IEND
        view = memoryview(data)
        for pos, _, _, end in chunks:
            (crc,) = struct.unpack(">I", data[end : end + 4])
            if zlib.crc32(view[pos + 4 : end]) != crc:
                raise _corrupt()
    elif fmt is _JPEG:
        # 0xFF 0xD9 cannot occur inside entropy-coded data (0xFF is stuffed),
        # so an EOI after the first scan header means the stream is complete.
        _, _, scan = _jpeg_scan_start(data)
        if data.rfind(b"\xff\xd9") < scan:
            raise _corrupt()
    else:
        _webp_riff_end(data)


def _check_png_deflate(data: bytes) -> None:
    """Inflate the IDAT stream (output discarded) to prove it is intact.

    Pillow ignores PNG decoder errors when ``ImageFile.LOAD_TRUNCATED_IMAGES``
    is set, so this only runs then.  Memory stays bounded by ``_INFLATE_STEP``.
    """
    inflater = zlib.decompressobj()
    try:
        for _, chunk_type, start, end in _png_chunks(data):
            if chunk_type != b"IDAT":
                continue
            pending = data[start:end]
            while pending and not inflater.eof:
                inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise _corrupt() from exc
    if not inflater.eof:
        raise _corrupt()


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
            f"The image is too large: {width}x{height} pixels exceeds the "
            f"limit of {limit:,} pixels.",
        )


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def _decode(data: bytes, max_pixels: int) -> tuple[Image.Image, ImageInfo, _Format]:
    """Validate ``data`` fully and return its decoded first frame."""
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    content_type = sniff_format(data)
    if content_type is None:
        raise _unsupported()
    fmt = _BY_CONTENT_TYPE[content_type]
    limit = _pixel_limit(max_pixels)

    # 1. Header-only checks: pixel budget, then container completeness.
    width, height = _header_dimensions(data, fmt)
    _check_dimensions(width, height, limit)
    _check_structure(data, fmt)
    if fmt is _PNG and ImageFile.LOAD_TRUNCATED_IMAGES:  # read only
        _check_png_deflate(data)

    # 2. Pillow, restricted to the sniffed format, decodes the first frame.
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt.pil_format])
        if image.format not in fmt.pil_opened_as:
            raise _corrupt()
        # Pillow's own idea of the size is what we decode; check it too.
        _check_dimensions(image.width, image.height, limit)
        frames = int(getattr(image, "n_frames", 1))
        image.seek(0)
        image.load()  # decodes all pixel data of frame 0; raises if truncated
    except ImageRejected:
        raise
    except MemoryError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning only arrives here if warning filters turn it into an
        # exception; the header check above normally pre-empts both.
        raise ImageRejected(
            "invalid_image", f"The image is too large: the limit is {limit:,} pixels."
        ) from exc
    except Exception as exc:  # any decoder failure means a broken file
        raise _corrupt() from exc

    info = ImageInfo(
        content_type=fmt.content_type,
        extension=fmt.extension,
        width=image.width,
        height=image.height,
        frames=max(frames, 1),
    )
    return image, info, fmt


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Validate an upload by content and describe it.

    Raises :class:`ImageRejected` with code ``unsupported_format`` or
    ``invalid_image``.  The whole first frame is decoded, so a returned
    :class:`ImageInfo` means the image is usable.
    """
    _, info, _ = _decode(data, max_pixels)
    return info


# --------------------------------------------------------------------------
# Derived images
# --------------------------------------------------------------------------


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


def make_thumbnail(
    data: bytes, *, max_side: int = 256, max_pixels: int = DEFAULT_MAX_PIXELS
) -> bytes:
    """Render a display thumbnail (:data:`THUMBNAIL_CONTENT_TYPE`).

    First frame only, EXIF orientation applied, converted to RGB or RGBA
    (when the source has transparency), scaled down so that the longer side is
    at most ``max_side`` while keeping the aspect ratio (never scaled up).
    Raises :class:`ImageRejected` like :func:`inspect_image`.
    """
    if max_side < 1:
        raise ValueError("max_side must be positive")
    image, _, _ = _decode(data, max_pixels)
    icc_profile = image.info.get("icc_profile")
    # An RGB profile only stays valid if no colour-space conversion happens.
    keep_icc = isinstance(icc_profile, bytes) and image.mode in ("RGB", "RGBA", "P")
    transpose = _UPRIGHT.get(_orientation(image))
    if transpose is not None:
        image = image.transpose(transpose)
    thumb = _to_rgb_or_rgba(image)
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(
        out,
        format="WEBP",
        quality=_THUMBNAIL_QUALITY,
        method=4,
        icc_profile=icc_profile if keep_icc else None,
    )
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
    image, info, fmt = _decode(data, max_pixels)
    if x < 0 or y < 0:
        raise CropRejected("The crop position must not be negative.")
    if width < 1 or height < 1:
        raise CropRejected("The crop width and height must be at least 1 pixel.")
    if x + width > info.width or y + height > info.height:
        raise CropRejected(
            f"The crop box must lie within the {info.width}x{info.height} image."
        )

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
    if fmt is _JPEG:
        options["quality"] = _JPEG_QUALITY
    elif fmt is _WEBP:
        if _webp_is_lossless(data):
            options["lossless"] = True
        else:
            options["quality"] = _WEBP_QUALITY

    out = io.BytesIO()
    cropped.save(out, format=fmt.pil_format, **options)
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
