"""The assets service: the account's library of images kept from deleted nodes, and the relay
that fills it from the database outbox (see `easel_assets.consumer`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from easel_assets.consumer import RetentionConsumer
from easel_assets.context import build_context
from easel_assets.deps import get_ctx
from easel_assets.errors import install_error_handlers
from easel_assets.routes import assets
from easel_shared.http_limits import install_request_guard
from easel_shared.imaging import configure_decode_budget
from easel_shared.settings import Settings, get_settings
from easel_shared.tracing import setup_tracing
from easel_shared.web import install_observability, mount_common, prepare_local_store


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_decode_budget(settings.decode_memory_budget_mb)
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_local_store(ctx.store)
        consumer = RetentionConsumer(ctx)
        consumer.start()
        try:
            yield
        finally:
            await asyncio.to_thread(consumer.stop)

    app = FastAPI(title="Easel Assets", version="1.0.0", lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_request_guard(app, settings.max_request_body_bytes)
    install_observability(app, "assets")
    setup_tracing("assets", settings.otel_exporter_otlp_endpoint, fastapi_app=app)

    mount_common(app, get_ctx)
    app.include_router(assets.router)
    return app
