"""The embedded default: state lives in this process."""

from __future__ import annotations


class MemoryBackend:
    name = "memory"

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
