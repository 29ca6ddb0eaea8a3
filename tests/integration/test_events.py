"""Live board events (`GET /v1/boards/{id}/events`) as a canvas client sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.gates import ModelGate
from tests.fixtures.processes import api_process
from tests.fixtures.s3 import free_port
from tests.fixtures.sse import Event, SSEClient
from tests.fixtures.stack import Account, ServerThread, Stack, one_database, wait_for

pytestmark = [pytest.mark.integration, one_database()]

GENERATION_EVENTS = ("generation.queued", "generation.started", "generation.succeeded")


def sse(url: str, board: dict[str, Any], account: Account, last_event_id: str | None = None) -> SSEClient:
    return SSEClient(url, board["id"], account.api_key, last_event_id=last_event_id)


def chain(account: Account, board: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """text -> upstream image -> downstream image."""
    c, b = account.client, board["id"]
    txt = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "a lighthouse at dusk"}).json()
    up = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
    down = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
    for src, dst in ((txt, up), (txt, down), (up, down)):
        r = c.post(f"/v1/boards/{b}/edges", json={"source_node_id": src["id"], "target_node_id": dst["id"]})
        assert r.status_code == 201, r.text
    return txt, up, down


def generate(account: Account, node_id: str) -> dict[str, Any]:
    model = account.client.get("/v1/models").json()["items"][0]["id"]
    r = account.client.post(f"/v1/nodes/{node_id}/generations",
                            json={"model_id": model, "params": {"resolution": "1K", "aspect_ratio": "1:1"}})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def of_generation(events: list[Event], gen_id: str) -> list[str]:
    return [e.event for e in events if e.event.startswith("generation.") and e.data["id"] == gen_id]


def node_updates(events: list[Event], node_id: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event == "node.updated" and e.data["id"] == node_id]


def test_fresh_connection_starts_with_the_whole_board(stack: Stack, account: Account, board: dict) -> None:
    txt, up, down = chain(account, board)
    with sse(stack.api_url, board, account) as client:
        assert client.status_code == 200
        assert client.response_headers is not None
        assert client.response_headers["content-type"].startswith("text/event-stream")
        assert client.response_headers["cache-control"] == "no-cache"
        assert client.response_headers["x-accel-buffering"] == "no"
        first = client.wait_for_event(lambda e: True)
        assert first.event == "board.snapshot"
        assert first.id
        whole = account.client.get(f"/v1/boards/{board['id']}").json()
        assert first.data == whole
        assert {n["id"] for n in first.data["nodes"]} == {txt["id"], up["id"], down["id"]}
        assert len(first.data["edges"]) == 3


def test_generation_events_and_downstream_state(stack: Stack, account: Account, board: dict,
                                                gate: ModelGate) -> None:
    _, up, down = chain(account, board)
    with sse(stack.api_url, board, account) as client:
        client.wait_for_type("board.snapshot")
        gen = generate(account, up["id"])
        blocked = client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == down["id"]
                                        and e.data["generate"]["reason_code"] == "upstream_in_progress")
        assert blocked.data["generate"]["enabled"] is False
        assert blocked.data["generate"]["reason"] == "Upstream task in progress."
        client.wait_for_type("generation.started", id=gen["id"])
        gate.open()
        done = client.wait_for_type("generation.succeeded", timeout=60, id=gen["id"])
        assert done.data["status"] == "succeeded" and done.data["image_id"]
        client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == down["id"]
                              and e.data["generate"]["enabled"] is True, timeout=30)
        final_up = client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == up["id"]
                                         and e.data["status"] == "ready")
        events = client.events
    assert of_generation(events, gen["id"]) == list(GENERATION_EVENTS)
    ups = node_updates(events, up["id"])
    assert any(u["status"] == "generating" and u["generate"]["reason_code"] == "already_generating" for u in ups)
    assert final_up.data["image"]["id"] == done.data["image_id"]
    # The last state each node was sent is the state the api reports afterwards.
    for node in (up, down):
        last = node_updates(events, node["id"])[-1]
        now = account.client.get(f"/v1/nodes/{node['id']}").json()
        assert last["generate"] == now["generate"]
        assert last == now
    # Ids grow: a client can resume from any of them.
    ids = [tuple(map(int, e.id.split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_graph_changes_are_published(stack: Stack, account: Account, board: dict) -> None:
    c, b = account.client, board["id"]
    with sse(stack.api_url, board, account) as client:
        client.wait_for_type("board.snapshot")
        txt = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "fog"}).json()
        img = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image", "position": {"x": 10, "y": 20}}).json()
        assert client.wait_for_type("node.created", id=txt["id"]).data == txt
        assert client.wait_for_type("node.created", id=img["id"]).data == img
        edge = c.post(f"/v1/boards/{b}/edges", json={"source_node_id": txt["id"], "target_node_id": img["id"]}).json()
        assert client.wait_for_type("edge.created", id=edge["id"]).data == edge
        fed = client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == img["id"]
                                    and e.data["upstream_text"] == [{"node_id": txt["id"], "text": "fog"}])
        assert fed.data["generate"]["enabled"] is True
        moved = c.patch(f"/v1/nodes/{img['id']}", json={"position": {"x": 99, "y": 7}}).json()
        assert client.wait_for_event(lambda e: e.event == "node.updated" and e.data == moved)
        assert c.delete(f"/v1/edges/{edge['id']}").status_code == 204
        assert client.wait_for_type("edge.deleted", id=edge["id"]).data["source_node_id"] == txt["id"]
        cut = client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == img["id"]
                                    and e.data["generate"]["reason_code"] == "prompt_required")
        assert cut.data["upstream_text"] == []
        assert c.delete(f"/v1/nodes/{txt['id']}").status_code == 200
        gone = client.wait_for_type("node.deleted", id=txt["id"])
        assert gone.data["board_id"] == b


def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(stack: Stack, account: Account,
                                                                   board: dict) -> None:
    c, b = account.client, board["id"]
    with sse(stack.api_url, board, account) as steady:
        steady.wait_for_type("board.snapshot")
        first = sse(stack.api_url, board, account).start()
        first.wait_for_type("board.snapshot")
        txt = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "one"}).json()
        first.wait_for_type("node.created", id=txt["id"])
        first.close()
        resume_from = first.events[-1].id
        # Missed while away: creations, edits, a connection and a deletion.
        img = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
        c.patch(f"/v1/nodes/{txt['id']}", json={"text": "two"})
        edge = c.post(f"/v1/boards/{b}/edges", json={"source_node_id": txt["id"], "target_node_id": img["id"]}).json()
        c.patch(f"/v1/nodes/{img['id']}", json={"position": {"x": 1, "y": 2}})
        c.delete(f"/v1/edges/{edge['id']}")
        marker = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "marker"}).json()
        steady.wait_for_type("node.created", id=marker["id"])
        with sse(stack.api_url, board, account, last_event_id=resume_from) as again:
            again.wait_for_type("node.created", id=marker["id"])
            # Live events keep flowing after the replay, without repeating any.
            after = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "after"}).json()
            again.wait_for_type("node.created", id=after["id"])
            steady.wait_for_type("node.created", id=after["id"])
            resumed = again.events
        expected = steady.events
    start = [e.id for e in expected].index(resume_from)
    assert [(e.id, e.event) for e in resumed] == [(e.id, e.event) for e in expected[start + 1:]]
    assert resumed[0].event != "board.snapshot"
    assert len(resumed) >= 8


def test_unknown_position_gets_a_snapshot(stack: Stack, account: Account, board: dict) -> None:
    """A Last-Event-ID the stream cannot vouch for (trimmed, or Redis lost its data) must not leave
    the client believing it is up to date: it gets the whole board again."""
    c, b = account.client, board["id"]
    c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "x"})
    for last in ("99999999999999-0", "1-0", "garbage"):
        with sse(stack.api_url, board, account, last_event_id=last) as client:
            assert client.wait_for_event(lambda e: True).event == "board.snapshot"


def test_another_account_gets_404(stack: Stack, account: Account, board: dict) -> None:
    other = stack.new_account()
    client = SSEClient(stack.api_url, board["id"], other.api_key).start()
    client.close()
    assert client.status_code == 404
    assert client.response_headers is not None
    assert client.response_headers["content-type"].startswith("application/json")
    assert httpx.Response(404, content=client.body).json()["error"]["code"] == "not_found"
    missing = SSEClient(stack.api_url, "brd_does_not_exist", account.api_key).start()
    missing.close()
    assert missing.status_code == 404
    anonymous = SSEClient(stack.api_url, board["id"], "wrong-key").start()
    anonymous.close()
    assert anonymous.status_code == 401


@pytest.fixture
def second_api(stack: Stack) -> Iterator[str]:
    """Another api process on the same database and Redis, as a second replica would be."""
    with api_process(stack.settings) as url:
        yield url


def test_worker_events_reach_another_api_process(stack: Stack, account: Account, board: dict,
                                                 second_api: str, gate: ModelGate) -> None:
    _, up, down = chain(account, board)
    with sse(second_api, board, account) as client:
        snapshot = client.wait_for_type("board.snapshot")
        assert {n["id"] for n in snapshot.data["nodes"]} >= {up["id"], down["id"]}
        gen = generate(account, up["id"])  # through the first api
        client.wait_for_type("generation.started", id=gen["id"])
        gate.open()
        client.wait_for_type("generation.succeeded", timeout=60, id=gen["id"])
        client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == down["id"]
                              and e.data["generate"]["enabled"] is True)
        events = client.events
    assert of_generation(events, gen["id"]) == list(GENERATION_EVENTS)
    assert any(u["generate"]["reason_code"] == "upstream_in_progress" for u in node_updates(events, down["id"]))
    assert node_updates(events, up["id"])[-1]["status"] == "ready"


@pytest.fixture
def own_api(stack: Stack) -> Iterator[tuple[Any, ServerThread]]:
    from easel_api.main import create_app

    app = create_app(stack.settings)
    server = ServerThread(app, free_port())
    server.start()
    try:
        yield app, server
    finally:
        server.stop()


def test_stopping_the_api_ends_open_streams(stack: Stack, account: Account, board: dict,
                                            own_api: tuple[Any, ServerThread]) -> None:
    app, server = own_api
    clients = [sse(server.url, board, account).start() for _ in range(3)]
    try:
        for client in clients:
            client.wait_for_type("board.snapshot")
        assert list(app.state.hub.readers) == [board["id"]]
        server.stop()
        assert not server.thread.is_alive()
        for client in clients:
            assert client.wait_ended(30), "stream still open after the api stopped"
        assert app.state.hub.readers == {}
    finally:
        for client in clients:
            client.close()


def test_idle_streams_get_keep_alives(stack: Stack, account: Account, board: dict,
                                      own_api: tuple[Any, ServerThread], monkeypatch: pytest.MonkeyPatch) -> None:
    from easel_api import live

    _, server = own_api
    monkeypatch.setattr(live, "KEEPALIVE_SECONDS", 0.2)
    with sse(server.url, board, account) as client:
        client.wait_for_type("board.snapshot")
        wait_for(lambda: client.comments >= 3, timeout=30, what="keep-alive comments")
        node = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "text"}).json()
        client.wait_for_type("node.created", id=node["id"])
        assert not client.ended


def test_closing_the_hub_ends_streams_cleanly(stack: Stack, account: Account, board: dict,
                                              own_api: tuple[Any, ServerThread]) -> None:
    """What a server calls when its shutdown begins: every stream ends with a complete response
    (so clients reconnect at once, elsewhere, with their Last-Event-ID)."""
    app, server = own_api
    clients = [sse(server.url, board, account).start() for _ in range(3)]
    try:
        for client in clients:
            client.wait_for_type("board.snapshot")
        loop = server.server.servers[0].get_loop()
        asyncio.run_coroutine_threadsafe(app.state.hub.close(), loop).result(10)
        for client in clients:
            assert client.wait_ended(30), "stream still open after the hub closed"
            assert client.error is None, client.error
        assert app.state.hub.readers == {}
    finally:
        for client in clients:
            client.close()


def test_connecting_to_a_generating_node_updates_the_new_upstream(stack: Stack, account: Account, board: dict,
                                                                  gate: ModelGate) -> None:
    """An image node may not generate while a node it feeds does: linking it to a busy node (and
    unlinking it) changes its generate state at once, not when the busy node finishes."""
    c, b = account.client, board["id"]
    busy = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
    c.patch(f"/v1/nodes/{busy['id']}", json={"prompt": "a red kite"})
    feeder = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
    c.patch(f"/v1/nodes/{feeder['id']}", json={"prompt": "a blue kite"})
    with sse(stack.api_url, board, account) as client:
        client.wait_for_type("board.snapshot")
        gen = generate(account, busy["id"])
        client.wait_for_type("generation.started", id=gen["id"])
        edge = c.post(f"/v1/boards/{b}/edges", json={"source_node_id": feeder["id"], "target_node_id": busy["id"]})
        assert edge.status_code == 201, edge.text
        linked = c.get(f"/v1/nodes/{feeder['id']}").json()["generate"]
        assert c.delete(f"/v1/edges/{edge.json()['id']}").status_code == 204
        unlinked = c.get(f"/v1/nodes/{feeder['id']}").json()["generate"]
        gate.open()
        client.wait_for_type("generation.succeeded", timeout=60, id=gen["id"])
        events = client.events
    assert linked["reason_code"] == "downstream_in_progress" and unlinked["enabled"] is True
    kinds = [e.event for e in events]
    created, deleted = kinds.index("edge.created"), kinds.index("edge.deleted")
    finished = kinds.index("generation.succeeded")
    assert created < deleted < finished, "the generation ended too early for this test"
    feeder_states = [(i, e.data["generate"]) for i, e in enumerate(events)
                     if e.event == "node.updated" and e.data["id"] == feeder["id"]]
    assert any(created < i < deleted and g == linked for i, g in feeder_states), feeder_states
    assert any(deleted < i < finished and g == unlinked for i, g in feeder_states), feeder_states


def test_an_image_node_feeding_a_generating_node_shows_it_live(stack: Stack, account: Account, board: dict,
                                                                gate: ModelGate) -> None:
    """Live, not only on a reload: when a node starts generating, the image node feeding it says
    so (`downstream_in_progress`); so does every later update of that image node while the run
    lasts; and once the run ends, the image node may generate again."""
    c, b = account.client, board["id"]
    up = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
    c.patch(f"/v1/nodes/{up['id']}", json={"prompt": "a paper boat"})
    down = c.post(f"/v1/boards/{b}/nodes", json={"kind": "image"}).json()
    c.patch(f"/v1/nodes/{down['id']}", json={"prompt": "the boat at sea"})
    edge = c.post(f"/v1/boards/{b}/edges", json={"source_node_id": up["id"], "target_node_id": down["id"]})
    assert edge.status_code == 201, edge.text

    def up_state(reason: str | None) -> Any:
        return lambda e: (e.event == "node.updated" and e.data["id"] == up["id"]
                          and e.data["generate"]["reason_code"] == reason)

    with sse(stack.api_url, board, account) as client:
        client.wait_for_type("board.snapshot")
        gen = generate(account, down["id"])
        busy = client.wait_for_event(up_state("downstream_in_progress"))
        assert busy.data["generate"]["enabled"] is False
        client.wait_for_type("generation.started", id=gen["id"])
        r = c.patch(f"/v1/nodes/{up['id']}", json={"prompt": "a paper boat, folded"})
        assert r.status_code == 200, r.text
        renamed = client.wait_for_event(lambda e: e.event == "node.updated" and e.data["id"] == up["id"]
                                        and e.data["prompt"] == "a paper boat, folded")
        assert renamed.data["generate"]["reason_code"] == "downstream_in_progress"
        gate.open()
        client.wait_for_type("generation.succeeded", timeout=60, id=gen["id"])
        free = client.wait_for_event(up_state(None), timeout=30)
        assert free.data["generate"]["enabled"] is True
    assert free.data == c.get(f"/v1/nodes/{up['id']}").json()
