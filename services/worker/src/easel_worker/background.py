"""Threads a worker process runs beside Celery: the sweeper and the liveness heartbeat file."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from easel_worker.jobs.sweep import sweep_once
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)


def _sweeper(rt: Runtime) -> None:
    while not rt.stopping.wait(rt.settings.sweep_interval_seconds):
        try:
            sweep_once(rt)
        except Exception:
            log.exception("sweep failed; will retry")


def _heartbeat_file(rt: Runtime) -> None:
    """Kubernetes liveness reads this file's age (not `celery inspect ping`, which needs the broker)."""
    path = Path(rt.settings.worker_heartbeat_file)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(time.time()))
            os.utime(path)
        except OSError:
            log.warning("cannot write heartbeat file %s", path)
        if rt.stopping.wait(10):
            return


def start(rt: Runtime, *, sweeper: bool = True) -> list[threading.Thread]:
    threads = []
    if sweeper:
        threads.append(threading.Thread(target=_sweeper, args=(rt,), name="sweeper", daemon=True))
    threads.append(threading.Thread(target=_heartbeat_file, args=(rt,), name="heartbeat-file", daemon=True))
    for t in threads:
        t.start()
    return threads
