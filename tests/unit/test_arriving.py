"""Decoding a file while its bytes arrive (easel_shared.imaging.arriving and
``inspect_with_thumbnail_while_arriving``): the answer is the usual one, broken files are never
accepted, and a body that stops arriving or is abandoned gives its thread and memory back."""

from __future__ import annotations

import io
import random
import struct
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from PIL import Image
from starlette.requests import Request

from easel_api.arriving_decode import EarlyDecode, EarlyDecoder
from easel_shared.imaging import DEFAULT_MAX_PIXELS, ImageInfo, ImageRejected, decode_budget, inspect_with_thumbnail
from easel_shared.imaging.arriving import ArrivingBytes, BodyAbandoned, BodyTooSlow
from easel_shared.imaging.transform import inspect_with_thumbnail_while_arriving
from easel_shared.imaging.validate import NotStreamable
from easel_shared.thumbnails import rendered
from tests.fixtures.stack import wait_for

HEAD = 256 * 1024  # what must arrive before the header is read (validate._HEAD_BYTES)


def noise(width: int, height: int, mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Incompressible pixels: the file is large, so the decoder reads it in many pieces."""
    bands = len(mode)
    return Image.frombytes(mode, (width, height), random.Random(seed).randbytes(width * height * bands))


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def jpeg_turned(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(noise(700, 500), "JPEG", quality=92, exif=exif.tobytes())


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def with_bad_last_crc(png: bytes) -> bytes:
    """The IEND chunk's CRC broken: Pillow decodes the pixels, the container check refuses."""
    return png[:-4] + bytes(b ^ 0xFF for b in png[-4:])


def pieces(data: bytes, seed: int = 7) -> list[bytes]:
    """`data` cut at uneven places, as a network hands it over."""
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 7, 1000, 16_384, 65_536, 200_000])
        out.append(data[pos : pos + size])
        pos += size
    return out


def decode_in_thread(body: ArrivingBytes) -> tuple[ThreadPoolExecutor, Future[object]]:
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(inspect_with_thumbnail_while_arriving, body)


def arrive(data: bytes, deadline_seconds: float = 60.0) -> object:
    """The decode's answer (or exception) when `data` arrives piece by piece from this thread
    while the decode reads it on another."""
    body = ArrivingBytes(time.monotonic() + deadline_seconds)
    pool, result = decode_in_thread(body)
    with pool:
        for piece in pieces(data):
            body.add(piece)
        body.finish(data)
        try:
            return result.result(timeout=60)
        except Exception as exc:
            return exc


@pytest.mark.parametrize("data", [
    pytest.param(encode(noise(600, 400), "PNG"), id="png"),
    pytest.param(encode(noise(500, 300, "RGBA"), "PNG"), id="png-with-alpha"),
    pytest.param(encode(noise(600, 400).convert("P"), "PNG"), id="png-palette"),
    pytest.param(jpeg_turned(6), id="jpeg-turned-by-exif"),
    pytest.param(encode(noise(640, 480), "JPEG", quality=90, progressive=True), id="jpeg-progressive"),
    pytest.param(encode(noise(8, 8), "PNG"), id="png-smaller-than-a-piece"),
])
def test_a_file_decoded_while_it_arrives_gives_the_usual_answer(data: bytes) -> None:
    assert arrive(data) == inspect_with_thumbnail(data)  # the description and the thumbnail's bytes
    assert decode_budget().in_use == 0


def test_webp_is_left_to_the_usual_decode() -> None:
    data = encode(noise(900, 600), "WEBP", quality=90)
    assert len(data) > HEAD  # its RIFF header names a size not yet arrived when the head is read
    assert isinstance(arrive(data), NotStreamable)
    assert inspect_with_thumbnail(data)[0].content_type == "image/webp"


@pytest.mark.parametrize("data", [
    pytest.param(encode(noise(600, 400), "PNG")[:400_000], id="png-cut-in-its-pixels"),
    pytest.param(with_bad_last_crc(encode(noise(600, 400), "PNG")), id="png-with-a-bad-crc"),
    pytest.param(encode(noise(600, 400), "PNG")[:-12], id="png-without-iend"),
    pytest.param(encode(noise(640, 480), "JPEG", quality=90)[:-2], id="jpeg-without-its-end"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 10_000, 10_000, 8, 6, 0, 0, 0)),
                 id="png-over-the-pixel-limit"),
    pytest.param(b"GIF89a" + bytes(300_000), id="not-an-image"),
])
def test_a_broken_file_is_never_accepted_while_it_arrives(data: bytes) -> None:
    answer = arrive(data)
    assert isinstance(answer, ImageRejected), answer
    with pytest.raises(ImageRejected):  # what the upload then says comes from the usual decode
        inspect_with_thumbnail(data)
    assert decode_budget().in_use == 0


def test_a_body_that_stops_arriving_is_dropped_at_the_deadline() -> None:
    data = encode(noise(900, 700), "PNG")
    body = ArrivingBytes(time.monotonic() + 0.3)
    pool, result = decode_in_thread(body)
    with pool:
        body.add(data[: len(data) // 2])  # past the head: the decode has started, then waits
        with pytest.raises(ImageRejected) as refused:
            result.result(timeout=60)
    assert isinstance(refused.value.__cause__, BodyTooSlow)
    assert decode_budget().in_use == 0  # its pixel memory is given back
    body.add(data[len(data) // 2 :])
    body.finish(data)  # the bytes still arrive whole, for the usual decode
    assert inspect_with_thumbnail(data)[0].width == 900


def test_an_abandoned_body_ends_the_decode_and_gives_its_memory_back() -> None:
    data = encode(noise(900, 700), "PNG")
    body = ArrivingBytes(time.monotonic() + 600)
    pool, result = decode_in_thread(body)
    with pool:
        body.add(data[: len(data) // 2])
        wait_for(lambda: decode_budget().in_use > 0, interval=0.005, what="the decode to reserve its memory")
        body.abandon()
        with pytest.raises(ImageRejected) as refused:
            result.result(timeout=60)
    assert isinstance(refused.value.__cause__, BodyAbandoned)
    assert decode_budget().in_use == 0


def test_a_body_abandoned_before_its_head_arrived() -> None:
    body = ArrivingBytes(time.monotonic() + 600)
    pool, result = decode_in_thread(body)
    with pool:
        body.add(b"\x89PNG\r\n\x1a\n")
        body.abandon()
        with pytest.raises(BodyAbandoned):
            result.result(timeout=60)


def test_reads_and_seeks_see_the_file_as_it_is() -> None:
    data = random.Random(3).randbytes(300_000)
    body = ArrivingBytes(time.monotonic() + 60)
    for piece in pieces(data)[:3]:
        body.add(piece)
    arrived = sum(map(len, pieces(data)[:3]))
    rng = random.Random(4)
    for _ in range(200):  # anything that has arrived reads as the file's own bytes
        start = rng.randrange(arrived)
        size = rng.randrange(arrived - start + 1)
        assert body.seek(start) == start
        assert body.read(size) == data[start : start + size]
        assert body.tell() == start + size

    for piece in pieces(data)[3:]:
        body.add(piece)
    body.finish(data)
    body.seek(0)
    assert body.read() == data  # to the end: all of it
    assert body.head(HEAD) == data[:HEAD]
    assert body.seek(-10, io.SEEK_END) == len(data) - 10 and body.read(100) == data[-10:]
    assert body.read(5) == b""  # past the end: a short read, as decoders expect


def test_reading_to_the_end_waits_for_the_end_not_for_more_pieces() -> None:
    data = random.Random(5).randbytes(300_000)
    body = ArrivingBytes(time.monotonic() + 0.5)
    ended: list[object] = []

    def read_to_the_end() -> None:
        try:
            ended.append(body.read())
        except BodyTooSlow as exc:
            ended.append(exc)

    reader = threading.Thread(target=read_to_the_end)
    reader.start()
    for piece in pieces(data):  # every byte arrives, but the file is never said to be whole
        body.add(piece)
    reader.join()  # the deadline ends the wait
    assert len(ended) == 1 and isinstance(ended[0], BodyTooSlow), ended


def jpeg_with_long_metadata() -> bytes:
    """A JPEG whose frame header comes after 300 KB of comment segments (each at most 64 KiB)."""
    plain = encode(noise(200, 150), "JPEG", quality=90)
    comments = b"".join(b"\xff\xfe" + struct.pack(">H", 60_002) + bytes(60_000) for _ in range(5))
    return plain[:2] + comments + plain[2:]


def test_a_jpeg_whose_header_lies_past_the_head_is_left_to_the_usual_decode() -> None:
    data = jpeg_with_long_metadata()
    assert isinstance(arrive(data), ImageRejected)  # the head holds no frame header
    assert inspect_with_thumbnail(data)[0].width == 200  # the usual decode takes it


def test_the_whole_file_must_be_what_arrived() -> None:
    body = ArrivingBytes(time.monotonic() + 60)
    body.add(b"abc")
    with pytest.raises(ValueError):
        body.finish(b"abcd")


# --------------------------------------------------------------------------- the api's early decode


def http_request(content_length: int) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-length", str(content_length).encode())]})


def test_the_early_decode_answers_before_it_renders_the_thumbnail() -> None:
    """The upload's transaction starts on the answer and runs while the thumbnail is rendered;
    the thumbnail is the one the usual decode renders."""
    data = encode(noise(600, 400), "PNG")
    answered = threading.Event()
    go_on = threading.Event()

    def answered_then_held(_: Future[ImageInfo | None]) -> None:
        answered.set()
        go_on.wait(60)  # runs on the decoder's thread, which sets the answer

    decoder = EarlyDecoder(slots=1, window_seconds=60, max_pixels=DEFAULT_MAX_PIXELS)
    try:
        early = decoder.start(http_request(len(data)))
        assert early is not None
        # The decoder's thread is held once it has answered, before it renders the thumbnail.
        early._decoded.add_done_callback(answered_then_held)
        for piece in pieces(data):
            early.add(piece)
        early.finish(data)
        answer = early.result()
        assert answer is not None
        info, thumbnail = answer
        assert answered.is_set() and not thumbnail.done()
        go_on.set()
        assert (info, thumbnail.result(timeout=60)) == inspect_with_thumbnail(data)
    finally:
        go_on.set()
        decoder.shutdown()


def test_an_early_decode_that_never_ran_answers_none() -> None:
    """A decode canceled before it started (the api stopping) sends the upload to the usual
    decode instead of leaving it waiting for an answer that never comes."""
    never_ran: Future[bytes | None] = Future()
    never_ran.cancel()
    early = EarlyDecode(ArrivingBytes(time.monotonic() + 60), Future(), never_ran)
    assert early.result() is None


def test_a_thumbnail_the_decoder_could_not_render_is_rendered_from_the_bytes() -> None:
    data = encode(noise(300, 200), "PNG")
    failed: Future[bytes | None] = Future()
    failed.set_result(None)
    assert rendered(failed, data, DEFAULT_MAX_PIXELS) == inspect_with_thumbnail(data)[1]
