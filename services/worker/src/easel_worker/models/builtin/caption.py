"""The caption band: the prompt, wrapped, and the model label."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from easel_worker.models.builtin.common import Font, with_alpha
from easel_worker.models.builtin.palette import Palette


def _load_font(size: int) -> Font:
    try:
        return ImageFont.load_default(size)
    except (ImportError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _fit_text(text: str, font: Font) -> str:
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def _wrap(text: str, font: Font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; over-long words are split, overflow ends with "..."."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        while font.getlength(word) > max_width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > max_width:
                cut -= 1
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _ellipsize(lines[-1], font, max_width)
    return lines


def _ellipsize(line: str, font: Font, max_width: float) -> str:
    while line and font.getlength(line + "...") > max_width:
        line = line[:-1]
    return line.rstrip() + "..."


@dataclass(frozen=True)
class Caption:
    font: Font
    small: Font
    size: int
    pad: int
    lines: tuple[str, ...]
    label: str
    height: int


def caption_layout(width: int, height: int, prompt: str, label: str) -> Caption | None:
    """Fonts, wrapped lines and band height of the caption (None if the image is tiny)."""
    if height < 48 or width < 48:
        return None
    size = max(10, min(72, min(width, height) // 28))
    font = _load_font(size)
    small = _load_font(max(9, int(size * 0.62)))
    pad = max(4, size // 2)
    text = _fit_text(" ".join(prompt.split())[:600] or "(no prompt)", font)
    label = _fit_text(label, small)
    if small.getlength(label) > width - 2 * pad:
        label = ""
    label_h = int(max(9, size * 0.62) * 1.3) if label else 0
    fixed = int(pad * 1.1) + label_h
    max_lines = max(1, min(3, int((height // 3 - fixed) / (size * 1.3))))
    lines = tuple(_wrap(text, font, width - 2 * pad, max_lines))
    band = min(height // 2, fixed + math.ceil(len(lines) * size * 1.3))
    return Caption(font, small, size, pad, lines, label, band)


def draw_caption(img: Image.Image, cap: Caption, palette: Palette) -> None:
    w, h = img.size
    top = h - cap.height
    draw = ImageDraw.Draw(img, "RGBA")
    draw.rectangle((0, top, w, h), fill=with_alpha(palette.ink, 232))
    draw.line((0, top, w, top), fill=with_alpha(palette.light, 170), width=max(1, cap.size // 14))
    y = top + cap.pad * 0.55
    if cap.label:
        draw.text(
            (w - cap.pad, y),
            cap.label,
            font=cap.small,
            fill=with_alpha(palette.light, 190),
            anchor="ra",
        )
        y += int(max(9, cap.size * 0.62) * 1.3)
    dark_band = sum(palette.ink) < 384
    text_color = (248, 248, 244, 255) if dark_band else (16, 16, 20, 255)
    for line in cap.lines:
        draw.text((cap.pad, y), line, font=cap.font, fill=text_color)
        y += cap.size * 1.3
