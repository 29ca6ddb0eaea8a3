"""The api service: accounts, boards, nodes, edges, uploads, generations, live events."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from easel_api import live
from easel_api.context import build_context
from easel_api.deps import context_of
from easel_api.errors import install_error_handlers
from easel_api.routes import accounts, boards, canvas, events, generations, images, runs, webhooks
from easel_shared.http_limits import install_request_guard
from easel_shared.imaging import configure_decode_budget
from easel_shared.ratelimit import RateLimiter
from easel_shared.relay import RelayThread, install, standard, uninstall
from easel_shared.schemas import EVENT_MODELS
from easel_shared.settings import Settings, get_settings
from easel_shared.thumbnails import ThumbnailRelay
from easel_shared.tracing import setup_tracing
from easel_shared.web import document_models, install_observability, mount_common, prepare_local_store

#: Redis connections of the rate limiter (each command holds one for a fraction of a millisecond).
LIMITER_CONNECTIONS = 16

#: The collector's full pass runs after this many passes over the middle generation (CPython's
#: default is 10): about every 7 million allocations instead of every 70,000.
FULL_COLLECTION_AFTER = 1000


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_decode_budget(settings.decode_memory_budget_mb)
    ctx = build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_local_store(ctx.store)
        # Outbox rows this process commits are relayed right after the commit; the thread relays
        # what any process left behind.
        relay = install(standard(ctx.settings, ctx.redis))
        # Its thread also stores the thumbnails of uploads whose process died before it could.
        relay_thread = RelayThread(ctx.engine, [*relay.relays.values(),
                                                ThumbnailRelay(ctx.store, ctx.settings.max_image_pixels)],
                                   poll_seconds=ctx.settings.outbox_poll_seconds,
                                   retention_seconds=ctx.settings.outbox_retention_seconds)
        relay_thread.start()
        app.state.hub = live.EventHub(ctx)
        # An asyncio client of its own, made on the server's loop like the hub's. Its pool is
        # bounded and waits for a free connection: a default pool refuses the 101st concurrent
        # command, and the limiter would take that refusal for Redis being down and let a burst
        # through (304 of 400 concurrent requests against a budget of 5, measured).
        app.state.limiter = RateLimiter(aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            ctx.settings.redis_url, max_connections=LIMITER_CONNECTIONS, timeout=10, socket_timeout=10,
            socket_connect_timeout=5, health_check_interval=30)))
        # Startup objects live for the whole process: keep them out of the collector's full
        # passes, whose pauses showed up as event-delivery p99 with 1000 subscribers.
        gc.collect()
        gc.freeze()
        # And run those passes far less often: with 1000 open event streams one took ~150 ms and
        # held up a whole fan-out (3 of them in a 30-change run of bench/events.py). Younger
        # generations are collected as before, so short-lived cycles go as soon as they did.
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
        try:
            yield
        finally:
            await app.state.hub.close()
            await app.state.limiter.client.aclose()
            await asyncio.to_thread(relay_thread.stop)
            uninstall(relay)
            if ctx.early_decoder is not None:
                ctx.early_decoder.shutdown()

    app = FastAPI(title="Easel API", version="1.0.0", lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_request_guard(app, settings.max_request_body_bytes)
    install_observability(app, "api")
    setup_tracing("api", settings.otel_exporter_otlp_endpoint, fastapi_app=app, celery=True)

    mount_common(app, context_of)
    # The live events' models: the event stream's schema refers to them.
    document_models(app, EVENT_MODELS)
    for module in (accounts, boards, images, generations, runs, events, webhooks, canvas):
        app.include_router(module.router)
    return app
