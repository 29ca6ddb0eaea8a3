"""Thin Celery wrappers: validate the payload, call the job. Declared as shared tasks so every
Celery app built by `create_celery` (one per process, or per test stack) carries them."""

from __future__ import annotations

from celery import shared_task

from easel_shared.tasks import RUN_GENERATION
from easel_worker import runtime
from easel_worker.jobs import generation


@shared_task(name=RUN_GENERATION, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def run_generation(generation_id: str) -> None:
    if not isinstance(generation_id, str) or not generation_id.startswith("gen_"):
        return
    generation.run(runtime.get(), generation_id)

