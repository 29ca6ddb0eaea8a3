"""The scheduler with the real worker: an account over its limit waits its turn (no failure, no
message in the broker) and starts when a slot frees; a model never has more in flight than its
`max_concurrency`, whoever asks; a worker killed with `kill -9` gives its slot back; three
accounts waiting for one slot take turns, and on a tie the account served longest ago goes first;
concurrent accepts at a limit dispatch one.

The test stack's deployment default is high (`ACCOUNT_MAX_RUNNING=1000`, so the other tests run
many generations at once); these tests set tight limits per account through the admin api, and
use the test catalog's capped built-in models (`tests.fixtures.vendor_catalog.CAPPED_MODELS`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, text, update
from sqlmodel import Session, col, select

from easel_shared import relay as relay_mod
from easel_shared.clock import as_utc, utcnow
from easel_shared.models import Generation
from easel_shared.scheduler import SchedulerRelay
from tests.fixtures.gates import ModelGate
from tests.fixtures.generation import (
    PARAMS_1K,
    SKETCH,
    accepted,
    get_gen,
    image_node,
    queue_drained,
    queue_length,
    wait_final,
    wait_status,
    worker_env,
    worker_idle,
)
from tests.fixtures.stack import Account, Stack, wait_for

pytestmark = pytest.mark.integration

ONE_AT_A_TIME = "sketch-one-at-a-time"
TWO_AT_A_TIME = "sketch-two-at-a-time"
IN_FLIGHT = text("generations.status IN ('queued', 'running') AND generations.dispatched_at IS NOT NULL")


def set_limits(stack: Stack, account_id: str, **body: Any) -> httpx.Response:
    return stack.admin().patch(f"/v1/admin/accounts/{account_id}", json=body)


def limited_account(stack: Stack, max_running: int) -> Account:
    acct = stack.new_account(credits=1000)
    r = set_limits(stack, acct.id, max_running=max_running)
    assert r.status_code == 200, r.text
    assert r.json()["max_running"] == max_running
    return acct


def nodes(c: httpx.Client, count: int) -> list[str]:
    board = c.post("/v1/boards", json={"name": "scheduling"}).json()["id"]
    return [image_node(c, board, prompt=f"a lighthouse, take {i}")["id"] for i in range(count)]


def sweep_once() -> dict[str, int]:
    from easel_worker import runtime
    from easel_worker.jobs.sweep import sweep_once as sweep

    return sweep(runtime.get())


def counts(stack: Stack, *, account_id: str | None = None, model_id: str | None = None) -> tuple[int, int]:
    """(running, in flight: handed to the broker or running) from the database."""
    where = []
    if account_id is not None:
        where.append(col(Generation.account_id) == account_id)
    if model_id is not None:
        where.append(col(Generation.model_id) == model_id)
    with Session(stack.engine) as session:
        running = session.exec(select(func.count()).select_from(Generation)
                               .where(col(Generation.status) == "running", *where)).one()
        in_flight = session.exec(select(func.count()).select_from(Generation).where(IN_FLIGHT, *where)).one()
    return int(running), int(in_flight)


def started(c: httpx.Client, gen_ids: list[str]) -> list[tuple[datetime, str]]:
    """(started_at, id) of finished generations, in start order."""
    return sorted((when(get_gen(c, g)["started_at"]), g) for g in gen_ids)


def when(rfc3339: str) -> datetime:
    return as_utc(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")))


def test_an_admin_sets_an_accounts_limit_and_weight(stack: Stack, account: Account) -> None:
    shown = account.client.get("/v1/account").json()
    assert (shown["max_running"], shown["weight"]) == (stack.settings.account_max_running, 1)
    r = set_limits(stack, account.id, max_running=3, weight=5)
    assert r.status_code == 200, r.text
    assert (r.json()["max_running"], r.json()["weight"]) == (3, 5)
    assert set_limits(stack, account.id, weight=2).json()["max_running"] == 3  # only what is sent changes
    shown = account.client.get("/v1/account").json()
    assert (shown["max_running"], shown["weight"]) == (3, 2)
    r = set_limits(stack, account.id, max_running=None)  # back to the deployment's default
    assert (r.json()["max_running"], r.json()["weight"]) == (stack.settings.account_max_running, 2)
    for bad in ({"max_running": 0}, {"max_running": 1001}, {"weight": 0}, {"weight": 101}, {"weight": None},
                {"max_running": 2.5}, {"priority": 1}):
        r = set_limits(stack, account.id, **bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (bad, r.text)
    r = set_limits(stack, "acc_missing", weight=2)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.patch(f"{stack.api_url}/v1/admin/accounts/{account.id}", json={"weight": 2},
                    headers={"Authorization": f"Bearer {account.api_key}"})
    assert r.status_code == 401


def test_an_account_at_its_limit_waits_and_starts_when_a_slot_frees(stack: Stack, gate: ModelGate) -> None:
    acct = limited_account(stack, max_running=2)
    c = acct.client
    g1, g2, g3, g4 = (accepted(c, n) for n in nodes(c, 4))
    assert [(g["queue_position"], g["blocked_by"]) for g in (g1, g2)] == [(None, None)] * 2
    assert [(g["status"], g["queue_position"], g["blocked_by"]) for g in (g3, g4)] == [
        ("queued", 1, "account_limit"), ("queued", 2, "account_limit")]
    gate.wait_arrived(2)  # the first two run (held at the gate); the others wait
    assert counts(stack, account_id=acct.id) == (2, 2)
    assert queue_length(stack) == 0  # waiting work is not in the broker
    assert [(g["status"], g["queue_position"]) for g in (get_gen(c, g3["id"]), get_gen(c, g4["id"]))] == [
        ("queued", 1), ("queued", 2)]

    r = c.post(f"/v1/generations/{g1['id']}/cancel")  # a slot frees: the oldest waiting one starts
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    gate.wait_arrived(3)
    assert wait_status(c, g3["id"], "running")["blocked_by"] is None
    shown = get_gen(c, g4["id"])
    assert (shown["status"], shown["queue_position"], shown["blocked_by"]) == ("queued", 1, "account_limit")
    assert counts(stack, account_id=acct.id) == (2, 2)

    gate.open()
    done = [wait_final(c, g["id"]) for g in (g2, g3, g4)]
    assert [g["status"] for g in done] == ["succeeded"] * 3
    assert [g for _, g in started(c, [g2["id"], g3["id"], g4["id"]])] == [g2["id"], g3["id"], g4["id"]]
    assert counts(stack, account_id=acct.id) == (0, 0)


def test_a_model_at_its_limit_never_runs_more_under_load_from_three_accounts(stack: Stack, gate: ModelGate) -> None:
    accounts = [stack.new_account(credits=1000) for _ in range(3)]
    per_account = 4

    def accept(acct: Account) -> list[str]:
        return [accepted(acct.client, n, TWO_AT_A_TIME)["id"] for n in nodes(acct.client, per_account)]

    with ThreadPoolExecutor(3) as pool:  # the three accounts ask at the same time
        by_account = list(pool.map(accept, accounts))
    gen_ids = [g for ids in by_account for g in ids]
    gate.wait_arrived(2)
    assert counts(stack, model_id=TWO_AT_A_TIME) == (2, 2)
    shown = [get_gen(acct.client, g) for acct, ids in zip(accounts, by_account, strict=True) for g in ids]
    assert sorted((g["status"], g["blocked_by"]) for g in shown) == [
        ("queued", "model_limit")] * 10 + [("running", None)] * 2
    assert all(g["queue_position"] for g in shown if g["status"] == "queued")

    peak = [2, 2]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for i, n in enumerate(counts(stack, model_id=TWO_AT_A_TIME)):
                peak[i] = max(peak[i], n)
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        gate.open()
        for acct, ids in zip(accounts, by_account, strict=True):
            assert [wait_final(acct.client, g)["status"] for g in ids] == ["succeeded"] * per_account
    finally:
        done.set()
        sampler.join()
    assert peak == [2, 2], f"peak running, in flight: {peak}"  # never more than the model's limit
    assert counts(stack, model_id=TWO_AT_A_TIME) == (0, 0)
    assert len(gen_ids) == 12


def test_work_left_waiting_for_a_model_starts_when_its_slot_frees_during_the_accept(stack: Stack,
                                                                                   gate: ModelGate) -> None:
    """The one interleaving where the end of a generation cannot see the work it should start:
    account B's accept of a full model runs (it saw the model's one slot taken, and leaves its
    generation waiting), and meanwhile account A's generation of that model ends, commits and
    looks for waiting work, before B's accept commits. B's commit must then look again: the
    model has room, so its generation is sent at once, not at the next sweep."""
    if stack.db_kind == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time: the end cannot commit during the accept")
    from easel_api.context import build_context
    from easel_api.services.common import locked_image_node_or_404
    from easel_api.services.generations import Ask, accept_locked
    from easel_shared.models import Account as AccountRow

    holder, waiter = stack.new_account(credits=1000), stack.new_account(credits=1000)
    running = accepted(holder.client, nodes(holder.client, 1)[0], ONE_AT_A_TIME)
    gate.wait_arrived(1)  # the model's one slot is taken
    node_id = nodes(waiter.client, 1)[0]
    ctx = build_context(stack.settings)
    with Session(stack.engine, expire_on_commit=False) as session:  # B's accept, held open
        account = session.get(AccountRow, waiter.id)
        assert account is not None
        node = locked_image_node_or_404(session, account, node_id)
        gen, view = accept_locked(ctx, session, account, node, Ask(ONE_AT_A_TIME, dict(PARAMS_1K)))
        assert view["blocked_by"] == "model_limit"
        gate.open()
        assert wait_final(holder.client, running["id"])["status"] == "succeeded"
        worker_idle()  # A's end committed and looked for waiting work; B's was not committed yet
        session.commit()  # B's commit looks again, in this thread, before commit() returns
    with Session(stack.engine) as session:
        sent = session.get(Generation, gen.id)
        assert sent is not None and sent.dispatched_at is not None and sent.blocked_by is None
    assert wait_final(waiter.client, gen.id)["status"] == "succeeded"


def test_work_an_account_started_at_once_counts_in_its_fair_share(stack: Stack, gate: ModelGate) -> None:
    """Start-time fair queuing charges every generation sent, the ones an accept sends at once
    included. A has had three run, B one after them; when a freed slot must choose between
    them, B goes first although A asked first (without the accept's charge they would tie, and
    A, served longer ago, would win the tie)."""
    a, b, c = (stack.new_account(credits=1000) for _ in range(3))
    ran = [accepted(a.client, n)["id"] for n in nodes(a.client, 3)]
    gate.wait_arrived(3)
    ran.append(accepted(b.client, nodes(b.client, 1)[0])["id"])  # sent at once: slots are free
    gate.wait_arrived(4)
    gate.let_through(4)
    assert [wait_final(acct.client, g)["status"] for acct, g in zip((a, a, a, b), ran, strict=True)] == [
        "succeeded"] * 4
    holding = accepted(c.client, nodes(c.client, 1)[0], ONE_AT_A_TIME)
    gate.wait_arrived(5)  # the model's one slot is taken
    a_waits = accepted(a.client, nodes(a.client, 1)[0], ONE_AT_A_TIME)
    b_waits = accepted(b.client, nodes(b.client, 1)[0], ONE_AT_A_TIME)
    assert [a_waits["blocked_by"], b_waits["blocked_by"]] == ["model_limit"] * 2
    gate.let_through(1)
    assert wait_final(c.client, holding["id"])["status"] == "succeeded"
    gate.wait_arrived(6)
    assert get_gen(b.client, b_waits["id"])["status"] == "running"
    assert (get_gen(a.client, a_waits["id"])["blocked_by"], counts(stack, model_id=ONE_AT_A_TIME)) == (
        "model_limit", (1, 1))
    gate.open()
    assert [wait_final(acct.client, g["id"])["status"] for acct, g in ((a, a_waits), (b, b_waits))] == [
        "succeeded"] * 2


def test_three_accounts_waiting_for_one_slot_take_turns(stack: Stack, gate: ModelGate) -> None:
    names = {}
    order: list[str] = []
    clients = {}
    for name in "ABC":
        acct = stack.new_account(credits=1000)
        clients[name] = acct.client
        for node_id in nodes(acct.client, 4):  # A queues 4, then B 4, then C 4
            g = accepted(acct.client, node_id, ONE_AT_A_TIME)
            names[g["id"]] = name
            order.append(g["id"])
        if name == "A":
            gate.wait_arrived(1)  # A's first runs; everything after waits for the model
    for name, client in clients.items():
        positions = [get_gen(client, g)["queue_position"] for g in order if names[g] == name]
        positions = [p for p in positions if p is not None]
        assert positions == sorted(positions) and len(set(positions)) == len(positions), (name, positions)
        assert all(1 <= p <= 11 for p in positions), positions
    gate.open()
    for g in order:
        assert wait_final(clients[names[g]], g)["status"] == "succeeded"
    starts = [names[g] for _, g in sorted(
        (t, g) for name, client in clients.items() for t, g in started(client, [g for g in order if names[g] == name]))]
    assert "".join(starts) == "ABCABCABCABC"


def test_on_a_tie_the_account_served_longest_ago_goes_first(stack: Stack, gate: ModelGate) -> None:
    """A generation dispatched at its accept still counts as serving its account: A and B each
    start one at once (A first), so their shares tie; B then queues one for the model, and A one
    after it. The freed slot goes to A, served longest ago, not to B's older waiting work."""
    a, b = stack.new_account(credits=1000), stack.new_account(credits=1000)
    a_nodes, b_nodes = nodes(a.client, 2), nodes(b.client, 2)
    assert accepted(a.client, a_nodes[0], TWO_AT_A_TIME)["blocked_by"] is None
    assert accepted(b.client, b_nodes[0], TWO_AT_A_TIME)["blocked_by"] is None
    gate.wait_arrived(2)
    b_waiting = accepted(b.client, b_nodes[1], TWO_AT_A_TIME)
    a_waiting = accepted(a.client, a_nodes[1], TWO_AT_A_TIME)
    assert (b_waiting["blocked_by"], a_waiting["blocked_by"]) == ("model_limit", "model_limit")
    gate.let_through(1)  # one slot frees: one fill pass, one of the two waiting is dispatched
    gate.wait_arrived(3)
    assert get_gen(a.client, a_waiting["id"])["status"] == "running"
    assert get_gen(b.client, b_waiting["id"])["status"] == "queued"
    gate.open()
    assert wait_final(b.client, b_waiting["id"])["status"] == "succeeded"


def test_concurrent_accepts_at_the_limit_dispatch_one(stack: Stack, paused_worker: None) -> None:
    acct = limited_account(stack, max_running=1)
    node_ids = nodes(acct.client, 8)
    barrier = threading.Barrier(len(node_ids))

    def accept(node_id: str) -> dict[str, Any]:
        c = stack.client(acct.api_key)
        barrier.wait()
        return accepted(c, node_id)

    with ThreadPoolExecutor(len(node_ids)) as pool:
        gens = list(pool.map(accept, node_ids))
    assert sorted(g["blocked_by"] or "-" for g in gens) == ["-"] + ["account_limit"] * 7
    assert sorted(g["queue_position"] or 0 for g in gens) == list(range(8))
    assert counts(stack, account_id=acct.id) == (0, 1)
    assert stack.worker is not None
    stack.worker.start()
    done = [wait_final(acct.client, g["id"]) for g in gens]
    assert {g["status"] for g in done} == {"succeeded"}
    spans = sorted((when(g["started_at"]), when(g["finished_at"])) for g in done)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False)), spans  # one at a time


def test_a_new_accept_waits_behind_older_work_of_its_account_that_could_start(stack: Stack,
                                                                              paused_worker: None) -> None:
    """Oldest first within an account, the accept included: when a slot is free but older work of
    the account waits (no fill pass has run since the slot freed), a new accept does not take the
    slot ahead of it. It waits, and the older one is sent."""
    from easel_shared.models import Account as AccountRow

    acct = limited_account(stack, max_running=1)
    g1, g2 = (accepted(acct.client, n) for n in nodes(acct.client, 2))
    assert [g1["blocked_by"], g2["blocked_by"]] == [None, "account_limit"]
    with Session(stack.engine) as session:  # a second slot, with no wake: no fill pass runs
        session.execute(update(AccountRow).where(col(AccountRow.id) == acct.id).values(max_running=2))
        session.commit()
    g3 = accepted(acct.client, nodes(acct.client, 1)[0])
    assert g3["blocked_by"] == "account_limit"
    wait_for(lambda: get_gen(acct.client, g2["id"])["blocked_by"] is None, timeout=10, what="the older one to be sent")
    assert counts(stack, account_id=acct.id) == (0, 2)
    shown = get_gen(acct.client, g3["id"])
    assert (shown["status"], shown["queue_position"], shown["blocked_by"]) == ("queued", 1, "account_limit")


def test_raising_an_accounts_limit_starts_its_waiting_work_at_once(stack: Stack, paused_worker: None) -> None:
    acct = limited_account(stack, max_running=1)
    gens = [accepted(acct.client, n) for n in nodes(acct.client, 3)]
    assert [g["blocked_by"] for g in gens] == [None, "account_limit", "account_limit"]
    assert set_limits(stack, acct.id, max_running=3).status_code == 200
    # No slot freed: the raise itself lets them go (no worker is consuming, so they stay queued).
    wait_for(lambda: counts(stack, account_id=acct.id) == (0, 3), timeout=10, what="the waiting work to be sent")
    assert [(g["status"], g["blocked_by"]) for g in (get_gen(acct.client, g["id"]) for g in gens)] == [
        ("queued", None)] * 3


def test_a_fill_pass_that_reaches_its_batch_leaves_the_rest_to_the_next(stack: Stack, paused_worker: None) -> None:
    """A fill pass sends at most `SCHEDULER_FILL_BATCH` generations (4 on the test stack) and the
    next pass goes on: nine become startable at once and all nine are sent, without a sweep (the
    test stack sweeps only when a test asks)."""
    assert stack.settings.scheduler_fill_batch == 4
    acct = limited_account(stack, max_running=1)
    gens = [accepted(acct.client, n) for n in nodes(acct.client, 10)]
    assert [g["blocked_by"] for g in gens] == [None] + ["account_limit"] * 9
    assert set_limits(stack, acct.id, max_running=10).status_code == 200
    wait_for(lambda: counts(stack, account_id=acct.id) == (0, 10), timeout=15, what="all ten to be sent")
    assert {(g["status"], g["blocked_by"]) for g in (get_gen(acct.client, g["id"]) for g in gens)} == {
        ("queued", None)}


def test_a_relay_whose_pass_reaches_its_batch_runs_the_next_on_its_next_turn(stack: Stack,
                                                                             paused_worker: None) -> None:
    """The process whose after-commit pass reached the batch runs the next pass on its background
    relay's next turn, not after the grace that relay leaves a fresh wake to the process that
    wrote it (`AFTER_COMMIT_GRACE`, 2 s): a backlog released at once is sent a batch a turn, not a
    batch every 2 s. In a service the after-commit relay and the background one share their
    `SchedulerRelay`; here the test is that process: it installs a relay for the limit's commit,
    then takes the background relay's turns itself, one call each."""
    from easel_worker import runtime

    assert stack.settings.scheduler_fill_batch == 4
    acct = limited_account(stack, max_running=1)
    gens = [accepted(acct.client, n) for n in nodes(acct.client, 10)]
    assert [g["blocked_by"] for g in gens] == [None] + ["account_limit"] * 9
    ours = SchedulerRelay(stack.settings)
    others = [r for topic, r in runtime.get().relay.relays.items() if topic != ours.topic]
    installed = relay_mod.install(relay_mod.Relay([*others, ours]))
    try:
        assert set_limits(stack, acct.id, max_running=10).status_code == 200
    finally:
        relay_mod.uninstall(installed)
    # The commit's own pass sent one batch (its "more" wake is fresh: no other relay takes it yet).
    assert counts(stack, account_id=acct.id)[1] >= 5
    turns = 0
    while ours.relay_pending(stack.engine):
        turns += 1
        assert turns < 5, "the passes should have run out of waiting work"
    assert counts(stack, account_id=acct.id) == (0, 10)


@pytest.mark.slow
def test_a_slot_comes_back_after_its_worker_is_killed(stack: Stack, tmp_path: Path) -> None:
    acct = limited_account(stack, max_running=1)
    c = acct.client
    first, second, third = nodes(c, 3)
    assert stack.worker is not None
    queue_drained(stack)  # the fill-batch tests before this one leave ten messages each
    with stack.worker.paused():
        # Only the separate worker process consumes now, so it takes the generation.
        proc = subprocess.Popen([sys.executable, "-m", "easel_worker"], env=worker_env(stack, tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            g1 = accepted(c, first)
            wait_status(c, g1["id"], "running", timeout=60)
            g2 = accepted(c, second)
            assert (g2["status"], g2["blocked_by"]) == ("queued", "account_limit")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        # The dead run holds the slot until the sweeper takes it back (stale heartbeat); handed
        # back to the queue, it still holds it, and the waiting one still waits.
        wait_for(lambda: (sweep_once(), get_gen(c, g1["id"])["status"] == "queued")[1], timeout=30,
                 interval=0.2, what="the sweeper to recover the generation")
        assert counts(stack, account_id=acct.id) == (0, 1)
        assert get_gen(c, g2["id"])["blocked_by"] == "account_limit"
    assert wait_final(c, g1["id"])["status"] == "succeeded"
    assert wait_final(c, g2["id"])["status"] == "succeeded"
    assert counts(stack, account_id=acct.id) == (0, 0)
    g3 = accepted(c, third)  # the slot is free again: dispatched at once
    assert g3["blocked_by"] is None
    assert wait_final(c, g3["id"])["status"] == "succeeded"


def test_an_accepted_generation_is_not_sent_twice_by_the_sweeper_while_it_waits(stack: Stack,
                                                                                 gate: ModelGate) -> None:
    acct = limited_account(stack, max_running=1)
    c = acct.client
    g1, g2 = (accepted(c, n, SKETCH) for n in nodes(c, 2))
    gate.wait_arrived(1)
    with Session(stack.engine) as session:  # queued long ago: a sent one would be resent by now
        session.execute(update(Generation).where(col(Generation.id) == g2["id"])
                        .values(enqueued_at=utcnow() - timedelta(hours=1)))
        session.commit()
    # Waiting work has no message and no marker on purpose; the sweep neither resends nor starts it.
    assert sweep_once()["requeued"] == 0
    assert queue_length(stack) == 0 and counts(stack, account_id=acct.id) == (1, 1)
    assert get_gen(c, g2["id"])["blocked_by"] == "account_limit"
    gate.open()
    assert [wait_final(c, g["id"])["status"] for g in (g1, g2)] == ["succeeded"] * 2
