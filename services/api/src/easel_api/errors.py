"""One map from domain error codes to HTTP statuses, and the `{"error": {...}}` envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from easel_shared.domain.errors import DomainError

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
    "unsupported_params": 422,
    "insufficient_credits": 402,
    "price_changed": 409,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {}
        extra = dict(exc.extra)
        if "retry_after" in extra:
            headers["Retry-After"] = str(extra["retry_after"])
        return JSONResponse(
            error_body(exc.code, exc.message, **extra),
            status_code=STATUS_BY_CODE.get(exc.code, 400),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(p) for p in err.get("loc", ())], "message": err.get("msg", "")} for err in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
        return JSONResponse(
            error_body("validation_error", f"Invalid {where}: {first['message']}.", details=details),
            status_code=422,
        )

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (PostgreSQL: a NUL character in any
        # text, an id or a cursor): the request is at fault, not the server.
        log.info("database refused a request value: %s", exc.orig)
        return JSONResponse(
            error_body("validation_error", "The request contains a value that cannot be stored or searched for."),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = "The resource does not exist."
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "An unexpected error occurred."), status_code=500)
