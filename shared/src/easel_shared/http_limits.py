"""Limits every request meets before a route sees it, on both web services (ASGI middleware):

* one set of credentials: two ``Authorization`` headers are refused (``400 duplicate_credentials``)
  rather than letting one of them win silently;
* a bounded body: ``MAX_REQUEST_BODY_BYTES`` (1 MiB by default) for every body but the routes
  that stream large ones and enforce their own limit (uploads, see :func:`lift_body_limit`).
  A ``Content-Length`` above the limit is refused before a byte is read; a body without one is
  counted as it arrives and refused at the first byte past the limit (``413 request_too_large``);
* JSON that parses within bounds: JSON bodies are read here (within the limit) and checked
  before any route parses them: syntax, UTF-8, nesting depth, number length, no NaN/Infinity
  (``422 validation_error`` with a sentence saying what is wrong).

Only services with a web framework import this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Deepest nesting of arrays and objects a JSON body may have (the api's bodies use 2).
MAX_JSON_DEPTH: Final = 32
#: Longest number literal a JSON body may hold, in characters.
MAX_JSON_NUMBER_CHARS: Final = 100

_SCOPE_KEY: Final = "easel.body_limit"
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Bodies above this size are checked in a worker thread, off the event loop.
_INLINE_CHECK_BYTES: Final = 64 * 1024


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def too_large_message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit:,} bytes."


class RequestTooLarge(HTTPException):
    """Raised from a route's body reads when the body passes the limit (413 ``request_too_large``;
    an HTTPException so that FastAPI's body parsing lets it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit), headers={"Connection": "close"})


class _BodyLimit:
    def __init__(self, limit: int | None) -> None:
        self.limit = limit


def lift_body_limit(request: Request) -> None:
    """For routes that stream a large body and enforce a limit of their own (uploads): the
    general limit no longer applies to this request's body."""
    holder = request.scope.get(_SCOPE_KEY)
    if isinstance(holder, _BodyLimit):
        holder.limit = None


# --------------------------------------------------------------------------- JSON checks


class _Refused(ValueError):
    pass


def _number(text: str) -> str:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _Refused(f"a number is longer than {MAX_JSON_NUMBER_CHARS} characters")
    return text


def _constant(name: str) -> object:
    raise _Refused(f"{name} is not a JSON value")


def _deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_problem(body: bytes) -> str | None:
    """``None`` if ``body`` is JSON within the bounds above, else what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 text (byte {exc.start})"
    try:
        # Numbers are only measured here (as strings); the route parses them for real.
        value = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except _Refused as exc:
        return str(exc)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        return f"it nests arrays or objects more than {MAX_JSON_DEPTH} levels deep"
    except ValueError as exc:  # pragma: no cover - json raises only the errors above
        return str(exc)[:200]
    if _deeper_than(value, MAX_JSON_DEPTH):
        return f"it nests arrays or objects more than {MAX_JSON_DEPTH} levels deep"
    return None


def is_json(content_type: str) -> bool:
    """The content types FastAPI parses as JSON: ``application/json`` and ``application/*+json``."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


# --------------------------------------------------------------------------- the middleware


def _headers(scope: Scope) -> Mapping[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name.lower(), []).append(value)
    return out


def _content_length(values: list[bytes]) -> int | None:
    if not values:
        return None
    text = values[0].decode("latin-1").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None


class RequestGuard:
    """The ASGI middleware behind :func:`install_request_guard`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        authorization = headers.get(b"authorization", [])
        if len(authorization) > 1:
            await JSONResponse(
                _error("duplicate_credentials",
                       f"Send exactly one Authorization header; this request has {len(authorization)}."),
                status_code=400,
            )(scope, receive, send)
            return
        declared = _content_length(headers.get(b"content-length", []))
        holder = _BodyLimit(self.max_body_bytes)
        scope[_SCOPE_KEY] = holder
        content_type = b",".join(headers.get(b"content-type", [])).decode("latin-1")
        if scope.get("method") in _BODY_METHODS and is_json(content_type) and declared != 0:
            await self._json(scope, receive, send, declared)
            return
        await self.app(scope, _limited(receive, holder, declared), send)

    async def _json(self, scope: Scope, receive: Receive, send: Send, declared: int | None) -> None:
        """JSON bodies are small by contract: read whole (within the limit) and checked here."""
        limit = self.max_body_bytes
        if declared is not None and declared > limit:
            await _too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if len(body) > _INLINE_CHECK_BYTES:
            problem = await run_in_threadpool(json_problem, body)
        else:
            problem = json_problem(body) if body else None  # an empty body is the route's to judge
        if problem is not None:
            await JSONResponse(
                _error("validation_error", f"The request body is not valid JSON: {problem}."), status_code=422,
            )(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _limited(receive: Receive, holder: _BodyLimit, declared: int | None) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        limit = holder.limit  # read at each call: the route may have lifted it
        if limit is not None and declared is not None and declared > limit:
            raise RequestTooLarge(limit)
        message = await receive()
        if message["type"] == "http.request" and limit is not None:
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(limit)
        return message

    return limited_receive


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    # The rest of the body is never read: the connection closes after the answer.
    await JSONResponse(
        _error("request_too_large", too_large_message(limit)), status_code=413, headers={"Connection": "close"},
    )(scope, receive, send)


def install_request_guard(app: Any, max_body_bytes: int) -> None:
    """Mount :class:`RequestGuard` on a FastAPI/Starlette app. Install it before the
    observability middleware, so its answers carry a request id and are counted."""
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
