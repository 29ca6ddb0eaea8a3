"""Load the model catalog: the built-in ``models.yaml`` plus an optional operator file.

Nothing is cached here; callers that want a process-wide catalog keep their own copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from easel_shared.catalog_schema import parse_catalog
from easel_shared.domain.catalog import Catalog, merge_catalogs

__all__ = [
    "BUILTIN_CATALOG_RESOURCE",
    "load_builtin_catalog",
    "load_catalog",
    "load_offered_catalog",
    "offered",
    "read_catalog_file",
]

log = logging.getLogger(__name__)

BUILTIN_CATALOG_RESOURCE = "models.yaml"


class _CatalogYamlLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 base-60 integers, so ``16:9`` stays the string ``"16:9"``
    (PyYAML would otherwise read an unquoted ``16:9`` as the integer 969)."""


_INT_TAG = "tag:yaml.org,2002:int"
_CatalogYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _INT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CatalogYamlLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))


def _parse_text(text: str, source: str, *, as_json: bool) -> Catalog:
    fmt = "JSON" if as_json else "YAML"
    try:
        if as_json:
            data: object = json.loads(text)
        else:
            data = yaml.load(text, Loader=_CatalogYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        msg = f"model catalog {source} is not valid {fmt}: {exc}"
        raise ValueError(msg) from exc
    if data is None:  # an empty file declares no models
        data = {"models": []}
    if not isinstance(data, dict):
        msg = f"model catalog {source} must contain a mapping with a 'models' list"
        raise ValueError(msg)
    try:
        return parse_catalog(data)
    except ValueError as exc:
        raise ValueError(f"model catalog {source}: {exc}") from exc


def read_catalog_file(path: str | os.PathLike[str]) -> Catalog:
    """Parse one catalog file (``.json`` as JSON, anything else as YAML)."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    return _parse_text(text, str(file), as_json=file.suffix.lower() == ".json")


def load_builtin_catalog() -> Catalog:
    """The catalog shipped inside the ``easel_shared`` package."""
    text = resources.files("easel_shared").joinpath(BUILTIN_CATALOG_RESOURCE).read_text(encoding="utf-8")
    return _parse_text(text, f"(built-in {BUILTIN_CATALOG_RESOURCE})", as_json=False)


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """The built-in catalog, with the models of ``path`` (if given) merged on top.

    A model in ``path`` whose id matches a built-in one replaces it entirely; new ids are
    appended after the built-ins. Raises :class:`ValueError` for invalid content and
    :class:`OSError` (e.g. ``FileNotFoundError``) if the file cannot be read.
    """
    catalog = load_builtin_catalog()
    if path is None or str(path) == "":
        return catalog
    return merge_catalogs(catalog, read_catalog_file(path))


def offered(catalog: Catalog, environ: Mapping[str, str]) -> tuple[Catalog, list[tuple[str, str]]]:
    """The models whose API key is set in ``environ``, and ``(model id, variable)`` for the others.

    A vendor model without its key is not offered at all: not listed, and ``unknown_model`` on
    generate. Only the variable's name is ever reported, never a value.
    """
    kept, missing = [], []
    for spec in catalog.models:
        env = spec.key_env
        if env is not None and not environ.get(env, "").strip():
            missing.append((spec.id, env))
        else:
            kept.append(spec)
    return Catalog(tuple(kept)), missing


def load_offered_catalog(path: str | os.PathLike[str] | None = None,
                         environ: Mapping[str, str] | None = None) -> Catalog:
    """:func:`load_catalog` less the vendor models whose key variable is unset, logging one
    line per missing variable."""
    catalog, missing = offered(load_catalog(path), os.environ if environ is None else environ)
    by_env: dict[str, list[str]] = {}
    for model_id, env in missing:
        by_env.setdefault(env, []).append(model_id)
    for env, ids in by_env.items():
        log.warning("%s is not set: model(s) %s not offered", env, ", ".join(ids))
    return catalog
