"""Uploading, serving, downloading and cropping a node's image."""

from __future__ import annotations

import io
import json
import random
import socket
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fixtures.processes import running, service_env
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import Account, Stack, one_database, png_bytes, wait_for

pytestmark = pytest.mark.integration

MAX_BYTES = 10_485_760
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --------------------------------------------------------------------------- image builders


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def quadrants(size: int = 80) -> Image.Image:
    """Red / green on top, blue / white at the bottom."""
    img = Image.new("RGB", (size, size))
    half = size // 2
    img.paste(RED, (0, 0, half, half))
    img.paste(GREEN, (half, 0, size, half))
    img.paste(BLUE, (0, half, half, size))
    img.paste(WHITE, (half, half, size, size))
    return img


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_of_size(total: int) -> bytes:
    """A valid PNG of exactly `total` bytes: a private ancillary chunk (which decoders skip) pads it."""
    base = png_bytes(16, 16)
    ihdr_end = 8 + 12 + 13
    payload = b"\0" * (total - len(base) - 12)
    data = base[:ihdr_end] + chunk(b"prVt", payload) + base[ihdr_end:]
    assert len(data) == total
    return data


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims another size (CRC fixed): a pixel bomb by its header."""
    data = png_bytes(4, 4)
    ihdr = struct.pack(">II", width, height) + data[16:29]
    return data[:8] + chunk(b"IHDR", ihdr) + data[33:]


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (32, 24), c) for c in (RED, BLUE, (0, 0, 200))]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)


def decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def node(account: Account, board: dict[str, Any]) -> dict[str, Any]:
    r = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"})
    assert r.status_code == 201, r.text
    return r.json()


def post_file(c: httpx.Client, node_id: str, data: bytes, name: str = "a.png",
              content_type: str = "image/png") -> httpx.Response:
    return c.post(f"/v1/nodes/{node_id}/image", files={"file": (name, data, content_type)})


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert body["error"]["message"]
    return body["error"]["code"]


def fetch(c: httpx.Client, path: str) -> httpx.Response:
    """Follow the api's 302 to the short-lived URL and return the final response."""
    first = c.get(path)
    assert first.status_code == 302, first.text
    final = c.get(first.headers["location"], follow_redirects=True)
    assert final.status_code == 200, final.text[:300]
    return final


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("data", "content_type", "size"),
    [
        pytest.param(encode(quadrants(), "PNG"), "image/png", (80, 80), id="png"),
        pytest.param(encode(quadrants(), "JPEG", quality=90), "image/jpeg", (80, 80), id="jpeg"),
        pytest.param(encode(quadrants(), "WEBP", quality=90), "image/webp", (80, 80), id="webp"),
        pytest.param(animated_webp(), "image/webp", (32, 24), id="animated-webp"),
    ],
)
def test_supported_formats_round_trip_unchanged(account: Account, node: dict[str, Any], data: bytes,
                                               content_type: str, size: tuple[int, int]) -> None:
    c = account.client
    r = post_file(c, node["id"], data, name="upload.bin", content_type="application/octet-stream")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    image = body["image"]
    assert image["content_type"] == content_type
    assert (image["width"], image["height"]) == size
    assert image["size_bytes"] == len(data)
    assert image["source"] == "upload"
    assert fetch(c, f"/v1/nodes/{node['id']}/image/content").content == data
    assert fetch(c, image["url"]).content == data


def test_format_is_judged_by_content_not_name(account: Account, node: dict[str, Any]) -> None:
    r = post_file(account.client, node["id"], png_bytes(), name="x.txt", content_type="text/plain")
    assert r.status_code == 200, r.text
    assert r.json()["image"]["content_type"] == "image/png"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(quadrants(), "GIF"), id="gif"),
        pytest.param(encode(quadrants(), "BMP"), id="bmp"),
        pytest.param(encode(quadrants(), "TIFF"), id="tiff"),
        pytest.param(b"%PDF-1.7\n" + b"0" * 100, id="pdf"),
        pytest.param(b"just some text", id="text"),
    ],
)
def test_unsupported_format(account: Account, node: dict[str, Any], data: bytes) -> None:
    r = post_file(account.client, node["id"], data, name="x.png", content_type="image/png")
    assert error_code(r, 415) == "unsupported_format"
    assert account.client.get(f"/v1/nodes/{node['id']}").json()["image"] is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png_bytes(64, 64)[:-40], id="truncated-png"),
        pytest.param(encode(quadrants(), "JPEG")[:200], id="truncated-jpeg"),
        pytest.param(encode(quadrants(), "WEBP")[:60], id="truncated-webp"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, id="png-signature-garbage"),
        pytest.param(png_with_declared_size(20000, 20000), id="pixel-bomb"),
        pytest.param(b"", id="empty"),
    ],
)
def test_invalid_image(stack: Stack, account: Account, node: dict[str, Any], data: bytes) -> None:
    r = post_file(account.client, node["id"], data)
    assert error_code(r, 422) == "invalid_image"
    after = account.client.get(f"/v1/nodes/{node['id']}").json()
    assert after["status"] == "empty" and after["image"] is None
    # The original's write starts before the decode refuses it (magic bytes say PNG, JPEG or
    # WebP): the refusal deletes it again, so nothing is left in the bucket.
    assert [o.key for o in stack.store.list_keys(f"images/{account.id}/")] == []


# --------------------------------------------------------------------------- size limit


def test_exactly_ten_mebibytes_is_accepted(account: Account, node: dict[str, Any]) -> None:
    data = png_of_size(MAX_BYTES)
    r = post_file(account.client, node["id"], data)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["image"]["size_bytes"] == MAX_BYTES
    assert fetch(account.client, f"/v1/nodes/{node['id']}/image/content").content == data


def test_one_byte_over_ten_mebibytes_is_refused(account: Account, node: dict[str, Any]) -> None:
    r = post_file(account.client, node["id"], png_of_size(MAX_BYTES + 1))
    assert error_code(r, 413) == "file_too_large"
    assert account.client.get(f"/v1/nodes/{node['id']}").json()["image"] is None


def test_far_over_the_limit_is_refused(account: Account, node: dict[str, Any]) -> None:
    r = post_file(account.client, node["id"], png_of_size(3 * MAX_BYTES))
    assert error_code(r, 413) == "file_too_large"


# --------------------------------------------------------------------------- availability


def test_upload_to_a_node_holding_an_image(account: Account, node: dict[str, Any]) -> None:
    c = account.client
    first = post_file(c, node["id"], png_bytes(color=(1, 2, 3))).json()
    r = post_file(c, node["id"], png_bytes(color=(9, 9, 9)))
    assert error_code(r, 409) == "upload_not_available"
    assert c.get(f"/v1/nodes/{node['id']}").json()["image"]["id"] == first["image"]["id"]


def test_concurrent_uploads_to_one_empty_node(stack: Stack, account: Account, node: dict[str, Any]) -> None:
    clients = [stack.client(account.api_key) for _ in range(3)]
    payloads = [png_bytes(color=(i, i, i)) for i in range(3)]
    barrier = threading.Barrier(3)

    def send(i: int) -> httpx.Response:
        barrier.wait()
        return post_file(clients[i], node["id"], payloads[i])

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(send, range(3)))
    assert sorted(r.status_code for r in results) == [200, 409, 409], [r.text for r in results]
    winner = payloads[next(i for i, r in enumerate(results) if r.status_code == 200)]
    assert fetch(account.client, f"/v1/nodes/{node['id']}/image/content").content == winner


@pytest.mark.parametrize("kind", ["text", "video"])
def test_upload_to_a_node_that_is_not_an_image_node(account: Account, board: dict[str, Any], kind: str) -> None:
    other = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": kind}).json()
    r = post_file(account.client, other["id"], png_bytes())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "not_an_image_node"


def test_upload_without_a_file_field(account: Account, node: dict[str, Any]) -> None:
    r = account.client.post(f"/v1/nodes/{node['id']}/image", files={"picture": ("a.png", png_bytes(), "image/png")})
    assert error_code(r, 422) == "validation_error"
    r = account.client.post(f"/v1/nodes/{node['id']}/image", json={"file": "nope"})
    assert error_code(r, 422) == "validation_error"


@pytest.mark.parametrize("path", ["image/content", "image/download"])
def test_serving_an_empty_node(account: Account, node: dict[str, Any], path: str) -> None:
    assert error_code(account.client.get(f"/v1/nodes/{node['id']}/{path}"), 409) == "no_image"


def test_crop_an_empty_node(account: Account, node: dict[str, Any]) -> None:
    r = account.client.post(f"/v1/nodes/{node['id']}/image/crop", json={"x": 0, "y": 0, "width": 4, "height": 4})
    assert error_code(r, 409) == "no_image"


# --------------------------------------------------------------------------- serving


def test_download_is_an_attachment(account: Account, node: dict[str, Any]) -> None:
    data = png_bytes()
    post_file(account.client, node["id"], data)
    final = fetch(account.client, f"/v1/nodes/{node['id']}/image/download")
    assert final.headers["content-disposition"].startswith("attachment")
    assert final.content == data
    inline = fetch(account.client, f"/v1/nodes/{node['id']}/image/content")
    assert not inline.headers.get("content-disposition", "inline").startswith("attachment")


def test_thumbnail_is_at_most_256_pixels(account: Account, node: dict[str, Any]) -> None:
    big = Image.new("RGB", (1200, 600), (10, 120, 200))
    body = post_file(account.client, node["id"], encode(big, "PNG")).json()
    thumb = decoded(fetch(account.client, body["image"]["thumbnail_url"]).content)
    assert max(thumb.size) <= 256
    assert thumb.size[0] == 2 * thumb.size[1]  # aspect kept


# --------------------------------------------------------------------------- crop


@pytest.mark.parametrize(
    ("box", "color"),
    [
        ({"x": 0, "y": 0, "width": 40, "height": 40}, RED),
        ({"x": 40, "y": 0, "width": 40, "height": 40}, GREEN),
        ({"x": 0, "y": 40, "width": 40, "height": 40}, BLUE),
        ({"x": 50, "y": 45, "width": 30, "height": 20}, WHITE),
    ],
)
def test_crop(account: Account, node: dict[str, Any], box: dict[str, int], color: tuple[int, int, int]) -> None:
    c = account.client
    original = post_file(c, node["id"], encode(quadrants(), "PNG")).json()["image"]
    r = c.post(f"/v1/nodes/{node['id']}/image/crop", json=box)
    assert r.status_code == 200, r.text
    image = r.json()["image"]
    assert image["source"] == "crop"
    assert image["id"] != original["id"]
    assert (image["width"], image["height"]) == (box["width"], box["height"])
    assert r.json()["toolbar"] == ["crop", "fullscreen", "download"]
    pixels = decoded(fetch(c, f"/v1/nodes/{node['id']}/image/content").content).convert("RGB")
    assert pixels.size == (box["width"], box["height"])
    assert [rgb for _, rgb in pixels.getcolors()] == [color]
    assert c.get(f"/v1/nodes/{node['id']}").json()["image"]["id"] == image["id"]


@pytest.mark.parametrize(
    "box",
    [
        {"x": 0, "y": 0, "width": 0, "height": 10},
        {"x": 0, "y": 0, "width": 10, "height": -1},
        {"x": -1, "y": 0, "width": 10, "height": 10},
        {"x": 70, "y": 0, "width": 11, "height": 10},
        {"x": 0, "y": 80, "width": 10, "height": 1},
        {"x": 0, "y": 0, "width": 81, "height": 80},
    ],
)
def test_invalid_crop(account: Account, node: dict[str, Any], box: dict[str, int]) -> None:
    c = account.client
    original = post_file(c, node["id"], encode(quadrants(), "PNG")).json()["image"]
    assert error_code(c.post(f"/v1/nodes/{node['id']}/image/crop", json=box), 422) == "invalid_crop"
    assert c.get(f"/v1/nodes/{node['id']}").json()["image"]["id"] == original["id"]


def test_crop_of_the_whole_image_is_allowed(account: Account, node: dict[str, Any]) -> None:
    c = account.client
    post_file(c, node["id"], encode(quadrants(), "PNG"))
    r = c.post(f"/v1/nodes/{node['id']}/image/crop", json={"x": 0, "y": 0, "width": 80, "height": 80})
    assert r.status_code == 200, r.text
    assert (r.json()["image"]["width"], r.json()["image"]["height"]) == (80, 80)


# --------------------------------------------------------------------------- decoding while the body arrives


def noise_png(width: int, height: int, seed: int) -> bytes:
    """Incompressible pixels: a file of a few MB, which arrives in many pieces."""
    return encode(Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3)), "PNG")


def metric(api_url: str, name: str) -> float:
    """One sample of an api process's /metrics (0 when it has none yet)."""
    for line in httpx.get(f"{api_url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def early_decodes(api_url: str, outcome: str) -> float:
    """How many uploads to that api ended their early decode so."""
    return metric(api_url, f'easel_upload_early_decodes_total{{outcome="{outcome}"}}')


class SlowUpload:
    """An upload over a raw socket whose body is sent in two parts, when the test says."""

    def __init__(self, api_url: str, api_key: str, node_id: str, data: bytes) -> None:
        boundary = "slow-upload-boundary"
        self.body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                     f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        url = httpx.URL(api_url)
        assert url.port is not None
        self.sock = socket.create_connection((url.host, url.port), timeout=60)
        self.sock.sendall((f"POST /v1/nodes/{node_id}/image HTTP/1.1\r\nHost: {url.host}\r\n"
                           f"Authorization: Bearer {api_key}\r\nContent-Length: {len(self.body)}\r\n"
                           f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
        self.half = len(self.body) // 2
        self.sock.sendall(self.body[: self.half])

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Send the rest; the answer's status and JSON body."""
        with self.sock:
            self.sock.sendall(self.body[self.half :])
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += self._received()
            head, _, body = answer.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                body += self._received()
        return int(head.split(b" ", 2)[1]), json.loads(body)

    def _received(self) -> bytes:
        data = self.sock.recv(65536)
        assert data, "the api closed the connection before its answer was whole"
        return data


@one_database("sqlite")  # what is measured is the api's reading of a body
def test_a_large_upload_is_decoded_while_it_arrives(stack: Stack, account: Account, node: dict[str, Any]) -> None:
    data = noise_png(1200, 900, seed=1)  # ~3 MB
    before = early_decodes(stack.api_url, "decoded")
    r = post_file(account.client, node["id"], data)
    assert r.status_code == 200, r.text
    assert early_decodes(stack.api_url, "decoded") == before + 1  # the early decode's answer was the one used
    image = r.json()["image"]
    assert (image["width"], image["height"], image["size_bytes"]) == (1200, 900, len(data))
    assert fetch(account.client, image["url"]).content == data
    thumb = Image.open(io.BytesIO(fetch(account.client, image["thumbnail_url"]).content))
    assert thumb.size == (256, 192)


@one_database("sqlite")
def test_an_upload_slower_than_the_window_is_validated_once_it_has_arrived(
        stack: Stack, account: Account, node: dict[str, Any]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(stack.settings, API_PORT=str(port), UPLOAD_EARLY_DECODE_WINDOW_SECONDS="0.5")
    data = noise_png(1200, 900, seed=2)
    with running("easel_api", env, f"{url}/healthz"), \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {account.api_key}"}, timeout=60) as c:
        slow = SlowUpload(url, account.api_key, node["id"], data)
        # The window passes with half the body sent: the early decode is dropped, its slot and
        # memory given back, and the upload goes on.
        wait_for(lambda: early_decodes(url, "too_slow") == 1,
                 what="the early decode to give up")
        assert metric(url, "easel_upload_early_decodes_running") == 0
        status, body = slow.finish()
        assert status == 200, body
        assert (body["image"]["width"], body["image"]["height"]) == (1200, 900)
        assert fetch(c, body["image"]["url"]).content == data


@one_database("sqlite")
@pytest.mark.parametrize("data", [
    pytest.param(noise_png(1200, 900, seed=3)[:-12], id="png-without-iend"),
    pytest.param(encode(quadrants(), "PNG")[:-30], id="png-cut-short"),
])
def test_a_broken_upload_gets_the_usual_answer(stack: Stack, account: Account, node: dict[str, Any],
                                              data: bytes) -> None:
    before = early_decodes(stack.api_url, "rejected")
    r = post_file(account.client, node["id"], data)
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "invalid_image", "message": "The image file is corrupt or truncated."}, r.text
    assert early_decodes(stack.api_url, "rejected") == before + 1  # refused early, then again the usual way
    assert account.client.get(f"/v1/nodes/{node['id']}").json()["status"] == "empty"


@one_database("sqlite")
def test_uploads_beyond_the_early_decode_slots_are_decoded_once_they_arrive(
        stack: Stack, account: Account, board: dict[str, Any]) -> None:
    nodes = [account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()["id"]
             for _ in range(3)]
    datas = [noise_png(1000, 700, seed=4), noise_png(900, 600, seed=5), noise_png(800, 500, seed=6)]
    before = {k: early_decodes(stack.api_url, k) for k in ("no_slot", "decoded")}
    # UPLOAD_EARLY_DECODES (2) uploads still arriving hold both slots (the stack's window is long).
    slow = [SlowUpload(stack.api_url, account.api_key, nodes[i], datas[i]) for i in range(2)]
    wait_for(lambda: metric(stack.api_url, "easel_upload_early_decodes_running") == 2,
             what="both slots to be taken")
    r = post_file(account.client, nodes[2], datas[2])  # decoded the usual way, once it has arrived
    assert r.status_code == 200, r.text
    assert fetch(account.client, r.json()["image"]["url"]).content == datas[2]
    assert early_decodes(stack.api_url, "no_slot") == before["no_slot"] + 1
    for upload, data in zip(slow, datas, strict=False):
        status, body = upload.finish()
        assert status == 200, body
        assert fetch(account.client, body["image"]["url"]).content == data
    assert early_decodes(stack.api_url, "decoded") == before["decoded"] + 2
    wait_for(lambda: metric(stack.api_url, "easel_upload_early_decodes_running") == 0,
             what="the slots to be free again")


@one_database("sqlite")
def test_an_upload_without_a_declared_length_is_decoded_once_it_has_arrived(
        stack: Stack, account: Account, node: dict[str, Any]) -> None:
    data = noise_png(600, 400, seed=7)
    boundary = "chunked-upload-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    before = {k: early_decodes(stack.api_url, k) for k in ("no_length", "decoded")}
    r = account.client.post(f"/v1/nodes/{node['id']}/image", content=iter([body[:100_000], body[100_000:]]),
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert early_decodes(stack.api_url, "no_length") == before["no_length"] + 1
    assert early_decodes(stack.api_url, "decoded") == before["decoded"]
    assert fetch(account.client, r.json()["image"]["url"]).content == data
