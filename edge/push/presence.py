"""Which devices have an event stream open, on this instance or any other: what
`push: only-if-offline` asks before pushing.

A stream names its device by the token's `device_id` claim, else `X-Device-ID`. Locally a
count per (subject, device); with Redis each instance also keeps, in the hash
`push:online:{sub}`, a field `device|instance` whose value is when it stops counting
(now + TTL, refreshed every TTL/3 while the stream is open, deleted when it closes): an
instance that dies stops counting within TTL.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from ..aio import stop
from ..backends import Backend, BackendError

log = logging.getLogger("edge.push")
TTL = 60.0


class Presence:
    def __init__(self, backend: Backend, ttl: float = TTL) -> None:
        self.backend, self.ttl = backend, ttl
        self.shared = backend.name != "memory"
        self.instance = secrets.token_hex(6)
        self.local: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if self.shared:
            self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def close(self) -> None:
        await stop(self._task)
        for task in list(self._writes):
            task.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)

    def enter(self, sub: str, device_id: str) -> None:
        key = (sub, device_id)
        n = self.local.get(key, 0)
        self.local[key] = n + 1
        if n == 0 and self.shared:
            self._spawn(self._mark(sub, device_id))

    def leave(self, sub: str, device_id: str) -> None:
        key = (sub, device_id)
        n = self.local.get(key, 0) - 1
        if n > 0:
            self.local[key] = n
            return
        self.local.pop(key, None)
        if self.shared:
            self._spawn(self.backend.hash_delete(f"push:online:{sub}",
                                                 f"{device_id}|{self.instance}"))

    async def online(self, sub: str, device_id: str) -> bool:
        if (sub, device_id) in self.local:
            return True
        if not self.shared:
            return False
        try:
            fields = await self.backend.hash_all(f"push:online:{sub}")
        except BackendError:
            return False  # better pushed twice than never
        now = time.time()
        prefix = f"{device_id}|"
        for name, until in fields.items():
            if name.startswith(prefix):
                try:
                    if float(until) > now:
                        return True
                except ValueError:
                    continue
        return False

    async def _mark(self, sub: str, device_id: str) -> None:
        await self.backend.hash_set(f"push:online:{sub}", f"{device_id}|{self.instance}",
                                    str(time.time() + self.ttl).encode(), self.ttl * 2)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(_quiet(coro))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            for sub, device_id in list(self.local):
                await _quiet(self._mark(sub, device_id))


async def _quiet(coro: Any) -> None:
    try:
        await coro
    except BackendError as e:
        log.warning("device presence not recorded: %s", e)
