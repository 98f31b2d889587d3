"""The edge cache's storage: two tiers, and the purges every instance must honour.

A per-process LRU bounded by bytes (always, an aiocache backend), and Redis (when the
backend is Redis, through it) shared by every instance. A read tries memory, then
Redis (copying a hit into memory); a write goes to both. Redis trouble makes a miss,
never an error: the upstream is still there.

Purges don't search for keys. Every entry records when it was stored and its tags
(`member:1001`, `route:GET /x`, and `*`); a purge records, per tag, when it happened —
locally, in a Redis hash new instances read at start, and on a Redis channel every
running instance listens to. An entry stored before a purge of any of its tags is gone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from aiocache.base import BaseCache
from aiocache.serializers import NullSerializer

from ..aio import stop
from ..stores import StoreSize
from . import Backend, BackendError

log = logging.getLogger("edge.cache")
PURGE_CHANNEL = "cache:purge"
PURGE_HASH = "cache:purges"
NAMESPACE = "cache:"  # entries in the shared backend
PURGE_MEMORY = 86400.0  # purges older than any entry's lifetime can be forgotten
PURGES = 100_000  # tags whose purge time is kept (past it: a floor, see Invalidations)
ALL = "*"


class Sized(Protocol):
    @property
    def size(self) -> int: ...


class LruBytesCache(BaseCache):  # type: ignore[misc]
    """An aiocache backend in this process, holding at most `max_bytes` of values (their
    `.size`); the least recently used go first, expired ones on sight."""

    NAME = "lru-bytes"

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> None:
        super().__init__(serializer=NullSerializer(), timeout=None, **kwargs)
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()

    def size(self) -> StoreSize:
        return StoreSize(len(self._data), None, self.bytes, self.max_bytes, self.evictions)

    def resize(self, max_bytes: int) -> None:
        """A new bound (a config reload); shrinking drops the least recently used at once."""
        self.max_bytes = max_bytes
        self._trim()

    def _trim(self) -> None:
        while self.bytes > self.max_bytes and self._data:
            self._drop(next(iter(self._data)))
            self.evictions += 1

    def lookup(self, key: str) -> Any:
        """A value, or None: aiocache's `get` without its wrappers (timeouts, hooks,
        a coroutine per layer), for the edge cache's hit path."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self.clock():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return item[1]

    def store(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """`set` without aiocache's wrappers."""
        size = int(getattr(value, "size", 0)) + len(key)
        self._drop(key)
        if size > self.max_bytes:
            return False
        expires = self.clock() + ttl if ttl else float("inf")
        self._data[key] = (expires, value, size)
        self.bytes += size
        self._trim()
        return True

    async def _get(self, key: str, encoding: Any = None, _conn: Any = None) -> Any:
        return self.lookup(key)

    async def _set(self, key: str, value: Any, ttl: float | None = None,
                   _cas_token: Any = None, _conn: Any = None) -> bool:
        return self.store(key, value, ttl)

    async def _add(self, key: str, value: Any, ttl: float | None = None,
                   _conn: Any = None) -> bool:
        if await self._get(key) is not None:
            raise ValueError(f"key {key!r} already exists")
        return await self._set(key, value, ttl)

    async def _exists(self, key: str, _conn: Any = None) -> bool:
        return await self._get(key) is not None

    async def _delete(self, key: str, _conn: Any = None) -> int:
        return 1 if self._drop(key) else 0

    async def _clear(self, namespace: str | None = None, _conn: Any = None) -> bool:
        self._data.clear()
        self.bytes = 0
        return True

    def _drop(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[2]
        return True

    def __len__(self) -> int:
        return len(self._data)


class TieredCache:
    """Memory in front of the shared backend (when there is one: Redis).

    The Redis tier goes through the backend, so it uses the one client the backend built
    from EDGE_REDIS_URL as written (`rediss://`, user, password, database), with its
    timeouts and metrics; its keys are `edge:cache:<key>`."""

    def __init__(self, max_bytes: int, backend: Backend | None,
                 dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any],
                 clock: Callable[[], float] = time.time) -> None:
        # the entries' own clock: a copy in memory goes when the entry says (store_until)
        self.clock = clock
        self.memory = LruBytesCache(max_bytes, clock)
        # one instance's memory backend would only keep a second copy of the memory tier
        self.shared = backend if backend is not None and backend.name != "memory" else None
        self._dumps, self._loads = dumps, loads

    async def get(self, key: str) -> Any:
        value = self.memory.lookup(key)
        if value is not None or self.shared is None:
            return value
        try:
            raw = await self.shared.get(NAMESPACE + key, op="cache_get")
        except BackendError as e:
            log.warning("cache read from redis failed: %s", e)
            return None
        if raw is None:
            return None
        try:
            value = self._loads(raw)
        except Exception:  # an entry from another version of the edge: a miss
            return None
        left = getattr(value, "store_until", 0.0) - self.clock()
        if left <= 0:  # Redis's expiry and ours may differ by a little
            return None
        self.memory.store(key, value, ttl=left)
        return value

    async def set(self, key: str, value: Sized, ttl: float) -> None:
        self.memory.store(key, value, ttl=ttl)
        if self.shared is not None:
            try:
                await self.shared.put(NAMESPACE + key, self._dumps(value), ttl,
                                      op="cache_set")
            except BackendError as e:
                log.warning("cache write to redis failed: %s", e)

    async def clear_memory(self) -> None:
        await self.memory.clear()

    async def close(self) -> None:
        """The memory tier's entries go; the backend is its owner's to close."""
        await self.memory.clear()


class Invalidations:
    """When each tag was last purged, here and on every instance; and who wants to know.

    `subscribe()` gives a bounded queue of purge events (`{"tags": [...], "at": ts}`) —
    the feed for pushing "this changed" to apps.
    """

    def __init__(self, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.clock = clock  # the wall clock: purge times are compared across instances
        self.purged_at: dict[str, float] = {}
        # every entry stored before this was purged: what the tags past PURGES leave
        self.floor = 0.0
        self.max_tags = PURGES
        self.evictions = 0
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self.on_all: Callable[[], Any] | None = None
        self.origin = secrets.token_hex(6)  # to know our own messages when they come back

    async def start(self) -> None:
        try:
            stored = await self.backend.hash_all(PURGE_HASH)
        except BackendError as e:
            log.warning("could not read past purges: %s", e)
            stored = {}
        now = self.clock()
        for tag, raw in stored.items():
            at = float(raw)
            if now - at < PURGE_MEMORY:
                self.purged_at[tag] = max(self.purged_at.get(tag, 0.0), at)
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        await stop(self._task)

    def valid(self, tags: tuple[str, ...], stored_at: float) -> bool:
        at = self.purged_at
        if not at:
            return True
        return stored_at > self.floor and all(at.get(t, 0.0) < stored_at for t in tags)

    def size(self) -> StoreSize:
        return StoreSize(len(self.purged_at), self.max_tags, evictions=self.evictions)

    async def purge(self, tags: list[str]) -> dict[str, Any]:
        """Purge these tags everywhere; returns the event sent to listeners."""
        event: dict[str, Any] = {"tags": tags, "at": self.clock()}
        self._apply(event)
        message = orjson.dumps({**event, "origin": self.origin})
        try:
            for tag in tags:
                await self.backend.hash_set(PURGE_HASH, tag, str(event["at"]).encode(),
                                            PURGE_MEMORY)
            await self.backend.publish(PURGE_CHANNEL, message)
        except BackendError as e:
            log.warning("purge of %s not shared with other instances: %s", tags, e)
        return event

    def subscribe(self, size: int = 1000) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.listeners.discard(queue)

    def _apply(self, event: dict[str, Any]) -> None:
        at = float(event["at"])
        if len(self.purged_at) > self.max_tags:  # bounded: forget what no entry predates
            kept = {t: a for t, a in self.purged_at.items() if at - a < PURGE_MEMORY}
            if len(kept) > self.max_tags // 2:
                # still too many: the older half goes, and what they purged is covered by
                # a floor every entry stored before them fails (more misses, never stale)
                ordered = sorted(kept.items(), key=lambda item: item[1])
                cut = len(ordered) - self.max_tags // 2
                self.floor = max(self.floor, ordered[cut - 1][1])
                kept = dict(ordered[cut:])
            self.evictions += len(self.purged_at) - len(kept)
            self.purged_at = kept
        for tag in event["tags"]:
            if at > self.purged_at.get(tag, 0.0):
                self.purged_at[tag] = at
        if ALL in event["tags"] and self.on_all is not None:
            self.on_all()
        for queue in self.listeners:
            if queue.full():
                queue.get_nowait()  # a slow listener loses the oldest, never blocks us
            queue.put_nowait(event)

    async def _listen(self) -> None:
        async for message in self.backend.listen(PURGE_CHANNEL):
            if not message:
                continue  # a broken subscription is back: a marker, not a purge
            try:
                event = orjson.loads(message)
                if event.get("origin") == self.origin:
                    continue
                if isinstance(event.get("tags"), list) and isinstance(event.get("at"), float):
                    self._apply({"tags": event["tags"], "at": event["at"]})
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                log.warning("ignored a malformed purge message")
