"""What travels through the outbox: one pydantic model per topic, built by the process that
writes the row and parsed by the one that relays or consumes it, never by hand on either side."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class OutboxMessage(BaseModel):
    # Unknown fields are ignored: a row written by a newer version stays readable by an older
    # relay during a rolling upgrade.
    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[str]

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class BoardEvent(OutboxMessage):
    """A live event of one board, relayed to the board's Redis stream in `seq` order."""

    topic: ClassVar[str] = "board.event"

    event: str = Field(min_length=1, max_length=50)
    data: dict[str, Any]


class RetainImage(OutboxMessage):
    """An image whose node (or board) went away: the assets service keeps it as `asset_id`."""

    topic: ClassVar[str] = "image.retain"

    asset_id: str = Field(min_length=1, max_length=40)
    image_id: str = Field(min_length=1, max_length=40)
    board_id: str | None = None
    node_id: str | None = None
    reason: str = Field(min_length=1, max_length=20)  # node_deleted | board_deleted | late_result


class StoreThumbnail(OutboxMessage):
    """An upload's thumbnail, stored after the upload answered (`easel_shared.thumbnails`): while
    this row is pending, the object may not exist yet."""

    topic: ClassVar[str] = "image.thumbnail"

    image_id: str = Field(min_length=1, max_length=40)


class GenerationDispatch(OutboxMessage):
    """Send `generation.run` for a queued generation (the Celery message)."""

    topic: ClassVar[str] = "generation.dispatch"

    generation_id: str = Field(min_length=1, max_length=40)
    request_id: str | None = None
    # The accepting request's trace context (W3C headers): whichever relay sends the message, the
    # worker's spans join the request's trace.
    trace: dict[str, str] = Field(default_factory=dict)


class WebhookEvent(OutboxMessage):
    """An event for the account's webhook endpoints; the relay makes one delivery per endpoint
    that subscribes to `type` (only `endpoint_id` when set: a test event)."""

    topic: ClassVar[str] = "webhook.event"

    event_id: str = Field(min_length=1, max_length=40)  # becomes `webhook-id`
    type: str = Field(min_length=1, max_length=50)
    timestamp: str = Field(min_length=1, max_length=40)  # RFC 3339, when it happened
    data: dict[str, Any]
    request_id: str | None = None
    endpoint_id: str | None = None


class SchedulerWake(OutboxMessage):
    """A slot may have freed (a generation ended, an account's limit was raised), or work was
    left waiting for a full model (`model_id`): run the scheduler's fill pass
    (`easel_shared.scheduler.fill`) after the commit, if it could start anything then."""

    topic: ClassVar[str] = "scheduler.wake"

    reason: str = Field(default="", max_length=50)
    model_id: str | None = Field(default=None, max_length=100)
