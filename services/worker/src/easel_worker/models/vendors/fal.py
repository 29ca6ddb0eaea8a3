"""fal's queue API.

Shapes (fal docs, "Queue" / model endpoints HTTP API, and the fal-client Python package's
``fal_client/client.py``, ``SyncRequestHandle``):
- submit: ``POST {base_url}/{vendor_model}`` with the model's input JSON and
  ``Authorization: Key <FAL_KEY>`` → ``{"request_id", "response_url", "status_url", "cancel_url",
  "queue_position"}``;
- status: ``GET status_url`` → ``{"status": "IN_QUEUE", "queue_position": n}``,
  ``{"status": "IN_PROGRESS", "logs": [...]}`` or ``{"status": "COMPLETED", ...}``;
- result: ``GET response_url`` → the model's output, for image models ``{"images": [{"url",
  "width", "height", "content_type"}], "seed", "has_nsfw_concepts": [bool]}``; a failed request
  answers an error status with ``{"detail": ...}``;
- cancel: ``PUT cancel_url`` → 202 ``{"status": "CANCELLATION_REQUESTED"}`` (400
  ``ALREADY_COMPLETED`` when too late).
Input fields of fal's FLUX-style image models: ``prompt``, ``image_size`` (``{"width",
"height"}``), ``seed``, ``num_images``, and for editing models ``image_urls`` (URLs or data URIs).
"""

from __future__ import annotations

from typing import Any

import httpx

from easel_worker.models.base import CancelCheck, GenerationInput, ModelError
from easel_worker.models.vendors import VendorOptions
from easel_worker.models.vendors.common import VendorHttp, api_key, as_png, cut, data_uri, failure, poll_until

__all__ = ["FalProvider"]

REFERENCES_FIELD = "image_urls"


class FalProvider:
    def __init__(self, http: VendorHttp, options: VendorOptions) -> None:
        self.http, self.options = http, options

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        key = api_key(spec)
        headers = {"Authorization": f"Key {key}"}
        job = inp.job.resumed if inp.job.resumed and inp.job.resumed.get("provider") == "fal" else None

        def on_response(response: httpx.Response) -> ModelError | None:
            return _special(response, spec.name, key)

        if job is None:
            body: dict[str, Any] = {**spec.input, "prompt": inp.prompt,
                                    "image_size": {"width": inp.width, "height": inp.height},
                                    "seed": inp.seed, "num_images": 1}
            if inp.references:
                body[REFERENCES_FIELD] = [data_uri(ref) for ref in inp.references]
            answer = self.http.request("POST", f"{spec.api_root}/{spec.vendor_model}", spec=spec,
                                       should_cancel=should_cancel, retry_unsent_only=True, secret=key,
                                       on_response=on_response, json=body, headers=headers).json()
            urls = {name: answer.get(f"{name}_url") for name in ("status", "response", "cancel")}
            if not answer.get("request_id") or not all(isinstance(u, str) for u in urls.values()):
                raise failure("provider_error", spec, f"{spec.name} accepted the request but sent no job to follow.")
            job = {"provider": "fal", "id": answer["request_id"], "urls": urls}
            inp.job.save(job)
        urls = job["urls"]

        def cancel() -> None:
            self.http.client.put(urls["cancel"], headers=headers, timeout=spec.timeout_seconds)

        def check() -> dict[str, Any] | None:
            status: dict[str, Any] = self.http.request("GET", urls["status"], spec=spec, should_cancel=should_cancel,
                                                       secret=key, headers=headers, on_response=on_response).json()
            state = status.get("status")
            if state == "IN_QUEUE":
                position = status.get("queue_position")
                inp.job.progress(position if isinstance(position, int) else None, None)
            elif state == "IN_PROGRESS":
                inp.job.progress(None, None)
            elif state == "COMPLETED":
                return status
            return None

        done = poll_until(check, spec=spec, should_cancel=should_cancel, every=self.options.poll_seconds,
                          deadline_seconds=self.options.deadline_seconds, on_stop=cancel)
        if done.get("error_type") or done.get("error"):
            # A request that ended in an error says so in its final status (fal's "Model errors").
            kind = str(done.get("error_type") or "")
            message = cut(done.get("error") or kind, key)
            if kind == "content_policy_violation":
                raise failure("content_rejected", spec, f"{spec.name} refused this prompt or its references: {message}")
            raise failure("provider_error", spec, f"{spec.name} failed: {message}")
        result = self.http.request("GET", urls["response"], spec=spec, should_cancel=should_cancel, secret=key,
                                   headers=headers, on_response=on_response).json()
        nsfw = result.get("has_nsfw_concepts")
        if isinstance(nsfw, list) and any(nsfw):
            raise failure("content_rejected", spec, f"{spec.name} flagged the image as unsafe and withheld it.")
        images = result.get("images")
        url = images[0].get("url") if isinstance(images, list) and images and isinstance(images[0], dict) else None
        if not isinstance(url, str):
            raise failure("provider_error", spec, f"{spec.name} finished without an image.")
        data = self.http.download(url, spec=spec, should_cancel=should_cancel)
        return as_png(data, inp.width, inp.height, spec.name)


def _special(response: httpx.Response, name: str, key: str) -> ModelError | None:
    """fal's answers that the generic mapping would misread: a request its safety checker refused
    is a 422 whose ``detail`` names a ``content_policy_violation`` (docs.fal.ai "Model errors"),
    and an account with an exhausted balance is a 403 "User is locked. Reason: Exhausted balance"
    (fal-ai/fal issues #1112, #1147), not a bad key."""
    status, text = response.status_code, response.text.lower()
    if 400 <= status < 500 and "content_policy_violation" in text:
        return ModelError("content_rejected", f"{name} refused this prompt or its references: "
                          f"{cut(_detail(response), key)}")
    if status == 403 and ("exhausted balance" in text or ("locked" in text and "balance" in text)):
        return ModelError("provider_out_of_credits", f"The fal account behind {name} is out of credits.")
    return None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", detail[0]))
    return str(detail)
