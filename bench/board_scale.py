"""Board scale benchmark: does a node operation cost the same on a 10-node and a 5,000-node board?

For each database (SQLite, then PostgreSQL), starts a redis-server and one api process
(`python -m easel_api`, local storage, no worker: generations stay queued), makes a small and a
big board of the same shape (built in bulk through the repositories, see
tests/fixtures/big_board.py), and times over HTTP, alternating small and big call by call (the
board reads in a second pass, after the single-node calls):

  POST /v1/boards/{id}/nodes, PATCH /v1/nodes/{id} (position), GET /v1/nodes/{id},
  POST /v1/boards/{id}/edges, POST /v1/nodes/{id}/generations, GET /v1/boards/{id}

Each call that changes the board is undone after it (untimed), so both boards keep their size.
Also compares `GET /v1/boards/{id}` of the big board with `json.dumps` of its body alone, timed
right after each read.

    uv run python bench/board_scale.py                      # SQLite and PostgreSQL
    uv run python bench/board_scale.py --databases sqlite --calls 50
    uv run python bench/board_scale.py --postgres-url postgresql://user@host:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ADMIN_TOKEN, api_env, percentile, start_redis  # noqa: E402
from easel_shared.db import get_engine  # noqa: E402
from easel_shared.migrate import upgrade  # noqa: E402
from tests.fixtures.big_board import BigBoard, Group, build_board  # noqa: E402
from tests.fixtures.processes import running  # noqa: E402
from tests.fixtures.s3 import free_port  # noqa: E402

OPERATIONS = (
    "POST /v1/boards/{id}/nodes",
    "PATCH /v1/nodes/{id} (position)",
    "GET /v1/nodes/{id}",
    "POST /v1/boards/{id}/edges",
    "POST /v1/nodes/{id}/generations",
    "GET /v1/boards/{id}",
)
GENERATION = {"model_id": "easel-sketch", "params": {"resolution": "1K", "aspect_ratio": "1:1", "seed": 1}}


@dataclass
class Result:
    database: str
    small: int
    big: int
    times: dict[tuple[str, str], list[float]]  # (operation, "small"|"big") -> ms
    dumps_ms: list[float]
    to_json_ms: list[float]  # orjson, the api's encoder, of the same (parsed) body
    body_bytes: int


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def sqlite_url(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'bench.db'}"


@contextlib.contextmanager
def postgres_url(admin_url: str) -> Iterator[str]:
    """A fresh database on the server `admin_url` names, dropped afterwards."""
    import psycopg

    name = f"easel_bench_{secrets.token_hex(4)}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = plain.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        get_engine(f"{base}/{name}").dispose()
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- one run


def timed(fn: Callable[[], httpx.Response], expect: int) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = fn()
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != expect:
        raise SystemExit(f"unexpected {r.status_code} (wanted {expect}): {r.text[:500]}")
    return ms, r


def measure(api_url: str, db_url: str, small_groups: int, big_groups: int, calls: int, warmup: int,
            database: str) -> Result:
    admin = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    acct = admin.post("/v1/admin/accounts", json={"name": "bench", "credits": 10_000_000}).json()
    c = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {acct['api_key']}"}, timeout=60)
    engine = get_engine(db_url)
    boards: dict[str, BigBoard] = {}
    for label, groups in (("small", small_groups), ("big", big_groups)):
        board_id = c.post("/v1/boards", json={"name": f"bench {label}"}).json()["id"]
        t0 = time.perf_counter()
        boards[label] = build_board(engine, acct["id"], board_id, groups)
        print(f"  built the {label} board ({boards[label].size} nodes) in {time.perf_counter() - t0:.2f} s",
              flush=True)

    floor: list[tuple[float, int, float]] = []

    def ops(b: BigBoard, i: int) -> list[tuple[str, Callable[[], float]]]:
        """One call of each operation on board `b`; each undoes its change, untimed."""
        mid: Group = b.groups[len(b.groups) // 2]
        other: Group = b.groups[len(b.groups) // 2 - 1]
        bid = b.board_id

        def create_node() -> float:
            ms, r = timed(lambda: c.post(f"/v1/boards/{bid}/nodes", json={"kind": "image"}), 201)
            c.delete(f"/v1/nodes/{r.json()['id']}")
            return ms

        def patch_node() -> float:
            return timed(lambda: c.patch(f"/v1/nodes/{mid.b}", json={"position": {"x": i, "y": -i}}), 200)[0]

        def get_node() -> float:
            return timed(lambda: c.get(f"/v1/nodes/{mid.b}"), 200)[0]

        def create_edge() -> float:
            # Another group's text into this group's first image: the cycle check walks a -> b -> c.
            body = {"source_node_id": other.text, "target_node_id": mid.a}
            ms, r = timed(lambda: c.post(f"/v1/boards/{bid}/edges", json=body), 201)
            c.delete(f"/v1/edges/{r.json()['id']}")
            return ms

        def generate() -> float:
            # b: a prompt, one reference upstream (a), one node downstream (c).
            ms, r = timed(lambda: c.post(f"/v1/nodes/{mid.b}/generations", json=GENERATION), 202)
            c.post(f"/v1/generations/{r.json()['id']}/cancel")
            return ms

        def get_board() -> float:
            ms, r = timed(lambda: c.get(f"/v1/boards/{bid}"), 200)
            if b is boards["big"]:
                # The floor, measured right after each read so both see the same machine load:
                # serializing the body, as the api's JSONResponse does.
                body = r.json()
                t0 = time.perf_counter()
                raw = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
                dumps_ms = (time.perf_counter() - t0) * 1000
                t0 = time.perf_counter()
                orjson.dumps(body)
                floor.append((dumps_ms, len(raw), (time.perf_counter() - t0) * 1000))
            return ms

        return list(zip(OPERATIONS, (create_node, patch_node, get_node, create_edge, generate, get_board),
                        strict=True))

    times: dict[tuple[str, str], list[float]] = {(op, label): [] for op in OPERATIONS for label in boards}
    # The board reads run after every single-node call, not among them: a 3.7 MB read (and this
    # client parsing and encoding it for the floor) slowed whichever call came next, the small
    # board's node creation, which then measured ~2x the big board's (2026-12-05).
    for phase in (OPERATIONS[:-1], OPERATIONS[-1:]):
        for i in range(warmup + calls):
            if i == warmup:
                floor.clear()
            for label, b in boards.items():  # alternate, so drifting load hits both alike
                for op, fn in ops(b, i):
                    if op in phase:
                        ms = fn()
                        if i >= warmup:
                            times[(op, label)].append(ms)
    return Result(database, boards["small"].size, boards["big"].size, times, [f[0] for f in floor],
                  [f[2] for f in floor], floor[-1][1])


@contextlib.contextmanager
def api_on(db_url: str, workdir: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        redis_server = start_redis(stack)
        upgrade(db_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = api_env(db_url, redis_server.url, workdir, port, RATE_LIMIT_GENERATE_PER_MINUTE="1000000",
                      LOG_LEVEL="WARNING")
        stack.enter_context(running("easel_api", env, f"{url}/readyz", log=workdir / "api.log"))
        yield url


# --------------------------------------------------------------------------- report


def report(res: Result, calls: int) -> None:
    print(f"\n{res.database}: {res.small}-node vs {res.big}-node board, {calls} calls each "
          f"(alternating), client-side ms, {os.cpu_count()} cores")
    print(f"{'operation':34} {'small p50':>9} {'p95':>7} {'big p50':>9} {'p95':>7} {'big/small p50':>14}")
    for op in OPERATIONS:
        s, b = res.times[(op, "small")], res.times[(op, "big")]
        ratio = statistics.median(b) / statistics.median(s)
        print(f"{op:34} {statistics.median(s):9.1f} {percentile(s, 95):7.1f} {statistics.median(b):9.1f} "
              f"{percentile(b, 95):7.1f} {ratio:13.2f}x")
    read = statistics.median(res.times[("GET /v1/boards/{id}", "big")])
    floor = statistics.median(res.dumps_ms)
    print(f"GET /v1/boards/{{id}} of {res.big} nodes ({res.body_bytes / 1e6:.2f} MB): p50 {read:.1f} ms; "
          f"json.dumps of the body alone p50 {floor:.1f} ms; ratio {read / floor:.2f}x "
          f"(orjson, the api's encoder, of the parsed body: p50 {statistics.median(res.to_json_ms):.1f} ms)")


def verdict(results: list[Result]) -> None:
    print("\naims: single-node operations within 1.3x of their small-board p50; the big board read within "
          "3x of json.dumps")
    for res in results:
        worst = max(OPERATIONS[:-1], key=lambda op: statistics.median(res.times[(op, "big")])
                    / statistics.median(res.times[(op, "small")]))
        ratio = statistics.median(res.times[(worst, "big")]) / statistics.median(res.times[(worst, "small")])
        read = statistics.median(res.times[("GET /v1/boards/{id}", "big")]) / statistics.median(res.dumps_ms)
        print(f"  {res.database:10} worst single-node ratio {ratio:.2f}x ({worst}) "
              f"{'met' if ratio <= 1.3 else 'NOT met'}; board read {read:.2f}x json.dumps "
              f"{'met' if read <= 3 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/test"),
                        help="a server where a fresh database may be created (and is dropped after)")
    parser.add_argument("--small", type=int, default=10, help="nodes of the small board (multiple of 5)")
    parser.add_argument("--big", type=int, default=5000, help="nodes of the big board (multiple of 5)")
    parser.add_argument("--calls", type=int, default=30, help="measured calls per operation and board")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    results = []
    for database in args.databases:
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="easel-scale-")))
            url_cm = sqlite_url(workdir) if database == "sqlite" else postgres_url(args.postgres_url)
            db_url = stack.enter_context(url_cm)
            print(f"{database}: {db_url}", flush=True)
            api = stack.enter_context(api_on(db_url, workdir))
            res = measure(api, db_url, args.small // 5, args.big // 5, args.calls, args.warmup,
                          "SQLite" if database == "sqlite" else "PostgreSQL")
        report(res, args.calls)
        results.append(res)
    verdict(results)


if __name__ == "__main__":
    main()
