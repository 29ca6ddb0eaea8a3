"""Google's Gemini API, image output through ``generateContent``.

Shapes (Gemini API reference, "Image generation" and ``models.generateContent``; the
google-genai package's ``types.py``: ``GenerateContentResponse``, ``Candidate.finish_reason``,
``PromptFeedback.block_reason``, ``ImageConfig.aspect_ratio``):
- ``POST {base_url}/models/{vendor_model}:generateContent`` with header ``x-goog-api-key`` and
  ``{"contents": [{"parts": [{"text"}, {"inline_data": {"mime_type", "data"}}, ...]}],
  "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio"}, "seed"}}``;
- the image is the first ``inlineData`` part of the first candidate; a refused prompt has
  ``promptFeedback.blockReason`` and no candidates, a refused output a ``finishReason`` such as
  ``SAFETY``, ``IMAGE_SAFETY`` or ``PROHIBITED_CONTENT``;
- aspect ratios: 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9;
- errors ``{"error": {"code", "message", "status"}}`` (``RESOURCE_EXHAUSTED`` is a 429).
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

__all__ = ["GeminiProvider", "gemini_aspect"]

_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
#: Finish reasons that mean the model refused to draw (FinishReason in the API reference).
_REFUSED = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST",
                      "SPII", "RECITATION", "IMAGE_RECITATION"})


def gemini_aspect(width: int, height: int) -> str:
    target = math.log(width / height)

    def distance(aspect: str) -> float:
        w, h = aspect.split(":")
        return abs(math.log(int(w) / int(h)) - target)

    return min(_ASPECTS, key=distance)


def _special(response: httpx.Response, name: str) -> ModelError | None:
    """Gemini's answers that the generic mapping would misread: a wrong key is a 400
    ``INVALID_ARGUMENT`` whose details carry reason ``API_KEY_INVALID`` (ai.google.dev
    troubleshooting), and depleted prepaid credits a 429 ``RESOURCE_EXHAUSTED`` "Your prepayment
    credits are depleted", which no retry fixes."""
    text = response.text
    if response.status_code == 400 and "API_KEY_INVALID" in text:
        return ModelError("provider_auth_failed", f"{name} refused the API key; the operator must check it.")
    if response.status_code == 429 and "credits are depleted" in text:
        return ModelError("provider_out_of_credits", f"The Gemini account behind {name} is out of credits.")
    return None


class GeminiProvider:
    def __init__(self, http: VendorHttp, options: VendorOptions) -> None:
        self.http, self.options = http, options

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        key = api_key(spec)
        parts: list[dict[str, Any]] = [{"text": inp.prompt}]
        parts += [{"inline_data": {"mime_type": mime_of(ref), "data": base64.b64encode(ref).decode("ascii")}}
                  for ref in inp.references]
        config: dict[str, Any] = {**spec.input, "responseModalities": ["IMAGE"],
                                  "imageConfig": {"aspectRatio": gemini_aspect(inp.width, inp.height)},
                                  "seed": inp.seed}
        answer: dict[str, Any] = self.http.request(
            "POST", f"{spec.api_root}/models/{spec.vendor_model}:generateContent", spec=spec,
            should_cancel=should_cancel, secret=key, headers={"x-goog-api-key": key},
            on_response=lambda response: _special(response, spec.name),
            json={"contents": [{"role": "user", "parts": parts}], "generationConfig": config}).json()
        feedback = answer.get("promptFeedback") or {}
        if feedback.get("blockReason"):
            raise failure("content_rejected", spec,
                          f"{spec.name} refused this prompt ({cut(feedback['blockReason'], key)}).")
        candidates = answer.get("candidates") or []
        first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        for part in (first.get("content") or {}).get("parts") or []:
            inline = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
            if isinstance(inline, dict) and isinstance(inline.get("data"), str):
                try:
                    image = base64.b64decode(inline["data"], validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise failure("provider_error", spec, f"{spec.name} returned an unreadable image.") from exc
                return as_png(image, inp.width, inp.height, spec.name)
        reason = first.get("finishReason")
        if reason in _REFUSED:
            raise failure("content_rejected", spec, f"{spec.name} refused to draw this ({reason}).")
        said = " ".join(p.get("text", "") for p in (first.get("content") or {}).get("parts") or []
                        if isinstance(p, dict))
        raise failure("provider_error", spec, f"{spec.name} answered without an image"
                      + (f": {cut(said, key)}" if said.strip() else f" ({reason or 'no candidates'})."))
