"""State shared by every edge instance through one Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from prometheus_async import aio
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from . import BackendError, EventId

log = logging.getLogger("edge.redis")
# Requests must never hang on Redis: every call has a tight timeout.
SOCKET_TIMEOUT = 0.25
GCRA_BATCH = 256  # most rate-limit checks in one script call
PREFIX = "edge:"
T = TypeVar("T")
try:  # who we are, for CLIENT SETINFO: found once here, not on every new connection
    from redis import DriverInfo

    _IDENTITY: dict[str, Any] = {"driver_info": DriverInfo(lib_version=redis.__version__)}
except ImportError:  # redis-py before 7.2
    _IDENTITY = {"lib_version": redis.__version__}


class RedisCalls:
    """Every Redis call timed by operation (prometheus-async's `aio.time` into
    `edge_redis_duration_seconds{op}`), and the ones that failed counted
    (`edge_redis_errors_total{op}`). Without metrics, calls just run."""

    def __init__(self, seconds: Histogram | None = None, errors: Counter | None = None
                 ) -> None:
        self.seconds, self.errors = seconds, errors

    async def run(self, op: str, awaitable: Awaitable[T]) -> T:
        if self.seconds is None:
            return await awaitable
        try:
            result: T = await aio.time(self.seconds.labels(op), awaitable)
            return result
        except Exception:
            if self.errors is not None:
                self.errors.labels(op).inc()
            raise
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# GCRA for a batch of requests, each for several keys, all or nothing per request, on
# Redis's clock (microseconds). Requests that arrive together share one round trip; they
# are decided one after another, so a batch is exactly the same as separate calls. A key
# that several requests of the batch share (a device's burst, a per-IP limit) is read once
# and written once, with its last TAT and the longest expiry it needs.
# ARGV = [requests, then per request: nkeys, then per key: interval, tolerance]
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {now}
local tats, touched = {}, {}
local k, a = 1, 2
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local cur, new = {}, {}
  local ok = 1
  for i = 1, n do
    local key = KEYS[k + i - 1]
    local interval, tolerance = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    a = a + 2
    local tat = tats[key]
    if tat == nil then
      tat = tonumber(redis.call('GET', key) or '0')
      tats[key] = tat
    end
    if tat < now then tat = now end
    cur[i] = tat
    new[i] = tat + interval
    if new[i] - now > tolerance then ok = 0 end
  end
  out[#out + 1] = ok
  for i = 1, n do
    if ok == 1 then
      local key = KEYS[k + i - 1]
      tats[key] = new[i]
      touched[key] = true
      out[#out + 1] = new[i]
    else
      out[#out + 1] = cur[i]
    end
  end
  k = k + n
end
for key in pairs(touched) do
  redis.call('SET', key, string.format('%.0f', tats[key]), 'PX',
             math.ceil((tats[key] - now) / 1000) + 1000)
end
return out
"""

# Publish one event: the next id (the history's epoch and one counter for all topics, kept
# in one hash so they go together; the epoch is Redis's time when the hash is created, so a
# Redis that starts over empty begins a later one), each topic's stream trimmed to its count
# and age (remembering the newest id dropped), then the live message, all in one step so
# every instance sees events in id order. The id is the entry's id in every stream.
# KEYS[1] = the counter; ARGV = prefix, history, max_age_ms, channel, payload, topics...
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, history, max_age = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = max_age * 4 + 86400000
redis.call('HSETNX', KEYS[1], 'epoch', string.format('%.0f', now))
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local id = redis.call('HGET', KEYS[1], 'epoch') .. '-' .. seq
for i = 6, #ARGV do
  local stream = prefix .. 'ev:s:' .. ARGV[i]
  local lost = prefix .. 'ev:lost:' .. ARGV[i]
  redis.call('XADD', stream, id, 'ts', now, 'p', ARGV[5])
  local n = redis.call('XLEN', stream)
  local dropped = nil
  if n > history then
    local old = redis.call('XRANGE', stream, '-', '+', 'COUNT', n - history)
    dropped = old[#old][1]
    redis.call('XTRIM', stream, 'MAXLEN', history)
  end
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
  for _, e in ipairs(oldest) do
    if tonumber(e[2][2]) >= now - max_age then break end
    dropped = e[1]
  end
  if dropped then
    local d_epoch, d_seq = string.match(dropped, '^(%d+)-(%d+)$')
    redis.call('XTRIM', stream, 'MINID', d_epoch .. '-' .. (tonumber(d_seq) + 1))
    redis.call('SET', lost, dropped, 'PX', keep)
  end
  redis.call('PEXPIRE', stream, max_age + 1000)
  redis.call('SET', prefix .. 'ev:last:' .. ARGV[i], id, 'PX', keep)
end
redis.call('PUBLISH', prefix .. ARGV[4], id .. '\\n' .. now .. '\\n' .. ARGV[5])
return {id, now}
"""
NO_EVENT = EventId(0, 0)


def _event_id(raw: bytes | None) -> EventId:
    """An id Redis keeps, or NO_EVENT for none (or one from before ids had an epoch)."""
    try:
        return EventId.parse(raw.decode()) if raw else NO_EVENT
    except ValueError:
        return NO_EVENT


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, calls: RedisCalls | None = None) -> None:
        self.calls = calls or RedisCalls()
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=10, **_IDENTITY)
        self._delete_if = self.client.register_script(_DELETE_IF)
        self._gcra = self.client.register_script(_GCRA)
        self._gcra_pending: list[Any] = []
        self._gcra_busy = False  # a script call is on its way
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._publish_event = self.client.register_script(_PUBLISH)
        # Subscriptions sit idle for long stretches: their own client, no read timeout.
        self.sub_client = aioredis.Redis.from_url(
            url, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=30, **_IDENTITY)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):  # a rate-limit batch on its way: its checks fail
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_queued(BackendError("redis: the edge is closing"))
        await self.client.aclose()
        await self.sub_client.aclose()

    def _fail_queued(self, error: BackendError) -> None:
        queued, self._gcra_pending = self._gcra_pending, []
        for *_, future in queued:
            if not future.done():
                future.set_exception(error)

    async def _call(self, op: str, awaitable: Any) -> Any:
        try:
            return await self.calls.run(op, awaitable)
        except (RedisError, OSError, TimeoutError) as e:
            raise BackendError(f"redis: {e}") from None

    async def get(self, key: str, *, op: str = "get") -> bytes | None:
        value = await self._call(op, self.client.get(PREFIX + key))
        return bytes(value) if value is not None else None

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(await self._call("add", self.client.set(PREFIX + key, value,
                                                     px=max(1, int(ttl * 1000)), nx=True)))

    async def put(self, key: str, value: bytes, ttl: float, *, op: str = "put") -> None:
        await self._call(op, self.client.set(PREFIX + key, value, px=max(1, int(ttl * 1000))))

    async def delete(self, key: str, only_if: bytes | None = None) -> None:
        if only_if is None:
            await self._call("delete", self.client.delete(PREFIX + key))
        else:
            await self._call("delete", self._delete_if(keys=[PREFIX + key], args=[only_if]))

    async def gcra(self, keys: list[str], intervals: list[float], tolerances: list[float]
                   ) -> tuple[bool, float, list[float]]:
        """Queued, and sent with every other check queued by then: one script call (one round
        trip, one client-side overhead) for the lot. One call is on its way at a time, so
        under load the checks arriving during a round trip ride together on the next one;
        a lone check goes at the end of this turn of the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, float, list[float]]] = loop.create_future()
        self._gcra_pending.append((keys, intervals, tolerances, future))
        if len(self._gcra_pending) == 1 and not self._gcra_busy:
            loop.call_soon(self._gcra_flush)
        return await future

    def _gcra_flush(self) -> None:
        if self._closed:
            self._fail_queued(BackendError("redis: the edge is closing"))
            return
        if self._gcra_busy or not self._gcra_pending:
            return
        batch = self._gcra_pending[:GCRA_BATCH]
        del self._gcra_pending[:GCRA_BATCH]
        self._gcra_busy = True
        task = asyncio.ensure_future(self._gcra_send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _gcra_send(self, batch: list[Any]) -> None:
        try:
            await self._gcra_call(batch)
        finally:
            self._gcra_busy = False
            if self._gcra_pending:
                self._gcra_flush()

    async def _gcra_call(self, batch: list[Any]) -> None:
        keys: list[str] = []
        args: list[int] = [len(batch)]
        for k, intervals, tolerances, _ in batch:
            keys += [PREFIX + key for key in k]
            args.append(len(k))
            for interval, tolerance in zip(intervals, tolerances, strict=True):
                args += [max(1, round(interval * 1e6)), round(tolerance * 1e6)]
        try:
            out = await self._call("gcra", self._gcra(keys=keys, args=args))
        except BaseException as e:  # nobody may wait forever, even when the call is cancelled
            error = e if isinstance(e, BackendError) else BackendError(f"redis: {e!r}")
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
            # the checks queued meanwhile fail with it rather than wait for another timeout
            self._fail_queued(error)
            if not isinstance(e, Exception):
                raise
            return
        now = int(out[0]) / 1e6
        i = 1
        for k, _, _, future in batch:
            n = len(k)
            if not future.done():
                future.set_result((bool(out[i]), now, [int(v) / 1e6 for v in out[i + 1:i + 1 + n]]))
            i += 1 + n

    async def event_publish(self, topics: list[str], payload: bytes, history: int,
                            max_age: float, channel: str) -> tuple[EventId, float]:
        out = await self._call("event_publish", self._publish_event(
            keys=[PREFIX + "ev:ids"],
            args=[PREFIX, history, int(max_age * 1000), channel, payload, *topics]))
        return EventId.parse(out[0].decode()), int(out[1]) / 1000

    async def event_history(self, topic: str, after: EventId, max_age: float
                            ) -> tuple[list[tuple[EventId, bytes]], bool] | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(PREFIX + "ev:ids", ["epoch", "seq"])
            pipe.xrange(PREFIX + "ev:s:" + topic, min=f"{after.epoch}-{after.seq + 1}",
                        max="+")
            pipe.get(PREFIX + "ev:lost:" + topic)
            pipe.get(PREFIX + "ev:last:" + topic)
            (epoch, seq), entries, lost_raw, last_raw = await self._call("event_history",
                                                                         pipe.execute())
        if epoch is None or int(epoch) != after.epoch or int(seq) < after.seq:
            return None
        cutoff = time.time() - max_age
        lost = _event_id(lost_raw)
        out = []
        for entry_id, fields in entries:
            event_id = _event_id(entry_id)
            if float(fields[b"ts"]) / 1000 < cutoff:
                lost = max(lost, event_id)
                continue
            out.append((event_id, bytes(fields[b"p"])))
        last = _event_id(last_raw)
        if not out and not entries and last > after:
            lost = max(lost, last)  # the whole history aged out
        return out, lost > after

    async def hash_set(self, name: str, field: str, value: bytes, ttl: float) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(PREFIX + name, field, value)
            pipe.pexpire(PREFIX + name, max(1, int(ttl * 1000)))
            await self._call("hash_set", pipe.execute())

    async def hash_all(self, name: str) -> dict[str, bytes]:
        raw = await self._call("hash_all", self.client.hgetall(PREFIX + name))
        return {k.decode(): bytes(v) for k, v in raw.items()}

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call("publish", self.client.publish(PREFIX + channel, message))

    async def listen(self, channel: str) -> AsyncIterator[bytes]:
        delay = 0.1
        broken = False
        while True:
            pubsub = self.sub_client.pubsub()
            try:
                await pubsub.subscribe(PREFIX + channel)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "message":
                        yield bytes(msg["data"])
                    elif msg["type"] == "subscribe":  # confirmed: from now on nothing is missed
                        delay = 0.1
                        if broken:
                            broken = False
                            yield b""
            except (RedisError, OSError, TimeoutError) as e:
                broken = True
                log.warning("redis subscription to %s lost (%s); retrying in %.1fs", channel,
                            e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError, TimeoutError):
                    pass
