"""What every vendor adapter shares: one HTTP client per vendor and process, the retry policy
(declared once, with tenacity), the mapping of vendor failures to error codes a client can act
on, streamed result downloads, and fitting the vendor's picture to the contract's exact size.

Retries: timeouts, connection errors, 408, 429 and 5xx are retried (4 attempts in all) with
exponential backoff and jitter, or after the vendor's ``Retry-After`` / ``x-ratelimit-reset-*``
when it sends one; waits are cancellable. A request that may have created a paid vendor job
(``retry_unsent_only=True``: fal, Replicate and BFL submits) is retried only when the vendor
provably did not take it (a refused connection, 408, 429, 5xx); a submit whose answer was lost
is not sent again, since the vendor may already be running, and billing, it.
"""

from __future__ import annotations

import atexit
import email.utils
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import httpx
from PIL import Image, ImageOps
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from easel_shared.domain.catalog import ModelSpec
from easel_shared.imaging import ImageRejected, inspect_image
from easel_worker.metrics import PROVIDER_ERRORS
from easel_worker.models.base import CancelCheck, ModelError, ModelErrorCode, canceled_error, cancellable_sleep

__all__ = [
    "MAX_DOWNLOAD_BYTES",
    "VendorHttp",
    "api_key",
    "as_png",
    "cut",
    "data_uri",
    "failure",
    "mime_of",
    "poll_until",
    "vendor_http",
]

log = logging.getLogger(__name__)

ATTEMPTS: Final = 4
#: Longest wait between two attempts, whatever the vendor asks for.
MAX_WAIT_SECONDS: Final = 30.0
#: Results larger than this are refused while streaming (a 2K PNG is ~8 MB).
MAX_DOWNLOAD_BYTES: Final = 48 * 1024 * 1024
_MAX_MESSAGE_CHARS: Final = 300
_IMAGE_FORMATS: Final = ["PNG", "JPEG", "WEBP"]
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

T = TypeVar("T")
OnResponse = Callable[[httpx.Response], "ModelError | None"]


def api_key(spec: ModelSpec) -> str:
    """The model's key from its environment variable (read per call, so a rotated key is used)."""
    env = spec.key_env or ""
    value = os.environ.get(env, "").strip()
    if not value:
        raise ModelError("provider_auth_failed", f"{spec.name} has no API key configured ({env} is not set).",
                         transient=False)
    return value


def cut(text: object, secret: str = "") -> str:
    """A vendor's message, made safe to show: one line, at most 300 characters, no key in it."""
    value = " ".join(str(text).split())
    if secret:
        value = value.replace(secret, "***")
    return value[:_MAX_MESSAGE_CHARS]


def failure(code: ModelErrorCode, spec: ModelSpec, message: str) -> ModelError:
    PROVIDER_ERRORS.labels(spec.provider, code).inc()
    return ModelError(code, message, transient=code in ("provider_rate_limited", "provider_unavailable"))


class _Retry(Exception):
    """A transient failure: tried again until the attempts run out, then ``error`` is raised."""

    def __init__(self, error: ModelError, wait: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait = wait


_SECONDS_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def _duration(value: str) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) and OpenAI's ``x-ratelimit-reset-*`` (``1s``,
    ``6m0s``, ``20ms``) as seconds."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    match = _SECONDS_RE.match(value)
    if match and any(match.groups()):
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after(response: httpx.Response) -> float | None:
    """How long the vendor asks us to wait, from the headers it documents."""
    waits = [_duration(response.headers.get(name, ""))
             for name in ("retry-after", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    known = [w for w in waits if w is not None]
    return min(MAX_WAIT_SECONDS, max(known)) if known else None


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Retry) and exc.wait is not None:
        return exc.wait
    return float(wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.5)(state))


def _message_from(response: httpx.Response) -> str:
    """The human part of a vendor's error body, whichever of the documented shapes it uses."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])  # OpenAI, Gemini
        for key in ("detail", "message", "error", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value  # fal, Replicate, BFL
            if isinstance(value, list) and value:
                return str(value[0].get("msg", value[0]) if isinstance(value[0], dict) else value[0])
    return str(body)


class VendorHttp:
    """One ``httpx.Client`` per vendor per process (connection reuse), and the retry policy."""

    def __init__(self, provider: str, client: httpx.Client | None = None) -> None:
        self.provider = provider
        self.client = client or httpx.Client(follow_redirects=False,
                                             limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))

    def request(self, method: str, url: str, *, spec: ModelSpec, should_cancel: CancelCheck,
                retry_unsent_only: bool = False, on_response: OnResponse | None = None,
                secret: str = "", **kwargs: Any) -> httpx.Response:
        """Send one request with retries; a 2xx response, or :class:`ModelError`.

        ``on_response`` sees every non-2xx answer first and may return the vendor-specific error
        (a moderation refusal, say); otherwise 401/403, 402, 429, 5xx and the rest map to
        ``provider_auth_failed``, ``provider_out_of_credits``, ``provider_rate_limited``,
        ``provider_unavailable`` and ``provider_error``.
        """
        retrying = Retrying(stop=stop_after_attempt(ATTEMPTS), wait=_wait, retry=retry_if_exception_type(_Retry),
                            sleep=lambda seconds: cancellable_sleep(seconds, should_cancel), reraise=True)
        try:
            response: httpx.Response = retrying(self._once, method, url, spec, should_cancel, retry_unsent_only,
                                                on_response, secret, kwargs)
        except _Retry as exc:
            raise failure(exc.error.code, spec, exc.error.message) from None
        return response

    def _once(self, method: str, url: str, spec: ModelSpec, should_cancel: CancelCheck, retry_unsent_only: bool,
              on_response: OnResponse | None, secret: str, kwargs: dict[str, Any]) -> httpx.Response:
        if should_cancel():
            raise canceled_error()
        name = spec.name
        try:
            response = self.client.request(method, url, timeout=spec.timeout_seconds, **kwargs)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise failure("provider_error", spec, f"{name} has an invalid base_url.") from exc
        except httpx.ConnectError as exc:  # nothing reached the vendor: always safe to send again
            raise _Retry(ModelError("provider_unavailable", f"{name} could not be reached. Try again later.")) \
                from exc
        except httpx.TransportError as exc:
            error = failure("provider_unavailable", spec,
                            f"{name} did not answer within {spec.timeout_seconds:g} seconds."
                            if isinstance(exc, httpx.TimeoutException)
                            else f"{name} closed the connection. Try again later.")
            if retry_unsent_only:
                raise error from exc
            raise _Retry(error) from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        special = on_response(response) if on_response else None
        if special is not None:
            PROVIDER_ERRORS.labels(spec.provider, special.code).inc()
            raise special
        detail = cut(_message_from(response), secret)
        if status in (401, 403):
            raise failure("provider_auth_failed", spec,
                          f"{name} refused the API key (HTTP {status}); the operator must check it.")
        if status == 402:
            raise failure("provider_out_of_credits", spec,
                          f"The {spec.provider} account behind {name} is out of credits (HTTP 402).")
        if status == 429:
            raise _Retry(ModelError("provider_rate_limited", f"{name} is rate limiting requests (HTTP 429). "
                                    "Try again later."), retry_after(response))
        if status >= 500 or status == 408:
            raise _Retry(ModelError("provider_unavailable", f"{name} is unavailable right now (HTTP {status}). "
                                    "Try again later."), retry_after(response))
        raise failure("provider_error", spec,
                      f"{name} rejected the request (HTTP {status}): {detail}" if detail
                      else f"{name} rejected the request (HTTP {status}).")

    def download(self, url: str, *, spec: ModelSpec, should_cancel: CancelCheck,
                 headers: Mapping[str, str] | None = None, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """A result file, streamed with a size cap and a timeout, then checked like an upload
        (format by content, pixel limit); retried like any idempotent request."""
        retrying = Retrying(stop=stop_after_attempt(ATTEMPTS), wait=_wait, retry=retry_if_exception_type(_Retry),
                            sleep=lambda seconds: cancellable_sleep(seconds, should_cancel), reraise=True)
        try:
            data: bytes = retrying(self._download_once, url, spec, should_cancel, dict(headers or {}), max_bytes)
        except _Retry as exc:
            raise failure(exc.error.code, spec, exc.error.message) from None
        try:
            inspect_image(data)
        except ImageRejected as exc:
            raise failure("provider_error", spec, f"{spec.name} returned an unusable image: {exc.message}") from exc
        return data

    def _download_once(self, url: str, spec: ModelSpec, should_cancel: CancelCheck, headers: dict[str, str],
                       max_bytes: int) -> bytes:
        if should_cancel():
            raise canceled_error()
        if not url.startswith(("https://", "http://")):
            raise failure("provider_error", spec, f"{spec.name} returned a result URL that cannot be fetched.")
        try:
            with self.client.stream("GET", url, headers=headers, timeout=spec.timeout_seconds) as response:
                if response.status_code >= 500 or response.status_code in (408, 429):
                    raise _Retry(ModelError("provider_unavailable",
                                            f"{spec.name}'s result could not be downloaded "
                                            f"(HTTP {response.status_code})."), retry_after(response))
                if response.status_code != 200:
                    raise failure("provider_error", spec, f"{spec.name}'s result could not be downloaded "
                                                          f"(HTTP {response.status_code}).")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise failure("provider_error", spec, f"{spec.name} returned an image that is too large.")
                buf = bytearray()
                for chunk in response.iter_bytes():
                    buf.extend(chunk)
                    if len(buf) > max_bytes:
                        raise failure("provider_error", spec, f"{spec.name} returned an image that is too large.")
                return bytes(buf)
        except httpx.TransportError as exc:
            raise _Retry(ModelError("provider_unavailable",
                                    f"{spec.name}'s result could not be downloaded. Try again later.")) from exc


_clients: dict[str, VendorHttp] = {}
_clients_lock = threading.Lock()


def vendor_http(provider: str) -> VendorHttp:
    """This process's client for ``provider``, made on first use."""
    with _clients_lock:
        client = _clients.get(provider)
        if client is None:
            client = _clients[provider] = VendorHttp(provider)
        return client


@atexit.register
def _close_clients() -> None:
    """The vendors' kept-alive connections are closed when the process ends, not left to the
    interpreter's last collection (which warns about each unclosed socket)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for vendor in clients:
        vendor.client.close()


def mime_of(data: bytes) -> str:
    if data.startswith(_PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def data_uri(data: bytes) -> str:
    import base64

    return f"data:{mime_of(data)};base64,{base64.b64encode(data).decode('ascii')}"


def as_png(data: bytes, width: int, height: int, name: str, error_code: ModelErrorCode = "provider_error") -> bytes:
    """``data`` as a PNG of exactly ``width`` x ``height``: centre-cropped to that aspect, then
    resized, when the vendor's picture differs; a PNG of the right size passes unchanged."""
    try:
        with Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS) as img:
            img.load()
            if img.format == "PNG" and img.size == (width, height) and data.startswith(_PNG_SIGNATURE):
                return data
            mode = "RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB"
            converted = img.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ModelError(error_code, f"{name} returned an unreadable image.", transient=False) from exc
    if converted.size != (width, height):
        converted = ImageOps.fit(converted, (width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    converted.save(out, format="PNG")
    return out.getvalue()


def poll_until(check: Callable[[], T | None], *, spec: ModelSpec, should_cancel: CancelCheck, every: float,
               deadline_seconds: float, on_stop: Callable[[], None] | None = None) -> T:
    """Call ``check()`` every ``every`` seconds until it returns a value. Canceled or past the
    deadline, ``on_stop()`` (the vendor's cancel, where it has one) runs before the error."""
    end = time.monotonic() + deadline_seconds

    def stop() -> None:
        if on_stop is None:
            return
        try:
            on_stop()
        except Exception:
            log.warning("could not cancel the %s job", spec.provider, exc_info=True)

    while True:
        if should_cancel():
            stop()
            raise canceled_error()
        result = check()
        if result is not None:
            return result
        if time.monotonic() > end:
            stop()
            raise failure("provider_unavailable", spec,
                          f"{spec.name} did not finish within {deadline_seconds:g} seconds.")
        try:
            cancellable_sleep(every, should_cancel)
        except ModelError:
            stop()
            raise
