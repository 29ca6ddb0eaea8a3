"""Replicate's predictions API.

Shapes (Replicate HTTP API reference, "Create a prediction using an official model" /
"Get a prediction" / "Cancel a prediction", and the replicate Python package's
``replicate/prediction.py``):
- create: ``POST {base_url}/models/{owner}/{name}/predictions`` with ``{"input": {...}}``
  (or ``POST {base_url}/predictions`` with ``{"version", "input"}`` for a pinned
  ``owner/name:version``), ``Authorization: Bearer <REPLICATE_API_TOKEN>`` and ``Prefer: wait=n``
  (the request is held up to n ≤ 60 seconds for the result);
- a prediction: ``{"id", "status": "starting" | "processing" | "succeeded" | "failed" |
  "canceled" | "aborted", "output", "error", "logs", "urls": {"get", "cancel", "stream"}}``;
  an image model's ``output`` is a file URL or a list of them;
- poll ``GET urls.get``; cancel ``POST urls.cancel``.
Input fields of Replicate's image models: ``prompt``, ``aspect_ratio``, ``seed``, and for models
that take references ``image_input`` (a list of URLs or data URIs; ``input_image`` for one).
"""

from __future__ import annotations

import re
from typing import Any

from easel_worker.models.base import CancelCheck, GenerationInput
from easel_worker.models.vendors import VendorOptions
from easel_worker.models.vendors.common import VendorHttp, api_key, as_png, cut, data_uri, failure, poll_until

__all__ = ["ReplicateProvider"]

_FINAL = ("succeeded", "failed", "canceled", "aborted")
#: How the models flag unsafe output in ``error`` (e.g. "NSFW content detected. Try running it again,
#: or try a different prompt.", the safety checker of Replicate's FLUX and SDXL models).
_UNSAFE = re.compile(r"nsfw|sensitive|safety|unsafe|content policy|flagged", re.IGNORECASE)


class ReplicateProvider:
    def __init__(self, http: VendorHttp, options: VendorOptions) -> None:
        self.http, self.options = http, options

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        key = api_key(spec)
        headers = {"Authorization": f"Bearer {key}"}
        job = inp.job.resumed if inp.job.resumed and inp.job.resumed.get("provider") == "replicate" else None
        if job is None:
            prediction = self._create(inp, headers, key, should_cancel)
            urls = prediction.get("urls") or {}
            if not prediction.get("id") or not isinstance(urls.get("get"), str):
                raise failure("provider_error", spec, f"{spec.name} accepted the request but sent no prediction "
                                                      "to follow.")
            job = {"provider": "replicate", "id": prediction["id"],
                   "urls": {"get": urls["get"], "cancel": urls.get("cancel") or ""}}
            inp.job.save(job)
        else:
            prediction = {}
        urls = job["urls"]

        def cancel() -> None:
            if urls.get("cancel"):
                self.http.client.post(urls["cancel"], headers=headers, timeout=spec.timeout_seconds)

        def check() -> dict[str, Any] | None:
            current: dict[str, Any] = self.http.request("GET", urls["get"], spec=spec, should_cancel=should_cancel,
                                                        secret=key, headers=headers).json()
            if current.get("status") in _FINAL:
                return current
            inp.job.progress(None, None)
            return None

        if prediction.get("status") in _FINAL:  # `Prefer: wait` gave the final answer already
            done = prediction
        else:
            done = poll_until(check, spec=spec, should_cancel=should_cancel, every=self.options.poll_seconds,
                              deadline_seconds=self.options.deadline_seconds, on_stop=cancel)
        status = done.get("status")
        if status != "succeeded":
            error = cut(done.get("error") or "", key)
            if status == "failed" and _UNSAFE.search(error):
                raise failure("content_rejected", spec, f"{spec.name} refused this prompt or its output: {error}")
            if status == "failed":
                raise failure("provider_error", spec, f"{spec.name} failed: {error}" if error
                              else f"{spec.name} failed.")
            raise failure("provider_error", spec, f"{spec.name}'s prediction was {status} by Replicate.")
        output = done.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise failure("provider_error", spec, f"{spec.name} finished without an image.")
        data = self.http.download(url, spec=spec, should_cancel=should_cancel)
        return as_png(data, inp.width, inp.height, spec.name)

    def _create(self, inp: GenerationInput, headers: dict[str, str], key: str,
                should_cancel: CancelCheck) -> dict[str, Any]:
        spec = inp.model
        fields: dict[str, Any] = {**spec.input, "prompt": inp.prompt, "seed": inp.seed}
        fields.setdefault("aspect_ratio", _aspect(inp.width, inp.height))
        if inp.references:
            refs = [data_uri(ref) for ref in inp.references]
            if spec.max_reference_images == 1:
                fields["input_image"] = refs[0]
            else:
                fields["image_input"] = refs
        wait = max(1, min(60, int(spec.timeout_seconds) - 2))
        model = spec.vendor_model
        if ":" in model:  # owner/name:version, a pinned version
            url, body = f"{spec.api_root}/predictions", {"version": model.split(":", 1)[1], "input": fields}
        else:
            url, body = f"{spec.api_root}/models/{model}/predictions", {"input": fields}
        answer: dict[str, Any] = self.http.request(
            "POST", url, spec=spec, should_cancel=should_cancel, retry_unsent_only=True, secret=key,
            json=body, headers={**headers, "Prefer": f"wait={wait}"}).json()
        return answer


def _aspect(width: int, height: int) -> str:
    from math import gcd

    d = gcd(width, height)
    return f"{width // d}:{height // d}"
