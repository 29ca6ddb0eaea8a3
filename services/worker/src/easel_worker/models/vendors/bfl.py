"""Black Forest Labs' FLUX API.

Shapes (BFL API reference, docs.bfl.ai "Using the API" / "Polling", and the per-model endpoints
such as ``POST /v1/flux-pro-1.1`` and ``POST /v1/flux-kontext-pro``):
- submit: ``POST {base_url}/{vendor_model}`` with header ``x-key`` and JSON ``{"prompt", "width",
  "height", "seed", "input_image", "input_image_2", ...}`` (references as base64 or URLs) →
  ``{"id", "polling_url"}``;
- poll: ``GET polling_url`` (with ``x-key``) → ``{"id", "status", "result", "progress"}`` where
  status is ``Pending``, ``Ready`` (``result.sample`` is a signed URL of the image, valid ten
  minutes), ``Error``, ``Request Moderated``, ``Content Moderated`` or ``Task not found``;
- width and height are multiples of 32 from 256 to 1440 (FLUX1.1 [pro]); a 402 means the
  account has no credits left. The API has no cancel endpoint.
"""

from __future__ import annotations

import base64
from typing import Any

from easel_worker.models.base import CancelCheck, GenerationInput
from easel_worker.models.vendors import VendorOptions
from easel_worker.models.vendors.common import VendorHttp, api_key, as_png, cut, failure, poll_until

__all__ = ["BflProvider", "bfl_size"]

_MODERATED = ("Request Moderated", "Content Moderated")
_FAILED = ("Error", "Task not found")
_STEP, _MIN_SIDE, _MAX_SIDE = 32, 256, 1440


def bfl_size(width: int, height: int) -> tuple[int, int]:
    """The contract's size scaled into what FLUX accepts, keeping its aspect as closely as
    multiples of 32 allow (the result is then fitted to the exact contract size)."""
    scale = min(1.0, _MAX_SIDE / max(width, height))

    def side(value: int) -> int:
        return max(_MIN_SIDE, min(_MAX_SIDE, round(value * scale / _STEP) * _STEP))

    return side(width), side(height)


class BflProvider:
    def __init__(self, http: VendorHttp, options: VendorOptions) -> None:
        self.http, self.options = http, options

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        key = api_key(spec)
        headers = {"x-key": key, "accept": "application/json"}
        job = inp.job.resumed if inp.job.resumed and inp.job.resumed.get("provider") == "bfl" else None
        if job is None:
            width, height = bfl_size(inp.width, inp.height)
            body: dict[str, Any] = {**spec.input, "prompt": inp.prompt, "width": width, "height": height,
                                    "seed": inp.seed}
            for index, ref in enumerate(inp.references, start=1):
                body["input_image" if index == 1 else f"input_image_{index}"] = base64.b64encode(ref).decode("ascii")
            answer = self.http.request("POST", f"{spec.api_root}/{spec.vendor_model}", spec=spec,
                                       should_cancel=should_cancel, retry_unsent_only=True, secret=key,
                                       json=body, headers=headers).json()
            if not answer.get("id") or not isinstance(answer.get("polling_url"), str):
                raise failure("provider_error", spec, f"{spec.name} accepted the request but sent no task to follow.")
            job = {"provider": "bfl", "id": answer["id"], "urls": {"polling": answer["polling_url"]}}
            inp.job.save(job)
        polling_url = job["urls"]["polling"]

        def check() -> dict[str, Any] | None:
            result: dict[str, Any] = self.http.request("GET", polling_url, spec=spec, should_cancel=should_cancel,
                                                       secret=key, headers=headers).json()
            status = result.get("status")
            if status == "Ready" or status in _MODERATED or status in _FAILED:
                return result
            progress = result.get("progress")
            inp.job.progress(None, float(progress) if isinstance(progress, int | float) else None)
            return None

        done = poll_until(check, spec=spec, should_cancel=should_cancel, every=self.options.poll_seconds,
                          deadline_seconds=self.options.deadline_seconds)
        status = done.get("status")
        if status in _MODERATED:
            raise failure("content_rejected", spec, f"{spec.name} refused this request ({status}).")
        if status != "Ready":
            details = cut(done.get("details") or done.get("result") or "", key)
            raise failure("provider_error", spec, f"{spec.name} failed ({status}){': ' + details if details else '.'}")
        result = done.get("result")
        url = result.get("sample") if isinstance(result, dict) else None
        if not isinstance(url, str):
            raise failure("provider_error", spec, f"{spec.name} finished without an image.")
        data = self.http.download(url, spec=spec, should_cancel=should_cancel)
        return as_png(data, inp.width, inp.height, spec.name)
