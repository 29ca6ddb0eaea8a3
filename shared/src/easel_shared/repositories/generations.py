"""Generation rows: idempotency lookups, history, and the worker's compare-and-set writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, literal_column, text, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from easel_shared.clock import utcnow
from easel_shared.models import Generation, Node, OutboxEvent
from easel_shared.models.tables import UPSTREAM_WAIT_SQL
from easel_shared.repositories import webhooks
from easel_shared.repositories.outbox import DISPATCH_GENERATION
from easel_shared.repositories.paging import newest_first


def get_account_generation(session: Session, account_id: str, generation_id: str) -> Generation | None:
    gen = session.get(Generation, generation_id)
    return gen if gen is not None and gen.account_id == account_id else None


_KEPT = "easel_kept_rows"
# Whether the generation's account has an enabled webhook endpoint, as a column of a statement on
# `generations` (the lease's UPDATE, the read with the node). Named with its table: SQLite's
# RETURNING writes the updated table's columns bare, and inside the subquery a bare `account_id`
# would be the endpoint's own.
_ACCOUNT_HAS_ENDPOINT = webhooks.enabled_endpoint_of(literal_column(f"{Generation.__tablename__}.account_id", String))
_WITH_NODE = (sa_select(Generation, Node, _ACCOUNT_HAS_ENDPOINT)
              .outerjoin(Node, col(Node.id) == col(Generation.node_id))
              .where(col(Generation.id) == bindparam("generation_id"))
              .execution_options(populate_existing=True))


def get_with_node(session: Session, generation_id: str) -> Generation | None:
    """The generation read afresh, with its node (if it still exists) loaded into the session in
    the same statement: ending the generation then finds the node there (`session.get`) without
    another round trip. Whether its account has an enabled webhook endpoint is read along
    (`webhooks.known_enabled`)."""
    row = session.execute(_WITH_NODE, {"generation_id": generation_id}).first()
    if row is None:
        return None
    gen: Generation = row[0]
    node = row[1]
    if node is not None:
        # The session holds objects nobody changed by weak reference only: keep the node for the
        # rest of this unit of work, or it is collected and read again.
        session.info.setdefault(_KEPT, []).append(node)
    webhooks.known_enabled(session, gen.account_id, row[2])
    return gen


def by_idempotency_key(session: Session, account_id: str, key: str) -> Generation | None:
    return session.exec(
        select(Generation).where(Generation.account_id == account_id, Generation.idempotency_key == key)
    ).first()


def node_history(session: Session, node_id: str, limit: int, cursor: str | None) -> list[Generation]:
    return newest_first(session, select(Generation).where(Generation.node_id == node_id), Generation.id,
                        limit, cursor)


def lease(session: Session, generation_id: str, token: str) -> Generation | None:
    """`queued -> running` for the holder of `token`: the row as it now is, or None when it was not
    queued, or is still waiting for the scheduler (never dispatched: a message for it is not its
    turn). One statement: the row comes back from the UPDATE itself (RETURNING), with whether its
    account has an enabled webhook endpoint (`webhooks.known_enabled`)."""
    now = utcnow()
    row = session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.status) == "queued",
               col(Generation.dispatched_at).is_not(None))
        .values(status="running", lease_token=token, attempts=col(Generation.attempts) + 1,
                heartbeat_at=now, started_at=now)
        .returning(Generation, _ACCOUNT_HAS_ENDPOINT)
    ).one_or_none()
    if row is None:
        return None
    gen: Generation = row[0]
    webhooks.known_enabled(session, gen.account_id, row[1])
    return gen


def heartbeat(session: Session, generation_id: str, token: str) -> bool:
    """Refresh the heartbeat; False when the lease is no longer ours (canceled or taken back)."""
    result = session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.lease_token) == token,
               col(Generation.status) == "running")
        .values(heartbeat_at=utcnow())
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class QueuedRow(NamedTuple):
    id: str
    enqueued_at: datetime | None
    account_id: str
    request_id: str | None


def queued_before(session: Session, cutoff: datetime, *, after_id: str = "", limit: int = 500) -> list[QueuedRow]:
    """Generations queued (sent, or sent again) before `cutoff` whose dispatch is not waiting in the
    outbox (a relay will send that one), in id order after `after_id`: keyset pages, so a sweep
    looks at every one of them however many there are. Work waiting for the scheduler was never
    sent (no message, no marker) and is not the sweeper's."""
    dispatch_pending = (
        select(OutboxEvent.id)
        .where(col(OutboxEvent.subject_id) == col(Generation.id), OutboxEvent.topic == DISPATCH_GENERATION,
               col(OutboxEvent.processed_at).is_(None))
    )
    rows = session.exec(
        select(Generation.id, Generation.enqueued_at, Generation.account_id, Generation.request_id)
        .where(Generation.status == "queued", col(Generation.dispatched_at).is_not(None),
               col(Generation.enqueued_at) < cutoff, col(Generation.id) > after_id, ~dispatch_pending.exists())
        .order_by(col(Generation.id))
        .limit(limit)
    )
    return [QueuedRow(*row) for row in rows]


def running_with_heartbeat_before(session: Session, cutoff: datetime,
                                  limit: int = 200) -> list[tuple[str, str | None, int]]:
    rows = session.exec(
        select(Generation.id, Generation.lease_token, Generation.attempts)
        .where(Generation.status == "running", col(Generation.heartbeat_at) < cutoff)
        .limit(limit)
    )
    return [(gen_id, token, attempts) for gen_id, token, attempts in rows]


def mark_enqueued(session: Session, generation_id: str, seen_enqueued_at: datetime | None) -> bool:
    """Stamp a fresh send time, unless another sweeper already did (compare-and-set)."""
    result = session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.status) == "queued",
               col(Generation.enqueued_at) == seen_enqueued_at)
        .values(enqueued_at=utcnow())
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def save_vendor_job(session: Session, generation_id: str, token: str, job: dict[str, Any]) -> bool:
    """Record the vendor's job on the row while `token` holds the lease (compare-and-set)."""
    result = session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.lease_token) == token,
               col(Generation.status) == "running")
        .values(vendor_job=job)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def save_progress(session: Session, generation_id: str, token: str, progress: dict[str, Any]) -> Generation | None:
    """Record a vendor job's progress while `token` holds the lease; the row, or None if lost."""
    result = session.execute(
        update(Generation)
        .where(col(Generation.id) == generation_id, col(Generation.lease_token) == token,
               col(Generation.status) == "running")
        .values(progress=progress)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Generation, generation_id)


def waiting_for_upstream(session: Session, board_id: str) -> list[Generation]:
    """The board's generations waiting for upstream nodes to finish (`easel_shared.upstream`),
    through the partial index `ix_generations_upstream_wait`."""
    return list(session.exec(
        select(Generation).where(col(Generation.board_id) == board_id, text(UPSTREAM_WAIT_SQL))
    ).all())
