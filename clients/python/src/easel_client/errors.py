"""Exceptions: every failure the client reports is an `EaselError`.

An error answer (`{"error": {"code", "message", ...}}`, API.md) becomes the subclass of its
status family, carrying `status`, the stable `code`, the human `message` and every other field
of the envelope in `extra` (e.g. `details` of a validation error). Branch on `code` for the
precise reason: `except Conflict as e: if e.code == "already_generating": ...`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class EaselError(Exception):
    """Base of all client errors. `status` is None when no HTTP answer came (connection, timeout)."""

    def __init__(self, message: str, *, code: str, status: int | None = None,
                 extra: dict[str, Any] | None = None, request_id: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra: dict[str, Any] = dict(extra or {})
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class BadRequest(EaselError):
    """400: e.g. `invalid_multipart`, `duplicate_credentials`."""


class Unauthenticated(EaselError):
    """401 `unauthenticated`: a missing or wrong API key (or admin token)."""


class InsufficientCredits(EaselError):
    """402 `insufficient_credits`."""


class PermissionDenied(EaselError):
    """403."""


class NotFound(EaselError):
    """404 `not_found`: also what another account's resources answer."""


class Conflict(EaselError):
    """409: `already_generating`, `upstream_in_progress`, `downstream_in_progress`,
    `duplicate_connection`, `upload_not_available`, `price_changed`, `no_image`."""


class PayloadTooLarge(EaselError):
    """413: `file_too_large`, `request_too_large`."""


class UnsupportedMediaType(EaselError):
    """415 `unsupported_format`."""


class ValidationFailed(EaselError):
    """422: `validation_error` (details in `extra["details"]`), `prompt_required`,
    `unknown_model`, `unsupported_params`, `cycle_not_allowed`, `idempotency_key_reused`, ..."""


class RateLimited(EaselError):
    """429 `rate_limited`, raised once the client's retries (which wait `Retry-After`) are spent."""


class ServerError(EaselError):
    """5xx."""


class ServiceUnavailable(ServerError):
    """503: `storage_unavailable`, `events_unavailable` (nothing was changed), after the retries."""


class APIConnectionError(EaselError):
    """No answer: the connection failed or broke (after the retries that were safe to make)."""


class WaitTimeout(EaselError, TimeoutError):
    """`wait_for_generation` gave up before the generation was final."""


_BY_STATUS: dict[int, type[EaselError]] = {
    400: BadRequest,
    401: Unauthenticated,
    402: InsufficientCredits,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds (a number or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("date")
    try:
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        now = None
    if now is None:
        now = datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def error_from_response(response: httpx.Response) -> EaselError:
    """The exception for an error answer, from its envelope (or its status when it has none)."""
    status = response.status_code
    code, message, extra = f"http_{status}", response.reason_phrase or "Request failed.", {}
    try:
        body = response.json()
    except ValueError:
        body = None
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        code = str(envelope.get("code") or code)
        message = str(envelope.get("message") or message)
        extra = {k: v for k, v in envelope.items() if k not in ("code", "message")}
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else EaselError)
    return cls(message, code=code, status=status, extra=extra, request_id=response.headers.get("x-request-id"),
               retry_after=retry_after_seconds(response))
