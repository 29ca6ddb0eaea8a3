"""The scheduler's SQL (`easel_shared.scheduler`): its lock, slot counts, waiting work, fair-share
state. "Waiting" and "in flight" are the partial-index predicates of `generations`, written as the
same literal SQL so SQLite's planner matches them to their indexes."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, delete, exists, func, or_, text, update
from sqlmodel import Session, col, select

from easel_shared.messages import SchedulerWake
from easel_shared.models import Account, AccountSchedule, Generation, OutboxEvent, SchedulerState
from easel_shared.models.tables import IN_FLIGHT_SQL, WAITING_SQL
from easel_shared.repositories import IDS

UPSTREAM = "upstream"
WAKE = SchedulerWake.topic

_waiting = text(WAITING_SQL)
_in_flight = text(IN_FLIGHT_SQL)
# Waiting for a slot: not held back by an upstream node (that work is not the scheduler's yet).
_not_upstream = or_(col(Generation.blocked_by).is_(None), col(Generation.blocked_by) != UPSTREAM)

# What every accept reads (`scheduler.admit`), built once (see `easel_shared.repositories`).
_LOCK = (select(SchedulerState).where(SchedulerState.id == 1).with_for_update()
         .execution_options(populate_existing=True))
_DRAW_SERIAL = (update(SchedulerState).where(col(SchedulerState.id) == 1)
                .values(serial=col(SchedulerState.serial) + 1)
                .returning(col(SchedulerState.vtime), col(SchedulerState.serial)))
_LIMITS_OF = select(Account.id, Account.max_running, Account.weight).where(col(Account.id).in_(IDS))
_IN_FLIGHT_BY_ACCOUNT = (select(Generation.account_id, func.count())
                         .where(_in_flight, col(Generation.account_id).in_(IDS))
                         .group_by(col(Generation.account_id)))
# One account's limit and slots held, in one statement: what an accept reads.
_LIMIT_AND_IN_FLIGHT = select(
    col(Account.max_running), col(Account.weight),
    select(func.count()).select_from(Generation)
    .where(_in_flight, col(Generation.account_id) == col(Account.id)).scalar_subquery(),
).where(col(Account.id) == bindparam("account_id"))
# The account's generations waiting for a slot that are older than a given one (`_older_params`).
_WAITING_OLDER = (
    col(Generation.account_id) == bindparam("account_id"), _waiting, _not_upstream,
    or_(col(Generation.created_at) < bindparam("created_at"),
        (col(Generation.created_at) == bindparam("created_at")) & (col(Generation.id) < bindparam("gen_id"))),
)
# `_LIMIT_AND_IN_FLIGHT` and whether older work of the account waits: what an admit reads.
_ADMISSION = _LIMIT_AND_IN_FLIGHT.add_columns(exists().where(*_WAITING_OLDER))
_ANY_WAITING = select(Generation.id).where(_waiting, _not_upstream).limit(1)
_WAITING_MODELS_BEFORE = select(Generation.model_id).where(*_WAITING_OLDER).distinct()
_WAITING_AHEAD = select(func.count()).select_from(Generation).where(*_WAITING_OLDER)
_WAITING_AHEAD_SAME_MODEL = _WAITING_AHEAD.where(col(Generation.model_id) == bindparam("model_id"))
_SCHEDULES = select(AccountSchedule).where(col(AccountSchedule.account_id).in_(IDS))


def lock(session: Session) -> SchedulerState:
    """The scheduler lock (the state row, `FOR UPDATE`; on SQLite every write transaction holds
    the database's write lock anyway), held until the transaction ends."""
    state: SchedulerState = session.execute(_LOCK).scalars().one()
    return state


def lock_drawing_serial(session: Session) -> tuple[float, int]:
    """The scheduler lock (as `lock`), taken by the UPDATE that draws the next serial, one
    statement where a read and a write were: (the system's virtual time, the serial drawn). An
    accept that then leaves its generation waiting leaves its serial unused; serials only order
    accounts by when they were last served, and a gap between two changes no order."""
    vtime, serial = session.execute(_DRAW_SERIAL).one()
    return float(vtime), int(serial)


def state(session: Session) -> SchedulerState | None:
    """The state row, unlocked (for estimates)."""
    return session.get(SchedulerState, 1)


def settle_wakes(session: Session) -> int:
    """Every wake committed so far is answered by the pass that holds this lock. A pass deletes
    the wakes it answers: they say nothing worth keeping. (Wakes a committing process found no
    work for are marked processed with its other delivered rows, `scheduler.SchedulerRelay`.)"""
    result = session.execute(
        delete(OutboxEvent).where(col(OutboxEvent.topic) == WAKE, col(OutboxEvent.processed_at).is_(None))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def has_pending_wakes(session: Session, written_before: datetime) -> bool:
    """Whether a wake written before `written_before` is still pending (later ones are their
    committing process's to answer)."""
    return session.exec(
        select(OutboxEvent.id).where(col(OutboxEvent.topic) == WAKE, col(OutboxEvent.processed_at).is_(None),
                                     col(OutboxEvent.created_at) < written_before)
        .limit(1)
    ).first() is not None


def any_waiting(session: Session) -> bool:
    """Whether any generation waits for a slot (one row of the waiting index)."""
    return session.execute(_ANY_WAITING).first() is not None


class Limit(NamedTuple):
    max_running: int | None
    weight: int


class Admission(NamedTuple):
    """What an accept's admit reads of its account, in one statement."""

    limit: Limit
    in_flight: int
    older_waiting: bool


def admission(session: Session, gen: Generation) -> Admission | None:
    """`limit_and_in_flight` of the generation's account, and whether the account has waiting
    work older than `gen` (None: no such account)."""
    row = session.execute(_ADMISSION, _older_params(gen)).first()
    if row is None:
        return None
    max_running, weight, in_flight, older = row
    return Admission(Limit(max_running, weight), int(in_flight), bool(older))


def limits_of(session: Session, account_ids: Collection[str]) -> dict[str, Limit]:
    rows = session.execute(_LIMITS_OF, {"ids": list(account_ids)})
    return {account_id: Limit(max_running, weight) for account_id, max_running, weight in rows}


def limit_and_in_flight(session: Session, account_id: str) -> tuple[Limit, int] | None:
    """`limits_of` and `in_flight_by_account` of one account, in one statement (None: no such
    account)."""
    row = session.execute(_LIMIT_AND_IN_FLIGHT, {"account_id": account_id}).first()
    if row is None:
        return None
    max_running, weight, in_flight = row
    return Limit(max_running, weight), int(in_flight)


def in_flight_by_account(session: Session, account_ids: Collection[str]) -> dict[str, int]:
    rows = session.execute(_IN_FLIGHT_BY_ACCOUNT, {"ids": list(account_ids)})
    return {account_id: int(n) for account_id, n in rows}


def in_flight_by_model(session: Session, model_ids: Collection[str]) -> dict[str, int]:
    if not model_ids:
        return {}
    rows = session.exec(
        select(Generation.model_id, func.count()).where(_in_flight, col(Generation.model_id).in_(list(model_ids)))
        .group_by(col(Generation.model_id))
    )
    return {model_id: int(n) for model_id, n in rows}


def waiting_accounts(session: Session) -> dict[str, datetime]:
    """Every account with work waiting for a slot, with the creation time of its oldest."""
    rows = session.exec(
        select(Generation.account_id, func.min(Generation.created_at)).where(_waiting, _not_upstream)
        .group_by(col(Generation.account_id))
    )
    return {account_id: oldest for account_id, oldest in rows}


class Waiting(NamedTuple):
    id: str
    model_id: str
    request_id: str | None


def next_waiting(session: Session, account_id: str, skip_models: Collection[str]) -> Waiting | None:
    """The account's oldest waiting generation whose model is not in `skip_models` (those at their
    limit: work of another model behind them goes first)."""
    q = select(Generation.id, Generation.model_id, Generation.request_id).where(
        col(Generation.account_id) == account_id, _waiting, _not_upstream)
    if skip_models:
        q = q.where(col(Generation.model_id).not_in(list(skip_models)))
    # SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): a fill pass never waits for a row
    # that a cancel or a node deletion holds. Such a transaction holds that row and then its
    # account's row (the refund), while an accept of the account holds the account's row and
    # waits for the scheduler lock, which this pass holds: waiting here would close that cycle.
    row = session.exec(q.order_by(col(Generation.created_at), col(Generation.id)).limit(1)
                       .with_for_update(skip_locked=True)).first()
    return Waiting(*row) if row is not None else None


def waiting_models_before(session: Session, gen: Generation) -> set[str]:
    """The models of the account's waiting generations older than `gen`."""
    return {r[0] for r in session.execute(_WAITING_MODELS_BEFORE, _older_params(gen))}


def waiting_ahead(session: Session, gen: Generation, *, same_model: bool = False) -> int:
    """How many of the account's waiting generations are older than `gen` (of its model only)."""
    q, params = _WAITING_AHEAD, _older_params(gen)
    if same_model:
        q, params = _WAITING_AHEAD_SAME_MODEL, {**params, "model_id": gen.model_id}
    return int(session.execute(q, params).scalar_one())


def waiting_for_model(session: Session, model_id: str) -> dict[str, int]:
    """Waiting generations of a model, per account."""
    rows = session.exec(
        select(Generation.account_id, func.count()).where(col(Generation.model_id) == model_id, _waiting,
                                                          _not_upstream)
        .group_by(col(Generation.account_id))
    )
    return {account_id: int(n) for account_id, n in rows}


def _older_params(gen: Generation) -> dict[str, object]:
    return {"account_id": gen.account_id, "created_at": gen.created_at, "gen_id": gen.id}


def mark_dispatched(session: Session, generation_id: str, now: datetime) -> bool:
    """Compare-and-set: a waiting generation now holds its slots (False: it is no longer waiting)."""
    result = session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.status) == "queued",
               col(Generation.dispatched_at).is_(None))
        .values(dispatched_at=now, enqueued_at=now, blocked_by=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def schedules(session: Session, account_ids: Collection[str], *, create: bool = True) -> dict[str, AccountSchedule]:
    """Fair-share rows of these accounts; missing ones are made (and added) when `create`."""
    found = {s.account_id: s for s in session.execute(_SCHEDULES, {"ids": list(account_ids)}).scalars()}
    if create:
        for account_id in account_ids:
            if account_id not in found:
                found[account_id] = AccountSchedule(account_id=account_id)
                session.add(found[account_id])
    return found
