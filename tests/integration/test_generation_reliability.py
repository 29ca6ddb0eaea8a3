"""Generations survive duplicate messages, dead workers, a broker that lost its memory, and
concurrent requests: every accepted generation ends once, with one charge at most."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from easel_shared.clock import utcnow
from easel_shared.models import Generation, Image
from easel_shared.tasks import send_generation
from tests.fixtures.generation import (
    accepted,
    balance,
    generate,
    get_gen,
    image_node,
    ledger_kinds,
    node,
    queue_drained,
    queue_length,
    wait_final,
    wait_status,
    worker_env,
    worker_idle,
)
from tests.fixtures.stack import Account, Stack, wait_for

pytestmark = pytest.mark.integration


def sweep_once() -> dict[str, int]:
    from easel_worker import runtime
    from easel_worker.jobs.sweep import sweep_once as sweep

    return sweep(runtime.get())


def new_board(c: httpx.Client) -> str:
    board_id: str = c.post("/v1/boards", json={"name": "reliability"}).json()["id"]
    return board_id


def captures(c: httpx.Client, gen_id: str) -> int:
    return ledger_kinds(c, gen_id).count("capture")


def test_a_message_delivered_twice_runs_once(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="an echo")
    assert stack.worker is not None
    with stack.worker.paused():
        gen = accepted(c, n["id"])
        send_generation(stack.settings.redis_url, gen["id"])
        assert queue_length(stack) >= 2
    done = wait_final(c, gen["id"])
    wait_for(lambda: queue_length(stack) == 0, what="both deliveries to be taken")
    worker_idle()
    assert done["status"] == "succeeded"
    assert get_gen(c, gen["id"])["attempts"] == 1
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]


def test_two_workers_racing_for_one_generation_run_it_once(stack: Stack, account: Account,
                                                            board: dict[str, Any], paused_worker: None) -> None:
    from easel_worker import runtime
    from easel_worker.jobs import generation

    c = account.client
    n = image_node(c, board["id"], prompt="a twin")
    gen = accepted(c, n["id"])
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        generation.run(runtime.get(), gen["id"])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = get_gen(c, gen["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]
    assert node(c, n["id"])["image"]["id"] == done["image_id"]


@pytest.mark.slow
def test_a_worker_killed_mid_generation_is_replaced_and_charges_once(stack: Stack, account: Account,
                                                                     board: dict[str, Any], tmp_path: Path) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a phoenix")
    assert stack.worker is not None
    queue_drained(stack)
    with stack.worker.paused():
        # Only the separate worker process consumes now, so it takes the generation.
        proc = subprocess.Popen([sys.executable, "-m", "easel_worker"], env=worker_env(stack, tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            gen = accepted(c, n["id"])
            wait_status(c, gen["id"], "running", timeout=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        # Its heartbeat goes stale; the sweeper hands the generation back to the queue.
        wait_for(lambda: (sweep_once(), get_gen(c, gen["id"])["status"] == "queued")[1], timeout=30,
                 interval=0.2, what="the sweeper to recover the generation")
    done = wait_final(c, gen["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]
    assert node(c, n["id"])["image"]["id"] == done["image_id"]
    with Session(stack.engine) as session:
        count = session.exec(select(func.count()).select_from(Image).where(Image.account_id == account.id)).one()
    assert count == 1


@pytest.mark.slow
def test_queued_generations_survive_a_redis_restart(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be restarted here")
    c = account.client
    nodes = [image_node(c, board["id"], prompt=f"a lost letter {i}") for i in range(3)]
    assert stack.worker is not None
    with stack.worker.paused():
        gens = [accepted(c, n["id"]) for n in nodes]
        assert queue_length(stack) >= 3
        stack.redis.restart()  # no persistence: the queued messages are gone
        wait_for(lambda: _pings(stack.settings.redis_url), what="Redis to answer")
        assert queue_length(stack) == 0
        assert all(get_gen(c, g["id"])["status"] == "queued" for g in gens)
        wait_for(lambda: (sweep_once(), queue_length(stack) >= 3)[1], timeout=30, interval=0.2,
                 what="the sweeper to send the generations again")
    for g in gens:
        done = wait_final(c, g["id"])
        assert done["status"] == "succeeded", done
        assert ledger_kinds(c, g["id"]) == ["reserve", "capture"]


@pytest.mark.slow
def test_a_generation_accepted_while_the_broker_is_down_runs_when_it_is_back(stack: Stack, account: Account,
                                                                             board: dict[str, Any]) -> None:
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be stopped here")
    c = account.client
    n = image_node(c, board["id"], prompt="a message for later")
    stack.redis.stop()
    try:
        gen = accepted(c, n["id"])  # committed; the message could not be sent
    finally:
        stack.redis.start()
    wait_for(lambda: _pings(stack.settings.redis_url), what="Redis to answer")
    assert get_gen(c, gen["id"])["status"] == "queued"
    # The background relay sends it (backoff ≤ 5 s while Redis was away); generous for a loaded machine.
    wait_for(lambda: (sweep_once(), get_gen(c, gen["id"])["status"] != "queued")[1], timeout=90, interval=0.2,
             what="the sweeper to send the generation")
    done = wait_final(c, gen["id"])
    assert done["status"] == "succeeded", done
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _fire(stack: Stack, api_key: str, calls: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every call at the same instant, each from its own client."""
    barrier = threading.Barrier(len(calls))
    clients = [stack.client(api_key) for _ in calls]

    def one(i: int) -> httpx.Response:
        node_id, kwargs = calls[i]
        barrier.wait()
        return generate(clients[i], node_id, **kwargs)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, range(len(calls))))


def test_thirty_requests_on_one_node_accept_one(stack: Stack, paused_worker: None) -> None:
    acct = stack.new_account(credits=1000)
    c = acct.client
    n = image_node(c, new_board(c), prompt="a crowd")
    responses = _fire(stack, acct.api_key, [(n["id"], {})] * 30)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] + [409] * 29, [r.text for r in responses if r.status_code not in (202, 409)]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"already_generating"}
    assert balance(c) == (998, 2)
    gen_id = next(r.json()["id"] for r in responses if r.status_code == 202)
    assert node(c, n["id"])["active_generation_id"] == gen_id
    assert ledger_kinds(c, gen_id) == ["reserve"]


def test_credits_for_five_accept_exactly_five_of_twenty(stack: Stack) -> None:
    acct = stack.new_account(credits=10)  # easel-sketch 1K costs 2
    c = acct.client
    nodes = [image_node(c, new_board(c), prompt=f"a coin {i}") for i in range(20)]
    assert stack.worker is not None
    with stack.worker.paused():
        responses = _fire(stack, acct.api_key, [(n["id"], {}) for n in nodes])
        ok = [r.json() for r in responses if r.status_code == 202]
        assert len(ok) == 5, [r.text for r in responses]
        rest = [r for r in responses if r.status_code != 202]
        assert {r.status_code for r in rest} == {402}
        assert {r.json()["error"]["code"] for r in rest} == {"insufficient_credits"}
        assert balance(c) == (0, 10)
    refused = {n["id"] for n in nodes} - {g["node_id"] for g in ok}
    assert all(node(c, nid)["status"] == "empty" for nid in refused)

    done = [wait_final(c, g["id"]) for g in ok]
    assert all(g["status"] == "succeeded" for g in done)
    credits, reserved = balance(c)
    captured = sum(g["credits"] for g in done if captures(c, g["id"]) == 1)
    assert (credits, reserved, captured) == (0, 0, 10)
    ledger = c.get("/v1/account/ledger", params={"limit": 200}).json()["items"]
    assert all(e["balance_after"] >= 0 for e in ledger)
    assert sum(1 for e in ledger if e["kind"] == "reserve") == 5


def test_a_node_and_its_upstream_at_the_same_instant_accept_one(stack: Stack, paused_worker: None) -> None:
    acct = stack.new_account(credits=1000)
    c = acct.client
    for _ in range(5):
        b = new_board(c)
        up, down = image_node(c, b, prompt="a river"), image_node(c, b, prompt="a delta")
        r = c.post(f"/v1/boards/{b}/edges", json={"source_node_id": up["id"], "target_node_id": down["id"]})
        assert r.status_code == 201, r.text
        responses = _fire(stack, acct.api_key, [(up["id"], {}), (down["id"], {})])
        assert sorted(r.status_code for r in responses) == [202, 409], [r.text for r in responses]
        refused = next(r.json()["error"] for r in responses if r.status_code == 409)
        assert refused["code"] in ("upstream_in_progress", "downstream_in_progress")
    assert balance(c) == (990, 10)


def test_a_generation_whose_worker_keeps_dying_fails_and_is_refunded(stack: Stack, account: Account,
                                                                    board: dict[str, Any], paused_worker: None) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a fragile vase")
    before = balance(c)
    gen = accepted(c, n["id"])
    max_attempts = stack.settings.generation_max_attempts
    with Session(stack.engine) as session:
        session.execute(
            update(Generation).where(col(Generation.id) == gen["id"]).values(
                status="running", lease_token="dead-worker", attempts=max_attempts,
                heartbeat_at=utcnow() - timedelta(minutes=5), started_at=utcnow() - timedelta(minutes=5))
        )
        session.commit()
    counts = sweep_once()
    assert counts["failed"] >= 1
    done = get_gen(c, gen["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "worker_lost"
    assert done["attempts"] == max_attempts
    assert balance(c) == before
    assert ledger_kinds(c, gen["id"]) == ["reserve", "release"]
    shown = node(c, n["id"])
    assert shown["status"] == "failed" and shown["error"]["code"] == "worker_lost"
    assert shown["toolbar"] == ["upload"]


def test_a_stale_run_below_the_limit_is_run_again(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a second chance")
    assert stack.worker is not None
    with stack.worker.paused():
        gen = accepted(c, n["id"])
        with Session(stack.engine) as session:
            session.execute(
                update(Generation).where(col(Generation.id) == gen["id"]).values(
                    status="running", lease_token="dead-worker", attempts=1,
                    heartbeat_at=utcnow() - timedelta(minutes=5))
            )
            session.commit()
        assert sweep_once()["recovered"] >= 1
        assert get_gen(c, gen["id"])["status"] == "queued"
    done = wait_final(c, gen["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]
