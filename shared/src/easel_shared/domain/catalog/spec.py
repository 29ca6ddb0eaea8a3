"""The models themselves: what a model spec must satisfy, and the catalog of them."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeGuard

#: Output resolutions and the length of the long side they produce, in pixels.
LONG_SIDE: Mapping[str, int] = MappingProxyType({"1K": 1024, "2K": 2048})
RESOLUTIONS: tuple[str, ...] = tuple(LONG_SIDE)
#: Image vendors reached through their own documented APIs (one adapter each in the worker).
VENDOR_PROVIDERS: tuple[str, ...] = ("openai", "fal", "replicate", "bfl", "gemini")
#: Known image model providers.
PROVIDERS: tuple[str, ...] = ("builtin", "http", *VENDOR_PROVIDERS)
#: A vendor's public API root, used when the catalog entry names no ``base_url``.
VENDOR_BASE_URLS: Mapping[str, str] = MappingProxyType({
    "openai": "https://api.openai.com/v1",
    "fal": "https://queue.fal.run",
    "replicate": "https://api.replicate.com/v1",
    "bfl": "https://api.bfl.ai/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
})
#: The environment variable holding a vendor's API key, when the entry names no ``api_key_env``.
VENDOR_KEY_ENVS: Mapping[str, str] = MappingProxyType({
    "openai": "OPENAI_API_KEY",
    "fal": "FAL_KEY",
    "replicate": "REPLICATE_API_TOKEN",
    "bfl": "BFL_API_KEY",
    "gemini": "GEMINI_API_KEY",
})
#: Renderer variants of the built-in offline models (``ModelSpec.style``).
BUILTIN_STYLES: tuple[str, ...] = ("sketch", "studio", "collage")
#: Generation parameters a node may set; anything else is rejected.
PARAM_KEYS: frozenset[str] = frozenset({"resolution", "aspect_ratio", "seed"})
#: Seeds are non-negative integers below this bound (fits a signed 32-bit int).
MAX_SEED = 2**31
DEFAULT_ASPECT_RATIO = "1:1"

_ASPECT_RE = re.compile(r"^([1-9][0-9]{0,3}):([1-9][0-9]{0,3})$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def quoted_list(values: Iterable[str]) -> str:
    return ", ".join(values)


def aspect_parts(aspect_ratio: str) -> tuple[int, int] | None:
    match = _ASPECT_RE.match(aspect_ratio)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


class SpecError(ValueError):
    """A model spec breaks rules; ``problems`` lists each one (the message joins them)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


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
    #: Vendor models only: the vendor's model name or path (``gpt-image-1``, ``fal-ai/flux/dev``,
    #: ``black-forest-labs/flux-schnell``, ``flux-pro-1.1``, ``gemini-2.5-flash-image``).
    vendor_model: str = ""
    #: Vendor models only: API root; the vendor's public one (``VENDOR_BASE_URLS``) when unset.
    base_url: str | None = None
    #: Vendor models only: the environment variable holding the key (``VENDOR_KEY_ENVS`` by default).
    api_key_env: str | None = None
    #: Vendor models only: fields sent with every request, under the ones Easel sets (JSON values).
    input: Mapping[str, object] = field(default_factory=dict, hash=False)
    #: Generations of this model in flight at once across the fleet (a vendor's per-account job
    #: cap, e.g. 24 at Black Forest Labs); None: no limit. See ``easel_shared.scheduler``.
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        # Normalise containers so specs are immutable whatever the caller passed.
        object.__setattr__(self, "resolutions", tuple(self.resolutions))
        object.__setattr__(self, "aspect_ratios", tuple(self.aspect_ratios))
        object.__setattr__(self, "credits", MappingProxyType(dict(self.credits)))
        object.__setattr__(self, "input", MappingProxyType(dict(self.input)))
        problems = _spec_problems(self)
        if problems:
            raise SpecError(problems)

    @property
    def is_vendor(self) -> bool:
        return self.provider in VENDOR_PROVIDERS

    @property
    def key_env(self) -> str | None:
        """The environment variable that must hold this model's API key (None: no key needed)."""
        if not self.is_vendor:
            return None
        return self.api_key_env or VENDOR_KEY_ENVS[self.provider]

    @property
    def api_root(self) -> str:
        """The vendor API root without a trailing slash ('' for non-vendor models)."""
        if not self.is_vendor:
            return ""
        return (self.base_url or VENDOR_BASE_URLS[self.provider]).rstrip("/")


def _spec_problems(spec: ModelSpec) -> list[str]:
    problems: list[str] = []
    if not isinstance(spec.id, str) or not _ID_RE.match(spec.id):
        problems.append(
            f"id {spec.id!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if not isinstance(spec.name, str) or not spec.name.strip():
        problems.append("name must be a non-empty string")
    if spec.provider not in PROVIDERS:
        problems.append(f"provider {spec.provider!r} is unknown; expected one of {quoted_list(PROVIDERS)}")
    if not is_int(spec.max_reference_images) or spec.max_reference_images < 0:
        problems.append(f"max_reference_images must be a non-negative integer, got {spec.max_reference_images!r}")

    resolutions = spec.resolutions
    if not resolutions:
        problems.append("resolutions must list at least one of " + quoted_list(RESOLUTIONS))
    for resolution in resolutions:
        if resolution not in LONG_SIDE:
            problems.append(f"resolution {resolution!r} is unknown; expected one of {quoted_list(RESOLUTIONS)}")
    if len(set(resolutions)) != len(resolutions):
        problems.append("resolutions contains duplicates")

    if not spec.aspect_ratios:
        problems.append("aspect_ratios must list at least one aspect ratio such as '1:1'")
    for aspect in spec.aspect_ratios:
        if not isinstance(aspect, str) or aspect_parts(aspect) is None:
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
        elif not is_int(cost):
            problems.append(f"credits for {resolution} must be a whole number, got {cost!r}")
        elif cost < 0:
            problems.append(f"credits for {resolution} must not be negative, got {cost}")

    if spec.provider == "builtin":
        if spec.style not in BUILTIN_STYLES:
            problems.append(
                f"style {spec.style!r} is unknown for a builtin model; expected one of " + quoted_list(BUILTIN_STYLES)
            )
    elif spec.provider == "http":
        endpoint = spec.endpoint
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            problems.append("an http model needs an endpoint URL starting with http:// or https://")
    elif spec.provider in VENDOR_PROVIDERS:
        problems.extend(_vendor_problems(spec))
    if spec.endpoint is not None and not isinstance(spec.endpoint, str):
        problems.append("endpoint must be a string")
    if not isinstance(spec.style, str):
        problems.append("style must be a string")

    cap = spec.max_concurrency
    if cap is not None and (not is_int(cap) or cap < 1):
        problems.append(f"max_concurrency must be a positive whole number, got {cap!r}")

    timeout = spec.timeout_seconds
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        problems.append(f"timeout_seconds must be a positive number, got {timeout!r}")
    return problems


_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _vendor_problems(spec: ModelSpec) -> list[str]:
    problems: list[str] = []
    if not isinstance(spec.vendor_model, str) or not spec.vendor_model.strip():
        problems.append(f"a {spec.provider} model needs vendor_model (the vendor's model name)")
    elif len(spec.vendor_model) > 200 or any(c.isspace() for c in spec.vendor_model):
        problems.append(f"vendor_model {spec.vendor_model!r} must be at most 200 characters without spaces")
    base = spec.base_url
    if base is not None and (not isinstance(base, str) or not base.startswith(("http://", "https://"))):
        problems.append("base_url must be a URL starting with http:// or https://")
    env = spec.api_key_env
    if env is not None and (not isinstance(env, str) or not _ENV_RE.match(env)):
        problems.append(f"api_key_env {env!r} must be an environment variable name (letters, digits, _)")
    for key in spec.input:
        if not isinstance(key, str) or not key:
            problems.append(f"input keys must be non-empty strings, got {key!r}")
    if spec.endpoint is not None:
        problems.append(f"endpoint is for http models; a {spec.provider} model takes base_url")
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
