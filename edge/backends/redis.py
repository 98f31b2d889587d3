"""State shared by every edge instance through one Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

# Requests must never hang on Redis: every call has a tight timeout.
SOCKET_TIMEOUT = 0.25


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=10)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
