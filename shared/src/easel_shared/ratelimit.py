"""Per-account token buckets in Redis, shared by every api replica.

One Lua script refills and takes a token atomically, so two replicas never both spend the last
token. The bucket holds `per_minute` tokens and refills continuously at per_minute/60 per second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

_SCRIPT = """
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])      -- tokens per millisecond
local now = tonumber(ARGV[3])       -- milliseconds
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', key, math.ceil(capacity / rate) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int


class RateLimiter:
    """On an asyncio client: the api takes tokens in its request dependencies, on the event loop
    (a blocking client there would cost a hop to the thread pool and back per request)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_SCRIPT)

    async def take(self, bucket: str, account_id: str, per_minute: int) -> Verdict:
        """Take one token. `per_minute <= 0` disables the limit. If Redis is unreachable the
        request is allowed: rate limiting protects capacity, it must not take the api down."""
        if per_minute <= 0:
            return Verdict(True, 0)
        rate_per_ms = per_minute / 60_000.0
        try:
            allowed, tokens = await self._script(
                keys=[f"easel:ratelimit:{bucket}:{account_id}"],
                args=[per_minute, rate_per_ms, int(time.time() * 1000)],
            )
        except redis.RedisError:
            return Verdict(True, 0)
        if int(allowed) == 1:
            return Verdict(True, 0)
        missing = 1.0 - float(tokens)
        return Verdict(False, max(1, math.ceil(missing / rate_per_ms / 1000.0)))
