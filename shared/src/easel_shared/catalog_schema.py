"""The model catalog file's shape, checked with pydantic, and plain data to :class:`Catalog`.

Two layers, each reporting in plain sentences:

* **shape** (here): :class:`CatalogFile` / :class:`ModelEntry` say which fields exist and what
  type each one has (strict: ``"3"`` is not a number, ``true`` is not a count). Each pydantic
  error becomes one readable line per bad field (:func:`_field_sentence`).
* **meaning** (:class:`~easel_shared.domain.catalog.ModelSpec`): known provider, resolutions and
  prices that agree, vendor fields that make sense, ... Those rules stay in the pure domain
  (which may not import pydantic) because code also builds specs directly.

:func:`parse_catalog` runs both over every entry and raises one :class:`ValueError` listing every
problem, each line naming the model it is about (``models[1] (my-model): ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from easel_shared.domain.catalog import Catalog, ModelSpec

__all__ = ["CatalogFile", "ModelEntry", "parse_catalog"]

#: What an empty YAML value (``style:``) stands for: "not set", as it always has.
_NULL_MEANS: Mapping[str, Any] = {"style": "", "vendor_model": "", "input": {}}


class ModelEntry(BaseModel):
    """One entry of ``models``: field names and types only (see :class:`ModelSpec` for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr
    name: StrictStr
    provider: StrictStr
    max_reference_images: StrictInt
    #: Strict lists: a YAML ``!!set`` or any other collection is not an ordered list.
    resolutions: Annotated[list[StrictStr], Strict()]
    aspect_ratios: Annotated[list[StrictStr], Strict()]
    credits: dict[str, StrictInt]
    style: StrictStr = ""
    endpoint: StrictStr | None = None
    #: Strict float: whole numbers are accepted, ``true`` and ``"30"`` are not.
    timeout_seconds: Annotated[float, Strict()] = 60.0
    vendor_model: StrictStr = ""
    base_url: StrictStr | None = None
    api_key_env: StrictStr | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: StrictInt | None = None

    @field_validator(*_NULL_MEANS, mode="before")
    @classmethod
    def _null_is_default(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name is not None:
            default = _NULL_MEANS[info.field_name]
            return dict(default) if isinstance(default, dict) else default
        return value

    def to_spec(self) -> ModelSpec:
        """The domain spec; raises :class:`ValueError` naming every broken rule."""
        return ModelSpec(
            id=self.id,
            name=self.name,
            provider=self.provider,
            max_reference_images=self.max_reference_images,
            resolutions=tuple(self.resolutions),
            aspect_ratios=tuple(self.aspect_ratios),
            credits=self.credits,
            style=self.style,
            endpoint=self.endpoint,
            timeout_seconds=self.timeout_seconds,
            vendor_model=self.vendor_model,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            input=self.input,
            max_concurrency=self.max_concurrency,
        )


class CatalogFile(BaseModel):
    """A whole catalog file: ``{"models": [...]}`` and nothing else (no ``models`` is none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelEntry] = Field(default_factory=list)

    @field_validator("models", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


# --------------------------------------------------------------------------- pydantic errors as sentences

#: ``(where, pydantic error type)`` -> sentence. ``where`` is the field, ``field[]`` for an item
#: of a list, ``field{}`` for a value of a mapping and ``field{key}`` for one of its keys;
#: ``*`` is any string field. Placeholders: ``{field}``, ``{key}`` (mapping key), ``{value}``.
_SENTENCES: Mapping[tuple[str, str], str] = {
    ("*", "string_type"): "{field} must be a string, got {value}",
    ("max_reference_images", "int_type"): "max_reference_images must be a whole number, got {value}",
    ("timeout_seconds", "float_type"): "timeout_seconds must be a positive number, got {value}",
    ("resolutions", "list_type"): "resolutions must be a list of strings, got {value}",
    ("resolutions[]", "string_type"): "resolutions must contain only strings, got {value}",
    ("aspect_ratios", "list_type"): "aspect_ratios must be a list of strings, got {value}",
    ("aspect_ratios[]", "string_type"): "aspect_ratios must contain only strings, got {value}",
    ("credits", "dict_type"): "credits must map each resolution to a whole number of credits, got {value}",
    ("credits{}", "int_type"): "credits for {key} must be a whole number, got {value}",
    ("credits{key}", "string_type"): "credits must be keyed by resolution names such as 1K, got {key}",
    ("input", "dict_type"): "input must map vendor field names to values, got {value}",
    ("input{key}", "string_type"): "input keys must be non-empty strings, got {key}",
    ("max_concurrency", "int_type"): "max_concurrency must be a positive whole number, got {value}",
}
_LIST_FIELDS = frozenset({"resolutions", "aspect_ratios"})
_STRING_FIELDS = frozenset({"id", "name", "provider", "style", "endpoint", "vendor_model", "base_url", "api_key_env"})


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_sentence(field: str, rest: tuple[int | str, ...], error: ErrorDetails) -> tuple[tuple[object, ...], str]:
    """``(what the line is about, sentence)`` for one pydantic error under a model's ``field``.

    Several errors about the same thing (e.g. two non-string items of one list) share the first
    element, so only the first becomes a line.
    """
    key: object = None
    about: tuple[object, ...]
    if not rest:
        where, about = field, (field,)
    elif field in _LIST_FIELDS:
        where, about = f"{field}[]", (field,)
    elif rest[-1] == "[key]":
        key = rest[0]
        where, about = f"{field}{{key}}", (field, "key", key)
    else:
        key = rest[0]
        where, about = f"{field}{{}}", (field, key)
    kind = error["type"]
    template = _SENTENCES.get((where, kind))
    if template is None and field in _STRING_FIELDS and not rest:
        template = _SENTENCES.get(("*", kind))
    if template is None:  # not foreseen: pydantic's own words, still on one line about one field
        path = field + "".join(f"[{part!r}]" for part in rest)
        return about, f"{path}: {error['msg'][:1].lower()}{error['msg'][1:]}, got {_shown(error.get('input'))}"
    shown_key = key if isinstance(key, str) else _shown(key)
    return about, template.format(field=field, key=shown_key, value=_shown(error.get("input")))


class _EntryProblems:
    """The shape problems of one ``models[i]`` entry, in reading order."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.missing: list[str] = []
        self.lines: dict[tuple[object, ...], str] = {}

    def add(self, loc: tuple[int | str, ...], error: ErrorDetails) -> None:
        if not loc:  # the entry itself is not a mapping
            self.lines.setdefault(("",), "must be a mapping of model fields")
            return
        field, rest = str(loc[0]), loc[1:]
        if error["type"] == "extra_forbidden" and not rest:
            self.unknown.append(field)
        elif error["type"] == "missing" and not rest:
            self.missing.append(field)
        else:
            about, sentence = _field_sentence(field, rest, error)
            self.lines.setdefault(about, sentence)

    def sentences(self) -> list[str]:
        found = []
        if self.unknown:
            found.append(f"unknown field(s) {', '.join(sorted(self.unknown))}")
        if self.missing:
            found.append(f"missing field(s) {', '.join(self.missing)}")
        return [*found, *self.lines.values()]


def _shape_problems(exc: ValidationError) -> tuple[list[str], dict[int, list[str]]]:
    """The catalog-level sentences, and the sentences of each entry index that has any."""
    top: list[str] = []
    unknown_top: list[str] = []
    entries: dict[int, _EntryProblems] = {}
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if not loc:
            top.append("model catalog must be a mapping with a 'models' list")
        elif loc[0] != "models":
            unknown_top.append(str(loc[0]))
        elif len(loc) == 1:
            top.append(f"'models' must be a list of models, got {_shown(error.get('input'))}")
        else:
            index = loc[1] if isinstance(loc[1], int) else -1  # list positions are ints
            entries.setdefault(index, _EntryProblems()).add(loc[2:], error)
    if unknown_top:
        names = ", ".join(sorted(unknown_top))
        top.insert(0, f"model catalog has unknown top-level key(s) {names}; only 'models' is allowed")
    return top, {index: found.sentences() for index, found in sorted(entries.items())}


# --------------------------------------------------------------------------- parse_catalog


def parse_catalog(raw: Mapping[str, object]) -> Catalog:
    """Build a :class:`Catalog` from plain data (as read from YAML/JSON).

    Expected shape: ``{"models": [{"id": ..., "name": ..., ...}, ...]}``. Every problem found is
    reported in one :class:`ValueError`, one line per problem, catalog-level ones first and then
    model by model, each naming the model it is about: the shape of every entry, the rules of each
    well-shaped one, duplicate ids.
    """
    problems: list[tuple[int, str]] = []  # (model index, -1 for the catalog itself; sentence)
    entries: list[tuple[int, object, ModelEntry | None]] = []
    try:
        entries = [(index, None, entry) for index, entry in enumerate(CatalogFile.model_validate(raw).models)]
    except ValidationError as exc:
        top, by_entry = _shape_problems(exc)
        problems.extend((-1, sentence) for sentence in top)
        raw_models = raw.get("models") if isinstance(raw, Mapping) else None
        items = list(raw_models) if isinstance(raw_models, list | tuple) else []
        for index in sorted(set(range(len(items))) | set(by_entry)):
            item = items[index] if index < len(items) else None
            if index in by_entry:
                problems.extend((index, f"{_where(index, item)}: {sentence}") for sentence in by_entry[index])
            else:  # well-shaped: its rules are still checked below, in order
                entries.append((index, item, None))

    specs: list[ModelSpec] = []
    first_index: dict[str, int] = {}
    for index, item, validated in entries:
        entry = validated if validated is not None else ModelEntry.model_validate(item)
        where = f"models[{index}] ({entry.id})"
        try:
            spec = entry.to_spec()
        except ValueError as exc:
            # One line per broken rule, like the shape errors above.
            problems.extend((index, f"{where}: {text}") for text in getattr(exc, "problems", [str(exc)]))
            continue
        if spec.id in first_index:
            first = first_index[spec.id]
            problems.append((index, f"{where}: duplicate model id {spec.id!r} (first defined at models[{first}])"))
            continue
        first_index[spec.id] = index
        specs.append(spec)
    if problems:
        problems.sort(key=lambda found: found[0])  # stable: each model's lines keep their order
        raise ValueError("invalid model catalog:\n  - " + "\n  - ".join(text for _, text in problems))
    return Catalog(tuple(specs))


def _where(index: int, item: object) -> str:
    if isinstance(item, Mapping) and isinstance(item.get("id"), str):
        return f"models[{index}] ({item['id']})"
    return f"models[{index}]"
