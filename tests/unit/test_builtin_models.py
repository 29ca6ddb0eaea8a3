"""Built-in offline models: deterministic, prompt- and reference-aware Pillow renders."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from PIL import Image, ImageChops, ImageStat

from easel_shared.catalog_loader import load_builtin_catalog
from easel_shared.domain.catalog import BUILTIN_STYLES, ModelSpec, output_size
from easel_worker.models import (
    BuiltinProvider,
    GenerationInput,
    HttpProvider,
    ModelError,
    provider_for,
)

CATALOG = load_builtin_catalog()
SPECS = {spec.style: spec for spec in CATALOG.models}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def never() -> bool:
    return False


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    return encode(Image.new("RGB", size, color))


def generate(
    style: str = "studio",
    prompt: str = "a lighthouse on a cliff",
    size: tuple[int, int] = (512, 384),
    seed: int = 7,
    references: Sequence[bytes] = (),
    provider: BuiltinProvider | None = None,
) -> bytes:
    inp = GenerationInput(prompt, size[0], size[1], seed, references, SPECS[style])
    return (provider or BuiltinProvider()).generate(inp, should_cancel=never)


def open_png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE)
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img.convert("RGB")


def share_close_to(img: Image.Image, color: tuple[int, int, int], tolerance: int = 40) -> float:
    """Fraction of pixels whose every channel is within ``tolerance`` of ``color``."""
    diff = ImageChops.difference(img, Image.new("RGB", img.size, color))
    masks = [band.point(lambda v: 255 if v <= tolerance else 0) for band in diff.split()]
    both = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
    return both.histogram()[255] / (img.width * img.height)


# --------------------------------------------------------------------------- size & format

SIZE_CASES = [
    (CATALOG.models[i % len(CATALOG.models)].style, res, ar)
    for i, (res, ar) in enumerate(
        sorted({(r, a) for s in CATALOG.models for r in s.resolutions for a in s.aspect_ratios})
    )
]


@pytest.mark.parametrize(("style", "resolution", "aspect"), SIZE_CASES)
def test_output_has_exact_size_for_every_resolution_and_aspect(style: str, resolution: str, aspect: str) -> None:
    width, height = output_size(resolution, aspect)
    refs = [solid((200, 40, 40)), solid((40, 40, 200), (100, 300))][: SPECS[style].max_reference_images]
    img = open_png(generate(style, size=(width, height), references=refs))
    assert img.size == (width, height)


@pytest.mark.parametrize("style", BUILTIN_STYLES)
@pytest.mark.parametrize("size", [(1, 1), (37, 100), (100, 37), (257, 129), (64, 900)])
def test_odd_and_tiny_sizes_still_render_exactly(style: str, size: tuple[int, int]) -> None:
    refs = [solid((0, 255, 0))]
    img = open_png(generate(style, prompt="x " * 200, size=size, references=refs))
    assert img.size == size


def test_every_catalog_style_is_rendered() -> None:
    assert set(SPECS) == set(BUILTIN_STYLES)
    renders = {style: generate(style) for style in BUILTIN_STYLES}
    assert len(set(renders.values())) == len(BUILTIN_STYLES)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("style", BUILTIN_STYLES)
def test_same_input_gives_byte_identical_png(style: str) -> None:
    refs = [solid((0, 120, 255)), encode(Image.linear_gradient("L").convert("RGB"), "JPEG")]
    refs = refs[: SPECS[style].max_reference_images]
    first = generate(style, references=refs)
    second = generate(style, references=refs, provider=BuiltinProvider())
    assert first == second


@pytest.mark.parametrize("style", BUILTIN_STYLES)
def test_different_seeds_differ(style: str) -> None:
    assert generate(style, seed=1) != generate(style, seed=2)


@pytest.mark.parametrize("style", BUILTIN_STYLES)
def test_different_prompts_differ(style: str) -> None:
    a = open_png(generate(style, prompt="a quiet harbour at night"))
    b = open_png(generate(style, prompt="a crowded market at noon"))
    # more than the caption changes: the picture area above it differs too
    top = (0, 0, a.width, a.height // 2)
    assert ImageChops.difference(a.crop(top), b.crop(top)).getbbox() is not None


# --------------------------------------------------------------------------- prompt shapes picture


@pytest.mark.parametrize("style", BUILTIN_STYLES)
@pytest.mark.parametrize(
    ("prompt", "strong", "weak"),
    [
        ("a red apple on a wooden table", 0, 2),
        ("a blue whale gliding through the ocean", 2, 0),
        ("green hills under a cloudy sky", 1, 0),
    ],
)
def test_colour_word_dominates_palette(style: str, prompt: str, strong: int, weak: int) -> None:
    img = open_png(generate(style, prompt=prompt, seed=3))
    mean = ImageStat.Stat(img).mean
    assert mean[strong] > mean[weak] + 20, mean


def test_colour_words_flip_the_palette() -> None:
    red = ImageStat.Stat(open_png(generate(prompt="a red kite"))).mean
    blue = ImageStat.Stat(open_png(generate(prompt="a blue kite"))).mean
    assert red[0] > red[2] and blue[2] > blue[0]


def test_black_and_white_set_the_brightness() -> None:
    dark = ImageStat.Stat(open_png(generate(prompt="a black cat at midnight"))).mean
    light = ImageStat.Stat(open_png(generate(prompt="a white cat on snow"))).mean
    assert sum(light) > sum(dark) + 150


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("style", BUILTIN_STYLES)
def test_reference_visibly_appears(style: str) -> None:
    green = (0, 255, 0)
    without = open_png(generate(style, prompt="a calm landscape", size=(768, 576)))
    with_ref = open_png(generate(style, prompt="a calm landscape", size=(768, 576), references=[solid(green)]))
    assert share_close_to(without, green) < 0.005
    assert share_close_to(with_ref, green) > 0.05


def test_all_connected_references_appear() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    img = open_png(
        generate(
            "collage",
            prompt="mood board",
            size=(1024, 1024),
            references=[solid(c) for c in colours],
        )
    )
    for colour in colours:
        assert share_close_to(img, colour, tolerance=30) > 0.02, colour


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_reference_formats_and_transparency(fmt: str) -> None:
    mode = "RGBA" if fmt != "JPEG" else "RGB"
    ref = Image.new(mode, (200, 120), (0, 255, 0, 255) if mode == "RGBA" else (0, 255, 0))
    img = open_png(generate("collage", references=[encode(ref, fmt)]))
    assert share_close_to(img, (0, 255, 0)) > 0.05


def test_unreadable_reference_is_a_permanent_model_error() -> None:
    with pytest.raises(ModelError) as excinfo:
        generate("studio", references=[solid((1, 2, 3)), b"definitely not an image"])
    assert excinfo.value.code == "model_error"
    assert excinfo.value.transient is False
    assert "Reference image 2" in excinfo.value.message


def test_more_references_than_the_model_accepts_is_refused() -> None:
    with pytest.raises(ModelError) as excinfo:
        generate("sketch", references=[solid((0, 0, 0)), solid((9, 9, 9))])
    assert excinfo.value.code == "model_error"


# --------------------------------------------------------------------------- blocked words


@pytest.mark.parametrize(
    ("prompt", "blocked"),
    [
        ("a forbidden garden", True),
        ("A FORBIDDEN garden", True),
        ("forbidden!", True),
        ("the (Forbidden) city", True),
        ("a forbiddenness study", False),
        ("unforbidden fruit", False),
        ("a cursed painting", True),
        ("a cursedly bright day", False),
        ("dark magic show", True),
        ("dark and magic", False),
        ("a sunny meadow", False),
    ],
)
def test_blocked_words_are_whole_word_and_case_insensitive(prompt: str, blocked: bool) -> None:
    provider = BuiltinProvider(blocked_words=["forbidden", "Cursed", "dark magic", "  "])
    if not blocked:
        assert generate(prompt=prompt, provider=provider).startswith(PNG_SIGNATURE)
        return
    with pytest.raises(ModelError) as excinfo:
        generate(prompt=prompt, provider=provider)
    error = excinfo.value
    assert error.code == "content_rejected"
    assert error.transient is False
    assert error.message == "The model refused this prompt: it contains blocked content."


# --------------------------------------------------------------------------- latency & cancel


def test_cancel_during_latency_raises_canceled() -> None:
    calls: list[int] = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 1  # False on the first call, True afterwards

    provider = BuiltinProvider(latency_ms=60_000)
    inp = GenerationInput("slow", 64, 64, 1, (), SPECS["studio"])
    with pytest.raises(ModelError) as excinfo:
        provider.generate(inp, should_cancel=should_cancel)
    assert excinfo.value.code == "canceled"
    assert len(calls) == 2


def test_latency_polls_for_cancel_between_slices() -> None:
    calls: list[int] = []

    def should_cancel() -> bool:
        calls.append(1)
        return False

    provider = BuiltinProvider(latency_ms=120)
    inp = GenerationInput("waits a little", 64, 64, 1, (), SPECS["sketch"])
    assert provider.generate(inp, should_cancel=should_cancel).startswith(PNG_SIGNATURE)
    assert len(calls) >= 2  # slices of at most 50 ms, checked in between


def test_cancel_is_checked_even_without_latency() -> None:
    inp = GenerationInput("now", 64, 64, 1, (), SPECS["collage"])
    with pytest.raises(ModelError) as excinfo:
        BuiltinProvider().generate(inp, should_cancel=lambda: True)
    assert excinfo.value.code == "canceled"


def test_negative_latency_is_rejected() -> None:
    with pytest.raises(ValueError):
        BuiltinProvider(latency_ms=-1)


# --------------------------------------------------------------------------- plumbing


@pytest.mark.parametrize(("width", "height", "seed"), [(0, 10, 1), (10, -1, 1), (10, 10, -5)])
def test_generation_input_validates(width: int, height: int, seed: int) -> None:
    with pytest.raises(ValueError):
        GenerationInput("p", width, height, seed, (), SPECS["studio"])


def test_model_error_defaults_transient_by_code() -> None:
    assert ModelError("model_timeout", "slow").transient is True
    assert ModelError("model_unavailable", "down").transient is True
    assert ModelError("content_rejected", "no").transient is False
    assert ModelError("model_error", "bad").transient is False
    assert ModelError("canceled", "stop").transient is False
    err = ModelError("model_error", "bad", transient=True)
    assert (err.code, err.message, err.transient, str(err)) == ("model_error", "bad", True, "bad")


def test_registry_picks_provider_by_spec() -> None:
    provider = provider_for(SPECS["studio"], latency_ms=5, blocked_words=["nope"])
    assert isinstance(provider, BuiltinProvider)
    assert provider.latency_ms == 5 and provider.blocked_words == ("nope",)
    http_spec = ModelSpec(
        id="vendor",
        name="Vendor",
        provider="http",
        max_reference_images=2,
        resolutions=("1K",),
        aspect_ratios=("1:1",),
        credits={"1K": 5},
        endpoint="http://127.0.0.1:9/generate",
    )
    assert isinstance(provider_for(http_spec, latency_ms=0, blocked_words=()), HttpProvider)
