"""Generation parameters against a model: output size, price, checks, defaults, availability."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from easel_shared.domain.catalog.spec import (
    DEFAULT_ASPECT_RATIO,
    LONG_SIDE,
    MAX_SEED,
    PARAM_KEYS,
    RESOLUTIONS,
    ModelSpec,
    aspect_parts,
    is_int,
    quoted_list,
)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    word = singular if count == 1 else (plural or singular + "s")
    return f"{count} {word}"


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Pixel ``(width, height)`` of an image at ``resolution`` and ``aspect_ratio``.

    The long side is 1024 (1K) or 2048 (2K); the short side is ``long * min/max``
    rounded to the nearest multiple of 8 (halves round up), at least 8.
    """
    long_side = LONG_SIDE.get(resolution)
    if long_side is None:
        raise ValueError(f"unknown resolution {resolution!r}; expected one of {quoted_list(RESOLUTIONS)}")
    parts = aspect_parts(aspect_ratio)
    if parts is None:
        raise ValueError(f"invalid aspect ratio {aspect_ratio!r}; expected 'W:H', e.g. '16:9'")
    w, h = parts
    short_exact = Fraction(long_side * min(w, h), max(w, h))
    short_side = max(8, math.floor(short_exact / 8 + Fraction(1, 2)) * 8)
    if w > h:
        return long_side, short_side
    if h > w:
        return short_side, long_side
    return long_side, long_side


def price(spec: ModelSpec, resolution: str) -> int:
    """Credits charged for one image from ``spec`` at ``resolution``."""
    cost = spec.credits.get(resolution)
    if resolution not in spec.resolutions or cost is None:
        raise ValueError(
            f"{spec.name} does not offer resolution {resolution!r}; choose {quoted_list(spec.resolutions)}"
        )
    return cost


@dataclass(frozen=True)
class ResolvedParams:
    """Generation parameters with the model's defaults filled in."""

    resolution: str
    aspect_ratio: str
    seed: int | None
    width: int
    height: int
    credits: int


def validate_params(spec: ModelSpec, params: Mapping[str, object]) -> str | None:
    """``None`` if ``params`` are acceptable for ``spec``, else a sentence saying why not.

    Recognised keys are ``resolution``, ``aspect_ratio`` and ``seed``; a missing key or a
    ``None`` value means "use the model default" (for ``seed``: pick one at random).
    """
    unknown = sorted(str(key) for key in params if key not in PARAM_KEYS)
    if unknown:
        noun = "setting" if len(unknown) == 1 else "settings"
        return f"Unknown {noun} {quoted_list(unknown)}; {spec.name} accepts {quoted_list(sorted(PARAM_KEYS))}."
    resolution = params.get("resolution")
    if resolution is not None and resolution not in spec.resolutions:
        return f"{spec.name} does not support resolution {_shown(resolution)}; choose {quoted_list(spec.resolutions)}."
    aspect = params.get("aspect_ratio")
    if aspect is not None and aspect not in spec.aspect_ratios:
        return f"{spec.name} does not support aspect ratio {_shown(aspect)}; choose {quoted_list(spec.aspect_ratios)}."
    seed = params.get("seed")
    if seed is not None and not (is_int(seed) and 0 <= seed < MAX_SEED):
        return f"Seed must be a whole number from 0 to {MAX_SEED - 1}; got {_shown(seed)}."
    return None


def _shown(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."


def resolve_params(spec: ModelSpec, params: Mapping[str, object]) -> ResolvedParams:
    """Validate ``params`` and fill in defaults; raises :class:`ValueError` if invalid.

    Defaults: the model's first resolution, ``1:1`` if offered (else its first aspect
    ratio), and no seed (the caller picks one).
    """
    problem = validate_params(spec, params)
    if problem is not None:
        raise ValueError(problem)
    resolution = params.get("resolution")
    aspect = params.get("aspect_ratio")
    seed = params.get("seed")
    res = resolution if isinstance(resolution, str) else spec.resolutions[0]
    if isinstance(aspect, str):
        ar = aspect
    elif DEFAULT_ASPECT_RATIO in spec.aspect_ratios:
        ar = DEFAULT_ASPECT_RATIO
    else:
        ar = spec.aspect_ratios[0]
    width, height = output_size(res, ar)
    return ResolvedParams(
        resolution=res,
        aspect_ratio=ar,
        seed=seed if is_int(seed) else None,
        width=width,
        height=height,
        credits=price(spec, res),
    )


def availability(spec: ModelSpec, connected_reference_count: int) -> tuple[bool, str | None]:
    """Whether ``spec`` can run with this many connected reference images, and if not why."""
    if connected_reference_count < 0:
        raise ValueError("connected_reference_count must not be negative")
    limit = spec.max_reference_images
    if connected_reference_count <= limit:
        return True, None
    verb = "is" if connected_reference_count == 1 else "are"
    if limit == 0:
        accepts = f"{spec.name} does not accept reference images"
        action = "Remove the references" if connected_reference_count > 1 else "Remove it"
    else:
        accepts = f"{spec.name} accepts at most {_plural(limit, 'reference image')}"
        action = "Remove a reference"
    reason = f"{accepts}; {connected_reference_count} {verb} connected. {action} or pick another model."
    return False, reason
