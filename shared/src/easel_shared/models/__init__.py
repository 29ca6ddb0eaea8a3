"""SQLModel tables. Every row that belongs to a customer carries `account_id` for isolation."""

from easel_shared.models.tables import (
    Account,
    AccountSchedule,
    Asset,
    Board,
    Edge,
    Generation,
    Image,
    LedgerEntry,
    Node,
    OutboxEvent,
    Run,
    SchedulerState,
)
from easel_shared.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Account",
    "AccountSchedule",
    "Asset",
    "Board",
    "Edge",
    "Generation",
    "Image",
    "LedgerEntry",
    "Node",
    "OutboxEvent",
    "Run",
    "SchedulerState",
    "WebhookDelivery",
    "WebhookEndpoint",
]
