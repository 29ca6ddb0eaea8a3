"""Limits, the image description and the rejections every step of the pipeline raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS: Final = 50_000_000

#: Thumbnails are WebP: small, and they keep transparency.
THUMBNAIL_CONTENT_TYPE: Final = "image/webp"

ImageRejectCode = Literal["unsupported_format", "invalid_image"]

_UNSUPPORTED_MESSAGE: Final = "Only PNG, JPEG and WebP images are supported."
_CORRUPT_MESSAGE: Final = "The image file is corrupt or truncated."


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


def unsupported() -> ImageRejected:
    return ImageRejected("unsupported_format", _UNSUPPORTED_MESSAGE)


def corrupt() -> ImageRejected:
    return ImageRejected("invalid_image", _CORRUPT_MESSAGE)
