"""The pure parts of input hardening: parameter shapes, JSON bounds, stream ids, the decode budget."""

from __future__ import annotations

import threading

import pytest

from easel_api.live import resume_id
from easel_shared.domain.node_params import params_problem
from easel_shared.http_errors import validation_summary
from easel_shared.http_limits import MAX_JSON_DEPTH, is_json, json_problem
from easel_shared.imaging.budget import DecodeBudget, bytes_per_pixel, image_bytes
from tests.fixtures.stack import wait_for


@pytest.mark.parametrize("params", [
    {}, {"resolution": "1K"}, {"resolution": "2K", "aspect_ratio": "21:9", "seed": 0},
    {"seed": 2**31 - 1}, {"aspect_ratio": "9999:1"}, {"resolution": None, "aspect_ratio": None, "seed": None},
])
def test_well_formed_params(params: dict[str, object]) -> None:
    assert params_problem(params) is None


@pytest.mark.parametrize("params, says", [
    ({"resolution": "4K"}, "Resolution must be one of 1K, 2K"),
    ({"resolution": ["1K"]}, "got list"),
    ({"aspect_ratio": "0:1"}, "Aspect ratio"),
    ({"aspect_ratio": "10000:1"}, "Aspect ratio"),
    ({"aspect_ratio": "16:9 "}, "Aspect ratio"),
    ({"aspect_ratio": "\uff11:1"}, "Aspect ratio"),  # a full-width digit
    ({"seed": "1"}, "Seed"),
    ({"seed": False}, "Seed"),
    ({"seed": 2**31}, "Seed"),
    ({f"k{i}": 1 for i in range(1000)}, "and 995 more"),
])
def test_malformed_params(params: dict[str, object], says: str) -> None:
    problem = params_problem(params)
    assert problem is not None and says in problem and len(problem) < 300


def test_a_huge_value_is_not_echoed_whole() -> None:
    problem = params_problem({"resolution": "x" * 5_000_000})
    assert problem is not None and len(problem) < 200


@pytest.mark.parametrize("body", [b"{}", b'{"a": [1, 2.5, -3e10, "x", null, true]}',
                                  b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, b'"\\ud800"'])
def test_json_within_bounds(body: bytes) -> None:
    assert json_problem(body) is None


@pytest.mark.parametrize("body, says", [
    (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "levels deep"),
    (b'{"a": ' * 40 + b"1" + b"}" * 40, "levels deep"),
    (b"[" * 100_000, "levels deep"),
    (b"1" * 101, "longer than 100"),
    (b"[Infinity]", "Infinity is not a JSON value"),
    (b"{", "line 1, column 2"),
    (b"\xfe\xff", "not UTF-8"),
])
def test_json_out_of_bounds(body: bytes, says: str) -> None:
    problem = json_problem(body)
    assert problem is not None and says in problem


@pytest.mark.parametrize("content_type, expected", [
    ("application/json", True), ("Application/JSON; charset=utf-8", True), ("application/problem+json", True),
    ("text/json", False), ("multipart/form-data; boundary=x", False), ("", False),
])
def test_which_bodies_are_json(content_type: str, expected: bool) -> None:
    assert is_json(content_type) is expected


def test_validation_summaries_are_bounded() -> None:
    errors = [{"loc": ("body", "k" * 10_000), "msg": "Extra inputs are not permitted" * 100}] * 100_000
    message, details, total = validation_summary(errors)
    assert total == 100_000 and len(details) == 10
    assert len(message) <= 1000 and "99999 other problems" in message
    assert all(len(d["message"]) <= 200 and all(len(p) <= 64 for p in d["loc"]) for d in details)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("1700000000000-0", "1700000000000-0"),
    (f"{2**64 - 1}-{2**64 - 1}", f"{2**64 - 1}-{2**64 - 1}"),
    ("1-", None), ("1", None), (f"{2**64}-0", None), ("9" * 5000, None), ("\u00b2-0", None), ("\u0661-0", None),
])
def test_resume_ids(value: str | None, expected: str | None) -> None:
    assert resume_id(value) == expected


def test_bytes_per_pixel() -> None:
    assert [bytes_per_pixel(m) for m in ("L", "P", "I;16", "RGB", "RGBA", "CMYK")] == [1, 1, 2, 4, 4, 4]
    assert image_bytes(7071, 7071) == 7071 * 7071 * 4


def test_the_budget_holds_back_what_does_not_fit_and_serves_in_order() -> None:
    budget = DecodeBudget(100)
    order: list[str] = []

    def take(name: str, size: int) -> None:
        with budget.reserve(size):
            order.append(name)

    with budget.reserve(60):
        big = threading.Thread(target=take, args=("big", 80))
        big.start()
        wait_for(lambda: budget.waiting == 1, what="the big reservation to wait")
        # A small one would fit beside the first, but it queues behind the big one.
        small = threading.Thread(target=take, args=("small", 10))
        small.start()
        wait_for(lambda: budget.waiting == 2, what="the small reservation to wait")
        assert order == [] and budget.in_use == 60
    big.join(5)
    small.join(5)
    assert order == ["big", "small"]
    assert budget.in_use == 0 and budget.waiting == 0


def test_an_image_larger_than_the_budget_runs_alone() -> None:
    budget = DecodeBudget(100)
    with budget.reserve(10_000):
        assert budget.in_use == 100
    assert budget.in_use == 0
