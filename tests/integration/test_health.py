"""Health, readiness, metrics, unknown routes and the machine-readable contract."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.s3 import free_port
from tests.fixtures.stack import Account, ServerThread, Stack, make_settings, png_bytes

pytestmark = pytest.mark.integration

# Every route of API.md (methods per path) that the api service owns.
CONTRACT: dict[str, set[str]] = {
    "/v1/admin/accounts": {"post"},
    "/v1/admin/accounts/{}/credits": {"post"},
    "/v1/account": {"get"},
    "/v1/account/ledger": {"get"},
    "/v1/boards": {"get", "post"},
    "/v1/boards/{}": {"get", "delete"},
    "/v1/boards/{}/nodes": {"post"},
    "/v1/boards/{}/edges": {"post"},
    "/v1/boards/{}/events": {"get"},
    "/v1/nodes/{}": {"get", "patch", "delete"},
    "/v1/edges/{}": {"delete"},
    "/v1/models": {"get"},
    "/v1/nodes/{}/models": {"get"},
    "/v1/nodes/{}/quote": {"post"},
    "/v1/nodes/{}/generations": {"get", "post"},
    "/v1/generations/{}": {"get"},
    "/v1/generations/{}/cancel": {"post"},
    "/v1/nodes/{}/image": {"post"},
    "/v1/nodes/{}/image/crop": {"post"},
    "/v1/nodes/{}/image/content": {"get"},
    "/v1/nodes/{}/image/download": {"get"},
}


@pytest.fixture(scope="module")
def api_with_dead_storage(stack: Stack) -> Iterator[str]:
    """An api whose S3 endpoint is a port nothing listens on."""
    from easel_api.main import create_app

    port = free_port()
    settings = make_settings(**{
        **stack.settings.model_dump(),
        "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "api_public_url": f"http://127.0.0.1:{port}",
    })
    server = ServerThread(create_app(settings), port)
    server.start()
    yield server.url
    server.stop()


def test_healthz(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/healthz", timeout=10)
    assert r.status_code == 200


def test_readyz_checks_every_dependency(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}


def test_readyz_names_failed_storage(api_with_dead_storage: str) -> None:
    r = httpx.get(f"{api_with_dead_storage}/readyz", timeout=30)
    assert r.status_code == 503, r.text
    body = r.json()
    assert "storage" in body["failed"]
    assert "database" not in body["failed"] and "redis" not in body["failed"]
    assert body["checks"]["storage"] != "ok"
    assert "storage" in body["error"]["message"]
    # Still alive: liveness does not depend on storage.
    assert httpx.get(f"{api_with_dead_storage}/healthz", timeout=10).status_code == 200


def test_a_storage_outage_is_a_503_and_loses_nothing(stack: Stack, account: Account,
                                                     api_with_dead_storage: str) -> None:
    board = account.client.post("/v1/boards", json={"name": "outage"}).json()
    node = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    with httpx.Client(base_url=api_with_dead_storage, timeout=120,
                      headers={"Authorization": f"Bearer {account.api_key}"}) as c:
        r = c.post(f"/v1/nodes/{node['id']}/image", files={"file": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable"
    assert r.headers["Retry-After"]
    # Nothing half-done: the node is still empty and can take the upload once storage answers.
    assert account.client.get(f"/v1/nodes/{node['id']}").json()["status"] == "empty"
    ok = account.client.post(f"/v1/nodes/{node['id']}/image", files={"file": ("a.png", png_bytes(), "image/png")})
    assert ok.status_code == 200, ok.text


def test_metrics_are_prometheus_text(stack: Stack, account: Account) -> None:
    assert account.client.get("/v1/account").status_code == 200
    r = httpx.get(f"{stack.api_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE easel_http_request_duration_seconds histogram" in r.text
    assert re.search(r'easel_http_request_duration_seconds_count\{[^}]*route="/v1/account"[^}]*\} [1-9]', r.text)


def test_health_needs_no_api_key(stack: Stack) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{stack.api_url}{path}", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/boards/brd_x/nope"])
def test_unknown_route_is_a_404_envelope(stack: Stack, account: Account, path: str) -> None:
    for c in (account.client, stack.client()):
        r = c.get(path)
        assert r.status_code == 404, r.text
        body = r.json()
        assert body["error"]["code"] == "not_found"
        assert body["error"]["message"]


def test_wrong_method_is_an_error_envelope(account: Account) -> None:
    r = account.client.put("/v1/account")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert r.json()["error"]["message"]


def test_request_id_is_echoed(account: Account) -> None:
    r = account.client.get("/v1/account", headers={"X-Request-ID": "trace-me-123"})
    assert r.headers["x-request-id"] == "trace-me-123"
    assert account.client.get("/v1/account").headers["x-request-id"]


def test_openapi_lists_the_contract(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/openapi.json", timeout=10)
    assert r.status_code == 200
    paths = {re.sub(r"\{[^}]+\}", "{}", p): {m.lower() for m in ops} for p, ops in r.json()["paths"].items()}
    missing = {p: sorted(ms - paths.get(p, set())) for p, ms in CONTRACT.items() if not ms <= paths.get(p, set())}
    assert missing == {}
