"""Per-account rate limits are one budget shared by every api replica (a token bucket in Redis):
two api processes, requests alternating between them, one budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.processes import api_process
from tests.fixtures.stack import Account, Stack, one_database

pytestmark = [pytest.mark.integration, pytest.mark.slow, one_database()]

LIMIT = 5
BURST = 400


@pytest.fixture(scope="module")
def two_limited_replicas(stack: Stack) -> Iterator[list[str]]:
    limits = {"RATE_LIMIT_UPLOAD_PER_MINUTE": str(LIMIT), "RATE_LIMIT_GENERATE_PER_MINUTE": str(LIMIT)}
    with contextlib.ExitStack() as procs:
        yield [procs.enter_context(api_process(stack.settings, **limits)) for _ in range(2)]


def _hit(url: str, account: Account, path: str) -> httpx.Response:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {account.api_key}"}, timeout=30) as c:
        if path.endswith("/image"):
            return c.post(path, files={"file": ("a.png", b"not an image", "image/png")})
        return c.post(path, json={"model_id": "nope", "params": {}})


@pytest.mark.parametrize("kind", ["image", "generations"])
def test_two_replicas_share_one_budget(stack: Stack, account: Account, board: dict, kind: str,
                                       two_limited_replicas: list[str]) -> None:
    node = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    path = f"/v1/nodes/{node['id']}/{kind}"
    answers = [_hit(two_limited_replicas[i % 2], account, path) for i in range(LIMIT + 3)]
    limited = [r for r in answers if r.status_code == 429]
    # Both processes served requests, yet only LIMIT of them got through in total.
    assert len(answers) - len(limited) == LIMIT
    assert len(limited) == 3
    assert limited[0].json()["error"]["code"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) >= 1


def test_limits_are_per_account(stack: Stack, board: dict, account: Account,
                                two_limited_replicas: list[str]) -> None:
    other = stack.new_account()
    node = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    for _ in range(LIMIT):
        _hit(two_limited_replicas[0], account, f"/v1/nodes/{node['id']}/image")
    assert _hit(two_limited_replicas[1], account, f"/v1/nodes/{node['id']}/image").status_code == 429
    # Another account's budget is untouched (its request reaches the handler: 404 for a foreign node).
    assert _hit(two_limited_replicas[1], other, f"/v1/nodes/{node['id']}/image").status_code == 404


def test_a_burst_of_concurrent_requests_gets_only_the_budget(stack: Stack, board: dict,
                                                             two_limited_replicas: list[str]) -> None:
    """Hundreds of requests at once from one account, to one replica: the bucket still lets
    LIMIT through (the limiter must not take a busy connection pool for Redis being down)."""
    burster = stack.new_account()
    path = "/v1/nodes/nod_missing/generations"  # past the limit: 429; within it: 404 from the handler

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=two_limited_replicas[0], timeout=60,
                                     headers={"Authorization": f"Bearer {burster.api_key}"},
                                     limits=httpx.Limits(max_connections=None)) as c:
            answers = await asyncio.gather(*(c.post(path, json={"model_id": "nope", "params": {}})
                                             for _ in range(BURST)))
        return [r.status_code for r in answers]

    codes = asyncio.run(burst())
    assert set(codes) <= {404, 429}, sorted(set(codes))
    # The bucket refills LIMIT per minute, so a burst lasting a few seconds may earn one more.
    assert LIMIT <= codes.count(404) <= LIMIT + 1, codes.count(404)
