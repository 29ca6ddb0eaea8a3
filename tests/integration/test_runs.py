"""Run after upstream and runs of a chain (issue 12, steps 4 and 5), with the real worker.

`after_upstream` is accepted while a node directly upstream is generating: it waits (`blocked_by`
"upstream", its node shows generating), then runs with the image its upstream just made; when the
upstream fails or is canceled it is canceled and refunded. A run generates image nodes in
dependency order, priced by one quote, all or nothing; canceling it refunds what had not run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from easel_shared.clock import as_utc
from tests.fixtures.gates import ModelGate
from tests.fixtures.generation import (
    PARAMS_1K,
    SKETCH,
    accepted,
    balance,
    connect,
    generate,
    get_gen,
    image_node,
    ledger_kinds,
    node,
    text_node,
    upload,
    wait_final,
)
from tests.fixtures.stack import Account, Stack, wait_for

pytestmark = pytest.mark.integration

SKETCH_CREDITS = 2


def when(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def new_board(c: httpx.Client) -> str:
    r = c.post("/v1/boards", json={"name": "runs"})
    assert r.status_code == 201, r.text
    board_id: str = r.json()["id"]
    return board_id


def chain(c: httpx.Client, board_id: str, count: int, prompt: str = "a lighthouse") -> list[dict[str, Any]]:
    """`count` image nodes with prompts, each feeding the next."""
    nodes = [image_node(c, board_id, prompt=f"{prompt}, step {i}") for i in range(count)]
    for source, target in zip(nodes, nodes[1:], strict=False):
        connect(c, board_id, source, target)
    return nodes


def pair(c: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Image nodes a -> b on a new board, and the balance before either generates."""
    a, b = chain(c, new_board(c), 2)
    return a, b, balance(c)[0]


def run_of(c: httpx.Client, board_id: str, run_id: str) -> dict[str, Any]:
    r = c.get(f"/v1/boards/{board_id}/runs/{run_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_run(c: httpx.Client, board_id: str, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(lambda: (r := run_of(c, board_id, run_id))["status"] != "running" and r,
                                   timeout=60, what=f"run {run_id} to finish")
    return run


def test_after_upstream_waits_then_uses_the_upstreams_new_image(account: Account, gate: ModelGate) -> None:
    c = account.client
    board_id = new_board(c)
    a = image_node(c, board_id, prompt="a red fox")
    old_image = upload(c, a["id"])["image"]["id"]
    b = image_node(c, board_id, prompt="in watercolor")
    words = text_node(c, board_id, "first words")
    connect(c, board_id, a, b)
    connect(c, board_id, words, b)
    credits_before = balance(c)[0]

    gen_a = accepted(c, a["id"])
    gate.wait_arrived(1)  # A runs (held at the gate)
    r = generate(c, b["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "upstream_in_progress", r.text  # as before
    assert r.json()["error"]["blocking_node_ids"] == [a["id"]]

    gen_b = accepted(c, b["id"], after_upstream=True)
    assert (gen_b["status"], gen_b["blocked_by"], gen_b["queue_position"]) == ("queued", "upstream", None)
    assert gen_b["waits_for"] == [gen_a["id"]]
    assert gen_b["reference_image_ids"] == [old_image]  # provisional until A finishes
    shown = node(c, b["id"])
    assert (shown["status"], shown["active_generation_id"]) == ("generating", gen_b["id"])
    assert shown["generate"]["reason_code"] == "already_generating"
    assert ledger_kinds(c, gen_b["id"]) == ["reserve"]  # reserved at accept
    assert balance(c) == (credits_before - 2 * SKETCH_CREDITS, 2 * SKETCH_CREDITS)
    # Its inputs are read when A finishes: a text edited meanwhile is what it sends.
    assert c.patch(f"/v1/nodes/{words['id']}", json={"text": "second words"}).status_code == 200
    assert get_gen(c, gen_b["id"])["blocked_by"] == "upstream"  # still waiting, whatever the scheduler does

    gate.open()
    done_a, done_b = wait_final(c, gen_a["id"]), wait_final(c, gen_b["id"])
    assert (done_a["status"], done_b["status"]) == ("succeeded", "succeeded")
    assert done_b["reference_image_ids"] == [done_a["image_id"]] != [old_image]  # the NEW image
    assert done_b["prompt"] == "second words\nin watercolor"
    assert when(done_b["started_at"]) >= when(done_a["finished_at"])
    assert ledger_kinds(c, gen_b["id"]) == ["reserve", "capture"]
    assert node(c, b["id"])["image"]["id"] == done_b["image_id"]


def test_after_upstream_is_canceled_and_refunded_when_the_upstream_fails(account: Account, gate: ModelGate,
                                                                        blocked_words: str) -> None:
    c = account.client
    board_id = new_board(c)
    a = image_node(c, board_id, prompt=f"a {blocked_words} castle")  # the built-in model refuses it
    b, d = chain(c, board_id, 2)
    connect(c, board_id, a, b)
    credits_before = balance(c)[0]

    gen_a = accepted(c, a["id"])
    gate.wait_arrived(1)
    gen_b = accepted(c, b["id"], after_upstream=True)
    gen_d = accepted(c, d["id"], after_upstream=True)  # waits for B, which waits for A
    assert (gen_d["blocked_by"], gen_d["waits_for"]) == ("upstream", [gen_b["id"]])
    gate.open()

    assert wait_final(c, gen_a["id"])["error"]["code"] == "content_rejected"
    done_b, done_d = wait_final(c, gen_b["id"]), wait_final(c, gen_d["id"])
    assert (done_b["status"], done_b["error"]["code"]) == ("canceled", "upstream_failed")
    assert (done_d["status"], done_d["error"]["code"]) == ("canceled", "upstream_canceled")
    assert done_b["started_at"] is None and done_d["started_at"] is None  # never ran
    for gen in (gen_b, gen_d):
        assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]
    assert balance(c) == (credits_before, 0)
    shown = node(c, b["id"])
    assert (shown["status"], shown["active_generation_id"], shown["generate"]["enabled"]) == ("empty", None, True)


def test_after_upstream_is_canceled_and_refunded_when_the_upstream_is_canceled(account: Account,
                                                                               gate: ModelGate) -> None:
    c = account.client
    a, b, credits_before = pair(c)
    gen_a = accepted(c, a["id"])
    gate.wait_arrived(1)
    gen_b = accepted(c, b["id"], after_upstream=True)
    r = c.post(f"/v1/generations/{gen_a['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    done_b = get_gen(c, gen_b["id"])  # settled in the cancel's own transaction
    assert (done_b["status"], done_b["error"]["code"]) == ("canceled", "upstream_canceled")
    assert ledger_kinds(c, gen_b["id"]) == ["reserve", "release"]
    assert balance(c) == (credits_before, 0)
    assert node(c, b["id"])["status"] == "empty"


def test_deleting_the_upstream_node_or_the_board_cancels_what_waits(account: Account,
                                                                   paused_worker: None) -> None:
    c = account.client
    a, b, credits_before = pair(c)
    gen_a = accepted(c, a["id"])  # queued: no worker consumes
    gen_b = accepted(c, b["id"], after_upstream=True)
    assert c.delete(f"/v1/nodes/{a['id']}").status_code == 200
    done_b = get_gen(c, gen_b["id"])
    assert (done_b["status"], done_b["error"]["code"]) == ("canceled", "upstream_canceled")
    assert get_gen(c, gen_a["id"])["error"]["code"] == "node_deleted"
    assert node(c, b["id"])["status"] == "empty"

    other = new_board(c)
    r = c.post(f"/v1/boards/{other}/runs", json={"node_ids": [n["id"] for n in chain(c, other, 3)],
                                                  "model_id": SKETCH})
    assert r.status_code == 202, r.text
    assert c.delete(f"/v1/boards/{other}").status_code == 204
    for item in r.json()["items"]:
        assert get_gen(c, item["generation"]["id"])["status"] == "canceled"
    assert balance(c) == (credits_before, 0)  # every reservation released


def test_a_chain_run_generates_in_dependency_order(account: Account, gate: ModelGate) -> None:
    c = account.client
    board_id = new_board(c)
    a, b, d = chain(c, board_id, 3)
    named = [d["id"], a["id"], b["id"]]  # any order: the run sorts them
    body = {"node_ids": named, "model_id": SKETCH, "params": PARAMS_1K}
    r = c.post(f"/v1/boards/{board_id}/runs/quote", json=body)
    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["order"] == [a["id"], b["id"], d["id"]]
    assert quote["credits"] == sum(n["credits"] for n in quote["nodes"]) == 3 * SKETCH_CREDITS
    assert quote["affordable"] and quote["balance"] == balance(c)[0]

    key = {"Idempotency-Key": "chain-1"}
    r = c.post(f"/v1/boards/{board_id}/runs", json={**body, "expected_credits": quote["credits"]}, headers=key)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["status"] == "running" and run["credits"] == quote["credits"]
    assert [i["node_id"] for i in run["items"]] == quote["order"]
    gens = [i["generation"] for i in run["items"]]
    assert [g["blocked_by"] for g in gens] == [None, "upstream", "upstream"]
    assert [g["waits_for"] for g in gens] == [[], [gens[0]["id"]], [gens[1]["id"]]]
    again = c.post(f"/v1/boards/{board_id}/runs", json={**body, "expected_credits": quote["credits"]}, headers=key)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == run["id"]  # the same run, charged once
    assert balance(c)[1] == quote["credits"]

    gate.open()
    done = wait_run(c, board_id, run["id"])
    assert done["status"] == "succeeded"
    first, second, third = (i["generation"] for i in done["items"])
    assert when(first["finished_at"]) <= when(second["started_at"])
    assert when(second["finished_at"]) <= when(third["started_at"])
    assert second["reference_image_ids"] == [first["image_id"]]
    assert third["reference_image_ids"] == [second["image_id"]]
    assert balance(c)[1] == 0
    assert [node(c, n["id"])["image"]["id"] for n in (a, b, d)] == [g["image_id"] for g in (first, second, third)]


def test_a_run_is_all_or_nothing(stack: Stack) -> None:
    acct = stack.new_account(credits=5)
    c = acct.client
    board_id = new_board(c)
    a, b, d = chain(c, board_id, 3)
    body = {"node_ids": [a["id"], b["id"], d["id"]], "model_id": SKETCH, "params": PARAMS_1K}
    assert c.post(f"/v1/boards/{board_id}/runs/quote", json=body).json()["affordable"] is False

    r = c.post(f"/v1/boards/{board_id}/runs", json=body)  # 6 credits, 5 held
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_credits", r.text
    assert r.json()["error"]["credits"] == 3 * SKETCH_CREDITS
    r = c.post(f"/v1/boards/{board_id}/runs", json={**body, "expected_credits": 5})
    assert r.status_code == 409 and r.json()["error"]["code"] == "price_changed", r.text
    assert c.patch(f"/v1/nodes/{d['id']}", json={"prompt": ""}).status_code == 200
    r = c.post(f"/v1/boards/{board_id}/runs", json={**body, "node_ids": [a["id"], d["id"]]})  # 4 credits: affordable
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["node_id"]) == ("prompt_required", d["id"])
    r = c.post(f"/v1/boards/{board_id}/runs", json={"node_ids": [a["id"]]})  # no model given, none chosen
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["node_id"]) == (422, "model_required", a["id"])
    words = text_node(c, board_id, "words")
    for bad, status, code in (([a["id"], a["id"]], 422, "validation_error"), ([], 422, "validation_error"),
                              ([words["id"]], 422, "not_an_image_node"), (["nod_missing"], 404, "not_found")):
        r = c.post(f"/v1/boards/{board_id}/runs", json={**body, "node_ids": bad})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (bad, r.text)

    # Nothing was accepted or reserved by any of them.
    assert balance(c) == (5, 0)
    assert {e["kind"] for e in c.get("/v1/account/ledger").json()["items"]} == {"grant"}
    for n in (a, b, d):
        assert node(c, n["id"])["status"] == "empty"
        assert c.get(f"/v1/nodes/{n['id']}/generations").json()["items"] == []


def test_canceling_a_run_refunds_what_had_not_run_and_keeps_what_finished(account: Account,
                                                                          gate: ModelGate) -> None:
    c = account.client
    board_id = new_board(c)
    a, b, d = chain(c, board_id, 3)
    # Each node's own model and parameters (what its panel shows) when the run names none.
    for n in (a, b, d):
        assert c.patch(f"/v1/nodes/{n['id']}", json={"model_id": SKETCH, "params": PARAMS_1K}).status_code == 200
    credits_before = balance(c)[0]
    gate.let_through(1)  # A runs to the end; B will wait at the gate
    r = c.post(f"/v1/boards/{board_id}/runs", json={"node_ids": [a["id"], b["id"], d["id"]]})
    assert r.status_code == 202, r.text
    run = r.json()
    gen_a, gen_b, gen_d = (i["generation"] for i in run["items"])
    assert wait_final(c, gen_a["id"])["status"] == "succeeded"
    gate.wait_arrived(2)  # B is running
    assert run_of(c, board_id, run["id"])["status"] == "running"

    r = c.post(f"/v1/boards/{board_id}/runs/{run['id']}/cancel")
    assert r.status_code == 200, r.text
    canceled = r.json()
    assert canceled["status"] == "canceled" and canceled["canceled_at"] is not None
    shown = {i["node_id"]: i["generation"] for i in canceled["items"]}
    assert shown[a["id"]]["status"] == "succeeded"
    for n in (b, d):
        assert (shown[n["id"]]["status"], shown[n["id"]]["error"]["code"]) == ("canceled", "run_canceled")
    assert wait_final(c, gen_b["id"])["status"] == "canceled"  # the worker let it go
    assert ledger_kinds(c, gen_a["id"]) == ["reserve", "capture"]
    for gen in (gen_b, gen_d):
        assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]
    assert balance(c) == (credits_before - SKETCH_CREDITS, 0)
    assert [node(c, n["id"])["status"] for n in (a, b, d)] == ["ready", "empty", "empty"]
    again = c.post(f"/v1/boards/{board_id}/runs/{run['id']}/cancel")  # nothing left to cancel
    assert again.status_code == 200 and again.json() == run_of(c, board_id, run["id"])


def test_another_account_gets_404_for_a_run(stack: Stack, account: Account, paused_worker: None) -> None:
    c = account.client
    board_id = new_board(c)
    (a,) = chain(c, board_id, 1)
    r = c.post(f"/v1/boards/{board_id}/runs", json={"node_ids": [a["id"]], "model_id": SKETCH})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    other = stack.new_account(credits=100).client
    other_board = new_board(other)
    for method, path, body in (
        ("GET", f"/v1/boards/{board_id}/runs/{run_id}", None),
        ("POST", f"/v1/boards/{board_id}/runs/{run_id}/cancel", None),
        ("POST", f"/v1/boards/{board_id}/runs/quote", {"node_ids": [a["id"]], "model_id": SKETCH}),
        ("POST", f"/v1/boards/{board_id}/runs", {"node_ids": [a["id"]], "model_id": SKETCH}),
        ("GET", f"/v1/boards/{other_board}/runs/{run_id}", None),  # their own board, not the run's
        ("POST", f"/v1/boards/{other_board}/runs", {"node_ids": [a["id"]], "model_id": SKETCH}),
    ):
        r = other.request(method, path, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path, r.text)
    assert run_of(c, board_id, run_id)["status"] == "running"  # untouched
    assert c.post(f"/v1/boards/{board_id}/runs/{run_id}/cancel").json()["status"] == "canceled"
