"""State shared by every edge instance through one Redis."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import BackendError

# Requests must never hang on Redis: every call has a tight timeout.
SOCKET_TIMEOUT = 0.25
PREFIX = "edge:"
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=10)
        self._delete_if = self.client.register_script(_DELETE_IF)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self.client.aclose()

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError, TimeoutError) as e:
            raise BackendError(f"redis: {e}") from None

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self.client.get(PREFIX + key))
        return bytes(value) if value is not None else None

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(await self._call(self.client.set(PREFIX + key, value,
                                                     px=max(1, int(ttl * 1000)), nx=True)))

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self._call(self.client.set(PREFIX + key, value, px=max(1, int(ttl * 1000))))

    async def delete(self, key: str, only_if: bytes | None = None) -> None:
        if only_if is None:
            await self._call(self.client.delete(PREFIX + key))
        else:
            await self._call(self._delete_if(keys=[PREFIX + key], args=[only_if]))
