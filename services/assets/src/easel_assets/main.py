"""The assets service: the account's library of images kept from deleted nodes, and the outbox
relay that fills it (see `easel_assets.consumer`) and, like every service, relays the live events
and dispatches other processes left behind (`easel_shared.relay`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from easel_assets.consumer import RetentionRelay
from easel_assets.context import build_context
from easel_assets.deps import get_ctx
from easel_assets.errors import install_error_handlers
from easel_assets.routes import assets
from easel_shared.http_limits import install_request_guard
from easel_shared.imaging import configure_decode_budget
from easel_shared.relay import RelayThread, install, standard, uninstall
from easel_shared.settings import Settings, get_settings
from easel_shared.tracing import setup_tracing
from easel_shared.web import install_observability, mount_common, prepare_local_store


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_decode_budget(settings.decode_memory_budget_mb)
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_local_store(ctx.store)
        relay = install(standard(ctx.settings, ctx.redis))
        retention = RetentionRelay(ctx)
        relay_thread = RelayThread(ctx.engine, [*relay.relays.values(), retention],
                                   poll_seconds=ctx.settings.outbox_poll_seconds,
                                   retention_seconds=ctx.settings.outbox_retention_seconds)
        retention.stop = relay_thread.stopping  # a pass ends early when the service stops
        relay_thread.start()
        try:
            yield
        finally:
            await asyncio.to_thread(relay_thread.stop)
            uninstall(relay)

    app = FastAPI(title="Easel Assets", version="1.0.0", lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_request_guard(app, settings.max_request_body_bytes)
    install_observability(app, "assets")
    setup_tracing("assets", settings.otel_exporter_otlp_endpoint, fastapi_app=app)
    # The api's reference canvas (`/canvas`) reads the library from the api's origin, and only it.
    app.add_middleware(CORSMiddleware, allow_origins=[_origin(settings.api_public_url)],
                       allow_methods=["GET", "DELETE"], allow_headers=["Authorization", "X-Request-ID"],
                       expose_headers=["X-Request-ID", "Retry-After"], max_age=600)

    mount_common(app, get_ctx)
    app.include_router(assets.router)
    return app
