"""The sweeper: the database says which generations should be moving; this makes them move.

- `queued` for longer than REQUEUE_AFTER_SECONDS and its *sent marker* gone from Redis (see
  `easel_shared.tasks`): the message was lost (Redis lost its data) or never sent; send it again.
  A generation whose marker is there is waiting its turn, however long the queue, and is never
  sent twice; one whose dispatch still waits in the outbox is the relay's (it goes out when Redis
  is back). The marker lives a little longer than the Celery visibility timeout, so a message a
  dead worker never acknowledged comes back on its own before it would be doubled. A duplicate
  would be harmless anyway: the lease compare-and-set lets only one delivery run.
- `running` with a heartbeat older than STALE_HEARTBEAT_SECONDS: its worker died. Hand it back
  to `queued` and send it again, at most GENERATION_MAX_ATTEMPTS runs in all; after that it
  fails (`worker_lost`) and its credits are released. Handed back, it keeps its scheduler slots.
- Generations waiting for the scheduler (never dispatched) have no message and no marker by
  design; each sweep runs a fill pass (`easel_shared.scheduler.fill`), which heals a wake that
  was lost.
Every change is a compare-and-set, and every send goes through the outbox in the transaction
that decided it, so several sweepers (one per worker) can run at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis

from easel_shared import events, lifecycle, scheduler, tasks
from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.models import Generation
from easel_shared.repositories import accounts as accounts_repo
from easel_shared.repositories import boards as repo
from easel_shared.repositories import generations as generations_repo
from easel_shared.views import generation_view
from easel_worker.metrics import CREDITS_RESERVED, QUEUE_DEPTH
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)

PAGE = 500


def sweep_once(rt: Runtime) -> dict[str, int]:
    s = rt.settings
    now = utcnow()
    counts = {"requeued": _resend_lost(rt, now - timedelta(seconds=s.requeue_after_seconds)),
              "recovered": 0, "failed": 0}
    with session_scope(rt.engine) as session:
        stale_running = generations_repo.running_with_heartbeat_before(
            session, now - timedelta(seconds=s.stale_heartbeat_seconds))
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
            tasks.dispatch(session, gen.id, gen.account_id, gen.request_id)
            counts["recovered"] += 1
    counts["scheduled"] = scheduler.fill(rt.engine, scheduler.limits_for(s), s.scheduler_fill_batch)
    _update_gauges(rt)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def _resend_lost(rt: Runtime, cutoff: datetime) -> int:
    """Send again every generation queued before `cutoff` whose sent marker is gone."""
    resent, after = 0, ""
    while True:
        with session_scope(rt.engine) as session:
            page = generations_repo.queued_before(session, cutoff, after_id=after, limit=PAGE)
        if not page:
            return resent
        after = page[-1].id
        try:
            pipe = rt.redis.pipeline(transaction=False)
            for row in page:
                pipe.exists(tasks.sent_key(row.id))
            sent = pipe.execute()
        except redis.RedisError:
            # Nothing can be sent now; the outbox and the next sweep take it from here.
            log.warning("cannot check sent markers (Redis unreachable); the next sweep retries", exc_info=True)
            return resent
        lost = [row for row, present in zip(page, sent, strict=True) if not present]
        if lost:
            # One transaction per page: after its commit, its dispatch rows are sent together.
            with session_scope(rt.engine) as session:
                for row in lost:
                    if generations_repo.mark_enqueued(session, row.id, row.enqueued_at):
                        tasks.dispatch(session, row.id, row.account_id, row.request_id)
                        resent += 1
        if len(page) < PAGE:
            return resent


def _update_gauges(rt: Runtime) -> None:
    try:
        QUEUE_DEPTH.set(float(rt.redis.llen(tasks.GENERATION_QUEUE)))
        with session_scope(rt.engine) as session:
            CREDITS_RESERVED.set(float(accounts_repo.reserved_total(session)))
    except Exception:
        log.debug("could not update gauges", exc_info=True)
