"""SQL of webhook endpoints and deliveries (see `easel_shared.webhooks`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, bindparam, exists, func, or_, update
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from easel_shared.db import is_sqlite
from easel_shared.models import WebhookDelivery, WebhookEndpoint

# -- endpoints --------------------------------------------------------------------------------- #


def count_endpoints(session: Session, account_id: str) -> int:
    return int(session.exec(
        select(func.count()).select_from(WebhookEndpoint).where(col(WebhookEndpoint.account_id) == account_id)
    ).one())


def endpoints_page(session: Session, account_id: str, limit: int, cursor: str | None) -> list[WebhookEndpoint]:
    """Oldest first; `limit + 1` rows, so the caller knows whether another page exists."""
    q = select(WebhookEndpoint).where(col(WebhookEndpoint.account_id) == account_id)
    if cursor:
        q = q.where(col(WebhookEndpoint.id) > cursor)
    return list(session.exec(q.order_by(col(WebhookEndpoint.id)).limit(limit + 1)))


def account_endpoint(session: Session, account_id: str, endpoint_id: str, *,
                     lock: bool = False) -> WebhookEndpoint | None:
    """The endpoint when it belongs to the account (else None: another account's is a 404)."""
    row = session.get(WebhookEndpoint, endpoint_id, with_for_update=lock or None)
    return row if row is not None and row.account_id == account_id else None


def lock_endpoint(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id, with_for_update=True)


def has_enabled_endpoint(session: Session, account_id: str) -> bool:
    """Whether the account has an enabled endpoint: read now, unless a statement of this
    transaction read it along already (`enabled_endpoint_of`, `known_enabled`)."""
    known: dict[str, bool] | None = session.info.get(_KNOWN_ENABLED)
    if known is not None and account_id in known:
        return known[account_id]
    return session.execute(_ENABLED_ENDPOINT, {"account_id": account_id}).first() is not None


def enabled_endpoint_of(account_id: ColumnElement[str] | Mapped[str]) -> Exists:
    """`has_enabled_endpoint` as a column of another statement, `account_id` a column of its row:
    the statement a generation's start and end make anyway reads it along, and `known_enabled`
    keeps what it read for the transaction."""
    return (exists().where(col(WebhookEndpoint.account_id) == account_id, col(WebhookEndpoint.enabled).is_(True))
            .correlate_except(WebhookEndpoint))


def known_enabled(session: Session, account_id: str, enabled: bool) -> None:
    """What `enabled_endpoint_of` read in this transaction: `has_enabled_endpoint` answers from it.
    (No transaction that reads it so changes an endpoint.)"""
    session.info.setdefault(_KNOWN_ENABLED, {})[account_id] = bool(enabled)


_KNOWN_ENABLED = "easel_webhooks_enabled"


# Read by every generation's start and end: built once (see `easel_shared.repositories`).
_ENABLED_ENDPOINT = (select(WebhookEndpoint.id).where(col(WebhookEndpoint.account_id) == bindparam("account_id"),
                                                      col(WebhookEndpoint.enabled).is_(True)).limit(1))


def subscribers(session: Session, account_id: str, event_type: str, occurred_at: datetime) -> list[WebhookEndpoint]:
    """The account's enabled endpoints that existed when the event occurred and whose `events`
    include the type (filtered here: the list is JSON, and an account has at most a few dozen
    endpoints). An endpoint made after the event gets none of it, even when the event is fanned
    out later (Redis was away, or the relay was behind)."""
    rows = session.exec(
        select(WebhookEndpoint).where(col(WebhookEndpoint.account_id) == account_id,
                                      col(WebhookEndpoint.enabled).is_(True),
                                      col(WebhookEndpoint.created_at) <= occurred_at).order_by(col(WebhookEndpoint.id))
    )
    return [e for e in rows if event_type in (e.events or [])]


# -- deliveries -------------------------------------------------------------------------------- #


def deliveries_page(session: Session, endpoint_id: str, limit: int, cursor: str | None) -> list[WebhookDelivery]:
    """Newest first; `limit + 1` rows."""
    q = select(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    if cursor:
        q = q.where(col(WebhookDelivery.id) < cursor)
    return list(session.exec(q.order_by(col(WebhookDelivery.id).desc()).limit(limit + 1)))


def endpoint_delivery(session: Session, endpoint_id: str, delivery_id: str) -> WebhookDelivery | None:
    row = session.get(WebhookDelivery, delivery_id)
    return row if row is not None and row.endpoint_id == endpoint_id else None


def lock_delivery(session: Session, delivery_id: str) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, with_for_update=True)


def in_flight(session: Session, endpoint_id: str, now: datetime) -> int:
    """Attempts of the endpoint under way (their claim has not expired)."""
    return int(session.exec(
        select(func.count()).select_from(WebhookDelivery).where(
            col(WebhookDelivery.endpoint_id) == endpoint_id, col(WebhookDelivery.state) == "pending",
            col(WebhookDelivery.locked_until) > now)
    ).one())


def claim_due(session: Session, now: datetime, resend_before: datetime, limit: int) -> list[WebhookDelivery]:
    """Pending deliveries due now, with no attempt in flight and no message on its way (or one
    sent before `resend_before`, presumed lost), marked as sent. Rows another scan holds are
    skipped (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite serializes writers)."""
    q = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.state) == "pending", col(WebhookDelivery.next_attempt_at) <= now,
               or_(col(WebhookDelivery.dispatched_at).is_(None), col(WebhookDelivery.dispatched_at) < resend_before),
               or_(col(WebhookDelivery.locked_until).is_(None), col(WebhookDelivery.locked_until) < now))
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(limit)
    )
    if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        q = q.with_for_update(skip_locked=True)
    rows = list(session.exec(q))
    for row in rows:
        row.dispatched_at = now
        session.add(row)
    return rows


def clear_dispatched(session: Session, ids: Sequence[str]) -> None:
    """Their messages could not be sent: the next scan sends them instead of waiting."""
    if ids:
        session.execute(update(WebhookDelivery).where(col(WebhookDelivery.id).in_(list(ids)))
                        .values(dispatched_at=None).execution_options(synchronize_session=False))
