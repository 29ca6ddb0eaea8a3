"""Fairness benchmark: one account's backlog must not make another wait behind all of it.

Starts the stack as local processes (Redis, the api and one worker with a fixed number of slots,
local file storage, the database: SQLite unless --database-url) and a stand-in image vendor in
this process that answers every request after 200 ms (an `http` catalog model; `--model-cap N`
gives it `max_concurrency: N`). Every account is limited to ACCOUNT_MAX_RUNNING (default: the
worker's slots). `--builtin` uses the built-in renderer with 200 ms of simulated latency instead:
on a 2-core machine its ~100 ms of CPU per image, beside the pipeline's own, makes the fleet
CPU-bound, so a "model latency" is then about 3x longer than the 200 ms asked for.
Queue wait = `started_at - created_at` of a generation (accepted to leased). Throughput =
generations finished per second once an account's requests are all in (its own accepts take CPU
from the fleet on a small machine).

1. idle: account B queues 10 generations on the otherwise idle fleet: B's queue wait.
2. bypass: account Z, whose limit is raised so far that the scheduler never holds anything back
   (everything goes to the broker at once, first come first served: Easel before the scheduler;
   with --model-cap, on the same vendor without the cap), queues --baseline generations: the
   fleet's throughput with one account alone, as it was.
3. backlog: account A queues 1,000 generations; once --alone more of them have finished after
   the last was accepted (A's throughput alone, with the scheduler), B queues 10: B's queue wait
   behind A's backlog, and the fleet's throughput meanwhile. What is left of A's backlog is
   abandoned with the stack.

    uv run python bench/fairness.py [--database-url postgresql://...] [--slots 4]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ADMIN_TOKEN, api_env, percentile, start_redis  # noqa: E402
from easel_shared.db import normalize_url  # noqa: E402
from easel_shared.migrate import upgrade  # noqa: E402
from tests.fixtures.processes import running  # noqa: E402
from tests.fixtures.s3 import free_port  # noqa: E402

PARAMS = {"resolution": "1K", "aspect_ratio": "16:9", "seed": 1}
STAND_IN = "bench-vendor"
UNCAPPED = "bench-vendor-uncapped"  # the same vendor without max_concurrency: the bypass run's
BOARD_SIZE = 50
FINAL = ("succeeded", "failed", "canceled")


@contextlib.contextmanager
def local_stack(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str]]:
    """Yields (api_url, database_url) with api and worker running."""
    with contextlib.ExitStack() as stack:
        redis_server = start_redis(stack)
        catalog = stack.enter_context(stand_in_catalog(args, workdir))
        db_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        upgrade(db_url)
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        env = api_env(
            db_url, redis_server.url, workdir, api_port,
            BUILTIN_MODEL_LATENCY_MS=str(args.latency_ms), WORKER_CONCURRENCY=str(args.slots),
            ACCOUNT_MAX_RUNNING=str(args.account_max_running or args.slots),
            RATE_LIMIT_GENERATE_PER_MINUTE="1000000",
            WORKER_HEARTBEAT_FILE=str(workdir / "worker-heartbeat"), WORKER_METRICS_PORT="0",
            LOG_LEVEL=args.log_level, MODEL_CATALOG_PATH=str(catalog),
        )
        stack.enter_context(running("easel_api", env, f"{api_url}/readyz", log=workdir / "api.log"))
        stack.enter_context(running("easel_worker", env, log=workdir / "worker.log"))
        yield api_url, db_url


@contextlib.contextmanager
def stand_in_catalog(args: argparse.Namespace, workdir: Path) -> Iterator[Path]:
    """A vendor that answers after `--latency-ms` with a PNG of the size asked (the same bytes each
    time: the worker checks it and makes its thumbnail, as for any vendor), and the catalog file
    that offers it."""
    images: dict[tuple[int, int], bytes] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            size = (int(body["width"]), int(body["height"]))
            with lock:
                if size not in images:
                    out = io.BytesIO()
                    PILImage.new("RGB", size, (40, 90, 160)).save(out, "PNG")
                    images[size] = out.getvalue()
            time.sleep(args.latency_ms / 1000)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(images[size])))
            self.end_headers()
            self.wfile.write(images[size])

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    model: dict[str, object] = {
        "id": STAND_IN, "name": "Bench vendor", "provider": "http",
        "endpoint": f"http://127.0.0.1:{server.server_address[1]}/generate", "timeout_seconds": 30,
        "max_reference_images": 0, "resolutions": ["1K"], "aspect_ratios": ["16:9"], "credits": {"1K": 1},
    }
    uncapped = {**model, "id": UNCAPPED}
    if args.model_cap:
        model["max_concurrency"] = args.model_cap
    path = workdir / "catalog.json"
    path.write_text(json.dumps({"models": [model, uncapped]}))
    try:
        yield path
    finally:
        server.shutdown()


class Bench:
    def __init__(self, api_url: str, db_url: str, clients: int, model: str) -> None:
        self.body = {"model_id": model, "params": PARAMS}
        self.api_url = api_url
        self.admin = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
        self.engine = create_engine(normalize_url(db_url))
        self.pool = ThreadPoolExecutor(clients)

    def account(self, name: str, max_running: int | None = None) -> tuple[str, httpx.Client]:
        body = self.admin.post("/v1/admin/accounts", json={"name": name, "credits": 10_000_000}).json()
        if max_running is not None:
            r = self.admin.patch(f"/v1/admin/accounts/{body['id']}", json={"max_running": max_running})
            assert r.status_code == 200, r.text
        client = httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {body['api_key']}"},
                              timeout=60, limits=httpx.Limits(max_connections=32))
        return body["id"], client

    def nodes(self, c: httpx.Client, count: int) -> list[str]:
        boards = [c.post("/v1/boards", json={"name": f"fair {i}"}).json()["id"]
                  for i in range(0, count, BOARD_SIZE)]

        def one(i: int) -> str:
            node: dict[str, Any] = c.post(f"/v1/boards/{boards[i // BOARD_SIZE]}/nodes",
                                          json={"kind": "image"}).json()
            c.patch(f"/v1/nodes/{node['id']}", json={"prompt": f"a lighthouse, take {i}"})
            return str(node["id"])

        return list(self.pool.map(one, range(count)))

    def queue(self, c: httpx.Client, node_ids: list[str], model: str | None = None) -> list[str]:
        body = self.body if model is None else {**self.body, "model_id": model}

        def one(node_id: str) -> str:
            r = c.post(f"/v1/nodes/{node_id}/generations", json=body)
            if r.status_code != 202:
                raise SystemExit(f"generation refused: {r.status_code} {r.text}")
            return str(r.json()["id"])

        return list(self.pool.map(one, node_ids))

    def rows(self, account_id: str) -> dict[str, tuple[str, datetime, datetime | None, datetime | None]]:
        """Every generation of the account: id -> (status, created_at, started_at, finished_at)."""
        q = text("SELECT id, status, created_at, started_at, finished_at FROM generations WHERE account_id = :a")
        with self.engine.connect() as conn:
            rows = conn.execute(q, {"a": account_id}).all()
        return {r[0]: (r[1], _dt(r[2]), _dt(r[3]), _dt(r[4])) for r in rows}  # type: ignore[misc]

    def finished(self, account_id: str) -> int:
        """How many of the account's generations have finished: one indexed count."""
        q = text("SELECT count(*) FROM generations WHERE account_id = :a "
                 "AND status IN ('succeeded', 'failed', 'canceled')")
        with self.engine.connect() as conn:
            return int(conn.execute(q, {"a": account_id}).scalar_one())

    def wait(self, account_id: str, count: int, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while (done := self.finished(account_id)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {done} of {count} finished")
            time.sleep(0.1)

    def queue_waits_ms(self, account_id: str, gen_ids: list[str]) -> list[float]:
        rows = self.rows(account_id)
        bad = [rows[g][0] for g in gen_ids if rows[g][0] != "succeeded"]
        if bad:
            raise SystemExit(f"generations did not succeed: {bad}")
        return [(started - created).total_seconds() * 1000
                for status, created, started, _ in (rows[g] for g in gen_ids) if started is not None]

    def throughput(self, account_ids: list[str], start: datetime, end: datetime | None = None) -> float:
        """Generations of these accounts finished per second from `start` to the last finish
        before `end`."""
        done = sorted(f for a in account_ids for _, _, _, f in self.rows(a).values()
                      if f is not None and f >= start and (end is None or f <= end))
        if len(done) < 2:
            return 0.0
        return (len(done) - 1) / (done[-1] - done[0]).total_seconds()

    def now(self) -> datetime:
        """The database's idea of now, as the rows hold it (naive UTC)."""
        return datetime.now(UTC).replace(tzinfo=None)


def _dt(value: object) -> datetime | None:
    """Naive UTC (SQLite hands back text, PostgreSQL aware datetimes)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def fmt(waits: list[float]) -> str:
    return f"p50 {statistics.median(waits):7.0f} ms   p95 {percentile(waits, 95):7.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a fresh SQLite file)")
    parser.add_argument("--slots", type=int, default=4, help="worker threads: the fleet's slots (default 4)")
    parser.add_argument("--account-max-running", type=int, default=0,
                        help="ACCOUNT_MAX_RUNNING (default: --slots; slots + 2 keeps a message of a busy "
                             "account ready in the broker, see bench/README.md)")
    parser.add_argument("--latency-ms", type=int, default=200, help="model latency (default 200)")
    parser.add_argument("--model-cap", type=int, default=0,
                        help="the model's max_concurrency (default: none; the worker's slots make Easel "
                             "order every start)")
    parser.add_argument("--builtin", action="store_true",
                        help="the built-in renderer (CPU work per image) instead of the stand-in vendor")
    parser.add_argument("--backlog", type=int, default=1000, help="generations A queues (default 1000)")
    parser.add_argument("--small", type=int, default=10, help="generations B queues (default 10)")
    parser.add_argument("--alone", type=int, default=200,
                        help="A's generations finished before B asks (A's throughput alone; default 200)")
    parser.add_argument("--baseline", type=int, default=200,
                        help="generations of the scheduler-bypassed throughput run (default 200)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--workdir", default=None, help="keep the database and process logs here")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="easel-fairness-")))
        workdir.mkdir(parents=True, exist_ok=True)
        api_url, db_url = stack.enter_context(local_stack(args, workdir))
        bench = Bench(api_url, db_url, args.clients, "easel-sketch" if args.builtin else STAND_IN)
        load_before = os.getloadavg()[0]
        b_id, b = bench.account("B")
        z_id, z = bench.account("Z", max_running=1000)
        a_id, a = bench.account("A")
        b_idle_nodes, b_load_nodes = bench.nodes(b, args.small), bench.nodes(b, args.small)
        z_nodes, a_nodes = bench.nodes(z, args.baseline), bench.nodes(a, args.backlog)
        warm = bench.queue(b, bench.nodes(b, args.slots))  # connections, caches, the worker's first runs
        bench.wait(b_id, len(warm))

        # 1. B alone.
        b_idle = bench.queue(b, b_idle_nodes)
        bench.wait(b_id, len(warm) + len(b_idle))
        idle_waits = bench.queue_waits_ms(b_id, b_idle)

        # 2. One account alone, the scheduler holding nothing back (as before it existed).
        bench.queue(z, z_nodes, None if args.builtin else UNCAPPED)
        z_in = bench.now()
        bench.wait(z_id, len(z_nodes))
        bypass_rate = bench.throughput([z_id], z_in)

        # 3. A's backlog, then B.
        t_queue = time.perf_counter()
        bench.queue(a, a_nodes)
        queue_s = time.perf_counter() - t_queue
        a_in, a_before = bench.now(), bench.finished(a_id)
        bench.wait(a_id, a_before + args.alone)
        b_asks = bench.now()
        b_load = bench.queue(b, b_load_nodes)
        bench.wait(b_id, len(warm) + 2 * args.small)
        b_done = bench.now()
        load_waits = bench.queue_waits_ms(b_id, b_load)
        alone_rate = bench.throughput([a_id], a_in, b_asks)
        a_during = bench.throughput([a_id], b_asks, b_done)
        fleet_during = bench.throughput([a_id, b_id], b_asks, b_done)
        a_done = bench.finished(a_id)

    db = "SQLite" if not args.database_url else args.database_url.split(":", 1)[0]
    limit = args.account_max_running or args.slots
    idle_p50, load_p50 = statistics.median(idle_waits), statistics.median(load_waits)
    aim = 2 * idle_p50 + args.latency_ms
    model = (f"easel-sketch 1K 16:9 + {args.latency_ms} ms latency" if args.builtin
             else f"a vendor answering in {args.latency_ms} ms")
    cap = f", model max_concurrency {args.model_cap}" if args.model_cap and not args.builtin else ""
    print(f"fairness: {db}, worker {args.slots} slots, ACCOUNT_MAX_RUNNING {limit}{cap}, {model}, "
          f"{os.cpu_count()} cores, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"B idle fleet      queue wait {fmt(idle_waits)}   ({len(idle_waits)} generations)")
    print(f"B behind A        queue wait {fmt(load_waits)}   (A: {args.backlog} queued in {queue_s:.1f} s, "
          f"then {args.alone} finished before B asked)")
    print(f"aim               B p50 <= 2 x idle p50 + latency = {aim:.0f} ms: "
          f"{'met' if load_p50 <= aim else 'NOT met'} (B p50 / idle p50 = {load_p50 / idle_p50:.1f}x)")
    ratio = alone_rate / bypass_rate
    print(f"throughput        A alone, scheduled {alone_rate:5.2f}/s;   one account alone, scheduler bypassed "
          f"{bypass_rate:5.2f}/s;   ratio {ratio:.2f}: {'met' if ratio >= 0.9 else 'NOT met'} (aim: within 10%)")
    print(f"while B ran       fleet {fleet_during:5.2f}/s (A {a_during:5.2f}/s)   "
          f"[{a_done} of A's {args.backlog} finished when B was done]")


if __name__ == "__main__":
    main()
