"""`easel_client` against the real stack: the README walk-through, retries that never charge
twice, live events that resume across a closed stream, error mapping, and the async client."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from easel_client import (
    APIConnectionError,
    AsyncEasel,
    BoardSnapshot,
    Conflict,
    Easel,
    ImageNode,
    InsufficientCredits,
    NodeChanged,
    NotFound,
    RetryPolicy,
    TextNode,
    Unauthenticated,
    ValidationFailed,
)
from tests.fixtures.generation import PARAMS_1K, SKETCH, STUDIO
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import ADMIN_TOKEN, ServerThread, Stack, one_database, png_bytes, wait_for

pytestmark = [pytest.mark.integration, one_database()]

FAST_RETRIES = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


def admin_client(stack: Stack, base_url: str | None = None) -> Easel:
    return Easel(base_url or stack.api_url, admin_token=ADMIN_TOKEN, assets_url=stack.assets_url,
                 retry=FAST_RETRIES)


@pytest.fixture
def easel(stack: Stack) -> Iterator[Easel]:
    with admin_client(stack) as admin:
        account = admin.create_account("studio", credits=100)
        yield admin.with_api_key(account.api_key)


def decoded(data: bytes) -> PILImage.Image:
    img = PILImage.open(io.BytesIO(data))
    img.load()
    return img


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- a TCP proxy that can drop a connection or cut every stream -------------------------------


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.drop_on_response = False

    def close(self) -> None:
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Proxy:
    """Forwards 127.0.0.1:<port> to a target port, request by request (HTTP/1.1 with
    Content-Length bodies), recording each request's head. A request for which `drop(head)` is
    true reaches the server, but its connection is closed as the answer comes back: the server
    acted, the client never hears of it."""

    def __init__(self, target_port: int, drop: Callable[[dict[str, str]], bool] | None = None) -> None:
        self.target_port = target_port
        self.drop = drop
        self.requests: list[dict[str, str]] = []
        self.conns: list[_Conn] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            conn = _Conn(client, upstream)
            with self._lock:
                self.conns.append(conn)
            threading.Thread(target=self._requests, args=(conn,), daemon=True).start()
            threading.Thread(target=self._answers, args=(conn,), daemon=True).start()

    def _requests(self, conn: _Conn) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.client.recv(65536)
                    if not chunk:
                        conn.upstream.shutdown(socket.SHUT_WR)
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                fields[":request"] = lines[0]
                length = int(fields.get("content-length", "0"))
                while len(buf) < length:
                    chunk = conn.client.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                with self._lock:
                    self.requests.append(fields)
                if self.drop is not None and self.drop(fields):
                    self.drop = None  # only the first such request
                    conn.drop_on_response = True
                conn.upstream.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            return

    def _answers(self, conn: _Conn) -> None:
        try:
            while True:
                chunk = conn.upstream.recv(65536)
                if not chunk or conn.drop_on_response:
                    conn.close()
                    return
                conn.client.sendall(chunk)
        except OSError:
            conn.close()

    def cut(self) -> None:
        """Break every open connection (no complete answer, no goodbye)."""
        with self._lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            conn.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()

    def seen(self, method: str, path_part: str) -> list[dict[str, str]]:
        with self._lock:
            return [r for r in self.requests if r[":request"].startswith(method + " ") and path_part in r[":request"]]


@pytest.fixture
def proxy_factory(stack: Stack) -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(target_port: int | None = None, drop: Callable[[dict[str, str]], bool] | None = None) -> Proxy:
        proxy = Proxy(target_port or port_of(stack.api_url), drop)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


# -- the walk-through ---------------------------------------------------------------------------


def test_walkthrough(stack: Stack, easel: Easel, tmp_path: Path) -> None:
    """The README's walk-through, call for call."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(400, 300, color=(10, 120, 220)))

    board = easel.create_board("moodboard")
    text = easel.create_text_node(board, "a lighthouse at dusk")
    ref = easel.create_image_node(board)
    img = easel.create_image_node(board, position=(400, 0))
    easel.connect(board, text, img)
    edge = easel.connect(board, ref, img)
    assert edge.source_node_id == ref.id and edge.target_node_id == img.id

    uploaded = easel.upload_image(ref, photo)
    assert uploaded.status == "ready" and uploaded.image is not None and uploaded.image.width == 400
    cropped = easel.crop_image(ref, 0, 0, 200, 200)
    assert cropped.image is not None and (cropped.image.width, cropped.image.height) == (200, 200)
    assert cropped.toolbar == ["crop", "fullscreen", "download"]
    ref_bytes = easel.download_node_image(ref)
    assert decoded(ref_bytes).size == (200, 200)
    saved = easel.download_node_image(ref, tmp_path / "ref.png")
    assert saved.read_bytes() == ref_bytes

    detail = easel.get_board(board)
    target = detail.node(img.id)
    assert isinstance(target, ImageNode)
    assert [r.node_id for r in target.references] == [ref.id]
    assert [t.text for t in target.upstream_text] == ["a lighthouse at dusk"]
    assert {m.id for m in easel.list_models()} >= {SKETCH, STUDIO}
    assert next(m for m in easel.node_models(img) if m.id == STUDIO).available

    params = {"resolution": "1K", "aspect_ratio": "16:9"}
    quote = easel.quote(img, STUDIO, params)
    assert quote.affordable and quote.balance == 100
    gen = easel.generate(img, STUDIO, params, expected_credits=quote.credits)
    assert gen.status in ("queued", "running", "succeeded") and gen.credits == quote.credits
    done = easel.wait_for_generation(gen, timeout=60)
    assert done.status == "succeeded", done.error
    assert done.reference_image_ids == [cropped.image.id]

    node = easel.get_node(img)
    assert isinstance(node, ImageNode) and node.status == "ready" and node.image is not None
    assert node.image.id == done.image_id
    assert decoded(easel.download(node.image)).size == (1024, 576)
    assert [g.id for g in easel.list_generations(img).items] == [gen.id]
    assert easel.get_account().credits == 100 - quote.credits
    kinds = [e.kind for e in reversed(easel.ledger(limit=200).items) if e.generation_id == gen.id]
    assert kinds == ["reserve", "capture"]

    deleted = easel.delete_node(ref)
    assert deleted.id == ref.id and deleted.asset_id
    asset = wait_for(lambda: _asset_or_none(easel, deleted.asset_id), timeout=30, what="the asset in the library")
    assert asset.origin.reason == "node_deleted" and asset.origin.node_id == ref.id
    assert asset.id in [a.id for a in easel.list_assets().items]
    assert easel.download_asset(asset) == ref_bytes
    assert easel.download(asset.image) == ref_bytes

    placed = easel.place_asset(board, asset, position={"x": 0, "y": 300})
    assert placed.status == "ready" and placed.image is not None and placed.image.source == "asset"
    assert easel.download_node_image(placed) == ref_bytes
    easel.delete_asset(asset)
    with pytest.raises(NotFound):
        easel.get_asset(asset)

    easel.delete_board(board)
    with pytest.raises(NotFound):
        easel.get_board(board)


def _asset_or_none(easel: Easel, asset_id: str | None) -> Any:
    assert asset_id is not None
    try:
        return easel.get_asset(asset_id)
    except NotFound:
        return None


# -- retries ------------------------------------------------------------------------------------


def test_generation_retried_after_a_dropped_connection_is_charged_once(
        stack: Stack, easel: Easel, proxy_factory: Callable[..., Proxy]) -> None:
    board = easel.create_board("retry")
    node = easel.create_image_node(board)
    easel.update_node(node, prompt="a fox in the snow")
    proxy = proxy_factory(drop=lambda r: r[":request"].startswith("POST ") and "/generations" in r[":request"])
    via_proxy = Easel(proxy.url, api_key=easel.api_key, retry=FAST_RETRIES)

    gen = via_proxy.generate(node, SKETCH, PARAMS_1K)

    sent = proxy.seen("POST", "/generations")
    assert len(sent) == 2, "the dropped request was sent again"
    assert sent[0]["idempotency-key"] == sent[1]["idempotency-key"]
    assert [g.id for g in easel.list_generations(node).items] == [gen.id]
    assert easel.wait_for_generation(gen, timeout=60).status == "succeeded"
    ledger = [e for e in easel.ledger(limit=200).items if e.generation_id == gen.id]
    assert sorted(e.kind for e in ledger) == ["capture", "reserve"]
    assert easel.get_account().credits == 100 - gen.credits
    via_proxy.close()


def test_a_post_without_a_key_is_not_sent_twice(stack: Stack, easel: Easel,
                                                proxy_factory: Callable[..., Proxy]) -> None:
    proxy = proxy_factory(drop=lambda r: r[":request"].startswith("POST /v1/boards "))
    via_proxy = Easel(proxy.url, api_key=easel.api_key, retry=FAST_RETRIES)

    with pytest.raises(APIConnectionError):
        via_proxy.create_board("once")

    assert len(proxy.seen("POST", "/v1/boards")) == 1
    assert [b.name for b in easel.list_boards().items] == ["once"]  # the server did act, once
    via_proxy.close()


# -- live events --------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["server_closes", "connection_drops"])
def test_events_resume_after_the_stream_ends(stack: Stack, easel: Easel, proxy_factory: Callable[..., Proxy],
                                             how: str) -> None:
    """Events made while the client was away arrive after its reconnect, each exactly once."""
    board = easel.create_board("live")
    own: ServerThread | None = None
    if how == "server_closes":
        from easel_api.main import create_app

        own = ServerThread(create_app(stack.settings), free_port())
        own.start()
    proxy = proxy_factory(port_of(own.url) if own else None)
    watcher = Easel(proxy.url, api_key=easel.api_key, retry=FAST_RETRIES)
    stream = watcher.events(board)
    try:
        first = next(stream)
        assert isinstance(first, BoardSnapshot) and first.board.id == board.id
        before = easel.create_text_node(board, "before")
        seen = [next(stream)]

        if own is not None:
            proxy.target_port = port_of(stack.api_url)  # where the reconnect will land
            own.stop()  # the api ends its streams cleanly on shutdown
        else:
            proxy.cut()
        missed = [easel.create_text_node(board, f"missed {i}") for i in range(3)]
        seen += [next(stream) for _ in missed]
        after = easel.create_text_node(board, "after")
        seen.append(next(stream))
    finally:
        stream.close()
        watcher.close()

    assert all(isinstance(e, NodeChanged) and e.type == "node.created" for e in seen)
    created = [e.node.id for e in seen if isinstance(e, NodeChanged)]
    assert created == [before.id, *(n.id for n in missed), after.id]
    assert len({e.id for e in seen}) == len(seen)
    reconnects = proxy.seen("GET", "/events")
    assert len(reconnects) == 2
    assert "last-event-id" not in reconnects[0]
    assert reconnects[1]["last-event-id"] == seen[0].id  # resumed, not restarted (no second snapshot)


# -- errors -------------------------------------------------------------------------------------


def test_errors_are_typed_exceptions(stack: Stack, easel: Easel, paused_worker: None) -> None:
    board = easel.create_board("errors")
    with admin_client(stack) as admin:
        other = admin.with_api_key(admin.create_account("other", credits=0).api_key)

        with pytest.raises(NotFound) as not_found:
            other.get_board(board)
        assert (not_found.value.status, not_found.value.code) == (404, "not_found")
        assert not_found.value.message

        with pytest.raises(ValidationFailed) as invalid:
            easel.create_board("")
        assert invalid.value.code == "validation_error" and invalid.value.extra["details"]
        video = easel.create_node(board, "video")
        image = easel.create_image_node(board)
        with pytest.raises(ValidationFailed) as not_allowed:
            easel.connect(board, video, image)
        assert not_allowed.value.code == "connection_not_allowed"
        assert not_allowed.value.message == "No image model currently supports video as input."

        easel.update_node(image, prompt="a quiet harbour")
        gen = easel.generate(image, SKETCH, PARAMS_1K)  # stays queued: the worker is paused
        with pytest.raises(Conflict) as busy:
            easel.generate(image, SKETCH, PARAMS_1K)
        assert (busy.value.status, busy.value.code) == (409, "already_generating")
        assert easel.cancel_generation(gen).status == "canceled"

        poor_board = other.create_board("poor")
        poor = other.create_image_node(poor_board)
        with pytest.raises(InsufficientCredits) as broke:
            other.generate(poor, SKETCH, PARAMS_1K, prompt="anything")
        assert (broke.value.status, broke.value.code) == (402, "insufficient_credits")

        with pytest.raises(Unauthenticated) as anonymous:
            other.with_api_key("esk_wrong").get_account()
        assert anonymous.value.code == "unauthenticated"
        other.close()


# -- async --------------------------------------------------------------------------------------


def test_async_client_walkthrough(stack: Stack, easel: Easel) -> None:
    api_key = easel.api_key

    async def main() -> None:
        async with AsyncEasel(stack.api_url, api_key=api_key, assets_url=stack.assets_url,
                              retry=FAST_RETRIES) as client:
            board = await client.create_board("async")
            events = client.events(board)
            snapshot = await anext(events)
            assert isinstance(snapshot, BoardSnapshot) and snapshot.board.nodes == []

            text = await client.create_text_node(board, "a red kite")
            created = await anext(events)
            assert isinstance(created, NodeChanged) and isinstance(created.node, TextNode)
            assert created.node.id == text.id
            await events.aclose()

            img = await client.create_image_node(board)
            await client.connect(board, text, img)
            ref = await client.create_image_node(board)
            up = await client.upload_image(ref, io.BytesIO(png_bytes(80, 60)), filename="ref.png")
            assert up.image is not None and up.image.width == 80

            gen = await client.generate(img, SKETCH, PARAMS_1K)
            streamed, polled = await asyncio.gather(client.wait_for_generation(gen, timeout=60),
                                                    client.wait_for_generation(gen.id, timeout=60, poll=True,
                                                                               poll_interval=0.1))
            assert streamed.status == polled.status == "succeeded"
            assert decoded(await client.download_node_image(img)).size == (1024, 1024)

            deleted = await client.delete_node(img)
            assert deleted.asset_id
            asset = None
            while asset is None:  # bounded by the test timeout; each turn is a real request
                try:
                    asset = await client.get_asset(deleted.asset_id)
                except NotFound:
                    await asyncio.sleep(0.05)
            placed = await client.place_asset(board, asset)
            assert placed.image is not None and placed.image.source == "asset"

    asyncio.run(asyncio.wait_for(main(), 90))


def test_runs_and_after_upstream_through_both_clients(stack: Stack, easel: Easel) -> None:
    board = easel.create_board("runs")
    first, second = easel.create_image_node(board), easel.create_image_node(board)
    easel.connect(board, first, second)
    for n in (first, second):
        easel.update_node(n, prompt="a kite")
    plan = easel.quote_run(board, [second, first], model_id=SKETCH, params=PARAMS_1K)
    assert plan.order == [first.id, second.id] and plan.credits == sum(n.credits for n in plan.nodes)
    run = easel.create_run(board, [second, first], model_id=SKETCH, params=PARAMS_1K, expected_credits=plan.credits)
    assert [i.node_id for i in run.items] == plan.order
    assert run.items[1].generation.blocked_by == "upstream"
    assert run.items[1].generation.waits_for == [run.items[0].generation.id]
    done = wait_for(lambda: (r := easel.get_run(board, run)).is_final and r, timeout=60, what="the run")
    assert done.status == "succeeded"
    assert done.items[1].generation.reference_image_ids == [done.items[0].generation.image_id]
    assert easel.cancel_run(board, run).status == "succeeded"  # nothing left to cancel

    async def main() -> None:
        async with AsyncEasel(stack.api_url, api_key=easel.api_key, retry=FAST_RETRIES) as client:
            assert (await client.quote_run(board, [first], model_id=SKETCH)).credits == plan.nodes[0].credits
            upstream = await client.generate(first, SKETCH, PARAMS_1K)
            waiting = await client.generate(second, SKETCH, PARAMS_1K, after_upstream=True)
            # The upstream may have finished already (nothing holds it): then it simply starts.
            assert waiting.waits_for in ([upstream.id], [])
            done = await client.wait_for_generation(waiting, timeout=60)
            assert done.status == "succeeded"
            assert done.reference_image_ids == [(await client.get_generation(upstream)).image_id]
            again = await client.create_run(board, [second], model_id=SKETCH)
            assert (await client.get_run(board, again)).id == again.id
            assert (await client.cancel_run(board, again)).status in ("canceled", "succeeded")

    asyncio.run(asyncio.wait_for(main(), 90))
