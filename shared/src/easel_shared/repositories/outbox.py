"""Transactional outbox: rows written with the change they announce, delivered after the commit
by a relay that may retry (`easel_shared.relay`), so consumers must be idempotent.

Rows stay after delivery (`processed_at` set) for `OUTBOX_RETENTION_SECONDS`, then `prune`
deletes them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, update
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from easel_shared.clock import utcnow
from easel_shared.db import is_sqlite
from easel_shared.messages import BoardEvent, GenerationDispatch, OutboxMessage, RetainImage, StoreThumbnail
from easel_shared.models import Board, OutboxEvent

BOARD_EVENT = BoardEvent.topic
RETAIN_IMAGE = RetainImage.topic
DISPATCH_GENERATION = GenerationDispatch.topic
STORE_THUMBNAIL = StoreThumbnail.topic


def enqueue(session: Session, message: OutboxMessage, account_id: str, *, board_id: str | None = None,
            seq: int | None = None, subject_id: str | None = None) -> OutboxEvent:
    row = OutboxEvent(topic=message.topic, account_id=account_id, payload=message.payload(),
                      board_id=board_id, seq=seq, subject_id=subject_id)
    session.add(row)
    return row


def thumbnail_pending(image_id: ColumnElement[str] | Mapped[str] | str) -> ColumnElement[bool]:
    """Whether an upload's thumbnail may not be stored yet (`easel_shared.thumbnails`): its
    `image.thumbnail` row is pending. `image_id` may be a column, to correlate."""
    return exists().where(col(OutboxEvent.subject_id) == image_id, col(OutboxEvent.topic) == STORE_THUMBNAIL,
                          col(OutboxEvent.processed_at).is_(None))


def next_event_seqs(session: Session, board_id: str, count: int) -> tuple[int, str] | None:
    """Reserve `count` live-event seqs of the board: (the last of them, the board's account), or
    None when the board is gone. The UPDATE takes the board's row lock until the commit (a caller
    that took `boards.lock_board` already holds it), so a board's seqs follow commit order."""
    row = session.execute(
        update(Board).where(col(Board.id) == board_id).values(event_seq=col(Board.event_seq) + count)
        .returning(col(Board.event_seq), col(Board.account_id))
    ).first()
    return (int(row[0]), str(row[1])) if row is not None else None


def claim_batch(session: Session, topic: str, limit: int = 50) -> list[OutboxEvent]:
    """Unprocessed events, locked so two relays never process the same row at once (PostgreSQL:
    `FOR UPDATE SKIP LOCKED`; SQLite: every transaction holds the database's write lock)."""
    return claim(session, (topic,), limit=limit)


def claim(session: Session, topics: Collection[str], *, ids: Collection[int] | None = None,
          limit: int = 500, written_before: datetime | None = None) -> list[OutboxEvent]:
    """Pending rows of `topics` (only `ids` when given, only those written before `written_before`
    when given), oldest first, locked for this transaction; rows another relay holds are
    skipped."""
    q = select(OutboxEvent).where(col(OutboxEvent.topic).in_(list(topics)), col(OutboxEvent.processed_at).is_(None))
    if ids is not None:
        q = q.where(col(OutboxEvent.id).in_(list(ids)))
    if written_before is not None:
        q = q.where(col(OutboxEvent.created_at) < written_before)
    q = q.order_by(col(OutboxEvent.id)).limit(limit)
    if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        q = q.with_for_update(skip_locked=True)
    return list(session.exec(q))


def pending_board_events(session: Session, board_ids: Collection[str], *, limit: int = 1000) -> list[OutboxEvent]:
    """Every unpublished live event of these boards in seq order, without locking: publishing is
    idempotent (see `events`), so a row another relay holds is simply published by both."""
    q = (
        select(OutboxEvent)
        .where(col(OutboxEvent.topic) == BOARD_EVENT, col(OutboxEvent.board_id).in_(list(board_ids)),
               col(OutboxEvent.processed_at).is_(None))
        .order_by(col(OutboxEvent.board_id), col(OutboxEvent.seq))
        .limit(limit)
    )
    return list(session.exec(q))


def board_events_between(session: Session, board_id: str, after_seq: int, before_seq: int) -> list[OutboxEvent]:
    """The board's events with after_seq < seq < before_seq, published or not, in seq order."""
    q = (
        select(OutboxEvent)
        .where(col(OutboxEvent.topic) == BOARD_EVENT, col(OutboxEvent.board_id) == board_id,
               col(OutboxEvent.seq) > after_seq, col(OutboxEvent.seq) < before_seq)
        .order_by(col(OutboxEvent.seq))
    )
    return list(session.exec(q))


def lock_event(session: Session, event_id: int) -> OutboxEvent | None:
    """The event, locked for this transaction; None while another relay holds it."""
    return session.get(OutboxEvent, event_id, with_for_update={"skip_locked": True})


def mark_done(session: Session, event: OutboxEvent) -> None:
    event.processed_at = utcnow()
    session.add(event)


def mark_processed(session: Session, ids: Sequence[int]) -> int:
    """Settle rows by id (those still pending); returns how many this call settled."""
    if not ids:
        return 0
    result = session.execute(
        update(OutboxEvent)
        .where(col(OutboxEvent.id).in_(list(ids)), col(OutboxEvent.processed_at).is_(None))
        .values(processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def mark_failed(session: Session, event: OutboxEvent, error: str) -> None:
    event.attempts += 1
    event.last_error = error[:500]
    session.add(event)


def prune(session: Session, processed_before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` rows settled before `processed_before`; returns how many."""
    ids = list(session.exec(
        select(OutboxEvent.id).where(col(OutboxEvent.processed_at) < processed_before).limit(limit)
    ))
    if not ids:
        return 0
    session.execute(delete(OutboxEvent).where(col(OutboxEvent.id).in_(ids)).execution_options(
        synchronize_session=False))
    return len(ids)
