"""Live events under load: many idle subscribers on one api process, clients that never read,
clients that vanish. The api runs in this process so the test can look at its event hub."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fixtures.s3 import free_port
from tests.fixtures.sse import RawSSE, SSEClient, abort_socket, events_request
from tests.fixtures.stack import Account, ServerThread, Stack, one_database, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120), one_database()]

SUBSCRIBERS = int(os.environ.get("EASEL_EVENTS_SUBSCRIBERS", "1000"))


@dataclass
class Api:
    app: Any
    url: str
    port: int

    def readers(self) -> dict[str, Any]:
        return dict(self.app.state.hub.readers)

    def subscribers(self, board_id: str) -> int:
        reader = self.readers().get(board_id)
        return len(reader.subscribers) if reader is not None else 0


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    from easel_api.main import create_app

    port = free_port()
    app = create_app(stack.settings)
    server = ServerThread(app, port)
    server.start()
    try:
        yield Api(app, server.url, port)
    finally:
        server.stop()


async def _fan_out(api: Api, account: Account, board_id: str, node_id: str, n: int) -> dict[str, float]:
    gate = asyncio.Semaphore(200)  # connection attempts in flight; all n stay connected

    async def connect() -> RawSSE:
        async with gate:
            stream = await RawSSE.open(api.port, board_id, account.api_key)
            await stream.until(b"event: board.snapshot")
            return stream

    t0 = time.monotonic()
    streams = await asyncio.wait_for(asyncio.gather(*(connect() for _ in range(n))), 40)
    connected = time.monotonic() - t0
    try:
        # Every subscriber shares the one reader of this board.
        assert list(api.readers()) == [board_id]
        assert api.subscribers(board_id) == n
        async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {account.api_key}"}) as c:
            t1 = time.monotonic()
            r = await c.patch(f"/v1/nodes/{node_id}", json={"position": {"x": 123.5, "y": 7.0}})
            assert r.status_code == 200, r.text
        needle = b'"x":123.5'
        got = await asyncio.wait_for(asyncio.gather(*(s.until(b"event: node.updated", needle) for s in streams)),
                                     30)
        delivered = time.monotonic() - t1
        assert len(got) == n
    finally:
        for s in streams:
            s.close()
    t2 = time.monotonic()
    while api.readers():
        assert time.monotonic() - t2 < 10, "board reader still running after every client left"
        await asyncio.sleep(0.05)
    return {"connect_s": connected, "deliver_s": delivered, "release_s": time.monotonic() - t2}


def test_one_process_serves_many_idle_subscribers(stack: Stack, account: Account, board: dict, api: Api) -> None:
    node = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    figures = asyncio.run(_fan_out(api, account, board["id"], node["id"], SUBSCRIBERS))
    print(f"\n{SUBSCRIBERS} subscribers ({stack.db_kind}): connected in {figures['connect_s']:.1f} s, "
          f"all received one change in {figures['deliver_s']:.2f} s, reader freed in {figures['release_s']:.2f} s")


def test_one_process_serves_many_boards(stack: Stack, account: Account, api: Api) -> None:
    """Every watched board has a reader holding a Redis connection: more boards than a default
    connection pool holds (100) must still work, and leave no reader behind."""
    c = account.client
    boards = [c.post("/v1/boards", json={"name": f"wall {i}"}).json()["id"] for i in range(150)]

    async def scenario() -> None:
        streams = await asyncio.wait_for(asyncio.gather(*(RawSSE.open(api.port, b, account.api_key)
                                                          for b in boards)), 40)
        try:
            await asyncio.wait_for(asyncio.gather(*(s.until(b"event: board.snapshot") for s in streams)), 30)
            assert len(api.readers()) == len(boards)
            async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {account.api_key}"}) as h:
                for b in boards:
                    assert (await h.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": b})).status_code == 201
            got = await asyncio.wait_for(asyncio.gather(*(s.until(b"event: node.created", f'"text":"{b}"'.encode())
                                                          for s, b in zip(streams, boards, strict=True))), 30)
            assert len(got) == len(boards)
        finally:
            for s in streams:
                s.close()
        deadline = time.monotonic() + 10
        while api.readers():
            assert time.monotonic() < deadline, f"{len(api.readers())} readers left behind"
            await asyncio.sleep(0.05)

    asyncio.run(scenario())


def _never_reading_client(port: int, board_id: str, api_key: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
    sock.connect(("127.0.0.1", port))
    sock.sendall(events_request(port, board_id, api_key))
    return sock


class _BigEdits:
    """A text node feeding `images` image nodes. Each edit of its text is a big `node.updated` for
    it and one for every image it feeds, so a client that does not read fills its socket buffers
    and its queue fast (one event per edit once took longer than 40 s on a loaded CI machine).
    `until` edits, one after another, until a condition holds; `sent` counts the edits."""

    def __init__(self, client: httpx.Client, board_id: str, images: int) -> None:
        self.client = client
        self.node_id = client.post(f"/v1/boards/{board_id}/nodes", json={"kind": "text", "text": "seed"}).json()["id"]
        for _ in range(images):
            img = client.post(f"/v1/boards/{board_id}/nodes", json={"kind": "image"}).json()
            client.post(f"/v1/boards/{board_id}/edges",
                        json={"source_node_id": self.node_id, "target_node_id": img["id"]})
        self.sent = 0

    def until(self, done: Callable[[], bool], *, timeout: float, what: str) -> None:
        def edited_enough() -> bool:
            if done():
                return True
            self.sent += 1
            r = self.client.patch(f"/v1/nodes/{self.node_id}", json={"text": f"{self.sent} " + "x" * 4990})
            assert r.status_code == 200, r.text
            return False

        wait_for(edited_enough, timeout=timeout, interval=0, what=what)


def test_a_client_that_never_reads_does_not_hold_up_others(stack: Stack, account: Account, board: dict,
                                                           api: Api) -> None:
    c, b = account.client, board["id"]
    edits = _BigEdits(c, b, images=8)
    stuck = _never_reading_client(api.port, b, account.api_key)
    dead = _never_reading_client(api.port, b, account.api_key)
    with SSEClient(api.url, b, account.api_key) as normal:
        normal.wait_for_type("board.snapshot")
        wait_for(lambda: api.subscribers(b) == 3, what="three subscribers")
        abort_socket(dead)
        # Write until the non-reading client's queue backs up: its socket is full and the api can
        # no longer send to it.

        def backed_up() -> bool:
            reader = api.readers().get(b)
            # A reading client's queue empties at once; only the silent one's keeps growing.
            return reader is not None and any(s.queue.qsize() >= 50 for s in list(reader.subscribers))

        edits.until(backed_up, timeout=40, what="the silent client to fall behind")
        marker = c.patch(f"/v1/nodes/{edits.node_id}", json={"text": "marker"}).json()
        normal.wait_for_event(lambda e: e.event == "node.updated" and e.data == marker)
        texts = [e.data["text"] for e in normal.events if e.event == "node.updated" and e.data["id"] == edits.node_id]
        assert len(texts) == edits.sent + 1  # the normal client missed nothing
        wait_for(lambda: api.subscribers(b) == 2, what="the vanished client to be dropped")
        abort_socket(stuck)
        wait_for(lambda: api.subscribers(b) == 1, what="the stuck client to be dropped")
    wait_for(lambda: b not in api.readers(), what="the board reader to stop")


def test_a_client_too_far_behind_is_cut_off_and_resumes_without_loss(
        stack: Stack, account: Account, board: dict, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from easel_api import live

    monkeypatch.setattr(live, "QUEUE_LIMIT", 30)
    c, b = account.client, board["id"]
    edits = _BigEdits(c, b, images=4)  # five big events per edit
    lagging = _never_reading_client(api.port, b, account.api_key)
    with SSEClient(api.url, b, account.api_key) as steady:
        steady.wait_for_type("board.snapshot")
        wait_for(lambda: api.subscribers(b) == 2, what="two subscribers")
        # The lagging client overflows: it no longer counts.
        edits.until(lambda: api.subscribers(b) == 1, timeout=90, what="the lagging client to overflow")
        # It reads again: what it had in flight arrives, then the stream ends (a complete response).
        seen = asyncio.run(_drain(lagging))
        last_seen = [eid for eid, _ in seen if eid][-1]
        last_edit = f"{edits.sent - 1} "
        steady.wait_for_event(lambda e: e.event == "node.updated" and (e.data.get("text") or "").startswith(last_edit))
        assert seen[0][1] == "board.snapshot" and len(seen) < len(steady.events)
        marker = c.patch(f"/v1/nodes/{edits.node_id}", json={"text": "marker"}).json()
        with SSEClient(api.url, b, account.api_key, last_event_id=last_seen) as resumed:
            resumed.wait_for_event(lambda e: e.event == "node.updated" and e.data == marker)
        steady.wait_for_event(lambda e: e.event == "node.updated" and e.data == marker)
    expected = [(e.id, e.event) for e in steady.events]
    start = [i for i, _ in expected].index(last_seen)
    assert [(e.id, e.event) for e in resumed.events] == expected[start + 1:]


def test_a_board_whose_only_client_stopped_reading_stops_its_reader(
        stack: Stack, account: Account, board: dict, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from easel_api import live

    monkeypatch.setattr(live, "QUEUE_LIMIT", 30)
    b = board["id"]
    edits = _BigEdits(account.client, b, images=4)
    lagging = _never_reading_client(api.port, b, account.api_key)
    wait_for(lambda: api.subscribers(b) == 1, what="the subscriber")
    # The client is still connected and has not read; its board's reader stops all the same.
    edits.until(lambda: b not in api.readers(), timeout=90, what="the board reader to stop")
    # When it reads again, what was in flight arrives and the stream ends: a complete response,
    # so it reconnects (with its last id) as any cut-off client does.
    seen = asyncio.run(_drain(lagging))
    assert seen[0][1] == "board.snapshot"
    assert b not in api.readers()


async def _drain(sock: socket.socket) -> list[tuple[str, str]]:
    """(id, event) of every frame until the server ends the response."""
    reader, writer = await asyncio.open_connection(sock=sock)
    stream = RawSSE(reader, writer)
    await reader.readuntil(b"\r\n\r\n")
    out: list[tuple[str, str]] = []
    try:
        while True:
            frame = await asyncio.wait_for(stream.frame(), 20)
            fields = dict(line.partition(b": ")[::2] for line in frame.split(b"\n") if not line.startswith(b":"))
            out.append((fields.get(b"id", b"").decode(), fields.get(b"event", b"").decode()))
    except EOFError:
        return out
    finally:
        stream.close()


def test_abrupt_disconnects_do_not_leak_readers(stack: Stack, account: Account, api: Api) -> None:
    boards = [account.client.post("/v1/boards", json={"name": f"b{i}"}).json()["id"] for i in range(5)]

    async def hit_and_run(board_id: str) -> None:
        """Asks for a stream and is gone before the api has answered."""
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(events_request(api.port, board_id, account.api_key))
        await writer.drain()
        RawSSE(reader, writer).abort()

    async def churn() -> None:
        for _ in range(3):
            await asyncio.gather(*(hit_and_run(b) for b in boards for _ in range(4)))
            streams = await asyncio.gather(*(RawSSE.open(api.port, b, account.api_key)
                                             for b in boards for _ in range(4)))
            await asyncio.gather(*(s.until(b"event: board.snapshot") for s in streams))
            assert sorted(api.readers()) == sorted(boards)
            for s in streams:
                s.abort()
            deadline = time.monotonic() + 30
            while api.readers():
                assert time.monotonic() < deadline, f"readers left behind: {list(api.readers())}"
                await asyncio.sleep(0.05)

    asyncio.run(churn())
    tasks = [r.task for r in api.readers().values()]
    assert tasks == []


def test_after_a_redis_outage_clients_reload_the_board(stack: Stack, account: Account, board: dict,
                                                        api: Api) -> None:
    """Events published while Redis is down are lost, and a restarted Redis (no persistence) has
    forgotten the stream: clients must not carry on as if they had missed nothing."""
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be restarted here")
    c, b = account.client, board["id"]
    c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "before"})
    with SSEClient(api.url, b, account.api_key) as client:
        client.wait_for_type("board.snapshot")
        stack.redis.stop()
        try:
            assert client.wait_ended(30), "the stream outlived Redis"
            # Committed, but its event cannot be published.
            during = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "during"}).json()
        finally:
            stack.redis.start()
    assert client.error is None, client.error
    assert client.last_event_id == ""  # told to start afresh, as a browser would reconnect
    wait_for(lambda: b not in api.readers(), what="the failed reader to go")
    with SSEClient(api.url, b, account.api_key, last_event_id=client.last_event_id or None) as again:
        snapshot = again.wait_for_type("board.snapshot")
        assert during["id"] in {n["id"] for n in snapshot.data["nodes"]}
        after = c.post(f"/v1/boards/{b}/nodes", json={"kind": "text", "text": "after"}).json()
        again.wait_for_type("node.created", id=after["id"])

