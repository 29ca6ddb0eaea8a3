"""Types and small helpers every part of the renderer uses."""

from __future__ import annotations

import colorsys
import hashlib
import re

from PIL import ImageFont

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Box = tuple[int, int, int, int]
Ink = RGBA | int

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "with",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "from",
        "into",
        "over",
        "under",
        "is",
        "are",
        "be",
        "this",
        "that",
        "its",
        "it",
        "as",
        "some",
        "very",
    ]
)


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


def from_hls(h: float, lightness: float, s: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, clamp(lightness), clamp(s))
    return round(r * 255), round(g * 255), round(b * 255)


def to_hls(color: RGB) -> tuple[float, float, float]:
    return colorsys.rgb_to_hls(color[0] / 255, color[1] / 255, color[2] / 255)


def shade(color: RGB, lightness: float, sat_scale: float = 1.0, hue_shift: float = 0.0) -> RGB:
    h, _, s = to_hls(color)
    return from_hls(h + hue_shift, lightness, s * sat_scale)


def with_alpha(color: RGB, a: int) -> RGBA:
    return color[0], color[1], color[2], a


def digest(*parts: bytes | str) -> bytes:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.digest()


def prompt_words(prompt: str) -> list[str]:
    return re.findall(r"\w+", prompt.lower())
