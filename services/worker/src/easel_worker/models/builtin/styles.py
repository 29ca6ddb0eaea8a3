"""The three styles (``sketch``, ``studio``, ``collage``) and :func:`render`, which picks one."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from easel_worker.models.base import ModelError
from easel_worker.models.builtin.caption import caption_layout, draw_caption
from easel_worker.models.builtin.common import RGB, STOPWORDS, Box, digest, prompt_words, shade, to_hls, with_alpha
from easel_worker.models.builtin.layers import glows, gradient, grid_boxes, make_card, paste_card, vignette
from easel_worker.models.builtin.palette import Palette, palette_for
from easel_worker.models.builtin.shapes import LINE_KINDS, draw_shape, layout_shapes, paint


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    art: Box  # area above the caption band
    palette: Palette
    rng: random.Random
    prompt: str
    references: Sequence[Image.Image]


def _paint_sketch(sc: _Scene) -> Image.Image:
    """Tinted grid paper, watercolour washes with pencil hatching and double outlines;
    references pinned as taped instant photos."""
    w, h = sc.width, sc.height
    pal = sc.palette
    img = Image.new("RGB", (w, h), pal.paper)
    draw = ImageDraw.Draw(img, "RGBA")
    step = max(8, min(w, h) // 16)
    grid_ink = with_alpha(pal.ink, 24)
    for x in range(step, w, step):
        draw.line((x, 0, x, h), fill=grid_ink, width=1)
    for y in range(step, h, step):
        draw.line((0, y, w, y), fill=grid_ink, width=1)

    x0, y0, x1, y1 = sc.art
    horizon = int(y0 + (y1 - y0) * sc.rng.uniform(0.68, 0.8))
    stroke = max(1, min(w, h) // 240)
    draw.line((0, horizon, w, horizon), fill=with_alpha(pal.ink, 150), width=stroke)
    draw.line(
        (0, horizon + 3 * stroke, w, horizon + 2 * stroke),
        fill=with_alpha(pal.ink, 70),
        width=stroke,
    )

    shapes = layout_shapes(sc.prompt, pal, sc.rng, sc.art, 1.0)
    union = Image.new("L", (w, h), 0)
    union_draw = ImageDraw.Draw(union)
    for s in shapes:
        paint(img, s, s.color, 165)
        if s.kind not in LINE_KINDS:
            draw_shape(union_draw, s, 255)
    # pencil hatching inside the washes: diagonal lines masked by the union of shapes
    hatch = Image.new("L", (w, h), 0)
    hatch_draw = ImageDraw.Draw(hatch)
    gap = max(4, min(w, h) // 90)
    for k in range(-h, w, gap):
        hatch_draw.line((k, h, k + h, 0), fill=80, width=1)
    img.paste(pal.ink, (0, 0), ImageChops.multiply(hatch, union))
    for s in shapes:
        if s.kind in LINE_KINDS:
            continue
        jitter = stroke * 2.0
        paint(img, s, pal.ink, 235, filled=False, width=stroke)
        paint(img, s, pal.ink, 100, filled=False, width=stroke, offset=(jitter, -jitter))

    if sc.references:
        n = len(sc.references)
        side = int(min(x1 - x0, y1 - y0) * (0.46 if n == 1 else 0.34))
        border = max(2, side // 22)
        anchors = [(0.7, 0.38), (0.3, 0.62), (0.72, 0.68), (0.3, 0.32)]
        start = sc.rng.randrange(len(anchors))
        for i, ref in enumerate(sc.references):
            ax, ay = anchors[(start + i) % len(anchors)]
            card = make_card(ref, (side, side), border, border * 4, (250, 250, 246))
            center = (x0 + ax * (x1 - x0), y0 + ay * (y1 - y0))
            paste_card(img, card, center, sc.rng.uniform(-6, 6), max(1, border // 2))
            tape_w, tape_h = side * 0.32, border * 3.2
            cx, cy = center[0], center[1] - card.height / 2
            draw.rectangle(
                (cx - tape_w / 2, cy - tape_h / 2, cx + tape_w / 2, cy + tape_h / 2),
                fill=(250, 240, 200, 160),
            )
    return vignette(img, 0.25)


def _paint_studio(sc: _Scene) -> Image.Image:
    """Lit stage: gradient backdrop with glows and a floor, solid shapes with drop
    shadows; the first reference tints the backdrop, all hang as framed panels."""
    w, h = sc.width, sc.height
    pal = sc.palette
    img = gradient((w, h), pal.mid, pal.dark, sc.rng.uniform(-35, 35))
    if sc.references:
        small = (max(1, w // 8), max(1, h // 8))
        backdrop = ImageOps.fit(sc.references[0], small, Image.Resampling.BILINEAR)
        backdrop = backdrop.filter(ImageFilter.GaussianBlur(max(1.0, min(small) / 60)))
        backdrop = backdrop.resize((w, h), Image.Resampling.BILINEAR)
        img = Image.blend(img, backdrop, 0.25)
    img = glows(img, pal.light, sc.rng, 3, sc.art)
    x0, y0, x1, y1 = sc.art
    draw = ImageDraw.Draw(img, "RGBA")
    floor = int(y0 + (y1 - y0) * sc.rng.uniform(0.62, 0.74))
    draw.rectangle((0, floor, w, y1), fill=with_alpha(pal.dark, 110))
    draw.line((0, floor, w, floor), fill=with_alpha(pal.light, 120), width=max(1, h // 300))

    strip: Box | None = None
    art = sc.art
    if sc.references:
        if w >= h:
            strip = (int(x1 - (x1 - x0) * 0.3), y0, x1, y1)
            art = (x0, y0, strip[0], y1)
        else:
            strip = (x0, y0, x1, int(y0 + (y1 - y0) * 0.28))
            art = (x0, strip[3], x1, y1)
    shadow = max(2, min(w, h) // 90)
    for s in layout_shapes(sc.prompt, pal, sc.rng, art, 1.0):
        paint(img, s, (0, 0, 0), 85, offset=(shadow, shadow * 1.4))
        paint(img, s, s.color)
        if s.kind not in LINE_KINDS:
            paint(img, s, pal.light, 150, filled=False, width=max(1, shadow // 3))

    if strip is not None:
        gap = max(4, min(w, h) // 60)
        draw.rectangle(strip, fill=with_alpha(pal.dark, 150))
        cells = grid_boxes(len(sc.references), strip, gap)
        for ref, (bx0, by0, bx1, by1) in zip(sc.references, cells, strict=False):
            frame = max(2, (bx1 - bx0) // 30)
            inner = (bx1 - bx0 - 2 * frame, by1 - by0 - 2 * frame)
            card = make_card(ref, inner, frame, frame, pal.light)
            paste_card(img, card, ((bx0 + bx1) / 2, (by0 + by1) / 2), 0.0, frame)
    return vignette(img, 0.55)


_PATTERNS = ("stripes", "dots", "grid", "sun", "chevrons")


def _pattern_card(size: tuple[int, int], color: RGB, pattern: str) -> Image.Image:
    """A coloured card with a simple print, drawn at its final size."""
    w, h = max(1, size[0]), max(1, size[1])
    card = Image.new("RGB", (w, h), color)
    draw = ImageDraw.Draw(card)
    ink = shade(color, min(0.92, to_hls(color)[1] + 0.22))
    step = max(6, min(w, h) // 7)
    if pattern == "stripes":
        for k in range(-h, w, step):
            draw.line((k, h, k + h, 0), fill=ink, width=max(1, step // 3))
    elif pattern == "dots":
        r = step / 5
        for yy in range(step // 2, h, step):
            for xx in range(step // 2, w, step):
                draw.ellipse((xx - r, yy - r, xx + r, yy + r), fill=ink)
    elif pattern == "grid":
        for xx in range(0, w, step):
            draw.line((xx, 0, xx, h), fill=ink, width=max(1, step // 8))
        for yy in range(0, h, step):
            draw.line((0, yy, w, yy), fill=ink, width=max(1, step // 8))
    elif pattern == "sun":
        r = min(w, h) * 0.3
        cx, cy = w / 2, h / 2
        for k in range(12):
            a = math.pi * k / 6
            draw.line(
                (cx, cy, cx + 2 * r * math.cos(a), cy + 2 * r * math.sin(a)),
                fill=ink,
                width=max(1, step // 4),
            )
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=ink)
    else:  # chevrons
        for yy in range(-step, h + step, step):
            points = [(xx, yy + (step / 2 if (xx // step) % 2 else 0)) for xx in range(0, w + step, step)]
            draw.line(points, fill=ink, width=max(1, step // 4), joint="curve")
    return card


def _paint_collage(sc: _Scene) -> Image.Image:
    """Paper strips, a grid of cut-out tiles (the references, or printed cards without
    references) and paper shapes on top."""
    w, h = sc.width, sc.height
    pal = sc.palette
    img = Image.new("RGB", (w, h), pal.mid)
    draw = ImageDraw.Draw(img, "RGBA")
    for k in range(4):  # torn paper strips across the background
        color = (pal.dark, pal.light, pal.accents[k % len(pal.accents)], pal.paper)[k]
        cx, cy = sc.rng.uniform(0, w), sc.rng.uniform(0, h)
        angle = math.radians(sc.rng.uniform(0, 180))
        ux, uy = math.cos(angle), math.sin(angle)
        length, thick = max(w, h) * 1.5, min(w, h) * sc.rng.uniform(0.08, 0.22)
        corners = [
            (cx - ux * length - uy * thick, cy - uy * length + ux * thick),
            (cx + ux * length - uy * thick, cy + uy * length + ux * thick),
            (cx + ux * length + uy * thick, cy + uy * length - ux * thick),
            (cx - ux * length + uy * thick, cy - uy * length - ux * thick),
        ]
        draw.polygon(corners, fill=with_alpha(color, 170))

    x0, y0, x1, y1 = sc.art
    words = [word for word in prompt_words(sc.prompt) if word not in STOPWORDS] or ["easel"]
    n = len(sc.references) or 2 + digest("cards", " ".join(words))[0] % 3
    gap = max(4, min(w, h) // 36)
    boxes = grid_boxes(n, (x0 + gap, y0 + gap, x1 - gap, y1 - gap), gap)
    border = max(2, min(w, h) // 110)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes):
        size = (bx1 - bx0 - 2 * border, by1 - by0 - 2 * border)
        if sc.references:
            source = sc.references[i]
        else:
            d = digest("card", words[i % len(words)], str(i))
            color = pal.accents[d[0] % len(pal.accents)]
            source = _pattern_card(size, color, _PATTERNS[d[1] % len(_PATTERNS)])
        card = make_card(source, size, border, border, pal.paper)
        center = ((bx0 + bx1) / 2, (by0 + by1) / 2)
        paste_card(img, card, center, sc.rng.uniform(-3.5, 3.5), border)

    edge = max(2, min(w, h) // 160)
    for s in layout_shapes(sc.prompt, pal, sc.rng, sc.art, 0.7)[:8]:
        paint(img, s, (0, 0, 0), 70, offset=(edge, edge))
        paint(img, s, s.color, 225)
        if s.kind not in LINE_KINDS:
            paint(img, s, pal.paper, 255, filled=False, width=edge)
    return vignette(img, 0.2)


_PAINTERS: dict[str, Callable[[_Scene], Image.Image]] = {
    "sketch": _paint_sketch,
    "studio": _paint_studio,
    "collage": _paint_collage,
}


def render(
    prompt: str,
    width: int,
    height: int,
    seed: int,
    references: Sequence[Image.Image] = (),
    *,
    style: str = "studio",
    label: str = "",
    reference_digests: Sequence[bytes] = (),
) -> Image.Image:
    """Paint the picture for ``prompt``: an RGB image of exactly ``width`` x ``height``.

    ``reference_digests`` (hashes of the encoded references) feed the layout seed, so
    different references also move the composition.
    """
    painter = _PAINTERS.get(style)
    if painter is None:
        raise ModelError("model_error", f"The built-in renderer has no style {style!r}.")
    palette = palette_for(prompt)
    layout_seed = digest("layout", style, prompt, str(seed), f"{width}x{height}", *reference_digests)
    rng = random.Random(int.from_bytes(layout_seed, "big"))
    caption = caption_layout(width, height, prompt, label)
    art_bottom = height - (caption.height if caption else 0)
    scene = _Scene(width, height, (0, 0, width, art_bottom), palette, rng, prompt, references)
    img = painter(scene)
    if caption is not None:
        draw_caption(img, caption, palette)
    if img.size != (width, height):  # painters keep the size; guard the contract anyway
        img = img.resize((width, height))
    return img
