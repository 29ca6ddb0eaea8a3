"""The POST generations contract: every error code, idempotency, model availability, quotes and
the generate state nodes show while a generation is active."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from easel_shared.models import Generation
from tests.fixtures.gates import ModelGate
from tests.fixtures.generation import (
    PARAMS_1K,
    SKETCH,
    STUDIO,
    accepted,
    balance,
    connect,
    generate,
    image_node,
    ledger_kinds,
    node,
    text_node,
    upload,
    wait_final,
)
from tests.fixtures.stack import Account, Stack

pytestmark = pytest.mark.integration


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()["error"]
    assert body["code"] == code, body
    assert body["message"]
    return body


def new_board(c: httpx.Client) -> str:
    r = c.post("/v1/boards", json={"name": "contract"})
    assert r.status_code == 201, r.text
    board_id: str = r.json()["id"]
    return board_id


def reserves(c: httpx.Client) -> int:
    return sum(1 for e in c.get("/v1/account/ledger", params={"limit": 200}).json()["items"] if e["kind"] == "reserve")


def test_rejected_requests_charge_nothing(stack: Stack) -> None:
    acct = stack.new_account(credits=5)
    c = acct.client
    b = new_board(c)
    n = image_node(c, b, prompt="a fox")

    error(generate(c, image_node(c, b)["id"]), 422, "prompt_required")
    error(generate(c, n["id"], "no-such-model"), 422, "unknown_model")
    error(generate(c, n["id"], SKETCH, {"resolution": "2K", "aspect_ratio": "1:1"}), 422, "unsupported_params")
    error(generate(c, n["id"], SKETCH, {"resolution": "1K", "aspect_ratio": "2:1"}), 422, "unsupported_params")
    error(generate(c, n["id"], SKETCH, {**PARAMS_1K, "steps": 30}), 422, "unsupported_params")
    error(generate(c, n["id"], STUDIO, {"resolution": "2K", "aspect_ratio": "1:1"}), 402, "insufficient_credits")
    body = error(generate(c, n["id"], SKETCH, expected_credits=3), 409, "price_changed")
    assert body["credits"] == 2

    # Two upstream image nodes, and a model that takes one reference.
    for _ in range(2):
        connect(c, b, image_node(c, b), n)
    body = error(generate(c, n["id"], SKETCH), 422, "too_many_references")
    assert "at most 1" in body["message"]

    assert balance(c) == (5, 0)
    assert reserves(c) == 0
    assert c.get(f"/v1/nodes/{n['id']}/generations").json()["items"] == []
    shown = node(c, n["id"])
    assert shown["status"] == "empty" and shown["active_generation_id"] is None

    # The right price is accepted.
    gen = accepted(c, n["id"], STUDIO, PARAMS_1K, expected_credits=4)
    assert gen["credits"] == 4
    assert wait_final(c, gen["id"])["status"] == "succeeded"


def test_models_for_a_node_grey_out_those_with_too_few_reference_slots(account: Account,
                                                                      board: dict[str, Any]) -> None:
    c, b = account.client, board["id"]
    n = image_node(c, b, prompt="a bridge")
    items = c.get(f"/v1/nodes/{n['id']}/models").json()["items"]
    assert all(m["available"] and m["reason"] is None for m in items)
    for _ in range(2):
        connect(c, b, image_node(c, b), n)
    items = {m["id"]: m for m in c.get(f"/v1/nodes/{n['id']}/models").json()["items"]}
    sketch = items[SKETCH]
    assert sketch["available"] is False
    assert sketch["reason"] == ("Easel Sketch accepts at most 1 reference image; 2 are connected. "
                                "Remove a reference or pick another model.")
    assert sketch["max_reference_images"] == 1
    assert items[STUDIO]["available"] is True and items[STUDIO]["reason"] is None
    assert set(items) == {m["id"] for m in c.get("/v1/models").json()["items"]}


@pytest.mark.parametrize(("model_id", "params", "credits"), [
    (SKETCH, {"resolution": "1K", "aspect_ratio": "16:9"}, 2),
    (STUDIO, {"resolution": "2K", "aspect_ratio": "3:4"}, 8),
])
def test_quote_is_what_the_generation_charges(stack: Stack, model_id: str, params: dict[str, Any],
                                              credits: int) -> None:
    acct = stack.new_account(credits=9)
    c = acct.client
    n = image_node(c, new_board(c), prompt="a bowl of cherries")
    q = c.post(f"/v1/nodes/{n['id']}/quote", json={"model_id": model_id, "params": params}).json()
    assert q == {"credits": credits, "balance": 9, "affordable": True}
    gen = accepted(c, n["id"], model_id, params, expected_credits=q["credits"])
    assert gen["credits"] == credits
    assert wait_final(c, gen["id"])["status"] == "succeeded"
    assert balance(c) == (9 - credits, 0)
    q = c.post(f"/v1/nodes/{n['id']}/quote", json={"model_id": model_id, "params": params}).json()
    assert q == {"credits": credits, "balance": 9 - credits, "affordable": 9 - credits >= credits}
    error(c.post(f"/v1/nodes/{n['id']}/quote", json={"model_id": "nope", "params": {}}), 422, "unknown_model")


def test_generate_state_while_generating_and_after(account: Account, board: dict[str, Any], gate: ModelGate) -> None:
    c, b = account.client, board["id"]
    up = image_node(c, b, prompt="a mountain")
    down = image_node(c, b, prompt="a lake")
    connect(c, b, up, down)
    gen = accepted(c, up["id"])

    assert node(c, up["id"])["generate"] == {"enabled": False, "reason_code": "already_generating",
                                             "reason": "An image is already being generated on this node."}
    assert node(c, down["id"])["generate"] == {"enabled": False, "reason_code": "upstream_in_progress",
                                               "reason": "Upstream task in progress."}
    assert node(c, up["id"])["toolbar"] == ["upload"]
    error(generate(c, up["id"]), 409, "already_generating")
    body = error(generate(c, down["id"]), 409, "upstream_in_progress")
    assert body["blocking_node_ids"] == [up["id"]]

    gate.open()
    assert wait_final(c, gen["id"])["status"] == "succeeded"
    for n in (up, down):
        assert node(c, n["id"])["generate"] == {"enabled": True, "reason_code": None, "reason": None}
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]


def test_a_node_waits_while_a_node_it_feeds_is_generating(account: Account, board: dict[str, Any],
                                                          gate: ModelGate) -> None:
    c, b = account.client, board["id"]
    up, down = image_node(c, b, prompt="a seed"), image_node(c, b, prompt="a tree")
    connect(c, b, up, down)
    gen = accepted(c, down["id"])
    body = error(generate(c, up["id"]), 409, "downstream_in_progress")
    assert body["blocking_node_ids"] == [down["id"]]
    assert c.post(f"/v1/generations/{gen['id']}/cancel").json()["status"] == "canceled"
    assert node(c, up["id"])["generate"]["enabled"] is True


def test_idempotency_key_replays_and_charges_once(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a teapot")
    before = balance(c)
    key = {"Idempotency-Key": "k-teapot-1"}
    first = generate(c, n["id"], headers=key)
    assert first.status_code == 202, first.text
    second = generate(c, n["id"], headers=key)
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    error(generate(c, n["id"], STUDIO, headers=key), 422, "idempotency_key_reused")

    done = wait_final(c, first.json()["id"])
    assert done["status"] == "succeeded"
    # Even after the generation finished, the key still names it.
    again = generate(c, n["id"], headers=key)
    assert again.status_code == 202 and again.json()["id"] == done["id"]
    assert ledger_kinds(c, done["id"]) == ["reserve", "capture"]
    assert balance(c) == (before[0] - 2, 0)
    assert [g["id"] for g in c.get(f"/v1/nodes/{n['id']}/generations").json()["items"]] == [done["id"]]


def test_concurrent_requests_with_one_key_create_one_generation(stack: Stack, gate: ModelGate) -> None:
    acct = stack.new_account(credits=50)
    c = acct.client
    n = image_node(c, new_board(c), prompt="a clock")
    clients = [stack.client(acct.api_key) for _ in range(8)]
    with ThreadPoolExecutor(len(clients)) as pool:
        responses = list(pool.map(lambda cl: generate(cl, n["id"], headers={"Idempotency-Key": "same"}), clients))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    gen_id = ids.pop()
    assert ledger_kinds(c, gen_id) == ["reserve"]
    assert balance(c) == (48, 2)
    c.post(f"/v1/generations/{gen_id}/cancel")
    assert balance(c) == (50, 0)


def test_text_upstream_alone_satisfies_the_prompt(account: Account, board: dict[str, Any]) -> None:
    c, b = account.client, board["id"]
    n = image_node(c, b)
    connect(c, b, text_node(c, b, "only upstream words"), n)
    connect(c, b, image_node(c, b), n)  # an upstream image node without an image adds no reference id
    upload(c, n["id"])  # the node's own image never becomes a reference
    gen = accepted(c, n["id"])
    assert gen["prompt"] == "only upstream words"
    assert gen["reference_image_ids"] == []
    assert wait_final(c, gen["id"])["status"] == "succeeded"


def test_the_worker_checks_the_rules_again_before_running(stack: Stack, account: Account) -> None:
    """The catalog can change between accept and run: the worker refuses a snapshot its model no
    longer supports (here: a resolution the model does not offer) and the credits come back."""
    c = account.client
    n = image_node(c, new_board(c), prompt="a kite")
    assert stack.worker is not None
    with stack.worker.paused():
        gen = accepted(c, n["id"], SKETCH)
        with Session(stack.engine) as session:
            session.execute(update(Generation).where(col(Generation.id) == gen["id"])
                            .values(params={"resolution": "2K", "aspect_ratio": "1:1", "seed": 1}))
            session.commit()
    done = wait_final(c, gen["id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "unsupported_params"
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]
    assert node(c, n["id"])["error"]["code"] == "unsupported_params"
    assert balance(c)[1] == 0


def test_bad_parameters_are_refused_when_set(stack: Stack, account: Account) -> None:
    c = account.client
    n = image_node(c, new_board(c))
    error(c.patch(f"/v1/nodes/{n['id']}", json={"params": {"steps": 30}}), 422, "unsupported_params")
    assert c.patch(f"/v1/nodes/{n['id']}", json={"model_id": SKETCH}).status_code == 200
    # Easel Sketch renders 1K only.
    error(c.patch(f"/v1/nodes/{n['id']}", json={"params": {"resolution": "2K"}}), 422, "unsupported_params")
    ok = c.patch(f"/v1/nodes/{n['id']}", json={"params": {"resolution": "1K", "aspect_ratio": "16:9"}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["params"] == {"resolution": "1K", "aspect_ratio": "16:9"}
