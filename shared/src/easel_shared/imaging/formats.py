"""Recognising PNG, JPEG and WebP and reading their headers and containers (no Pillow involved)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from easel_shared.imaging.base import corrupt

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
_INFLATE_STEP: Final = 1 << 20


@dataclass(frozen=True)
class ImageFormat:
    content_type: str
    extension: str
    pil_format: str  # name passed to Image.open(formats=[...]) and save()
    pil_opened_as: frozenset[str]  # acceptable values of Image.format


PNG: Final = ImageFormat("image/png", "png", "PNG", frozenset({"PNG"}))
# A JPEG with a Multi-Picture (MPO) segment is still a JPEG; Pillow's JPEG
# plugin hands those to its MPO class.
JPEG: Final = ImageFormat("image/jpeg", "jpg", "JPEG", frozenset({"JPEG", "MPO"}))
WEBP: Final = ImageFormat("image/webp", "webp", "WEBP", frozenset({"WEBP"}))
BY_CONTENT_TYPE: Final = {f.content_type: f for f in (PNG, JPEG, WEBP)}


def sniff_format(head: bytes) -> str | None:
    """Return the content type implied by the magic bytes, or ``None``.

    Only PNG, JPEG and WebP are recognised.  ``head`` may be just the start of
    the data; at least 12 bytes are needed to recognise WebP (``RIFF`` alone
    is also WAV/AVI), 8 for PNG and 3 for JPEG.
    """
    if head.startswith(_PNG_SIGNATURE):
        return PNG.content_type
    if head.startswith(_JPEG_SIGNATURE):
        return JPEG.content_type
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP.content_type
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
            raise corrupt()
        length, chunk_type = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + int(length)
        if int(length) > 0x7FFFFFFF or end + 4 > n:
            raise corrupt()
        chunks.append((pos, bytes(chunk_type), pos + 8, end))
        if chunk_type == b"IEND":
            return chunks
        pos = end + 4


def _png_dimensions(data: bytes) -> tuple[int, int]:
    # The IHDR chunk must come first: length 13, type, width, height (BE).
    if len(data) < 24 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise corrupt()
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
            raise corrupt()  # no scan before the end: truncated
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE_MARKERS or marker == 0x00:
            continue
        if pos + 2 > n:
            raise corrupt()
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            raise corrupt()
        if marker in _JPEG_SOF_MARKERS:
            if length < 7:
                raise corrupt()
            h, w = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if int(w) * int(h) >= width * height:
                width, height = int(w), int(h)
        pos += length
        if marker == 0xDA:  # SOS: entropy-coded data follows
            if width < 0:
                raise corrupt()  # scan without a frame header
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
            raise corrupt()
        chunks.append((fourcc, pos + 8, payload_end))
        pos = payload_end + (int(size) & 1)  # chunks are padded to even sizes
    return chunks


def _webp_riff_end(data: bytes) -> int:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = 8 + int(riff_size)
    if end > len(data):
        raise corrupt()  # the container promises more bytes than we have
    return end


def _webp_dimensions(data: bytes) -> tuple[int, int]:
    chunks = _webp_chunks(data, 12, _webp_riff_end(data))
    if not chunks:
        raise corrupt()
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
    raise corrupt()


def webp_is_lossless(data: bytes) -> bool:
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


def header_dimensions(data: bytes, fmt: ImageFormat) -> tuple[int, int]:
    """Width and height as declared by the file header (nothing decoded)."""
    if fmt is PNG:
        return _png_dimensions(data)
    if fmt is JPEG:
        width, height, _ = _jpeg_scan_start(data)
        return width, height
    return _webp_dimensions(data)


def check_structure(data: bytes, fmt: ImageFormat) -> None:
    """Refuse truncated/corrupt containers without relying on Pillow globals."""
    if fmt is PNG:
        chunks = _png_chunks(data)  # raises unless complete up to IEND
        view = memoryview(data)
        for pos, _, _, end in chunks:
            (crc,) = struct.unpack(">I", data[end : end + 4])
            if zlib.crc32(view[pos + 4 : end]) != crc:
                raise corrupt()
    elif fmt is JPEG:
        # 0xFF 0xD9 cannot occur inside entropy-coded data (0xFF is stuffed),
        # so an EOI after the first scan header means the stream is complete.
        _, _, scan = _jpeg_scan_start(data)
        if data.rfind(b"\xff\xd9") < scan:
            raise corrupt()
    else:
        _webp_riff_end(data)


def check_png_deflate(data: bytes) -> None:
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
        raise corrupt() from exc
    if not inflater.eof:
        raise corrupt()
