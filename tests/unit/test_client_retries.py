"""`easel_client` without a server (httpx.MockTransport): which failures are retried and how,
the error envelope, and SSE parsing and reconnection."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from easel_client import (
    APIConnectionError,
    AsyncEasel,
    BoardSnapshot,
    Conflict,
    Easel,
    ImageNode,
    NodeChanged,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    UnknownEvent,
    UnknownNode,
)
from easel_client.events import parse_event

NOW = "2025-01-01T00:00:00Z"
BOARD = {"id": "brd_1", "name": "b", "created_at": NOW, "updated_at": NOW}
GENERATION = {"id": "gen_1", "node_id": "nod_1", "board_id": "brd_1", "status": "queued", "model_id": "m",
              "params": {"resolution": "1K", "aspect_ratio": "1:1"}, "credits": 2, "created_at": NOW}
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler answering from a script, one entry per request (an exception is raised)."""

    def __init__(self, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def client(handler: Handler, **kwargs: Any) -> Easel:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Easel("http://easel.test", api_key="esk_test", http_client=http,
                 retry=RetryPolicy(attempts=3, backoff=0, max_backoff=0, max_retry_after=5), **kwargs)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def error(status: int, code: str, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "Nope.", **extra}}, headers=headers)


def test_429_waits_retry_after_then_succeeds(sleeps: list[float]) -> None:
    rec = Recorder(error(429, "rate_limited", {"Retry-After": "2"}), error(503, "storage_unavailable",
                   {"Retry-After": "1"}), httpx.Response(201, json=BOARD))
    board = client(rec).create_board("b")  # a POST without a key: 429/503 mean it was not acted on
    assert board.id == "brd_1"
    assert len(rec.requests) == 3
    assert sleeps == [2.0, 1.0]


def test_retry_after_longer_than_allowed_is_raised_at_once(sleeps: list[float]) -> None:
    rec = Recorder(error(429, "rate_limited", {"Retry-After": "120"}))
    with pytest.raises(RateLimited) as exc:
        client(rec).get_account()
    assert exc.value.retry_after == 120 and exc.value.code == "rate_limited"
    assert len(rec.requests) == 1 and sleeps == []


def test_503_retries_run_out() -> None:
    rec = Recorder(*(error(503, "storage_unavailable", {"Retry-After": "0"}) for _ in range(3)))
    with pytest.raises(ServiceUnavailable):
        client(rec).get_board("brd_1")
    assert len(rec.requests) == 3


def test_a_lost_answer_to_a_post_without_key_is_not_retried() -> None:
    rec = Recorder(httpx.ReadError("connection reset"), httpx.Response(201, json=BOARD))
    with pytest.raises(APIConnectionError) as exc:
        client(rec).create_board("b")
    assert exc.value.status is None and exc.value.code == "connection_error"
    assert len(rec.requests) == 1


def test_a_connection_never_made_is_retried_for_any_call() -> None:
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(201, json=BOARD))
    assert client(rec).create_board("b").id == "brd_1"
    assert len(rec.requests) == 2


def test_generation_retries_reuse_one_idempotency_key() -> None:
    rec = Recorder(httpx.RemoteProtocolError("server disconnected"), httpx.Response(202, json=GENERATION),
                   httpx.Response(202, json=GENERATION))
    easel = client(rec)
    easel.generate("nod_1", "m", {"resolution": "1K", "aspect_ratio": "1:1"})
    easel.generate("nod_1", "m", {"resolution": "1K", "aspect_ratio": "1:1"})
    keys = [r.headers["Idempotency-Key"] for r in rec.requests]
    assert keys[0] == keys[1] != keys[2]
    assert all(uuid.UUID(k).version == 4 for k in keys)
    assert json.loads(rec.requests[0].content) == json.loads(rec.requests[1].content)


def test_error_envelope_becomes_a_typed_exception() -> None:
    rec = Recorder(error(409, "upstream_in_progress", {"X-Request-ID": "req_9"}, blocking_node_ids=["nod_2"]))
    with pytest.raises(Conflict) as exc:
        client(rec).generate("nod_1", "m")
    err = exc.value
    assert (err.status, err.code, err.message) == (409, "upstream_in_progress", "Nope.")
    assert err.extra == {"blocking_node_ids": ["nod_2"]} and err.request_id == "req_9"


def test_models_keep_unknown_fields_and_kinds() -> None:
    node = parse_event("1-0", "node.created", json.dumps({
        "id": "nod_1", "board_id": "brd_1", "kind": "audio", "position": {"x": 1, "y": 2},
        "created_at": NOW, "updated_at": NOW, "duration": 3}))
    assert isinstance(node, NodeChanged) and isinstance(node.node, UnknownNode)
    assert node.node.model_extra == {"duration": 3}
    other = parse_event("2-0", "board.renamed", '{"name": "x"}')
    assert isinstance(other, UnknownEvent) and other.data == {"name": "x"}


# -- live events --------------------------------------------------------------------------------


def frame(event_id: str, event: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n"


def text_node(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "board_id": "brd_1", "kind": "text", "text": "t", "position": {"x": 0, "y": 0},
            "created_at": NOW, "updated_at": NOW}


def sse(*parts: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(parts).encode())


def test_events_resume_after_the_stream_ends() -> None:
    rec = Recorder(
        sse(frame("5-0", "board.snapshot", {**BOARD, "nodes": [], "edges": []}),
            frame("6-0", "node.created", text_node("nod_a")), ": keep-alive\n\n"),
        sse(frame("7-0", "node.created", text_node("nod_b"))),
    )
    stream = client(rec).events("brd_1")
    got = [next(stream) for _ in range(3)]
    stream.close()
    assert isinstance(got[0], BoardSnapshot)
    assert [e.id for e in got] == ["5-0", "6-0", "7-0"]  # the keep-alive after an id is no event
    assert "last-event-id" not in rec.requests[0].headers
    assert rec.requests[1].headers["Last-Event-ID"] == "6-0"


def test_an_empty_id_makes_the_reconnect_start_afresh() -> None:
    snapshot = frame("9-0", "board.snapshot", {**BOARD, "nodes": [], "edges": []})
    rec = Recorder(sse(frame("6-0", "node.created", text_node("nod_a")), "id\n\n"), sse(snapshot))
    stream = client(rec).events("brd_1", last_event_id="5-0")
    got = [next(stream) for _ in range(2)]
    stream.close()
    assert rec.requests[0].headers["Last-Event-ID"] == "5-0"
    assert "last-event-id" not in rec.requests[1].headers
    assert isinstance(got[1], BoardSnapshot)


def test_wait_follows_the_stream_until_final() -> None:
    done = {**GENERATION, "status": "succeeded", "image_id": "img_1", "finished_at": NOW}
    image_node = {**text_node("nod_1"), "kind": "image", "status": "generating",
                  "generate": {"enabled": False, "reason_code": "already_generating"}}
    rec = Recorder(
        httpx.Response(200, json=GENERATION),
        sse(frame("1-0", "board.snapshot", {**BOARD, "nodes": [image_node], "edges": []}),
            frame("2-0", "generation.started", {**GENERATION, "status": "running"}),
            frame("3-0", "generation.succeeded", done)),
        httpx.Response(200, json={**GENERATION, "status": "running"}),
    )
    result = client(rec).wait_for_generation("gen_1", timeout=5)
    assert result.status == "succeeded" and result.image_id == "img_1"
    snap = parse_event("1-0", "board.snapshot", json.dumps({**BOARD, "nodes": [image_node], "edges": []}))
    assert isinstance(snap, BoardSnapshot) and isinstance(snap.board.nodes[0], ImageNode)


def test_async_generation_retry_reuses_the_key() -> None:
    rec = Recorder(httpx.ReadTimeout("slow"), httpx.Response(202, json=GENERATION))

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(rec))
        async with AsyncEasel("http://easel.test", api_key="k", http_client=http,
                              retry=RetryPolicy(attempts=2, backoff=0, max_backoff=0)) as easel:
            gen = await easel.generate("nod_1", "m")
            assert gen.status == "queued"
        await http.aclose()

    asyncio.run(main())
    assert [r.headers["Idempotency-Key"] for r in rec.requests][0] == rec.requests[1].headers["Idempotency-Key"]
