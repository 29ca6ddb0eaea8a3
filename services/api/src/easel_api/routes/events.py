"""`GET /v1/boards/{id}/events`: server-sent events with replay (Last-Event-ID)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from easel_api.context import AppContext
from easel_api.deps import AccountDep, CtxDep
from easel_api.services import boards
from easel_shared.events import stream_key

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")

KEEPALIVE_SECONDS = 15.0
QUEUE_LIMIT = 1000
_CLOSE = ("", "", "")


def _id_tuple(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, item: tuple[str, str, str]) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A slow client never holds up the others: it is cut off and replays on reconnect.
            self.overflowed = True


class _BoardReader:
    def __init__(self, hub: EventHub, board_id: str, start_id: str) -> None:
        self.hub = hub
        self.board_id = board_id
        self.last_id = start_id
        self.subscribers: set[_Subscriber] = set()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        key = stream_key(self.board_id)
        while self.subscribers:
            try:
                resp = await self.hub.client.xread({key: self.last_id}, block=5000, count=500)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event stream read failed for board %s; retrying", self.board_id, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for _key, entries in resp or []:
                for entry_id, fields in entries:
                    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    item = (eid, _s(fields.get(b"event")), _s(fields.get(b"data")))
                    self.last_id = eid
                    for sub in list(self.subscribers):
                        sub.offer(item)
        self.hub.readers.pop(self.board_id, None)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class EventHub:
    """One Redis reader per board per api process, fanned out to local subscribers. Every api
    replica reads the same stream, so events made anywhere reach clients everywhere."""

    def __init__(self, ctx: AppContext) -> None:
        self.client = aioredis.Redis.from_url(ctx.settings.redis_url, socket_timeout=None,
                                              socket_connect_timeout=5)
        self.readers: dict[str, _BoardReader] = {}
        self.closing = asyncio.Event()

    async def last_id(self, board_id: str) -> str:
        entries = await self.client.xrevrange(stream_key(board_id), count=1)
        return _s(entries[0][0]) if entries else "0-0"

    async def first_id(self, board_id: str) -> str | None:
        entries = await self.client.xrange(stream_key(board_id), count=1)
        return _s(entries[0][0]) if entries else None

    async def subscribe(self, board_id: str) -> _Subscriber:
        sub = _Subscriber()
        reader = self.readers.get(board_id)
        if reader is None or reader.task.done():
            reader = _BoardReader(self, board_id, await self.last_id(board_id))
            reader.subscribers.add(sub)
            self.readers[board_id] = reader
        else:
            reader.subscribers.add(sub)
        return sub

    def unsubscribe(self, board_id: str, sub: _Subscriber) -> None:
        reader = self.readers.get(board_id)
        if reader is not None:
            reader.subscribers.discard(sub)
            if not reader.subscribers:
                reader.task.cancel()
                self.readers.pop(board_id, None)

    async def backlog(self, board_id: str, after_id: str) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        cursor = f"({after_id}"
        while True:
            entries = await self.client.xrange(stream_key(board_id), min=cursor, max="+", count=500)
            if not entries:
                return out
            for entry_id, fields in entries:
                out.append((_s(entry_id), _s(fields.get(b"event")), _s(fields.get(b"data"))))
            cursor = f"({out[-1][0]}"

    async def close(self) -> None:
        self.closing.set()
        for reader in list(self.readers.values()):
            for sub in list(reader.subscribers):
                sub.offer(_CLOSE)
            reader.task.cancel()
        self.readers.clear()
        await self.client.aclose()


def _frame(event_id: str, event: str, data: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


@router.get("/boards/{board_id}/events")
async def board_events(
    board_id: str,
    request: Request,
    ctx: CtxDep,
    account: AccountDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    hub: EventHub = request.app.state.hub
    # Ownership first: another account's board is a 404 before any stream opens.
    await run_in_threadpool(boards.get_board, ctx, account, board_id)
    sub = await hub.subscribe(board_id)

    async def stream() -> AsyncIterator[str]:
        try:
            delivered = (0, -1)
            resume = last_event_id if last_event_id and _valid_id(last_event_id) else None
            first = await hub.first_id(board_id) if resume else None
            # Exact replay is possible while the resumed event itself is still retained.
            if resume and (first is None or _id_tuple(resume) >= _id_tuple(first)):
                backlog = await hub.backlog(board_id, resume)
                delivered = _id_tuple(resume)
            else:
                # Fresh connection (or the missed events were trimmed): start with the whole board.
                snap_id = await hub.last_id(board_id)
                snapshot = await run_in_threadpool(boards.get_board, ctx, account, board_id)
                yield _frame(snap_id, "board.snapshot", json.dumps(snapshot, separators=(",", ":")))
                delivered = _id_tuple(snap_id)
                backlog = await hub.backlog(board_id, snap_id)
            for eid, event, data in backlog:
                if _id_tuple(eid) > delivered:
                    delivered = _id_tuple(eid)
                    yield _frame(eid, event, data)
            while not sub.overflowed:
                try:
                    eid, event, data = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if (eid, event, data) == _CLOSE:
                    return
                if _id_tuple(eid) > delivered:
                    delivered = _id_tuple(eid)
                    yield _frame(eid, event, data)
        finally:
            hub.unsubscribe(board_id, sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


def _valid_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit())

