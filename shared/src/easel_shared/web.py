"""HTTP plumbing both web services mount (api and assets): health, metrics, request ids, the
signed local-file route, bearer authentication and pagination. Only services with a web
framework import this module."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol, TypeVar

import redis
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sqlalchemy.engine import Engine
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from easel_shared.db import session_scope
from easel_shared.domain.errors import Unauthenticated
from easel_shared.health import readiness
from easel_shared.logs import request_id_var
from easel_shared.models import Account
from easel_shared.repositories import accounts
from easel_shared.settings import Settings
from easel_shared.storage import LocalObjectStore, ObjectStore, verify_signed_url

T = TypeVar("T")

HTTP_LATENCY = Histogram(
    "easel_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route", "status"]
)
HTTP_REQUESTS = Counter("easel_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _Observe:
    """Request ids (the caller's `X-Request-ID` when well-formed, else a new one: in the logs'
    context, on `request.state` and on the response) and the request metrics, as a plain ASGI
    middleware. (It was a `BaseHTTPMiddleware`, which passes every chunk of a response through
    a memory stream and a task of its own: measured, that cost every live-event frame to every
    subscriber, and every upload's body, an extra task switch or more.)"""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id  # `request.state.request_id`
        started = time.perf_counter()

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Timed to the response's start, as before: a live event stream is not one
                # long request.
                route = scope.get("route")
                labels = (self.service, scope["method"], getattr(route, "path", "unmatched"),
                          str(message["status"]))
                HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - started)
                HTTP_REQUESTS.labels(*labels).inc()
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, observed)
        finally:
            request_id_var.reset(token)


def install_observability(app: FastAPI, service: str) -> None:
    app.add_middleware(_Observe, service=service)


def health_router(get_deps: Callable[[Request], tuple[Any, Any, ObjectStore]]) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        engine, client, store = get_deps(request)
        checks = await run_in_threadpool(readiness, engine, client, store)
        failed = [name for name, state in checks.items() if state != "ok"]
        if failed:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "failed": failed,
                    "checks": checks,
                    "error": {"code": "not_ready", "message": f"Not ready: {', '.join(failed)} unavailable."},
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", "checks": checks})

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def files_router(get_store: Callable[[Request], ObjectStore], signing_secret: Callable[[Request], str]) -> APIRouter:
    """Serves local-storage objects behind short-lived HMAC-signed URLs (the local stand-in for
    S3 presigned URLs). Unknown, tampered or expired links are 404s."""
    router = APIRouter()

    @router.get("/v1/files/{key:path}", include_in_schema=False)
    def serve(key: str, request: Request, expires: int = 0, sig: str = "", filename: str | None = None) -> Response:
        store = get_store(request)
        not_found = JSONResponse(
            {"error": {"code": "not_found", "message": "The link is invalid or expired."}}, status_code=404
        )
        if not isinstance(store, LocalObjectStore):
            return not_found
        if not verify_signed_url(
            signing_secret=signing_secret(request), key=key, expires=expires, signature=sig, filename=filename
        ):
            return not_found
        try:
            path = store.path_for(key)
        except ValueError:
            return not_found
        if not path.is_file():
            return not_found
        return FileResponse(
            path,
            media_type=store.content_type(key),
            filename=filename,
            content_disposition_type="attachment" if filename else "inline",
            headers={"Cache-Control": "private, max-age=60"},
        )

    return router


class ServiceContext(Protocol):
    """What :func:`mount_common` needs from a service's process context."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def redis(self) -> redis.Redis: ...

    @property
    def store(self) -> ObjectStore: ...


def mount_common(app: FastAPI, get_ctx: Callable[[Request], ServiceContext]) -> None:
    """Mount the routes every web service has: health, metrics and signed local files."""

    def deps(request: Request) -> tuple[Engine, redis.Redis, ObjectStore]:
        ctx = get_ctx(request)
        return ctx.engine, ctx.redis, ctx.store

    app.include_router(health_router(deps))
    # Signed links of the local storage backend point here; with S3 the route answers 404
    # and links go to the bucket instead.
    app.include_router(files_router(lambda r: get_ctx(r).store, lambda r: get_ctx(r).settings.url_signing_secret or ""))


def document_models(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Put `models` into the OpenAPI document's components although no route returns them as
    JSON (the live events' models, which a `text/event-stream` schema refers to)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _, top = models_json_schema([(m, "serialization") for m in models],
                                    ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in top.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        document["components"]["schemas"] = dict(sorted(schemas.items()))
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def prepare_local_store(store: ObjectStore) -> None:
    """Called at startup. A fresh local directory is a valid, empty store: create it so /readyz
    is green before the first upload (S3 buckets are provisioned by the deployment instead)."""
    if isinstance(store, LocalObjectStore):
        store.ensure_bucket()


# --------------------------------------------------------------------------- authentication


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, else :class:`Unauthenticated`."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated()
    token = authorization[7:].strip()
    if not token:
        raise Unauthenticated()
    return token


class AccountCache:
    """API key -> account for a few seconds, so a client's burst of requests costs one lookup.

    Only keys that authenticated are kept (a new key works at once, a wrong one is looked up
    every time and can never be remembered as valid), under the key's hash, never the key. The
    account is used for its identity: balances are always read afresh by the use cases. An
    entry goes after `ttl_seconds`, on `forget_account` (whatever changes an account's keys
    must call it), or when the cache is full (oldest first)."""

    def __init__(self, ttl_seconds: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Account]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Account | None:
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None
            if time.monotonic() >= entry[0]:
                del self._entries[key_hash]
                return None
            return entry[1]

    def put(self, key_hash: str, account: Account) -> None:
        with self._lock:
            self._entries.pop(key_hash, None)
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # dicts keep insertion order
            self._entries[key_hash] = (time.monotonic() + self.ttl_seconds, account)

    def forget_account(self, account_id: str) -> None:
        with self._lock:
            for key in [k for k, (_, a) in self._entries.items() if a.id == account_id]:
                del self._entries[key]


def authenticate(engine: Engine, authorization: str | None, cache: AccountCache | None = None) -> Account:
    """The account whose API key the ``Authorization`` header carries."""
    token = bearer_token(authorization)
    key_hash = accounts.hash_api_key(token)
    if cache is not None and (cached := cache.get(key_hash)) is not None:
        return cached
    # A short session of its own, so authentication never holds the request's write transaction.
    with session_scope(engine) as session:
        account = accounts.by_api_key_hash(session, key_hash)
    if account is None:
        raise Unauthenticated()
    if cache is not None:
        cache.put(key_hash, account)
    return account


async def authenticated(engine: Engine, authorization: str | None, cache: AccountCache) -> Account:
    """`authenticate` for an async dependency: a key the cache holds is answered on the event
    loop, a lookup in the database goes to the thread pool."""
    if (cached := cache.get(accounts.hash_api_key(bearer_token(authorization)))) is not None:
        return cached
    return await run_in_threadpool(authenticate, engine, authorization, cache)


# --------------------------------------------------------------------------- pagination


class PageParams:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=100)] = None,
    ) -> None:
        self.limit = limit
        self.cursor = cursor


PageDep = Annotated[PageParams, Depends(PageParams)]


def page(rows: Sequence[T], limit: int, view: Callable[[T], Any], key: Callable[[T], str]) -> dict[str, Any]:
    """Rows were fetched with limit + 1 to learn whether another page exists. The answer is a
    `easel_shared.schemas.Page` of what `view` builds (a dict or a model)."""
    items = list(rows[:limit])
    next_cursor = key(items[-1]) if len(rows) > limit and items else None
    return {"items": [view(r) for r in items], "next_cursor": next_cursor}
