"""Request and response bodies of the webhook routes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from easel_api.schemas.requests import Strict
from easel_shared.schemas import Page, PublicModel

# easel_shared.webhooks.EVENT_TYPES, spelled out so the OpenAPI lists them (a test keeps them equal).
EventType = Literal["generation.started", "generation.succeeded", "generation.failed", "generation.canceled",
                    "asset.created", "webhook.test"]


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=2048)
    events: list[EventType] = Field(min_length=1, max_length=20)
    description: str = Field(default="", max_length=500)


class WebhookPatch(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=20)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


class WebhookEndpoint(PublicModel):
    id: str
    url: str
    events: list[EventType]
    enabled: bool
    disabled_reason: str | None
    description: str
    created_at: str
    updated_at: str


class WebhookEndpointWithSecret(WebhookEndpoint):
    """As created: the signing secret is shown here and on rotation only."""

    secret: str


class RotatedWebhookEndpoint(WebhookEndpointWithSecret):
    previous_secret_expires_at: str


class WebhookDelivery(PublicModel):
    id: str
    endpoint_id: str
    event_id: str
    type: EventType
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_response: str | None
    request_id: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    created_at: str


class WebhookTestSent(PublicModel):
    event_id: str
    type: Literal["webhook.test"]
    endpoint_id: str


class WebhookEndpointPage(Page[WebhookEndpoint]):
    pass


class WebhookDeliveryPage(Page[WebhookDelivery]):
    pass
