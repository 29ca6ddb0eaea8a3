"""The Celery application of the worker. Built from settings at start, never at import."""

from __future__ import annotations

from celery import Celery

from easel_shared.settings import Settings
from easel_shared.tasks import celery_config


def create_celery(settings: Settings) -> Celery:
    app = Celery("easel-worker")
    app.conf.update(celery_config(settings.redis_url, settings.celery_visibility_timeout_seconds))
    app.conf.update(worker_hijack_root_logger=False, worker_send_task_events=False)
    # Registers the shared tasks.
    import easel_worker.tasks.generation
    import easel_worker.tasks.webhooks  # noqa: F401

    return app
