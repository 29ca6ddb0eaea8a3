"""Webhook endpoints of an account, and their deliveries (README: Webhooks)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from easel_api.deps import AccountDep, CtxDep
from easel_api.schemas.webhooks import (
    RotatedWebhookEndpoint,
    WebhookCreate,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
    WebhookEndpointPage,
    WebhookEndpointWithSecret,
    WebhookPatch,
    WebhookTestSent,
)
from easel_api.services import webhooks
from easel_shared.schemas import error_responses
from easel_shared.web import PageDep

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointWithSecret,
             responses=error_responses(401, 409, 422))
def create_webhook(body: WebhookCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.create(ctx, account, body)


@router.get("", response_model=WebhookEndpointPage, responses=error_responses(401, 422))
def list_webhooks(ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    return webhooks.list_endpoints(ctx, account, p.limit, p.cursor)


@router.get("/{endpoint_id}", response_model=WebhookEndpoint, responses=error_responses(401, 404, 422))
def get_webhook(endpoint_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.get(ctx, account, endpoint_id)


@router.patch("/{endpoint_id}", response_model=WebhookEndpoint, responses=error_responses(401, 404, 422))
def patch_webhook(endpoint_id: str, body: WebhookPatch, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.patch(ctx, account, endpoint_id, body)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 404, 422))
def delete_webhook(endpoint_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    webhooks.delete_endpoint(ctx, account, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", response_model=RotatedWebhookEndpoint,
             responses=error_responses(401, 404, 422))
def rotate_secret(endpoint_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.rotate_secret(ctx, account, endpoint_id)


@router.post("/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookTestSent,
             responses=error_responses(401, 404, 409, 422))
def send_test(endpoint_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.send_test(ctx, account, endpoint_id)


@router.get("/{endpoint_id}/deliveries", response_model=WebhookDeliveryPage, responses=error_responses(401, 404, 422))
def list_deliveries(endpoint_id: str, ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    return webhooks.list_deliveries(ctx, account, endpoint_id, p.limit, p.cursor)


@router.get("/{endpoint_id}/deliveries/{delivery_id}", response_model=WebhookDelivery,
            responses=error_responses(401, 404, 422))
def get_delivery(endpoint_id: str, delivery_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.get_delivery(ctx, account, endpoint_id, delivery_id)


@router.post("/{endpoint_id}/deliveries/{delivery_id}/redeliver", status_code=status.HTTP_202_ACCEPTED,
             response_model=WebhookDelivery, responses=error_responses(401, 404, 409, 422))
def redeliver(endpoint_id: str, delivery_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return webhooks.redeliver(ctx, account, endpoint_id, delivery_id)
