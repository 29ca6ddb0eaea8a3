"""Hostile or malformed input: parameters, multipart framing, decode memory, Last-Event-ID,
live events without Redis, body size, JSON shape and duplicate credentials."""

from __future__ import annotations

import io
import json
import logging
import select
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from PIL import Image

from tests.fixtures.processes import running, service_env
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import Account, Stack, one_database, png_bytes, wait_for

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def envelope(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, r.text[:500]
    message: str = body["error"]["message"]
    assert message and len(message) <= 1000
    return message


def image_node(c: httpx.Client, board_id: str) -> dict[str, Any]:
    r = c.post(f"/v1/boards/{board_id}/nodes", json={"kind": "image"})
    assert r.status_code == 201, r.text
    node: dict[str, Any] = r.json()
    return node


# --------------------------------------------------------------------------- 1. node parameters


@pytest.mark.parametrize("params", [
    {"resolution": "x" * 200_000},
    {"resolution": "8K"},
    {"resolution": {"nested": {"deeper": [1, 2, 3]}}},
    {"resolution": 1024},
    {"aspect_ratio": "16x9"},
    {"aspect_ratio": "1:1" * 1000},
    {"aspect_ratio": ["16", "9"]},
    {"aspect_ratio": "16:9\n"},
    {"seed": "42"},
    {"seed": -1},
    {"seed": 2**31},
    {"seed": 1.5},
    {"seed": True},
    {"style": "noir"},
])
def test_params_are_checked_without_a_model(account: Account, board: dict[str, Any], params: dict[str, Any]) -> None:
    c = account.client
    node = image_node(c, board["id"])
    assert node["model_id"] is None
    message = envelope(c.patch(f"/v1/nodes/{node['id']}", json={"params": params}), 422, "unsupported_params")
    assert len(message) < 300
    assert c.get(f"/v1/nodes/{node['id']}").json()["params"] == node["params"]


def test_well_formed_params_are_kept_without_a_model(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    node = image_node(c, board["id"])
    params = {"resolution": "2K", "aspect_ratio": "16:9", "seed": 7}
    r = c.patch(f"/v1/nodes/{node['id']}", json={"params": params})
    assert r.status_code == 200, r.text
    assert c.get(f"/v1/nodes/{node['id']}").json()["params"] == params
    # None means "the model's default".
    r = c.patch(f"/v1/nodes/{node['id']}", json={"params": {"seed": None}})
    assert r.status_code == 200, r.text


def test_choosing_a_model_rechecks_the_stored_params(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    node = image_node(c, board["id"])
    assert c.patch(f"/v1/nodes/{node['id']}", json={"params": {"resolution": "2K"}}).status_code == 200
    # Easel Sketch offers 1K only: the stored 2K no longer fits.
    message = envelope(c.patch(f"/v1/nodes/{node['id']}", json={"model_id": "easel-sketch"}), 422,
                       "unsupported_params")
    assert "2K" in message
    stored = c.get(f"/v1/nodes/{node['id']}").json()
    assert stored["model_id"] is None and stored["params"] == {"resolution": "2K"}
    # Changing both at once is judged on the result.
    r = c.patch(f"/v1/nodes/{node['id']}", json={"model_id": "easel-sketch", "params": {"resolution": "1K"}})
    assert r.status_code == 200, r.text
    assert r.json()["model_id"] == "easel-sketch"


def test_many_unknown_params_give_a_short_message(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    node = image_node(c, board["id"])
    params = {f"k{i:05d}": 1 for i in range(40_000)}
    r = c.patch(f"/v1/nodes/{node['id']}", json={"params": params})
    message = envelope(r, 422, "unsupported_params")
    assert "more" in message and len(r.content) < 2000


# --------------------------------------------------------------------------- 2. multipart framing


def multipart_post(c: httpx.Client, node_id: str, content_type: str, body: bytes) -> httpx.Response:
    return c.post(f"/v1/nodes/{node_id}/image", content=body, headers={"Content-Type": content_type})


FILE_PART = b'Content-Disposition: form-data; name="file"; filename="a.png"'


def well_formed(boundary: str, header: bytes = FILE_PART) -> bytes:
    b = boundary.encode()
    return (b"--" + b + b"\r\n" + header + b"\r\nContent-Type: image/png\r\n\r\n" + png_bytes()
            + b"\r\n--" + b + b"--\r\n")


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data; boundary=abc", b"a body without the boundary at all"),
    ("multipart/form-data; boundary=abc", well_formed("abc", b"Content-Disposition form-data no colon")),
    ("multipart/form-data; boundary=" + "b" * 300, well_formed("b" * 300)),
    ("multipart/form-data; boundary=" + "b" * 5000, well_formed("b" * 5000)),
    ("multipart/form-data; boundary=", well_formed("")),
    ('multipart/form-data; boundary=""', well_formed("")),
    ("multipart/form-data", well_formed("abc")),
    ("multipart/form-data; boundary=abc", well_formed("abc")[:-20]),  # no closing boundary
    ("multipart/form-data; boundary=abc",
     b"--abc\r\nContent-Disposition: form-data; name=\"file\"; x=" + b"y" * 20_000 + b"\r\n\r\nz\r\n--abc--\r\n"),
], ids=["no-boundary-in-body", "header-without-colon", "boundary-300", "boundary-5000", "empty-boundary",
        "empty-quoted-boundary", "no-boundary-param", "no-closing-boundary", "huge-part-header"])
def test_malformed_multipart_is_a_400(account: Account, board: dict[str, Any], content_type: str, body: bytes,
                                      caplog: pytest.LogCaptureFixture) -> None:
    c = account.client
    node = image_node(c, board["id"])
    with caplog.at_level(logging.WARNING):
        r = multipart_post(c, node["id"], content_type, body)
    envelope(r, 400, "invalid_multipart")
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"
    # The node is untouched and still takes a proper upload.
    r = multipart_post(c, node["id"], "multipart/form-data; boundary=abc", well_formed("abc"))
    assert r.status_code == 200, r.text


def test_a_70_character_boundary_is_fine(account: Account, board: dict[str, Any]) -> None:
    node = image_node(account.client, board["id"])
    boundary = "B'()+_,-./:=?" + "x" * 57
    assert len(boundary) == 70
    r = multipart_post(account.client, node["id"], f'multipart/form-data; boundary="{boundary}"', well_formed(boundary))
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- 3. decode memory


# What README.md documents: DECODE_MEMORY_BUDGET_MB (512 by default) + 256 MB.
API_PEAK_CEILING_MB = 512 + 256


@pytest.fixture(scope="module")
def heavy_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """7071 x 7071 RGBA (just under the 50 MP limit): ~200 MB decoded, a few hundred KB on disk."""
    path: Path = tmp_path_factory.mktemp("heavy") / "heavy.png"
    img = Image.new("RGBA", (7071, 7071), (40, 90, 160, 200))
    img.paste((250, 200, 20, 255), (1000, 1000, 3000, 5000))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=9)
    img.close()
    path.write_bytes(buf.getvalue())
    data = path.read_bytes()
    assert len(data) < 1 * MIB
    return data


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.slow
@one_database("sqlite")  # the api's memory while it reads bodies: the database plays no part
def test_concurrent_heavy_uploads_stay_under_the_memory_ceiling(stack: Stack, account: Account,
                                                                 board: dict[str, Any], heavy_png: bytes) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(stack.settings, API_PORT=str(port), RATE_LIMIT_UPLOAD_PER_MINUTE="1000")
    env.pop("DECODE_MEMORY_BUDGET_MB", None)  # the default is what the README documents
    with running("easel_api", env, f"{url}/healthz") as proc:
        nodes = [image_node(account.client, board["id"]) for _ in range(12)]
        headers = {"Authorization": f"Bearer {account.api_key}"}

        def upload(node_id: str) -> httpx.Response:
            return httpx.post(f"{url}/v1/nodes/{node_id}/image", headers=headers, timeout=300,
                              files={"file": ("heavy.png", heavy_png, "image/png")})

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(upload, [n["id"] for n in nodes]))
        assert [r.status_code for r in answers] == [200] * 12, [r.text[:200] for r in answers if r.status_code != 200]
        assert {r.json()["image"]["width"] for r in answers} == {7071}
        peak_mb = _status_kb(proc.pid, "VmHWM") / 1024
        rss_mb = psutil.Process(proc.pid).memory_info().rss / MIB
    assert peak_mb < API_PEAK_CEILING_MB, f"api peaked at {peak_mb:.0f} MB"
    # Decoded pixels are given back once the uploads are done, not kept at the peak.
    assert rss_mb < 300, f"api holds {rss_mb:.0f} MB after a {peak_mb:.0f} MB peak"


# --------------------------------------------------------------------------- 4. Last-Event-ID


def first_event(base_url: str, board_id: str, api_key: str, last_event_id: bytes) -> tuple[int, str]:
    """Status and the type of the first event of a stream opened with `last_event_id`."""
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    with httpx.Client(timeout=httpx.Timeout(10, read=10)) as client, \
            client.stream("GET", f"{base_url}/v1/boards/{board_id}/events", headers=headers) as resp:
        if resp.status_code != 200:
            return resp.status_code, ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                return 200, line.partition(":")[2].strip()
    return 200, ""


@pytest.mark.parametrize("last_event_id", [
    b"1-", b"-1", b"1", b"99999999999999999999999999-0", b"18446744073709551616-0", b"0-18446744073709551616",
    b"9" * 5000, b"1-" + b"9" * 5000, "\u00b2".encode("latin-1"), "1-\u00b2".encode("latin-1"), b"1-0-0", b"0x1-0",
], ids=lambda v: v.decode("latin-1") if len(v) < 40 else f"{len(v)}-chars")
def test_a_malformed_last_event_id_gets_a_snapshot(stack: Stack, account: Account, board: dict[str, Any],
                                                   last_event_id: bytes, caplog: pytest.LogCaptureFixture) -> None:
    account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "text", "text": "x"})
    with caplog.at_level(logging.WARNING):
        status, event = first_event(stack.api_url, board["id"], account.api_key, last_event_id)
    assert (status, event) == (200, "board.snapshot")
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"


def test_the_largest_valid_last_event_id_is_accepted(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    top = str(2**64 - 1).encode()
    assert first_event(stack.api_url, board["id"], account.api_key, top + b"-" + top) == (200, "board.snapshot")


# --------------------------------------------------------------------------- 5. SSE without Redis


@pytest.mark.slow
def test_events_answer_503_while_redis_is_down(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be stopped here")
    c = account.client
    stack.redis.stop()
    try:
        r = c.get(f"/v1/boards/{board['id']}/events", headers={"Accept": "text/event-stream"})
        envelope(r, 503, "events_unavailable")
        assert int(r.headers["Retry-After"]) > 0
        # The connection is still good for the next request.
        assert c.get(f"/v1/boards/{board['id']}").status_code == 200
    finally:
        stack.redis.start()
        probe = redis.Redis.from_url(stack.redis.url, socket_connect_timeout=1)
        try:
            wait_for(lambda: probe.ping(), what="Redis to answer again")
        finally:
            probe.close()
        wait_for(lambda: httpx.get(f"{stack.api_url}/readyz").status_code == 200, what="the api to be ready")
    status, event = first_event(stack.api_url, board["id"], account.api_key, b"")
    assert (status, event) == (200, "board.snapshot")


# --------------------------------------------------------------------------- 6. body size


def raw_request(url: str, head: str, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `head`, then body chunks until the server answers (or the body ends); return the
    answer and how many body bytes were sent."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    sent = 0
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head.encode())
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered before the body was done
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def _status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_a_declared_oversized_json_body_is_refused_before_it_is_read(stack: Stack, account: Account) -> None:
    declared = 52 * MIB
    head = (f"POST /v1/boards HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n")
    answer, sent = raw_request(stack.api_url, head, iter([b'{"name": "', *([b"x" * 65536] * 2)]))
    status, body = _status_and_body(answer)
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert "1,048,576" in body["error"]["message"]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/merge-patch+json"])
def test_a_streamed_oversized_body_is_cut_off_at_the_limit(stack: Stack, account: Account, content_type: str) -> None:
    total = 52 * MIB
    piece = b"[" + b"1," * 32_767 + b"1]"

    def chunked() -> Iterator[bytes]:
        yield b'%x\r\n{"name": "x", "filler": [\r\n' % len(b'{"name": "x", "filler": [')
        for _ in range(total // len(piece)):
            yield b"%x\r\n%s,\r\n" % (len(piece) + 1, piece)

    head = (f"POST /v1/boards HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.api_key}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer, sent = raw_request(stack.api_url, head, chunked())
    status, body = _status_and_body(answer)
    assert status == 413 and body["error"]["code"] == "request_too_large", answer[:300]
    assert sent < 16 * MIB, f"the server read {sent} bytes before answering"


def test_a_body_just_over_the_limit_is_413_and_under_it_is_judged(account: Account) -> None:
    c = account.client
    over = json.dumps({"name": "x" * (MIB + 10)})
    envelope(c.post("/v1/boards", content=over, headers={"Content-Type": "application/json"}), 413,
             "request_too_large")
    under = json.dumps({"name": "x" * (MIB // 2)})
    envelope(c.post("/v1/boards", content=under, headers={"Content-Type": "application/json"}), 422,
             "validation_error")


def test_validation_errors_are_bounded(account: Account) -> None:
    body = {"name": "board", **{f"unknown_key_{i:06d}": 1 for i in range(30_000)}}
    r = account.client.post("/v1/boards", json=body)
    message = envelope(r, 422, "validation_error")
    assert "29999 other problems" in message
    assert len(r.json()["error"]["details"]) <= 10
    assert len(r.content) < 4000


# --------------------------------------------------------------------------- 7. JSON shape


@pytest.mark.parametrize("body, says", [
    (b"[" * 100_000 + b"]" * 100_000, "levels deep"),
    (b'{"name": "x", "extra": ' + b"[" * 40 + b"]" * 40 + b"}", "levels deep"),
    (b'{"name": "x", "n": ' + b"7" * 5000 + b"}", "number"),
    (b'{"name": "x", "n": 0.' + b"7" * 5000 + b"}", "number"),
    (b'{"name": "x", "n": NaN}', "NaN"),
    (b'{"name": "x", "n": -Infinity}', "Infinity"),
    (b'{"name": ', "Expecting value at line 1, column 10"),
    (b'{"name": "x",}', "line 1"),
    (b'{"name": "\xff"}', "UTF-8"),
], ids=["100000-levels", "40-levels", "5000-digit-int", "5000-digit-float", "nan", "infinity", "truncated",
        "trailing-comma", "not-utf8"])
def test_bad_json_is_a_422_saying_why(account: Account, body: bytes, says: str) -> None:
    r = account.client.post("/v1/boards", content=body, headers={"Content-Type": "application/json"})
    message = envelope(r, 422, "validation_error")
    assert message.startswith("The request body is not valid JSON: "), message
    assert says in message, message


def test_reasonable_json_still_works(account: Account) -> None:
    r = account.client.post("/v1/boards", content=json.dumps({"name": "ok \u00e9"}).encode(),
                            headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------- 8. credentials


@pytest.mark.parametrize("which", ["api", "assets"])
def test_two_authorization_headers_are_refused(stack: Stack, account: Account, which: str) -> None:
    base = stack.api_url if which == "api" else stack.assets_url
    if base is None:
        pytest.skip("no assets service in this stack")
    path = "/v1/boards" if which == "api" else "/v1/assets"
    good, bad = f"Bearer {account.api_key}", f"Bearer esk_{uuid.uuid4().hex}"
    for pair in ((good, bad), (bad, good), (good, good)):
        r = httpx.get(base + path, headers=[("Authorization", pair[0]), ("Authorization", pair[1])])
        message = envelope(r, 400, "duplicate_credentials")
        assert "Authorization" in message
    assert httpx.get(base + path, headers={"Authorization": good}).status_code == 200
