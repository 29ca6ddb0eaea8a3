"""One shape per content word of the prompt, and how to paint it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from easel_worker.models.builtin.common import RGB, STOPWORDS, Box, Ink, digest, prompt_words
from easel_worker.models.builtin.palette import Palette

_KINDS = ("disc", "ring", "block", "polygon", "star", "wave", "stripes", "half")


@dataclass(frozen=True)
class Shape:
    kind: str
    cx: float
    cy: float
    r: float
    rotation: float
    sides: int
    aspect: float
    color: RGB


def layout_shapes(prompt: str, palette: Palette, rng: random.Random, box: Box, scale: float) -> list[Shape]:
    """One shape per content word: kind, colour and size come from the word, placement
    from the seed. The first word is the large "hero" shape on a rule-of-thirds point."""
    words = [w for w in prompt_words(prompt) if w not in STOPWORDS][:14]
    if not words:
        words = [f"blank{i}" for i in range(4)]
    x0, y0, x1, y1 = box
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    short = min(bw, bh)
    specs: list[tuple[str, float]] = [(w, 1.0) for w in words]
    i = 0
    while len(specs) < 6:  # short prompts still make a composed picture
        specs.append((words[i % len(words)] + f"#{i}", 0.6))
        i += 1
    hero_x = x0 + bw * rng.choice((1 / 3, 2 / 3)) + rng.uniform(-0.05, 0.05) * bw
    hero_y = y0 + bh * rng.choice((0.38, 0.62)) + rng.uniform(-0.05, 0.05) * bh
    shapes: list[Shape] = []
    for index, (word, weight) in enumerate(specs):
        d = digest("shape", word)
        if index == 0:
            r = short * (0.2 + d[2] / 255 * 0.08) * scale
            cx, cy = hero_x, hero_y
        else:
            r = short * (0.05 + d[2] / 255 * 0.12) * weight * scale * rng.uniform(0.8, 1.2)
            cx = rng.uniform(x0 + 0.08 * bw, x1 - 0.08 * bw)
            cy = rng.uniform(y0 + 0.1 * bh, y1 - 0.1 * bh)
        shapes.append(
            Shape(
                kind=_KINDS[d[0] % len(_KINDS)],
                cx=cx,
                cy=cy,
                r=max(2.0, r),
                rotation=d[3] / 255 * 360 + rng.uniform(-20, 20),
                sides=3 + d[4] % 5,
                aspect=0.55 + d[5] / 255 * 0.9,
                color=palette.accents[d[1] % len(palette.accents)],
            )
        )
    shapes.sort(key=lambda s: -s.r)  # big ones at the back
    return shapes


def _star_points(s: Shape, dx: float, dy: float) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    n = max(4, s.sides + 1)
    for k in range(2 * n):
        radius = s.r if k % 2 == 0 else s.r * 0.45
        angle = math.radians(s.rotation) + math.pi * k / n
        points.append((s.cx + dx + radius * math.cos(angle), s.cy + dy + radius * math.sin(angle)))
    return points


def draw_shape(
    draw: ImageDraw.ImageDraw,
    s: Shape,
    fill: Ink | None,
    outline: Ink | None = None,
    width: int = 1,
    offset: tuple[float, float] = (0.0, 0.0),
) -> None:
    dx, dy = offset
    cx, cy, r = s.cx + dx, s.cy + dy, s.r
    line_color = fill if fill is not None else outline
    bbox = (cx - r, cy - r, cx + r, cy + r)
    if s.kind == "disc":
        draw.ellipse(bbox, fill=fill, outline=outline, width=width)
    elif s.kind == "ring":
        if line_color is not None:
            draw.ellipse(bbox, outline=line_color, width=max(2, int(r * 0.28)))
    elif s.kind == "block":
        w, h = r * 1.1, r * 1.1 * s.aspect
        draw.rounded_rectangle(
            (cx - w, cy - h, cx + w, cy + h),
            radius=max(1, int(min(w, h) * 0.3)),
            fill=fill,
            outline=outline,
            width=width,
        )
    elif s.kind == "polygon":
        draw.regular_polygon((cx, cy, r), s.sides, s.rotation, fill=fill, outline=outline, width=width)
    elif s.kind == "star":
        draw.polygon(_star_points(s, dx, dy), fill=fill, outline=outline, width=width)
    elif s.kind == "half":
        start = s.rotation
        draw.pieslice(bbox, start, start + 180, fill=fill, outline=outline, width=width)
    elif line_color is not None and s.kind == "wave":
        amp = r * 0.35 * s.aspect
        phase = math.radians(s.rotation)
        points = [
            (
                cx - 2 * r + 4 * r * t / 48,
                cy + amp * math.sin(phase + t / 48 * 4 * math.pi),
            )
            for t in range(49)
        ]
        draw.line(points, fill=line_color, width=max(2, int(r * 0.22)), joint="curve")
    elif line_color is not None:  # stripes
        angle = math.radians(s.rotation)
        ux, uy = math.cos(angle), math.sin(angle)
        gap = r * 0.42
        for k in range(-2, 3):
            ox, oy = -uy * gap * k, ux * gap * k
            half = r * (1.2 - 0.15 * abs(k))
            draw.line(
                (
                    cx + ox - ux * half,
                    cy + oy - uy * half,
                    cx + ox + ux * half,
                    cy + oy + uy * half,
                ),
                fill=line_color,
                width=max(2, int(gap * 0.5)),
            )


LINE_KINDS = frozenset({"ring", "wave", "stripes"})


def paint(
    img: Image.Image,
    s: Shape,
    color: RGB,
    alpha: int = 255,
    *,
    filled: bool = True,
    width: int = 1,
    offset: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Paint one shape (its fill, or only its outline) in ``color`` at ``alpha``.

    The shape is drawn into a small mask first, so overlapping strokes of the same shape
    never darken each other (no seams at line joints)."""
    dx, dy = offset
    extent = s.r * 2.2 + width + 2
    bx0 = max(0, math.floor(s.cx + dx - extent))
    by0 = max(0, math.floor(s.cy + dy - extent))
    bx1 = min(img.width, math.ceil(s.cx + dx + extent))
    by1 = min(img.height, math.ceil(s.cy + dy + extent))
    if bx1 <= bx0 or by1 <= by0:
        return
    mask = Image.new("L", (bx1 - bx0, by1 - by0), 0)
    draw_shape(
        ImageDraw.Draw(mask),
        s,
        alpha if filled else None,
        None if filled else alpha,
        width,
        (dx - bx0, dy - by0),
    )
    img.paste(color, (bx0, by0, bx1, by1), mask)
