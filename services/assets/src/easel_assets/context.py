"""Everything a request or the retention consumer needs, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.engine import Engine

from easel_shared.db import get_engine
from easel_shared.redis_client import get_redis
from easel_shared.settings import Settings
from easel_shared.storage import ObjectStore, store_from_settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    # The library and the retention consumer work without Redis (the outbox lives in the
    # database); /readyz and the relay of live events and dispatches left behind use it.
    redis: redis.Redis
    store: ObjectStore

    @property
    def base_url(self) -> str:
        return self.settings.assets_public_url.rstrip("/")


def build_context(settings: Settings) -> AppContext:
    return AppContext(
        settings=settings,
        engine=get_engine(settings.database_url),
        redis=get_redis(settings.redis_url),
        # With the local backend, signed links point at this service's own /v1/files route.
        store=store_from_settings(settings, settings.assets_public_url),
    )
