"""One outbox for live events, retention and dispatch: nothing committed is lost when Redis or the
committing process fails, nothing is published or sent twice, a board's events come in commit
order, and a lost broker message is found exactly, whatever the length of the queue."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import update
from sqlmodel import Session, col, select

from easel_shared import relay as relay_mod
from easel_shared import tasks
from easel_shared.clock import utcnow
from easel_shared.db import build_engine
from easel_shared.events import BoardEventRelay, stream_key
from easel_shared.models import Generation, OutboxEvent
from easel_shared.repositories.outbox import BOARD_EVENT, DISPATCH_GENERATION
from tests.fixtures.generation import (
    accepted,
    get_gen,
    image_node,
    ledger_kinds,
    queue_length,
    text_node,
    wait_final,
)
from tests.fixtures.sse import Event, SSEClient
from tests.fixtures.stack import Account, Stack, wait_for

pytestmark = pytest.mark.integration


# -- helpers ----------------------------------------------------------------------------------- #


def seq_of(event_id: str) -> int:
    return int(event_id.split("-")[0])


def board_rows(stack: Stack, board_id: str) -> list[OutboxEvent]:
    with Session(stack.engine) as session:
        return list(session.exec(
            select(OutboxEvent).where(OutboxEvent.topic == BOARD_EVENT, OutboxEvent.board_id == board_id)
            .order_by(col(OutboxEvent.seq))
        ))


def unpublished(stack: Stack, board_id: str) -> list[OutboxEvent]:
    return [r for r in board_rows(stack, board_id) if r.processed_at is None]


def redis_client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.settings.redis_url, socket_connect_timeout=1)


def stream_seqs(stack: Stack, board_id: str) -> list[int]:
    client = redis_client(stack)
    try:
        return [int(fields[b"seq"]) for _, fields in client.xrange(stream_key(board_id))]
    finally:
        client.close()


def pings(stack: Stack) -> bool:
    client = redis_client(stack)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_down(stack: Stack) -> None:
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be stopped here")
    stack.redis.stop()


def redis_back(stack: Stack) -> None:
    stack.redis.start()
    wait_for(lambda: pings(stack), what="Redis to answer")
    wait_for(lambda: httpx.get(f"{stack.api_url}/readyz").status_code == 200, what="the api to be ready")


def move(c: httpx.Client, node_id: str, x: float) -> dict[str, Any]:
    r = c.patch(f"/v1/nodes/{node_id}", json={"position": {"x": x, "y": 0}})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def moved_to(node_id: str, x: float) -> Callable[[Event], bool]:
    return lambda e: e.event == "node.updated" and e.data["id"] == node_id and e.data["position"]["x"] == x


def queued_ids(stack: Stack) -> Counter[str]:
    """How many messages the broker's queue holds per generation id."""
    client = redis_client(stack)
    try:
        raw = client.lrange(tasks.GENERATION_QUEUE, 0, -1)
    finally:
        client.close()
    return Counter(_generation_of(m) for m in raw)


def _generation_of(message: bytes) -> str:
    envelope = json.loads(message)
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return str(args[0])


def drop_messages(stack: Stack, generation_ids: set[str]) -> None:
    """Take these generations' messages out of the queue (atomically, order kept)."""
    client = redis_client(stack)
    try:
        with client.pipeline() as pipe:
            pipe.watch(tasks.GENERATION_QUEUE)
            kept = [m for m in pipe.lrange(tasks.GENERATION_QUEUE, 0, -1) if _generation_of(m) not in generation_ids]
            pipe.multi()
            pipe.delete(tasks.GENERATION_QUEUE)
            if kept:
                pipe.rpush(tasks.GENERATION_QUEUE, *kept)
            pipe.execute()
    finally:
        client.close()


def sweep() -> dict[str, int]:
    from easel_worker import runtime
    from easel_worker.jobs.sweep import sweep_once

    return sweep_once(runtime.get())


@contextlib.contextmanager
def database_held(stack: Stack) -> Iterator[None]:
    """Another client holds the database while the block runs: SQLite's one write lock (every
    transaction of Easel's takes it first), and on PostgreSQL the outbox table, reads included."""
    with stack.engine.connect() as conn, conn.begin():
        if stack.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE")
        else:
            conn.exec_driver_sql("SELECT 1")  # the transaction begins: BEGIN IMMEDIATE
        yield


@contextlib.contextmanager
def unrelayed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commits in the block get no after-commit relay, as if their process died right after each."""
    with monkeypatch.context() as m:
        m.setattr(relay_mod, "_installed", [])
        yield


@pytest.fixture
def relayed_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Background passes leave fresh rows to the relay the test runs by hand, however slow the
    machine."""


def written(row: OutboxEvent) -> relay_mod.Written:
    assert row.id is not None
    return relay_mod.Written(row.id, row.topic, row.board_id, row.seq, row.payload)


def in_background(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def ran_once(c: httpx.Client, generation_id: str) -> None:
    """The generation succeeds on its first run and is charged once."""
    done = wait_final(c, generation_id)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert ledger_kinds(c, generation_id) == ["reserve", "capture"]


def settled_and_left_waiting(stack: Stack, generation_id: str, what: str) -> None:
    """The generation's dispatch row is settled, and its sent marker keeps the sweeper from sending
    its message again."""
    wait_for(lambda: dispatch_rows(stack, generation_id)[0].processed_at is not None, what=what)
    sweep()
    assert queued_ids(stack)[generation_id] == 1


def dispatch_rows(stack: Stack, *generation_ids: str) -> list[OutboxEvent]:
    with Session(stack.engine) as session:
        return list(session.exec(
            select(OutboxEvent).where(OutboxEvent.topic == DISPATCH_GENERATION,
                                      col(OutboxEvent.subject_id).in_(generation_ids))
        ))


# -- the stream's own guarantee ---------------------------------------------------------------- #


def test_a_stream_takes_each_seq_once_and_never_skips_one(stack: Stack) -> None:
    client = redis_client(stack)
    publisher = BoardEventRelay(client)
    key = stream_key(f"brd_script_{uuid.uuid4().hex[:8]}")

    def add(seq: int, force: bool = False) -> list[int]:
        result: list[int] = publisher.script(keys=[key], args=[str(seq), 5000, "node.updated", "{}",
                                                               "1" if force else "0"])
        return result

    try:
        assert add(100) == [1, 0]  # no stream yet: it starts here
        assert add(100) == [0, 100] and add(99) == [0, 100]  # already there: never twice
        assert add(102) == [-1, 100]  # 101 is missing: refused, so it cannot be skipped
        assert add(101) == [1, 100] and add(102) == [1, 101]
        assert add(104, force=True) == [1, 102]  # what a relay repairing a lost tail may do
        assert [i.decode() for i, _ in client.xrange(key)] == ["100-0", "101-0", "102-0", "104-0"]

        # A stream Redis emptied (it still remembers its last id) starts over too.
        client.xtrim(key, maxlen=0)
        assert add(7) == [1, 0]
        assert [i.decode() for i, _ in client.xrange(key)] == ["7-0"]

        # Entries written before the outbox carry Redis's clock as id and no seq: the first seq
        # after them is taken, with an id above theirs.
        client.delete(key)
        legacy = client.xadd(key, {"event": "node.updated", "data": "{}"}).decode()
        assert add(5) == [1, 0] and add(6) == [1, 5] and add(8) == [-1, 6]
        ids = [i.decode() for i, _ in client.xrange(key)]
        assert ids[0] == legacy and len(ids) == 3 and seq_of(ids[1]) >= seq_of(legacy)
    finally:
        client.delete(key)
        client.close()


# -- live events ------------------------------------------------------------------------------- #


@pytest.mark.slow
def test_a_redis_outage_during_a_generation_loses_no_event(stack: Stack, account: Account, board: dict[str, Any],
                                                            paused_worker: None) -> None:
    from easel_worker import runtime
    from easel_worker.jobs import generation

    c, b = account.client, board["id"]
    painted = image_node(c, b, prompt="a lighthouse in a storm")
    other = image_node(c, b)
    gen = accepted(c, painted["id"])
    with SSEClient(stack.api_url, b, account.api_key) as before:
        before.wait_for_type("board.snapshot")
        move(c, other["id"], 1)
        resume = before.wait_for_event(moved_to(other["id"], 1)).id
        redis_down(stack)
        try:
            assert before.wait_ended(30), "the stream outlived Redis"
            # The generation runs and ends, and the api takes changes, all while Redis is down.
            runner = threading.Thread(target=generation.run, args=(runtime.get(), gen["id"]))
            runner.start()
            for x in (10, 11, 12):
                move(c, other["id"], x)
            runner.join(60)
            assert get_gen(c, gen["id"])["status"] == "succeeded"
            held_back = unpublished(stack, b)
            assert len(held_back) >= 6, held_back  # committed, waiting for Redis
        finally:
            redis_back(stack)
    wait_for(lambda: not unpublished(stack, b), what="the relay to publish what the outage held back")
    expected = [(f"{r.seq}-0", r.payload["event"], r.payload["data"])
                for r in board_rows(stack, b) if r.seq is not None and r.seq > seq_of(resume)]
    with SSEClient(stack.api_url, b, account.api_key, last_event_id=resume) as again:
        again.wait_for_event(lambda e: e.id == expected[-1][0])
        replayed = [(e.id, e.event, e.data) for e in again.events]
    # Every event since the client's last one, in commit order, and no snapshot: nothing was lost.
    assert replayed == expected
    kinds = [kind for _, kind, data in replayed if data.get("id") == gen["id"]]
    assert kinds == ["generation.started", "generation.succeeded"]
    positions = [data["position"]["x"] for _, kind, data in replayed
                 if kind == "node.updated" and data["id"] == other["id"]]
    assert [x for x in positions if x in (10, 11, 12)] == [10, 11, 12]
    assert [data for _, kind, data in replayed if kind == "node.updated" and data["id"] == painted["id"]][-1] == \
        c.get(f"/v1/nodes/{painted['id']}").json()
    assert [int(i.split("-")[0]) for i, _, _ in replayed] == list(range(seq_of(resume) + 1,
                                                                       seq_of(resume) + 1 + len(replayed)))


def test_events_of_concurrent_commits_on_one_board_arrive_in_seq_order(stack: Stack, account: Account,
                                                                       board: dict[str, Any]) -> None:
    b = board["id"]
    nodes = [text_node(account.client, b, f"writer {i}") for i in range(6)]
    rounds = 8
    with SSEClient(stack.api_url, b, account.api_key) as client:
        start = seq_of(client.wait_for_type("board.snapshot").id)
        barrier = threading.Barrier(len(nodes))
        clients = [stack.client(account.api_key) for _ in nodes]

        def writer(i: int) -> None:
            barrier.wait()
            for x in range(1, rounds + 1):
                move(clients[i], nodes[i]["id"], x)

        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(writer, range(len(nodes))))
        last = max(r.seq or 0 for r in board_rows(stack, b))
        client.wait_for_event(lambda e: e.id == f"{last}-0")
        got = [e for e in client.events if e.event != "board.snapshot"]
    # The board's events after the snapshot's id. (That id is "0-0" when the stream was still
    # empty: the nodes' events were not published yet, e.g. while the after-commit relay's breaker
    # was open after an earlier test's Redis outage and the background relay had them to send.)
    expected = sorted(r.seq for r in board_rows(stack, b) if r.seq is not None and r.seq > start)
    # One event per seq, in seq order, none missing: the stream's order is the commit order.
    assert expected == list(range(expected[0], last + 1))
    assert [seq_of(e.id) for e in got] == expected
    assert stream_seqs(stack, b)[-len(got):] == expected
    for n in nodes:
        # Each writer's commits follow one another, and so do their events.
        xs = [e.data["position"]["x"] for e in got if e.event == "node.updated" and e.data["id"] == n["id"]]
        assert xs == list(range(1, rounds + 1))
        last_sent = [e.data for e in got if e.event == "node.updated" and e.data["id"] == n["id"]][-1]
        assert last_sent == account.client.get(f"/v1/nodes/{n['id']}").json()


def test_a_commit_whose_relay_died_is_published_once_by_the_background_relay(
        stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    c, b = account.client, board["id"]
    n = text_node(c, b, "left behind")
    with SSEClient(stack.api_url, b, account.api_key) as client:
        client.wait_for_type("board.snapshot")
        with unrelayed(monkeypatch):
            # The committing process dies between its commit and its relay: nothing relays after it.
            moved = move(c, n["id"], 42)
        event = client.wait_for_event(lambda e: e.event == "node.updated" and e.data == moved)
        # The relay marks its rows after the stream has them: the client can see the event first.
        wait_for(lambda: not unpublished(stack, b), what="the background relay to mark its rows published")

        # Any number of relays going over the board again, at the same time, add nothing.
        before = stream_seqs(stack, b)
        relays = [BoardEventRelay(redis_client(stack)) for _ in range(4)]

        def again(r: BoardEventRelay) -> None:
            with Session(stack.engine) as session:
                r.publish(session, board_rows(stack, b))
            r.relay_pending(stack.engine)

        with ThreadPoolExecutor(len(relays)) as pool:
            list(pool.map(again, relays))
        marker = move(c, n["id"], 43)
        client.wait_for_event(lambda e: e.event == "node.updated" and e.data == marker)
        seen = client.events
    after = stream_seqs(stack, b)
    assert after[:len(before)] == before and after[len(before):] == [before[-1] + 1]
    assert [e for e in seen if e.id == event.id] == [event]
    assert len({e.id for e in seen}) == len(seen)


# -- dispatch ---------------------------------------------------------------------------------- #


def test_a_dispatch_whose_relay_died_is_sent_once(stack: Stack, account: Account, board: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a parcel")
    assert stack.worker is not None
    with stack.worker.paused():
        with unrelayed(monkeypatch):
            gen = accepted(c, n["id"])
        wait_for(lambda: queued_ids(stack)[gen["id"]] == 1, what="the background relay to send the generation")
        # The pass marks the row in the transaction it sends from, committed just after the send.
        wait_for(lambda: dispatch_rows(stack, gen["id"])[0].processed_at is not None,
                 what="the background relay to settle the row")
        [row] = dispatch_rows(stack, gen["id"])
        assert row.processed_at is not None
        client = redis_client(stack)
        try:
            assert client.get(tasks.sent_key(gen["id"])) == str(row.id).encode()
        finally:
            client.close()

        # A relay that sent it but died before settling the row: the next one does not send again.
        with Session(stack.engine) as session:
            session.execute(update(OutboxEvent).where(col(OutboxEvent.id) == row.id).values(processed_at=None))
            session.commit()
        settled_and_left_waiting(stack, gen["id"], "the background relay to settle the row")
    ran_once(c, gen["id"])


@pytest.mark.usefixtures("relayed_by_hand")
def test_a_commits_events_reach_subscribers_while_the_database_is_held(
        stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    c, b = account.client, board["id"]
    n = text_node(c, b, "in a hurry")
    with SSEClient(stack.api_url, b, account.api_key) as client:
        client.wait_for_type("board.snapshot")
        with unrelayed(monkeypatch):  # this commit's relay runs below, by hand
            moved = move(c, n["id"], 7)
        [row] = [r for r in unpublished(stack, b) if r.payload["event"] == "node.updated"]
        publisher = BoardEventRelay(redis_client(stack))
        with database_held(stack):
            # Right after its commit, a relay publishes from the rows as they were written: a
            # busy database does not hold up the event (it used to wait for a transaction).
            relaying = in_background(lambda: publisher.relay_written(stack.engine, [written(row)]))
            event = client.wait_for_event(lambda e: e.event == "node.updated" and e.data == moved)
            relaying.join(30)
            assert not relaying.is_alive()
        # What it delivered is marked in the database afterwards, in a batch of its own (by this
        # process's background relay, or here, whichever comes first).
        relay_mod.settle_delivered(stack.engine)
        wait_for(lambda: not unpublished(stack, b), what="the delivered row to be marked")
        assert event.id == f"{row.seq}-0"
        assert stream_seqs(stack, b).count(row.seq) == 1


@pytest.mark.usefixtures("relayed_by_hand")
def test_events_go_out_once_each_after_redis_forgets_the_script(
        stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay runs its script by digest alone (no check first); a Redis that lost it (a restart,
    SCRIPT FLUSH) gets it loaded again, and a second run adds nothing the first one did."""
    c, b = account.client, board["id"]
    n = text_node(c, b, "forgetful")
    with unrelayed(monkeypatch):
        move(c, n["id"], 1)
        move(c, n["id"], 2)
    rows = sorted((r for r in unpublished(stack, b) if r.payload["event"] == "node.updated"),
                  key=lambda r: r.seq or 0)
    assert len(rows) == 2
    client = redis_client(stack)
    publisher = BoardEventRelay(client)
    client.script_flush()
    publisher.relay_written(stack.engine, [written(rows[0])])
    client.script_flush()
    publisher.relay_written(stack.engine, [written(r) for r in rows])  # the first is there already
    seqs = stream_seqs(stack, b)
    assert [seqs.count(r.seq) for r in rows] == [1, 1]
    relay_mod.settle_delivered(stack.engine)
    wait_for(lambda: not unpublished(stack, b), what="both rows marked delivered")


@pytest.mark.usefixtures("relayed_by_hand")
def test_delivered_rows_are_marked_within_a_second_whatever_the_poll(
        stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's long OUTBOX_POLL_SECONDS does not leave delivered rows unmarked that long:
    a background pass would take them for rows left behind and deliver them again."""
    c, b = account.client, board["id"]
    n = text_node(c, b, "patient")
    with unrelayed(monkeypatch):
        move(c, n["id"], 3)
    [row] = [r for r in unpublished(stack, b) if r.payload["event"] == "node.updated"]
    # An engine of its own: only the relay thread below marks what was delivered through it.
    engine = build_engine(stack.settings.database_url)
    thread = relay_mod.RelayThread(engine, [], poll_seconds=3600, retention_seconds=86400)
    thread.start()
    try:
        BoardEventRelay(redis_client(stack)).relay_written(engine, [written(row)])
        wait_for(lambda: not unpublished(stack, b), what="the delivered row marked long before the next poll")
    finally:
        thread.stop()
        engine.dispose()


@pytest.mark.usefixtures("relayed_by_hand")
def test_a_dispatch_goes_out_while_the_database_is_held_and_runs_once(
        stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a kite")
    assert stack.worker is not None
    with stack.worker.paused():
        with unrelayed(monkeypatch):
            gen = accepted(c, n["id"])
        [row] = dispatch_rows(stack, gen["id"])
        assert row.processed_at is None
        sender = tasks.DispatchRelay(redis_client(stack), stack.settings.redis_url,
                                     stack.settings.celery_visibility_timeout_seconds)
        with database_held(stack):
            sending = in_background(lambda: sender.relay_written(stack.engine, [written(row)]))
            wait_for(lambda: queued_ids(stack)[gen["id"]] == 1, what="the message, with the database held")
            sending.join(30)
            assert not sending.is_alive()
        relay_mod.settle_delivered(stack.engine)
        settled_and_left_waiting(stack, gen["id"], "the delivered row to be marked")
    ran_once(c, gen["id"])


@pytest.mark.usefixtures("relayed_by_hand")
def test_relays_sending_the_same_dispatches_at_once_send_each_once(
        stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    c = account.client
    nodes = [image_node(c, board["id"], prompt=f"a bell, take {i}") for i in range(3)]
    assert stack.worker is not None
    with stack.worker.paused():
        with unrelayed(monkeypatch):
            gens = [accepted(c, n["id"]) for n in nodes]
        rows = [written(r) for g in gens for r in dispatch_rows(stack, g["id"])]
        # The after-commit relay and background passes of other processes, all at the same moment.
        senders = [tasks.DispatchRelay(redis_client(stack), stack.settings.redis_url,
                                       stack.settings.celery_visibility_timeout_seconds) for _ in range(4)]
        barrier = threading.Barrier(len(senders))

        def send(sender: tasks.DispatchRelay) -> None:
            barrier.wait()
            sender.relay_written(stack.engine, rows)

        with ThreadPoolExecutor(len(senders)) as pool:
            list(pool.map(send, senders))
        queued = queued_ids(stack)
        assert [queued[g["id"]] for g in gens] == [1, 1, 1]
        relay_mod.settle_delivered(stack.engine)
        wait_for(lambda: all(r.processed_at is not None for g in gens for r in dispatch_rows(stack, g["id"])),
                 what="every row settled")
    for g in gens:
        ran_once(c, g["id"])


@pytest.mark.slow
def test_a_generation_accepted_while_redis_is_down_runs_once_it_is_back(stack: Stack, account: Account,
                                                                        board: dict[str, Any]) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a letter in a storm")
    redis_down(stack)
    try:
        gen = accepted(c, n["id"])  # committed with its dispatch; nothing can be sent yet
        assert [r.processed_at for r in dispatch_rows(stack, gen["id"])] == [None]
    finally:
        redis_back(stack)
    # No sweep: the outbox relay sends it as soon as Redis answers.
    ran_once(c, gen["id"])
    # Marked in the transaction the relay sends from, which commits just after the send.
    wait_for(lambda: [r.processed_at is not None for r in dispatch_rows(stack, gen["id"])] == [True],
             what="the dispatch row to be settled")


@pytest.mark.slow
def test_a_lost_message_is_resent_exactly_under_a_backlog(stack: Stack, account: Account,
                                                          board: dict[str, Any]) -> None:
    """2,000 generations wait in the queue; the one whose message Redis lost is sent again by the
    next sweep, and no other is sent twice."""
    backlog = 2000
    assert stack.worker is not None
    with stack.worker.paused():
        sweep()  # whatever earlier tests left behind is settled first
        base = queued_ids(stack)
        old = utcnow() - timedelta(seconds=2 * stack.settings.requeue_after_seconds)
        ids = [f"gen_backlog_{uuid.uuid4().hex[:12]}" for _ in range(backlog)]
        ours = set(ids)
        with Session(stack.engine) as session:
            # Queued long enough ago to be looked at by the sweeper, each with its dispatch.
            session.add_all(Generation(
                id=gen_id, node_id=f"nod_{gen_id}", board_id=board["id"], account_id=account.id,
                active_node_id=f"nod_{gen_id}", status="queued", model_id="easel-sketch",
                params={"resolution": "1K", "aspect_ratio": "1:1", "seed": 1}, prompt="a backlog",
                credits=0, enqueued_at=old) for gen_id in ids)
            session.flush()
            for gen_id in ids:
                tasks.dispatch(session, gen_id, account.id, None)
            session.commit()
        try:
            wait_for(lambda: queue_length(stack) >= sum(base.values()) + backlog, timeout=120, interval=0.2,
                     what="every message of the backlog to be sent")
            # A dispatch is the relay's until its row is marked, and the sweeper leaves it alone.
            # The commit above relayed the messages at once; the rows are marked a moment later,
            # by this process's background relay (the in-process api's) in its own transaction.
            # A sweep before that finds nothing lost, whatever was (the clean-clone CI once
            # swept in between, on SQLite; a background relay that settles every 5 s fails it).
            wait_for(lambda: (rows := dispatch_rows(stack, *ids)) and all(r.processed_at is not None for r in rows),
                     timeout=120, interval=0.2, what="every dispatch of the backlog to be settled")
            sent = queued_ids(stack)
            assert all(sent[i] == 1 for i in ids)
            assert sweep()["requeued"] == 0  # all of them are merely waiting
            full = sum(queued_ids(stack).values())

            lost = ids[backlog // 2]
            drop_messages(stack, {lost})  # Redis lost this message (and what said it was sent)
            client = redis_client(stack)
            try:
                client.delete(tasks.sent_key(lost))
            finally:
                client.close()
            assert sum(queued_ids(stack).values()) == full - 1

            assert sweep()["requeued"] == 1
            now = queued_ids(stack)
            assert sum(now.values()) == full  # as it was, plus the one sent again
            assert all(now[i] == 1 for i in ids)
            assert {g: k for g, k in now.items() if g not in ours} == dict(base)
            assert sweep()["requeued"] == 0 and sum(queued_ids(stack).values()) == full
        finally:
            with Session(stack.engine) as session:
                session.execute(update(Generation).where(col(Generation.id).in_(ids))
                                .values(status="failed", active_node_id=None))
                session.commit()
            drop_messages(stack, ours)
            client = redis_client(stack)
            try:
                client.delete(*(tasks.sent_key(i) for i in ids))
            finally:
                client.close()
