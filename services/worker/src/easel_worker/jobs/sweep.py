"""The sweeper: the database says which generations should be moving; this makes them move.

- `queued` for longer than REQUEUE_AFTER_SECONDS while the broker's queue is empty: the broker
  lost the message (e.g. Redis restarted without persistence); send it again. While the queue
  still holds messages the generation is most likely just waiting its turn, and re-sending would
  inflate the queue length that autoscaling reads; past the visibility timeout it is sent again
  anyway. A duplicate is harmless: the lease CAS lets only one delivery run.
- `running` with a heartbeat older than STALE_HEARTBEAT_SECONDS: its worker died. Hand it back
  to `queued` and send it again, at most GENERATION_MAX_ATTEMPTS runs in all; after that it
  fails (`worker_lost`) and its credits are released.
Every change is a compare-and-set, so several sweepers (one per worker) can run at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from easel_shared import events, lifecycle, tasks
from easel_shared.clock import as_utc, utcnow
from easel_shared.db import session_scope
from easel_shared.models import Generation
from easel_shared.repositories import accounts as accounts_repo
from easel_shared.repositories import boards as repo
from easel_shared.repositories import generations as generations_repo
from easel_shared.views import generation_view
from easel_worker.metrics import CREDITS_RESERVED, QUEUE_DEPTH
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)


def sweep_once(rt: Runtime) -> dict[str, int]:
    s = rt.settings
    now = utcnow()
    counts = {"requeued": 0, "recovered": 0, "failed": 0}
    with session_scope(rt.engine) as session:
        stale_queued = generations_repo.queued_before(session, now - timedelta(seconds=s.requeue_after_seconds))
        stale_running = generations_repo.running_with_heartbeat_before(
            session, now - timedelta(seconds=s.stale_heartbeat_seconds))
    to_send: list[str] = []
    if stale_queued:
        try:
            backlog = int(rt.redis.llen(tasks.GENERATION_QUEUE))
        except Exception:
            backlog = -1  # broker unreachable: nothing can be sent now; the next sweep retries
        if backlog != 0:
            oldest_allowed = now - timedelta(seconds=s.celery_visibility_timeout_seconds)
            stale_queued = [
                row for row in stale_queued
                if backlog > 0 and row[1] is not None and as_utc(row[1]) < oldest_allowed
            ]
    for gen_id, enqueued_at in stale_queued:
        with session_scope(rt.engine) as session:
            if generations_repo.mark_enqueued(session, gen_id, enqueued_at):
                to_send.append(gen_id)
                counts["requeued"] += 1
    for gen_id, token, attempts in stale_running:
        with session_scope(rt.engine) as session:
            gen = session.get(Generation, gen_id)
            if gen is None:
                continue
            repo.lock_board(session, gen.board_id)
            session.refresh(gen)
            if gen.status != "running" or gen.lease_token != token:
                continue
            if attempts >= s.generation_max_attempts:
                lifecycle.end_generation(
                    session, gen, "failed", base_url=rt.base_url, error_code="worker_lost",
                    error_message="The worker running this generation stopped responding too many times.",
                )
                counts["failed"] += 1
                continue
            gen.status = "queued"
            gen.lease_token = None
            gen.enqueued_at = utcnow()
            session.add(gen)
            events.stage(session, gen.board_id, "generation.queued", generation_view(gen))
            to_send.append(gen_id)
            counts["recovered"] += 1
    for gen_id in to_send:
        try:
            tasks.send_generation(s.redis_url, gen_id)
        except Exception:
            log.warning("could not send generation %s; the next sweep retries", gen_id, exc_info=True)
    _update_gauges(rt)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def _update_gauges(rt: Runtime) -> None:
    try:
        QUEUE_DEPTH.set(float(rt.redis.llen(tasks.GENERATION_QUEUE)))
        with session_scope(rt.engine) as session:
            CREDITS_RESERVED.set(float(accounts_repo.reserved_total(session)))
    except Exception:
        log.debug("could not update gauges", exc_info=True)
