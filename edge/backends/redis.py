"""State shared by every edge instance through one Redis, or one Redis Cluster.

The URL decides: `redis://`, `rediss://` (TLS) or `unix://` is one server; with
`redis+cluster://` or `rediss+cluster://` (`host:port[,host:port...]`, any of the cluster's
nodes) redis-py's RedisCluster finds the rest and routes each command to the node that holds
its keys. Both take an ACL user and password (`rediss://edge:secret@host:6379/0`) and redis-py's
query options (`?ssl_ca_certs=/etc/edge/ca.pem`); a cluster has database 0 only.

Keys, and why they are laid out so. A script must declare every key it touches in KEYS (a
cluster routes the call by them), and on a cluster those keys must all hash to one slot:
whatever stands between the first `{` and `}` of a key (its hash tag) decides its slot. One
Redis has no slots: there the keys are what they always were, untagged, so moving to this
version changes nothing in a running single-Redis deployment (no bucket or history starts
over) and costs nothing per request. On a cluster (`Backend.cluster`):

- Plain values (cache entries `edge:cache:…`, idempotency records, the purge hash): one key
  per command, no tag needed; the same names, spread over the whole cluster.
- Rate limits: `edge:rl:{<who>}<scope>|<parts>` (one Redis: `edge:rl:<scope>|<parts>`),
  tagged with the client the limit counts: its address, user, device, API key or app; for a
  limit keyed by `[ip, route]` still the address; a route's own budget only when the limit
  counts nothing else (edge/policies/ratelimit.py builds them). The limits of one request
  that count the same client (a route's per-IP limit, edge.yaml's per-IP defaults, a
  claimed device, which is counted within its address) share a slot, so they are charged
  all or nothing in one script, as on one Redis. Limits that count different things (the
  user and the route, say) can't share one: see "Rate limits on a cluster" below.
- Events (SSE): `edge:{ev}:ids` (the epoch and the one counter every topic's ids come from)
  and per topic `edge:{ev}:s:<topic>` (its history), `…:lost:<topic>` and `…:last:<topic>`
  (one Redis: `edge:ev:…`). One tag: an event goes to several topics' histories in one
  step with one id, so they all live in one slot — on one node, as all of them do on one
  Redis. Ids only grow and every instance sees events in id order because one script on one
  node issues them and PUBLISHes them; Redis Cluster broadcasts PUBLISH to every node. So
  the events' history and publishing don't spread over the cluster's nodes.

Rate limits, batched. Checks that arrive together ride in one script call (at most
GCRA_BATCH requests, decided one after another exactly as separate calls would be): on one
Redis, every queued check in one call whatever its keys, as before. On a cluster the batch is
split by slot — one script call per slot, all sent at once (one round trip, to every node
concurrently), at most GCRA_SLOTS slots per round so a flood can't exhaust a node's
connections. A flood from one client is one slot: it still batches fully.

Rate limits on a cluster. A request whose limits are all in one slot is decided exactly as
on one Redis. One whose limits span slots is checked in each slot's call, each part all or
nothing; when every part allows it, it is allowed and charged everywhere. When a part refuses
it, the parts that allowed it are refunded at once (a second small script per slot: each
key's TAT moves back by the interval it was charged) and the request is refused, with the
headers it would get on one Redis. So it never admits more than the configured rates; until
the refund lands (one round trip), a refused request still holds its place in the other
limits, where a concurrent request can find one fewer (it may be refused, never wrongly
admitted). If a node can't answer, the request fails with BackendError (the limiter degrades
as `on_backend_failure` says) and the other parts are refunded if their nodes can.

Subscriptions. Purges and events arrive on pub/sub channels (`edge:cache:purge`,
`edge:ev:live`). On a cluster the edge subscribes through a plain connection to one node (any
node hears every PUBLISH), and when that node goes away, through the next one it knows of.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote

import redis
import redis.asyncio as aioredis
from prometheus_async import aio
from prometheus_client import Counter, Histogram
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from . import CLUSTER_SCHEMES, BackendError, EventId

log = logging.getLogger("edge.redis")
# Requests must never hang on Redis: every call has a tight timeout.
SOCKET_TIMEOUT = 0.25
# A cluster call may follow a redirection or find a moved node (a retry after re-reading
# the cluster's layout), but not for longer than this in all.
CLUSTER_DEADLINE = 1.0
CLUSTER_RETRIES = 2
GCRA_BATCH = 256  # most rate-limit checks in one script call (one round of calls: a cluster)
GCRA_SLOTS = 32  # most slots one round of rate-limit checks goes to on a cluster
PREFIX = "edge:"
EVENTS = PREFIX + "ev:"  # every event key; on a cluster, one slot:
CLUSTER_EVENTS = PREFIX + "{ev}:"
T = TypeVar("T")
_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
try:  # who we are, for CLIENT SETINFO: found once here, not on every new connection
    from redis import DriverInfo

    _IDENTITY: dict[str, Any] = {"driver_info": DriverInfo(lib_version=redis.__version__)}
except ImportError:  # redis-py before 7.2
    _IDENTITY = {"lib_version": redis.__version__}


def cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """`redis+cluster://` or `rediss+cluster://[user:password@]host:port[,host:port...]
    [/0][?option=value...]`: the nodes named, and the connection options (user, password,
    TLS and query options, as redis-py reads them from a `redis://` URL) for every node."""
    scheme, _, rest = url.partition("://")
    if scheme + "://" not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL: {scheme}://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
              default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, port = item.strip(), "6379"
        if host.startswith("["):  # [IPv6]:port
            inner, _, after = host[1:].partition("]")
            host, port = inner, after[1:] if after.startswith(":") else port
        elif host.count(":") == 1:
            host, port = host.split(":")
        if not host or not port.isdigit():
            raise ValueError(f"a Redis Cluster URL names nodes as host:port, not {item!r}")
        nodes.append((unquote(host), int(port)))
    base = "rediss" if scheme.startswith("rediss") else "redis"
    options: dict[str, Any] = dict(parse_url(f"{base}://{userinfo}{at}localhost{tail}"))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("db", 0):
        raise ValueError("a Redis Cluster has database 0 only")
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return nodes, options


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
# One field of a hash, and the whole hash's expiry, in one step (a script rather than
# MULTI: redis-py's asyncio cluster client runs a transaction's commands in threads).
_HASH_SET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
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

# A cluster's rate-limit refund: a request one slot's limits allowed and another's refused
# gives back what it was charged here. Each key's TAT moves back by its interval (the same
# microseconds it moved forward by); one that is then behind now is a full bucket: gone.
# KEYS = the keys charged; ARGV = their intervals, in order (a key twice: charged twice).
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0') - tonumber(ARGV[i])
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX',
               math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
return #KEYS
"""

# Publish one event: the next id (the history's epoch and one counter for all topics, kept
# in one hash so they go together; the epoch is Redis's time when the hash is created, so a
# Redis that starts over empty begins a later one), each topic's stream trimmed to its count
# and age (remembering the newest id dropped), then the live message, all in one step so
# every instance sees events in id order. The id is the entry's id in every stream.
# KEYS = the counter, then per topic its stream, its newest dropped id and its newest id
# (all `{ev}`: one slot); ARGV = history, max_age_ms, channel, payload
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local history, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local keep = max_age * 4 + 86400000
redis.call('HSETNX', KEYS[1], 'epoch', string.format('%.0f', now))
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local id = redis.call('HGET', KEYS[1], 'epoch') .. '-' .. seq
for i = 2, #KEYS, 3 do
  local stream, lost, last = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  redis.call('XADD', stream, id, 'ts', now, 'p', ARGV[4])
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
  redis.call('SET', last, id, 'PX', keep)
end
redis.call('PUBLISH', ARGV[3], id .. '\\n' .. now .. '\\n' .. ARGV[4])
return {id, now}
"""
# A topic's history on a cluster (what one Redis answers with a pipeline): the epoch and
# counter, the entries after ARGV[1], the newest dropped id and the newest id.
# KEYS = the counter, the topic's stream, its lost marker, its last id
_READ_HISTORY = """
return {redis.call('HMGET', KEYS[1], 'epoch', 'seq'),
        redis.call('XRANGE', KEYS[2], ARGV[1], '+'),
        redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])}
"""
NO_EVENT = EventId(0, 0)


def _event_id(raw: bytes | None) -> EventId:
    """An id Redis keeps, or NO_EVENT for none (or one from before ids had an epoch)."""
    try:
        return EventId.parse(raw.decode()) if raw else NO_EVENT
    except ValueError:
        return NO_EVENT


def _stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop but is still running. Python
    3.11's asyncio.wait_for, which redis-py sends commands with, swallows a cancellation
    that arrives as the send completes; a subscription would then go on forever, and the
    edge's close with it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _micros(interval: float) -> int:
    """A rate-limit interval as the scripts take it (and a refund gives it back)."""
    return max(1, round(interval * 1e6))


class _Part(NamedTuple):
    """What one slot's script call said about one request on a cluster."""

    slot: int
    allowed: bool
    now: int  # that node's clock (µs)
    tats: dict[int, int]  # the request's key index → its TAT there (µs)


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, calls: RedisCalls | None = None) -> None:
        self.calls = calls or RedisCalls()
        self.cluster = url.startswith(CLUSTER_SCHEMES)
        self.events = CLUSTER_EVENTS if self.cluster else EVENTS
        timeouts: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT,
                                    "socket_connect_timeout": SOCKET_TIMEOUT,
                                    "health_check_interval": 10}
        self.client: Any  # aioredis.Redis, or RedisCluster: the same commands
        self.sub_client: aioredis.Redis | None = None
        if self.cluster:
            self._nodes, self._node_options = cluster_url(url)
            self.client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), CLUSTER_RETRIES),
                **{**timeouts, **_IDENTITY, **self._node_options})
        else:
            self.client = aioredis.Redis.from_url(url, **timeouts, **_IDENTITY)
            # Subscriptions sit idle for long stretches: their own client, no read timeout.
            self.sub_client = aioredis.Redis.from_url(
                url, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=30,
                **_IDENTITY)
        self._delete_if = self.client.register_script(_DELETE_IF)
        self._hash_set = self.client.register_script(_HASH_SET)
        self._gcra = self.client.register_script(_GCRA)
        self._refund = self.client.register_script(_REFUND)
        self._gcra_pending: list[Any] = []
        self._gcra_busy = False  # a script call is on its way
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._publish_event = self.client.register_script(_PUBLISH)
        self._read_history = self.client.register_script(_READ_HISTORY)

    async def ping(self) -> bool:
        try:
            if self.cluster:  # every primary: each holds a share of the state (not replicas)
                return bool(await self._bounded(
                    self.client.ping(target_nodes=RedisCluster.PRIMARIES)))
            return bool(await self.client.ping())
        except _ERRORS:
            return False

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):  # a rate-limit batch on its way: its checks fail
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_queued(BackendError("redis: the edge is closing"))
        await self.client.aclose()
        if self.sub_client is not None:
            await self.sub_client.aclose()

    def _fail_queued(self, error: BackendError) -> None:
        queued, self._gcra_pending = self._gcra_pending, []
        for *_, future in queued:
            if not future.done():
                future.set_exception(error)

    async def _call(self, op: str, awaitable: Any) -> Any:
        try:
            if self.cluster:
                awaitable = self._bounded(awaitable)
            return await self.calls.run(op, awaitable)
        except _ERRORS as e:
            raise BackendError(f"redis: {e or type(e).__name__}") from None

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        """A cluster call, redirections and retries included, within CLUSTER_DEADLINE.

        The cluster's layout is read (at first, and again after an error) before the call
        starts, not by the call itself: redis-py 8.1's asyncio cluster client, reading it
        from inside many concurrent calls, hands some of them a connection another one is
        closing (`'NoneType' object has no attribute 'writelines'`)."""
        async with asyncio.timeout(CLUSTER_DEADLINE):
            if getattr(self.client, "_initialize", False):
                try:
                    await self.client.initialize()
                except BaseException:
                    if isinstance(awaitable, Coroutine):
                        awaitable.close()  # never started: not an "un-awaited" warning
                    raise
            return await awaitable

    @staticmethod
    def _slot(key: str) -> int:
        return key_slot((PREFIX + key).encode())

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
        trip, one client-side overhead) for the lot — on a cluster, one per slot, sent
        together. One round is on its way at a time, so under load the checks arriving
        during a round trip ride together on the next one; a lone check goes at the end of
        this turn of the event loop."""
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
        if self.cluster:
            batch = self._take_by_slot()
        else:
            batch = self._gcra_pending[:GCRA_BATCH]
            del self._gcra_pending[:GCRA_BATCH]
        self._gcra_busy = True
        task = asyncio.ensure_future(self._gcra_send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take_by_slot(self) -> list[Any]:
        """The checks a cluster round takes: in order, up to GCRA_BATCH of them, going to
        at most GCRA_SLOTS slots (the first check always goes)."""
        slots: set[int] = set()
        n = 0
        for keys, *_ in self._gcra_pending:
            theirs = slots.union(map(self._slot, keys))
            if n and (n == GCRA_BATCH or len(theirs) > GCRA_SLOTS):
                break
            slots = theirs
            n += 1
        batch = self._gcra_pending[:n]
        del self._gcra_pending[:n]
        return batch

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
        if not self.cluster:
            for k, intervals, tolerances, _ in batch:
                keys += [PREFIX + key for key in k]
                args.append(len(k))
                for interval, tolerance in zip(intervals, tolerances, strict=True):
                    args += [max(1, round(interval * 1e6)), round(tolerance * 1e6)]
        try:
            if self.cluster:
                await self._gcra_cluster(batch)
                return
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

    async def _gcra_cluster(self, batch: list[Any]) -> None:
        """A round on a cluster: one script call per slot, all at once. A request whose
        limits span slots is allowed when every slot allows it; when one refuses, it is
        refunded where it was charged before it hears so (see the module's docstring)."""
        by_slot: dict[int, list[tuple[int, list[int]]]] = {}  # slot → (request, key indexes)
        for r, (k, *_) in enumerate(batch):
            mine: dict[int, list[int]] = {}
            for i, key in enumerate(k):
                mine.setdefault(self._slot(key), []).append(i)
            for slot, indexes in mine.items():
                by_slot.setdefault(slot, []).append((r, indexes))
        calls = []
        for requests in by_slot.values():
            keys: list[str] = []
            args: list[int] = [len(requests)]
            for r, indexes in requests:
                k, intervals, tolerances, _ = batch[r]
                args.append(len(indexes))
                for i in indexes:
                    keys.append(PREFIX + k[i])
                    args += [_micros(intervals[i]), round(tolerances[i] * 1e6)]
            calls.append(self._call("gcra", self._gcra(keys=keys, args=args)))
        outs = await asyncio.gather(*calls, return_exceptions=True)
        parts: list[list[_Part]] = [[] for _ in batch]
        errors: list[BackendError | None] = [None] * len(batch)
        for (slot, requests), out in zip(by_slot.items(), outs, strict=True):
            if isinstance(out, BaseException):
                if not isinstance(out, Exception):
                    raise out
                error = out if isinstance(out, BackendError) else BackendError(
                    f"redis: {out!r}")
                for r, _ in requests:
                    errors[r] = error
                continue
            now, j = int(out[0]), 1
            for r, indexes in requests:
                parts[r].append(_Part(slot, bool(out[j]), now, {
                    i: int(out[j + 1 + n]) for n, i in enumerate(indexes)}))
                j += 1 + len(indexes)
        refunds: dict[int, tuple[list[str], list[int]]] = {}
        results: list[tuple[bool, float, list[float]] | BackendError] = []
        for r, (k, intervals, _, _) in enumerate(batch):
            allowed = errors[r] is None and all(part.allowed for part in parts[r])
            if not allowed:  # what it was charged in the slots that allowed it goes back
                for part in parts[r]:
                    if part.allowed:
                        keys, micros = refunds.setdefault(part.slot, ([], []))
                        keys += [PREFIX + k[i] for i in part.tats]
                        micros += [_micros(intervals[i]) for i in part.tats]
            failure = errors[r]
            if failure is not None:
                results.append(failure)
                continue
            # every time as an offset from the clock of the node that holds the first key
            now = next((part.now for part in parts[r] if 0 in part.tats), 0)
            tats = [0.0] * len(k)
            for part in parts[r]:
                for i, tat in part.tats.items():
                    if part.allowed and not allowed:  # refunded: as it was before
                        tat -= _micros(intervals[i])
                    tats[i] = (tat - part.now + now) / 1e6
            results.append((allowed, now / 1e6, tats))
        if refunds:
            done = await asyncio.gather(*(
                self._call("gcra_refund", self._refund(keys=keys, args=micros))
                for keys, micros in refunds.values()), return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    log.warning("rate limits: a refused request's charge could not be given "
                                "back (%s); those limits refill on their own", outcome)
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BackendError):
                future.set_exception(result)
            else:
                future.set_result(result)
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:  # as on one Redis: the checks queued meanwhile fail with it
            self._fail_queued(failed)

    async def event_publish(self, topics: list[str], payload: bytes, history: int,
                            max_age: float, channel: str) -> tuple[EventId, float]:
        ev = self.events
        keys = [ev + "ids"]
        for topic in topics:
            keys += [ev + "s:" + topic, ev + "lost:" + topic, ev + "last:" + topic]
        out = await self._call("event_publish", self._publish_event(
            keys=keys, args=[history, int(max_age * 1000), PREFIX + channel, payload]))
        return EventId.parse(out[0].decode()), int(out[1]) / 1000

    async def event_history(self, topic: str, after: EventId, max_age: float
                            ) -> tuple[list[tuple[EventId, bytes]], bool] | None:
        ev = self.events
        keys = [ev + "ids", ev + "s:" + topic, ev + "lost:" + topic, ev + "last:" + topic]
        start = f"{after.epoch}-{after.seq + 1}"
        if self.cluster:  # one slot: one script (a cluster pipeline retries by reconnecting
            # the whole client), its stream entries as Redis gives them
            (epoch, seq), raw, lost_raw, last_raw = await self._call(
                "event_history", self._read_history(keys=keys, args=[start]))
            entries = [(entry_id, dict(zip(fields[::2], fields[1::2], strict=True)))
                       for entry_id, fields in raw]
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hmget(keys[0], ["epoch", "seq"])
                pipe.xrange(keys[1], min=start, max="+")
                pipe.get(keys[2])
                pipe.get(keys[3])
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
        await self._call("hash_set", self._hash_set(
            keys=[PREFIX + name], args=[field, value, max(1, int(ttl * 1000))]))

    async def hash_all(self, name: str) -> dict[str, bytes]:
        raw = await self._call("hash_all", self.client.hgetall(PREFIX + name))
        return {k.decode(): bytes(v) for k, v in raw.items()}

    async def hash_delete(self, name: str, field: str) -> None:
        await self._call("hash_delete", self.client.hdel(PREFIX + name, field))

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call("publish", self.client.publish(PREFIX + channel, message))

    def _subscriber(self, turn: int) -> aioredis.Redis:
        """Who to subscribe through: the client kept for it, or on a cluster a plain
        connection to one of its nodes (each hears every PUBLISH), the next one each turn."""
        if self.sub_client is not None:
            return self.sub_client
        known = [(node.host, node.port) for node in self.client.get_nodes()] or self._nodes
        host, port = known[turn % len(known)]
        # no retries against a node that is gone: the next one hears the same
        return aioredis.Redis(host=host, port=port, **{
            "socket_connect_timeout": SOCKET_TIMEOUT, "health_check_interval": 30,
            "retry": Retry(NoBackoff(), 0), **_IDENTITY, **self._node_options})

    async def listen(self, channel: str) -> AsyncIterator[bytes]:
        delay = 0.1
        broken = False
        turn = 0
        while True:
            client = self._subscriber(turn)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(PREFIX + channel)
                while True:
                    _stop_if_cancelled()
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
            except _ERRORS as e:
                _stop_if_cancelled()
                broken = True
                turn += 1
                log.warning("redis subscription to %s lost (%s); retrying in %.1fs", channel,
                            e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                try:
                    await pubsub.aclose()
                    if client is not self.sub_client:
                        await client.aclose()
                except _ERRORS:
                    pass
