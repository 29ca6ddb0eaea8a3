"""The shape a node's generation parameters must have whatever model is (or is not) chosen.

A node stores its parameters before it has a model, and they travel in every read and every
`node.updated` event: so their values are checked when they are set, by name and type (a
resolution Easel knows, a short 'W:H' aspect ratio, a seed in range), not only later against a
model (:func:`easel_shared.domain.catalog.validate_params`, which also checks the model offers
them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from easel_shared.domain.catalog import MAX_SEED, PARAM_KEYS, RESOLUTIONS
from easel_shared.domain.catalog.spec import aspect_parts, is_int

_MAX_LISTED: Final = 5
_MAX_ASPECT_CHARS: Final = 9  # "9999:9999"
_MAX_SHOWN_CHARS: Final = 40


def _shown(value: object) -> str:
    text = f'"{value}"' if isinstance(value, str) else type(value).__name__ if isinstance(
        value, (dict, list)) else repr(value)
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 3] + "..."


def _listed(names: list[str]) -> str:
    shown = ", ".join(_shown(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def valid_aspect_ratio(value: object) -> bool:
    return (isinstance(value, str) and len(value) <= _MAX_ASPECT_CHARS and value.isascii()
            and value == value.strip() and aspect_parts(value) is not None)


def params_problem(params: Mapping[str, object]) -> str | None:
    """``None`` if every parameter is known and well-formed, else one sentence saying why not.
    ``None`` values mean "the model's default" and are always accepted."""
    unknown = sorted(str(key) for key in params if key not in PARAM_KEYS)
    if unknown:
        noun = "parameter" if len(unknown) == 1 else "parameters"
        return f"Unknown {noun} {_listed(unknown)}; the parameters are {', '.join(sorted(PARAM_KEYS))}."
    resolution = params.get("resolution")
    if resolution is not None and not (isinstance(resolution, str) and resolution in RESOLUTIONS):
        return f"Resolution must be one of {', '.join(RESOLUTIONS)}; got {_shown(resolution)}."
    aspect = params.get("aspect_ratio")
    if aspect is not None and not valid_aspect_ratio(aspect):
        return f"Aspect ratio must be 'W:H' with whole numbers from 1 to 9999, e.g. '16:9'; got {_shown(aspect)}."
    seed = params.get("seed")
    if seed is not None and not (is_int(seed) and 0 <= seed < MAX_SEED):
        return f"Seed must be a whole number from 0 to {MAX_SEED - 1}; got {_shown(seed)}."
    return None
