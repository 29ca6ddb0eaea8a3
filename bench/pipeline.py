"""Generation pipeline benchmark: what the orchestration costs on top of the model.

Starts the whole stack as local processes (Redis, moto's S3 server, the api and a worker, the
database: SQLite unless --database-url), drives N generations one after another over HTTP with
a zero-latency built-in model (the client learns that each one ended from the board's live
events, as a canvas does; `--notice poll` asks `GET /v1/generations/{id}` instead), and
compares the per-generation overhead (end-to-end minus the model's own time) with a bare Celery
round trip on the same broker, measured in bursts spread over the same run (and beside it one
plain read of the api, `GET /v1/nodes/{id}`, after each burst). Then a saturation run: --clients
threads generating at once for a fixed number of generations, generations per second
beside bare Celery no-op tasks per second (same clients, same broker, a worker of the same size).

    uv run python bench/pipeline.py [--n 50] [--database-url postgresql://...]
    uv run python bench/pipeline.py --saturation 200 --clients 8
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import secrets
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx_sse
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ADMIN_TOKEN, percentile, start_redis  # noqa: E402
from easel_shared.migrate import upgrade  # noqa: E402
from easel_shared.storage import S3ObjectStore  # noqa: E402
from tests.fixtures.processes import running  # noqa: E402
from tests.fixtures.s3 import _start_moto, free_port  # noqa: E402

BARE_QUEUE = "bench-bare"
BOARD_SIZE = 10
#: The aim: orchestration (the overhead without storage work) per generation within this
#: many bare Celery round trips.
ORCHESTRATION_AIM = 5.0


@dataclass
class Sample:
    end_to_end_ms: float
    accept_ms: float  # POST until its 202 arrived
    model_ms: float
    timings: dict[str, int]

    @property
    def overhead_ms(self) -> float:
        return self.end_to_end_ms - self.model_ms


# --------------------------------------------------------------------------- the stack


@contextlib.contextmanager
def local_stack(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str]]:
    """Yields (api_url, redis_url) with api and worker running."""
    with contextlib.ExitStack() as stack:
        redis_server = start_redis(stack)

        reasons: list[str] = []
        s3 = _start_moto(stack, reasons)
        if s3 is None:
            raise SystemExit("could not start moto: " + "; ".join(reasons))
        bucket = "easel-bench"
        S3ObjectStore(endpoint_url=s3.endpoint_url, bucket=bucket, region="us-east-1",
                      access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key).ensure_bucket()

        db_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        upgrade(db_url)

        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        env = {
            **os.environ,
            "DATABASE_URL": db_url, "REDIS_URL": redis_server.url, "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": s3.endpoint_url, "S3_BUCKET": bucket, "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": s3.access_key_id, "S3_SECRET_ACCESS_KEY": s3.secret_access_key,
            "ADMIN_TOKEN": ADMIN_TOKEN, "URL_SIGNING_SECRET": "bench-signing-" + secrets.token_hex(8),
            "API_PORT": str(api_port), "API_PUBLIC_URL": api_url,
            "BUILTIN_MODEL_LATENCY_MS": "0", "WORKER_CONCURRENCY": str(args.worker_concurrency),
            # The limiter stays in the path (one Redis call per accept) but never refuses a run.
            "RATE_LIMIT_GENERATE_PER_MINUTE": "1000000",
            "WORKER_HEARTBEAT_FILE": str(workdir / "worker-heartbeat"),
            "LOG_LEVEL": args.log_level, "LOG_FORMAT": "text",
        }
        stack.enter_context(running("easel_api", env, f"{api_url}/readyz", log=workdir / "api.log"))
        stack.enter_context(running("easel_worker", env, log=workdir / "worker.log"))
        bare_env = {**env, "BENCH_REDIS_URL": redis_server.url}
        stack.enter_context(running([str(Path(__file__).resolve()), "--bare-worker"], bare_env,
                                    log=workdir / "bare-worker.log"))
        yield api_url, redis_server.url


# --------------------------------------------------------------------------- bare Celery round trip


def bare_app(redis_url: str) -> object:
    from celery import Celery

    from easel_shared.tasks import celery_config

    app = Celery("easel-bench")
    app.conf.update(celery_config(redis_url, 3600))
    app.conf.update(task_ignore_result=False, result_backend=redis_url, task_default_queue=BARE_QUEUE,
                    worker_hijack_root_logger=False)

    @app.task(name="bench.ping")  # type: ignore[untyped-decorator]
    def ping() -> str:
        return "pong"

    return app


def run_bare_worker() -> None:
    """The other side of the bare round trip: a worker configured like easel's (threads pool,
    acks_late, prefetch 1) whose only task returns at once."""
    app = bare_app(os.environ["BENCH_REDIS_URL"])
    app.worker_main(["worker", "--queues", BARE_QUEUE, "--pool", "threads",  # type: ignore[attr-defined]
                     "--concurrency", os.environ.get("WORKER_CONCURRENCY", "2"),
                     "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                     "--hostname", "bench-bare@%h"])


class BareTrips:
    """Bare round trips in bursts spread over the sequential run of `n` generations (`before(i)`
    ahead of each; burst k goes before generation k * n // bursts), so they are measured over the
    same minutes as the generations: one burst of 50 before the run takes a tenth of a second,
    and its p50 moved from 1.8 to 3.9 ms between runs of one code on a noisy machine. Each trip
    is back to back with the one before, as in a single burst. (A trip from a quiet broker and
    worker is slower: 3.65 against 2.46 ms p50 for the first and second of two trips after each
    generation, measured; the aim is judged against the trips of a burst, the faster.)"""

    def __init__(self, redis_url: str, total: int, bursts: int, n: int) -> None:
        self.ping = bare_app(redis_url).tasks["bench.ping"]  # type: ignore[attr-defined]
        self.ping.apply_async(queue=BARE_QUEUE).get(timeout=60)  # warm up: worker ready, connections open
        self.bursts = max(1, min(bursts, total, n))
        # Trips per burst, as even as the total allows, and where each burst goes.
        self.sizes = [total // self.bursts + (k < total % self.bursts) for k in range(self.bursts)]
        self.at = [k * n // self.bursts for k in range(self.bursts)]
        self.ms: list[float] = []
        self.read_ms: list[float] = []
        self.seconds = 0.0  # spent on the trips and reads

    def before(self, i: int, read: Callable[[], httpx.Response]) -> None:
        """The burst due before generation `i`, then as many `read`s, timed the same way: a
        whole request to the api with its auth and one database read, the floor under the
        accept's request."""
        started = time.perf_counter()
        for size in (s for s, at in zip(self.sizes, self.at, strict=True) if at == i):
            for _ in range(size):
                t0 = time.perf_counter()
                assert self.ping.apply_async(queue=BARE_QUEUE).get(timeout=30) == "pong"
                self.ms.append((time.perf_counter() - t0) * 1000)
            for _ in range(size):
                t0 = time.perf_counter()
                read().raise_for_status()
                self.read_ms.append((time.perf_counter() - t0) * 1000)
        self.seconds += time.perf_counter() - started


def bare_saturation(redis_url: str, n: int, clients: int) -> float:
    """No-op tasks per second: `clients` threads, each sending one task and waiting for its
    result, then the next (closed loop, like the generation clients), `n` tasks in all."""
    # An app (connections, result consumer) per thread, made here: Celery warns that the task
    # name is registered again, which is meant (the same no-op everywhere).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pings: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(clients):
            pings.put(bare_app(redis_url).tasks["bench.ping"])  # type: ignore[attr-defined]
    local = threading.local()

    def one(_: int) -> None:
        if not hasattr(local, "ping"):
            local.ping = pings.get_nowait()
        assert local.ping.apply_async(queue=BARE_QUEUE).get(timeout=60) == "pong"

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients * 4)))  # warm up: every thread connected
        started = time.perf_counter()
        list(pool.map(one, range(n)))
        return n / (time.perf_counter() - started)


# --------------------------------------------------------------------------- generations


def account_client(api_url: str) -> tuple[httpx.Client, str]:
    admin = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    key = admin.post("/v1/admin/accounts", json={"name": "bench", "credits": 10_000_000}).json()["api_key"]
    return httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60), key


def make_nodes(c: httpx.Client, count: int) -> list[tuple[str, str]]:
    """`count` image nodes with prompts, on boards of `BOARD_SIZE`: (board id, node id) each."""
    nodes = []
    for i in range(count):
        if i % BOARD_SIZE == 0:  # boards of a realistic size: settling a generation loads its board
            board = c.post("/v1/boards", json={"name": f"bench {i // BOARD_SIZE}"}).json()["id"]
        node = c.post(f"/v1/boards/{board}/nodes", json={"kind": "image"}).json()
        c.patch(f"/v1/nodes/{node['id']}", json={"prompt": f"a lighthouse on a cliff, take {i}"})
        nodes.append((board, node["id"]))
    return nodes


FINAL = ("succeeded", "failed", "canceled")


class BoardWatch:
    """One board's live events on one streaming connection (`GET /v1/boards/{id}/events`), as a
    canvas keeps it open: notes every generation that ended, for `wait` to pick up."""

    def __init__(self, c: httpx.Client, board_id: str) -> None:
        self.c, self.board_id = c, board_id
        self.ended: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.open = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True, name=f"watch-{board_id}")
        self.thread.start()
        if not self.open.wait(30):
            raise SystemExit(f"the event stream of board {board_id} did not open")

    def _listen(self) -> None:
        url = f"/v1/boards/{self.board_id}/events"
        try:
            with httpx_sse.connect_sse(self.c, "GET", url, timeout=httpx.Timeout(30, read=None)) as source:
                for sse in source.iter_sse():
                    if sse.event == "board.snapshot":
                        self.open.set()  # from here on every change arrives as an event
                    elif sse.event.startswith("generation.") and sse.data:
                        gen = orjson.loads(sse.data)
                        if gen["status"] in FINAL:
                            with self.changed:
                                self.ended[gen["id"]] = gen
                                self.changed.notify_all()
        except httpx.TransportError:
            pass  # the stream ends with the stack; a wait still pending says so by its deadline

    def wait(self, gen_id: str, timeout: float = 60) -> dict[str, Any]:
        with self.changed:
            if not self.changed.wait_for(lambda: gen_id in self.ended, timeout):
                raise SystemExit(f"generation {gen_id} did not end within {timeout:g} s")
            return self.ended.pop(gen_id)


def watch_boards(api_url: str, key: str, nodes: list[tuple[str, str]]) -> dict[str, BoardWatch]:
    """A watch per board, each on its own connection, open before any generation is asked for."""
    boards = dict.fromkeys(board for board, _ in nodes)
    stream = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"},
                          limits=httpx.Limits(max_connections=len(boards) + 1))
    return {board: BoardWatch(stream, board) for board in boards}


def generate(c: httpx.Client, node: tuple[str, str], body: Mapping[str, object], poll: float,
             watches: Mapping[str, BoardWatch] | None) -> tuple[dict[str, Any], float]:
    """POST a generation and wait until it ends, from the board's events (`watches`) or by
    polling every `poll` seconds: (the generation, accept ms)."""
    board_id, node_id = node
    t0 = time.perf_counter()
    r = c.post(f"/v1/nodes/{node_id}/generations", json=body)
    if r.status_code != 202:
        raise SystemExit(f"generation refused: {r.status_code} {r.text}")
    gen_id = r.json()["id"]
    accept_ms = (time.perf_counter() - t0) * 1000
    if watches is not None:
        gen = watches[board_id].wait(gen_id)
    else:
        while True:
            gen = c.get(f"/v1/generations/{gen_id}").json()
            if gen["status"] in FINAL:
                break
            time.sleep(poll)
    if gen["status"] != "succeeded":
        raise SystemExit(f"generation {gen_id} ended {gen['status']}: {gen['error']}")
    return gen, accept_ms


def run_saturation(api_url: str, n: int, warmup: int, clients: int, poll: float | None,
                   model: str) -> tuple[list[float], float]:
    """`clients` threads generating at once (each: POST, wait until it ends, next), `n`
    generations measured after `warmup` ones: (end-to-end ms of each, generations per second).
    `poll` None: each client learns of the end from the board's events."""
    c, key = account_client(api_url)
    nodes = make_nodes(c, n + warmup)
    watches = watch_boards(api_url, key, nodes) if poll is None else None
    body = {"model_id": model, "params": {"resolution": "1K", "aspect_ratio": "1:1", "seed": 1}}

    def one(node: tuple[str, str]) -> float:
        t0 = time.perf_counter()
        generate(c, node, body, poll or 0, watches)
        return (time.perf_counter() - t0) * 1000

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, nodes[:warmup]))
        started = time.perf_counter()
        latencies = list(pool.map(one, nodes[warmup:]))
        return latencies, n / (time.perf_counter() - started)


def run_generations(api_url: str, n: int, warmup: int, poll: float | None, model: str,
                    bare: BareTrips) -> tuple[list[Sample], float]:
    """The sequential run: (samples, its wall seconds without the bare trips' bursts)."""
    c, key = account_client(api_url)
    nodes = make_nodes(c, n + warmup)
    watches = watch_boards(api_url, key, nodes) if poll is None else None
    body = {"model_id": model, "params": {"resolution": "1K", "aspect_ratio": "1:1", "seed": 1}}

    samples: list[Sample] = []
    for node in nodes[:warmup]:
        generate(c, node, body, poll or 0, watches)
    def read() -> httpx.Response:
        return c.get(f"/v1/nodes/{nodes[0][1]}")

    started = time.perf_counter()
    for i, node in enumerate(nodes[warmup:]):
        bare.before(i, read)
        t0 = time.perf_counter()
        gen, accept_ms = generate(c, node, body, poll or 0, watches)
        elapsed = (time.perf_counter() - t0) * 1000
        samples.append(Sample(elapsed, accept_ms, float(gen["timings"]["model_ms"]), gen["timings"]))
    return samples, time.perf_counter() - started - bare.seconds


def api_route_means(api_url: str) -> dict[str, float]:
    """Mean server-side latency (ms) of the two routes the benchmark drives, from /metrics."""
    wanted = {("POST", "/v1/nodes/{node_id}/generations"): "accept", ("GET", "/v1/generations/{generation_id}"): "get"}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in httpx.get(f"{api_url}/metrics", timeout=10).text.splitlines():
        if not line.startswith("easel_http_request_duration_seconds_"):
            continue
        name, _, value = line.rpartition(" ")
        labels = dict(part.split("=", 1) for part in name[name.index("{") + 1 : -1].split(","))
        key = wanted.get((labels["method"].strip('"'), labels["route"].strip('"')))
        if key is None or labels["status"].strip('"') not in ("200", "202"):
            continue
        if name.startswith("easel_http_request_duration_seconds_sum"):
            sums[key] = sums.get(key, 0.0) + float(value)
        elif name.startswith("easel_http_request_duration_seconds_count"):
            counts[key] = counts.get(key, 0.0) + float(value)
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


def notice(args: argparse.Namespace, poll_ms: float) -> str:
    return f"poll {poll_ms:g} ms" if args.notice == "poll" else "ends seen on the board's events"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="generations to measure (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="generations run first and not measured")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--model", default="easel-sketch")
    parser.add_argument("--notice", choices=("events", "poll"), default="events",
                        help="how a client learns that its generation ended: the board's live events "
                             "(default, one stream per board, open before the run) or polling")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="with --notice poll: the polling interval "
                        "of the sequential run (default 5)")
    parser.add_argument("--bare-trips", type=int, default=50, help="bare Celery round trips (default 50)")
    parser.add_argument("--bare-bursts", type=int, default=5,
                        help="bursts the bare trips are taken in, spread over the sequential run (default 5)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="easel worker and bare worker threads")
    parser.add_argument("--saturation", type=int, default=100,
                        help="generations of the saturation run (default 100; 0: no saturation run)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the saturation run")
    parser.add_argument("--saturation-poll-ms", type=float, default=100.0,
                        help="with --notice poll: the polling interval of each saturation client (default 100; "
                             "faster polling by 8 clients takes the api's CPU from the generations)")
    parser.add_argument("--bare-tasks", type=int, default=1000, help="no-op tasks of the bare saturation run")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--workdir", default=None, help="keep the database and process logs here")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.bare_trips < 1:
        parser.error("--n and --bare-trips must be at least 1")
    if args.bare_worker:
        run_bare_worker()
        return

    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="easel-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        api, redis_url = stack.enter_context(local_stack(args, workdir))
        trips = BareTrips(redis_url, args.bare_trips, args.bare_bursts, args.n)
        polling = args.notice == "poll"
        samples, wall = run_generations(api, args.n, args.warmup, args.poll_ms / 1000 if polling else None,
                                        args.model, trips)
        bare = trips.ms
        routes = api_route_means(api)
        if args.saturation:
            bare_rate = bare_saturation(redis_url, args.bare_tasks, args.clients)
            sat_latency, sat_rate = run_saturation(api, args.saturation, 2 * args.clients, args.clients,
                                                   args.saturation_poll_ms / 1000 if polling else None,
                                                   args.model)

    e2e = [s.end_to_end_ms for s in samples]
    overhead = [s.overhead_ms for s in samples]
    model = [s.model_ms for s in samples]
    parts = {k: statistics.median(s.timings.get(k, 0) for s in samples)
             for k in ("queue_wait_ms", "model_ms", "storage_ms", "total_ms")}
    bare_p50 = statistics.median(bare)
    db = "SQLite" if not args.database_url else args.database_url.split(":", 1)[0]
    print(f"generations: {len(samples)} sequential, model {args.model} 1K 1:1, zero model latency, {db}, "
          f"{notice(args, args.poll_ms)}, {os.cpu_count()} cores")
    print(f"end-to-end      p50 {statistics.median(e2e):7.1f} ms   p95 {percentile(e2e, 95):7.1f} ms")
    print(f"model time      p50 {statistics.median(model):7.1f} ms")
    print(f"overhead        p50 {statistics.median(overhead):7.1f} ms   p95 {percentile(overhead, 95):7.1f} ms"
          "   (end-to-end minus model time)")
    orchestration = [s.overhead_ms - s.timings.get("storage_ms", 0) for s in samples]
    print(f"  of which storage (thumbnail + 2 object writes) p50 {parts['storage_ms']:g} ms; "
          f"the rest p50 {statistics.median(orchestration):.1f} ms")
    print("worker timings  p50 " + ", ".join(f"{k} {v:g}" for k, v in parts.items()))
    print(f"accept (client) p50 {statistics.median(s.accept_ms for s in samples):7.1f} ms;   api server mean "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in routes.items()))
    print(f"throughput      {len(samples) / wall:7.2f} generations/s")
    print(f"bare Celery     p50 {bare_p50:7.2f} ms   p95 {percentile(bare, 95):7.2f} ms   ({len(bare)} round trips, "
          f"{trips.bursts} bursts spread over the run)")
    rest_ratio = statistics.median(orchestration) / bare_p50
    print(f"ratio           overhead p50 / bare p50 = {statistics.median(overhead) / bare_p50:.1f}x"
          f"   (without storage: {rest_ratio:.1f}x)")
    read_p50 = statistics.median(trips.read_ms)
    print(f"one api read    p50 {read_p50:7.2f} ms   p95 {percentile(trips.read_ms, 95):7.2f} ms   "
          f"(GET /v1/nodes/{{id}} after each bare trip's burst) = {read_p50 / bare_p50:.1f}x bare p50")
    verdict = "met" if rest_ratio <= ORCHESTRATION_AIM else "not met"
    print(f"aim             without storage <= {ORCHESTRATION_AIM:g}x bare p50: {verdict} ({rest_ratio:.1f}x; "
          "bench/README.md says what is left)")
    if args.saturation:
        print(f"\nsaturation: {args.clients} clients at once, {args.saturation} generations (+{2 * args.clients} "
              f"warm-up), {notice(args, args.saturation_poll_ms)}, worker {args.worker_concurrency} threads")
        print(f"generations     {sat_rate:7.2f} /s   end-to-end p50 {statistics.median(sat_latency):7.1f} ms"
              f"   p95 {percentile(sat_latency, 95):7.1f} ms")
        print(f"bare Celery     {bare_rate:7.1f} no-op tasks/s ({args.bare_tasks} tasks, {args.clients} clients, "
              f"{args.worker_concurrency} worker threads)")
        print(f"ratio           bare tasks/s / generations/s = {bare_rate / sat_rate:.1f}x"
              f"   (sequential run: {len(samples) / wall:.2f} generations/s)")


if __name__ == "__main__":
    main()
