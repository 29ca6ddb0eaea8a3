"""Delivering one webhook: claim the row, sign and send, record the outcome and the next try.

- Claim (short transaction, the delivery's row then its endpoint's): the delivery must be
  pending, due and not in flight, its endpoint enabled and running fewer than
  `MAX_IN_FLIGHT_PER_ENDPOINT` attempts (else it waits a second, and the scan sends it again).
  `locked_until` marks the attempt in flight; a worker that dies mid-attempt leaves it to expire.
- Send: the URL's host is resolved once and every address checked (no private, loopback,
  link-local, reserved, multicast or metadata address unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS`);
  the request goes to that checked address (the `Host` header and TLS SNI/certificate name stay
  the URL's host), so a DNS answer that changes between check and connect cannot redirect it.
  No redirects, no proxies from the environment, `WEBHOOK_TIMEOUT_SECONDS`, response read up to
  4 KiB.
- Record: 2xx is delivered; 410 disables the endpoint; anything else retries on
  `WEBHOOK_RETRY_SCHEDULE` (with ±10 % jitter, or the receiver's `Retry-After` on 429/503) until
  the schedule is spent, then the delivery is failed. An endpoint that has failed every attempt
  for `WEBHOOK_DISABLE_AFTER_SECONDS` is disabled.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

import httpx
from standardwebhooks import Webhook

from easel_shared.clock import as_utc, utcnow
from easel_shared.db import session_scope
from easel_shared.logs import request_id_var
from easel_shared.models import WebhookEndpoint
from easel_shared.repositories import webhooks as repo
from easel_shared.settings import Settings
from easel_shared.webhooks import MAX_IN_FLIGHT_PER_ENDPOINT, refusal
from easel_worker.metrics import WEBHOOK_DELIVERIES, WEBHOOK_SECONDS
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES: Final = 4096
CLAIM_MARGIN: Final = timedelta(seconds=30)
BUSY_DELAY_SECONDS: Final = 1.0
MAX_RETRY_AFTER_SECONDS: Final = 86400.0
USER_AGENT: Final = "Easel-Webhooks/1.0"


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    event_id: str
    event_type: str
    body: str
    request_id: str | None
    number: int


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: float | None = None
    refused: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Refused(Exception):
    """The URL may not be called (scheme, or an address that is not public)."""


# -- sending ----------------------------------------------------------------------------------- #


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The one address to connect to. Every address the name has must be allowed: a name that
    also points inward is refused, whichever address a later lookup would give first."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise Refused(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise Refused(f"{host} resolves to {why} ({address}); private networks are not allowed")
    return str(addresses[0])


def signature(secrets: tuple[str, ...], event_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret, space-separated."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(secret).sign(event_id, when, body) for secret in secrets)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - utcnow()).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """One client per process. No proxies from the environment (they would connect elsewhere than
    the checked address) and no redirects."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False, trust_env=False,
                                   limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        return _client


def send(url: str, event_id: str, body: str, secrets: tuple[str, ...], *, timeout: float, allow_http: bool,
         allow_private: bool, client: httpx.Client | None = None) -> Outcome:
    """One attempt. Never raises: every way it can go wrong is an `Outcome`."""
    try:
        parsed = httpx.URL(url)
        if parsed.scheme != "https" and not (allow_http and parsed.scheme == "http"):
            raise Refused(f"{parsed.scheme}:// URLs are not allowed (https only)")
        host = parsed.host
        if not host:
            raise Refused("the URL has no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = resolve(host, port, allow_private=allow_private)
        target = parsed.copy_with(host=address)
    except Refused as exc:
        return Outcome(error=f"refused: {exc}", refused=True)
    except (httpx.InvalidURL, ValueError) as exc:
        return Outcome(error=f"refused: invalid URL: {exc}"[:500], refused=True)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": parsed.netloc.decode("ascii"),
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secrets, event_id, timestamp, body),
    }
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    try:
        with (client or http_client()).stream("POST", target, content=body.encode(),
                                              headers=headers, extensions=extensions, timeout=timeout) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES:
                    break
            text = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode("utf-8", errors="replace")
            code = response.status_code
            retry_after = _retry_after(response.headers.get("retry-after")) if code in (429, 503) else None
    except httpx.TimeoutException:
        return Outcome(error=f"timeout after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500])
    error = None
    if 300 <= code < 400:
        error = f"redirect to {response.headers.get('location', '?')[:300]} not followed"
    elif not 200 <= code < 300:
        error = f"HTTP {code}"
    return Outcome(status_code=code, error=error, response=text, retry_after=retry_after)


# -- the job ----------------------------------------------------------------------------------- #


def claim(rt: Runtime, delivery_id: str) -> Attempt | None:
    now = utcnow()
    settings = rt.settings
    with session_scope(rt.engine) as session:
        d = repo.lock_delivery(session, delivery_id)
        if d is None or d.state != "pending":
            return None
        if d.next_attempt_at is not None and as_utc(d.next_attempt_at) > now:
            return None  # a duplicate message; the scan sends it when it is due
        if d.locked_until is not None and as_utc(d.locked_until) > now:
            return None  # an attempt is in flight
        endpoint = repo.lock_endpoint(session, d.endpoint_id)
        d.dispatched_at = None
        session.add(d)
        if endpoint is None or not endpoint.enabled:
            d.state = "failed"
            d.next_attempt_at = None
            d.last_error = "The endpoint was deleted." if endpoint is None else "The endpoint is disabled."
            WEBHOOK_DELIVERIES.labels("failed").inc()
            return None
        if repo.in_flight(session, endpoint.id, now) >= MAX_IN_FLIGHT_PER_ENDPOINT:
            d.next_attempt_at = now + timedelta(seconds=BUSY_DELAY_SECONDS * random.uniform(1.0, 1.5))
            return None
        d.locked_until = now + timedelta(seconds=settings.webhook_timeout_seconds) + CLAIM_MARGIN
        d.attempts += 1
        d.last_attempt_at = now
        secrets = [endpoint.secret]
        if (endpoint.previous_secret and endpoint.previous_secret_expires_at is not None
                and as_utc(endpoint.previous_secret_expires_at) > now):
            secrets.append(endpoint.previous_secret)
        return Attempt(delivery_id=d.id, endpoint_id=endpoint.id, url=endpoint.url, secrets=tuple(secrets),
                       event_id=d.event_id, event_type=d.event_type, body=d.body, request_id=d.request_id,
                       number=d.attempts)


def next_delay(settings: Settings, attempt: int, outcome: Outcome) -> float | None:
    """Seconds until the next attempt after attempt number `attempt` failed; None when the
    schedule is spent."""
    schedule = settings.retry_schedule
    if attempt > len(schedule):
        return None
    if outcome.retry_after is not None:
        return outcome.retry_after
    return schedule[attempt - 1] * random.uniform(0.9, 1.1)


def record(rt: Runtime, attempt: Attempt, outcome: Outcome) -> str:
    """Write the outcome; returns the delivery's metric outcome."""
    now = utcnow()
    with session_scope(rt.engine) as session:
        d = repo.lock_delivery(session, attempt.delivery_id)
        if d is None:
            return "deleted"
        endpoint = repo.lock_endpoint(session, attempt.endpoint_id)
        d.locked_until = None
        d.last_status_code = outcome.status_code
        d.last_error = outcome.error[:500] if outcome.error else None
        d.last_response = outcome.response
        if outcome.delivered:
            d.state, d.delivered_at, d.next_attempt_at = "delivered", now, None
            result = "delivered"
            if endpoint is not None:
                endpoint.failing_since = None
        else:
            delay = None if outcome.status_code == 410 else next_delay(rt.settings, attempt.number, outcome)
            if delay is None:
                d.state, d.next_attempt_at = "failed", None
                result = "gone" if outcome.status_code == 410 else "failed"
            else:
                d.next_attempt_at = now + timedelta(seconds=delay)
                result = "refused" if outcome.refused else "retry"
            if endpoint is not None and endpoint.enabled:
                endpoint.failing_since = endpoint.failing_since or now
                failing_for = now - as_utc(endpoint.failing_since)
                if outcome.status_code == 410:
                    _disable(endpoint, "The endpoint answered 410 Gone.")
                elif failing_for >= timedelta(seconds=rt.settings.webhook_disable_after_seconds):
                    _disable(endpoint, "Every delivery failed for a day.")
        session.add(d)
        if endpoint is not None:
            session.add(endpoint)
    return result


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = utcnow()
    log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)


def deliver(rt: Runtime, delivery_id: str) -> None:
    attempt = claim(rt, delivery_id)
    if attempt is None:
        return
    # The request that caused the event: its id follows it into these logs.
    token = request_id_var.set(attempt.request_id)
    try:
        started = time.perf_counter()
        outcome = send(attempt.url, attempt.event_id, attempt.body, attempt.secrets,
                       timeout=rt.settings.webhook_timeout_seconds, allow_http=rt.settings.webhook_allow_http,
                       allow_private=rt.settings.webhook_allow_private_networks)
        WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        result = record(rt, attempt, outcome)
        WEBHOOK_DELIVERIES.labels(result).inc()
        level = logging.INFO if outcome.delivered else logging.WARNING
        log.log(level, "webhook %s (%s, event %s) to endpoint %s, attempt %d: %s", delivery_id, attempt.event_type,
                attempt.event_id, attempt.endpoint_id, attempt.number,
                f"{outcome.status_code}" if outcome.delivered else f"{outcome.error} -> {result}")
    finally:
        request_id_var.reset(token)
