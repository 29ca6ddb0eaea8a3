"""The assets service: the account's library of images kept from deleted nodes, and the relay
that fills it from the database outbox (see `easel_assets.consumer`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, Request
from sqlalchemy.engine import Engine

from easel_assets.consumer import RetentionConsumer
from easel_assets.context import AppContext, build_context
from easel_assets.errors import install_error_handlers
from easel_assets.routes import assets
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
            # A fresh local directory is a valid, empty store (S3 buckets come from the deployment).
            ctx.store.ensure_bucket()
        consumer = RetentionConsumer(ctx)
        consumer.start()
        try:
            yield
        finally:
            await asyncio.to_thread(consumer.stop)

    app = FastAPI(title="Easel Assets", version="1.0.0", lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_observability(app, "assets")
    setup_tracing("assets", settings.otel_exporter_otlp_endpoint, fastapi_app=app)

    def _deps(request: Request) -> tuple[Engine, redis.Redis, ObjectStore]:
        c: AppContext = request.app.state.ctx
        return c.engine, c.redis, c.store

    app.include_router(health_router(_deps))
    # Signed links of the local storage backend point here (assets_public_url); with S3 the
    # route answers 404 and links go to the bucket instead.
    app.include_router(
        files_router(lambda r: r.app.state.ctx.store, lambda r: r.app.state.ctx.settings.url_signing_secret or "")
    )
    app.include_router(assets.router)
    return app
