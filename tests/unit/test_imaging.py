"""Unit tests for easel_shared.imaging.

Every fixture image is built in memory with Pillow; nothing touches the
filesystem or the network.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, ImageFile

from easel_shared import imaging
from easel_shared.imaging import (
    DEFAULT_MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    THUMBNAIL_CONTENT_TYPE,
    CropRejected,
    ImageInfo,
    ImageRejected,
    crop_image,
    encode_png,
    inspect_image,
    make_thumbnail,
    sniff_format,
)

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
Color = tuple[int, ...]

# --------------------------------------------------------------------------
# Fixture builders
# --------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def gradient(width: int, height: int) -> Image.Image:
    """Deterministic, detailed RGB image (so lossy codecs produce real data)."""
    horizontal = Image.linear_gradient("L").resize((width, height))
    vertical = Image.linear_gradient("L").rotate(90).resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    return Image.merge("RGB", (horizontal, vertical, radial))


def quadrants(size: int = 80) -> Image.Image:
    """Red / green on top, blue / white at the bottom."""
    img = Image.new("RGB", (size, size))
    half = size // 2
    img.paste(RED, (0, 0, half, half))
    img.paste(GREEN, (half, 0, size, half))
    img.paste(BLUE, (0, half, half, size))
    img.paste(WHITE, (half, half, size, size))
    return img


def png_bytes(width: int = 16, height: int = 8) -> bytes:
    return encode(gradient(width, height), "PNG")


def jpeg_bytes(width: int = 64, height: int = 48) -> bytes:
    return encode(gradient(width, height), "JPEG", quality=90)


def webp_bytes(width: int = 64, height: int = 48) -> bytes:
    return encode(gradient(width, height), "WEBP", quality=90)


def png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, payload) for every chunk of a PNG."""
    chunks = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk_type = data[pos + 4 : pos + 8]
        chunks.append((pos, chunk_type, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def replace_png_chunk(data: bytes, chunk_type: bytes, payload: bytes, *, fix_crc: bool = True) -> bytes:
    """Replace the payload of the first ``chunk_type`` chunk (same length)."""
    for pos, ctype, old in png_chunks(data):
        if ctype == chunk_type:
            assert len(payload) == len(old)
            crc = (
                zlib.crc32(chunk_type + payload)
                if fix_crc
                else struct.unpack(">I", data[pos + 8 + len(old) : pos + 12 + len(old)])[0]
            )
            chunk = data[pos : pos + 8] + payload + struct.pack(">I", crc)
            return data[:pos] + chunk + data[pos + 12 + len(old) :]
    raise AssertionError(f"no {chunk_type!r} chunk")


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR is patched to claim another size (CRC fixed)."""
    data = png_bytes(4, 4)
    ihdr = png_chunks(data)[0][2]
    patched = struct.pack(">II", width, height) + ihdr[8:]
    return replace_png_chunk(data, b"IHDR", patched)


def jpeg_with_declared_size(width: int, height: int) -> bytes:
    data = jpeg_bytes(16, 16)
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def animated(fmt: str) -> bytes:
    """3 frames: red first, then two (distinct, so they aren't merged) blues."""
    size = (32, 24)
    first = Image.new("RGB", size, RED)
    rest = [Image.new("RGB", size, BLUE), Image.new("RGB", size, (0, 0, 200))]
    options: dict[str, object] = {
        "save_all": True,
        "append_images": rest,
        "duration": 100,
    }
    if fmt == "WEBP":
        options["lossless"] = True
    return encode(first, fmt, **options)


def webp_with_canvas(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP whose canvas size is patched."""
    data = animated("WEBP")
    assert data[12:16] == b"VP8X"
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return data[:24] + canvas + data[30:]


def close(actual: Color, expected: Color, tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def rejected(data: bytes, **kwargs: int) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        inspect_image(data, **kwargs)
    err = info.value
    assert err.message
    assert str(err) == err.message
    return err


# --------------------------------------------------------------------------
# Constants and sniffing
# --------------------------------------------------------------------------


def test_constants() -> None:
    assert MAX_UPLOAD_BYTES == 10_485_760
    assert DEFAULT_MAX_PIXELS == 50_000_000
    assert THUMBNAIL_CONTENT_TYPE in {"image/webp", "image/png"}


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n", "image/png", id="png"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "image/png", id="png-more"),
        pytest.param(b"\xff\xd8\xff\xe0", "image/jpeg", id="jpeg"),
        pytest.param(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", id="webp"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAVEfmt ", None, id="riff-wave"),
        pytest.param(b"RIFF\x00\x00\x00\x00WEB", None, id="webp-too-short"),
        pytest.param(b"\x89PNG", None, id="png-prefix"),
        pytest.param(b"GIF89a", None, id="gif"),
        pytest.param(b"BM", None, id="bmp"),
        pytest.param(b"II*\x00", None, id="tiff"),
        pytest.param(b"%PDF-1.7", None, id="pdf"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


# --------------------------------------------------------------------------
# Accepted uploads
# --------------------------------------------------------------------------


def _p_with_transparency() -> Image.Image:
    """Palette image: index 0 (transparent) in the top-left 3x3, else 1 (red)."""
    img = Image.new("P", (9, 7), 1)
    img.putpalette([0, 0, 0, *RED])
    img.paste(0, (0, 0, 3, 3))
    img.info["transparency"] = 0
    return img


ACCEPTED: list[tuple[str, Callable[[], bytes], str, str, tuple[int, int]]] = [
    (
        "png-rgb",
        lambda: encode(gradient(123, 45), "PNG"),
        "image/png",
        "png",
        (123, 45),
    ),
    (
        "png-rgba",
        lambda: encode(Image.new("RGBA", (5, 9), (1, 2, 3, 4)), "PNG"),
        "image/png",
        "png",
        (5, 9),
    ),
    (
        "png-l",
        lambda: encode(Image.new("L", (7, 3), 9), "PNG"),
        "image/png",
        "png",
        (7, 3),
    ),
    (
        "png-1bit",
        lambda: encode(Image.new("1", (8, 8), 1), "PNG"),
        "image/png",
        "png",
        (8, 8),
    ),
    (
        "png-16bit",
        lambda: encode(Image.new("I;16", (6, 4), 40000), "PNG"),
        "image/png",
        "png",
        (6, 4),
    ),
    (
        "png-palette-transparent",
        lambda: encode(_p_with_transparency(), "PNG"),
        "image/png",
        "png",
        (9, 7),
    ),
    (
        "png-1x1",
        lambda: encode(Image.new("RGB", (1, 1)), "PNG"),
        "image/png",
        "png",
        (1, 1),
    ),
    (
        "png-trailing-bytes",
        lambda: png_bytes(10, 10) + b"trailing",
        "image/png",
        "png",
        (10, 10),
    ),
    ("jpeg-rgb", lambda: jpeg_bytes(64, 48), "image/jpeg", "jpg", (64, 48)),
    (
        "jpeg-grey",
        lambda: encode(Image.new("L", (33, 17), 80), "JPEG"),
        "image/jpeg",
        "jpg",
        (33, 17),
    ),
    (
        "jpeg-cmyk",
        lambda: encode(Image.new("CMYK", (20, 10), (0, 50, 100, 0)), "JPEG"),
        "image/jpeg",
        "jpg",
        (20, 10),
    ),
    (
        "jpeg-progressive",
        lambda: encode(gradient(50, 40), "JPEG", progressive=True),
        "image/jpeg",
        "jpg",
        (50, 40),
    ),
    (
        "jpeg-trailing-bytes",
        lambda: jpeg_bytes(30, 20) + b"\x00trailer",
        "image/jpeg",
        "jpg",
        (30, 20),
    ),
    ("webp-lossy", lambda: webp_bytes(64, 48), "image/webp", "webp", (64, 48)),
    (
        "webp-lossless",
        lambda: encode(gradient(31, 17), "WEBP", lossless=True),
        "image/webp",
        "webp",
        (31, 17),
    ),
    (
        "webp-rgba",
        lambda: encode(Image.new("RGBA", (12, 34), (9, 9, 9, 128)), "WEBP"),
        "image/webp",
        "webp",
        (12, 34),
    ),
]


@pytest.mark.parametrize(
    ("make", "content_type", "extension", "size"),
    [pytest.param(*row[1:], id=row[0]) for row in ACCEPTED],
)
def test_accepts_supported_formats(
    make: Callable[[], bytes], content_type: str, extension: str, size: tuple[int, int]
) -> None:
    data = make()
    info = inspect_image(data)
    assert info == ImageInfo(
        content_type=content_type,
        extension=extension,
        width=size[0],
        height=size[1],
        frames=1,
    )
    assert sniff_format(data) == content_type


def test_image_info_is_frozen() -> None:
    info = inspect_image(png_bytes())
    with pytest.raises(AttributeError):
        info.width = 1  # type: ignore[misc]


# --------------------------------------------------------------------------
# Rejected uploads
# --------------------------------------------------------------------------


UNSUPPORTED: list[tuple[str, Callable[[], bytes]]] = [
    ("gif", lambda: encode(Image.new("RGB", (8, 8), RED), "GIF")),
    (
        "animated-gif",
        lambda: encode(
            Image.new("RGB", (8, 8), RED),
            "GIF",
            save_all=True,
            append_images=[Image.new("RGB", (8, 8), BLUE)],
        ),
    ),
    ("bmp", lambda: encode(Image.new("RGB", (8, 8), RED), "BMP")),
    ("tiff", lambda: encode(Image.new("RGB", (8, 8), RED), "TIFF")),
    ("ico", lambda: encode(Image.new("RGB", (16, 16), RED), "ICO")),
    ("plain-text", lambda: b"hello, this is definitely not an image\n"),
    ("svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'),
    (
        "pdf",
        lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    ),
    (
        "riff-wave",
        lambda: b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x00" * 24,
    ),
    ("empty", lambda: b""),
    ("png-signature-prefix", lambda: b"\x89PN"),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in UNSUPPORTED])
def test_rejects_unsupported_format(make: Callable[[], bytes]) -> None:
    err = rejected(make())
    assert err.code == "unsupported_format"
    assert err.message == "Only PNG, JPEG and WebP images are supported."


def _corrupt_idat(*, fix_crc: bool) -> bytes:
    data = png_bytes(32, 32)
    idat = next(payload for _, ctype, payload in png_chunks(data) if ctype == b"IDAT")
    garbage = bytes((b * 7 + 13) & 0xFF for b in range(len(idat)))
    return replace_png_chunk(data, b"IDAT", garbage, fix_crc=fix_crc)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


INVALID: list[tuple[str, Callable[[], bytes]]] = [
    ("png-truncated-half", lambda: _half(png_bytes(32, 32))),
    ("png-missing-iend", lambda: png_bytes(32, 32)[:-12]),
    ("png-signature-only", lambda: b"\x89PNG\r\n\x1a\n"),
    ("png-corrupt-idat", lambda: _corrupt_idat(fix_crc=False)),
    ("png-corrupt-idat-crc-fixed", lambda: _corrupt_idat(fix_crc=True)),
    ("png-declares-20000x20000", lambda: png_with_declared_size(20000, 20000)),
    ("png-declares-zero-width", lambda: png_with_declared_size(0, 4)),
    ("jpeg-truncated-half", lambda: _half(jpeg_bytes(64, 64))),
    ("jpeg-truncated-end", lambda: jpeg_bytes(64, 64)[:-2]),
    ("jpeg-signature-only", lambda: b"\xff\xd8\xff"),
    ("jpeg-declares-65535x65535", lambda: jpeg_with_declared_size(65535, 65535)),
    ("jpeg-declares-zero-height", lambda: jpeg_with_declared_size(16, 0)),
    ("webp-truncated-half", lambda: _half(webp_bytes(64, 64))),
    ("webp-header-only", lambda: b"RIFF\x04\x00\x00\x00WEBP"),
    ("webp-declares-16000x16000", lambda: webp_with_canvas(16000, 16000)),
    (
        "webp-garbage-bitstream",
        lambda: b"RIFF" + struct.pack("<I", 4 + 8 + 16) + b"WEBPVP8 " + struct.pack("<I", 16) + b"\x00" * 16,
    ),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in INVALID])
def test_rejects_invalid_image(make: Callable[[], bytes]) -> None:
    assert rejected(make()).code == "invalid_image"


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in INVALID])
def test_truncation_checks_do_not_rely_on_pillow_global(
    make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some other code may have weakened Pillow globally; we must still refuse.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert rejected(make()).code == "invalid_image"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: png_with_declared_size(20000, 20000), id="png"),
        pytest.param(lambda: jpeg_with_declared_size(65535, 65535), id="jpeg"),
        pytest.param(lambda: webp_with_canvas(16000, 16000), id="webp"),
    ],
)
def test_declared_oversize_is_rejected_from_header(make: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # Rejected by the header check: Pillow is never even asked to open it.
    def must_not_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open called for an oversized image")

    monkeypatch.setattr(Image, "open", must_not_open)
    err = rejected(make())
    assert err.code == "invalid_image"
    assert "50,000,000 pixels" in err.message


def test_max_pixels_is_configurable() -> None:
    data = encode(gradient(100, 100), "PNG")
    assert inspect_image(data, max_pixels=10_000).width == 100
    assert rejected(data, max_pixels=9_999).code == "invalid_image"
    with pytest.raises(ValueError, match="max_pixels"):
        inspect_image(data, max_pixels=0)


@pytest.mark.parametrize(
    "size",
    [
        pytest.param((15, 10), id="pillow-warning-range"),
        pytest.param((30, 30), id="pillow-error-range"),
    ],
)
def test_pillow_bomb_limit_is_an_error_not_a_warning(size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that.  We
    # must reject both with invalid_image and never emit the warning.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = encode(gradient(*size), "PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert rejected(data).code == "invalid_image"
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("size", [(15, 10), (30, 30)])
@pytest.mark.parametrize("escalate", [False, True])
def test_pillow_bomb_backstop(size: tuple[int, int], escalate: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # If our header parser ever under-reports the size, Pillow's own
    # DecompressionBombError / (escalated) Warning still ends as invalid_image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(imaging.validate, "header_dimensions", lambda data, fmt: (1, 1))
    data = encode(gradient(*size), "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error" if escalate else "ignore")
        assert rejected(data).code == "invalid_image"


def test_does_not_change_pillow_global_state() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    inspect_image(png_bytes())
    make_thumbnail(jpeg_bytes())
    crop_image(webp_bytes(), x=0, y=0, width=2, height=2)
    with pytest.raises(ImageRejected):
        inspect_image(png_with_declared_size(20000, 20000))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# --------------------------------------------------------------------------
# Multi-frame
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("WEBP", "image/webp"), ("PNG", "image/png")],
    ids=["webp", "apng"],
)
def test_animated_uses_first_frame(fmt: str, content_type: str) -> None:
    data = animated(fmt)
    info = inspect_image(data)
    assert info == ImageInfo(content_type, info.extension, 32, 24, frames=3)

    thumb = open_image(make_thumbnail(data))
    assert getattr(thumb, "n_frames", 1) == 1
    assert thumb.size == (32, 24)
    assert close(thumb.convert("RGB").getpixel((16, 12)), RED, 8)  # type: ignore[arg-type]

    out, out_info = crop_image(data, x=4, y=4, width=10, height=10)
    assert out_info.frames == 1
    assert inspect_image(out) == out_info
    assert open_image(out).convert("RGB").getpixel((5, 5)) == RED


# --------------------------------------------------------------------------
# Thumbnails
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        pytest.param((1000, 500), 256, (256, 128), id="landscape"),
        pytest.param((500, 1000), 256, (128, 256), id="portrait"),
        pytest.param((512, 512), 256, (256, 256), id="square"),
        pytest.param((100, 50), 256, (100, 50), id="small-not-upscaled"),
        pytest.param((3000, 10), 256, (256, 1), id="extreme-aspect"),
        pytest.param((300, 200), 64, (64, 43), id="custom-max-side"),
    ],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_thumbnail_size_and_aspect(fmt: str, size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    data = encode(gradient(*size), fmt)
    thumb_bytes = make_thumbnail(data, max_side=max_side)
    assert sniff_format(thumb_bytes) == THUMBNAIL_CONTENT_TYPE
    thumb = open_image(thumb_bytes)
    assert thumb.size == expected
    assert max(thumb.size) <= max_side
    assert thumb.mode == "RGB"


def test_thumbnail_default_max_side_is_256() -> None:
    thumb = open_image(make_thumbnail(encode(gradient(600, 300), "PNG")))
    assert thumb.size == (256, 128)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(Image.new("RGBA", (40, 20), (255, 0, 0, 0)), id="rgba"),
        pytest.param(_p_with_transparency(), id="palette-transparency"),
        pytest.param(Image.new("LA", (40, 20), (10, 0)), id="la"),
    ],
)
def test_thumbnail_keeps_transparency(source: Image.Image) -> None:
    thumb = open_image(make_thumbnail(encode(source, "PNG")))
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((0, 0))[3] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(Image.new("L", (8, 8), 128), (128, 128, 128), id="grey"),
        pytest.param(Image.new("I;16", (8, 8), 0x8000), (128, 128, 128), id="16-bit-grey"),
        pytest.param(Image.new("1", (8, 8), 1), (255, 255, 255), id="bilevel"),
    ],
)
def test_thumbnail_converts_to_rgb(source: Image.Image, expected: Color) -> None:
    thumb = open_image(make_thumbnail(encode(source, "PNG")))
    assert thumb.mode == "RGB"
    assert close(thumb.getpixel((4, 4)), expected, 6)  # type: ignore[arg-type]


def test_thumbnail_of_cmyk_jpeg_is_rgb() -> None:
    data = encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG", quality=95)
    thumb = open_image(make_thumbnail(data))
    assert thumb.mode == "RGB"
    assert close(thumb.getpixel((10, 5)), RED, 24)  # type: ignore[arg-type]


def _oriented_jpeg() -> bytes:
    """Stored 40x20: left half red, right half blue; EXIF says rotate 90 CW."""
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_stored_dims_but_upright_thumbnail() -> None:
    data = _oriented_jpeg()
    info = inspect_image(data)
    assert (info.width, info.height) == (40, 20)  # as stored, not rotated

    thumb = open_image(make_thumbnail(data))
    assert thumb.size == (20, 40)  # displayed upright
    # Orientation 6: the stored left (red) half ends up on top.
    assert close(thumb.getpixel((10, 5)), RED, 24)  # type: ignore[arg-type]
    assert close(thumb.getpixel((10, 35)), BLUE, 24)  # type: ignore[arg-type]
    assert thumb.getexif().get(0x0112) is None


def test_crop_uses_stored_coordinates_and_keeps_orientation() -> None:
    out, info = crop_image(_oriented_jpeg(), x=0, y=0, width=10, height=20)
    assert (info.width, info.height) == (10, 20)
    cropped = open_image(out)
    assert cropped.size == (10, 20)
    assert close(cropped.getpixel((5, 10)), RED, 24)  # type: ignore[arg-type]
    assert cropped.getexif().get(0x0112) == 6


def test_thumbnail_rejects_bad_input() -> None:
    with pytest.raises(ImageRejected) as err:
        make_thumbnail(b"GIF89a not really")
    assert err.value.code == "unsupported_format"
    with pytest.raises(ImageRejected) as err:
        make_thumbnail(_half(png_bytes(32, 32)))
    assert err.value.code == "invalid_image"
    with pytest.raises(ValueError, match="max_side"):
        make_thumbnail(png_bytes(), max_side=0)


# --------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------

Box = tuple[int, int, int, int]

CROP_FORMATS = [
    pytest.param("PNG", {}, 0, "image/png", id="png"),
    pytest.param("JPEG", {"quality": 95}, 40, "image/jpeg", id="jpeg"),
    pytest.param("WEBP", {"quality": 95}, 40, "image/webp", id="webp-lossy"),
    pytest.param("WEBP", {"lossless": True}, 0, "image/webp", id="webp-lossless"),
]

# (box, [(point in crop, expected colour)])
VALID_CROPS = [
    pytest.param((0, 0, 80, 80), [((10, 10), RED), ((70, 70), WHITE)], id="full-image"),
    pytest.param((5, 5, 20, 20), [((0, 0), RED), ((10, 10), RED)], id="inside-red"),
    pytest.param((50, 50, 30, 30), [((15, 15), WHITE), ((29, 29), WHITE)], id="to-corner"),
    pytest.param(
        (20, 20, 40, 40),
        [((10, 10), RED), ((30, 10), GREEN), ((10, 30), BLUE), ((30, 30), WHITE)],
        id="centre-four-quadrants",
    ),
    pytest.param((60, 10, 20, 10), [((10, 5), GREEN)], id="non-square"),
    pytest.param((79, 79, 1, 1), [((0, 0), WHITE)], id="last-pixel"),
]


@pytest.mark.parametrize(("box", "samples"), VALID_CROPS)
@pytest.mark.parametrize(("fmt", "options", "tolerance", "content_type"), CROP_FORMATS)
def test_crop(
    fmt: str,
    options: dict[str, object],
    tolerance: int,
    content_type: str,
    box: Box,
    samples: list[tuple[tuple[int, int], Color]],
) -> None:
    x, y, width, height = box
    data = encode(quadrants(80), fmt, **options)
    out, info = crop_image(data, x=x, y=y, width=width, height=height)

    assert sniff_format(out) == content_type  # same format as the input
    assert info.content_type == content_type
    assert (info.width, info.height, info.frames) == (width, height, 1)
    assert inspect_image(out) == info
    cropped = open_image(out).convert("RGB")
    assert cropped.size == (width, height)
    for point, expected in samples:
        actual = cropped.getpixel(point)
        assert close(actual, expected, tolerance), (point, actual, expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "bitstream"),
    [({"lossless": True}, b"VP8L"), ({"quality": 80}, b"VP8 ")],
    ids=["lossless", "lossy"],
)
def test_webp_crop_keeps_lossless_or_lossy(options: dict[str, object], bitstream: bytes) -> None:
    out, _ = crop_image(encode(quadrants(), "WEBP", **options), x=0, y=0, width=8, height=8)
    assert out[12:16] == bitstream


def test_png_crop_keeps_palette_and_transparency() -> None:
    out, _ = crop_image(encode(_p_with_transparency(), "PNG"), x=1, y=1, width=3, height=3)
    cropped = open_image(out)
    assert cropped.mode == "P"
    assert cropped.info.get("transparency") == 0


@pytest.mark.parametrize(
    "box",
    [
        pytest.param((-1, 0, 10, 10), id="negative-x"),
        pytest.param((0, -1, 10, 10), id="negative-y"),
        pytest.param((0, 0, 0, 10), id="zero-width"),
        pytest.param((0, 0, 10, 0), id="zero-height"),
        pytest.param((0, 0, -5, 10), id="negative-width"),
        pytest.param((0, 0, 81, 80), id="too-wide"),
        pytest.param((0, 0, 80, 81), id="too-tall"),
        pytest.param((79, 0, 2, 1), id="leaves-right"),
        pytest.param((0, 79, 1, 2), id="leaves-bottom"),
        pytest.param((80, 0, 1, 1), id="starts-outside"),
        pytest.param((1000, 1000, 1, 1), id="far-outside"),
    ],
)
def test_invalid_crop(box: Box) -> None:
    x, y, width, height = box
    data = encode(quadrants(80), "PNG")
    with pytest.raises(CropRejected) as err:
        crop_image(data, x=x, y=y, width=width, height=height)
    assert err.value.code == "invalid_crop"
    assert err.value.message
    assert str(err.value) == err.value.message


def test_crop_of_bad_image_is_image_rejected() -> None:
    with pytest.raises(ImageRejected) as err:
        crop_image(_half(jpeg_bytes()), x=0, y=0, width=1, height=1)
    assert err.value.code == "invalid_image"


# --------------------------------------------------------------------------
# encode_png
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "mode"),
    [
        pytest.param(Image.new("RGB", (3, 2), RED), "RGB", id="rgb"),
        pytest.param(Image.new("RGBA", (3, 2), (1, 2, 3, 4)), "RGBA", id="rgba"),
        pytest.param(Image.new("L", (3, 2), 7), "L", id="l"),
        pytest.param(Image.new("CMYK", (3, 2), (0, 0, 0, 0)), "RGB", id="cmyk"),
        pytest.param(Image.new("I", (3, 2), 1000), "I;16", id="i32"),
        pytest.param(Image.new("PA", (3, 2)), "RGBA", id="pa"),
    ],
)
def test_encode_png(source: Image.Image, mode: str) -> None:
    data = encode_png(source)
    assert sniff_format(data) == "image/png"
    decoded = open_image(data)
    assert decoded.size == source.size
    assert decoded.mode == mode
    assert inspect_image(data).content_type == "image/png"
