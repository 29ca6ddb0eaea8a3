"""The live event hub of an api process: one Redis reader per watched board, fanned out to
that board's subscribers (`GET /v1/boards/{id}/events`, `easel_api.routes.events`).

Each event is encoded once, as the SSE frame every subscriber is sent (`Frame`); a subscriber's
queue holds those bytes, so 1,000 subscribers cost one encoding, not 1,000. Keep-alive comments
come from one clock per board, not one timer per subscriber."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from easel_api.context import AppContext
from easel_shared.events import stream_key

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
QUEUE_LIMIT = 1000
COMMAND_CONNECTIONS = 50
READER_CONNECTIONS = 10_000  # one per board watched through this process (Redis's default maxclients)

Entry = tuple[str, str, str]  # (stream id, event type, JSON data)
Frame = tuple[tuple[int, int], bytes]  # (stream id as numbers, the encoded SSE frame)
CLOSE: Frame = ((0, 0), b"")
KEEPALIVE: Frame = ((0, 0), b": keep-alive\n\n")


def id_tuple(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


# The ids this server sends: Redis stream ids, '<seq>-0' (the board's event seq; streams written
# before the outbox hold '<ms>-<n>'), each part a 64-bit unsigned integer (at most 20 ASCII
# digits; `[0-9]` never matches other scripts' digits).
_STREAM_ID_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_ID_PART_LIMIT = 2**64


def _next_id(stream_id: str) -> str | None:
    """The smallest id after ``stream_id`` (None after the largest possible one, where Redis's
    exclusive '(' form fails)."""
    ms, seq = id_tuple(stream_id)
    if seq + 1 < _ID_PART_LIMIT:
        return f"{ms}-{seq + 1}"
    return f"{ms + 1}-0" if ms + 1 < _ID_PART_LIMIT else None


def _follows(after_id: str, first_id: str) -> bool:
    """Whether `first_id` is the event right after `after_id`: ids are `<seq>-0`, one seq per
    event of the board (see easel_shared.events). A stream Redis rebuilt from the outbox after
    losing its data starts with the first event not yet published, so a client whose last event
    was the one before it has missed nothing."""
    after, first = id_tuple(after_id), id_tuple(first_id)
    return after[1] == 0 and first == (after[0] + 1, 0)


def resume_id(value: str | None) -> str | None:
    """The stream id to resume after, or None for a fresh start (with a snapshot).

    A value this server cannot have sent (malformed, out of range, over-long) is treated like
    an id the stream can no longer vouch for: the client starts afresh with a snapshot. A 4xx
    would be final for a browser's EventSource (it never reconnects after one), so a client
    holding an id from another server version or a mangling proxy would be stuck for good."""
    if not value:
        return None
    match = _STREAM_ID_RE.fullmatch(value)
    if match is None or any(int(part) >= _ID_PART_LIMIT for part in match.groups()):
        log.info("ignoring a malformed Last-Event-ID (%d chars); sending a snapshot", len(value))
        return None
    return value


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _entry(entry_id: Any, fields: Any) -> Entry:
    return _s(entry_id), _s(fields.get(b"event")), _s(fields.get(b"data"))


def frame(event_id: str, event: str, data: str | bytes) -> bytes:
    """One event as an SSE frame (the data is one line of JSON)."""
    if isinstance(data, str):
        return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()
    return b"".join((f"id: {event_id}\nevent: {event}\ndata: ".encode(), data, b"\n\n"))


def encoded(entry: Entry) -> Frame:
    return id_tuple(entry[0]), frame(*entry)


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False
        self.closed = False
        self.lost = False  # events may have been lost (Redis failed): the client must start afresh

    def offer(self, item: Frame) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A slow client never holds up the others: it is cut off and replays on reconnect.
            # Its stream ends without sending what is queued, so the frames go now rather than
            # whenever its client reads again (a client that never does would keep them).
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()

    def close(self, *, lost: bool = False) -> None:
        self.closed = True
        self.lost = self.lost or lost
        self.offer(CLOSE)  # wakes the stream; a full queue is noticed on its next turn anyway

    @property
    def done(self) -> bool:
        return self.overflowed or self.closed


class _BoardReader:
    """Reads one board's stream from the position it had when the reader started; `started`
    resolves once that position is known, so a subscriber that waits for it misses nothing
    published after it subscribed."""

    def __init__(self, hub: EventHub, board_id: str) -> None:
        self.hub = hub
        self.board_id = board_id
        self.last_id = "0-0"
        self.subscribers: set[_Subscriber] = set()
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(), name=f"events-{board_id}")

    async def _run(self) -> None:
        try:
            await self._read()
        finally:
            self.hub.drop(self)
            if not self.started.done():  # cancelled by hub.close(): waiting subscribers are closed
                self.started.set_result(None)

    async def _read(self) -> None:
        try:
            self.last_id = await self.hub.last_id(self.board_id)
        except Exception as exc:
            self.started.set_exception(exc)
            return
        self.started.set_result(None)
        key = stream_key(self.board_id)
        loop = asyncio.get_running_loop()
        # One keep-alive clock per board rather than a timeout (a task and a timer) per subscriber
        # per event: with many subscribers that garbage brought on long full GC pauses.
        keepalive_at = loop.time() + KEEPALIVE_SECONDS
        while self.subscribers:
            if loop.time() >= keepalive_at:
                keepalive_at = loop.time() + KEEPALIVE_SECONDS
                self._fan_out(KEEPALIVE)
            block_ms = max(1, min(5000, int((keepalive_at - loop.time()) * 1000)))  # 0 would block forever
            try:
                resp: Any = await self.hub.reads.xread({key: self.last_id}, block=block_ms, count=500)
            except Exception:
                # Events published meanwhile may be lost for good (and a restarted Redis has
                # forgotten the stream): end every stream so its client reloads the board.
                log.warning("event stream read failed for board %s; subscribers will reload the board",
                            self.board_id, exc_info=True)
                for sub in list(self.subscribers):
                    sub.close(lost=True)
                await self.hub.reads.connection_pool.disconnect(inuse_connections=False)
                return
            for _key, entries in resp or []:
                for entry_id, fields in entries:
                    entry = _entry(entry_id, fields)
                    self.last_id = entry[0]
                    self._fan_out(encoded(entry))  # encoded once, for every subscriber

    def _fan_out(self, item: Frame) -> None:
        for sub in list(self.subscribers):
            sub.offer(item)
            if sub.overflowed:
                # Cut off, it no longer counts: a board whose only client stopped reading stops
                # its reader (a Redis connection) without waiting for that client to read again.
                self.subscribers.discard(sub)


class EventHub:
    """One Redis reader per board per api process, fanned out to local subscribers. Every api
    replica reads the same stream, so events made anywhere reach clients everywhere."""

    def __init__(self, ctx: AppContext) -> None:
        url = ctx.settings.redis_url
        # Short commands wait for a free connection in a burst of new subscribers, and retry on a
        # fresh one (a restarted Redis leaves stale ones in the pool).
        self.client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            url, max_connections=COMMAND_CONNECTIONS, timeout=10, socket_timeout=10, socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3)))
        # Each board reader holds a connection in its blocking read, and never retries, so it
        # notices that Redis went away.
        self.reads = aioredis.Redis.from_url(url, max_connections=READER_CONNECTIONS, socket_timeout=None,
                                             socket_connect_timeout=5)
        self.readers: dict[str, _BoardReader] = {}
        self.closing = False

    async def last_id(self, board_id: str) -> str:
        entries = await self.client.xrevrange(stream_key(board_id), count=1)
        return _s(entries[0][0]) if entries else "0-0"

    async def first_id(self, board_id: str) -> str | None:
        entries = await self.client.xrange(stream_key(board_id), count=1)
        return _s(entries[0][0]) if entries else None

    async def subscribe(self, board_id: str) -> _Subscriber:
        sub = _Subscriber()
        if self.closing:
            sub.close()
            return sub
        # No await between looking the reader up and joining it: concurrent subscribers to a
        # board always share one reader.
        reader = self.readers.get(board_id)
        if reader is None:
            reader = self.readers[board_id] = _BoardReader(self, board_id)
        reader.subscribers.add(sub)
        try:
            await asyncio.shield(reader.started)
        except BaseException:
            self.unsubscribe(board_id, sub)
            raise
        return sub

    def unsubscribe(self, board_id: str, sub: _Subscriber) -> None:
        reader = self.readers.get(board_id)
        if reader is not None:
            reader.subscribers.discard(sub)
            if not reader.subscribers:
                reader.task.cancel()
                self.drop(reader)

    def drop(self, reader: _BoardReader) -> None:
        if self.readers.get(reader.board_id) is reader:
            del self.readers[reader.board_id]

    async def backlog(self, board_id: str, after_id: str) -> list[Entry]:
        out: list[Entry] = []
        cursor = _next_id(after_id)
        while cursor is not None:
            entries = await self.client.xrange(stream_key(board_id), min=cursor, max="+", count=500)
            if not entries:
                return out
            out.extend(_entry(entry_id, fields) for entry_id, fields in entries)
            cursor = _next_id(out[-1][0])
        return out

    async def replay(self, board_id: str, after_id: str) -> list[Entry] | None:
        """Every entry after `after_id`, or None when the stream cannot vouch that none is
        missing: the entries were trimmed, or the id is ahead of the stream (Redis lost data)."""
        backlog = await self.backlog(board_id, after_id)
        # Checked after reading: trimming only removes the oldest entries, so if the stream
        # still starts at or before `after_id`, nothing we read past it had been trimmed.
        first = await self.first_id(board_id)
        last = backlog[-1][0] if backlog else await self.last_id(board_id)
        if first is None or not id_tuple(after_id) <= id_tuple(last):
            return None
        if id_tuple(first) <= id_tuple(after_id) or _follows(after_id, first):
            return backlog
        return None

    async def close(self) -> None:
        """End every open stream and stop the readers (api shutdown). Uvicorn runs the lifespan
        shutdown only after open responses finish or its graceful timeout cancels them, so a
        server that wants streams to end cleanly calls this when its shutdown begins."""
        if self.closing:
            return
        self.closing = True
        for reader in list(self.readers.values()):
            for sub in list(reader.subscribers):
                sub.close()
            reader.task.cancel()
        self.readers.clear()
        await self.client.aclose()
        await self.reads.aclose()


