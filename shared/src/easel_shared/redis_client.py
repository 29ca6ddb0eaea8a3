from __future__ import annotations

from functools import lru_cache

import redis


@lru_cache(maxsize=4)
def get_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
