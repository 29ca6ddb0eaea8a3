"""Model catalog: which image models exist, what they accept and what they cost.

Pure domain code: standard library only (no I/O, no framework imports). Reading the
catalog file lives in :mod:`easel_shared.catalog_loader`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import TypeGuard

__all__ = [
    "BUILTIN_STYLES",
    "DEFAULT_ASPECT_RATIO",
    "MAX_SEED",
    "PARAM_KEYS",
    "PROVIDERS",
    "RESOLUTIONS",
    "Catalog",
    "ModelSpec",
    "ResolvedParams",
    "availability",
    "merge_catalogs",
    "output_size",
    "parse_catalog",
    "price",
    "resolve_params",
    "validate_params",
]

#: Output resolutions and the length of the long side they produce, in pixels.
LONG_SIDE: Mapping[str, int] = MappingProxyType({"1K": 1024, "2K": 2048})
RESOLUTIONS: tuple[str, ...] = tuple(LONG_SIDE)
#: Known image model providers.
PROVIDERS: tuple[str, ...] = ("builtin", "http")
#: Renderer variants of the built-in offline models (``ModelSpec.style``).
BUILTIN_STYLES: tuple[str, ...] = ("sketch", "studio", "collage")
#: Generation parameters a node may set; anything else is rejected.
PARAM_KEYS: frozenset[str] = frozenset({"resolution", "aspect_ratio", "seed"})
#: Seeds are non-negative integers below this bound (fits a signed 32-bit int).
MAX_SEED = 2**31
DEFAULT_ASPECT_RATIO = "1:1"

_ASPECT_RE = re.compile(r"^([1-9][0-9]{0,3}):([1-9][0-9]{0,3})$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODEL_KEYS = frozenset(
    {
        "id",
        "name",
        "provider",
        "max_reference_images",
        "resolutions",
        "aspect_ratios",
        "credits",
        "style",
        "endpoint",
        "timeout_seconds",
    }
)
_REQUIRED_MODEL_KEYS = (
    "id",
    "name",
    "provider",
    "max_reference_images",
    "resolutions",
    "aspect_ratios",
    "credits",
)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    word = singular if count == 1 else (plural or singular + "s")
    return f"{count} {word}"


def _quoted_list(values: Iterable[str]) -> str:
    return ", ".join(values)


def _aspect_parts(aspect_ratio: str) -> tuple[int, int] | None:
    match = _ASPECT_RE.match(aspect_ratio)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class ModelSpec:
    """One image model offered on the canvas.

    Construction validates the invariants and raises :class:`ValueError` listing every
    problem. ``credits`` is stored as a read-only mapping.
    """

    id: str
    name: str
    provider: str
    max_reference_images: int
    resolutions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    credits: Mapping[str, int] = field(hash=False)
    style: str = ""
    endpoint: str | None = None
    timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        # Normalise containers so specs are immutable whatever the caller passed.
        object.__setattr__(self, "resolutions", tuple(self.resolutions))
        object.__setattr__(self, "aspect_ratios", tuple(self.aspect_ratios))
        object.__setattr__(self, "credits", MappingProxyType(dict(self.credits)))
        problems = _spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))


def _spec_problems(spec: ModelSpec) -> list[str]:
    problems: list[str] = []
    if not isinstance(spec.id, str) or not _ID_RE.match(spec.id):
        problems.append(
            f"id {spec.id!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if not isinstance(spec.name, str) or not spec.name.strip():
        problems.append("name must be a non-empty string")
    if spec.provider not in PROVIDERS:
        problems.append(f"provider {spec.provider!r} is unknown; expected one of {_quoted_list(PROVIDERS)}")
    if not _is_int(spec.max_reference_images) or spec.max_reference_images < 0:
        problems.append(f"max_reference_images must be a non-negative integer, got {spec.max_reference_images!r}")

    resolutions = spec.resolutions
    if not resolutions:
        problems.append("resolutions must list at least one of " + _quoted_list(RESOLUTIONS))
    for resolution in resolutions:
        if resolution not in LONG_SIDE:
            problems.append(f"resolution {resolution!r} is unknown; expected one of {_quoted_list(RESOLUTIONS)}")
    if len(set(resolutions)) != len(resolutions):
        problems.append("resolutions contains duplicates")

    if not spec.aspect_ratios:
        problems.append("aspect_ratios must list at least one aspect ratio such as '1:1'")
    for aspect in spec.aspect_ratios:
        if not isinstance(aspect, str) or _aspect_parts(aspect) is None:
            problems.append(
                f"aspect ratio {aspect!r} is invalid; write it as 'W:H' with positive whole numbers, e.g. '16:9'"
            )
    if len(set(spec.aspect_ratios)) != len(spec.aspect_ratios):
        problems.append("aspect_ratios contains duplicates")

    for resolution in resolutions:
        if resolution in LONG_SIDE and resolution not in spec.credits:
            problems.append(f"credits missing for resolution {resolution}")
    for resolution, cost in spec.credits.items():
        if resolution not in resolutions:
            problems.append(f"credits given for resolution {resolution!r}, which the model does not offer")
        elif not _is_int(cost):
            problems.append(f"credits for {resolution} must be a whole number, got {cost!r}")
        elif cost < 0:
            problems.append(f"credits for {resolution} must not be negative, got {cost}")

    if spec.provider == "builtin":
        if spec.style not in BUILTIN_STYLES:
            problems.append(
                f"style {spec.style!r} is unknown for a builtin model; expected one of " + _quoted_list(BUILTIN_STYLES)
            )
    elif spec.provider == "http":
        endpoint = spec.endpoint
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            problems.append("an http model needs an endpoint URL starting with http:// or https://")
    if spec.endpoint is not None and not isinstance(spec.endpoint, str):
        problems.append("endpoint must be a string")
    if not isinstance(spec.style, str):
        problems.append("style must be a string")

    timeout = spec.timeout_seconds
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        problems.append(f"timeout_seconds must be a positive number, got {timeout!r}")
    return problems


@dataclass(frozen=True)
class Catalog:
    """An ordered set of models with unique ids."""

    models: tuple[ModelSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        seen: set[str] = set()
        for spec in self.models:
            if spec.id in seen:
                raise ValueError(f"duplicate model id {spec.id!r}")
            seen.add(spec.id)

    def get(self, model_id: str) -> ModelSpec | None:
        for spec in self.models:
            if spec.id == model_id:
                return spec
        return None

    def ids(self) -> tuple[str, ...]:
        return tuple(spec.id for spec in self.models)

    def __len__(self) -> int:
        return len(self.models)


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Pixel ``(width, height)`` of an image at ``resolution`` and ``aspect_ratio``.

    The long side is 1024 (1K) or 2048 (2K); the short side is ``long * min/max``
    rounded to the nearest multiple of 8 (halves round up), at least 8.
    """
    long_side = LONG_SIDE.get(resolution)
    if long_side is None:
        raise ValueError(f"unknown resolution {resolution!r}; expected one of {_quoted_list(RESOLUTIONS)}")
    parts = _aspect_parts(aspect_ratio)
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
            f"{spec.name} does not offer resolution {resolution!r}; choose {_quoted_list(spec.resolutions)}"
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
        return f"Unknown {noun} {_quoted_list(unknown)}; {spec.name} accepts {_quoted_list(sorted(PARAM_KEYS))}."
    resolution = params.get("resolution")
    if resolution is not None and resolution not in spec.resolutions:
        return f"{spec.name} does not support resolution {_shown(resolution)}; choose {_quoted_list(spec.resolutions)}."
    aspect = params.get("aspect_ratio")
    if aspect is not None and aspect not in spec.aspect_ratios:
        return f"{spec.name} does not support aspect ratio {_shown(aspect)}; choose {_quoted_list(spec.aspect_ratios)}."
    seed = params.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed < MAX_SEED):
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
        seed=seed if _is_int(seed) else None,
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


# --------------------------------------------------------------------------- parsing


def _as_str_tuple(value: object, key: str, problems: list[str]) -> tuple[str, ...] | None:
    if isinstance(value, str) or not isinstance(value, Sequence):
        problems.append(f"{key} must be a list of strings")
        return None
    items: list[str] = []
    for item in value:
        if not isinstance(item, str):
            problems.append(f"{key} must contain only strings, got {item!r}")
            return None
        items.append(item)
    return tuple(items)


def _parse_model(raw: object) -> ModelSpec:
    if not isinstance(raw, Mapping):
        raise ValueError("must be a mapping of model fields")
    problems: list[str] = []
    unknown = sorted(str(k) for k in raw if k not in _MODEL_KEYS)
    if unknown:
        problems.append(f"unknown field(s) {_quoted_list(unknown)}")
    missing = [k for k in _REQUIRED_MODEL_KEYS if k not in raw]
    if missing:
        problems.append(f"missing field(s) {_quoted_list(missing)}")
    if problems:
        raise ValueError("; ".join(problems))

    strings: dict[str, str] = {}
    for key in ("id", "name", "provider"):
        value = raw[key]
        if isinstance(value, str):
            strings[key] = value
        else:
            problems.append(f"{key} must be a string, got {value!r}")
    max_refs = raw["max_reference_images"]
    if not _is_int(max_refs):
        problems.append(f"max_reference_images must be a whole number, got {max_refs!r}")
    resolutions = _as_str_tuple(raw["resolutions"], "resolutions", problems)
    aspect_ratios = _as_str_tuple(raw["aspect_ratios"], "aspect_ratios", problems)
    credits_raw = raw["credits"]
    credits: dict[str, int] = {}
    if not isinstance(credits_raw, Mapping):
        problems.append("credits must map each resolution to a whole number of credits")
    else:
        for res, cost in credits_raw.items():
            if _is_int(cost):
                credits[str(res)] = cost
            else:
                problems.append(f"credits for {res} must be a whole number, got {cost!r}")
    style = raw.get("style", "")
    if style is None:
        style = ""
    if not isinstance(style, str):
        problems.append(f"style must be a string, got {style!r}")
    endpoint = raw.get("endpoint")
    if endpoint is not None and not isinstance(endpoint, str):
        problems.append(f"endpoint must be a string, got {endpoint!r}")
    timeout = raw.get("timeout_seconds", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        problems.append(f"timeout_seconds must be a number, got {timeout!r}")
    if (
        problems
        or resolutions is None
        or aspect_ratios is None
        or not _is_int(max_refs)
        or not isinstance(style, str)
        or not (endpoint is None or isinstance(endpoint, str))
        or isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
    ):
        raise ValueError("; ".join(problems))
    return ModelSpec(
        id=strings["id"],
        name=strings["name"],
        provider=strings["provider"],
        max_reference_images=max_refs,
        resolutions=resolutions,
        aspect_ratios=aspect_ratios,
        credits=credits,
        style=style,
        endpoint=endpoint,
        timeout_seconds=float(timeout),
    )


def parse_catalog(raw: Mapping[str, object]) -> Catalog:
    """Build a :class:`Catalog` from plain data (as read from YAML/JSON).

    Expected shape: ``{"models": [{"id": ..., "name": ..., ...}, ...]}``. Every problem
    found is reported in one :class:`ValueError`, each line naming the model it is about.
    """
    if not isinstance(raw, Mapping):
        raise ValueError("model catalog must be a mapping with a 'models' list")
    unknown_top = sorted(str(k) for k in raw if k != "models")
    if unknown_top:
        raise ValueError(
            f"model catalog has unknown top-level key(s) {_quoted_list(unknown_top)}; only 'models' is allowed"
        )
    models_raw = raw.get("models")
    if models_raw is None:
        models_raw = []
    if isinstance(models_raw, str | bytes) or not isinstance(models_raw, Sequence):
        raise ValueError("model catalog 'models' must be a list of models")

    problems: list[str] = []
    specs: list[ModelSpec] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(models_raw):
        where = f"models[{index}]"
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
            where += f" ({entry['id']})"
        try:
            spec = _parse_model(entry)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if spec.id in first_index:
            problems.append(
                f"{where}: duplicate model id {spec.id!r} (first defined at models[{first_index[spec.id]}])"
            )
            continue
        first_index[spec.id] = index
        specs.append(spec)
    if problems:
        raise ValueError("invalid model catalog:\n  - " + "\n  - ".join(problems))
    return Catalog(tuple(specs))


def merge_catalogs(base: Catalog, overlay: Catalog) -> Catalog:
    """``base`` with ``overlay`` on top: same id replaces the whole entry in place,
    new ids are appended in overlay order."""
    overrides = {spec.id: spec for spec in overlay.models}
    merged = [overrides.pop(spec.id, spec) for spec in base.models]
    merged.extend(spec for spec in overlay.models if spec.id in overrides)
    return Catalog(tuple(merged))
