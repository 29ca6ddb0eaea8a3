"""The api/worker contract: task names, the queue, and how a generation reaches the worker.

A generation is dispatched through the outbox: `dispatch` writes a `generation.dispatch` row in
the transaction that queues the generation, and `DispatchRelay` sends the Celery message after
the commit, from the row as written and with no transaction (or later, from the background relay,
when Redis was away). A relay takes the row's *sending claim* (`sending_key`, a short TTL) before
it sends, so the after-commit relay and a background pass never both send one row. Right after
sending, it sets the generation's *sent marker* in Redis (`sent_key`, value: the outbox row id,
TTL a little above the Celery visibility timeout). The sweeper resends a generation queued for
`REQUEUE_AFTER_SECONDS` exactly when its marker is gone (Redis lost its data, or the message was
never sent), whatever the length of the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

import redis
from celery import Celery
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.messages import GenerationDispatch
from easel_shared.models import Generation
from easel_shared.relay import Breaker, Written, claim_settled_later, delivered
from easel_shared.repositories import outbox
from easel_shared.tracing import attached, current_carrier

log = logging.getLogger(__name__)

GENERATION_QUEUE = "generations"
RUN_GENERATION = "generation.run"
# The marker outlives a message that a worker took but never acknowledged (it comes back after
# the visibility timeout), so such a message is not doubled by the sweeper.
SENT_MARKER_MARGIN_SECONDS = 300
#: How long a relay that died while sending a dispatch keeps others from sending it.
SENDING_CLAIM_SECONDS = 30


def celery_config(broker_url: str, visibility_timeout: int) -> dict[str, object]:
    return {
        "broker_url": broker_url,
        "task_ignore_result": True,
        "task_default_queue": GENERATION_QUEUE,
        # Reliability: a message is acknowledged only after the task ran, a worker killed mid-task
        # gives its message back, and each worker process holds one message at a time (so the
        # queue length tells autoscalers the truth).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # When the broker connection drops, a running generation finishes rather than being
        # canceled: its end is written to the database, not to the broker, and its unacknowledged
        # message comes back after the visibility timeout to find it done (the lease makes that a
        # no-op). The threads pool cannot cancel a task anyway (True only logs a failed cancel per
        # running task there); this keeps it so under another pool and after Celery 6 flips the
        # default to True. Celery warns on every connection loss while it is False (filtered in
        # the tests).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": {"visibility_timeout": visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
    }


@lru_cache(maxsize=4)
def producer(broker_url: str, visibility_timeout: int = 3600) -> Celery:
    app = Celery("easel-producer")
    app.conf.update(celery_config(broker_url, visibility_timeout))
    return app


def send_generation(broker_url: str, generation_id: str, request_id: str | None = None) -> None:
    """Send the Celery message now. Use `dispatch` in a transaction instead: this bypasses the
    outbox (tests use it to deliver a message twice)."""
    producer(broker_url).send_task(
        RUN_GENERATION, args=[generation_id], queue=GENERATION_QUEUE, headers={"request_id": request_id or ""}
    )


def sent_key(generation_id: str) -> str:
    return f"easel:generation:{generation_id}:sent"


def sending_key(generation_id: str, row_id: int) -> str:
    """Held by the relay that is sending a dispatch row's message (see `DispatchRelay._send`)."""
    return f"easel:generation:{generation_id}:dispatch:{row_id}:sending"


def forget_sent(client: redis.Redis, generation_id: str) -> None:
    """Drop the generation's sent marker: its message was consumed without the run taking hold
    (the worker could not lease it), so the sweeper may send it again after
    `REQUEUE_AFTER_SECONDS` instead of waiting for the marker to expire. Best effort: with Redis
    away too, the marker's TTL bounds the wait."""
    try:
        client.delete(sent_key(generation_id))
    except redis.RedisError:
        log.warning("could not drop the sent marker of %s; the sweeper resends it when it expires",
                    generation_id, exc_info=True)


def dispatch(session: Session, generation_id: str, account_id: str, request_id: str | None, *,
             stamp: bool = True) -> None:
    """Have the generation run once this transaction commits. From now on it holds a slot of its
    account and of its model (`dispatched_at`, see `easel_shared.scheduler`): `stamp` sets it
    unless it is set (the scheduler, which just set it, passes False)."""
    if stamp:
        session.execute(
            update(Generation)
            .where(col(Generation.id) == generation_id, col(Generation.dispatched_at).is_(None))
            .values(dispatched_at=utcnow(), blocked_by=None)
        )
    message = GenerationDispatch(generation_id=generation_id, request_id=request_id, trace=current_carrier())
    outbox.enqueue(session, message, account_id, subject_id=generation_id)


class DispatchRelay:
    """Sends `generation.dispatch` rows as Celery messages and marks each generation as sent."""

    topic = outbox.DISPATCH_GENERATION

    def __init__(self, client: redis.Redis, broker_url: str, visibility_timeout: int, batch: int = 200) -> None:
        self.client = client
        self.broker_url = broker_url
        self.marker_ttl = visibility_timeout + SENT_MARKER_MARGIN_SECONDS
        self.batch = batch
        self.breaker = Breaker()

    def relay_written(self, engine: Engine, rows: Sequence[Written]) -> None:
        """Right after the commit, from the rows as written: no transaction (see `relay`)."""
        if self.breaker.open:
            return
        settled: list[int] = []
        try:
            for row in rows:
                if self._send(row.id, GenerationDispatch.model_validate(row.payload)):
                    settled.append(row.id)
        except Exception:
            self.breaker.trip()
            log.warning("could not send %d generation(s); the background relay will", len(rows) - len(settled),
                        exc_info=True)
        finally:
            delivered(engine, settled)

    def relay_pending(self, engine: Engine) -> bool:
        self.client.ping()  # with Redis away, fail here rather than inside a transaction
        failure: Exception | None = None
        with session_scope(engine) as session:
            # Claimed (locked) while sending, so two background relays never send the same row.
            rows = claim_settled_later(session, self.topic, self.batch)
            settled: list[int] = []
            for row in rows:
                assert row.id is not None
                try:
                    if self._send(row.id, GenerationDispatch.model_validate(row.payload)):
                        settled.append(row.id)
                except Exception as exc:
                    failure = exc
                    break
            outbox.mark_processed(session, settled)  # what went out is settled even if a later send failed
        if failure is not None:
            raise failure
        self.breaker.reset()
        return len(rows) == self.batch

    def _send(self, row_id: int, message: GenerationDispatch) -> bool:
        """Send the row's message unless it went out already; False while another relay is sending
        it (the row stays pending: that relay settles it, or a later pass finds it sent). A relay
        takes the row's sending claim first, so the after-commit relay and a background pass never
        both send it; a relay that dies holding the claim holds it for `SENDING_CLAIM_SECONDS`."""
        key = sent_key(message.generation_id)
        mine = str(row_id).encode()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.set(sending_key(message.generation_id, row_id), 1, nx=True, ex=SENDING_CLAIM_SECONDS)
            marker, claimed = pipe.execute()
        if marker == mine:
            return True  # sent by a relay that died before settling the row
        if not claimed:
            return False
        with attached(message.trace):
            send_generation(self.broker_url, message.generation_id, message.request_id)
        self.client.set(key, row_id, ex=self.marker_ttl)
        return True
