"""Regressions for what the contract work found (see test_contract_fuzz.py): each a request
whose answer did not match its documented schema."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from easel_shared import schemas
from tests.fixtures.stack import SQLITE_ONLY, Stack

pytestmark = [pytest.mark.integration, SQLITE_ONLY]


def test_null_node_params_are_part_of_the_node_shape(stack: Stack) -> None:
    """`params` values may be null ("the model's default", accepted by PATCH and kept): the node
    model first declared them as non-null strings and integers, so FastAPI's response validation
    turned such a PATCH (and every later read of the node) into a 500."""
    c = stack.new_account().client
    board = c.post("/v1/boards", json={"name": "findings"}).json()
    node = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    params = {"resolution": None, "aspect_ratio": None, "seed": None}
    r = c.patch(f"/v1/nodes/{node['id']}", json={"params": params})
    assert r.status_code == 200, r.text
    assert r.json()["params"] == params
    for body in (r.json(), c.get(f"/v1/nodes/{node['id']}").json()):
        TypeAdapter(schemas.Node).validate_python(body)
    page = c.get(f"/v1/boards/{board['id']}/nodes").json()
    TypeAdapter(schemas.NodePage).validate_python(page)
    TypeAdapter(schemas.BoardDocument).validate_python(c.get(f"/v1/boards/{board['id']}").json())
