"""What the vendor adapters share: size mapping, wait headers, capped downloads, exact output size."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from easel_shared.domain.catalog import ModelSpec
from easel_worker.models.base import ModelError
from easel_worker.models.vendors.bfl import bfl_size
from easel_worker.models.vendors.common import VendorHttp, as_png, cut, retry_after
from easel_worker.models.vendors.gemini import gemini_aspect
from easel_worker.models.vendors.openai import openai_size

SPEC = ModelSpec(id="v", name="Vendor model", provider="fal", vendor_model="fal-ai/flux/dev",
                 max_reference_images=0, resolutions=("1K",), aspect_ratios=("1:1",), credits={"1K": 1},
                 timeout_seconds=5)


def png(size: tuple[int, int], color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(("size", "expected"), [
    ((1024, 1024), "1024x1024"), ((1024, 576), "1536x1024"), ((576, 1024), "1024x1536"),
    ((1024, 768), "1536x1024"), ((768, 1024), "1024x1536"), ((2048, 1152), "1536x1024"),
])
def test_openai_gets_the_gpt_image_size_of_the_nearest_aspect(size: tuple[int, int], expected: str) -> None:
    assert openai_size(*size) == expected


@pytest.mark.parametrize(("size", "expected"), [
    ((1024, 1024), (1024, 1024)), ((1024, 576), (1024, 576)), ((2048, 1152), (1440, 800)),
    ((1536, 2048), (1088, 1440)), ((2048, 2048), (1440, 1440)), ((1024, 200), (1024, 256)),
])
def test_bfl_gets_multiples_of_32_within_its_limits(size: tuple[int, int], expected: tuple[int, int]) -> None:
    width, height = bfl_size(*size)
    assert (width, height) == expected
    assert width % 32 == 0 and height % 32 == 0 and 256 <= min(width, height) and max(width, height) <= 1440


@pytest.mark.parametrize(("size", "expected"), [
    ((1024, 1024), "1:1"), ((1024, 576), "16:9"), ((576, 1024), "9:16"), ((1024, 768), "4:3"),
    ((768, 1024), "3:4"), ((1024, 440), "21:9"),
])
def test_gemini_gets_its_nearest_aspect_ratio(size: tuple[int, int], expected: str) -> None:
    assert gemini_aspect(*size) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"x-ratelimit-reset-requests": "1s"}, 1.0),
    ({"x-ratelimit-reset-requests": "6m0s"}, 30.0),  # capped
    ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
    ({"retry-after": "1", "x-ratelimit-reset-requests": "2s"}, 2.0),
    ({}, None),
    ({"retry-after": "soon"}, None),
])
def test_wait_headers_are_read_and_capped(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(httpx.Response(429, headers=headers)) == expected


def test_vendor_messages_are_cut_and_never_carry_the_key() -> None:
    text = cut("bad key sk-secret-123\n" + "x" * 1000, "sk-secret-123")
    assert "sk-secret-123" not in text and len(text) == 300 and "\n" not in text


@pytest.mark.parametrize("size", [(1024, 1024), (1344, 768), (300, 700)])
def test_any_vendor_picture_becomes_exactly_the_contract_size(size: tuple[int, int]) -> None:
    out = as_png(png(size), 1024, 576, "Vendor model")
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "PNG" and img.size == (1024, 576)


def test_a_picture_already_of_the_right_size_passes_unchanged() -> None:
    data = png((1024, 576))
    assert as_png(data, 1024, 576, "Vendor model") is data


@pytest.fixture
def files() -> Iterator[tuple[str, dict[str, int]]]:
    """Serves /big (40 MB promised without Content-Length), /image and /text; counts bytes sent."""
    sent = {"big": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/big":
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                chunk = b"\0" * 65536
                try:
                    for _ in range(640):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent["big"] += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            body = png((64, 32)) if self.path == "/image" else b"<html>not an image</html>"
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sent
    finally:
        server.shutdown()


def test_downloads_are_checked_like_uploads(files: tuple[str, dict[str, int]]) -> None:
    url, _ = files
    http = VendorHttp("fal")
    assert http.download(f"{url}/image", spec=SPEC, should_cancel=lambda: False) == png((64, 32))
    with pytest.raises(ModelError) as excinfo:
        http.download(f"{url}/text", spec=SPEC, should_cancel=lambda: False)
    assert excinfo.value.code == "provider_error"


def test_downloads_stop_reading_at_the_size_cap(files: tuple[str, dict[str, int]]) -> None:
    url, sent = files
    http = VendorHttp("fal")
    with pytest.raises(ModelError) as excinfo:
        http.download(f"{url}/big", spec=SPEC, should_cancel=lambda: False, max_bytes=1_000_000)
    assert excinfo.value.code == "provider_error" and "too large" in excinfo.value.message
    assert sent["big"] < 40 * 1024 * 1024  # the rest was never read


def test_a_canceled_wait_between_retries_ends_at_once() -> None:
    http = VendorHttp("fal")
    with pytest.raises(ModelError) as excinfo:
        http.request("GET", "http://127.0.0.1:9/", spec=SPEC, should_cancel=lambda: True)
    assert excinfo.value.code == "canceled"
