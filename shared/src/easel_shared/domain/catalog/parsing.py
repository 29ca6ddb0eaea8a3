"""Building a catalog from plain data (as read from YAML/JSON), and overlaying catalogs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from easel_shared.domain.catalog.spec import Catalog, ModelSpec, is_int, quoted_list

_REQUIRED_MODEL_KEYS = (
    "id",
    "name",
    "provider",
    "max_reference_images",
    "resolutions",
    "aspect_ratios",
    "credits",
)
_MODEL_KEYS = frozenset({*_REQUIRED_MODEL_KEYS, "style", "endpoint", "timeout_seconds"})


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
        problems.append(f"unknown field(s) {quoted_list(unknown)}")
    missing = [k for k in _REQUIRED_MODEL_KEYS if k not in raw]
    if missing:
        problems.append(f"missing field(s) {quoted_list(missing)}")
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
    if not is_int(max_refs):
        problems.append(f"max_reference_images must be a whole number, got {max_refs!r}")
    resolutions = _as_str_tuple(raw["resolutions"], "resolutions", problems)
    aspect_ratios = _as_str_tuple(raw["aspect_ratios"], "aspect_ratios", problems)
    credits_raw = raw["credits"]
    credits: dict[str, int] = {}
    if not isinstance(credits_raw, Mapping):
        problems.append("credits must map each resolution to a whole number of credits")
    else:
        for res, cost in credits_raw.items():
            if is_int(cost):
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
        or not is_int(max_refs)
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
            f"model catalog has unknown top-level key(s) {quoted_list(unknown_top)}; only 'models' is allowed"
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
