from __future__ import annotations

from dataclasses import dataclass, field

import redis
from sqlalchemy.engine import Engine

from easel_api.arriving_decode import EarlyDecoder
from easel_shared.catalog_loader import load_offered_catalog
from easel_shared.db import get_engine
from easel_shared.domain.catalog import Catalog
from easel_shared.redis_client import get_redis
from easel_shared.settings import Settings
from easel_shared.storage import ObjectStore, store_from_settings
from easel_shared.web import AccountCache


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    store: ObjectStore
    catalog: Catalog
    auth_cache: AccountCache = field(default_factory=AccountCache)
    early_decoder: EarlyDecoder | None = None

    @property
    def base_url(self) -> str:
        return self.settings.api_public_url.rstrip("/")


def build_context(settings: Settings, public_base_url: str | None = None) -> AppContext:
    return AppContext(
        settings=settings,
        engine=get_engine(settings.database_url),
        redis=get_redis(settings.redis_url),
        store=store_from_settings(settings, public_base_url or settings.api_public_url),
        catalog=load_offered_catalog(settings.model_catalog_path),
        early_decoder=EarlyDecoder(settings.upload_early_decodes, settings.upload_early_decode_window_seconds,
                                   settings.max_image_pixels),
    )
