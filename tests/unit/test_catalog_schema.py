"""The catalog file's pydantic schema and parse_catalog: vendor model fields, one line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from easel_shared.catalog_loader import read_catalog_file
from easel_shared.catalog_schema import CatalogFile, ModelEntry, parse_catalog
from easel_shared.domain.catalog import ModelSpec

_DROP = object()


def vendor(provider: str = "fal", **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": f"{provider}-model",
        "name": f"{provider.title()} Model",
        "provider": provider,
        "vendor_model": "fal-ai/flux/dev",
        "max_reference_images": 1,
        "resolutions": ["1K"],
        "aspect_ratios": ["1:1", "16:9"],
        "credits": {"1K": 5},
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not _DROP}


def only_spec(entry: dict[str, Any]) -> ModelSpec:
    catalog = parse_catalog({"models": [entry]})
    assert len(catalog) == 1
    return catalog.models[0]


def problem_lines(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValueError) as excinfo:
        parse_catalog(raw)
    header, *lines = str(excinfo.value).split("\n")
    assert header == "invalid model catalog:"
    assert all(line.startswith("  - ") for line in lines)
    return [line[len("  - "):] for line in lines]


# --------------------------------------------------------------------------- valid vendor entries


@pytest.mark.parametrize(
    ("provider", "extra", "api_root", "key_env"),
    [
        ("openai", {"vendor_model": "gpt-image-1", "input": {"quality": "high"}},
         "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("fal", {"vendor_model": "fal-ai/flux/dev", "input": {"num_inference_steps": 28, "sync_mode": True}},
         "https://queue.fal.run", "FAL_KEY"),
        ("replicate", {"vendor_model": "black-forest-labs/flux-schnell", "timeout_seconds": 120},
         "https://api.replicate.com/v1", "REPLICATE_API_TOKEN"),
        ("bfl", {"vendor_model": "flux-pro-1.1", "base_url": "https://api.eu.bfl.ai/v1/"},
         "https://api.eu.bfl.ai/v1", "BFL_API_KEY"),
        ("gemini", {"vendor_model": "gemini-2.5-flash-image", "api_key_env": "GOOGLE_AI_KEY",
                    "base_url": "http://gemini.internal:8080/v1beta", "input": {}},
         "http://gemini.internal:8080/v1beta", "GOOGLE_AI_KEY"),
    ],
)
def test_a_valid_entry_per_vendor(provider: str, extra: dict[str, Any], api_root: str, key_env: str) -> None:
    spec = only_spec(vendor(provider, **extra))
    assert spec.provider == provider and spec.is_vendor
    assert spec.vendor_model == extra["vendor_model"]
    assert spec.api_root == api_root
    assert spec.key_env == key_env
    assert dict(spec.input) == extra.get("input", {})
    assert spec.timeout_seconds == float(extra.get("timeout_seconds", 60))


def test_vendor_optional_fields_may_be_empty_yaml_values() -> None:
    spec = only_spec(vendor("openai", vendor_model="gpt-image-1", base_url=None, api_key_env=None, input=None))
    assert (spec.base_url, spec.api_key_env, dict(spec.input)) == (None, None, {})
    assert spec.api_root == "https://api.openai.com/v1" and spec.key_env == "OPENAI_API_KEY"


def test_input_is_copied_and_read_only() -> None:
    fields = {"quality": "high", "nested": {"a": [1, 2]}}
    spec = only_spec(vendor("openai", vendor_model="gpt-image-1", input=fields))
    fields["quality"] = "low"
    assert spec.input["quality"] == "high"
    with pytest.raises(TypeError):
        spec.input["quality"] = "low"  # type: ignore[index]


def test_loader_reads_vendor_entries_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        """
models:
  - id: flux-dev
    name: FLUX dev
    provider: fal
    vendor_model: fal-ai/flux/dev
    api_key_env: MY_FAL_KEY
    input: {num_inference_steps: 28}
    max_reference_images: 0
    resolutions: [1K]
    aspect_ratios: [1:1, 16:9]
    credits: {1K: 5}
""",
        encoding="utf-8",
    )
    spec = read_catalog_file(path).models[0]
    assert (spec.vendor_model, spec.key_env, dict(spec.input)) == ("fal-ai/flux/dev", "MY_FAL_KEY",
                                                                  {"num_inference_steps": 28})
    assert spec.aspect_ratios == ("1:1", "16:9")


# --------------------------------------------------------------------------- vendor field errors


@pytest.mark.parametrize("missing", [_DROP, "", "   ", None])
def test_vendor_model_is_required(missing: object) -> None:
    assert problem_lines({"models": [vendor("replicate", vendor_model=missing)]}) == [
        "models[0] (replicate-model): a replicate model needs vendor_model (the vendor's model name)"
    ]


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("ftp://files.example/v1", "base_url must be a URL starting with http:// or https://"),
        ("api.openai.com/v1", "base_url must be a URL starting with http:// or https://"),
        (5, "base_url must be a string, got 5"),
    ],
)
def test_bad_base_url(base_url: object, problem: str) -> None:
    assert problem_lines({"models": [vendor("openai", base_url=base_url)]}) == [f"models[0] (openai-model): {problem}"]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ("MY-KEY", "api_key_env 'MY-KEY' must be an environment variable name (letters, digits, _)"),
        ("1KEY", "api_key_env '1KEY' must be an environment variable name (letters, digits, _)"),
        (["FAL_KEY"], "api_key_env must be a string, got ['FAL_KEY']"),
    ],
)
def test_bad_api_key_env(env: object, problem: str) -> None:
    assert problem_lines({"models": [vendor("fal", api_key_env=env)]}) == [f"models[0] (fal-model): {problem}"]


@pytest.mark.parametrize("value", [["quality=high"], "quality: high", 3])
def test_input_must_be_a_mapping(value: object) -> None:
    (line,) = problem_lines({"models": [vendor("bfl", input=value)]})
    assert line.startswith("models[0] (bfl-model): input must map vendor field names to values, got ")


def test_input_keys_must_be_strings() -> None:
    assert problem_lines({"models": [vendor("bfl", input={1: "x"})]}) == [
        "models[0] (bfl-model): input keys must be non-empty strings, got 1"
    ]


def test_endpoint_is_not_for_vendor_models() -> None:
    assert problem_lines({"models": [vendor("gemini", endpoint="https://vendor.invalid/generate")]}) == [
        "models[0] (gemini-model): endpoint is for http models; a gemini model takes base_url"
    ]


def test_several_bad_fields_give_one_line_each() -> None:
    lines = problem_lines(
        {
            "models": [
                vendor(
                    "openai",
                    vendor_model=7,
                    base_url=["https://a"],
                    api_key_env=False,
                    input="quality",
                    timeout_seconds=True,
                    max_reference_images="2",
                    colour="red",
                )
            ]
        }
    )
    assert lines == [
        "models[0] (openai-model): unknown field(s) colour",
        "models[0] (openai-model): max_reference_images must be a whole number, got '2'",
        "models[0] (openai-model): timeout_seconds must be a positive number, got True",
        "models[0] (openai-model): vendor_model must be a string, got 7",
        "models[0] (openai-model): base_url must be a string, got ['https://a']",
        "models[0] (openai-model): api_key_env must be a string, got False",
        "models[0] (openai-model): input must map vendor field names to values, got 'quality'",
    ]


def test_every_model_is_reported_in_order() -> None:
    lines = problem_lines(
        {
            "models": [
                vendor("fal", vendor_model=_DROP),  # a rule: found once its shape is right
                vendor("openai", base_url=5, aspect_ratios=[1, 2]),  # shape, one line per field
                "flux",
                vendor("openai"),  # fine
                vendor("bfl", id="openai-model"),
            ]
        }
    )
    assert lines == [
        "models[0] (fal-model): a fal model needs vendor_model (the vendor's model name)",
        "models[1] (openai-model): aspect_ratios must contain only strings, got 1",
        "models[1] (openai-model): base_url must be a string, got 5",
        "models[2]: must be a mapping of model fields",
        "models[4] (openai-model): duplicate model id 'openai-model' (first defined at models[3])",
    ]


# --------------------------------------------------------------------------- the schema itself


def test_schema_is_strict_and_closed() -> None:
    entry = ModelEntry.model_validate(vendor("fal", timeout_seconds=30))
    assert entry.timeout_seconds == 30.0 and isinstance(entry.timeout_seconds, float)
    assert entry.style == "" and entry.endpoint is None and entry.input == {}
    for bad in ({"max_reference_images": "1"}, {"credits": {"1K": "5"}}, {"resolutions": [1]},
                {"timeout_seconds": "30"}, {"timeout_seconds": True}, {"id": 3}, {"extra": 1}):
        with pytest.raises(ValidationError):
            ModelEntry.model_validate({**vendor("fal"), **bad})
    with pytest.raises(ValidationError):
        CatalogFile.model_validate({"models": [], "version": 2})
    assert CatalogFile.model_validate({}).models == []
    assert CatalogFile.model_validate({"models": None}).models == []


def test_several_broken_rules_of_one_model_give_one_line_each() -> None:
    lines = problem_lines({"models": [vendor(vendor_model="", base_url="ftp://x", api_key_env="9 bad")]})
    assert len(lines) == 3, lines
    assert any("needs vendor_model" in line for line in lines)
    assert any("base_url must be a URL" in line for line in lines)
    assert any("api_key_env '9 bad'" in line for line in lines)
