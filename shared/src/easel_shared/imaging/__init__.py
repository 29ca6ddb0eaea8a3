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
  package itself *before* Pillow is asked to open the data, so no pixel buffer
  (not even libwebp's animation canvas, which Pillow allocates while
  *opening* a WebP) is ever allocated for an oversized image.  The effective
  limit is ``min(max_pixels, PIL.Image.MAX_IMAGE_PIXELS)``: staying at or
  below Pillow's own limit guarantees that Pillow never emits its
  ``DecompressionBombWarning`` (and never raises ``DecompressionBombError``)
  for an image we accept.  Should either still surface (defence in depth),
  it is converted to ``invalid_image``.  This package never changes Pillow's
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

* Memory: every full decode first reserves the pixel memory it will use from a process-wide
  budget (:mod:`.budget`, ``DECODE_MEMORY_BUDGET_MB``), and decoded images are closed as soon as
  the operation is done, so concurrent decodes queue instead of multiplying the process's size.

Layout: :mod:`.base` (limits, :class:`ImageInfo`, the rejections), :mod:`.formats` (magic bytes,
header and container parsing), :mod:`.budget` (the decode memory budget), :mod:`.validate`
(:func:`inspect_image`), :mod:`.transform` (thumbnails, crops, PNG encoding).
"""

from easel_shared.imaging.base import (
    DEFAULT_MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    THUMBNAIL_CONTENT_TYPE,
    CropRejected,
    ImageInfo,
    ImageRejected,
)
from easel_shared.imaging.budget import (
    DEFAULT_DECODE_MEMORY_BUDGET_MB,
    DecodeBudget,
    configure_decode_budget,
    decode_budget,
    image_bytes,
)
from easel_shared.imaging.formats import sniff_format
from easel_shared.imaging.transform import crop_image, encode_png, inspect_with_thumbnail, make_thumbnail
from easel_shared.imaging.validate import inspect_image

__all__ = [
    "DEFAULT_DECODE_MEMORY_BUDGET_MB",
    "DEFAULT_MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "THUMBNAIL_CONTENT_TYPE",
    "CropRejected",
    "DecodeBudget",
    "ImageInfo",
    "ImageRejected",
    "configure_decode_budget",
    "crop_image",
    "decode_budget",
    "encode_png",
    "image_bytes",
    "inspect_image",
    "inspect_with_thumbnail",
    "make_thumbnail",
    "sniff_format",
]
