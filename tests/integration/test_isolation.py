"""Another account's resources are `404 not_found`: never 403, never data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fixtures.stack import Account, Stack, png_bytes, wait_for

pytestmark = pytest.mark.integration

SECRET = "alice-secret-board-name"


@dataclass
class World:
    """Account A's canvas, complete with an upload, an edge and a finished generation."""

    a: Account
    b: Account
    board: dict[str, Any]
    text_node: dict[str, Any]
    image_node: dict[str, Any]
    gen_node: dict[str, Any]
    edge: dict[str, Any]
    generation: dict[str, Any]
    b_board: dict[str, Any]
    b_node: dict[str, Any]


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    a, b = stack.new_account(credits=1000), stack.new_account(credits=1000)
    c = a.client
    board = c.post("/v1/boards", json={"name": SECRET}).json()
    text = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "text", "text": SECRET}).json()
    image = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    up = c.post(f"/v1/nodes/{image['id']}/image", files={"file": ("a.png", png_bytes(), "image/png")})
    assert up.status_code == 200, up.text
    image = up.json()
    gen_node = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    edge = c.post(f"/v1/boards/{board['id']}/edges",
                  json={"source_node_id": text["id"], "target_node_id": gen_node["id"]}).json()
    model = c.get("/v1/models").json()["items"][0]
    r = c.post(f"/v1/nodes/{gen_node['id']}/generations",
               json={"model_id": model["id"], "params": {"resolution": "1K", "aspect_ratio": "1:1"}})
    assert r.status_code == 202, r.text
    gen = wait_for(lambda: (g := c.get(f"/v1/generations/{r.json()['id']}").json())["status"]
                   in ("succeeded", "failed") and g, what="generation to finish")
    assert gen["status"] == "succeeded", gen
    b_board = b.client.post("/v1/boards", json={"name": "bob"}).json()
    b_node = b.client.post(f"/v1/boards/{b_board['id']}/nodes", json={"kind": "image"}).json()
    return World(a=a, b=b, board=board, text_node=text, image_node=image, gen_node=gen_node, edge=edge,
                 generation=gen, b_board=b_board, b_node=b_node)


def assert_not_found(r: httpx.Response, *private: str) -> None:
    assert r.status_code == 404, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "not_found"
    for value in (SECRET, *private):
        assert value not in r.text


def requests_by_b(w: World) -> list[tuple[str, str, dict[str, Any]]]:
    board, img, txt, gen_node = w.board["id"], w.image_node["id"], w.text_node["id"], w.gen_node["id"]
    gen, edge, image_id = w.generation["id"], w.edge["id"], w.image_node["image"]["id"]
    model = w.generation["model_id"]
    params = {"resolution": "1K", "aspect_ratio": "1:1"}
    return [
        ("GET", f"/v1/boards/{board}", {}),
        ("DELETE", f"/v1/boards/{board}", {}),
        ("POST", f"/v1/boards/{board}/nodes", {"json": {"kind": "text", "text": "intruder"}}),
        ("POST", f"/v1/boards/{board}/edges", {"json": {"source_node_id": txt, "target_node_id": img}}),
        ("GET", f"/v1/nodes/{img}", {}),
        ("GET", f"/v1/nodes/{txt}", {}),
        ("PATCH", f"/v1/nodes/{txt}", {"json": {"text": "overwritten"}}),
        ("PATCH", f"/v1/nodes/{img}", {"json": {"position": {"x": 1, "y": 1}}}),
        ("DELETE", f"/v1/nodes/{img}", {}),
        ("DELETE", f"/v1/edges/{edge}", {}),
        ("GET", f"/v1/generations/{gen}", {}),
        ("POST", f"/v1/generations/{gen}/cancel", {}),
        ("GET", f"/v1/nodes/{gen_node}/generations", {}),
        ("POST", f"/v1/nodes/{gen_node}/generations", {"json": {"model_id": model, "prompt": "x", "params": params}}),
        ("GET", f"/v1/nodes/{img}/image/content", {}),
        ("GET", f"/v1/nodes/{img}/image/download", {}),
        ("GET", f"/v1/images/{image_id}/content", {}),
        ("GET", f"/v1/images/{image_id}/thumbnail", {}),
        ("POST", f"/v1/nodes/{gen_node}/image", {"files": {"file": ("b.png", png_bytes(), "image/png")}}),
        ("POST", f"/v1/nodes/{img}/image/crop", {"json": {"x": 0, "y": 0, "width": 8, "height": 8}}),
        ("POST", f"/v1/nodes/{gen_node}/quote", {"json": {"model_id": model, "params": params}}),
        ("GET", f"/v1/nodes/{gen_node}/models", {}),
    ]


def test_other_accounts_resources_are_not_found(world: World) -> None:
    w = world
    for method, path, kwargs in requests_by_b(w):
        r = w.b.client.request(method, path, **kwargs)
        assert_not_found(r, w.text_node["id"], w.image_node["image"]["id"])


def test_nothing_changed_for_the_owner(world: World) -> None:
    w = world
    for method, path, kwargs in requests_by_b(w):
        w.b.client.request(method, path, **kwargs)
    c = w.a.client
    board = c.get(f"/v1/boards/{w.board['id']}")
    assert board.status_code == 200
    body = board.json()
    assert {n["id"] for n in body["nodes"]} == {w.text_node["id"], w.image_node["id"], w.gen_node["id"]}
    assert [e["id"] for e in body["edges"]] == [w.edge["id"]]
    text = next(n for n in body["nodes"] if n["id"] == w.text_node["id"])
    assert text["text"] == SECRET and text["position"] == w.text_node["position"]
    image = next(n for n in body["nodes"] if n["id"] == w.image_node["id"])
    assert image["image"]["id"] == w.image_node["image"]["id"]
    assert image["position"] == w.image_node["position"]
    gen_node = next(n for n in body["nodes"] if n["id"] == w.gen_node["id"])
    assert gen_node["status"] == "ready" and gen_node["prompt"] == ""
    assert [g["id"] for g in c.get(f"/v1/nodes/{w.gen_node['id']}/generations").json()["items"]] == \
        [w.generation["id"]]
    assert c.get("/v1/account").json()["credits"] == 1000 - w.generation["credits"]
    assert w.b.client.get("/v1/account").json()["credits"] == 1000


def test_owner_still_reaches_everything(world: World) -> None:
    """The same requests succeed for A (so the 404s above are about ownership, not typos)."""
    c = world.a.client
    assert c.get(f"/v1/nodes/{world.image_node['id']}/image/content").status_code == 302
    assert c.get(f"/v1/images/{world.image_node['image']['id']}/thumbnail").status_code == 302
    assert c.get(f"/v1/generations/{world.generation['id']}").status_code == 200
    assert c.get(f"/v1/nodes/{world.gen_node['id']}/models").status_code == 200


def test_edges_between_other_accounts_nodes(world: World) -> None:
    w = world
    # B's own board, A's nodes: the nodes do not exist for B.
    r = w.b.client.post(f"/v1/boards/{w.b_board['id']}/edges",
                        json={"source_node_id": w.text_node["id"], "target_node_id": w.b_node["id"]})
    assert_not_found(r)
    r = w.b.client.post(f"/v1/boards/{w.b_board['id']}/edges",
                        json={"source_node_id": w.b_node["id"], "target_node_id": w.gen_node["id"]})
    assert_not_found(r)
    # And A cannot pull B's node into A's board either.
    r = w.a.client.post(f"/v1/boards/{w.board['id']}/edges",
                        json={"source_node_id": w.b_node["id"], "target_node_id": w.gen_node["id"]})
    assert_not_found(r)


def test_event_stream_of_another_board_is_not_found(world: World) -> None:
    with world.b.client.stream("GET", f"/v1/boards/{world.board['id']}/events", timeout=10) as r:
        assert r.status_code == 404
        assert "text/event-stream" not in r.headers.get("content-type", "")
        r.read()
        assert_not_found(r)


def test_event_stream_of_own_board_opens(world: World) -> None:
    with world.a.client.stream("GET", f"/v1/boards/{world.board['id']}/events", timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")


def test_lists_never_show_other_accounts_rows(world: World) -> None:
    w = world
    boards = w.b.client.get("/v1/boards", params={"limit": 200}).json()
    assert [b["id"] for b in boards["items"]] == [w.b_board["id"]]
    ledger = w.b.client.get("/v1/account/ledger", params={"limit": 200}).json()["items"]
    assert all(e["generation_id"] != w.generation["id"] for e in ledger)
    assert [e["delta"] for e in ledger] == [1000]
    history = w.b.client.get(f"/v1/nodes/{w.b_node['id']}/generations").json()
    assert history["items"] == []
    a_boards = w.a.client.get("/v1/boards", params={"limit": 200}).json()["items"]
    assert w.b_board["id"] not in [b["id"] for b in a_boards]
