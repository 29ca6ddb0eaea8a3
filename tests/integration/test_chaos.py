"""Chaos at scale: the parts Easel stands on fail while it is busy, and no work is lost or doubled.

- Redis restarts without persistence under 300 queued generations: every one runs exactly once.
- A worker process is killed (`kill -9`) with 20 generations running: each finishes, charged once.
- An api replica stops and comes back (gracefully, then `kill -9`) under 50 SSE clients: each
  resumes with `Last-Event-ID` and receives every event exactly once, in seq order.
- PostgreSQL restarts under writes: requests meanwhile are `503 database_unavailable` (never 500),
  what was committed is still there, and requests after the restart succeed.

Each waits on state (rows, queues, streams), never on a delay. They run on the SQLite stack (the
PostgreSQL one adds time, not coverage: its own server is the subject of the last test).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlmodel import Session, col, select

from easel_shared.ids import new_id
from easel_shared.models import Generation, Image, LedgerEntry, Node
from tests.fixtures.generation import (
    FINAL,
    SKETCH,
    generate,
    image_node,
    queue_drained,
    queue_length,
    worker_env,
    worker_idle,
)
from tests.fixtures.infra import missing
from tests.fixtures.processes import running, service_env
from tests.fixtures.s3 import free_port
from tests.fixtures.sse import SSEClient
from tests.fixtures.stack import ADMIN_TOKEN, SQLITE_ONLY, Account, ServerThread, Stack, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # On the SQLite stack: the PostgreSQL restart test starts a PostgreSQL server of its own.
    SQLITE_ONLY,
]

PARAMS = {"resolution": "1K", "aspect_ratio": "16:9"}  # the cheapest built-in render


def sweep_once() -> dict[str, int]:
    from easel_worker import runtime
    from easel_worker.jobs.sweep import sweep_once as sweep

    return sweep(runtime.get())


def pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def new_board(c: httpx.Client, name: str = "chaos") -> str:
    r = c.post("/v1/boards", json={"name": name})
    assert r.status_code == 201, r.text
    board_id: str = r.json()["id"]
    return board_id


def prompted_nodes(stack: Stack, account: Account, board_id: str, count: int) -> list[str]:
    """`count` image nodes with a prompt, written straight to the database (what the api's create
    and patch would leave; nothing watches this board yet), so hundreds take no time."""
    nodes = [Node(id=new_id("nod"), board_id=board_id, account_id=account.id, kind="image",
                  prompt=f"a lost letter {i}") for i in range(count)]
    ids = [n.id for n in nodes]
    with Session(stack.engine) as session:
        session.add_all(nodes)
        session.commit()
    return ids


def accept_all(stack: Stack, accounts: list[Account], per_account: int) -> list[str]:
    """`per_account` prompted image nodes for each account, each generating (accepted through
    the api): the generation ids. Each account's requests run in their own thread and client."""

    def one_account(acct: Account) -> list[str]:
        c = stack.client(acct.api_key)
        ids = []
        for node_id in prompted_nodes(stack, acct, new_board(c), per_account):
            r = generate(c, node_id, SKETCH, dict(PARAMS))
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        return ids

    with ThreadPoolExecutor(len(accounts)) as pool:
        return [gen_id for ids in pool.map(one_account, accounts) for gen_id in ids]


def statuses(stack: Stack, gen_ids: list[str]) -> Counter[str]:
    with Session(stack.engine) as session:
        rows = session.exec(select(Generation.status).where(col(Generation.id).in_(gen_ids))).all()
    return Counter(rows)


def wait_all(stack: Stack, gen_ids: list[str], status: str | tuple[str, ...], timeout: float, what: str) -> None:
    wanted = (status,) if isinstance(status, str) else status
    seen: Counter[str] = Counter()

    def done() -> bool:
        seen.clear()
        seen.update(statuses(stack, gen_ids))
        return sum(n for s, n in seen.items() if s in wanted) == len(gen_ids)

    try:
        wait_for(done, timeout=timeout, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (statuses: {dict(seen)})") from None


def assert_each_ran_once(stack: Stack, gen_ids: list[str], attempts: int) -> None:
    """Every generation succeeded after `attempts` runs, was reserved and captured exactly once,
    and produced one image, which its node shows."""
    with Session(stack.engine) as session:
        gens = session.exec(select(Generation).where(col(Generation.id).in_(gen_ids))).all()
        ledger = session.exec(select(LedgerEntry.generation_id, LedgerEntry.kind)
                              .where(col(LedgerEntry.generation_id).in_(gen_ids))).all()
        accounts = {g.account_id for g in gens}
        images = session.exec(select(Image.id).where(col(Image.account_id).in_(accounts))).all()
        shown = dict(session.exec(select(Node.id, Node.image_id)
                                  .where(col(Node.id).in_([g.node_id for g in gens]))).all())
    assert len(gens) == len(gen_ids)
    assert Counter(g.status for g in gens) == {"succeeded": len(gen_ids)}, Counter(g.error_code for g in gens)
    assert Counter(g.attempts for g in gens) == {attempts: len(gen_ids)}
    kinds: dict[str, list[str]] = {}
    for gen_id, kind in ledger:
        kinds.setdefault(str(gen_id), []).append(kind)
    assert {k: sorted(v) for k, v in kinds.items()} == {g: ["capture", "reserve"] for g in gen_ids}
    produced = [g.image_id for g in gens]
    assert None not in produced and len(set(produced)) == len(gen_ids)
    assert sorted(images) == sorted(str(i) for i in produced)  # no stray image from a doubled run
    assert all(shown[g.node_id] == g.image_id for g in gens)


# ----------------------------------------------------------------------------------- Redis


def test_300_queued_generations_survive_a_redis_restart(stack: Stack, paused_worker: None) -> None:
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be restarted here")
    # Generate is rate limited per account (120 a minute): spread the 300 over five accounts.
    accounts = [stack.new_account(credits=1000) for _ in range(5)]
    gen_ids = accept_all(stack, accounts, per_account=60)
    assert len(gen_ids) == 300
    wait_for(lambda: queue_length(stack) >= 300, what="the 300 messages to be queued")

    stack.redis.restart()  # no persistence: every queued message and sent marker is gone
    wait_for(lambda: pings(stack.settings.redis_url), what="Redis to answer")
    assert queue_length(stack) == 0
    assert statuses(stack, gen_ids) == {"queued": 300}

    wait_for(lambda: (sweep_once(), queue_length(stack) >= 300)[1], timeout=60, interval=0.2,
             what="the sweeper to send the 300 generations again")
    # Sent again once: their markers are back, so more sweeps send nothing more.
    sweep_once()
    assert queue_length(stack) == 300

    assert stack.worker is not None
    stack.worker.start()  # the in-process worker drains the queue (`paused_worker` then leaves it running)
    wait_all(stack, gen_ids, FINAL, timeout=150, what="the 300 generations to finish")
    wait_for(lambda: queue_length(stack) == 0, what="the queue to drain")
    worker_idle()
    assert_each_ran_once(stack, gen_ids, attempts=1)


# ---------------------------------------------------------------------------------- worker


def test_a_worker_killed_with_20_generations_running_finishes_each_once(stack: Stack, tmp_path: Path) -> None:
    acct = stack.new_account(credits=1000)
    assert stack.worker is not None
    queue_drained(stack)
    with stack.worker.paused():
        # Only the separate worker process consumes now; it runs all 20 at once.
        env = worker_env(stack, tmp_path, latency_ms=120_000, concurrency=20)
        env["HEARTBEAT_INTERVAL_SECONDS"] = "2"  # the production default; nothing sweeps before the kill
        log = (tmp_path / "worker.log").open("wb")  # kept for a failure's post-mortem
        proc = subprocess.Popen([sys.executable, "-m", "easel_worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # All twenty take their leases at once. (This once exhausted the process's SQLite pool:
            # the after-commit relay took a second connection while its session held the first.)
            gen_ids = accept_all(stack, [acct], per_account=20)
            wait_all(stack, gen_ids, "running", timeout=120, what="the worker process to run the 20")
            assert statuses(stack, gen_ids) == {"running": 20}
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            log.close()
        # Their heartbeats go stale; the sweeper hands every one back to the queue.
        wait_for(lambda: (sweep_once(), statuses(stack, gen_ids) == {"queued": 20})[1], timeout=60,
                 interval=0.2, what="the sweeper to recover the 20 generations")
    wait_all(stack, gen_ids, FINAL, timeout=120, what="the in-process worker to finish the 20")
    worker_idle()
    assert_each_ran_once(stack, gen_ids, attempts=2)


def test_a_run_that_fails_before_its_lease_is_not_lost(stack: Stack, account: Account, monkeypatch: pytest.MonkeyPatch,
                                                       ) -> None:
    """What the 20-run chaos test hit: the worker process's database pool timed out in `acquire`
    (twenty runs leasing at once exhausted it), the task raised, Celery acknowledged the message
    (acks_late acknowledges failures) and the generation stayed `queued` with nobody to run it. A
    database that does not answer for a moment (a pool timeout, a PostgreSQL restart) must not
    lose a generation: here every lease attempt of the first delivery fails, and the sweeper sends
    it again."""
    from sqlalchemy.exc import OperationalError

    from easel_worker.jobs import generation

    c = account.client
    n = image_node(c, new_board(c), prompt="a letter in a storm")
    real = generation.acquire
    failed = threading.Event()
    calls: list[str] = []

    def acquire_first_delivery_failing(rt: Any, generation_id: str) -> Any:
        calls.append(generation_id)
        if len(calls) <= generation.LEASE_TRIES:
            if len(calls) == generation.LEASE_TRIES:
                failed.set()
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return real(rt, generation_id)

    monkeypatch.setattr(generation, "acquire", acquire_first_delivery_failing)
    r = generate(c, n["id"], SKETCH, dict(PARAMS))
    assert r.status_code == 202, r.text
    gen_id = r.json()["id"]
    wait_for(failed.is_set, what="the worker to take the message")
    worker_idle()
    wait_for(lambda: (sweep_once(), statuses(stack, [gen_id]) != {"queued": 1})[1], timeout=10, interval=0.2,
             what="the sweeper to send the generation again")
    wait_all(stack, [gen_id], FINAL, timeout=60, what="the generation to finish")
    assert_each_ran_once(stack, [gen_id], attempts=1)


# ------------------------------------------------------------------------------------- api


@dataclass
class Follower:
    """One SSE client following a board across reconnections (as the canvas does)."""

    url: str
    board_id: str
    api_key: str
    connections: list[SSEClient] = field(default_factory=list)

    def connect(self) -> None:
        last = self.connections[-1].last_event_id if self.connections else None
        client = SSEClient(self.url, self.board_id, self.api_key, last_event_id=last)
        self.connections.append(client.start())
        assert client.status_code == 200, (client.status_code, client.body)

    @property
    def current(self) -> SSEClient:
        return self.connections[-1]

    def events(self) -> list[Any]:
        return [e for c in self.connections for e in c.events]

    def close(self) -> None:
        for c in self.connections:
            c.close()


class Writer(threading.Thread):
    """Creates text nodes through an api, one after another, until stopped; with `paced`, only
    as many as the test grants (so a phase of the test makes a known handful of changes)."""

    def __init__(self, client: httpx.Client, board_id: str, paced: bool = False) -> None:
        super().__init__(daemon=True, name="chaos-writer")
        self.client, self.board_id, self.paced = client, board_id, paced
        self.created: list[str] = []
        self.failures: list[str] = []
        self._grants = threading.Semaphore(0)
        self.granted = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            if self.paced and not self._grants.acquire(timeout=0.05):
                continue
            r = self.client.post(f"/v1/boards/{self.board_id}/nodes",
                                 json={"kind": "text", "text": f"change {len(self.created)}"})
            if r.status_code == 201:
                self.created.append(r.json()["id"])
            else:
                self.failures.append(r.text)

    def grant(self, count: int) -> int:
        """Let `count` more changes through; how many there are once every grant is made."""
        self.granted += count
        self._grants.release(count)
        return self.granted

    def wait_created(self, count: int) -> None:
        wait_for(lambda: len(self.created) >= count, timeout=60, what=f"{count} changes")

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(60)


def has_all(follower: Follower, node_ids: set[str]) -> bool:
    return node_ids <= {e.data["id"] for e in follower.events() if e.event == "node.created"}


def stream_length(stack: Stack, board_id: str) -> int:
    from easel_shared.events import stream_key

    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        return int(client.xlen(stream_key(board_id)))
    finally:
        client.close()


def seq(event_id: str) -> int:
    head, _, tail = event_id.partition("-")
    assert tail == "0", event_id
    return int(head)


def test_50_sse_clients_resume_across_api_replica_restarts(stack: Stack, account: Account) -> None:
    """The replica on one port lives three times: an in-process server stopped gracefully (its
    streams end), an `easel_api` process killed with `kill -9` (connections just break), and an
    in-process server again. Changes go on through the main api all along, also while the
    replica is down or starting."""
    from easel_api.main import create_app

    c = account.client
    board_id = new_board(c, "followed")
    assert c.post(f"/v1/boards/{board_id}/nodes", json={"kind": "text", "text": "first"}).status_code == 201
    # Its event is on the board's stream, so every snapshot carries a real id to resume from.
    wait_for(lambda: stream_length(stack, board_id) > 0, what="the first event to reach the stream")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    followers = [Follower(url, board_id, account.api_key) for _ in range(50)]
    writer = Writer(stack.client(account.api_key), board_id, paced=True)  # through the main api
    writer.start()

    def reconnect_all() -> None:
        for f in followers:
            f.connect()  # with the Last-Event-ID of its previous stream, if any

    def all_ended(why: str) -> None:
        for f in followers:
            assert f.current.wait_ended(30), why

    replicas: list[ServerThread] = []

    def start_replica() -> None:
        replicas.append(ServerThread(create_app(stack.settings), port))
        replicas[-1].start()

    try:
        start_replica()
        reconnect_all()
        for f in followers:
            f.current.wait_for_type("board.snapshot")
        writer.wait_created(writer.grant(5))
        writer.grant(5)  # racing the stop
        replicas[-1].stop()  # graceful: every stream ends
        all_ended("a stream outlived its stopped api")
        writer.wait_created(writer.grant(5))  # made while the replica is down

        writer.grant(5)  # racing the start
        with running("easel_api", service_env(stack.settings, API_PORT=str(port)), f"{url}/healthz") as proc:
            reconnect_all()
            writer.wait_created(writer.grant(5))
            writer.grant(5)  # racing the kill
            proc.send_signal(signal.SIGKILL)  # no goodbye: connections just break
            proc.wait(30)
            all_ended("a stream outlived its killed api process")
        writer.wait_created(writer.grant(5))

        start_replica()
        reconnect_all()
        writer.wait_created(writer.grant(5))
        writer.stop()
        assert writer.failures == []
        expected = set(writer.created)
        assert len(expected) == 40
        for f in followers:
            wait_for(functools.partial(has_all, f, expected), what="every change to reach every client")
        for f in followers:
            events = f.events()
            assert [e.event for e in events].count("board.snapshot") == 1  # resumed, never reloaded
            assert events[0].event == "board.snapshot"
            created = Counter(e.data["id"] for e in events if e.event == "node.created")
            assert {n: created[n] for n in expected} == dict.fromkeys(expected, 1)
            seqs = [seq(e.id) for e in events]
            # Every event of the board exactly once, in seq order: no gap, no repeat.
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    finally:
        writer.stop()
        for f in followers:
            f.close()
        for r in replicas:
            r.stop()


# ------------------------------------------------------------------------------ PostgreSQL


class ThrowawayPostgres:
    """A PostgreSQL server of its own (the machine's binaries, a temporary data folder owned by
    `postgres`, a free port), which a test can stop and start again."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="easel-pg-"))
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as `postgres`
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_postgres, *args], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:] + done.stdout.decode()[-2000:]

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def cleanup(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.cleanup()  # also when the test failed


def unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "database_unavailable", r.text
    assert r.json()["error"]["message"]
    assert int(r.headers["Retry-After"]) > 0


def test_a_postgresql_restart_answers_503_and_loses_nothing(stack: Stack) -> None:
    from easel_api.main import create_app
    from easel_shared.migrate import upgrade

    with throwaway_postgres() as pg, contextlib.ExitStack() as cleanup:
        upgrade(pg.url)
        port = free_port()
        settings = stack.settings.model_copy(update={"database_url": pg.url,
                                                     "api_public_url": f"http://127.0.0.1:{port}"})
        api = ServerThread(create_app(settings), port)
        api.start()
        cleanup.callback(api.stop)
        admin = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        cleanup.callback(admin.close)
        r = admin.post("/v1/admin/accounts", json={"name": "pg-chaos", "credits": 50})
        assert r.status_code == 201, r.text
        c = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {r.json()['api_key']}"}, timeout=30)
        cleanup.callback(c.close)
        board_id = new_board(c, "survives")
        writer_client = httpx.Client(base_url=api.url, headers=c.headers, timeout=30)
        cleanup.callback(writer_client.close)
        writer = Writer(writer_client, board_id)
        writer.start()
        cleanup.callback(writer.stop)
        writer.wait_created(10)

        pg.stop()  # like a crash: connections cut, no checkpoint
        committed = list(writer.created)
        wait_for(lambda: len(writer.failures) >= 3, what="writes to fail while the database is down")
        unavailable(c.get("/v1/account"))
        unavailable(c.get(f"/v1/boards/{board_id}"))
        unavailable(c.post("/v1/boards", json={"name": "during the outage"}))
        unavailable(c.get(f"/v1/boards/{board_id}/events"))
        unavailable(admin.post("/v1/admin/accounts", json={"name": "nobody", "credits": 1}))
        assert httpx.get(f"{api.url}/readyz", timeout=30).status_code == 503

        pg.start()
        wait_for(lambda: httpx.get(f"{api.url}/readyz", timeout=30).status_code == 200, timeout=60,
                 what="the api to be ready again")
        created_before = len(writer.created)
        writer.wait_created(created_before + 10)  # writes go on by themselves
        writer.stop()

        # While the server was away every request was a 503 with the envelope, never a 500.
        assert writer.failures, "the outage was not seen"
        for text in writer.failures:
            assert '"database_unavailable"' in text, text
        # Whatever was committed is still there (the crash lost no acknowledged write) ...
        board = c.get(f"/v1/boards/{board_id}")
        assert board.status_code == 200, board.text
        on_board = {n["id"] for n in board.json()["nodes"]}
        assert set(committed) <= on_board and set(writer.created) <= on_board
        # ... and every request after the restart succeeds.
        assert c.get("/v1/account").json()["credits"] == 50
        assert new_board(c, "after the outage")
        r = admin.post("/v1/admin/accounts", json={"name": "after", "credits": 1})
        assert r.status_code == 201, r.text
        with SSEClient(api.url, board_id, c.headers["Authorization"].removeprefix("Bearer ")) as sse:
            assert sse.status_code == 200
            assert {n["id"] for n in sse.wait_for_type("board.snapshot").data["nodes"]} == on_board
