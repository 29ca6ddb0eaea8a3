"""Threads a worker process runs beside Celery: the sweeper, the orphan collector, the outbox relay
and the liveness heartbeat file."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from easel_shared.relay import RelayThread
from easel_worker.jobs.gc import collect_if_due
from easel_worker.jobs.sweep import sweep_once
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)


def _sweeper(rt: Runtime) -> None:
    while not rt.stopping.wait(rt.settings.sweep_interval_seconds):
        try:
            sweep_once(rt)
        except Exception:
            log.exception("sweep failed; will retry")


def _orphan_collector(rt: Runtime) -> None:
    while not rt.stopping.wait(rt.settings.orphan_sweep_interval_seconds):
        try:
            collect_if_due(rt)
        except Exception:
            log.exception("orphan collection failed; will retry")


def _outbox_relay(rt: Runtime) -> None:
    """Relays what commits left in the outbox (Redis was down, a process died after its commit)."""
    thread = RelayThread(rt.engine, list(rt.relay.relays.values()), poll_seconds=rt.settings.outbox_poll_seconds,
                         retention_seconds=rt.settings.outbox_retention_seconds)
    thread.start()
    rt.stopping.wait()
    thread.stop()


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
        threads.append(threading.Thread(target=_orphan_collector, args=(rt,), name="orphan-collector", daemon=True))
    threads.append(threading.Thread(target=_outbox_relay, args=(rt,), name="outbox-relay", daemon=True))
    threads.append(threading.Thread(target=_heartbeat_file, args=(rt,), name="heartbeat-file", daemon=True))
    for t in threads:
        t.start()
    return threads
