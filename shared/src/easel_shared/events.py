"""Live board events, through the outbox.

A change stages its events on its database session (`stage`). When that transaction commits,
they become `board.event` outbox rows in it, numbered by a per-board sequence taken under the
board's row lock (`outbox.next_event_seqs`), so a board's seqs follow the order its transactions
committed. After the commit the committing process publishes them (`BoardEventRelay`, called by
`easel_shared.relay`); whatever it could not (Redis down, the process died) a background relay
publishes later. Nothing is published for a rollback, and nothing committed is lost.

Each event becomes entry `<seq>-0` of the board's bounded Redis stream, and that id is the SSE id.
A Lua script adds an entry only when its seq is exactly one past the stream's last one (or the
stream is missing or empty, e.g. Redis lost its data), and says which, so a relay can neither
publish an event twice nor skip an earlier one, whatever other relays do at the same moment.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any, Protocol, cast

import redis
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from easel_shared.db import session_scope
from easel_shared.messages import BoardEvent
from easel_shared.models import OutboxEvent
from easel_shared.relay import Breaker, Written, claim_settled_later, delivered
from easel_shared.repositories import outbox

log = logging.getLogger(__name__)

# Keeps well over the contract's "at least the last 1000 events" per board.
STREAM_MAXLEN = 5000
_STAGED = "easel_staged_events"

# KEYS[1]: the board's stream. ARGV: seq, maxlen, event, data, force ('1': accept a gap).
# Returns {1, last}: added; {0, last}: already there; {-1, last}: an earlier seq is missing.
# `last` is the seq of the stream's last entry (0 when it has none of ours).
_PUBLISH = """
local seq = tonumber(ARGV[1])
local id = ARGV[1] .. '-0'
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #top == 0 then
  -- missing, or emptied (it may still remember a larger last id): the stream starts over here
  redis.call('DEL', KEYS[1])
else
  local fields = top[1][2]
  local ours = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'seq' then ours = tonumber(fields[i + 1]) end
  end
  if ours ~= nil then
    last = ours
    if seq <= ours then return {0, last} end
    if seq ~= ours + 1 and ARGV[5] ~= '1' then return {-1, last} end
  end
  -- Entries from before the outbox carry Redis's clock as their id and no seq field.
  local last_ms = tonumber(string.match(top[1][1], '^(%d+)'))
  if seq <= last_ms then id = '*' end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id, 'seq', ARGV[1], 'event', ARGV[3], 'data', ARGV[4])
return {1, last}
"""


class _Row(Protocol):
    """An event to publish: an outbox row, or the same row as its session wrote it (`Written`)."""

    @property
    def id(self) -> int | None: ...
    @property
    def board_id(self) -> str | None: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


def _board_seq(row: _Row) -> tuple[str, int]:
    return str(row.board_id), row.seq or 0


def stream_key(board_id: str) -> str:
    return f"easel:board:{board_id}:events"


def stage(session: OrmSession, board_id: str, event: str, data: dict[str, Any]) -> None:
    """Announce `event` on the board once this session's transaction commits."""
    _listen()
    session.info.setdefault(_STAGED, []).append((board_id, event, data))


def _write_staged(session: OrmSession) -> None:
    """Before the commit: the staged events become outbox rows of this very transaction."""
    staged: list[tuple[str, str, dict[str, Any]]] = session.info.pop(_STAGED, [])
    if not staged:
        return
    by_board: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for board_id, event, data in staged:
        by_board.setdefault(board_id, []).append((event, data))
    writer = cast(Session, session)
    # Boards in a fixed order: two transactions that touch the same boards lock them alike.
    for board_id in sorted(by_board):
        items = by_board[board_id]
        reserved = outbox.next_event_seqs(writer, board_id, len(items))
        if reserved is None:  # the board was deleted (in this transaction): nobody can watch it
            log.debug("dropping %d events of deleted board %s", len(items), board_id)
            continue
        last, account_id = reserved
        for seq, (event, data) in enumerate(items, start=last - len(items) + 1):
            outbox.enqueue(writer, BoardEvent(event=event, data=data), account_id, board_id=board_id, seq=seq)


def _drop_staged(session: OrmSession) -> None:
    session.info.pop(_STAGED, None)


_listening = False
_listen_lock = threading.Lock()


def _listen() -> None:
    global _listening
    if _listening:
        return
    with _listen_lock:
        if not _listening:
            sa_event.listen(OrmSession, "before_commit", _write_staged)
            sa_event.listen(OrmSession, "after_soft_rollback", lambda s, _t: _drop_staged(s))
            _listening = True


class BoardEventRelay:
    """Publishes `board.event` rows to their boards' streams, each board's in seq order."""

    topic = outbox.BOARD_EVENT

    def __init__(self, client: redis.Redis, batch: int = 500) -> None:
        self.client = client
        self.batch = batch
        self.script = client.register_script(_PUBLISH)
        self.breaker = Breaker()

    def relay_written(self, engine: Engine, rows: Sequence[Written]) -> None:
        """Right after a commit: publish its events from the rows as written, with no transaction
        (see `relay`). A board whose stream still lacks an earlier commit's events (its relay has
        not got to them yet) is published from the database instead, those events first."""
        written = [r for r in rows if r.board_id and r.seq is not None]
        if not written or self.breaker.open:
            return
        behind: list[str] = []
        try:
            done: list[int] = []
            for board_id, board_rows in groupby(sorted(written, key=_board_seq), key=lambda r: str(r.board_id)):
                published = self._add(board_id, list(board_rows), force=False)
                done += [row.id for row, (status, _) in published if status >= 0 and row.id is not None]
                if published and published[-1][1][0] < 0:  # refused for a gap
                    behind.append(board_id)
            delivered(engine, done)
            if behind:
                with session_scope(engine) as session:
                    pending = outbox.pending_board_events(session, behind)
                    outbox.mark_processed(session, self.publish(session, pending))
        except redis.RedisError:
            self.breaker.trip()
            log.warning("could not publish events of %s; the background relay will",
                        sorted({str(r.board_id) for r in written}), exc_info=True)

    def relay_pending(self, engine: Engine) -> bool:
        self.client.ping()  # with Redis away, fail here rather than inside a transaction
        with session_scope(engine) as session:
            rows = claim_settled_later(session, self.topic, self.batch)
            outbox.mark_processed(session, self.publish(session, rows))
        self.breaker.reset()
        return len(rows) == self.batch

    def publish(self, session: Session, rows: Sequence[OutboxEvent]) -> list[int]:
        """Publish `rows` (several boards at once is fine); the ids now in their streams."""
        done: list[int] = []
        ordered = sorted((r for r in rows if r.board_id and r.seq is not None), key=_board_seq)
        for board_id, board_rows in groupby(ordered, key=lambda r: str(r.board_id)):
            done += self._publish_board(session, board_id, list(board_rows), force=False)
        return done

    def _publish_board(self, session: Session, board_id: str, rows: list[OutboxEvent], *, force: bool) -> list[int]:
        done: list[int] = []
        for i, (row, (status, last)) in enumerate(self._add(board_id, rows, force=force)):
            if status >= 0:
                assert row.id is not None
                done.append(row.id)
                continue
            if not force:
                done += self._repair(session, board_id, last, rows[i:])
            break
        return done

    def _add(self, board_id: str, rows: Sequence[_Row], *, force: bool) -> list[tuple[_Row, tuple[int, int]]]:
        """Add `rows` (one board's, in seq order) to its stream: each row with the script's
        (status, last), up to and including the first one refused for a gap."""
        key = stream_key(board_id)
        calls = []
        for i, row in enumerate(rows):
            message = BoardEvent.model_validate(row.payload)
            calls.append((str(row.seq), STREAM_MAXLEN, message.event,
                          json.dumps(message.data, separators=(",", ":")), "1" if force and i == 0 else "0"))
        try:
            results = self._run(key, calls)
        except redis.exceptions.NoScriptError:
            # Redis lost its scripts (a restart, SCRIPT FLUSH): load it and run them all again. The
            # script answers "already there" for what a first run added, so nothing goes in twice.
            self.client.script_load(_PUBLISH)
            results = self._run(key, calls)
        out: list[tuple[_Row, tuple[int, int]]] = []
        for row, (status, last) in zip(rows, results, strict=True):
            out.append((row, (int(status), int(last))))
            if status < 0:
                break
        return out

    def _run(self, key: str, calls: Sequence[tuple[str | int, ...]]) -> list[Any]:
        """The script once per call, by its digest, in one round trip. A pipeline would run
        redis-py's `SCRIPT EXISTS` check first, a second round trip on every publish."""
        pipe = self.client.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(self.script.sha, 1, key, *args)
        return pipe.execute()

    def _repair(self, session: Session, board_id: str, last: int, rest: list[OutboxEvent]) -> list[int]:
        """The stream ends at `last` but `rest` starts further on. While an event in between is
        still pending, its relay publishes it and `rest` follows on a later pass. When all of them
        were published, the stream lost its tail (a Redis failover, say): what the outbox still
        holds of it goes back first, then `rest`."""
        assert rest[0].seq is not None
        between = outbox.board_events_between(session, board_id, last, rest[0].seq)
        if any(r.processed_at is None for r in between):
            return []
        log.warning("stream of board %s lost events after seq %d; publishing them again", board_id, last)
        return self._publish_board(session, board_id, between + rest, force=True)
