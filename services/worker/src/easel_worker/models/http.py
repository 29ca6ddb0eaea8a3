"""Remote image vendors reached over HTTP.

Request: ``POST spec.endpoint`` with JSON
``{"prompt", "width", "height", "seed", "references": [base64, ...], "model"}``.
Response: image bytes (``Content-Type: image/*``) or JSON ``{"image_base64": "..."}``.
The result is normalised to a PNG of exactly the requested size.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Final

import httpx

from easel_worker.models.base import (
    CancelCheck,
    GenerationInput,
    ModelError,
    canceled_error,
    cancellable_sleep,
)
from easel_worker.models.vendors.common import as_png

__all__ = ["HttpProvider"]

_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
_MAX_DETAIL_CHARS: Final = 300
_DEFAULT_REJECTION: Final = "The model refused this prompt: it contains blocked content."


class HttpProvider:
    """Calls a vendor endpoint, retrying transient failures with exponential backoff.

    ``max_retries`` retries follow the first attempt (so 4 attempts by default), waiting
    ``backoff_seconds * 2**n`` (capped at ``max_backoff_seconds``) in between while
    polling ``should_cancel``. Retried: timeouts, connection errors, HTTP 5xx, 408 and
    429. Any other 4xx fails at once (``content_rejected`` if the JSON body says
    ``{"code": "content_rejected"}``, else ``model_error``).
    """

    def __init__(
        self,
        *,
        client: httpx.Client | None = None,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self._client = client
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.headers = dict(headers or {})

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        if self._client is not None:
            return self._generate(self._client, inp, should_cancel)
        with httpx.Client(follow_redirects=False) as client:
            return self._generate(client, inp, should_cancel)

    # ------------------------------------------------------------------ internals

    def _generate(self, client: httpx.Client, inp: GenerationInput, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        if not spec.endpoint:
            raise ModelError("model_error", f"{spec.name} has no endpoint configured.")
        payload = {
            "prompt": inp.prompt,
            "width": inp.width,
            "height": inp.height,
            "seed": inp.seed,
            "references": [base64.b64encode(ref).decode("ascii") for ref in inp.references],
            "model": spec.id,
        }
        last_error: ModelError | None = None
        wait = 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                cancellable_sleep(wait, should_cancel)
            elif should_cancel():
                raise canceled_error()
            wait = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
            try:
                response = client.post(
                    spec.endpoint,
                    json=payload,
                    headers=self.headers,
                    timeout=spec.timeout_seconds,
                )
            except httpx.TimeoutException:
                last_error = ModelError(
                    "model_timeout",
                    f"{spec.name} did not respond within {spec.timeout_seconds:g} seconds.",
                    transient=True,
                )
                continue
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise ModelError("model_error", f"{spec.name} has an invalid endpoint URL.") from exc
            except httpx.TransportError:
                last_error = ModelError(
                    "model_unavailable",
                    f"{spec.name} could not be reached. Try again later.",
                    transient=True,
                )
                continue
            except httpx.HTTPError as exc:
                raise ModelError(
                    "model_error",
                    f"{spec.name} sent a response that could not be read.",
                ) from exc

            status = response.status_code
            if 200 <= status < 300:
                return _image_from(response, inp)
            if status >= 500 or status in (408, 429):
                last_error = _retryable_status_error(spec.name, status)
                wait = max(wait, _retry_after(response, self.max_backoff_seconds))
                continue
            raise _permanent_status_error(spec.name, response)
        assert last_error is not None
        raise last_error


def _retryable_status_error(name: str, status: int) -> ModelError:
    if status == 408:
        return ModelError(
            "model_timeout",
            f"{name} timed out (HTTP 408). Try again later.",
            transient=True,
        )
    if status == 429:
        return ModelError(
            "model_unavailable",
            f"{name} is busy (HTTP 429, rate limited). Try again later.",
            transient=True,
        )
    return ModelError(
        "model_unavailable",
        f"{name} is unavailable right now (HTTP {status}). Try again later.",
        transient=True,
    )


def _retry_after(response: httpx.Response, cap: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        return 0.0


def _json_body(response: httpx.Response) -> Mapping[str, object] | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _detail(body: Mapping[str, object] | None) -> str | None:
    if body is None:
        return None
    for key in ("message", "error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return text[:_MAX_DETAIL_CHARS]
    return None


def _permanent_status_error(name: str, response: httpx.Response) -> ModelError:
    status = response.status_code
    body = _json_body(response)
    detail = _detail(body)
    if 400 <= status < 500 and body is not None and body.get("code") == "content_rejected":
        return ModelError("content_rejected", detail or _DEFAULT_REJECTION, transient=False)
    message = f"{name} rejected the request (HTTP {status})"
    return ModelError("model_error", f"{message}: {detail}" if detail else f"{message}.")


def _image_from(response: httpx.Response, inp: GenerationInput) -> bytes:
    name = inp.model.name
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if len(response.content) > _MAX_RESPONSE_BYTES:
        raise ModelError("model_error", f"{name} returned an image that is too large.")
    if content_type.startswith("image/"):
        data = response.content
    else:
        body = _json_body(response)
        encoded = body.get("image_base64") if body is not None else None
        if not isinstance(encoded, str):
            raise ModelError("model_error", f"{name} returned no image.")
        if encoded.startswith("data:") and "," in encoded:  # tolerate data: URLs
            encoded = encoded.split(",", 1)[1]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ModelError("model_error", f"{name} returned an unreadable image.") from exc
    return as_png(data, inp.width, inp.height, name, "model_error")
