"""Model catalog: sizes, prices, parameter checks, availability, parsing and loading."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from easel_shared.catalog_loader import load_builtin_catalog, load_catalog
from easel_shared.catalog_schema import parse_catalog
from easel_shared.domain.catalog import (
    BUILTIN_STYLES,
    MAX_SEED,
    Catalog,
    ModelSpec,
    availability,
    merge_catalogs,
    output_size,
    price,
    resolve_params,
    validate_params,
)

BUILTIN = load_builtin_catalog()


def builtin(model_id: str) -> ModelSpec:
    spec = BUILTIN.get(model_id)
    assert spec is not None, model_id
    return spec


def model(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "m1",
        "name": "Model One",
        "provider": "builtin",
        "style": "studio",
        "max_reference_images": 2,
        "resolutions": ["1K", "2K"],
        "aspect_ratios": ["1:1", "16:9"],
        "credits": {"1K": 3, "2K": 6},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not _DROP}


_DROP = object()


# --------------------------------------------------------------------------- output_size


@pytest.mark.parametrize(
    ("resolution", "aspect", "expected"),
    [
        ("1K", "1:1", (1024, 1024)),
        ("1K", "4:3", (1024, 768)),
        ("1K", "3:4", (768, 1024)),
        ("1K", "16:9", (1024, 576)),
        ("1K", "9:16", (576, 1024)),
        ("2K", "1:1", (2048, 2048)),
        ("2K", "4:3", (2048, 1536)),
        ("2K", "3:4", (1536, 2048)),
        ("2K", "16:9", (2048, 1152)),
        ("2K", "9:16", (1152, 2048)),
        # rounding to the nearest multiple of 8
        ("1K", "3:2", (1024, 680)),  # 682.67 -> 680
        ("2K", "3:2", (2048, 1368)),  # 1365.33 -> 1368
        ("1K", "21:9", (1024, 440)),  # 438.86 -> 440
        ("1K", "5:4", (1024, 816)),  # 819.2 -> 816
        ("1K", "2:3", (680, 1024)),
        ("1K", "2:2", (1024, 1024)),
    ],
)
def test_output_size_table(resolution: str, aspect: str, expected: tuple[int, int]) -> None:
    assert output_size(resolution, aspect) == expected


BUILTIN_COMBOS = sorted({(res, ar) for spec in BUILTIN.models for res in spec.resolutions for ar in spec.aspect_ratios})


@pytest.mark.parametrize(("resolution", "aspect"), BUILTIN_COMBOS)
def test_output_size_of_every_builtin_combination(resolution: str, aspect: str) -> None:
    width, height = output_size(resolution, aspect)
    long_side = {"1K": 1024, "2K": 2048}[resolution]
    w, h = (int(part) for part in aspect.split(":"))
    assert max(width, height) == long_side
    assert width % 8 == 0 and height % 8 == 0
    if w > h:
        assert width == long_side > height
    elif h > w:
        assert height == long_side > width
    else:
        assert width == height == long_side
    # short side is the exact ratio rounded to the nearest multiple of 8
    assert abs(min(width, height) - long_side * min(w, h) / max(w, h)) <= 4


@pytest.mark.parametrize(
    ("resolution", "aspect"),
    [("3K", "1:1"), ("1k", "1:1"), ("1K", "16x9"), ("1K", "0:1"), ("1K", "16:"), ("1K", "")],
)
def test_output_size_rejects_unknown_values(resolution: str, aspect: str) -> None:
    with pytest.raises(ValueError):
        output_size(resolution, aspect)


# --------------------------------------------------------------------------- price


@pytest.mark.parametrize(
    ("model_id", "resolution", "credits"),
    [
        ("easel-sketch", "1K", 2),
        ("easel-studio", "1K", 4),
        ("easel-studio", "2K", 8),
        ("easel-collage", "1K", 6),
        ("easel-collage", "2K", 12),
    ],
)
def test_price_table(model_id: str, resolution: str, credits: int) -> None:
    assert price(builtin(model_id), resolution) == credits


def test_price_of_unsupported_resolution_is_an_error() -> None:
    with pytest.raises(ValueError, match="Easel Sketch does not offer resolution '2K'"):
        price(builtin("easel-sketch"), "2K")


# --------------------------------------------------------------------------- validate_params


@pytest.mark.parametrize(
    ("model_id", "params", "problem"),
    [
        ("easel-studio", {}, None),
        ("easel-studio", {"resolution": "2K", "aspect_ratio": "16:9", "seed": 7}, None),
        ("easel-studio", {"resolution": None, "aspect_ratio": None, "seed": None}, None),
        ("easel-studio", {"seed": 0}, None),
        ("easel-studio", {"seed": MAX_SEED - 1}, None),
        ("easel-sketch", {"resolution": "1K"}, None),
        ("easel-sketch", {"resolution": "2K"}, 'Easel Sketch does not support resolution "2K"'),
        ("easel-studio", {"resolution": "4K"}, "does not support resolution"),
        ("easel-studio", {"resolution": 1024}, "does not support resolution 1024"),
        ("easel-studio", {"aspect_ratio": "21:9"}, 'does not support aspect ratio "21:9"'),
        ("easel-studio", {"aspect_ratio": "16x9"}, "does not support aspect ratio"),
        ("easel-studio", {"seed": -1}, "Seed must be a whole number from 0 to 2147483647"),
        ("easel-studio", {"seed": MAX_SEED}, "Seed must be a whole number"),
        ("easel-studio", {"seed": 1.5}, "Seed must be a whole number"),
        ("easel-studio", {"seed": "42"}, "Seed must be a whole number"),
        ("easel-studio", {"seed": True}, "Seed must be a whole number"),
        ("easel-studio", {"steps": 30}, "Unknown setting steps"),
        ("easel-studio", {"steps": 30, "cfg": 7}, "Unknown settings cfg, steps"),
    ],
)
def test_validate_params_table(model_id: str, params: Mapping[str, object], problem: str | None) -> None:
    result = validate_params(builtin(model_id), params)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result
        assert result.endswith(".")


def test_resolve_params_fills_defaults_and_size() -> None:
    resolved = resolve_params(builtin("easel-collage"), {"aspect_ratio": "9:16", "seed": 3})
    assert (resolved.resolution, resolved.aspect_ratio, resolved.seed) == ("1K", "9:16", 3)
    assert (resolved.width, resolved.height, resolved.credits) == (576, 1024, 6)
    defaults = resolve_params(builtin("easel-studio"), {})
    assert (defaults.resolution, defaults.aspect_ratio, defaults.seed) == ("1K", "1:1", None)
    with pytest.raises(ValueError, match="does not support resolution"):
        resolve_params(builtin("easel-sketch"), {"resolution": "2K"})


# --------------------------------------------------------------------------- availability


@pytest.mark.parametrize(
    ("model_id", "connected", "ok"),
    [
        ("easel-sketch", 0, True),
        ("easel-sketch", 1, True),
        ("easel-sketch", 2, False),
        ("easel-studio", 4, True),
        ("easel-studio", 5, False),
        ("easel-collage", 8, True),
        ("easel-collage", 9, False),
    ],
)
def test_availability_table(model_id: str, connected: int, ok: bool) -> None:
    available, reason = availability(builtin(model_id), connected)
    assert available is ok
    if ok:
        assert reason is None
    else:
        assert reason is not None
        assert f"{connected} are connected" in reason
        assert reason.endswith("Remove a reference or pick another model.")


@pytest.mark.parametrize(
    ("max_refs", "connected", "reason"),
    [
        (
            1,
            3,
            "Easel Sketch accepts at most 1 reference image; 3 are connected. "
            "Remove a reference or pick another model.",
        ),
        (
            4,
            5,
            "Easel Sketch accepts at most 4 reference images; 5 are connected. "
            "Remove a reference or pick another model.",
        ),
        (
            0,
            1,
            "Easel Sketch does not accept reference images; 1 is connected. Remove it or pick another model.",
        ),
        (
            0,
            2,
            "Easel Sketch does not accept reference images; 2 are connected. "
            "Remove the references or pick another model.",
        ),
    ],
)
def test_availability_reason_text(max_refs: int, connected: int, reason: str) -> None:
    spec = parse_catalog({"models": [model(name="Easel Sketch", max_reference_images=max_refs)]}).models[0]
    assert availability(spec, connected) == (False, reason)


def test_availability_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        availability(builtin("easel-studio"), -1)


# --------------------------------------------------------------------------- parse_catalog


def test_parse_catalog_builds_specs() -> None:
    catalog = parse_catalog(
        {
            "models": [
                model(),
                model(
                    id="vendor",
                    name="Vendor",
                    provider="http",
                    style=_DROP,
                    endpoint="https://vendor.invalid/generate",
                    timeout_seconds=12,
                    resolutions=["1K"],
                    credits={"1K": 0},
                ),
            ]
        }
    )
    assert catalog.ids() == ("m1", "vendor")
    spec = catalog.get("m1")
    assert spec is not None
    assert spec.resolutions == ("1K", "2K") and spec.aspect_ratios == ("1:1", "16:9")
    assert dict(spec.credits) == {"1K": 3, "2K": 6}
    vendor = catalog.get("vendor")
    assert vendor is not None
    assert (vendor.endpoint, vendor.timeout_seconds, vendor.style) == (
        "https://vendor.invalid/generate",
        12.0,
        "",
    )
    assert catalog.get("missing") is None
    assert len(parse_catalog({"models": []})) == 0


def test_specs_are_immutable_and_hashable() -> None:
    spec = parse_catalog({"models": [model()]}).models[0]
    with pytest.raises(TypeError):
        spec.credits["1K"] = 0  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
    assert hash(spec) == hash(parse_catalog({"models": [model()]}).models[0])
    assert spec == parse_catalog({"models": [model()]}).models[0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"models": [model(), model(name="Again")]}, "duplicate model id 'm1'"),
        ({"models": [model(credits={"1K": 3})]}, "credits missing for resolution 2K"),
        ({"models": [model(credits={"1K": 3, "2K": -1})]}, "must not be negative"),
        ({"models": [model(credits={"1K": 3, "2K": 1.5})]}, "credits for 2K must be a whole"),
        (
            {"models": [model(resolutions=["1K"], credits={"1K": 3, "2K": 6})]},
            "credits given for resolution '2K'",
        ),
        ({"models": [model(credits=[3, 6])]}, "credits must map each resolution"),
        ({"models": [model(aspect_ratios=["16x9"])]}, "aspect ratio '16x9' is invalid"),
        ({"models": [model(aspect_ratios=["0:1"])]}, "aspect ratio '0:1' is invalid"),
        ({"models": [model(aspect_ratios=[])]}, "aspect_ratios must list at least one"),
        ({"models": [model(aspect_ratios=["1:1", "1:1"])]}, "aspect_ratios contains duplicates"),
        ({"models": [model(aspect_ratios=[969])]}, "aspect_ratios must contain only strings"),
        ({"models": [model(resolutions=["4K"], credits={"4K": 1})]}, "resolution '4K' is unknown"),
        ({"models": [model(resolutions="1K")]}, "resolutions must be a list"),
        ({"models": [model(provider="magic")]}, "provider 'magic' is unknown"),
        ({"models": [model(provider="http", style="")]}, "needs an endpoint URL"),
        (
            {"models": [model(provider="http", endpoint="ftp://x")]},
            "needs an endpoint URL starting with http:// or https://",
        ),
        ({"models": [model(style="oil")]}, "style 'oil' is unknown for a builtin model"),
        ({"models": [model(max_reference_images=-1)]}, "max_reference_images must be a non-neg"),
        ({"models": [model(max_reference_images=True)]}, "max_reference_images must be a whole"),
        ({"models": [model(timeout_seconds=0)]}, "timeout_seconds must be a positive number"),
        ({"models": [model(id="has space")]}, "id 'has space' is invalid"),
        ({"models": [model(name="  ")]}, "name must be a non-empty string"),
        ({"models": [model(colour="red")]}, "unknown field(s) colour"),
        ({"models": [model(credits=_DROP, name=_DROP)]}, "missing field(s) name, credits"),
        ({"models": ["easel-sketch"]}, "models[0]: must be a mapping"),
        ({"models": {"id": "m1"}}, "'models' must be a list"),
        ({"models": [model()], "version": 2}, "unknown top-level key(s) version"),
    ],
)
def test_parse_catalog_errors(raw: Mapping[str, object], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_catalog(raw)
    assert message in str(excinfo.value)


def test_parse_catalog_reports_every_problem_with_its_model() -> None:
    raw = {"models": [model(id="a", credits={"1K": 1}), model(id="b", aspect_ratios=["wide"])]}
    with pytest.raises(ValueError) as excinfo:
        parse_catalog(raw)
    text = str(excinfo.value)
    assert "models[0] (a): credits missing for resolution 2K" in text
    assert "models[1] (b): aspect ratio 'wide' is invalid" in text


def test_parse_catalog_does_not_mutate_input() -> None:
    raw = {"models": [model()]}
    before = copy.deepcopy(raw)
    parse_catalog(raw)
    assert raw == before


def test_merge_catalogs_overrides_in_place_and_appends() -> None:
    base = parse_catalog({"models": [model(id="a"), model(id="b"), model(id="c")]})
    overlay = parse_catalog({"models": [model(id="d"), model(id="b", name="B2")]})
    merged = merge_catalogs(base, overlay)
    assert merged.ids() == ("a", "b", "c", "d")
    b = merged.get("b")
    assert b is not None and b.name == "B2"


def test_catalog_rejects_duplicate_ids_directly() -> None:
    spec = parse_catalog({"models": [model()]}).models[0]
    with pytest.raises(ValueError, match="duplicate model id"):
        Catalog((spec, spec))


# --------------------------------------------------------------------------- loader


def test_builtin_catalog_ships_three_distinct_models() -> None:
    catalog = load_catalog(None)
    assert catalog == BUILTIN
    assert catalog.ids()[:3] == ("easel-sketch", "easel-studio", "easel-collage")
    limits = {spec.max_reference_images for spec in catalog.models}
    styles = {spec.style for spec in catalog.models}
    assert len(limits) == len(catalog) >= 3
    assert styles == set(BUILTIN_STYLES)
    assert all(spec.provider == "builtin" for spec in catalog.models)
    assert builtin("easel-sketch").resolutions == ("1K",)


def test_loader_merges_operator_yaml_on_top(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        """
models:
  - id: easel-studio
    name: Easel Studio (discount)
    provider: builtin
    style: studio
    max_reference_images: 4
    resolutions: [1K]
    aspect_ratios: [1:1, 16:9, 9:16]   # unquoted ratios are read as text, not base-60
    credits: {1K: 1}
  - id: vendor-pro
    name: Vendor Pro
    provider: http
    endpoint: https://vendor.invalid/v1/images
    timeout_seconds: 30
    max_reference_images: 3
    resolutions: [1K, 2K]
    aspect_ratios: ["1:1"]
    credits: {1K: 10, 2K: 20}
""",
        encoding="utf-8",
    )
    catalog = load_catalog(str(path))
    assert catalog.ids() == ("easel-sketch", "easel-studio", "easel-collage", "vendor-pro")
    studio = catalog.get("easel-studio")
    assert studio is not None
    assert studio.name == "Easel Studio (discount)"
    assert studio.aspect_ratios == ("1:1", "16:9", "9:16")
    assert price(studio, "1K") == 1
    vendor = catalog.get("vendor-pro")
    assert vendor is not None and vendor.endpoint == "https://vendor.invalid/v1/images"
    # nothing is cached: the built-ins are untouched and a later call sees the base again
    assert load_catalog(None) == BUILTIN
    assert load_catalog(path) == catalog


def test_loader_reads_json(tmp_path: Path) -> None:
    path = tmp_path / "extra.json"
    path.write_text(
        '{"models": [{"id": "json-model", "name": "J", "provider": "builtin",'
        ' "style": "sketch", "max_reference_images": 0, "resolutions": ["1K"],'
        ' "aspect_ratios": ["1:1"], "credits": {"1K": 1}}]}',
        encoding="utf-8",
    )
    assert load_catalog(path).ids()[-1] == "json-model"


def test_loader_empty_file_keeps_builtins(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert load_catalog(path) == BUILTIN


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("models: [\n", "is not valid YAML"),
        ("- just a list\n", "must contain a mapping"),
        ("models:\n  - id: x\n", "missing field(s)"),
        (
            "models:\n  - {id: easel-sketch, name: S, provider: builtin, style: sketch,"
            " max_reference_images: 1, resolutions: [1K], aspect_ratios: ['1:1'],"
            " credits: {1K: -2}}\n",
            "must not be negative",
        ),
    ],
)
def test_loader_reports_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_catalog(path)
    assert message in str(excinfo.value)
    assert "bad.yaml" in str(excinfo.value)


def test_loader_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_catalog(tmp_path / "nope.yaml")
