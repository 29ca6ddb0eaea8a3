"""Built-in offline image models: a deterministic Pillow renderer.

The picture is derived from the prompt (palette, shapes, caption), the seed (layout) and
the reference images (composited per style). Same inputs -> byte-identical PNG.

Styles (``ModelSpec.style``):

* ``sketch``  - tinted paper with a grid, outlined/hatched shapes, references pinned as
  taped instant photos.
* ``studio``  - lit gradient stage with glows and shadowed shapes; the first reference is
  blended into the backdrop and every reference hangs as a framed panel.
* ``collage`` - references (or coloured cards) laid out as a grid of cut-out tiles,
  overlaid with paper shapes.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from easel_worker.models.base import (
    CancelCheck,
    GenerationInput,
    ModelError,
    cancellable_sleep,
)

__all__ = ["BLOCKED_MESSAGE", "COLOR_WORDS", "BuiltinProvider", "render"]

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Box = tuple[int, int, int, int]
Ink = RGBA | int

BLOCKED_MESSAGE = "The model refused this prompt: it contains blocked content."

#: Colour words recognised in prompts; the first ones found dominate the palette.
COLOR_WORDS: dict[str, RGB] = {
    "red": (214, 40, 40),
    "crimson": (178, 24, 56),
    "scarlet": (230, 40, 24),
    "orange": (240, 128, 28),
    "amber": (236, 160, 20),
    "yellow": (240, 206, 36),
    "gold": (214, 166, 34),
    "golden": (214, 166, 34),
    "green": (36, 164, 72),
    "lime": (140, 214, 44),
    "olive": (122, 128, 40),
    "emerald": (22, 156, 100),
    "teal": (20, 136, 136),
    "cyan": (30, 196, 214),
    "turquoise": (56, 204, 194),
    "blue": (38, 92, 218),
    "azure": (40, 140, 230),
    "navy": (22, 36, 112),
    "indigo": (72, 44, 160),
    "purple": (128, 48, 176),
    "violet": (146, 88, 216),
    "lavender": (178, 150, 222),
    "magenta": (214, 40, 166),
    "pink": (240, 128, 176),
    "brown": (128, 80, 42),
    "beige": (222, 204, 168),
    "black": (14, 14, 18),
    "white": (246, 246, 242),
    "gray": (128, 128, 132),
    "grey": (128, 128, 132),
    "silver": (190, 192, 198),
}

_STOPWORDS = frozenset(
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
_MAX_REFERENCE_PIXELS = 64_000_000
_REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")


# --------------------------------------------------------------------------- helpers


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


def _rgb(h: float, lightness: float, s: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, _clamp(lightness), _clamp(s))
    return round(r * 255), round(g * 255), round(b * 255)


def _hls(color: RGB) -> tuple[float, float, float]:
    return colorsys.rgb_to_hls(color[0] / 255, color[1] / 255, color[2] / 255)


def _shade(color: RGB, lightness: float, sat_scale: float = 1.0, hue_shift: float = 0.0) -> RGB:
    h, _, s = _hls(color)
    return _rgb(h + hue_shift, lightness, s * sat_scale)


def _alpha(color: RGB, a: int) -> RGBA:
    return color[0], color[1], color[2], a


def _digest(*parts: bytes | str) -> bytes:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.digest()


def _words(prompt: str) -> list[str]:
    return re.findall(r"\w+", prompt.lower())


# --------------------------------------------------------------------------- palette


@dataclass(frozen=True)
class _Palette:
    dark: RGB
    mid: RGB
    light: RGB
    accents: tuple[RGB, ...]
    ink: RGB
    paper: RGB


def _palette(prompt: str) -> _Palette:
    words = _words(prompt)
    named: list[RGB] = []
    for word in words:
        color = COLOR_WORDS.get(word)
        if color is not None and color not in named:
            named.append(color)
    d = _digest("palette", " ".join(words))
    if named:
        return _named_palette(named[:3], d)
    return _hashed_palette(d)


def _named_palette(colors: list[RGB], d: bytes) -> _Palette:
    main = colors[0]
    h, lightness, s = _hls(main)
    dark = _shade(main, max(0.05, lightness - 0.30))
    light = _shade(main, min(0.97, lightness + 0.24))
    accents: list[RGB] = []
    for color in colors:
        _, lc, _ = _hls(color)
        accents += [
            color,
            _shade(color, max(0.06, lc - 0.14)),
            _shade(color, min(0.95, lc + 0.16)),
        ]
    shift = (d[0] / 255 - 0.5) * 0.07  # a neighbouring hue for variety, same family
    accents.append(_rgb(h + shift, _clamp(lightness, 0.08, 0.92), s))
    paper_l = 0.95 if lightness > 0.9 else 0.9
    return _Palette(
        dark=dark,
        mid=main,
        light=light,
        accents=tuple(accents),
        ink=_shade(main, 0.12, 0.6),
        paper=_shade(main, paper_l, 0.75),
    )


_SCHEMES: tuple[tuple[float, ...], ...] = (
    (0.0, 0.07, -0.07, 0.14),  # analogous
    (0.0, 0.5, 0.05, 0.55),  # complementary
    (0.0, 1 / 3, 2 / 3, 0.05),  # triadic
    (0.0, 0.42, 0.58, -0.06),  # split complementary
)


def _hashed_palette(d: bytes) -> _Palette:
    h0 = int.from_bytes(d[0:2], "big") / 65536
    offsets = _SCHEMES[d[2] % len(_SCHEMES)]
    s0 = 0.5 + d[3] / 255 * 0.3
    dark_mood = d[4] % 3 != 0
    if dark_mood:
        dark, mid, light = (
            _rgb(h0, 0.1, s0 * 0.7),
            _rgb(h0, 0.3, s0),
            _rgb(h0, 0.62, s0),
        )
    else:
        dark, mid, light = (
            _rgb(h0, 0.6, s0 * 0.6),
            _rgb(h0, 0.8, s0 * 0.7),
            _rgb(h0, 0.93, s0),
        )
    accents = tuple(_rgb(h0 + off, 0.45 + (d[5 + i] / 255) * 0.22, s0 + 0.1) for i, off in enumerate(offsets))
    return _Palette(
        dark=dark,
        mid=mid,
        light=light,
        accents=accents,
        ink=_rgb(h0, 0.12, 0.35),
        paper=_rgb(h0, 0.93, 0.35),
    )


# --------------------------------------------------------------------------- shapes

_KINDS = ("disc", "ring", "block", "polygon", "star", "wave", "stripes", "half")


@dataclass(frozen=True)
class _Shape:
    kind: str
    cx: float
    cy: float
    r: float
    rotation: float
    sides: int
    aspect: float
    color: RGB


def _shapes(prompt: str, palette: _Palette, rng: random.Random, box: Box, scale: float) -> list[_Shape]:
    """One shape per content word: kind, colour and size come from the word, placement
    from the seed. The first word is the large "hero" shape on a rule-of-thirds point."""
    words = [w for w in _words(prompt) if w not in _STOPWORDS][:14]
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
    shapes: list[_Shape] = []
    for index, (word, weight) in enumerate(specs):
        d = _digest("shape", word)
        if index == 0:
            r = short * (0.2 + d[2] / 255 * 0.08) * scale
            cx, cy = hero_x, hero_y
        else:
            r = short * (0.05 + d[2] / 255 * 0.12) * weight * scale * rng.uniform(0.8, 1.2)
            cx = rng.uniform(x0 + 0.08 * bw, x1 - 0.08 * bw)
            cy = rng.uniform(y0 + 0.1 * bh, y1 - 0.1 * bh)
        shapes.append(
            _Shape(
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


def _star_points(s: _Shape, dx: float, dy: float) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    n = max(4, s.sides + 1)
    for k in range(2 * n):
        radius = s.r if k % 2 == 0 else s.r * 0.45
        angle = math.radians(s.rotation) + math.pi * k / n
        points.append((s.cx + dx + radius * math.cos(angle), s.cy + dy + radius * math.sin(angle)))
    return points


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    s: _Shape,
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


_LINE_KINDS = frozenset({"ring", "wave", "stripes"})


def _paint(
    img: Image.Image,
    s: _Shape,
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
    _draw_shape(
        ImageDraw.Draw(mask),
        s,
        alpha if filled else None,
        None if filled else alpha,
        width,
        (dx - bx0, dy - by0),
    )
    img.paste(color, (bx0, by0, bx1, by1), mask)


# --------------------------------------------------------------------------- backdrops


def _gradient(size: tuple[int, int], start: RGB, end: RGB, angle: float) -> Image.Image:
    """Linear gradient from ``start`` to ``end``, rotated by ``angle`` degrees."""
    mask = Image.linear_gradient("L").rotate(angle, resample=Image.Resampling.BILINEAR)
    mask = mask.crop((48, 48, 208, 208)).resize(size, Image.Resampling.BILINEAR)
    img = Image.new("RGB", size, start)
    img.paste(end, (0, 0, *size), mask)
    return img


def _vignette(img: Image.Image, strength: float) -> Image.Image:
    mask = Image.radial_gradient("L").resize(img.size, Image.Resampling.BILINEAR)
    mask = mask.point([min(255, int(max(0, v - 110) * 1.6 * strength)) for v in range(256)])
    img.paste((0, 0, 0), (0, 0, *img.size), mask)
    return img


def _glows(img: Image.Image, color: RGB, rng: random.Random, count: int, box: Box) -> Image.Image:
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


# --------------------------------------------------------------------------- references


def _decode_reference(data: bytes, index: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data), formats=list(_REFERENCE_FORMATS)) as opened:
            if opened.width * opened.height > _MAX_REFERENCE_PIXELS:
                raise ModelError(
                    "model_error",
                    f"Reference image {index} is too large ({opened.width}x{opened.height}).",
                )
            opened.draft("RGB", (1024, 1024))
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


def _card(img: Image.Image, size: tuple[int, int], border: int, bottom: int, color: RGB) -> Image.Image:
    """``img`` cover-cropped to ``size`` on a card with a border (instant-photo look)."""
    w, h = size
    photo = ImageOps.fit(img, (max(1, w), max(1, h)), Image.Resampling.LANCZOS)
    card = Image.new(
        "RGBA",
        (photo.width + 2 * border, photo.height + border + bottom),
        _alpha(color, 255),
    )
    card.paste(photo, (border, border))
    return card


def _paste_card(
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


def _grid(n: int, box: Box, gap: int) -> list[Box]:
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


# --------------------------------------------------------------------------- caption


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
class _Caption:
    font: Font
    small: Font
    size: int
    pad: int
    lines: tuple[str, ...]
    label: str
    height: int


def _caption_layout(width: int, height: int, prompt: str, label: str) -> _Caption | None:
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
    return _Caption(font, small, size, pad, lines, label, band)


def _draw_caption(img: Image.Image, cap: _Caption, palette: _Palette) -> None:
    w, h = img.size
    top = h - cap.height
    draw = ImageDraw.Draw(img, "RGBA")
    draw.rectangle((0, top, w, h), fill=_alpha(palette.ink, 232))
    draw.line((0, top, w, top), fill=_alpha(palette.light, 170), width=max(1, cap.size // 14))
    y = top + cap.pad * 0.55
    if cap.label:
        draw.text(
            (w - cap.pad, y),
            cap.label,
            font=cap.small,
            fill=_alpha(palette.light, 190),
            anchor="ra",
        )
        y += int(max(9, cap.size * 0.62) * 1.3)
    dark_band = sum(palette.ink) < 384
    text_color = (248, 248, 244, 255) if dark_band else (16, 16, 20, 255)
    for line in cap.lines:
        draw.text((cap.pad, y), line, font=cap.font, fill=text_color)
        y += cap.size * 1.3


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    art: Box  # area above the caption band
    palette: _Palette
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
    grid_ink = _alpha(pal.ink, 24)
    for x in range(step, w, step):
        draw.line((x, 0, x, h), fill=grid_ink, width=1)
    for y in range(step, h, step):
        draw.line((0, y, w, y), fill=grid_ink, width=1)

    x0, y0, x1, y1 = sc.art
    horizon = int(y0 + (y1 - y0) * sc.rng.uniform(0.68, 0.8))
    stroke = max(1, min(w, h) // 240)
    draw.line((0, horizon, w, horizon), fill=_alpha(pal.ink, 150), width=stroke)
    draw.line(
        (0, horizon + 3 * stroke, w, horizon + 2 * stroke),
        fill=_alpha(pal.ink, 70),
        width=stroke,
    )

    shapes = _shapes(sc.prompt, pal, sc.rng, sc.art, 1.0)
    union = Image.new("L", (w, h), 0)
    union_draw = ImageDraw.Draw(union)
    for s in shapes:
        _paint(img, s, s.color, 165)
        if s.kind not in _LINE_KINDS:
            _draw_shape(union_draw, s, 255)
    # pencil hatching inside the washes: diagonal lines masked by the union of shapes
    hatch = Image.new("L", (w, h), 0)
    hatch_draw = ImageDraw.Draw(hatch)
    gap = max(4, min(w, h) // 90)
    for k in range(-h, w, gap):
        hatch_draw.line((k, h, k + h, 0), fill=80, width=1)
    img.paste(pal.ink, (0, 0), ImageChops.multiply(hatch, union))
    for s in shapes:
        if s.kind in _LINE_KINDS:
            continue
        jitter = stroke * 2.0
        _paint(img, s, pal.ink, 235, filled=False, width=stroke)
        _paint(img, s, pal.ink, 100, filled=False, width=stroke, offset=(jitter, -jitter))

    if sc.references:
        n = len(sc.references)
        side = int(min(x1 - x0, y1 - y0) * (0.46 if n == 1 else 0.34))
        border = max(2, side // 22)
        anchors = [(0.7, 0.38), (0.3, 0.62), (0.72, 0.68), (0.3, 0.32)]
        start = sc.rng.randrange(len(anchors))
        for i, ref in enumerate(sc.references):
            ax, ay = anchors[(start + i) % len(anchors)]
            card = _card(ref, (side, side), border, border * 4, (250, 250, 246))
            center = (x0 + ax * (x1 - x0), y0 + ay * (y1 - y0))
            _paste_card(img, card, center, sc.rng.uniform(-6, 6), max(1, border // 2))
            tape_w, tape_h = side * 0.32, border * 3.2
            cx, cy = center[0], center[1] - card.height / 2
            draw.rectangle(
                (cx - tape_w / 2, cy - tape_h / 2, cx + tape_w / 2, cy + tape_h / 2),
                fill=(250, 240, 200, 160),
            )
    return _vignette(img, 0.25)


def _paint_studio(sc: _Scene) -> Image.Image:
    """Lit stage: gradient backdrop with glows and a floor, solid shapes with drop
    shadows; the first reference tints the backdrop, all hang as framed panels."""
    w, h = sc.width, sc.height
    pal = sc.palette
    img = _gradient((w, h), pal.mid, pal.dark, sc.rng.uniform(-35, 35))
    if sc.references:
        small = (max(1, w // 8), max(1, h // 8))
        backdrop = ImageOps.fit(sc.references[0], small, Image.Resampling.BILINEAR)
        backdrop = backdrop.filter(ImageFilter.GaussianBlur(max(1.0, min(small) / 60)))
        backdrop = backdrop.resize((w, h), Image.Resampling.BILINEAR)
        img = Image.blend(img, backdrop, 0.25)
    img = _glows(img, pal.light, sc.rng, 3, sc.art)
    x0, y0, x1, y1 = sc.art
    draw = ImageDraw.Draw(img, "RGBA")
    floor = int(y0 + (y1 - y0) * sc.rng.uniform(0.62, 0.74))
    draw.rectangle((0, floor, w, y1), fill=_alpha(pal.dark, 110))
    draw.line((0, floor, w, floor), fill=_alpha(pal.light, 120), width=max(1, h // 300))

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
    for s in _shapes(sc.prompt, pal, sc.rng, art, 1.0):
        _paint(img, s, (0, 0, 0), 85, offset=(shadow, shadow * 1.4))
        _paint(img, s, s.color)
        if s.kind not in _LINE_KINDS:
            _paint(img, s, pal.light, 150, filled=False, width=max(1, shadow // 3))

    if strip is not None:
        gap = max(4, min(w, h) // 60)
        draw.rectangle(strip, fill=_alpha(pal.dark, 150))
        cells = _grid(len(sc.references), strip, gap)
        for ref, (bx0, by0, bx1, by1) in zip(sc.references, cells, strict=False):
            frame = max(2, (bx1 - bx0) // 30)
            inner = (bx1 - bx0 - 2 * frame, by1 - by0 - 2 * frame)
            card = _card(ref, inner, frame, frame, pal.light)
            _paste_card(img, card, ((bx0 + bx1) / 2, (by0 + by1) / 2), 0.0, frame)
    return _vignette(img, 0.55)


_PATTERNS = ("stripes", "dots", "grid", "sun", "chevrons")


def _pattern_card(size: tuple[int, int], color: RGB, pattern: str) -> Image.Image:
    """A coloured card with a simple print, drawn at its final size."""
    w, h = max(1, size[0]), max(1, size[1])
    card = Image.new("RGB", (w, h), color)
    draw = ImageDraw.Draw(card)
    ink = _shade(color, min(0.92, _hls(color)[1] + 0.22))
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
        draw.polygon(corners, fill=_alpha(color, 170))

    x0, y0, x1, y1 = sc.art
    words = [word for word in _words(sc.prompt) if word not in _STOPWORDS] or ["easel"]
    n = len(sc.references) or 2 + _digest("cards", " ".join(words))[0] % 3
    gap = max(4, min(w, h) // 36)
    boxes = _grid(n, (x0 + gap, y0 + gap, x1 - gap, y1 - gap), gap)
    border = max(2, min(w, h) // 110)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes):
        size = (bx1 - bx0 - 2 * border, by1 - by0 - 2 * border)
        if sc.references:
            source = sc.references[i]
        else:
            d = _digest("card", words[i % len(words)], str(i))
            color = pal.accents[d[0] % len(pal.accents)]
            source = _pattern_card(size, color, _PATTERNS[d[1] % len(_PATTERNS)])
        card = _card(source, size, border, border, pal.paper)
        center = ((bx0 + bx1) / 2, (by0 + by1) / 2)
        _paste_card(img, card, center, sc.rng.uniform(-3.5, 3.5), border)

    edge = max(2, min(w, h) // 160)
    for s in _shapes(sc.prompt, pal, sc.rng, sc.art, 0.7)[:8]:
        _paint(img, s, (0, 0, 0), 70, offset=(edge, edge))
        _paint(img, s, s.color, 225)
        if s.kind not in _LINE_KINDS:
            _paint(img, s, pal.paper, 255, filled=False, width=edge)
    return _vignette(img, 0.2)


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
    palette = _palette(prompt)
    layout_seed = _digest("layout", style, prompt, str(seed), f"{width}x{height}", *reference_digests)
    rng = random.Random(int.from_bytes(layout_seed, "big"))
    caption = _caption_layout(width, height, prompt, label)
    art_bottom = height - (caption.height if caption else 0)
    scene = _Scene(width, height, (0, 0, width, art_bottom), palette, rng, prompt, references)
    img = painter(scene)
    if caption is not None:
        _draw_caption(img, caption, palette)
    if img.size != (width, height):  # painters keep the size; guard the contract anyway
        img = img.resize((width, height))
    return img


# --------------------------------------------------------------------------- provider


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
