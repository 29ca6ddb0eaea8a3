"""Process-wide resources of a worker: settings, engine, Redis, storage, catalog."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis
from sqlalchemy.engine import Engine

from easel_shared.catalog_loader import load_offered_catalog
from easel_shared.db import get_engine
from easel_shared.domain.catalog import Catalog
from easel_shared.imaging import configure_decode_budget
from easel_shared.redis_client import get_redis
from easel_shared.relay import Relay, install, standard
from easel_shared.settings import Settings
from easel_shared.storage import ObjectStore, store_from_settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    store: ObjectStore
    catalog: Catalog
    relay: Relay
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return self.settings.api_public_url.rstrip("/")


_runtime: Runtime | None = None


def init(settings: Settings) -> Runtime:
    global _runtime
    configure_decode_budget(settings.decode_memory_budget_mb)
    client = get_redis(settings.redis_url)
    _runtime = Runtime(
        settings=settings,
        engine=get_engine(settings.database_url),
        redis=client,
        store=store_from_settings(settings, settings.api_public_url),
        catalog=load_offered_catalog(settings.model_catalog_path),
        # What this process's transactions write to the outbox is relayed right after their commit.
        relay=install(standard(settings, client)),
    )
    return _runtime


def get() -> Runtime:
    if _runtime is None:
        raise RuntimeError("worker runtime not initialised")
    return _runtime
