"""Shared-state backends: in memory (one instance, the default) or Redis (many instances).

Policies reach I/O only through these, so each runs unchanged on either backend.
"""

from __future__ import annotations

from typing import Protocol


class Backend(Protocol):
    name: str

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


def open_backend(redis_url: str | None) -> Backend:
    if redis_url:
        from .redis import RedisBackend

        return RedisBackend(redis_url)
    from .memory import MemoryBackend

    return MemoryBackend()
