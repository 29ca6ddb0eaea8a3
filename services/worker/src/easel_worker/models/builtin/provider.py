"""The provider the generation job calls: checks the request, decodes references, renders PNG."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence

from PIL import Image, ImageOps

from easel_shared.imaging import decode_budget, image_bytes
from easel_worker.models.base import CancelCheck, GenerationInput, ModelError, cancellable_sleep
from easel_worker.models.builtin.styles import render

BLOCKED_MESSAGE = "The model refused this prompt: it contains blocked content."


_MAX_REFERENCE_PIXELS = 64_000_000
_REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")


def _decode_reference(data: bytes, index: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data), formats=list(_REFERENCE_FORMATS)) as opened:
            if opened.width * opened.height > _MAX_REFERENCE_PIXELS:
                raise ModelError(
                    "model_error",
                    f"Reference image {index} is too large ({opened.width}x{opened.height}).",
                )
            opened.draft("RGB", (1024, 1024))
            # The decoded frame and its upright copy, reserved from the process's decode budget
            # before anything is decoded; what leaves the block is at most 2048x2048.
            with decode_budget().reserve(2 * image_bytes(opened.width, opened.height)):
                img = ImageOps.exif_transpose(opened)
                img.thumbnail((2048, 2048))
                if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                    rgba = img.convert("RGBA")
                    base = Image.new("RGB", rgba.size, (255, 255, 255))
                    base.paste(rgba, mask=rgba.getchannel("A"))
                    return base
                return img.convert("RGB")
    except ModelError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ModelError(
            "model_error",
            f"Reference image {index} could not be read as PNG, JPEG or WebP.",
        ) from exc


def _blocked_pattern(words: Sequence[str]) -> re.Pattern[str] | None:
    cleaned = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(w) for w in cleaned)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


class BuiltinProvider:
    """Offline Pillow models: deterministic, prompt- and reference-aware PNG output."""

    def __init__(self, latency_ms: int = 0, blocked_words: Sequence[str] = ()) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        self.latency_ms = latency_ms
        self.blocked_words = tuple(blocked_words)
        self._blocked = _blocked_pattern(self.blocked_words)

    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        spec = inp.model
        if len(inp.references) > spec.max_reference_images:
            raise ModelError(
                "model_error",
                f"{spec.name} accepts at most {spec.max_reference_images} reference "
                f"image(s); {len(inp.references)} were sent.",
            )
        if self._blocked is not None and self._blocked.search(inp.prompt):
            raise ModelError("content_rejected", BLOCKED_MESSAGE, transient=False)
        cancellable_sleep(self.latency_ms / 1000, should_cancel)

        references = [_decode_reference(data, i) for i, data in enumerate(inp.references, 1)]
        img = render(
            inp.prompt,
            inp.width,
            inp.height,
            inp.seed,
            references,
            style=spec.style,
            label=f"{spec.name} \u00b7 seed {inp.seed}",
            reference_digests=[hashlib.sha256(data).digest() for data in inp.references],
        )
        out = io.BytesIO()
        img.save(out, format="PNG", compress_level=6)
        return out.getvalue()
