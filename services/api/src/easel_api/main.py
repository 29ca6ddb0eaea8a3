"""The api service: accounts, boards, nodes, edges, uploads, generations, live events."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, Request
from sqlalchemy.engine import Engine

from easel_api.context import AppContext, build_context
from easel_api.errors import install_error_handlers
from easel_api.routes import accounts, boards, events, generations, images
from easel_shared.events import RedisEventPublisher, install_publisher
from easel_shared.settings import Settings, get_settings
from easel_shared.storage import LocalObjectStore, ObjectStore
from easel_shared.tracing import setup_tracing
from easel_shared.web import files_router, health_router, install_observability


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(ctx.store, LocalObjectStore):
            # A fresh local directory is a valid, empty store: create it so /readyz is green
            # before the first upload (S3 buckets are provisioned by the deployment instead).
            ctx.store.ensure_bucket()
        install_publisher(RedisEventPublisher(ctx.redis))
        app.state.hub = events.EventHub(ctx)
        # Startup objects live for the whole process: keep them out of the collector's full
        # passes, whose pauses showed up as event-delivery p99 with 1000 subscribers.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.hub.close()

    app = FastAPI(title="Easel API", version="1.0.0", lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_observability(app, "api")
    setup_tracing("api", settings.otel_exporter_otlp_endpoint, fastapi_app=app, celery=True)

    def _deps(request: Request) -> tuple[Engine, redis.Redis, ObjectStore]:
        c: AppContext = request.app.state.ctx
        return c.engine, c.redis, c.store

    app.include_router(health_router(_deps))
    app.include_router(
        files_router(lambda r: r.app.state.ctx.store, lambda r: r.app.state.ctx.settings.url_signing_secret or "")
    )
    for module in (accounts, boards, images, generations, events):
        app.include_router(module.router)
    return app
