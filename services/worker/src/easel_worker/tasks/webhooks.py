"""The webhook delivery task (queue `webhooks`): the row is the truth, the message carries its id."""

from __future__ import annotations

from celery import shared_task

from easel_shared.webhooks import DELIVER_WEBHOOK
from easel_worker import runtime
from easel_worker.jobs import webhooks


@shared_task(name=DELIVER_WEBHOOK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def deliver_webhook(delivery_id: str) -> None:
    if not isinstance(delivery_id, str) or not delivery_id.startswith("wdl_"):
        return
    webhooks.deliver(runtime.get(), delivery_id)
