"""Registered devices, in the backend (memory, or Redis shared by every instance).

    push:reg:{id}      the registration (JSON), expiring with it
    push:topic:{topic} hash: id -> registration, the devices to push a topic's events to
    push:sub:{sub}     hash: id -> registration, a caller's devices (bounded)

A registration's id is a hash of its platform and token, so registering the same device
again renews it (and moves it to whoever registers it now). Expired entries left in a
hash are skipped on read and removed when seen.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict

import orjson

from ..backends import Backend
from .providers.base import Registration


def registration_id(platform: str, token: str) -> str:
    return hashlib.blake2b(f"{platform}\0{token}".encode(), digest_size=12).hexdigest()


def _encode(reg: Registration) -> bytes:
    return orjson.dumps(asdict(reg))


def _decode(raw: bytes) -> Registration | None:
    try:
        return Registration(**orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError):
        return None


class Registrations:
    def __init__(self, backend: Backend, max_per_identity: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend, self.max_per_identity, self.clock = backend, max_per_identity, clock

    async def register(self, reg: Registration) -> list[Registration]:
        """Keep `reg` (replacing the same device's registration); returns the caller's
        oldest registrations dropped to stay within `max_per_identity`."""
        old = await self.get(reg.id)
        if old is not None:
            await self._unlink(old)
        mine = sorted(await self.of(reg.sub), key=lambda r: r.created)
        dropped = mine[:max(0, len(mine) + 1 - self.max_per_identity)]
        for gone in dropped:
            await self.remove(gone)
        ttl = max(1.0, reg.expires - self.clock())
        raw = _encode(reg)
        await self.backend.put(f"push:reg:{reg.id}", raw, ttl)
        await self.backend.hash_set(f"push:sub:{reg.sub}", reg.id, raw, ttl)
        for topic in reg.topics:
            await self.backend.hash_set(f"push:topic:{topic}", reg.id, raw, ttl)
        return dropped

    async def get(self, reg_id: str) -> Registration | None:
        raw = await self.backend.get(f"push:reg:{reg_id}")
        reg = _decode(raw) if raw is not None else None
        return reg if reg is not None and reg.expires > self.clock() else None

    async def remove(self, reg: Registration) -> None:
        await self._unlink(reg)
        await self.backend.delete(f"push:reg:{reg.id}")

    async def _unlink(self, reg: Registration) -> None:
        await self.backend.hash_delete(f"push:sub:{reg.sub}", reg.id)
        for topic in reg.topics:
            await self.backend.hash_delete(f"push:topic:{topic}", reg.id)

    async def of(self, sub: str) -> list[Registration]:
        return await self._live(f"push:sub:{sub}")

    async def for_topic(self, topic: str) -> list[Registration]:
        return await self._live(f"push:topic:{topic}")

    async def _live(self, name: str) -> list[Registration]:
        now = self.clock()
        out = []
        for reg_id, raw in (await self.backend.hash_all(name)).items():
            reg = _decode(raw)
            if reg is None or reg.expires <= now:
                await self.backend.hash_delete(name, reg_id)
                continue
            out.append(reg)
        return out
