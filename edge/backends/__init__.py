"""Shared-state backends: in memory (one instance, the default) or Redis (many instances).

Policies reach I/O only through these, so each runs unchanged on either backend. Every
operation is small and bounded; a backend that can't answer raises BackendError, and the
policy decides whether that fails open or closed.

Redis is one server (`redis://`, `rediss://` for TLS, `unix://`) or a Redis Cluster
(`redis+cluster://` or, over TLS, `rediss+cluster://`, naming one or more of its nodes:
`rediss+cluster://user:password@10.0.0.1:6379,10.0.0.2:6379`); either takes an ACL user
and password and redis-py's query options (`?ssl_ca_certs=/etc/ca.pem`). How keys are laid
out so that every script runs on one cluster slot: edge/backends/redis.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple, Protocol

_EVENT_ID = re.compile(r"(\d{1,15})-(\d{1,18})")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", *CLUSTER_SCHEMES)
"""The URLs open_backend takes (a config check can refuse any other)."""


class BackendError(Exception):
    """The shared state could not be read or written (Redis down or too slow)."""


class EventId(NamedTuple):
    """An event's id: the history it belongs to and its place there. `epoch` is the time
    (ms) the backend's history began — a Redis, or a process, that starts over empty begins
    a later one, as it can't go back to its counter — and `seq` the counter, one for all
    topics. Written `epoch-seq` (a Redis stream entry id, too), compared as a pair: ids
    only grow."""

    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        m = _EVENT_ID.fullmatch(text)
        if m is None:
            raise ValueError(f"not an event id: {text[:40]!r}")
        return cls(int(m[1]), int(m[2]))


class Backend(Protocol):
    name: str
    cluster: bool
    """Keys live in a Redis Cluster's slots: the keys of one script call need one hash tag
    (edge/backends/redis.py)."""

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...

    async def get(self, key: str, *, op: str = "get") -> bytes | None:
        """The value, or None when absent or expired. `op`: what the call is counted as
        in the metrics (Redis)."""
        ...

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent; True when this call set it."""
        ...

    async def put(self, key: str, value: bytes, ttl: float, *, op: str = "put") -> None: ...

    async def delete(self, key: str, only_if: bytes | None = None) -> None:
        """Remove the key (only while it still holds `only_if`, when given)."""
        ...

    async def hash_set(self, name: str, field: str, value: bytes, ttl: float) -> None:
        """Set one field of a small hash; the whole hash expires `ttl` after the last set."""
        ...

    async def hash_all(self, name: str) -> dict[str, bytes]: ...

    async def hash_delete(self, name: str, field: str) -> None: ...

    async def publish(self, channel: str, message: bytes) -> None:
        """Tell every instance (a no-op with one instance: there is nobody else)."""
        ...

    async def gcra(self, keys: list[str], intervals: list[float], tolerances: list[float]
                   ) -> tuple[bool, float, list[float]]:
        """One GCRA step for several keys at once, all or nothing: (allowed, now, the
        keys' theoretical arrival times after it), times in seconds on the backend's
        clock. Charged only when every key allows it."""
        ...

    async def event_publish(self, topics: list[str], payload: bytes, history: int,
                            max_age: float, channel: str) -> tuple[EventId, float]:
        """Give an event the next id, keep it in each topic's history (at most `history`
        events, none older than `max_age`), tell other instances on `channel` (as
        `id\nts\npayload`, in id order); returns (id, time)."""
        ...

    async def event_history(self, topic: str, after: EventId, max_age: float
                            ) -> tuple[list[tuple[EventId, bytes]], bool] | None:
        """A topic's kept events after id `after`, in order, and whether some after it
        are no longer kept (the client must refresh). None when `after` is no id of this
        history: from before it began, or ahead of anything it issued."""
        ...

    def listen(self, channel: str) -> AsyncIterator[bytes]:
        """Messages other instances publish, until cancelled (reconnecting as needed). An
        empty one when a broken subscription is back: what was published meanwhile never
        came."""
        ...


def redacted(url: str) -> str:
    """A Redis URL without its credentials or query (which may name key files): scheme,
    hosts (all of a cluster's), port and database, to show in logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(unparseable URL)"
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    rest = rest[:end]
    netloc, slash, path = rest.partition("/")
    hosts = netloc.rpartition("@")[2]
    return f"{scheme}://{hosts}{slash}{path}"


def url_problem(url: str) -> str | None:
    """Why open_backend can't use this Redis URL (for a config check to say), or None."""
    if not url.startswith(REDIS_SCHEMES):
        scheme = url.partition("://")[0] if "://" in url else "no scheme"
        return (f"not a Redis URL ({scheme[:20]}); use redis://, rediss://, unix://, "
                "redis+cluster:// or rediss+cluster://")
    from redis.asyncio.connection import parse_url

    from .redis import cluster_url

    try:
        if url.startswith(CLUSTER_SCHEMES):
            cluster_url(url)
        else:
            parse_url(url)
    except ValueError as e:
        return f"not a usable Redis URL: {e}"
    return None


def open_backend(redis_url: str | None, max_entries: int = 100_000,
                 calls: Any = None, clock: Callable[[], float] = time.monotonic) -> Backend:
    """Redis when there is a URL — one server or, for `redis+cluster://` and
    `rediss+cluster://`, a cluster — (its calls timed by `calls`, a redis.RedisCalls; its
    TTLs and rate limits on Redis's clock), else this process's memory (on `clock`)."""
    if redis_url:
        from .redis import RedisBackend

        return RedisBackend(redis_url, calls)
    from .memory import MemoryBackend

    return MemoryBackend(max_entries, clock)
