"""One map from domain error codes to HTTP statuses; the `{"error": {...}}` envelope itself
comes from `easel_shared.http_errors`."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from easel_shared import http_errors

log = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "unauthenticated": 401,
    "not_found": 404,
    "validation_error": 422,
    "connection_not_allowed": 422,
    "cycle_not_allowed": 422,
    "duplicate_connection": 409,
    "cross_board_connection": 422,
    "upload_not_available": 409,
    "invalid_multipart": 400,
    "events_unavailable": 503,
    "file_too_large": 413,
    "unsupported_format": 415,
    "invalid_image": 422,
    "invalid_crop": 422,
    "no_image": 409,
    "not_an_image_node": 422,
    "already_generating": 409,
    "upstream_in_progress": 409,
    "downstream_in_progress": 409,
    "prompt_required": 422,
    "too_many_references": 422,
    "unknown_model": 422,
    "model_required": 422,
    "unsupported_params": 422,
    "insufficient_credits": 402,
    "price_changed": 409,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
    "webhook_limit_reached": 409,
    "webhook_disabled": 409,
}


def install_error_handlers(app: FastAPI) -> None:
    http_errors.install_error_handlers(app, STATUS_BY_CODE, logger=log)
    http_errors.install_data_error_handler(app, logger=log)
    http_errors.install_storage_error_handler(app, logger=log)
    http_errors.install_database_error_handler(app, logger=log)
