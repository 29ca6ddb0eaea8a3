from __future__ import annotations

import pytest

from tests.fixtures.stack import Account, Stack, png_bytes, wait_for

pytestmark = pytest.mark.integration


def test_full_flow(stack: Stack, account: Account, board: dict) -> None:
    c = account.client
    img = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    txt = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "text", "text": "a blue whale"}).json()
    assert img["generate"] == {"enabled": False, "reason_code": "prompt_required",
                               "reason": "Write a prompt or connect an upstream Text Node."}
    e = c.post(f"/v1/boards/{board['id']}/edges", json={"source_node_id": txt["id"], "target_node_id": img["id"]})
    assert e.status_code == 201, e.text
    node = c.get(f"/v1/nodes/{img['id']}").json()
    assert node["generate"]["enabled"] is True
    assert node["upstream_text"] == [{"node_id": txt["id"], "text": "a blue whale"}]
    models = c.get("/v1/models").json()["items"]
    r = c.post(f"/v1/nodes/{img['id']}/generations",
               json={"model_id": models[0]["id"], "params": {"resolution": "1K", "aspect_ratio": "16:9"}})
    assert r.status_code == 202, r.text
    gen_id = r.json()["id"]
    done = wait_for(lambda: (g := c.get(f"/v1/generations/{gen_id}").json())["status"] in
                    ("succeeded", "failed") and g)
    assert done["status"] == "succeeded", done
    node = c.get(f"/v1/nodes/{img['id']}").json()
    assert node["status"] == "ready"
    assert (node["image"]["width"], node["image"]["height"]) == (1024, 576)
    up = c.post(f"/v1/nodes/{img['id']}/image", files={"file": ("x.png", png_bytes(), "image/png")})
    assert up.status_code == 409, up.text
