"""The one after-commit mechanism: a transaction writes outbox rows (`repositories.outbox`) with
the change they announce, and they are relayed after the commit, never for a rollback.

- Right after a commit, the committing process relays the rows its session wrote (session
  hooks installed by `install`): low latency, and nothing to do when Redis is away. Live events
  and dispatches go out from the rows as the session wrote them, with no transaction of their
  own: the rows they delivered are marked in the database later, in one batch every
  `SETTLE_EVERY_SECONDS`, by the process's background relay (`Settlements`). Such a relay holds
  no database lock, so it neither waits for a writer nor holds one up (on SQLite every
  transaction takes the one write lock).
- A background thread in every service process (`RelayThread`) relays whatever is left: Redis was
  down, or the process died between its commit and the relay. It claims rows with
  `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite serializes writers), so replicas share the work.
  It also deletes rows settled more than `OUTBOX_RETENTION_SECONDS` ago, and marks what the
  after-commit relays delivered. It leaves a row alone for `AFTER_COMMIT_GRACE` after it was
  written, while the committing process is still relaying it; a row both relays send anyway is
  harmless, since every topic's consumer is idempotent (a live event takes its seq once, a
  dispatch is sent once per sent marker and leased once).

Each topic has one relay (a `TopicRelay`): `board.event` → the board's Redis stream
(`events.BoardEventRelay`), `generation.dispatch` → the Celery message (`tasks.DispatchRelay`),
`image.retain` → the assets library (the assets service's consumer, background only: it copies
objects, which is no work for a request thread), `image.thumbnail` → an upload's thumbnail left
behind (`thumbnails.ThumbnailRelay`, the api's background only: the upload stores its own after
the commit), `scheduler.wake` → a fill pass of the scheduler
(`scheduler.SchedulerRelay`). A topic without a relay in this process waits
for a process that has one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction, UOWTransaction
from sqlmodel import Session

from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.models import OutboxEvent
from easel_shared.repositories import outbox

if TYPE_CHECKING:
    import redis

    from easel_shared.settings import Settings

log = logging.getLogger(__name__)

_WRITTEN = "easel_outbox_written"
_COMMITTED = "easel_outbox_committed"
PRUNE_EVERY_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 5.0
#: How long a background pass leaves a fresh row of a topic relayed without a transaction to the
#: process that committed it (see `claim_settled_later`).
AFTER_COMMIT_GRACE = timedelta(seconds=2)
#: Delivered rows a process keeps to settle, per engine, when no background relay settles them
#: (a script that commits without running one): past this the oldest are let go. Their rows stay
#: pending, and a background relay elsewhere delivers them again, idempotently.
MAX_UNSETTLED = 10_000
#: How often a background relay marks what its process's after-commit relays delivered, whatever
#: `OUTBOX_POLL_SECONDS` is: well inside `AFTER_COMMIT_GRACE`, so that a background pass does not
#: take a delivered row for one left behind and deliver it again.
SETTLE_EVERY_SECONDS = 0.5


@dataclass(frozen=True)
class Written:
    """An outbox row a session wrote, as its after-commit relay sees it: what the row holds, so
    a relay can deliver it without reading it back."""

    id: int
    topic: str
    board_id: str | None
    seq: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


class TopicRelay(Protocol):
    topic: str

    def relay_written(self, engine: Engine, rows: Sequence[Written]) -> None:
        """Right after the commit that wrote `rows`, in the committing thread. Best effort and
        quick: whatever it leaves pending, the background relay delivers."""

    def relay_pending(self, engine: Engine) -> bool:
        """One background pass over pending rows; True when more may be waiting. Raises when the
        destination is unreachable (the thread backs off)."""


class Breaker:
    """After a failure, after-commit relays skip their destination for a moment instead of each
    request waiting for it to fail again; the background relay keeps trying and closes it."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self._until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        self._until = time.monotonic() + self.seconds

    def reset(self) -> None:
        self._until = 0.0


class Settlements:
    """Rows that after-commit relays delivered without a transaction, waiting to be marked
    processed by the background relay of their engine (`RelayThread`, in one transaction)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[Engine, list[int]] = {}

    def add(self, engine: Engine, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._lock:
            pending = self._ids.setdefault(engine, [])
            pending.extend(ids)
            if len(pending) > MAX_UNSETTLED:
                del pending[: len(pending) - MAX_UNSETTLED]

    def take(self, engine: Engine) -> list[int]:
        with self._lock:
            return self._ids.pop(engine, [])


#: This process's delivered rows (every relay of the process shares it).
settlements = Settlements()


def delivered(engine: Engine, ids: Sequence[int]) -> None:
    """An after-commit relay delivered these rows: the background relay marks them."""
    settlements.add(engine, ids)


def settle_delivered(engine: Engine) -> int:
    """Mark what after-commit relays delivered through `engine`; returns how many."""
    ids = settlements.take(engine)
    if not ids:
        return 0
    try:
        with session_scope(engine) as session:
            outbox.mark_processed(session, ids)
    except Exception:
        settlements.add(engine, ids)  # the next pass tries again
        raise
    return len(ids)


def claim_settled_later(session: Session, topic: str, limit: int) -> list[OutboxEvent]:
    """A background pass's rows of a topic whose after-commit relay runs without a transaction:
    pending rows, except those written in the last `AFTER_COMMIT_GRACE` (their committing
    process is relaying them, or has and will mark them)."""
    return outbox.claim(session, (topic,), limit=limit, written_before=utcnow() - AFTER_COMMIT_GRACE)


class Relay:
    def __init__(self, relays: Sequence[TopicRelay]) -> None:
        self.relays = {r.topic: r for r in relays}

    def relay_written(self, engine: Engine, written: Sequence[Written]) -> None:
        for topic, relay in self.relays.items():
            rows = [w for w in written if w.topic == topic]
            if not rows:
                continue
            try:
                relay.relay_written(engine, rows)
            except Exception:  # the change is committed; the background relay takes over
                log.warning("after-commit relay of %s failed; the background relay will retry", topic,
                            exc_info=True)


def standard(settings: Settings, client: redis.Redis) -> Relay:
    """The relays every service runs: live events, generation dispatch, webhook deliveries and the
    scheduler's fill pass."""
    from easel_shared.events import BoardEventRelay
    from easel_shared.scheduler import SchedulerRelay
    from easel_shared.tasks import DispatchRelay
    from easel_shared.webhooks import WebhookRelay

    return Relay([BoardEventRelay(client),
                  DispatchRelay(client, settings.redis_url, settings.celery_visibility_timeout_seconds),
                  WebhookRelay(client, settings.redis_url),
                  SchedulerRelay(settings)])


# -- the after-commit hook --------------------------------------------------------------------- #

_installed: list[Relay] = []
_hooks_lock = threading.Lock()


def install(relay: Relay) -> Relay:
    """Relay what sessions of this process write, right after their commit (the most recently
    installed relay does; `uninstall` steps back to the previous one)."""
    with _hooks_lock:
        if not sa_event.contains(OrmSession, "after_flush", _after_flush):
            sa_event.listen(OrmSession, "after_flush", _after_flush)
            sa_event.listen(OrmSession, "after_commit", _after_commit)
            sa_event.listen(OrmSession, "after_transaction_end", _after_transaction_end)
            sa_event.listen(OrmSession, "after_soft_rollback", _after_soft_rollback)
        _installed.append(relay)
    return relay


def uninstall(relay: Relay) -> None:
    with _hooks_lock:
        if relay in _installed:
            _installed.remove(relay)


def _after_flush(session: OrmSession, _flush: UOWTransaction) -> None:
    written = [Written(obj.id, obj.topic, obj.board_id, obj.seq, obj.payload) for obj in session.new
               if isinstance(obj, OutboxEvent) and obj.id is not None]
    if written:
        session.info.setdefault(_WRITTEN, []).extend(written)


def _after_commit(session: OrmSession) -> None:
    # Not relayed here: the session still holds its pooled connection until the transaction
    # closes, and the relay takes one of its own. Relaying from here made every committing
    # thread hold two connections at once, and about fifteen concurrent commits exhausted the
    # pool (the chaos kill -9 test found it). `_after_transaction_end` runs once it is returned.
    written = session.info.pop(_WRITTEN, None)
    if written:
        session.info.setdefault(_COMMITTED, []).extend(written)


def _after_transaction_end(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    written: list[Written] = session.info.pop(_COMMITTED, [])
    relay = _installed[-1] if _installed else None
    if not written or relay is None:
        return
    try:
        bind = session.get_bind()
        relay.relay_written(bind if isinstance(bind, Engine) else bind.engine, written)
    except Exception:  # never fail a commit that happened; the background relay takes over
        log.warning("after-commit relay failed; the background relay will retry", exc_info=True)


def _after_soft_rollback(session: OrmSession, _previous: object) -> None:
    session.info.pop(_WRITTEN, None)


# -- the background relay ---------------------------------------------------------------------- #


@dataclass
class _Lane:
    relay: TopicRelay
    failures: int = 0
    next_at: float = field(default=0.0)


class RelayThread:
    """Runs every topic relay's background pass, each on its own schedule (one whose destination
    is down backs off without holding up the others), and prunes settled rows."""

    def __init__(self, engine: Engine, relays: Sequence[TopicRelay], *, poll_seconds: float,
                 retention_seconds: float, name: str = "easel-outbox-relay") -> None:
        self.engine = engine
        self.lanes = [_Lane(r) for r in relays]
        self.poll_seconds = poll_seconds
        self.retention = timedelta(seconds=retention_seconds)
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prune_at = 0.0
        self._settle_at = 0.0
        self._settle_failures = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("outbox relay did not stop within %.0fs", timeout)
            self._thread = None

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def _run(self) -> None:
        log.info("outbox relay started (%s; every %.2fs)", ", ".join(lane.relay.topic for lane in self.lanes),
                 self.poll_seconds)
        while not self._stop.is_set():
            self._settle()
            for lane in self.lanes:
                if self._stop.is_set():
                    break
                if time.monotonic() >= lane.next_at:
                    self._pass(lane)
            self._prune()
            wake = min(lane.next_at for lane in self.lanes) if self.lanes else time.monotonic() + self.poll_seconds
            delay = min(wake - time.monotonic(), SETTLE_EVERY_SECONDS)
            if delay > 0:
                self._stop.wait(delay)
        self._settle(last=True)
        log.info("outbox relay stopped")

    def _settle(self, *, last: bool = False) -> None:
        if not last and time.monotonic() < self._settle_at:
            return
        try:
            settle_delivered(self.engine)
        except Exception:
            # The database is away: the ids wait in memory (bounded), and this backs off like the
            # lanes do rather than logging twice a second.
            self._settle_failures += 1
            if self._settle_failures == 1:
                log.warning("could not mark delivered outbox rows; retrying every %.0fs", MAX_BACKOFF_SECONDS,
                            exc_info=True)
            self._settle_at = time.monotonic() + MAX_BACKOFF_SECONDS
            return
        if self._settle_failures:
            log.info("marking delivered outbox rows recovered after %d failed tries", self._settle_failures)
            self._settle_failures = 0

    def _pass(self, lane: _Lane) -> None:
        try:
            more = lane.relay.relay_pending(self.engine)
        except Exception:
            # Redis or the database is unreachable (or worse): back off so an outage is a few log
            # lines rather than a flood, and pick up again on its own once it is back.
            lane.failures += 1
            delay = min(self.poll_seconds * 2 ** min(lane.failures, 10), max(MAX_BACKOFF_SECONDS, self.poll_seconds))
            if lane.failures == 1:
                log.warning("outbox relay of %s failed; retrying every %.1fs at most", lane.relay.topic,
                            MAX_BACKOFF_SECONDS, exc_info=True)
            lane.next_at = time.monotonic() + delay
            return
        if lane.failures:
            log.info("outbox relay of %s recovered after %d failed passes", lane.relay.topic, lane.failures)
            lane.failures = 0
        lane.next_at = time.monotonic() + (0.0 if more else self.poll_seconds)

    def _prune(self) -> None:
        if time.monotonic() < self._prune_at:
            return
        self._prune_at = time.monotonic() + PRUNE_EVERY_SECONDS
        try:
            with session_scope(self.engine) as session:
                removed = outbox.prune(session, utcnow() - self.retention)
            if removed:
                log.info("pruned %d settled outbox rows", removed)
                self._prune_at = 0.0 if removed >= 1000 else self._prune_at
        except Exception:
            log.warning("could not prune the outbox", exc_info=True)
