"""HttpProvider against a real local HTTP server standing in for a vendor (loopback only)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from easel_shared.domain.catalog import ModelSpec
from easel_worker.models import GenerationInput, HttpProvider, ModelError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def jpeg(size: tuple[int, int], color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "image/png"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def image_reply(data: bytes | None = None) -> Reply:
    return Reply(body=data if data is not None else png())


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status=status, body=json.dumps(payload).encode(), content_type="application/json")


class Vendor:
    """Plays scripted replies in order (the last one repeats) and records requests."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [image_reply()]
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with vendor.lock:
                    vendor.requests.append(body)
                    index = min(len(vendor.requests), len(vendor.replies)) - 1
                    reply = vendor.replies[index]
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/generate"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    server = Vendor()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def spec_for(endpoint: str, timeout: float = 5.0) -> ModelSpec:
    return ModelSpec(
        id="vendor-pro",
        name="Vendor Pro",
        provider="http",
        max_reference_images=4,
        resolutions=("1K",),
        aspect_ratios=("1:1", "4:3"),
        credits={"1K": 10},
        endpoint=endpoint,
        timeout_seconds=timeout,
    )


def run(
    endpoint: str,
    *,
    size: tuple[int, int] = (64, 48),
    references: tuple[bytes, ...] = (),
    timeout: float = 5.0,
    retries: int = 3,
    should_cancel: Any = None,
) -> bytes:
    provider = HttpProvider(max_retries=retries, backoff_seconds=0.01, max_backoff_seconds=0.05)
    inp = GenerationInput("a neon fox", size[0], size[1], 1234, references, spec_for(endpoint, timeout))
    return provider.generate(inp, should_cancel=should_cancel or (lambda: False))


def test_success_with_image_bytes_and_request_shape(vendor: Vendor) -> None:
    image = png()
    vendor.script(image_reply(image))
    refs = (png((8, 8)), jpeg((16, 16)))
    assert run(vendor.url, references=refs) == image  # a PNG of the right size passes through
    assert len(vendor.requests) == 1
    sent = vendor.requests[0]
    assert sent["prompt"] == "a neon fox"
    assert (sent["width"], sent["height"], sent["seed"], sent["model"]) == (64, 48, 1234, "vendor-pro")
    assert [base64.b64decode(r) for r in sent["references"]] == list(refs)


def test_success_with_json_base64(vendor: Vendor) -> None:
    image = png()
    vendor.script(json_reply(200, {"image_base64": base64.b64encode(image).decode()}))
    assert run(vendor.url) == image


def test_other_formats_and_sizes_are_normalised_to_exact_png(vendor: Vendor) -> None:
    vendor.script(image_reply(jpeg((300, 300))))
    data = run(vendor.url, size=(64, 48))
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.size) == ("PNG", (64, 48))


def test_two_server_errors_then_success(vendor: Vendor) -> None:
    image = png()
    vendor.script(Reply(status=500, body=b"oops"), Reply(status=502, body=b"oops"), image_reply(image))
    assert run(vendor.url) == image
    assert len(vendor.requests) == 3


def test_persistent_server_errors_are_transient_unavailable(vendor: Vendor) -> None:
    vendor.script(Reply(status=500, body=b"down", content_type="text/plain"))
    with pytest.raises(ModelError) as excinfo:
        run(vendor.url)
    assert excinfo.value.code == "model_unavailable"
    assert excinfo.value.transient is True
    assert "HTTP 500" in excinfo.value.message
    assert len(vendor.requests) == 4  # first try + 3 retries


def test_content_rejected_is_permanent_and_not_retried(vendor: Vendor) -> None:
    vendor.script(json_reply(422, {"code": "content_rejected", "message": "Prompt refused."}))
    with pytest.raises(ModelError) as excinfo:
        run(vendor.url)
    assert excinfo.value.code == "content_rejected"
    assert excinfo.value.transient is False
    assert excinfo.value.message == "Prompt refused."
    assert len(vendor.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_permanent_model_errors(vendor: Vendor, status: int) -> None:
    vendor.script(json_reply(status, {"error": "bad input"}))
    with pytest.raises(ModelError) as excinfo:
        run(vendor.url)
    assert excinfo.value.code == "model_error"
    assert excinfo.value.transient is False
    assert excinfo.value.message == f"Vendor Pro rejected the request (HTTP {status}): bad input"
    assert len(vendor.requests) == 1


def test_rate_limit_is_retried(vendor: Vendor) -> None:
    image = png()
    vendor.script(Reply(status=429, headers={"Retry-After": "0"}), image_reply(image))
    assert run(vendor.url) == image
    assert len(vendor.requests) == 2


def test_slow_response_times_out(vendor: Vendor) -> None:
    vendor.script(Reply(delay=2.0))
    with pytest.raises(ModelError) as excinfo:
        run(vendor.url, timeout=0.2, retries=1)
    assert excinfo.value.code == "model_timeout"
    assert excinfo.value.transient is True
    assert len(vendor.requests) == 2


def test_connection_refused_is_transient_unavailable() -> None:
    with socket.socket() as sock:  # find a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelError) as excinfo:
        run(f"http://127.0.0.1:{port}/generate", retries=1)
    assert excinfo.value.code == "model_unavailable"
    assert excinfo.value.transient is True


def test_cancel_between_retries(vendor: Vendor) -> None:
    vendor.script(Reply(status=503))
    calls: list[int] = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(ModelError) as excinfo:
        run(vendor.url, should_cancel=should_cancel)
    assert excinfo.value.code == "canceled"
    assert len(vendor.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        image_reply(b"not an image"),
        json_reply(200, {"status": "ok"}),
        json_reply(200, {"image_base64": "***"}),
        Reply(body=b"<html></html>", content_type="text/html"),
    ],
)
def test_unreadable_success_is_a_permanent_model_error(vendor: Vendor, reply: Reply) -> None:
    vendor.script(reply)
    with pytest.raises(ModelError) as excinfo:
        run(vendor.url)
    assert excinfo.value.code == "model_error"
    assert excinfo.value.transient is False
    assert len(vendor.requests) == 1
