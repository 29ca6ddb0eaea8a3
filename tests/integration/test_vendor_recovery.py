"""A vendor job outlives the worker that submitted it: after `kill -9` mid-poll, the recovered
run resumes the same vendor job (one submit, one charge) instead of paying for a second one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from easel_shared.models import Generation
from tests.fixtures.generation import (
    get_gen,
    ledger_kinds,
    node,
    queue_drained,
    stored_image,
    wait_final,
    wait_status,
    worker_env,
)
from tests.fixtures.stack import Account, Stack, one_database, wait_for
from tests.fixtures.vendor_catalog import Vendors
from tests.integration.test_vendors import SIZE, start, submits_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, one_database()]


def sweep_once() -> dict[str, int]:
    from easel_worker import runtime
    from easel_worker.jobs.sweep import sweep_once as sweep

    return sweep(runtime.get())


def saved_vendor_job(stack: Stack, gen_id: str) -> dict[str, Any] | None:
    with Session(stack.engine) as session:
        gen = session.get(Generation, gen_id)
        return gen.vendor_job if gen is not None else None


@pytest.mark.parametrize("vendor", ["fal", "replicate", "bfl"])
def test_a_worker_killed_while_polling_resumes_the_vendor_job_and_charges_once(
        stack: Stack, account: Account, board: dict[str, Any], vendors: Vendors, vendor: str, tmp_path: Path) -> None:
    c = account.client
    assert stack.worker is not None
    queue_drained(stack)
    with stack.worker.paused():
        # Only the separate worker process consumes now, so it takes the generation.
        log = vendors.watch.watch_file(tmp_path / "worker.log").open("wb")
        env = worker_env(stack, tmp_path) | {"LOG_LEVEL": "DEBUG"}
        proc = subprocess.Popen([sys.executable, "-m", "easel_worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            s = start(account, board["id"], vendor, "slow")
            wait_status(c, s.gen_id, "running", timeout=60)
            job = wait_for(lambda: saved_vendor_job(stack, s.gen_id), timeout=60,
                           what="the vendor job to be recorded on the generation")
            held = [j for j in vendors.standin.jobs(vendor) if s.marker in j.prompt]
            assert len(held) == 1 and held[0].id == job["id"]
            polls = held[0].polls
            wait_for(lambda: held[0].polls > polls, what="the worker to poll the vendor job")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            log.close()
        polls = held[0].polls
        # Its heartbeat goes stale; the sweeper hands the generation back to the queue.
        wait_for(lambda: (sweep_once(), get_gen(c, s.gen_id)["status"] == "queued")[1], timeout=30,
                 interval=0.2, what="the sweeper to recover the generation")
    # The in-process worker takes it again and resumes polling the same vendor job.
    wait_for(lambda: get_gen(c, s.gen_id)["attempts"] == 2 and held[0].polls > polls,
             what="the second run to poll the same vendor job")
    vendors.standin.release(held[0].id)
    done = wait_final(c, s.gen_id)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert len(submits_for(vendors, vendor, s.marker)) == 1
    assert ledger_kinds(c, s.gen_id) == ["reserve", "capture"]
    assert node(c, s.node_id)["image"]["id"] == done["image_id"]
    assert stored_image(c, s.node_id).size == SIZE
