"""The embedded default: state lives in this process."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from ..stores import StoreSize, right_sized
from . import EventId


@dataclass(slots=True)
class _Topic:
    events: deque[tuple[int, float, bytes]] = field(default_factory=deque)
    lost: int = 0  # the newest seq no longer kept


class MemoryBackend:
    name = "memory"
    cluster = False

    def __init__(self, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock  # for TTLs and rate-limit buckets: intervals, never shared
        # key → (expires at, value); oldest first, so the bound evicts the oldest
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._tats: OrderedDict[str, float] = OrderedDict()  # rate-limit buckets
        self.max_buckets = max_entries  # the rate limiter sets its own (rate_limits.max_keys)
        self._epoch = int(time.time() * 1000)  # this process's history: a restart begins another
        self._seq = 0
        self._topics: OrderedDict[str, _Topic] = OrderedDict()
        self.max_history_bytes = 32 * 1024 * 1024  # the hub sets events.history_memory
        self._history_bytes = 0
        self._evicted_upto = 0  # the newest seq of a topic dropped whole
        # name → fields, most recently written last; `_fields` counts them all
        self._hashes: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._fields = 0
        self.evictions = {"backend_keys": 0, "backend_hash_fields": 0,
                          "rate_limit_buckets": 0, "event_topics": 0}

    def sizes(self) -> Iterator[tuple[str, StoreSize]]:
        """What this process holds for the edge (idempotency and offline-queue records,
        push registrations, rate-limit buckets, event history), against the bounds
        (`backend.memory_max_entries`, `rate_limits.max_keys`; each topic's history is
        bounded by `events.history`)."""
        ev = self.evictions
        yield "backend_keys", StoreSize(len(self._data), self.max_entries,
                                        sum(len(v[1]) for v in self._data.values()),
                                        evictions=ev["backend_keys"])
        yield "backend_hash_fields", StoreSize(
            self._fields, self.max_entries, sum(len(v) for t in self._hashes.values()
                                          for v in t.values()),
            evictions=ev["backend_hash_fields"])
        yield "rate_limit_buckets", StoreSize(len(self._tats), self.max_buckets,
                                              evictions=ev["rate_limit_buckets"])
        yield "event_topics", StoreSize(len(self._topics), self.max_entries,
                                        evictions=ev["event_topics"])
        yield "event_history", StoreSize(
            sum(len(t.events) for t in self._topics.values()), None, self._history_bytes,
            self.max_history_bytes)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()

    def _live(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._data[key]
            return None
        return entry[1]

    async def get(self, key: str, *, op: str = "get") -> bytes | None:
        return self._live(key)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._set(key, value, ttl)
        return True

    async def put(self, key: str, value: bytes, ttl: float, *, op: str = "put") -> None:
        self._set(key, value, ttl)

    async def delete(self, key: str, only_if: bytes | None = None) -> None:
        if only_if is None or self._live(key) == only_if:
            self._data.pop(key, None)

    async def hash_set(self, name: str, field: str, value: bytes, ttl: float) -> None:
        hashes = self._hashes
        table = hashes.pop(name, None) or {}
        hashes[name] = table  # most recently written last
        if table.pop(field, None) is None:
            self._fields += 1
        table[field] = right_sized(value)
        # every field of every hash counts against the bound; the oldest hash's go first
        while self._fields > self.max_entries:
            oldest_name = next(iter(hashes))
            oldest = hashes[oldest_name]
            del oldest[next(iter(oldest))]
            self._fields -= 1
            self.evictions["backend_hash_fields"] += 1
            if not oldest:
                del hashes[oldest_name]

    async def hash_all(self, name: str) -> dict[str, bytes]:
        return dict(self._hashes.get(name, {}))

    async def hash_delete(self, name: str, field: str) -> None:
        table = self._hashes.get(name)
        if table is not None:
            if table.pop(field, None) is not None:
                self._fields -= 1
            if not table:
                del self._hashes[name]

    async def gcra(self, keys: list[str], intervals: list[float], tolerances: list[float]
                   ) -> tuple[bool, float, list[float]]:
        return self.gcra_now(keys, intervals, tolerances)

    def gcra_now(self, keys: list[str], intervals: list[float], tolerances: list[float]
                 ) -> tuple[bool, float, list[float]]:
        # synchronous: one step, exact however many requests are in flight. Plain loops:
        # this runs on every limited request, and one or two keys is the common case.
        now = self.clock()
        tats = self._tats
        current = []
        ok = True
        for i, key in enumerate(keys):
            cur = tats.get(key, now)
            if cur < now:
                cur = now
            current.append(cur)
            if cur + intervals[i] - now > tolerances[i] + 1e-9:
                ok = False
        if not ok:
            return False, now, current
        for i, key in enumerate(keys):
            current[i] += intervals[i]
            tats[key] = current[i]
            tats.move_to_end(key)
        if len(tats) > self.max_buckets:
            for _ in range(len(tats) - self.max_buckets):
                tats.popitem(last=False)  # the longest idle bucket, most likely full again
                self.evictions["rate_limit_buckets"] += 1
        return True, now, current

    async def event_publish(self, topics: list[str], payload: bytes, history: int,
                            max_age: float, channel: str) -> tuple[EventId, float]:
        self._seq += 1
        now = time.time()
        payload = right_sized(payload)  # kept by every topic it goes to
        for name in topics:
            topic = self._topics.pop(name, None) or _Topic()
            self._topics[name] = topic  # most recently used last
            events = topic.events
            events.append((self._seq, now, payload))
            self._history_bytes += len(payload)
            while len(events) > history or events[0][1] < now - max_age:
                lost = events.popleft()
                topic.lost = lost[0]
                self._history_bytes -= len(lost[2])
        while len(self._topics) > self.max_entries or (
                self._history_bytes > self.max_history_bytes and len(self._topics) > 1):
            _, gone = self._topics.popitem(last=False)
            self._history_bytes -= sum(len(e[2]) for e in gone.events)
            if gone.events:
                self._evicted_upto = max(self._evicted_upto, gone.events[-1][0])
            self.evictions["event_topics"] += 1
        return EventId(self._epoch, self._seq), now

    async def event_history(self, topic: str, after: EventId, max_age: float
                            ) -> tuple[list[tuple[EventId, bytes]], bool] | None:
        if after.epoch != self._epoch or after.seq > self._seq:
            return None
        kept = self._topics.get(topic)
        if kept is None:  # never published to; or dropped whole, which may have lost some
            return [], after.seq < self._evicted_upto
        cutoff = time.time() - max_age
        lost = kept.lost
        out = []
        for seq, ts, payload in kept.events:
            if seq <= after.seq:
                continue
            if ts < cutoff:
                lost = max(lost, seq)
                continue
            out.append((EventId(self._epoch, seq), payload))
        return out, lost > after.seq

    async def publish(self, channel: str, message: bytes) -> None:
        return None  # one instance: nobody else to tell

    async def listen(self, channel: str) -> AsyncIterator[bytes]:
        await asyncio.Event().wait()  # nothing ever arrives from other instances
        yield b""  # pragma: no cover

    def _set(self, key: str, value: bytes, ttl: float) -> None:
        self._data.pop(key, None)
        self._data[key] = (self.clock() + ttl, right_sized(value))
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
            self.evictions["backend_keys"] += 1
