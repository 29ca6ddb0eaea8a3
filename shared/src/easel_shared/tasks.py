"""The api/worker contract: task names, the queue, and how to send a task by name."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

GENERATION_QUEUE = "generations"
RUN_GENERATION = "generation.run"


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
    producer(broker_url).send_task(
        RUN_GENERATION, args=[generation_id], queue=GENERATION_QUEUE, headers={"request_id": request_id or ""}
    )
