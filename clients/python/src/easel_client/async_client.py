"""`AsyncEasel`: the asyncio client, method for method the twin of `Easel` (see its docstrings)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx
import httpx_sse
from tenacity import AsyncRetrying

from easel_client import _routes as routes
from easel_client._core import (
    NOT_GIVEN,
    STREAM_IDLE_SECONDS,
    USER_AGENT,
    Call,
    Config,
    FileInput,
    IdResetWatch,
    NotGiven,
    RetryPolicy,
    connection_error,
    events_call,
    finish,
    reconnect_delay,
    write_atomically,
)
from easel_client._routes import Params, PositionInput
from easel_client._shared import Identified, deadline_left, ident, not_an_event_stream, wait_timeout
from easel_client.errors import WaitTimeout, error_from_response
from easel_client.events import BoardEvent, BoardSnapshot, GenerationChanged, parse_event
from easel_client.models import (
    Account,
    Asset,
    Board,
    BoardDetail,
    CreatedAccount,
    DeletedNode,
    Edge,
    Generation,
    Image,
    ImageNode,
    LedgerEntry,
    Model,
    Node,
    NodeKind,
    NodeModel,
    Page,
    Quote,
    Run,
    RunQuote,
    TextNode,
)

T = TypeVar("T")
PathInput = str | os.PathLike[str]


class AsyncEasel:
    """A client of one Easel deployment, acting as one account (`api_key`) and, for the admin
    routes, as the operator (`admin_token`).

    `base_url` is the api (default `EASEL_API_URL`, else http://127.0.0.1:8000); `assets_url`
    the assets service (default `EASEL_ASSETS_URL`, else the api's address, which is right
    behind the production ingress). Use it as a context manager, or call `close()`."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 admin_token: str | None = None, assets_url: str | None = None,
                 timeout: float | httpx.Timeout = 30.0, retry: RetryPolicy | None = None,
                 http_client: httpx.AsyncClient | None = None) -> None:
        self._config = Config(base_url, api_key=api_key, admin_token=admin_token, assets_url=assets_url, retry=retry)
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = http_client or httpx.AsyncClient(timeout=self._timeout, headers={"User-Agent": USER_AGENT})
        self._owns_http = http_client is None

    @property
    def api_key(self) -> str | None:
        return self._config.api_key

    def with_api_key(self, api_key: str) -> AsyncEasel:
        """A client acting as another account, sharing this one's connections (close this one last)."""
        clone = object.__new__(AsyncEasel)
        clone.__dict__.update(self.__dict__)
        clone._config = self._config.replace(api_key=api_key)
        clone._owns_http = False
        return clone

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncEasel:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- sending -----------------------------------------------------------------------------

    async def _attempts(self, call: Call[Any], attempt: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        try:
            return await AsyncRetrying(**self._config.retrying_kwargs(call))(_awaiting(attempt))
        except httpx.TransportError as exc:
            raise connection_error(exc) from exc

    async def _send(self, call: Call[T]) -> T:
        return finish(call, await self._attempts(call, lambda: self._once(call)))

    async def _once(self, call: Call[Any]) -> httpx.Response:
        return await self._http.send(self._config.build(self._http, call))

    # -- accounts and credits ------------------------------------------------------------------

    async def create_account(self, name: str, credits: int = 0) -> CreatedAccount:
        """Admin: a new account; its `api_key` is shown this once (see `with_api_key`)."""
        return await self._send(routes.create_account(name, credits))

    async def change_credits(self, account_id: str, amount: int, reason: str) -> Account:
        """Admin: grant (amount > 0) or debit (amount < 0) credits."""
        return await self._send(routes.change_credits(account_id, amount, reason))

    async def get_account(self) -> Account:
        return await self._send(routes.get_account())

    async def ledger(self, *, limit: int | None = None, cursor: str | None = None) -> Page[LedgerEntry]:
        """Credit movements, newest first."""
        return await self._send(routes.ledger(limit, cursor))

    # -- boards --------------------------------------------------------------------------------

    async def create_board(self, name: str) -> Board:
        return await self._send(routes.create_board(name))

    async def list_boards(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Board]:
        return await self._send(routes.list_boards(limit, cursor))

    async def get_board(self, board: Identified) -> BoardDetail:
        """The board with all its nodes and edges."""
        return await self._send(routes.get_board(ident(board)))

    async def delete_board(self, board: Identified) -> None:
        """Every image the board's nodes hold goes to the assets library."""
        await self._send(routes.delete_board(ident(board)))

    # -- nodes ---------------------------------------------------------------------------------

    async def create_node(self, board: Identified, kind: NodeKind, *, text: str | None = None,
                          position: PositionInput | None = None, asset_id: str | None = None) -> Node:
        return await self._send(routes.create_node(ident(board), kind, text, position, asset_id))

    async def create_text_node(self, board: Identified, text: str, *,
                               position: PositionInput | None = None) -> TextNode:
        node = await self.create_node(board, "text", text=text, position=position)
        assert isinstance(node, TextNode)
        return node

    async def create_image_node(self, board: Identified, *, position: PositionInput | None = None) -> ImageNode:
        node = await self.create_node(board, "image", position=position)
        assert isinstance(node, ImageNode)
        return node

    async def get_node(self, node: Identified) -> Node:
        return await self._send(routes.get_node(ident(node)))

    async def update_node(self, node: Identified, *, text: str | NotGiven = NOT_GIVEN,
                          prompt: str | NotGiven = NOT_GIVEN, position: PositionInput | NotGiven = NOT_GIVEN,
                          model_id: str | NotGiven | None = NOT_GIVEN,
                          params: Params | NotGiven = NOT_GIVEN) -> Node:
        """Sets only the fields given (`model_id=None` clears the model)."""
        return await self._send(routes.update_node(ident(node), text=text, prompt=prompt, position=position,
                                                   model_id=model_id, params=params))

    async def delete_node(self, node: Identified) -> DeletedNode:
        """The node's image, if any, goes to the assets library (`asset_id`); a generation in
        flight is canceled and refunded."""
        return await self._send(routes.delete_node(ident(node)))

    # -- edges ---------------------------------------------------------------------------------

    async def connect(self, board: Identified, source: Identified, target: Identified) -> Edge:
        """An edge from `source` to `target` (reference images are numbered in connection order)."""
        return await self._send(routes.create_edge(ident(board), ident(source), ident(target)))

    async def delete_edge(self, edge: Identified) -> None:
        await self._send(routes.delete_edge(ident(edge)))

    # -- images --------------------------------------------------------------------------------

    async def upload_image(self, node: Identified, file: FileInput, *, filename: str | None = None,
                           content_type: str | None = None) -> ImageNode:
        """Upload PNG, JPEG or WebP (at most 10 MiB) from a path, bytes or a binary file object."""
        return await self._send(routes.upload_image(ident(node), file, filename, content_type))

    async def crop_image(self, node: Identified, x: int, y: int, width: int, height: int) -> ImageNode:
        return await self._send(routes.crop_image(ident(node), x, y, width, height))

    async def node_image_url(self, node: Identified, *, download: bool = False) -> str:
        """A short-lived link to the node's image (full screen, or as an attachment)."""
        return await self._send(routes.node_image_url(ident(node), download))

    async def image_url(self, image: Identified, *, thumbnail: bool = False) -> str:
        """A short-lived link to an image by id (`node.image.id`)."""
        return await self._send(routes.image_url(ident(image), thumbnail))

    @overload
    async def download_node_image(self, node: Identified, to: None = None) -> bytes: ...
    @overload
    async def download_node_image(self, node: Identified, to: PathInput) -> Path: ...
    async def download_node_image(self, node: Identified,
                                  to: PathInput | None = None) -> bytes | Path:
        """The node's image: its bytes, or written to the path `to` (returned)."""
        return await self._fetch(await self.node_image_url(node, download=True), to)

    @overload
    async def download(self, url: str | Image, to: None = None) -> bytes: ...
    @overload
    async def download(self, url: str | Image, to: PathInput) -> Path: ...
    async def download(self, url: str | Image, to: PathInput | None = None) -> bytes | Path:
        """Any image link found in an answer (`image.url`, `thumbnail_url`, an asset's image) or
        an `Image`: follows the 302 and returns the bytes, or writes them to `to`."""
        target = url.url if isinstance(url, Image) else url
        if self._config.is_own_url(target):
            target = await self._send(routes.redirect_of(target))
        return await self._fetch(target, to)

    async def _fetch(self, url: str, to: PathInput | None) -> bytes | Path:
        call = routes.fetch(url)
        if to is None:
            response = await self._attempts(call, lambda: self._once(call))
            return finish(call, response).content
        path, part = write_atomically(to)

        async def attempt() -> httpx.Response:
            response = await self._http.send(self._config.build(self._http, call), stream=True)
            try:
                if response.is_success:
                    # Local file writes are short next to network reads; not worth a thread each.
                    with part.open("wb") as out:
                        async for chunk in response.aiter_bytes():
                            out.write(chunk)
                else:
                    await response.aread()
                return response
            finally:
                await response.aclose()

        response = await self._attempts(call, attempt)
        if not response.is_success:
            raise error_from_response(response)
        part.replace(path)
        return path

    # -- models, price, generations ------------------------------------------------------------

    async def list_models(self) -> list[Model]:
        return await self._send(routes.list_models())

    async def node_models(self, node: Identified) -> list[NodeModel]:
        """The models with `available` / `reason` for this node (reference limits)."""
        return await self._send(routes.node_models(ident(node)))

    async def quote(self, node: Identified, model_id: str, params: Params | None = None) -> Quote:
        """The exact price a generation with these inputs will charge, and whether it is affordable."""
        return await self._send(routes.quote(ident(node), model_id, params))

    async def generate(self, node: Identified, model_id: str, params: Params | None = None, *,
                       prompt: str | None = None, expected_credits: int | None = None,
                       idempotency_key: str | None = None, after_upstream: bool = False) -> Generation:
        """Start a generation (202). An `Idempotency-Key` is sent (a fresh one unless given) and
        kept across retries, so a retried call never starts or charges twice. `after_upstream`:
        while a node directly upstream is generating, wait for it instead of `Conflict`."""
        return await self._send(routes.create_generation(ident(node), model_id, params, prompt, expected_credits,
                                                         idempotency_key, after_upstream))

    # -- runs ----------------------------------------------------------------------------------

    async def quote_run(self, board: Identified, nodes: list[Identified], *, model_id: str | None = None,
                        params: Params | None = None) -> RunQuote:
        """The price of generating these image nodes in dependency order (`model_id` / `params`:
        for every node; omitted, each node's own)."""
        return await self._send(routes.quote_run(ident(board), [ident(n) for n in nodes], model_id, params))

    async def create_run(self, board: Identified, nodes: list[Identified], *, model_id: str | None = None,
                         params: Params | None = None, expected_credits: int | None = None,
                         idempotency_key: str | None = None) -> Run:
        """Generate these image nodes in dependency order, each after the ones it depends on (202).
        All or nothing; idempotent across retries like `generate`."""
        return await self._send(routes.create_run(ident(board), [ident(n) for n in nodes], model_id, params,
                                                  expected_credits, idempotency_key))

    async def get_run(self, board: Identified, run: Identified) -> Run:
        return await self._send(routes.get_run(ident(board), ident(run)))

    async def cancel_run(self, board: Identified, run: Identified) -> Run:
        """Cancel (and refund) what has not finished; what finished stays."""
        return await self._send(routes.cancel_run(ident(board), ident(run)))

    async def get_generation(self, generation: Identified) -> Generation:
        return await self._send(routes.get_generation(ident(generation)))

    async def list_generations(self, node: Identified, *, limit: int | None = None,
                               cursor: str | None = None) -> Page[Generation]:
        """The node's generation history, newest first."""
        return await self._send(routes.list_generations(ident(node), limit, cursor))

    async def cancel_generation(self, generation: Identified) -> Generation:
        return await self._send(routes.cancel_generation(ident(generation)))

    async def wait_for_generation(self, generation: Identified, *, timeout: float = 600.0, poll: bool = False,
                                  poll_interval: float = 1.0) -> Generation:
        """The generation once it is `succeeded`, `failed` or `canceled`.

        Follows the board's live events (or, with `poll=True`, asks every `poll_interval`
        seconds); raises `WaitTimeout` after `timeout` seconds."""
        gen = await self.get_generation(generation)
        deadline = time.monotonic() + timeout
        if poll:
            while not gen.is_final:
                await asyncio.sleep(min(poll_interval, deadline_left(deadline, gen)))
                gen = await self.get_generation(gen)
            return gen
        if gen.is_final:
            return gen
        stream = self._events(gen.board_id, None, deadline)
        try:
            async for event in stream:
                if isinstance(event, BoardSnapshot):
                    # The stream is open: from here on every change arrives as an event.
                    gen = await self.get_generation(gen)
                    if gen.is_final:
                        return gen
                elif isinstance(event, GenerationChanged) and event.generation.id == gen.id \
                        and event.generation.is_final:
                    return event.generation
        except WaitTimeout:
            raise wait_timeout(gen) from None
        finally:
            await stream.aclose()
        raise wait_timeout(gen)  # pragma: no cover - the stream only ends at the deadline

    # -- live events ---------------------------------------------------------------------------

    def events(self, board: Identified, *,
               last_event_id: str | None = None) -> AsyncGenerator[BoardEvent, None]:
        """The board's live events, for as long as the caller iterates.

        A fresh start begins with a `BoardSnapshot`. When the server ends the stream or the
        connection drops, it reconnects with `Last-Event-ID` and the server replays what was
        missed (or sends a new snapshot when it cannot: treat that as a resync)."""
        return self._events(ident(board), last_event_id, None)

    async def _events(self, board_id: str, last_event_id: str | None,
                      deadline: float | None) -> AsyncGenerator[BoardEvent, None]:
        last, failures, server_retry = last_event_id, 0, None
        while True:
            idle = STREAM_IDLE_SECONDS if deadline is None else min(STREAM_IDLE_SECONDS, deadline_left(deadline))
            call = events_call(board_id, last)
            timeout = httpx.Timeout(self._timeout.connect, read=max(0.05, idle))

            async def attempt(call: Call[None] = call, timeout: httpx.Timeout = timeout) -> httpx.Response:
                response = await self._http.send(self._config.build(self._http, call, timeout), stream=True)
                if response.status_code != 200:
                    await response.aread()
                    await response.aclose()
                return response

            response = await self._attempts(call, attempt)
            if response.status_code != 200:
                raise error_from_response(response)
            failures += 1
            watch = IdResetWatch()
            try:
                async with contextlib.aclosing(httpx_sse.EventSource(watch.atap(response)).aiter_sse()) as frames:
                    async for sse in frames:
                        server_retry = sse.retry if sse.retry is not None else server_retry
                        if not sse.data:
                            continue  # keep-alives and id-only frames dispatch no event (SSE spec)
                        event = parse_event(sse.id, sse.event, sse.data)
                        last, failures = sse.id or last, 0
                        yield event
            except httpx.TransportError:
                pass  # the connection broke or went silent: resume below
            except httpx_sse.SSEError as exc:
                raise not_an_event_stream(exc) from exc
            finally:
                await response.aclose()
            if watch.reset:
                last = None  # the server could not vouch for what followed: start afresh
            delay = reconnect_delay(self._config.retry, failures, server_retry)
            if delay:
                await asyncio.sleep(delay if deadline is None else min(delay, deadline_left(deadline)))

    # -- assets library ------------------------------------------------------------------------

    async def list_assets(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Asset]:
        """Images kept from deleted nodes and boards, newest first."""
        return await self._send(routes.list_assets(limit, cursor))

    async def get_asset(self, asset: Identified) -> Asset:
        return await self._send(routes.get_asset(ident(asset)))

    async def asset_url(self, asset: Identified, *, download: bool = False, thumbnail: bool = False) -> str:
        variant = "thumbnail" if thumbnail else "download" if download else "content"
        return await self._send(routes.asset_url(ident(asset), variant))

    @overload
    async def download_asset(self, asset: Identified, to: None = None) -> bytes: ...
    @overload
    async def download_asset(self, asset: Identified, to: PathInput) -> Path: ...
    async def download_asset(self, asset: Identified, to: PathInput | None = None) -> bytes | Path:
        return await self._fetch(await self.asset_url(asset, download=True), to)

    async def delete_asset(self, asset: Identified) -> None:
        """Removes the asset's bytes for good (never a node's image)."""
        await self._send(routes.delete_asset(ident(asset)))

    async def place_asset(self, board: Identified, asset: Identified, *,
                          position: PositionInput | None = None) -> ImageNode:
        """Put a library image back on a board, as a new image node holding it."""
        return await self._send(routes.place_asset(ident(board), ident(asset), position))


def _awaiting(attempt: Callable[[], Awaitable[httpx.Response]]) -> Callable[[], Awaitable[httpx.Response]]:
    """A coroutine function around `attempt`: tenacity awaits an attempt only when its function
    is one (a lambda returning a coroutine would be taken as the result itself)."""

    async def run() -> httpx.Response:
        return await attempt()

    return run
