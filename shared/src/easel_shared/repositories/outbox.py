"""Transactional outbox: rows written with the change they announce, delivered later by a relay
that may retry, so consumers must be idempotent."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from easel_shared.clock import utcnow
from easel_shared.db import is_sqlite
from easel_shared.models import OutboxEvent

RETAIN_IMAGE = "image.retain"


def enqueue(session: Session, topic: str, account_id: str, payload: dict[str, Any]) -> None:
    session.add(OutboxEvent(topic=topic, account_id=account_id, payload=payload))


def claim_batch(session: Session, topic: str, limit: int = 50) -> list[OutboxEvent]:
    """Unprocessed events, locked so two relays never process the same row at once."""
    q = (
        select(OutboxEvent)
        .where(OutboxEvent.topic == topic, col(OutboxEvent.processed_at).is_(None))
        .order_by(col(OutboxEvent.id))
        .limit(limit)
    )
    if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        q = q.with_for_update(skip_locked=True)
    return list(session.exec(q))


def lock_event(session: Session, event_id: int) -> OutboxEvent | None:
    """The event, locked for this transaction; None while another relay holds it."""
    return session.get(OutboxEvent, event_id, with_for_update={"skip_locked": True})


def mark_done(session: Session, event: OutboxEvent) -> None:
    event.processed_at = utcnow()
    session.add(event)


def mark_failed(session: Session, event: OutboxEvent, error: str) -> None:
    event.attempts += 1
    event.last_error = error[:500]
    session.add(event)
