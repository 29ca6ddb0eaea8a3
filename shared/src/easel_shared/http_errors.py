"""The `{"error": {...}}` envelope both web services answer with (see `API.md`).

Each service keeps its own map from domain error codes to HTTP statuses and passes it to
:func:`install_error_handlers`; the handlers themselves live here so the envelope cannot drift
between services. Only services with a web framework import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from easel_shared.domain.errors import DomainError
from easel_shared.storage import TransientStorageError

_log = logging.getLogger(__name__)


#: Longest error message, and most validation problems listed, in one answer: an error about a
#: huge or many-keyed body must not be huge itself.
MAX_MESSAGE_CHARS: Final = 1000
MAX_DETAILS: Final = 10
_MAX_LOC_PART_CHARS: Final = 64
_MAX_LOC_PARTS: Final = 8
_MAX_DETAIL_CHARS: Final = 200

_CODE_BY_STATUS: Final = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated",
                          413: "request_too_large"}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def validation_summary(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]], int]:
    """One sentence about the first problem (and how many others there are), and at most
    :data:`MAX_DETAILS` problems in detail, each clipped."""
    details = []
    for err in errors[:MAX_DETAILS]:
        loc = [clip(str(p), _MAX_LOC_PART_CHARS) for p in err.get("loc", ())]
        if len(loc) > _MAX_LOC_PARTS:
            loc = [*loc[: _MAX_LOC_PARTS - 1], "\u2026"]
        details.append({"loc": loc, "message": clip(str(err.get("msg", "")), _MAX_DETAIL_CHARS)})
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":  # FastAPI's own JSON parse (normally pre-empted)
        reason = str((first.get("ctx") or {}).get("error", "")) or "it does not parse"
        message = f"The request body is not valid JSON: {reason}."
    elif details:
        where = ".".join(p for p in details[0]["loc"] if p != "body") or "request"
        message = f"Invalid {where}: {details[0]['message']}."
    else:
        message = "Invalid request."
    if len(errors) > 1:
        others = len(errors) - 1
        message += f" ({others} other problem{'s' if others > 1 else ''} in this request.)"
    return clip(message, MAX_MESSAGE_CHARS), details, len(errors)


def install_error_handlers(
    app: FastAPI, status_by_code: Mapping[str, int], *, logger: logging.Logger | None = None
) -> None:
    """Domain errors (status from ``status_by_code``, 400 if unmapped), request validation,
    Starlette's HTTP errors and, last, any unexpected exception as a 500.

    ``logger`` names the service in the log records (default: this module's logger)."""
    log = logger or _log

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {}
        extra = dict(exc.extra)
        if "retry_after" in extra:
            headers["Retry-After"] = str(extra["retry_after"])
        return JSONResponse(
            error_body(exc.code, clip(exc.message, MAX_MESSAGE_CHARS), **extra),
            status_code=status_by_code.get(exc.code, 400),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details, total = validation_summary(exc.errors())
        extra: dict[str, Any] = {"details": details}
        if total > len(details):
            extra["error_count"] = total
        return JSONResponse(error_body("validation_error", message, **extra), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = "The resource does not exist."
        return JSONResponse(error_body(code, clip(message, MAX_MESSAGE_CHARS)), status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DATABASE_UNAVAILABLE):  # raised outside a route (a middleware)
            return database_unavailable(exc, log)
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "An unexpected error occurred."), status_code=500)


def install_data_error_handler(app: FastAPI, *, logger: logging.Logger | None = None) -> None:
    """A value the database refuses (PostgreSQL: a NUL character in any text, an id or a
    cursor) is the request's fault, not the server's: 422 ``validation_error``."""
    log = logger or _log

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        log.info("database refused a request value: %s", exc.orig)
        return JSONResponse(
            error_body("validation_error", "The request contains a value that cannot be stored or searched for."),
            status_code=422,
        )


def install_storage_error_handler(app: FastAPI, *, logger: logging.Logger | None = None) -> None:
    """Object storage hiccups are worth a retry, unlike a bug: say so with a 503."""
    log = logger or _log

    @app.exception_handler(TransientStorageError)
    async def _storage(_request: Request, exc: TransientStorageError) -> JSONResponse:
        log.warning("object storage unavailable: %s", exc)
        return JSONResponse(
            error_body("storage_unavailable", "Image storage is unavailable; try again shortly."),
            status_code=503,
            headers={"Retry-After": "5"},
        )


#: What a database outage looks like from a request: the server refused or dropped the connection
#: (down, restarting, failing over), or the pool had no connection to give in time.
DATABASE_UNAVAILABLE: Final = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


def database_unavailable(exc: Exception, log: logging.Logger) -> JSONResponse:
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return JSONResponse(
        error_body("database_unavailable", "The database is unavailable; try again shortly."),
        status_code=503,
        headers={"Retry-After": "5"},
    )


def install_database_error_handler(app: FastAPI, *, logger: logging.Logger | None = None) -> None:
    """A database that does not answer is worth a retry, unlike a bug: ``503 database_unavailable``
    with ``Retry-After`` (the transaction was rolled back, so nothing was changed)."""
    log = logger or _log

    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        return database_unavailable(exc, log)

    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _database)
