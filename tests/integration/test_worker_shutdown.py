"""SIGTERM to a worker mid-generation (what Kubernetes and compose send on scale-down or deploy):
Celery's warm shutdown lets the running generation finish, exactly once, before the process exits."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.generation import (
    accepted,
    get_gen,
    image_node,
    ledger_kinds,
    node,
    queue_drained,
    wait_final,
    wait_status,
    worker_env,
)
from tests.fixtures.stack import Account, Stack, one_database

pytestmark = [pytest.mark.integration, pytest.mark.slow, one_database()]


def test_sigterm_mid_generation_finishes_it_once(stack: Stack, account: Account, board: dict[str, Any],
                                                 tmp_path: Path) -> None:
    c = account.client
    n = image_node(c, board["id"], prompt="a lighthouse in a storm")
    assert stack.worker is not None
    queue_drained(stack)
    with stack.worker.paused():
        # Only the separate worker process consumes now.
        proc = subprocess.Popen([sys.executable, "-m", "easel_worker"],
                                env=worker_env(stack, tmp_path, latency_ms=6000),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            gen = accepted(c, n["id"])
            wait_status(c, gen["id"], "running", timeout=60)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # The process left only after the generation it was running had finished.
        assert code == 0
        done = get_gen(c, gen["id"])
        assert done["status"] == "succeeded", done
    done = wait_final(c, gen["id"])
    assert done["attempts"] == 1
    assert ledger_kinds(c, gen["id"]) == ["reserve", "capture"]
    assert node(c, n["id"])["image"]["id"] == done["image_id"]
