"""Backdrops (gradients, vignettes, glows) and cards (references or prints) that styles compose."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from easel_worker.models.builtin.common import RGB, Box, with_alpha


def gradient(size: tuple[int, int], start: RGB, end: RGB, angle: float) -> Image.Image:
    """Linear gradient from ``start`` to ``end``, rotated by ``angle`` degrees."""
    mask = Image.linear_gradient("L").rotate(angle, resample=Image.Resampling.BILINEAR)
    mask = mask.crop((48, 48, 208, 208)).resize(size, Image.Resampling.BILINEAR)
    img = Image.new("RGB", size, start)
    img.paste(end, (0, 0, *size), mask)
    return img


def vignette(img: Image.Image, strength: float) -> Image.Image:
    mask = Image.radial_gradient("L").resize(img.size, Image.Resampling.BILINEAR)
    mask = mask.point([min(255, int(max(0, v - 110) * 1.6 * strength)) for v in range(256)])
    img.paste((0, 0, 0), (0, 0, *img.size), mask)
    return img


def glows(img: Image.Image, color: RGB, rng: random.Random, count: int, box: Box) -> Image.Image:
    """Soft light spots, blurred at low resolution and scaled up (fast at any size)."""
    w, h = img.size
    small_size = (max(1, w // 8), max(1, h // 8))
    mask = Image.new("L", small_size, 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = (v / 8 for v in box)
    for _ in range(count):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1 * 0.7)
        r = rng.uniform(0.12, 0.3) * min(small_size)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rng.randint(90, 160))
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, min(small_size) / 14)))
    mask = mask.resize((w, h), Image.Resampling.BILINEAR)
    img.paste(color, (0, 0, w, h), mask)
    return img


def make_card(img: Image.Image, size: tuple[int, int], border: int, bottom: int, color: RGB) -> Image.Image:
    """``img`` cover-cropped to ``size`` on a card with a border (instant-photo look)."""
    w, h = size
    photo = ImageOps.fit(img, (max(1, w), max(1, h)), Image.Resampling.LANCZOS)
    card = Image.new(
        "RGBA",
        (photo.width + 2 * border, photo.height + border + bottom),
        with_alpha(color, 255),
    )
    card.paste(photo, (border, border))
    return card


def paste_card(
    canvas: Image.Image,
    card: Image.Image,
    center: tuple[float, float],
    angle: float,
    shadow: int,
) -> None:
    rotated = card.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    x = round(center[0] - rotated.width / 2)
    y = round(center[1] - rotated.height / 2)
    alpha = rotated.getchannel("A")
    if shadow:
        shade = alpha.point([v * 2 // 5 for v in range(256)])
        canvas.paste((0, 0, 0), (x + shadow, y + shadow), shade)
    canvas.paste(rotated, (x, y), alpha)


def grid_boxes(n: int, box: Box, gap: int) -> list[Box]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    best: tuple[float, int, int] | None = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        cell = min((w - gap * (cols + 1)) / cols, (h - gap * (rows + 1)) / rows)
        if best is None or cell > best[0]:
            best = (cell, cols, rows)
    assert best is not None
    _, cols, rows = best
    cw = max(1, (w - gap * (cols + 1)) // cols)
    ch = max(1, (h - gap * (rows + 1)) // rows)
    boxes: list[Box] = []
    for k in range(n):
        row, col = divmod(k, cols)
        in_row = min(cols, n - row * cols)
        pad = (w - in_row * cw - (in_row + 1) * gap) // 2  # centre a short last row
        bx = x0 + pad + gap + col * (cw + gap)
        by = y0 + gap + row * (ch + gap) + (h - rows * ch - (rows + 1) * gap) // 2
        boxes.append((bx, by, bx + cw, by + ch))
    return boxes
