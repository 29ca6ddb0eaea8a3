"""Accounts, admin credits, the ledger, and the error envelopes every client relies on."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from tests.fixtures.stack import Account, Stack

pytestmark = pytest.mark.integration

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --------------------------------------------------------------------------- admin


def test_admin_creates_account_and_shows_key_once(stack: Stack) -> None:
    r = stack.admin().post("/v1/admin/accounts", json={"name": "Ada", "credits": 250})
    assert r.status_code == 201, r.text
    body = r.json()
    assert {"id", "name", "credits", "api_key"} <= set(body)
    assert body["name"] == "Ada"
    assert body["credits"] == 250
    key = body["api_key"]
    assert isinstance(key, str) and len(key) >= 32

    me = stack.client(key).get("/v1/account")
    assert me.status_code == 200, me.text
    assert me.json() == {**me.json(), "id": body["id"], "name": "Ada", "credits": 250, "reserved_credits": 0}
    # The key is never shown again.
    assert "api_key" not in me.json()
    assert key not in me.text


def test_api_key_is_stored_hashed(stack: Stack) -> None:
    body = stack.admin().post("/v1/admin/accounts", json={"name": "hashed"}).json()
    key = body["api_key"]
    with stack.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM accounts WHERE id = :id"), {"id": body["id"]}).mappings().all()
    assert len(rows) == 1
    for column, value in rows[0].items():
        assert key not in str(value), f"plaintext api key found in accounts.{column}"


def test_admin_create_defaults_to_zero_credits(stack: Stack) -> None:
    r = stack.admin().post("/v1/admin/accounts", json={"name": "no credits"})
    assert r.status_code == 201, r.text
    assert r.json()["credits"] == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing-name"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "x", "credits": -5}, id="negative-credits"),
        pytest.param({"name": "x", "credits": "lots"}, id="credits-not-int"),
        pytest.param({"name": "x", "surprise": 1}, id="unknown-field"),
    ],
)
def test_admin_create_validation(stack: Stack, body: dict) -> None:
    err = assert_error(stack.admin().post("/v1/admin/accounts", json=body), 422, "validation_error")
    assert err["message"]


@pytest.mark.parametrize("token", [None, "wrong-admin-token-xxxxxxxx"])
def test_admin_routes_need_the_admin_token(stack: Stack, account: Account, token: str | None) -> None:
    c = stack.client(token)
    assert_error(c.post("/v1/admin/accounts", json={"name": "x"}), 401, "unauthenticated")
    assert_error(c.post(f"/v1/admin/accounts/{account.id}/credits", json={"amount": 5, "reason": "x"}),
                 401, "unauthenticated")


def test_a_user_api_key_is_not_an_admin_token(stack: Stack, account: Account) -> None:
    assert_error(account.client.post("/v1/admin/accounts", json={"name": "x"}), 401, "unauthenticated")


def test_admin_credits_add_and_remove(stack: Stack) -> None:
    acct = stack.new_account(credits=100)
    admin = stack.admin()
    r = admin.post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": 50, "reason": "bonus"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == acct.id
    assert r.json()["credits"] == 150
    r = admin.post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": -120, "reason": "refund"})
    assert r.status_code == 200, r.text
    assert r.json()["credits"] == 30
    assert acct.client.get("/v1/account").json()["credits"] == 30


def test_admin_credits_never_go_negative(stack: Stack) -> None:
    acct = stack.new_account(credits=10)
    r = stack.admin().post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": -11, "reason": "too much"})
    assert_error(r, 402, "insufficient_credits")
    assert acct.client.get("/v1/account").json()["credits"] == 10
    r = stack.admin().post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": -10, "reason": "all"})
    assert r.status_code == 200, r.text
    assert r.json()["credits"] == 0


def test_admin_credits_unknown_account(stack: Stack) -> None:
    r = stack.admin().post("/v1/admin/accounts/acc_nope/credits", json={"amount": 1, "reason": "x"})
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize("body", [{"amount": 5}, {"reason": "x"}, {"amount": 1.5, "reason": "x"},
                                  {"amount": 5, "reason": ""}])
def test_admin_credits_validation(stack: Stack, account: Account, body: dict) -> None:
    assert_error(stack.admin().post(f"/v1/admin/accounts/{account.id}/credits", json=body), 422, "validation_error")


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer esk_not-a-real-key"}, id="wrong-key"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="not-bearer"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/account", "/v1/account/ledger", "/v1/boards", "/v1/models"])
def test_unauthenticated_envelope(stack: Stack, headers: dict, path: str) -> None:
    r = stack.client().get(path, headers=headers)
    err = assert_error(r, 401, "unauthenticated")
    assert set(err) >= {"code", "message"}


def test_admin_token_is_not_an_api_key(stack: Stack) -> None:
    assert_error(stack.admin().get("/v1/account"), 401, "unauthenticated")


def test_validation_error_envelope(stack: Stack, account: Account) -> None:
    r = account.client.post("/v1/boards", json={"name": 42, "color": "red"})
    err = assert_error(r, 422, "validation_error")
    assert "Traceback" not in r.text
    r = account.client.post("/v1/boards", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")
    r = account.client.get("/v1/account/ledger", params={"limit": 0})
    assert_error(r, 422, "validation_error")
    r = account.client.get("/v1/account/ledger", params={"limit": 201})
    assert_error(r, 422, "validation_error")
    assert err["message"]


# --------------------------------------------------------------------------- account and ledger


def test_get_account(stack: Stack) -> None:
    acct = stack.new_account(credits=77, name="Grace")
    r = acct.client.get("/v1/account")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == acct.id
    assert body["name"] == "Grace"
    assert body["credits"] == 77
    assert body["reserved_credits"] == 0


def test_ledger_records_every_change(stack: Stack) -> None:
    acct = stack.new_account(credits=100)
    admin = stack.admin()
    admin.post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": 40, "reason": "bonus"})
    admin.post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": -25, "reason": "correction"})
    r = acct.client.get("/v1/account/ledger")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    items = body["items"]
    assert len(items) == 3
    for item in items:
        assert {"id", "delta", "kind", "generation_id", "balance_after", "created_at"} <= set(item)
        assert item["generation_id"] is None
        assert RFC3339.match(item["created_at"]), item["created_at"]
    # Newest first; balance_after tells the story.
    assert [(i["delta"], i["balance_after"]) for i in items] == [(-25, 115), (40, 140), (100, 100)]
    assert len({i["id"] for i in items}) == 3


def test_ledger_is_per_account(stack: Stack) -> None:
    a = stack.new_account(credits=5)
    b = stack.new_account(credits=7)
    assert [i["delta"] for i in a.client.get("/v1/account/ledger").json()["items"]] == [5]
    assert [i["delta"] for i in b.client.get("/v1/account/ledger").json()["items"]] == [7]


def test_ledger_pagination(stack: Stack) -> None:
    acct = stack.new_account(credits=1)
    admin = stack.admin()
    for n in range(2, 7):
        r = admin.post(f"/v1/admin/accounts/{acct.id}/credits", json={"amount": n, "reason": f"grant {n}"})
        assert r.status_code == 200, r.text
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = acct.client.get("/v1/account/ledger", params=params).json()
        pages += 1
        assert len(body["items"]) <= 2
        seen += [i["delta"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert seen == [6, 5, 4, 3, 2, 1]
    assert pages == 3
    everything = acct.client.get("/v1/account/ledger", params={"limit": 200}).json()
    assert [i["delta"] for i in everything["items"]] == seen
    assert everything["next_cursor"] is None
    # An exact-fit page says there is nothing more.
    exact = acct.client.get("/v1/account/ledger", params={"limit": 6}).json()
    assert len(exact["items"]) == 6 and exact["next_cursor"] is None


def test_values_the_database_cannot_hold_are_not_server_errors(stack: Stack, account: Account) -> None:
    """A NUL character is refused by PostgreSQL: the request is at fault (422), never a 500."""
    c = account.client
    board = c.post("/v1/boards", json={"name": "nul"}).json()
    requests = [
        ("POST", "/v1/boards", {"json": {"name": "a\u0000b"}}),
        ("POST", f"/v1/boards/{board['id']}/nodes", {"json": {"kind": "text", "text": "nul\u0000"}}),
        ("GET", "/v1/nodes/nod_%00x", {}),
        ("GET", "/v1/boards", {"params": {"cursor": "\u0000"}}),
        ("GET", "/v1/account/ledger", {"params": {"cursor": "led_\u0000"}}),
    ]
    for method, path, kwargs in requests:
        r = stack.client(account.api_key).request(method, path, **kwargs)
        assert r.status_code < 500, (path, r.text)
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "validation_error"
