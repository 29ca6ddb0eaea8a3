"""Model catalog: which image models exist, what they accept and what they cost.

Pure domain code: standard library only (no I/O, no framework imports). Reading the
catalog file lives in :mod:`easel_shared.catalog_loader`.

Layout: :mod:`.spec` (:class:`ModelSpec`, :class:`Catalog` and their invariants), :mod:`.params`
(output size, price, parameter checks and defaults, availability), :mod:`.parsing` (overlays).
Plain data becomes a :class:`Catalog` in :func:`easel_shared.catalog_schema.parse_catalog`.
"""

from easel_shared.domain.catalog.params import (
    ResolvedParams,
    availability,
    output_size,
    price,
    resolve_params,
    validate_params,
)
from easel_shared.domain.catalog.parsing import merge_catalogs
from easel_shared.domain.catalog.spec import (
    BUILTIN_STYLES,
    DEFAULT_ASPECT_RATIO,
    LONG_SIDE,
    MAX_SEED,
    PARAM_KEYS,
    PROVIDERS,
    RESOLUTIONS,
    Catalog,
    ModelSpec,
)

__all__ = [
    "BUILTIN_STYLES",
    "DEFAULT_ASPECT_RATIO",
    "LONG_SIDE",
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
    "price",
    "resolve_params",
    "validate_params",
]
