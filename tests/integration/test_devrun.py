"""`make run` (scripts/devrun.py) as a real process: a child that dies (worker, embedded Redis, api)
is restarted with a backoff instead of the whole stack stopping, Redis comes back on its port,
and SIGINT still stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
import yaml

from easel_shared.settings import Settings
from tests.fixtures.s3 import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVRUN = Path(__file__).resolve().parents[2] / "scripts" / "devrun.py"
# Generous: the stack starts four processes and runs migrations on a possibly loaded 2-core box.
DEADLINE = 90.0


def _argv_name(argv: list[str]) -> str | None:
    """Which of devrun's children a command line is."""
    if argv and "redis-server" in argv[0]:
        return "redis"
    for name in ("api", "assets", "worker"):
        if argv[1:3] == ["-m", f"easel_{name}"]:
            return name
    return None


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class DevRun:
    """scripts/devrun.py on a temporary data dir and free ports; its output goes to a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.log_path = tmp_path / "devrun.log"
        self.api_port, self.assets_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        # Nothing of the caller's Easel configuration leaks in (settings names are case-insensitive).
        env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        # An operator's catalog naming two vendor models; only one has its key variable set.
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(yaml.safe_dump({"models": [
            {"id": vendor_id, "name": vendor_id, "provider": "fal", "vendor_model": "fal-ai/flux/dev",
             "api_key_env": env_name, "max_reference_images": 0, "resolutions": ["1K"], "aspect_ratios": ["1:1"],
             "credits": {"1K": 3}}
            for vendor_id, env_name in (("flux-keyed", "EASEL_DEVRUN_FAL_KEY"), ("flux-unkeyed", "EASEL_DEVRUN_NO_KEY"))
        ]}))
        env.pop("EASEL_DEVRUN_NO_KEY", None)
        env.update(
            MODEL_CATALOG_PATH=str(catalog),
            EASEL_DEVRUN_FAL_KEY="fal-devrun-key",
            EASEL_DATA_DIR=str(self.data),
            API_PORT=str(self.api_port),
            ASSETS_PORT=str(self.assets_port),
            WORKER_METRICS_PORT="0",
            WORKER_HEARTBEAT_FILE=str(tmp_path / "worker-heartbeat"),
        )
        self.seen: dict[int, psutil.Process] = {}
        with self.log_path.open("wb") as out:
            # Own session: only the signals this test sends reach it.
            self.proc = subprocess.Popen([sys.executable, str(DEVRUN)], env=env, cwd=tmp_path, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[str, psutil.Process]:
        """The live children of devrun by role (redis, api, assets, worker)."""
        found: dict[str, psutil.Process] = {}
        try:
            kids = self.ps.children()
        except psutil.NoSuchProcess:
            return found
        for p in kids:
            try:
                name = _argv_name(p.cmdline())
            except psutil.Error:
                continue
            if name is not None and _alive(p):
                self.seen[p.pid] = p
                found[name] = p
        return found

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
        """Poll `predicate` until truthy; fail at once if devrun itself has exited."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"devrun.py exited (code {code}) while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def status(self, path: str) -> int | None:
        try:
            return httpx.get(self.api + path, timeout=5).status_code
        except httpx.HTTPError:
            return None

    def child(self, name: str, other_than: int | None = None) -> psutil.Process:
        def find() -> psutil.Process | None:
            p = self.children().get(name)
            return p if p is not None and p.pid != other_than else None

        return self.wait(find, f"a {'new ' if other_than else ''}{name} child")

    def stragglers(self) -> list[psutil.Process]:
        """Every process still alive that devrun started: the ones seen, and any that inherited
        this run's EASEL_DATA_DIR (children restarted between two looks, orphans)."""
        procs = {pid: p for pid, p in self.seen.items() if _alive(p)}
        for p in psutil.process_iter():
            if p.pid in procs or p.pid == os.getpid():
                continue
            try:
                if p.environ().get("EASEL_DATA_DIR") == str(self.data) and _alive(p):
                    procs[p.pid] = p
            except psutil.Error:
                continue
        return list(procs.values())

    def kill_everything(self) -> None:
        victims = self.stragglers()
        if _alive(self.ps):
            victims.append(self.ps)
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=30)
        if self.proc.poll() is None:
            self.proc.wait(30)


@pytest.fixture
def devrun(tmp_path: Path) -> Iterator[DevRun]:
    run = DevRun(tmp_path)
    try:
        yield run
    finally:
        run.kill_everything()
        # Shown by pytest only when the test failed.
        print("---- devrun.py output (tail) ----")
        print(run.output()[-8000:])


def _kill9(p: psutil.Process) -> None:
    p.send_signal(signal.SIGKILL)  # devrun reaps it; the test waits on what devrun does next


@pytest.mark.timeout(600)
def test_make_run_restarts_dead_children_and_stops_on_sigint(devrun: DevRun) -> None:
    devrun.wait(lambda: devrun.status("/healthz") == 200, "the api to answer /healthz")
    devrun.wait(lambda: "Easel is running" in devrun.output(), "devrun to report the stack running")
    devrun.wait(lambda: devrun.status("/readyz") == 200, "the api to be ready")
    # The operator's vendor model is offered because its key variable is set; the other is not.
    key = re.search(r"dev API key\s+(\S+)", devrun.output())
    assert key, devrun.output()
    models = httpx.get(f"{devrun.api}/v1/models", headers={"Authorization": f"Bearer {key.group(1)}"}, timeout=10)
    offered = {m["id"] for m in models.json()["items"]}
    assert "flux-keyed" in offered and "flux-unkeyed" not in offered, offered
    assert "EASEL_DEVRUN_NO_KEY is not set" in devrun.output() and "fal-devrun-key" not in devrun.output()
    kids = {name: devrun.child(name) for name in ("redis", "api", "assets", "worker")}
    match = re.search(r"embedded Redis on 127\.0\.0\.1:(\d+)", devrun.output())
    assert match, devrun.output()
    redis_port = int(match.group(1))

    # The worker dies: devrun says so and starts a new one, instead of stopping the stack.
    _kill9(kids["worker"])
    devrun.wait(lambda: re.search(r"\[easel\] worker exited with code -9; restarting in [\d.]+s", devrun.output()),
                "devrun to report restarting the worker")
    worker = devrun.child("worker", other_than=kids["worker"].pid)
    assert _alive(kids["api"]) and _alive(kids["assets"])

    # Redis dies: it comes back on the same port, and the api is ready again (same REDIS_URL).
    _kill9(kids["redis"])
    devrun.wait(lambda: re.search(r"\[easel\] redis exited with code -9; restarting in [\d.]+s", devrun.output()),
                "devrun to report restarting Redis")
    new_redis = devrun.child("redis", other_than=kids["redis"].pid)

    def pings() -> bool:
        try:
            return bool(redis.Redis(port=redis_port, socket_connect_timeout=1, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    devrun.wait(pings, f"Redis to answer again on port {redis_port}")
    assert any(c.laddr.port == redis_port for c in new_redis.net_connections(kind="tcp")
               if c.status == psutil.CONN_LISTEN)
    devrun.wait(lambda: devrun.status("/readyz") == 200, "the api's /readyz to be 200 again")

    # The api dies: it comes back and answers.
    _kill9(kids["api"])
    devrun.wait(lambda: re.search(r"\[easel\] api exited with code -9; restarting in [\d.]+s", devrun.output()),
                "devrun to report restarting the api")
    api = devrun.child("api", other_than=kids["api"].pid)
    devrun.wait(lambda: devrun.status("/healthz") == 200, "the restarted api to answer /healthz")

    # Ctrl-C stops everything it started, the restarted children included.
    current = devrun.children()
    assert {p.pid for p in current.values()} >= {worker.pid, new_redis.pid, api.pid}
    devrun.proc.send_signal(signal.SIGINT)
    try:
        code = devrun.proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail("devrun.py did not stop within the deadline after SIGINT")
    assert code == 0, devrun.output()[-4000:]
    left = psutil.wait_procs(devrun.stragglers(), timeout=10)[1]
    assert not left, f"still running after devrun.py stopped: {[(p.pid, p.cmdline()) for p in left]}"
    assert "[easel] stopped" in devrun.output()
