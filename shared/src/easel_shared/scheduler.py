"""The scheduler: which accepted generation is handed to the broker, and when. The database is the
truth; Celery only carries what the scheduler released.

**Slots.** A generation holds a slot of its account and one of its model from the moment it is
handed to the broker (`dispatched_at`, set in the transaction that writes its `generation.dispatch`)
until it ends (`status` leaves queued/running). An account may hold `max_running` slots (the
account's own, else `ACCOUNT_MAX_RUNNING`); a model `max_concurrency` (the catalog; none when
unset). A worker killed mid-run leaves its generation `running` until the sweeper hands it back to
`queued` (it stays dispatched, so it keeps its slots) or fails it (the slot frees): a slot is never
held by nobody for longer than the heartbeat timeout. Waiting work holds nothing: no message, no
worker thread.

**Admit** (`admit`, in the accept transaction, after the board lock and the credit reservation):
a generation whose account and model have a free slot, with no older waiting work of its account
that could start, is dispatched at once, as before; otherwise it stays `queued` with `blocked_by`.

**Fill** (`fill`, its own transaction): takes the waiting work fairly (`easel_shared.domain.
scheduling`: start-time fair queuing across accounts, weighted; oldest first within an account,
skipping work whose model is full so another model is not held up behind it) until the slots are
taken, at most `SCHEDULER_FILL_BATCH` (500 by default) per pass; a pass that reaches it leaves
the rest to the background relay, whose passes then follow one another at once. It runs after
every commit that may free a slot (an outbox `scheduler.wake`: a generation ended, an account's
limit was raised) when work is waiting, and
after an accept that left work waiting for a full model when that model has room by then
(`SchedulerRelay` says why nothing is missed), in whichever process committed, or in any
process's background relay if that one died; and on every sweep (healing).

**Locks.** The scheduler lock is the `scheduler_state` row (`FOR UPDATE`, or the UPDATE by which
an accept draws its serial; SQLite serializes write transactions). An accept takes board →
account row (credits) → scheduler lock. A fill pass takes
the scheduler lock first, then the waiting generation rows it dispatches (compare-and-set) and the
`account_schedules` rows, which only holders of the scheduler lock write; it never takes a board
lock or writes an account row, and nothing that holds a generation row waits for the scheduler
lock (ending a generation only writes a wake), so there is no cycle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple

from sqlalchemy.engine import Engine
from sqlmodel import Session

from easel_shared import tasks
from easel_shared.catalog_loader import load_catalog
from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.domain.catalog import Catalog
from easel_shared.domain.scheduling import Flow, charge, first, position
from easel_shared.messages import SchedulerWake
from easel_shared.models import Generation
from easel_shared.relay import AFTER_COMMIT_GRACE, Written, delivered
from easel_shared.repositories import outbox
from easel_shared.repositories import scheduling as repo
from easel_shared.settings import Settings

log = logging.getLogger(__name__)

ACCOUNT_LIMIT = "account_limit"
MODEL_LIMIT = "model_limit"
UPSTREAM = repo.UPSTREAM

_filling = threading.local()


@dataclass(frozen=True)
class Limits:
    """How many slots there are: per account by default, and per capped model."""

    account_default: int
    models: Mapping[str, int]

    @classmethod
    def of(cls, settings: Settings, catalog: Catalog) -> Limits:
        caps = {m.id: m.max_concurrency for m in catalog.models if m.max_concurrency is not None}
        return cls(settings.account_max_running, MappingProxyType(caps))

    def account(self, max_running: int | None) -> int:
        return max_running if max_running is not None else self.account_default

    def model(self, model_id: str) -> int | None:
        return self.models.get(model_id)


def limits_for(settings: Settings) -> Limits:
    """The limits of the catalog file, every model of it (offered or not: one whose key was just
    removed may still have work in flight)."""
    return Limits.of(settings, _file_catalog(settings.model_catalog_path or ""))


@lru_cache(maxsize=4)
def _file_catalog(path: str) -> Catalog:
    return load_catalog(path or None)


class QueueInfo(NamedTuple):
    """Where a waiting generation stands: its place among the work waiting for the same slots
    (an estimate) and what it waits for."""

    position: int | None
    blocked_by: str | None


NOT_WAITING = QueueInfo(None, None)


def wake(session: Session, account_id: str, reason: str, *, model_id: str | None = None) -> None:
    """Have a fill pass run once this transaction commits, if it could start anything then (see
    `SchedulerRelay`); with `model_id`, if that model has room then."""
    outbox.enqueue(session, SchedulerWake(reason=reason, model_id=model_id), account_id)


# -- admit --------------------------------------------------------------------------------------- #


def admit(session: Session, gen: Generation, limits: Limits) -> None:
    """Decide, in the accept transaction (the generation row flushed, `queued`), whether `gen` is
    dispatched now or waits. Takes the scheduler lock until the transaction ends."""
    if gen.blocked_by == UPSTREAM:
        return  # not the scheduler's until its upstream is done
    system_vtime, serial = repo.lock_drawing_serial(session)
    account = repo.admission(session, gen)
    assert account is not None  # the accept reserved its credits on this account's row
    limit = account.limit
    blocked: str | None = None
    if account.in_flight >= limits.account(limit.max_running):
        blocked = ACCOUNT_LIMIT
    elif _model_full(session, limits, gen.model_id):
        blocked = MODEL_LIMIT
        # A generation of another account may end while this transaction runs, its commit's
        # look for waiting work (`SchedulerRelay`) missing this one, not yet committed: this
        # commit looks again whether the model has room.
        wake(session, gen.account_id, "model", model_id=gen.model_id)
    elif account.older_waiting:
        older = repo.waiting_models_before(session, gen)
        if any(not _model_full(session, limits, m) for m in older):
            # Older work of the account could start too (a fill pass is due): it goes first.
            blocked = ACCOUNT_LIMIT
            wake(session, gen.account_id, "behind")
    if blocked is not None:
        gen.blocked_by = blocked
        session.add(gen)
        return
    schedule = repo.schedules(session, [gen.account_id])[gen.account_id]
    # Dispatched at once, it still costs the account its share: an account cannot get ahead of
    # the fair order through the accept path.
    _, schedule.vtime = charge(schedule.vtime, limit.weight, system_vtime)
    schedule.served = serial
    session.add(schedule)
    gen.dispatched_at = gen.enqueued_at = utcnow()
    gen.blocked_by = None
    session.add(gen)
    tasks.dispatch(session, gen.id, gen.account_id, gen.request_id, stamp=False)


def _model_full(session: Session, limits: Limits, model_id: str) -> bool:
    cap = limits.model(model_id)
    return cap is not None and repo.in_flight_by_model(session, [model_id]).get(model_id, 0) >= cap


# -- fill ---------------------------------------------------------------------------------------- #


def fill(engine: Engine, limits: Limits, batch: int) -> int:
    """One fill pass in its own transaction, dispatching at most `batch` generations
    (`Settings.scheduler_fill_batch`); returns how many it dispatched."""
    _filling.active = True
    try:
        with session_scope(engine) as session:
            return fill_in(session, limits, batch)
    finally:
        _filling.active = False


def fill_in(session: Session, limits: Limits, batch: int) -> int:
    state = repo.lock(session)  # first: see the module's lock order
    repo.settle_wakes(session)
    oldest = repo.waiting_accounts(session)
    if not oldest:
        return 0
    ids = list(oldest)
    account_limits = repo.limits_of(session, ids)
    busy = repo.in_flight_by_account(session, ids)
    model_busy = repo.in_flight_by_model(session, list(limits.models))
    full = {m for m, cap in limits.models.items() if model_busy.get(m, 0) >= cap}
    schedules = repo.schedules(session, ids)
    flows = {
        a: Flow(a, schedules[a].vtime, account_limits[a].weight, schedules[a].served, oldest[a])
        for a in ids if a in account_limits and busy.get(a, 0) < limits.account(account_limits[a].max_running)
    }
    now = utcnow()
    system, serial, dispatched, misses = state.vtime, state.serial, 0, 0
    while flows and dispatched < batch:
        flow = first(list(flows.values()), system)
        a = flow.account_id
        row = repo.next_waiting(session, a, full)
        if row is None:  # everything it has waits for a full model
            del flows[a]
            continue
        if not repo.mark_dispatched(session, row.id, now):
            misses += 1  # canceled a moment ago; the next query no longer sees it
            if misses > batch:
                break
            continue
        tasks.dispatch(session, row.id, a, row.request_id, stamp=False)
        start, vtime = charge(flow.vtime, flow.weight, system)
        system, serial = start, serial + 1
        schedules[a].vtime, schedules[a].served = vtime, serial
        busy[a] = busy.get(a, 0) + 1
        if busy[a] >= limits.account(account_limits[a].max_running):
            del flows[a]
        else:
            flows[a] = Flow(a, vtime, flow.weight, serial, flow.oldest)
        cap = limits.model(row.model_id)
        if cap is not None:
            model_busy[row.model_id] = model_busy.get(row.model_id, 0) + 1
            if model_busy[row.model_id] >= cap:
                full.add(row.model_id)
        dispatched += 1
    if dispatched:
        state.vtime, state.serial = system, serial
        session.add_all([state, *(schedules[a] for a in ids)])
    if dispatched >= batch:
        wake(session, ids[0], "more")  # the next pass goes on (the background relay takes it)
    if dispatched:
        log.info("scheduler dispatched %d waiting generation(s)", dispatched)
    return dispatched


class SchedulerRelay:
    """Runs a fill pass after a commit that wrote `scheduler.wake`, when it could start anything,
    and in the background when wakes are left pending (the committing process died, or the pass
    failed).

    Whether a pass could start anything is read first, without the scheduler lock and without
    writing: most wakes (a generation ended) find nothing waiting, and a pass writes (it answers
    the wakes) under the lock every accept takes. Nothing is missed by reading without the lock.
    A generation left waiting, W, and a slot freed, S, each commit and then look:
    - S's commit looks for any waiting work, so it finds W if W committed first.
    - If S committed first, W's accept saw the slot free, or raced S and left W waiting:
      - for its account's slots it cannot race: both write the account's row (credits), so one
        waits for the other's commit;
      - for its model's, the accept writes a wake with the model (`admit`), and its commit looks
        whether the model has room.
    A wake found with nothing to do is marked processed with the process's other delivered rows
    (`relay.delivered`)."""

    topic = SchedulerWake.topic

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batch = settings.scheduler_fill_batch
        self._limits: Limits | None = None
        self._more = False

    @property
    def limits(self) -> Limits:
        if self._limits is None:
            self._limits = limits_for(self.settings)
        return self._limits

    def relay_written(self, engine: Engine, rows: Sequence[Written]) -> None:
        if getattr(_filling, "active", False):
            return  # a pass's own "more" wake: the background relay runs the next pass
        if not self._could_start(engine, rows):
            delivered(engine, [r.id for r in rows])
            return
        if fill(engine, self.limits, self.batch) >= self.batch:
            self._more = True  # the background relay's next pass goes on

    def _could_start(self, engine: Engine, rows: Sequence[Written]) -> bool:
        models = {SchedulerWake.model_validate(r.payload).model_id for r in rows}
        with session_scope(engine) as session:
            if None in models:
                return repo.any_waiting(session)
            return any(not _model_full(session, self.limits, m) for m in models if m is not None)

    def relay_pending(self, engine: Engine) -> bool:
        if not self._more:
            with session_scope(engine) as session:
                if not repo.has_pending_wakes(session, utcnow() - AFTER_COMMIT_GRACE):
                    return False
        self._more = fill(engine, self.limits, self.batch) >= self.batch
        return self._more


# -- where a waiting generation stands ----------------------------------------------------------- #


def queue_info(session: Session, gen: Generation, limits: Limits) -> QueueInfo:
    """`queue_position` and `blocked_by` of a generation, read now (a few indexed counts).

    Waiting for its account: its rank among the account's waiting work (exact: the account's next
    free slot goes to its oldest). Waiting for its model: the fair order's estimate among every
    account's waiting work of that model, as if nothing else arrived (`domain.scheduling.position`).
    """
    if gen.status != "queued" or gen.dispatched_at is not None:
        return NOT_WAITING
    if gen.blocked_by == UPSTREAM:
        return QueueInfo(None, UPSTREAM)
    account = repo.limit_and_in_flight(session, gen.account_id)
    if account is None:
        return QueueInfo(None, gen.blocked_by)
    limit, in_flight = account
    ahead = repo.waiting_ahead(session, gen)
    if in_flight >= limits.account(limit.max_running):
        return QueueInfo(ahead + 1, ACCOUNT_LIMIT)
    if not _model_full(session, limits, gen.model_id):
        # Both have room: a fill pass is on its way (or older work of the account goes first).
        return QueueInfo(ahead + 1, gen.blocked_by or ACCOUNT_LIMIT)
    waiting = repo.waiting_for_model(session, gen.model_id)
    others = repo.limits_of(session, list(waiting))
    schedules = repo.schedules(session, [*waiting, gen.account_id], create=False)
    state = repo.state(session)
    system = state.vtime if state is not None else 0.0

    def flow(account_id: str, weight: int) -> Flow:
        s = schedules.get(account_id)
        return Flow(account_id, s.vtime if s else 0.0, weight, s.served if s else 0, gen.created_at)

    own = flow(gen.account_id, limit.weight)
    line = [(flow(a, others[a].weight), n) for a, n in waiting.items() if a in others]
    return QueueInfo(position(own, repo.waiting_ahead(session, gen, same_model=True), line, system), MODEL_LIMIT)
