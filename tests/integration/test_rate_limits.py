"""Per-account rate limits are one budget shared by every api replica (a token bucket in Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from easel_api.main import create_app
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import Account, ServerThread, Stack

pytestmark = pytest.mark.integration

LIMIT = 5


@pytest.fixture
def two_limited_replicas(stack: Stack) -> Iterator[list[str]]:
    settings = stack.settings.model_copy(
        update={"rate_limit_upload_per_minute": LIMIT, "rate_limit_generate_per_minute": LIMIT}
    )
    servers = [ServerThread(create_app(settings), free_port()) for _ in range(2)]
    for s in servers:
        s.start()
    yield [s.url for s in servers]
    for s in servers:
        s.stop()


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
    # Both replicas served requests, yet only LIMIT of them got through in total.
    assert len(answers) - len(limited) == LIMIT
    assert len(limited) == 3
    body = limited[0].json()
    assert body["error"]["code"] == "rate_limited"
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
