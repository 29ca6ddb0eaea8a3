"""Generations end to end: output, snapshot, credits, failure, cancel (issue "Generation")."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from easel_shared.models import Image, OutboxEvent
from easel_shared.repositories.outbox import RETAIN_IMAGE
from tests.fixtures.gates import ModelGate
from tests.fixtures.generation import (
    PARAMS_1K,
    SKETCH,
    STUDIO,
    accepted,
    balance,
    connect,
    get_gen,
    image_node,
    ledger_kinds,
    node,
    queue_length,
    stored_image,
    text_node,
    upload,
    wait_final,
    wait_status,
    worker_idle,
)
from tests.fixtures.stack import Account, Stack, png_bytes, wait_for

pytestmark = pytest.mark.integration

SIZES = [
    (SKETCH, "1K", "16:9", 1024, 576),
    (SKETCH, "1K", "9:16", 576, 1024),
    (SKETCH, "1K", "4:3", 1024, 768),
    (STUDIO, "1K", "1:1", 1024, 1024),
    (STUDIO, "2K", "16:9", 2048, 1152),
    (STUDIO, "2K", "3:4", 1536, 2048),
]


def test_output_has_the_exact_size_of_resolution_and_aspect_ratio(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    started = []
    for model_id, resolution, aspect, width, height in SIZES:
        n = image_node(c, board["id"], prompt=f"a red lighthouse {resolution} {aspect}")
        gen = accepted(c, n["id"], model_id, {"resolution": resolution, "aspect_ratio": aspect})
        started.append((n["id"], gen["id"], width, height))
    for node_id, gen_id, width, height in started:
        gen = wait_final(c, gen_id)
        assert gen["status"] == "succeeded", gen
        shown = node(c, node_id)
        assert shown["status"] == "ready"
        assert shown["image"]["id"] == gen["image_id"]
        assert shown["image"]["source"] == "generation"
        assert (shown["image"]["width"], shown["image"]["height"]) == (width, height)
        assert shown["toolbar"] == ["crop", "fullscreen", "download"]
        assert stored_image(c, node_id).size == (width, height)


def test_snapshot_takes_upstream_text_then_prompt_and_upstream_images_in_connection_order(
    account: Account, board: dict[str, Any]
) -> None:
    c, b = account.client, board["id"]
    first_text = text_node(c, b, "first text")
    second_text = text_node(c, b, "second text")
    first_img, second_img = image_node(c, b), image_node(c, b)
    first_up = upload(c, first_img["id"], (200, 10, 10))["image"]["id"]
    second_up = upload(c, second_img["id"], (10, 200, 10))["image"]["id"]
    target = image_node(c, b)
    own = upload(c, target["id"], (10, 10, 200))["image"]["id"]
    # Connection order differs from creation order on purpose.
    for source in (second_text, second_img, first_text, first_img):
        connect(c, b, source, target)

    gen = accepted(c, target["id"], STUDIO, {"resolution": "1K", "aspect_ratio": "4:3", "seed": 7},
                   prompt="in the style of a woodcut")
    assert gen["prompt"] == "second text\nfirst text\nin the style of a woodcut"
    assert gen["reference_image_ids"] == [second_up, first_up]
    assert own not in gen["reference_image_ids"]
    assert gen["params"] == {"resolution": "1K", "aspect_ratio": "4:3", "seed": 7}
    assert node(c, target["id"])["prompt"] == "in the style of a woodcut"

    done = wait_final(c, gen["id"])
    assert done["status"] == "succeeded", done
    assert done["prompt"] == gen["prompt"] and done["reference_image_ids"] == gen["reference_image_ids"]
    shown = node(c, target["id"])
    assert shown["image"]["id"] == done["image_id"] != own
    assert [r["node_id"] for r in shown["references"]] == [second_img["id"], first_img["id"]]


def test_generate_again_replaces_the_image_and_history_is_newest_first(account: Account,
                                                                     board: dict[str, Any]) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a green field")
    first = wait_final(c, accepted(c, n["id"], params={**PARAMS_1K, "seed": 1})["id"])
    assert first["status"] == "succeeded", first
    assert node(c, n["id"])["image"]["id"] == first["image_id"]

    second = wait_final(c, accepted(c, n["id"], params={**PARAMS_1K, "seed": 2})["id"])
    assert second["status"] == "succeeded", second
    assert second["image_id"] != first["image_id"]
    shown = node(c, n["id"])
    assert shown["image"]["id"] == second["image_id"]
    assert shown["status"] == "ready" and shown["active_generation_id"] is None

    history = c.get(f"/v1/nodes/{n['id']}/generations").json()
    assert [g["id"] for g in history["items"]] == [second["id"], first["id"]]
    assert history["next_cursor"] is None
    page = c.get(f"/v1/nodes/{n['id']}/generations", params={"limit": 1}).json()
    assert [g["id"] for g in page["items"]] == [second["id"]]
    rest = c.get(f"/v1/nodes/{n['id']}/generations", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [g["id"] for g in rest["items"]] == [first["id"]]

    timings = second["timings"]
    for key in ("queue_wait_ms", "model_ms", "storage_ms", "total_ms"):
        assert isinstance(timings[key], int) and timings[key] >= 0, timings
    assert timings["total_ms"] >= timings["model_ms"]
    assert second["attempts"] == 1
    assert second["started_at"] and second["finished_at"]

    # Canceling a finished generation returns it unchanged.
    r = c.post(f"/v1/generations/{first['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json() == get_gen(c, first["id"]) and r.json()["status"] == "succeeded"


def test_credits_are_reserved_at_accept_and_captured_on_success(stack: Stack, gate: ModelGate) -> None:
    acct = stack.new_account(credits=100)
    c = acct.client
    b = c.post("/v1/boards", json={"name": "credits"}).json()["id"]
    n = image_node(c, b, prompt="a quiet harbour")
    params = {"resolution": "2K", "aspect_ratio": "16:9"}
    quote = c.post(f"/v1/nodes/{n['id']}/quote", json={"model_id": STUDIO, "params": params})
    assert quote.status_code == 200, quote.text
    assert quote.json() == {"credits": 8, "balance": 100, "affordable": True}

    gen = accepted(c, n["id"], STUDIO, params)
    assert gen["credits"] == quote.json()["credits"]
    assert balance(c) == (92, 8)

    gate.open()
    done = wait_final(c, gen["id"])
    assert done["status"] == "succeeded", done
    assert balance(c) == (92, 0)
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]
    entries = [e for e in c.get("/v1/account/ledger").json()["items"] if e["generation_id"] == gen["id"]]
    assert sorted(e["delta"] for e in entries) == [-8, 0]


def test_a_failed_generation_refunds_and_marks_the_node(stack: Stack, blocked_words: str) -> None:
    acct = stack.new_account(credits=10)
    c = acct.client
    b = c.post("/v1/boards", json={"name": "fail"}).json()["id"]
    n = image_node(c, b, prompt=f"a {blocked_words} castle")
    gen = accepted(c, n["id"])
    done = wait_final(c, gen["id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "content_rejected"
    assert done["image_id"] is None
    shown = node(c, n["id"])
    assert shown["status"] == "failed"
    assert shown["error"]["code"] == "content_rejected" and shown["error"]["message"]
    assert shown["toolbar"] == ["upload"]
    assert shown["image"] is None and shown["active_generation_id"] is None
    assert shown["generate"]["enabled"] is True
    assert balance(c) == (10, 0)
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]


def test_cancel_a_queued_generation(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a lantern")
    previous = upload(c, n["id"])["image"]["id"]
    before = balance(c)
    assert stack.worker is not None
    with stack.worker.paused():
        gen = accepted(c, n["id"])
        assert gen["status"] == "queued"
        assert node(c, n["id"])["status"] == "generating"
        assert balance(c) == (before[0] - 2, before[1] + 2)
        r = c.post(f"/v1/generations/{gen['id']}/cancel")
        assert r.status_code == 200, r.text
        canceled = r.json()
        assert canceled["status"] == "canceled" and canceled["finished_at"]
        assert balance(c) == before
        shown = node(c, n["id"])
        assert (shown["status"], shown["image"]["id"], shown["active_generation_id"]) == ("ready", previous, None)
        again = c.post(f"/v1/generations/{gen['id']}/cancel").json()
        assert again == canceled
    # The message is still delivered once the worker is back; it must change nothing.
    wait_for(lambda: queue_length(stack) == 0, what="the queue to drain")
    worker_idle()
    assert get_gen(c, gen["id"]) == canceled
    assert node(c, n["id"])["image"]["id"] == previous
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]


def test_cancel_a_running_generation(account: Account, board: dict[str, Any], gate: ModelGate) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a slow sunrise")
    before = balance(c)
    gen = accepted(c, n["id"])
    wait_status(c, gen["id"], "running")
    canceled = c.post(f"/v1/generations/{gen['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    assert balance(c) == before
    shown = node(c, n["id"])
    assert (shown["status"], shown["image"], shown["generate"]["enabled"]) == ("empty", None, True)

    worker_idle()  # the worker noticed the cancel and stopped without touching the node
    assert get_gen(c, gen["id"])["status"] == "canceled"
    assert get_gen(c, gen["id"])["image_id"] is None
    assert node(c, n["id"])["image"] is None
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]
    assert balance(c) == before


def test_upload_to_a_generating_node_cancels_the_generation(account: Account, board: dict[str, Any],
                                                             gate: ModelGate) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a kite")
    before = balance(c)
    gen = accepted(c, n["id"])
    wait_status(c, gen["id"], "running")
    shown = upload(c, n["id"])
    uploaded = shown["image"]["id"]
    assert shown["status"] == "ready" and shown["image"]["source"] == "upload"
    assert shown["active_generation_id"] is None
    assert get_gen(c, gen["id"])["status"] == "canceled"
    assert balance(c) == before

    worker_idle()
    assert node(c, n["id"])["image"]["id"] == uploaded
    assert get_gen(c, gen["id"])["status"] == "canceled"
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]


@contextlib.contextmanager
def slow_vendor(received: threading.Event, release: threading.Event) -> Iterator[str]:
    """A remote model vendor (a local HTTP server standing in for one) whose answer cannot be
    interrupted: it sets `received` when a request arrives and replies with a PNG once the test
    sets `release`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", "0")))
            received.set()
            release.wait(60)
            body = png_bytes(64, 64, (10, 160, 90))
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
        yield f"http://127.0.0.1:{server.server_address[1]}/generate"
    finally:
        release.set()
        server.shutdown()


@contextlib.contextmanager
def served_by_vendor(model_id: str, endpoint: str) -> Iterator[None]:
    """The worker runs `model_id` through the HTTP provider against `endpoint`."""
    from easel_shared.domain.catalog import Catalog
    from easel_worker import runtime

    rt = runtime.get()
    saved = rt.catalog
    rt.catalog = Catalog(models=tuple(
        dataclasses.replace(m, provider="http", endpoint=endpoint, style="") if m.id == model_id else m
        for m in saved.models
    ))
    try:
        yield
    finally:
        worker_idle()
        rt.catalog = saved


def test_a_result_arriving_after_its_node_was_deleted_is_kept_for_the_library(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    received, release = threading.Event(), threading.Event()
    c = account.client
    with slow_vendor(received, release) as endpoint, served_by_vendor(SKETCH, endpoint):
        _late_result(stack, c, board, received, release)


def _late_result(stack: Stack, c: httpx.Client, board: dict[str, Any], received: threading.Event,
                 release: threading.Event) -> None:
    n = image_node(c, board["id"], prompt="a message in a bottle")
    before = balance(c)
    gen = accepted(c, n["id"])
    try:
        wait_status(c, gen["id"], "running")
        # The vendor has the request: from here on the call cannot be taken back.
        assert received.wait(30), "the vendor never received the generation"
        r = c.delete(f"/v1/nodes/{n['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["asset_id"] is None
        assert get_gen(c, gen["id"])["status"] == "canceled"
        assert balance(c) == before
    finally:
        release.set()
    worker_idle()
    done = get_gen(c, gen["id"])
    assert done["status"] == "canceled" and done["image_id"], done
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]
    with Session(stack.engine) as session:
        image = session.get(Image, done["image_id"])
        events = session.exec(select(OutboxEvent).where(OutboxEvent.topic == RETAIN_IMAGE)).all()
    assert image is not None and stack.store.exists(image.storage_key)
    kept = [e.payload for e in events if e.payload.get("image_id") == image.id]
    assert len(kept) == 1 and kept[0]["reason"] == "late_result" and kept[0]["node_id"] == n["id"]
