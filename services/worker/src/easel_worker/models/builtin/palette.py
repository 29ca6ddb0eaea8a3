"""The palette of a picture, derived from the colour words of its prompt (or its hash)."""

from __future__ import annotations

from dataclasses import dataclass

from easel_worker.models.builtin.common import RGB, clamp, digest, from_hls, prompt_words, shade, to_hls

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


@dataclass(frozen=True)
class Palette:
    dark: RGB
    mid: RGB
    light: RGB
    accents: tuple[RGB, ...]
    ink: RGB
    paper: RGB


def palette_for(prompt: str) -> Palette:
    words = prompt_words(prompt)
    named: list[RGB] = []
    for word in words:
        color = COLOR_WORDS.get(word)
        if color is not None and color not in named:
            named.append(color)
    d = digest("palette", " ".join(words))
    if named:
        return _named_palette(named[:3], d)
    return _hashed_palette(d)


def _named_palette(colors: list[RGB], d: bytes) -> Palette:
    main = colors[0]
    h, lightness, s = to_hls(main)
    dark = shade(main, max(0.05, lightness - 0.30))
    light = shade(main, min(0.97, lightness + 0.24))
    accents: list[RGB] = []
    for color in colors:
        _, lc, _ = to_hls(color)
        accents += [
            color,
            shade(color, max(0.06, lc - 0.14)),
            shade(color, min(0.95, lc + 0.16)),
        ]
    shift = (d[0] / 255 - 0.5) * 0.07  # a neighbouring hue for variety, same family
    accents.append(from_hls(h + shift, clamp(lightness, 0.08, 0.92), s))
    paper_l = 0.95 if lightness > 0.9 else 0.9
    return Palette(
        dark=dark,
        mid=main,
        light=light,
        accents=tuple(accents),
        ink=shade(main, 0.12, 0.6),
        paper=shade(main, paper_l, 0.75),
    )


_SCHEMES: tuple[tuple[float, ...], ...] = (
    (0.0, 0.07, -0.07, 0.14),  # analogous
    (0.0, 0.5, 0.05, 0.55),  # complementary
    (0.0, 1 / 3, 2 / 3, 0.05),  # triadic
    (0.0, 0.42, 0.58, -0.06),  # split complementary
)


def _hashed_palette(d: bytes) -> Palette:
    h0 = int.from_bytes(d[0:2], "big") / 65536
    offsets = _SCHEMES[d[2] % len(_SCHEMES)]
    s0 = 0.5 + d[3] / 255 * 0.3
    dark_mood = d[4] % 3 != 0
    if dark_mood:
        dark, mid, light = (
            from_hls(h0, 0.1, s0 * 0.7),
            from_hls(h0, 0.3, s0),
            from_hls(h0, 0.62, s0),
        )
    else:
        dark, mid, light = (
            from_hls(h0, 0.6, s0 * 0.6),
            from_hls(h0, 0.8, s0 * 0.7),
            from_hls(h0, 0.93, s0),
        )
    accents = tuple(from_hls(h0 + off, 0.45 + (d[5 + i] / 255) * 0.22, s0 + 0.1) for i, off in enumerate(offsets))
    return Palette(
        dark=dark,
        mid=mid,
        light=light,
        accents=accents,
        ink=from_hls(h0, 0.12, 0.35),
        paper=from_hls(h0, 0.93, 0.35),
    )
