"""A request id travels from the api request onto the generation and into the worker's logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from easel_shared.logs import ContextFilter
from tests.fixtures.generation import image_node, wait_final
from tests.fixtures.stack import Account, Stack, one_database, wait_for

pytestmark = [pytest.mark.integration, one_database("sqlite")]


def test_request_id_reaches_the_generation_and_the_worker_logs(
    stack: Stack, account: Account, board: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO, logger="easel_worker")
    c = account.client
    n = image_node(c, board["id"], prompt="a traced comet")
    r = c.post(f"/v1/nodes/{n['id']}/generations", headers={"X-Request-ID": "req-trace-me-42"},
               json={"model_id": "easel-sketch", "params": {"resolution": "1K"}})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-ID"] == "req-trace-me-42"
    gen = wait_final(c, r.json()["id"])
    assert gen["status"] == "succeeded"
    assert gen["request_id"] == "req-trace-me-42"

    def worker_logged() -> bool:
        return any(getattr(rec, "request_id", None) == "req-trace-me-42"
                   and getattr(rec, "generation_id", None) == gen["id"]
                   for rec in caplog.records if rec.name.startswith("easel_worker"))

    wait_for(worker_logged, timeout=30, what="a worker log line carrying the request id")


def test_a_request_without_an_id_gets_one(stack: Stack, account: Account) -> None:
    r = account.client.get("/v1/account")
    assert r.headers["X-Request-ID"].startswith("req_")
