"""Boards, nodes and connections through HTTP: the canvas rules a user sees."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.fixtures.stack import Account, Stack, one_database, png_bytes

pytestmark = [pytest.mark.integration, one_database("sqlite")]

KINDS = ("text", "image", "video")
ALLOWED = {("text", "text"), ("text", "image"), ("text", "video"),
           ("image", "text"), ("image", "image"), ("image", "video")}
PROMPT_REQUIRED = {"enabled": False, "reason_code": "prompt_required",
                   "reason": "Write a prompt or connect an upstream Text Node."}


def new_node(c: httpx.Client, board_id: str, kind: str, **body: Any) -> dict[str, Any]:
    r = c.post(f"/v1/boards/{board_id}/nodes", json={"kind": kind, **body})
    assert r.status_code == 201, r.text
    return r.json()


def connect(c: httpx.Client, board_id: str, source: str, target: str) -> httpx.Response:
    return c.post(f"/v1/boards/{board_id}/edges", json={"source_node_id": source, "target_node_id": target})


def edge(c: httpx.Client, board_id: str, source: str, target: str) -> dict[str, Any]:
    r = connect(c, board_id, source, target)
    assert r.status_code == 201, r.text
    return r.json()


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return r.json()["error"]["code"]


def get_node(c: httpx.Client, node_id: str) -> dict[str, Any]:
    r = c.get(f"/v1/nodes/{node_id}")
    assert r.status_code == 200, r.text
    return r.json()


def upload(c: httpx.Client, node_id: str, data: bytes | None = None) -> dict[str, Any]:
    r = c.post(f"/v1/nodes/{node_id}/image", files={"file": ("a.png", data or png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- boards


def test_board_crud(account: Account) -> None:
    c = account.client
    r = c.post("/v1/boards", json={"name": "Moodboard"})
    assert r.status_code == 201, r.text
    board = r.json()
    assert board["name"] == "Moodboard"
    assert {"id", "name", "created_at", "updated_at"} <= set(board)
    got = c.get(f"/v1/boards/{board['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["name"] == "Moodboard"
    assert got.json()["nodes"] == [] and got.json()["edges"] == []
    assert c.delete(f"/v1/boards/{board['id']}").status_code == 204
    assert error_code(c.get(f"/v1/boards/{board['id']}"), 404) == "not_found"
    assert error_code(c.delete(f"/v1/boards/{board['id']}"), 404) == "not_found"


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 201}, {"name": None}])
def test_board_validation(account: Account, body: dict[str, Any]) -> None:
    assert error_code(account.client.post("/v1/boards", json=body), 422) == "validation_error"


def test_board_list_pagination(stack: Stack) -> None:
    acct = stack.new_account()
    names = [f"b{i}" for i in range(5)]
    for name in names:
        assert acct.client.post("/v1/boards", json={"name": name}).status_code == 201
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        body = acct.client.get("/v1/boards", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(body["items"]) <= 2
        seen += [b["name"] for b in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == names and len(seen) == 5
    default = acct.client.get("/v1/boards").json()
    assert len(default["items"]) == 5 and default["next_cursor"] is None


def test_delete_board_removes_its_nodes(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    a = new_node(c, board["id"], "text", text="hi")
    b = new_node(c, board["id"], "image")
    e = edge(c, board["id"], a["id"], b["id"])
    upload(c, b["id"])
    assert c.delete(f"/v1/boards/{board['id']}").status_code == 204
    assert error_code(c.get(f"/v1/nodes/{a['id']}"), 404) == "not_found"
    assert error_code(c.get(f"/v1/nodes/{b['id']}"), 404) == "not_found"
    assert error_code(c.delete(f"/v1/edges/{e['id']}"), 404) == "not_found"
    assert board["id"] not in [x["id"] for x in c.get("/v1/boards", params={"limit": 200}).json()["items"]]


# --------------------------------------------------------------------------- nodes


def test_node_create_get_patch(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    txt = new_node(c, board["id"], "text", text="hello", position={"x": 10.5, "y": -3})
    assert txt["kind"] == "text" and txt["text"] == "hello" and txt["board_id"] == board["id"]
    assert txt["position"] == {"x": 10.5, "y": -3}
    assert get_node(c, txt["id"]) == txt
    r = c.patch(f"/v1/nodes/{txt['id']}", json={"text": "bye", "position": {"x": 1, "y": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "bye" and r.json()["position"] == {"x": 1, "y": 2}
    assert get_node(c, txt["id"])["text"] == "bye"

    img = new_node(c, board["id"], "image")
    assert img["status"] == "empty" and img["image"] is None and img["prompt"] == ""
    assert img["references"] == [] and img["upstream_text"] == [] and img["error"] is None
    assert img["active_generation_id"] is None
    r = c.patch(f"/v1/nodes/{img['id']}", json={"prompt": "a red fox"})
    assert r.status_code == 200, r.text
    assert r.json()["prompt"] == "a red fox"
    assert r.json()["position"] == img["position"]

    vid = new_node(c, board["id"], "video")
    assert vid["kind"] == "video" and vid["references"] == []
    board_view = c.get(f"/v1/boards/{board['id']}").json()
    assert {n["id"] for n in board_view["nodes"]} == {txt["id"], img["id"], vid["id"]}


def test_text_length_limit(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    ok = new_node(c, board["id"], "text", text="x" * 5000)
    assert len(ok["text"]) == 5000
    r = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "text", "text": "x" * 5001})
    assert error_code(r, 422) == "validation_error"
    assert error_code(c.patch(f"/v1/nodes/{ok['id']}", json={"text": "y" * 5001}), 422) == "validation_error"
    assert get_node(c, ok["id"])["text"] == "x" * 5000
    # The limit counts characters, not bytes.
    wide = new_node(c, board["id"], "text", text="🦊" * 5000)
    assert get_node(c, wide["id"])["text"] == "🦊" * 5000


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "audio"},
        {"kind": "image", "text": "images have no text"},
        {"kind": "text", "position": {"x": "left", "y": 0}},
        {"kind": "text", "position": {"x": 1}},
    ],
)
def test_node_create_validation(account: Account, board: dict[str, Any], body: dict[str, Any]) -> None:
    r = account.client.post(f"/v1/boards/{board['id']}/nodes", json=body)
    assert error_code(r, 422) == "validation_error"


def test_patch_fields_of_another_kind(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    txt = new_node(c, board["id"], "text")
    img = new_node(c, board["id"], "image")
    assert error_code(c.patch(f"/v1/nodes/{img['id']}", json={"text": "x"}), 422) == "validation_error"
    assert error_code(c.patch(f"/v1/nodes/{txt['id']}", json={"prompt": "x"}), 422) == "validation_error"


def test_delete_node(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    txt = new_node(c, board["id"], "text", text="t")
    img = new_node(c, board["id"], "image")
    down = new_node(c, board["id"], "image")
    edge(c, board["id"], txt["id"], img["id"])
    edge(c, board["id"], img["id"], down["id"])
    upload(c, img["id"])

    r = c.delete(f"/v1/nodes/{img['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == img["id"]
    assert isinstance(r.json()["asset_id"], str) and r.json()["asset_id"]
    assert error_code(c.get(f"/v1/nodes/{img['id']}"), 404) == "not_found"
    board_view = c.get(f"/v1/boards/{board['id']}").json()
    assert board_view["edges"] == []
    assert get_node(c, down["id"])["references"] == []

    r = c.delete(f"/v1/nodes/{txt['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": txt["id"], "asset_id": None}
    empty = new_node(c, board["id"], "image")
    assert c.delete(f"/v1/nodes/{empty['id']}").json() == {"id": empty["id"], "asset_id": None}


# --------------------------------------------------------------------------- edges


@pytest.mark.parametrize(("source_kind", "target_kind"), list(itertools.product(KINDS, KINDS)))
def test_connection_matrix(account: Account, board: dict[str, Any], source_kind: str, target_kind: str) -> None:
    c = account.client
    s = new_node(c, board["id"], source_kind)
    t = new_node(c, board["id"], target_kind)
    r = connect(c, board["id"], s["id"], t["id"])
    if (source_kind, target_kind) in ALLOWED:
        assert r.status_code == 201, r.text
        e = r.json()
        assert e["board_id"] == board["id"]
        assert (e["source_node_id"], e["target_node_id"]) == (s["id"], t["id"])
        assert {"id", "created_at"} <= set(e)
        return
    assert error_code(r, 422) == "connection_not_allowed"
    if target_kind == "image":
        assert r.json()["error"]["message"] == "No image model currently supports video as input."
    assert c.get(f"/v1/boards/{board['id']}").json()["edges"] == []


def test_self_connection_and_cycles(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    a, b, cc = (new_node(c, board["id"], "image") for _ in range(3))
    assert error_code(connect(c, board["id"], a["id"], a["id"]), 422) == "cycle_not_allowed"
    edge(c, board["id"], a["id"], b["id"])
    assert error_code(connect(c, board["id"], b["id"], a["id"]), 422) == "cycle_not_allowed"
    edge(c, board["id"], b["id"], cc["id"])
    assert error_code(connect(c, board["id"], cc["id"], a["id"]), 422) == "cycle_not_allowed"
    edge(c, board["id"], a["id"], cc["id"])  # a shortcut is not a cycle
    assert len(c.get(f"/v1/boards/{board['id']}").json()["edges"]) == 3


def test_duplicate_connection(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    a = new_node(c, board["id"], "text", text="a")
    b = new_node(c, board["id"], "image")
    edge(c, board["id"], a["id"], b["id"])
    assert error_code(connect(c, board["id"], a["id"], b["id"]), 409) == "duplicate_connection"
    assert len(c.get(f"/v1/boards/{board['id']}").json()["edges"]) == 1


def test_cross_board_connection(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    other = c.post("/v1/boards", json={"name": "other"}).json()
    a = new_node(c, board["id"], "image")
    b = new_node(c, other["id"], "image")
    assert error_code(connect(c, board["id"], a["id"], b["id"]), 422) == "cross_board_connection"
    assert error_code(connect(c, other["id"], a["id"], b["id"]), 422) == "cross_board_connection"
    a2 = new_node(c, board["id"], "image")
    # Both nodes on one board, but the request names the other board.
    assert error_code(connect(c, other["id"], a["id"], a2["id"]), 422) == "cross_board_connection"


def test_edge_to_unknown_node(account: Account, board: dict[str, Any]) -> None:
    a = new_node(account.client, board["id"], "image")
    assert error_code(connect(account.client, board["id"], a["id"], "nod_missing"), 404) == "not_found"


def test_references_numbered_in_connection_order_and_renumbered(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    target = new_node(c, board["id"], "image")
    sources = [new_node(c, board["id"], "image") for _ in range(3)]
    upload(c, sources[1]["id"])
    # Connect in an order that differs from creation order.
    order = [sources[2], sources[0], sources[1]]
    edges = [edge(c, board["id"], s["id"], target["id"]) for s in order]
    refs = get_node(c, target["id"])["references"]
    assert [(r["index"], r["node_id"], r["edge_id"]) for r in refs] == [
        (i + 1, s["id"], e["id"]) for i, (s, e) in enumerate(zip(order, edges, strict=True))
    ]
    assert refs[0]["thumbnail_url"] is None and refs[2]["thumbnail_url"]

    assert c.delete(f"/v1/edges/{edges[0]['id']}").status_code == 204
    refs = get_node(c, target["id"])["references"]
    assert [(r["index"], r["node_id"]) for r in refs] == [(1, sources[0]["id"]), (2, sources[1]["id"])]
    assert error_code(c.delete(f"/v1/edges/{edges[0]['id']}"), 404) == "not_found"
    # Reconnecting puts the node at the end.
    edge(c, board["id"], sources[2]["id"], target["id"])
    refs = get_node(c, target["id"])["references"]
    assert [r["node_id"] for r in refs] == [sources[0]["id"], sources[1]["id"], sources[2]["id"]]
    assert [r["index"] for r in refs] == [1, 2, 3]


def test_upstream_text_in_connection_order(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    target = new_node(c, board["id"], "image")
    first = new_node(c, board["id"], "text", text="first")
    second = new_node(c, board["id"], "text", text="second")
    image_src = new_node(c, board["id"], "image")
    edge(c, board["id"], second["id"], target["id"])
    edge(c, board["id"], image_src["id"], target["id"])
    edge(c, board["id"], first["id"], target["id"])
    node = get_node(c, target["id"])
    assert node["upstream_text"] == [{"node_id": second["id"], "text": "second"},
                                     {"node_id": first["id"], "text": "first"}]
    assert [r["node_id"] for r in node["references"]] == [image_src["id"]]
    c.patch(f"/v1/nodes/{second['id']}", json={"text": "edited"})
    assert get_node(c, target["id"])["upstream_text"][0]["text"] == "edited"


def test_generate_state_needs_a_prompt_or_upstream_text(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    img = new_node(c, board["id"], "image")
    assert img["generate"] == PROMPT_REQUIRED
    assert c.patch(f"/v1/nodes/{img['id']}", json={"prompt": "   "}).json()["generate"] == PROMPT_REQUIRED
    on = c.patch(f"/v1/nodes/{img['id']}", json={"prompt": "a fox"}).json()["generate"]
    assert on == {"enabled": True, "reason_code": None, "reason": None}
    assert c.patch(f"/v1/nodes/{img['id']}", json={"prompt": ""}).json()["generate"] == PROMPT_REQUIRED

    # An upstream image is a reference, not a prompt.
    src = new_node(c, board["id"], "image")
    edge(c, board["id"], src["id"], img["id"])
    assert get_node(c, img["id"])["generate"] == PROMPT_REQUIRED

    txt = new_node(c, board["id"], "text", text="a whale")
    e = edge(c, board["id"], txt["id"], img["id"])
    assert get_node(c, img["id"])["generate"]["enabled"] is True
    c.delete(f"/v1/edges/{e['id']}")
    assert get_node(c, img["id"])["generate"] == PROMPT_REQUIRED


def test_toolbar(account: Account, board: dict[str, Any]) -> None:
    c = account.client
    img = new_node(c, board["id"], "image")
    assert img["toolbar"] == ["upload"]
    node = upload(c, img["id"])
    assert node["status"] == "ready"
    assert node["toolbar"] == ["crop", "fullscreen", "download"]
    assert get_node(c, img["id"])["toolbar"] == ["crop", "fullscreen", "download"]


# --------------------------------------------------------------------------- concurrency


def race(calls: list[Any]) -> list[httpx.Response]:
    """Run every call at once (released together by a barrier)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def assert_acyclic(edges: list[dict[str, Any]]) -> None:
    downstream: dict[str, list[str]] = {}
    for e in edges:
        downstream.setdefault(e["source_node_id"], []).append(e["target_node_id"])
    state: dict[str, int] = {}

    def visit(n: str) -> None:
        state[n] = 1
        for m in downstream.get(n, []):
            assert state.get(m) != 1, "the board holds a cycle"
            if m not in state:
                visit(m)
        state[n] = 2

    for n in list(downstream):
        if n not in state:
            visit(n)


def test_concurrent_edges_never_close_a_ring(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    nodes = [new_node(account.client, board["id"], "image") for _ in range(12)]
    clients = [stack.client(account.api_key) for _ in nodes]
    calls = [
        (lambda i=i: connect(clients[i], board["id"], nodes[i]["id"], nodes[(i + 1) % 12]["id"]))
        for i in range(12)
    ]
    results = race(calls)
    created = [r for r in results if r.status_code == 201]
    refused = [r for r in results if r.status_code != 201]
    assert len(created) <= 11
    assert refused, "all twelve edges of the ring were accepted"
    for r in refused:
        assert error_code(r, 422) == "cycle_not_allowed"
    edges = account.client.get(f"/v1/boards/{board['id']}").json()["edges"]
    assert {e["id"] for e in edges} == {r.json()["id"] for r in created}
    assert_acyclic(edges)


def test_concurrent_identical_edges(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    a = new_node(account.client, board["id"], "text", text="a")
    b = new_node(account.client, board["id"], "image")
    clients = [stack.client(account.api_key) for _ in range(2)]
    results = race([lambda c=c: connect(c, board["id"], a["id"], b["id"]) for c in clients])
    assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
    dup = next(r for r in results if r.status_code == 409)
    assert dup.json()["error"]["code"] == "duplicate_connection"
    assert len(account.client.get(f"/v1/boards/{board['id']}").json()["edges"]) == 1


@pytest.mark.parametrize(("what", "ok"), [("node", 200), ("edge", 204), ("board", 204)])
def test_concurrent_deletes(stack: Stack, account: Account, what: str, ok: int) -> None:
    """The first delete wins; the others find nothing (never a 500, never a second success)."""
    for _ in range(3):
        board = account.client.post("/v1/boards", json={"name": "race"}).json()
        a, b = new_node(account.client, board["id"], "image"), new_node(account.client, board["id"], "image")
        upload(account.client, a["id"])
        e = edge(account.client, board["id"], a["id"], b["id"])
        path = {"node": f"/v1/nodes/{a['id']}", "edge": f"/v1/edges/{e['id']}", "board": f"/v1/boards/{board['id']}"}
        clients = [stack.client(account.api_key) for _ in range(4)]
        results = race([lambda c=c: c.delete(path[what]) for c in clients])
        assert sorted(r.status_code for r in results) == [ok, 404, 404, 404], [r.text for r in results]


def test_patch_racing_a_delete(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    for _ in range(5):
        node = new_node(account.client, board["id"], "text", text="t")
        clients = [stack.client(account.api_key) for _ in range(4)]
        calls = [lambda: clients[0].delete(f"/v1/nodes/{node['id']}")] + [
            (lambda c=c, i=i: c.patch(f"/v1/nodes/{node['id']}", json={"text": f"edit {i}"}))
            for i, c in enumerate(clients[1:])
        ]
        results = race(calls)
        assert results[0].status_code == 200, results[0].text
        assert {r.status_code for r in results[1:]} <= {200, 404}, [r.text for r in results[1:]]
        assert error_code(account.client.get(f"/v1/nodes/{node['id']}"), 404) == "not_found"
