"""OpenAI's Images API.

Shapes (OpenAI API reference, "Images": ``POST /v1/images/generations`` and
``POST /v1/images/edits``, and openai-python's ``types/image_generate_params.py``,
``types/image_edit_params.py``, ``types/images_response.py``):
- text only: ``POST {base_url}/images/generations`` JSON ``{"model", "prompt", "n", "size",
  "output_format", "quality"?, "background"?, "moderation"?}``;
- with references: ``POST {base_url}/images/edits`` multipart/form-data, the same fields as form
  fields and one ``image[]`` file part per reference, in connection order;
- answer ``{"created", "data": [{"b64_json"}], "usage"}``; ``Authorization: Bearer <key>``;
- GPT image sizes: ``1024x1024``, ``1536x1024`` (landscape), ``1024x1536`` (portrait);
- errors ``{"error": {"message", "type", "param", "code"}}``: a safety refusal is a 400 with code
  ``moderation_blocked`` (``content_policy_violation`` on DALL·E); an exhausted account is a 429
  with code ``insufficient_quota``.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import httpx

from easel_worker.models.base import CancelCheck, GenerationInput, ModelError
from easel_worker.models.vendors import VendorOptions
from easel_worker.models.vendors.common import VendorHttp, api_key, as_png, cut, failure, mime_of

__all__ = ["OpenAIProvider", "openai_size"]

_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
_REFUSALS = ("moderation_blocked", "content_policy_violation")


def openai_size(width: int, height: int) -> str:
    """The GPT image size closest in aspect to the contract's (the output is then fitted)."""
    target = math.log(width / height)
    w, h = min(_SIZES, key=lambda s: abs(math.log(s[0] / s[1]) - target))
    return f"{w}x{h}"


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


class OpenAIProvider:
    def __init__(self, http: VendorHttp, options: VendorOptions) -> None:
        self.http, self.options = http, options

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        key = api_key(spec)
        headers = {"Authorization": f"Bearer {key}"}
        fields: dict[str, Any] = {"output_format": "png", **spec.input, "model": spec.vendor_model,
                                  "prompt": inp.prompt, "n": 1, "size": openai_size(inp.width, inp.height)}

        def on_response(response: httpx.Response) -> ModelError | None:
            err = _error(response)
            code = err.get("code")
            message = cut(err.get("message") or "", key)
            if response.status_code == 400 and code in _REFUSALS:
                return ModelError("content_rejected", f"{spec.name} refused this request: {message}"
                                  if message else f"{spec.name} refused this request.")
            if response.status_code == 429 and code == "insufficient_quota":
                return ModelError("provider_out_of_credits",
                                  f"The OpenAI account behind {spec.name} has no quota left.")
            return None

        if inp.references:
            files = [("image[]", (f"reference-{i}.{mime_of(ref).split('/')[-1]}", ref, mime_of(ref)))
                     for i, ref in enumerate(inp.references, start=1)]
            data = {name: str(value) for name, value in fields.items()}
            response = self.http.request("POST", f"{spec.api_root}/images/edits", spec=spec,
                                         should_cancel=should_cancel, on_response=on_response, secret=key,
                                         data=data, files=files, headers=headers)
        else:
            response = self.http.request("POST", f"{spec.api_root}/images/generations", spec=spec,
                                         should_cancel=should_cancel, on_response=on_response, secret=key,
                                         json=fields, headers=headers)
        items = response.json().get("data")
        encoded = items[0].get("b64_json") if isinstance(items, list) and items and isinstance(items[0], dict) else None
        if not isinstance(encoded, str):
            raise failure("provider_error", spec, f"{spec.name} answered without an image.")
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise failure("provider_error", spec, f"{spec.name} returned an unreadable image.") from exc
        return as_png(image, inp.width, inp.height, spec.name)
