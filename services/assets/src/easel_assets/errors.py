"""The map from the domain codes this service can raise to HTTP statuses; the
`{"error": {...}}` envelope itself comes from `easel_shared.http_errors`."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from easel_shared import http_errors

log = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "unauthenticated": 401,
    "not_found": 404,
    "validation_error": 422,
}


def install_error_handlers(app: FastAPI) -> None:
    http_errors.install_error_handlers(app, STATUS_BY_CODE, logger=log)
    http_errors.install_storage_error_handler(app, logger=log)
    http_errors.install_data_error_handler(app, logger=log)
    http_errors.install_database_error_handler(app, logger=log)
