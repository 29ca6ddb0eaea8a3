"""Webhook endpoints and their deliveries (see `easel_shared.webhooks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel

from easel_shared.clock import utcnow


def _ts(index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=index))


def _now_ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class WebhookEndpoint(SQLModel, table=True):
    """Where an account wants events sent. The signing secrets are kept as they are (an HMAC key
    must be known to sign); the previous one keeps signing until `previous_secret_expires_at`."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_account_id_id", "account_id", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(max_length=40)
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    # Why the server turned it off (a 410 answer, a day of failures); None when a user did.
    disabled_reason: str | None = Field(default=None, max_length=200)
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = _ts()
    # The first failed attempt since the last success: a day of nothing but failures disables it.
    failing_since: datetime | None = _ts()
    created_at: datetime = _now_ts()
    updated_at: datetime = _now_ts()


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint, with its attempts. The row is the truth about a delivery: the
    Celery message only carries its id, and a periodic scan sends again what is due."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # An endpoint's deliveries, newest first (the listing), and its in-flight count.
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # What the scan reads: pending deliveries by due time.
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    endpoint_id: str = Field(max_length=40)
    account_id: str = Field(max_length=40)
    # `webhook-id`: the same on every attempt of this event (and on a redelivery).
    event_id: str = Field(max_length=40)
    event_type: str = Field(max_length=50)
    # The exact body every attempt sends (signatures cover it byte for byte).
    body: str = Field(sa_column=Column(Text, nullable=False))
    request_id: str | None = Field(default=None, max_length=64)
    state: str = Field(default="pending", max_length=20)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    # Set while a Celery message for it is on its way (cleared by the attempt); the scan sends
    # again one whose message went missing.
    dispatched_at: datetime | None = _ts()
    # Set while an attempt is in flight: bounds concurrency per endpoint, and an attempt whose
    # worker died is taken up again once it passes.
    locked_until: datetime | None = _ts()
    last_attempt_at: datetime | None = _ts()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    last_response: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    delivered_at: datetime | None = _ts()
    created_at: datetime = _now_ts()
