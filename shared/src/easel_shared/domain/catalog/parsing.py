"""Overlaying catalogs.

Plain data (as read from YAML/JSON) becomes a :class:`Catalog` in
:func:`easel_shared.catalog_schema.parse_catalog`, which checks the file's shape with pydantic
(not allowed in this pure package) and leaves the rules to :class:`ModelSpec`.
"""

from __future__ import annotations

from easel_shared.domain.catalog.spec import Catalog


def merge_catalogs(base: Catalog, overlay: Catalog) -> Catalog:
    """``base`` with ``overlay`` on top: same id replaces the whole entry in place,
    new ids are appended in overlay order."""
    overrides = {spec.id: spec for spec in overlay.models}
    merged = [overrides.pop(spec.id, spec) for spec in base.models]
    merged.extend(spec for spec in overlay.models if spec.id in overrides)
    return Catalog(tuple(merged))
