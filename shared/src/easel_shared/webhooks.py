"""Webhooks: events for the backends that use Easel, signed per the Standard Webhooks spec.

1. A change that causes an event writes a `webhook.event` outbox row (`emit`) in its own
   transaction (generation started / ended, asset created, a test), only when the account has an
   enabled endpoint. The payload holds the event id (`webhook-id`), type, time and data.
2. `WebhookRelay` (a topic relay of every process, after the commit and in the background) turns
   each row into one `webhook_deliveries` row per endpoint subscribed to the type, in the same
   transaction that settles the outbox row, and sends one `webhook.deliver` Celery message per
   delivery on the `webhooks` queue.
3. The worker attempts it (`easel_worker.jobs.webhooks`) and writes the next attempt's time on
   the row. The same relay's background pass is the durable scheduler: it sends again every
   pending delivery that is due, and one whose message was sent over `RESEND_AFTER` ago and never
   taken (Redis lost it), so nothing depends on the broker keeping a message.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import redis
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from easel_shared.clock import rfc3339, utcnow
from easel_shared.db import session_scope
from easel_shared.ids import new_id
from easel_shared.logs import request_id_var
from easel_shared.messages import WebhookEvent
from easel_shared.models import Generation, Image, WebhookDelivery
from easel_shared.relay import Breaker, Written
from easel_shared.repositories import outbox
from easel_shared.repositories import webhooks as repo
from easel_shared.views import generation_view, image_view

log = logging.getLogger(__name__)

EVENT_TYPES: Final = ("generation.started", "generation.succeeded", "generation.failed", "generation.canceled",
                      "asset.created", "webhook.test")
WEBHOOK_QUEUE: Final = "webhooks"
DELIVER_WEBHOOK: Final = "webhook.deliver"
TOPIC: Final = WebhookEvent.topic
MAX_ENDPOINTS_PER_ACCOUNT: Final = 20
MAX_IN_FLIGHT_PER_ENDPOINT: Final = 2
SECRET_PREFIX: Final = "whsec_"  # noqa: S105  (a prefix, not a secret)
# A rotated-out secret keeps signing (beside the new one) for this long.
ROTATION_OVERLAP: Final = timedelta(hours=24)
# A message sent this long ago for a delivery still not attempted is presumed lost and sent again
# (a duplicate is harmless: an attempt first claims the row).
RESEND_AFTER: Final = timedelta(seconds=60)


METADATA_ADDRESSES: Final = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not connect to this address (unless private networks are allowed), or
    None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for flag, what in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                       ("is_multicast", "a multicast address"), ("is_reserved", "a reserved address"),
                       ("is_unspecified", "an unspecified address"), ("is_private", "a private address")):
        if getattr(address, flag):
            return what
    return None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def emit(session: Session, account_id: str, event_type: str, data: dict[str, Any], *,
         request_id: str | None = None, endpoint_id: str | None = None) -> str | None:
    """Have the event reach the account's subscribed endpoints (or `endpoint_id` only) once this
    transaction commits; returns its id, or None when no endpoint of the account is enabled."""
    if endpoint_id is None and not repo.has_enabled_endpoint(session, account_id):
        return None
    return _enqueue(session, account_id, event_type, data, request_id, endpoint_id)


def _enqueue(session: Session, account_id: str, event_type: str, data: dict[str, Any], request_id: str | None,
             endpoint_id: str | None) -> str:
    message = WebhookEvent(event_id=new_id("msg"), type=event_type, timestamp=rfc3339(utcnow()) or "", data=data,
                           request_id=request_id or request_id_var.get(), endpoint_id=endpoint_id)
    outbox.enqueue(session, message, account_id, subject_id=message.event_id)
    return message.event_id


def generation_data(session: Session, gen: Generation, base_url: str) -> dict[str, Any]:
    """The generation as the api returns it, plus its image (with URLs) once it has one."""
    view = generation_view(gen)
    image = session.get(Image, gen.image_id) if gen.image_id else None
    view["image"] = image_view(image, base_url) if image is not None else None
    return view


def emit_generation(session: Session, gen: Generation, base_url: str) -> None:
    """`generation.started` for a running generation, else `generation.<status>` (succeeded, failed,
    canceled)."""
    event_type = "generation.started" if gen.status == "running" else f"generation.{gen.status}"
    if repo.has_enabled_endpoint(session, gen.account_id):  # no view built for accounts without endpoints
        _enqueue(session, gen.account_id, event_type, generation_data(session, gen, base_url),
                 request_id_var.get() or gen.request_id, None)


def body_of(message: WebhookEvent) -> str:
    """The request body: `{"type", "timestamp", "data"}` (Standard Webhooks' payload)."""
    return json.dumps({"type": message.type, "timestamp": message.timestamp, "data": message.data},
                      separators=(",", ":"))


def new_delivery(endpoint_id: str, account_id: str, event_id: str, event_type: str, body: str,
                 request_id: str | None, now: datetime) -> WebhookDelivery:
    return WebhookDelivery(id=new_id("wdl"), endpoint_id=endpoint_id, account_id=account_id, event_id=event_id,
                           event_type=event_type, body=body, request_id=request_id, next_attempt_at=now,
                           dispatched_at=now, created_at=now)


def _fan_out(session: Session, account_id: str, message: WebhookEvent, occurred_at: datetime,
             now: datetime) -> list[WebhookDelivery]:
    if message.endpoint_id is not None:
        one = repo.account_endpoint(session, account_id, message.endpoint_id)
        endpoints = [one] if one is not None and one.enabled else []
    else:
        endpoints = repo.subscribers(session, account_id, message.type, occurred_at)
    body = body_of(message)
    rows = [new_delivery(e.id, account_id, message.event_id, message.type, body, message.request_id, now)
            for e in endpoints]
    session.add_all(rows)
    return rows


class WebhookRelay:
    """Fans `webhook.event` rows out into deliveries and sends the deliveries that are due."""

    topic = TOPIC

    def __init__(self, client: redis.Redis, broker_url: str, batch: int = 200) -> None:
        self.client = client
        self.broker_url = broker_url
        self.batch = batch
        self.breaker = Breaker()

    def relay_written(self, engine: Engine, rows: Sequence[Written]) -> None:
        if self.breaker.open:
            return
        try:
            self._fan_out(engine, [r.id for r in rows])
        except Exception:
            self.breaker.trip()
            log.warning("could not relay %d webhook event(s); the background relay will", len(rows), exc_info=True)

    def relay_pending(self, engine: Engine) -> bool:
        self.client.ping()  # with Redis away, fail here rather than after claiming rows
        events = self._fan_out(engine, None)
        due = self._send_due(engine)
        self.breaker.reset()
        return events == self.batch or due == self.batch

    def _fan_out(self, engine: Engine, ids: list[int] | None) -> int:
        now = utcnow()
        with session_scope(engine) as session:
            rows = outbox.claim(session, (self.topic,), ids=ids, limit=self.batch)
            deliveries: list[WebhookDelivery] = []
            for row in rows:
                try:
                    message = WebhookEvent.model_validate(row.payload)
                except ValidationError as exc:
                    outbox.mark_failed(session, row, f"malformed payload: {exc}")
                    continue
                deliveries += _fan_out(session, row.account_id, message, row.created_at, now)
            outbox.mark_processed(session, [r.id for r in rows if r.id is not None])
            todo = [d.id for d in deliveries]
        self._send(engine, todo)
        return len(rows)

    def _send_due(self, engine: Engine) -> int:
        now = utcnow()
        with session_scope(engine) as session:
            todo = [d.id for d in repo.claim_due(session, now, now - RESEND_AFTER, self.batch)]
        self._send(engine, todo)
        return len(todo)

    def _send(self, engine: Engine, delivery_ids: list[str]) -> None:
        from easel_shared.tasks import producer

        for i, delivery_id in enumerate(delivery_ids):
            try:
                producer(self.broker_url).send_task(DELIVER_WEBHOOK, args=[delivery_id], queue=WEBHOOK_QUEUE)
            except Exception:
                with session_scope(engine) as session:
                    repo.clear_dispatched(session, delivery_ids[i:])
                raise
