"""Webhook endpoints of an account: create, list, change, rotate the secret, test, and look at
and redeliver deliveries. Sending is the worker's (`easel_shared.webhooks` says how)."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
from sqlalchemy import delete
from sqlmodel import Session, col

from easel_api.context import AppContext
from easel_api.schemas.webhooks import WebhookCreate, WebhookPatch
from easel_shared import webhooks
from easel_shared.clock import as_utc, rfc3339, utcnow
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.ids import new_id
from easel_shared.models import Account, WebhookDelivery, WebhookEndpoint
from easel_shared.repositories import webhooks as repo
from easel_shared.web import page


def endpoint_view(e: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": e.id,
        "url": e.url,
        "events": list(e.events),
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "description": e.description,
        "created_at": rfc3339(e.created_at),
        "updated_at": rfc3339(e.updated_at),
    }
    if secret:
        view["secret"] = e.secret
    return view


def delivery_view(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "type": d.event_type,
        "state": d.state,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "last_response": d.last_response,
        "request_id": d.request_id,
        "last_attempt_at": rfc3339(d.last_attempt_at),
        "next_attempt_at": rfc3339(d.next_attempt_at) if d.state == "pending" else None,
        "delivered_at": rfc3339(d.delivered_at),
        "created_at": rfc3339(d.created_at),
    }


def _check_url(ctx: AppContext, url: str) -> str:
    try:
        parsed = httpx.URL(url.strip())
        port, host = parsed.port, parsed.host  # the host decodes IDNA lazily
    except (httpx.InvalidURL, ValueError):  # idna's errors are ValueErrors
        raise errors.InvalidField("The webhook URL is not a valid URL.") from None
    if port is not None and not 0 < port < 65536:
        raise errors.InvalidField("The webhook URL's port is out of range.")
    allowed = ("https", "http") if ctx.settings.webhook_allow_http else ("https",)
    if parsed.scheme not in allowed:
        raise errors.InvalidField("The webhook URL must start with https://.")
    if not host:
        raise errors.InvalidField("The webhook URL has no host.")
    if parsed.fragment:
        raise errors.InvalidField("The webhook URL may not have a fragment.")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not ctx.settings.webhook_allow_private_networks:
        why = webhooks.refusal(address)
        if why is not None:
            raise errors.InvalidField(f"The webhook URL points at {why}; private networks are not allowed.")
    return str(parsed)


def _endpoint_or_404(session: Session, account: Account, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    endpoint = repo.account_endpoint(session, account.id, endpoint_id, lock=lock)
    if endpoint is None:
        raise errors.NotFound("Webhook endpoint not found.")
    return endpoint


def create(ctx: AppContext, account: Account, body: WebhookCreate) -> dict[str, Any]:
    url = _check_url(ctx, body.url)
    with session_scope(ctx.engine) as session:
        session.get(Account, account.id, with_for_update=True)  # counts of concurrent creates add up
        if repo.count_endpoints(session, account.id) >= webhooks.MAX_ENDPOINTS_PER_ACCOUNT:
            raise errors.DomainError(
                f"An account can have at most {webhooks.MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints.",
                code="webhook_limit_reached")
        endpoint = WebhookEndpoint(id=new_id("whk"), account_id=account.id, url=url,
                                   events=list(dict.fromkeys(body.events)), description=body.description,
                                   secret=webhooks.new_secret())
        session.add(endpoint)
        return endpoint_view(endpoint, secret=True)


def list_endpoints(ctx: AppContext, account: Account, limit: int, cursor: str | None) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        rows = repo.endpoints_page(session, account.id, limit, cursor)
        return page(rows, limit, endpoint_view, lambda e: e.id)


def get(ctx: AppContext, account: Account, endpoint_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        return endpoint_view(_endpoint_or_404(session, account, endpoint_id))


def patch(ctx: AppContext, account: Account, endpoint_id: str, body: WebhookPatch) -> dict[str, Any]:
    url = _check_url(ctx, body.url) if body.url is not None else None
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id, lock=True)
        if url is not None:
            endpoint.url = url
        if body.events is not None:
            endpoint.events = list(dict.fromkeys(body.events))
        if body.description is not None:
            endpoint.description = body.description
        if body.enabled is not None and body.enabled != endpoint.enabled:
            endpoint.enabled = body.enabled
            # Enabled again: a fresh start for the day-of-failures rule.
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        endpoint.updated_at = utcnow()
        session.add(endpoint)
        return endpoint_view(endpoint)


def delete_endpoint(ctx: AppContext, account: Account, endpoint_id: str) -> None:
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id, lock=True)
        session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id)
                        .execution_options(synchronize_session=False))
        session.delete(endpoint)


def rotate_secret(ctx: AppContext, account: Account, endpoint_id: str) -> dict[str, Any]:
    """A new secret; the one it replaces keeps signing beside it for 24 hours, so receivers can
    switch over without missing a delivery."""
    now = utcnow()
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id, lock=True)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + webhooks.ROTATION_OVERLAP
        endpoint.secret = webhooks.new_secret()
        endpoint.updated_at = now
        session.add(endpoint)
        view = endpoint_view(endpoint, secret=True)
        view["previous_secret_expires_at"] = rfc3339(as_utc(endpoint.previous_secret_expires_at))
        return view


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise errors.DomainError("The webhook endpoint is disabled; enable it first.", code="webhook_disabled")


def send_test(ctx: AppContext, account: Account, endpoint_id: str) -> dict[str, Any]:
    """A `webhook.test` event to this endpoint only, whatever its `events` filter."""
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id)
        _require_enabled(endpoint)
        data = {"endpoint_id": endpoint.id, "message": "A test event from Easel."}
        event_id = webhooks.emit(session, account.id, "webhook.test", data, endpoint_id=endpoint.id)
    return {"event_id": event_id, "type": "webhook.test", "endpoint_id": endpoint_id}


def list_deliveries(ctx: AppContext, account: Account, endpoint_id: str, limit: int,
                    cursor: str | None) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id)
        return page(repo.deliveries_page(session, endpoint.id, limit, cursor), limit, delivery_view, lambda d: d.id)


def get_delivery(ctx: AppContext, account: Account, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id)
        delivery = repo.endpoint_delivery(session, endpoint.id, delivery_id)
        if delivery is None:
            raise errors.NotFound("Webhook delivery not found.")
        return delivery_view(delivery)


def redeliver(ctx: AppContext, account: Account, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    """The same event (same `webhook-id` and body) as a new delivery with a fresh retry schedule;
    the worker's scan sends it within `OUTBOX_POLL_SECONDS`."""
    now = utcnow()
    with session_scope(ctx.engine) as session:
        endpoint = _endpoint_or_404(session, account, endpoint_id)
        _require_enabled(endpoint)
        original = repo.endpoint_delivery(session, endpoint.id, delivery_id)
        if original is None:
            raise errors.NotFound("Webhook delivery not found.")
        copy = webhooks.new_delivery(endpoint.id, account.id, original.event_id, original.event_type, original.body,
                                     original.request_id, now)
        copy.dispatched_at = None  # nothing sent yet: the next scan sends it
        session.add(copy)
        return delivery_view(copy)
