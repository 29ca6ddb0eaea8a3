"""A 5,000-node board keeps every graph rule. The board is built in bulk through the
repositories (tests/fixtures/big_board.py), then exercised through the HTTP api only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.big_board import BigBoard, build_board
from tests.fixtures.generation import SKETCH, accepted, connect, generate, node, upload
from tests.fixtures.stack import Account, Stack

GROUPS = 600  # 3,000 nodes in groups of five
CHAIN = 2000  # plus one chain of 2,000 image nodes


@pytest.fixture
def big(stack: Stack, account: Account, board: dict[str, Any]) -> BigBoard:
    built = build_board(stack.engine, account.id, board["id"], GROUPS, chain=CHAIN)
    assert built.size == 5000
    return built


def edge(c: httpx.Client, board_id: str, source: str, target: str) -> httpx.Response:
    return c.post(f"/v1/boards/{board_id}/edges", json={"source_node_id": source, "target_node_id": target})


def test_a_cycle_through_a_long_chain_is_refused(account: Account, big: BigBoard) -> None:
    c, b, chain = account.client, big.board_id, big.chain
    closing = edge(c, b, chain[-1], chain[0])
    assert closing.status_code == 422, closing.text
    assert closing.json()["error"]["code"] == "cycle_not_allowed"
    # From the end of the chain into a group: nothing there leads back, so it is accepted ...
    grp = big.groups[7]
    assert edge(c, b, chain[-1], grp.b).status_code == 201
    # ... and the walk now follows it: chain[0] ▶ … ▶ chain[-1] ▶ b ▶ c, so c ▶ chain[0] is a ring.
    ring = edge(c, b, grp.c, chain[0])
    assert ring.status_code == 422, ring.text
    assert ring.json()["error"]["code"] == "cycle_not_allowed"
    # A shortcut along the chain's direction is no ring.
    assert edge(c, b, chain[3], chain[1500]).status_code == 201
    assert edge(c, b, chain[1000], chain[1000]).json()["error"]["code"] == "cycle_not_allowed"


def test_reference_numbering_on_the_big_board(account: Account, big: BigBoard) -> None:
    c, b = account.client, big.board_id
    target, g1, g2 = big.groups[10], big.groups[11], big.groups[12]
    first = connect(c, b, {"id": g1.a}, {"id": target.c})
    second = connect(c, b, {"id": g2.a}, {"id": target.c})
    refs = node(c, target.c)["references"]
    assert [(r["index"], r["node_id"]) for r in refs] == [(1, target.b), (2, g1.a), (3, g2.a)]
    assert refs[0]["thumbnail_url"] is None  # b holds no image yet
    assert refs[1]["thumbnail_url"] and refs[1]["edge_id"] == first["id"]
    assert c.delete(f"/v1/edges/{first['id']}").status_code == 204
    refs = node(c, target.c)["references"]
    assert [(r["index"], r["node_id"], r["edge_id"]) for r in refs] == [(1, target.b, refs[0]["edge_id"]),
                                                                       (2, g2.a, second["id"])]
    # Upstream text of a node of the big board, and the same view in the board read.
    fed = node(c, target.a)
    assert fed["upstream_text"] == [{"node_id": target.text, "text": "a lighthouse, take 10"}]
    whole = {n["id"]: n for n in c.get(f"/v1/boards/{b}").json()["nodes"]}
    assert whole[target.c] == node(c, target.c)
    assert whole[target.a] == fed


def test_generate_state_of_neighbours_on_the_big_board(account: Account, big: BigBoard,
                                                        paused_worker: None) -> None:
    c, grp = account.client, big.groups[20]
    gen = accepted(c, grp.b, SKETCH)  # stays queued: no worker consumes it
    assert gen["status"] == "queued" and gen["reference_image_ids"]
    down = node(c, grp.c)["generate"]
    assert down == {"enabled": False, "reason_code": "upstream_in_progress", "reason": "Upstream task in progress."}
    assert node(c, grp.a)["generate"]["reason_code"] == "downstream_in_progress"
    refused = generate(c, grp.c, SKETCH, prompt="a gull")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "upstream_in_progress"
    assert refused.json()["error"]["blocking_node_ids"] == [grp.b]
    # Far away on the same board nothing changed.
    assert node(c, big.groups[21].c)["generate"]["reason_code"] == "prompt_required"
    assert node(c, big.chain[1])["generate"]["enabled"] is True
    r = c.post(f"/v1/generations/{gen['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert node(c, grp.c)["generate"]["reason_code"] == "prompt_required"
    assert node(c, grp.a)["generate"]["enabled"] is True


def test_the_paged_listing_walks_every_node_once(account: Account, big: BigBoard) -> None:
    c, b = account.client, big.board_id
    first = c.get(f"/v1/boards/{b}/nodes").json()
    assert len(first["items"]) == 50 and first["next_cursor"]
    assert c.get(f"/v1/boards/{b}/nodes", params={"limit": 201}).json()["error"]["code"] == "validation_error"
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = c.get(f"/v1/boards/{b}/nodes", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ids = [n["id"] for n in seen]
    assert len(ids) == 5000 and len(set(ids)) == 5000
    whole = c.get(f"/v1/boards/{b}").json()
    assert len(whole["edges"]) == 4 * GROUPS + CHAIN - 1
    # Same order and the same views as the board read.
    assert seen == whole["nodes"]


def test_another_account_cannot_list_the_nodes(stack: Stack, big: BigBoard) -> None:
    other = stack.new_account(credits=0)
    r = other.client.get(f"/v1/boards/{big.board_id}/nodes")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_the_board_read_shows_each_node_and_edge_as_their_own_reads_do(account: Account,
                                                                      board: dict[str, Any]) -> None:
    """The board read writes the rows' times and the nodes' stored params straight into its body
    (orjson); the single reads format them in Python. A client sees the same text from both."""
    c, b = account.client, board["id"]
    made = [c.post(f"/v1/boards/{b}/nodes", json=body).json() for body in (
        {"kind": "text", "text": "une baleine 🐋, \"quoted\"\n"},
        {"kind": "image"},
        {"kind": "image"},
        {"kind": "video"},
    )]
    text, image, plain, video = (m["id"] for m in made)
    r = c.patch(f"/v1/nodes/{image}", json={"prompt": "café", "model_id": SKETCH,
                                            "params": {"resolution": "1K", "seed": 7}})
    assert r.status_code == 200, r.text
    upload(c, plain)
    edges = [connect(c, b, {"id": s}, {"id": t}) for s, t in ((text, image), (plain, image), (plain, video))]
    whole = c.get(f"/v1/boards/{b}").json()
    assert whole["nodes"] == [node(c, n) for n in sorted((text, image, plain, video))]
    assert whole["edges"] == edges
    shown = {n["id"]: n for n in whole["nodes"]}
    assert shown[image]["params"] == {"resolution": "1K", "seed": 7}
    assert shown[plain]["params"] == {} and shown[plain]["image"]["created_at"].endswith("Z")
    assert all(n["created_at"].endswith("Z") and n["updated_at"].endswith("Z") for n in whole["nodes"])
