"""Every in-memory store reports its size against its bound (`edge_store_*` on /metrics),
and holds to the bound when filled past it, counting what it drops."""

from __future__ import annotations

import asyncio
import re
import time
import tracemalloc
from typing import Any

import jwt
import orjson

from edge.backends.memory import MemoryBackend
from edge.backends.tiers import LruBytesCache
from edge.caching import Ready, ReadyAnswers
from edge.config import CachePolicy, CacheSettings, Devices, Jwt
from edge.context import DeviceClassifier
from edge.policies.auth import Verifier
from edge.policies.cache import RouteCache

from .conftest import JWT_SECRET, bearer, catch_all, services_yaml

STORES = {"cache_memory", "ready_answers", "purged_tags", "backend_keys", "backend_hash_fields",
          "rate_limit_buckets", "event_topics", "event_history", "device_profiles",
          "verified_tokens", "image_masters", "image_sources_seen", "event_streams",
          "push_queue"}


def series(text: str, name: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(
        rf'^{name}{{store="([a-z_]+)"}} (\S+)$', text, re.M)}


async def test_metrics_show_every_store_and_its_bound(make_edge: Any, upstream: Any) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, headers={"Cache-Control": "max-age=60"})

    url = await upstream(catch_all(ok))
    extra = """
auth:
  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}
events:
  topics: [{topic: public, public: true}]
  max_connections: 50
cache: {max_memory: 2MB}
"""
    edge = await make_edge(services_yaml({"up": url}, extra), {"r.yaml": """
routes:
  - route: GET /x
    source: {service: up, path: /x}
    auth: {jwt: optional}
    cache: {ttl: 60s, scope: public}
"""}, env={"EDGE_JWT_SECRET": JWT_SECRET})
    for _ in range(3):
        assert (await edge.get("/x", headers=bearer("1001"))).status == 200
        assert (await edge.get("/x")).status == 200
    text = await (await edge.get("/metrics")).text()
    entries = series(text, "edge_store_entries")
    assert set(entries) == STORES
    assert entries["verified_tokens"] == 1 and entries["device_profiles"] >= 1
    assert entries["cache_memory"] >= 1
    bounds = series(text, "edge_store_max_entries")
    assert bounds["verified_tokens"] == 10_000 and bounds["event_streams"] == 50
    assert bounds["backend_keys"] == 100_000
    assert series(text, "edge_store_max_bytes")["cache_memory"] == 2_000_000
    assert set(series(text, "edge_store_evictions_total")) == STORES
    heap = {m[1]: float(m[2]) for m in re.finditer(
        r'^edge_heap_bytes{kind="([a-z_]+)"} (\S+)$', text, re.M)}
    assert set(heap) == {"in_use", "free", "mapped"} and heap["in_use"] > 1_000_000


class Sized:
    def __init__(self, size: int) -> None:
        self.size = size


def test_the_cache_memory_tier_holds_to_its_bytes() -> None:
    tier = LruBytesCache(1000)
    for n in range(100):
        tier.store(f"k{n:03d}", Sized(46))  # 50 bytes with its key
    size = tier.size()
    assert size.bytes is not None and size.bytes <= 1000 == size.max_bytes
    assert size.entries == 20 and size.evictions == 80
    assert tier.lookup("k099") is not None and tier.lookup("k000") is None


async def test_the_memory_backend_holds_every_table_to_its_bound() -> None:
    backend = MemoryBackend(max_entries=10)
    backend.max_buckets = 10
    for n in range(30):
        await backend.put(f"idem:{n}", b"x" * 10, 60)
        await backend.hash_set(f"registrations:{n % 3}", f"device-{n}", b"r", 60)
        backend.gcra_now([f"bucket:{n}"], [1.0], [5.0])
        await backend.event_publish([f"topic:{n}"], b"event", 100, 3600, "events")
    sizes = dict(backend.sizes())
    for name in ("backend_keys", "backend_hash_fields", "rate_limit_buckets",
                 "event_topics"):
        assert sizes[name].entries == 10 == sizes[name].max_entries, name
        assert sizes[name].evictions == 20, name
    assert sizes["backend_keys"].bytes == 100
    assert sizes["event_history"].entries == 10  # one event in each topic kept
    assert await backend.get("idem:29") is not None and await backend.get("idem:0") is None
    assert set(await backend.hash_all("registrations:2")) >= {"device-29"}
    for n in range(30):  # deleting every field leaves nothing behind
        await backend.hash_delete(f"registrations:{n % 3}", f"device-{n}")
    assert dict(backend.sizes())["backend_hash_fields"].entries == 0
    assert not backend._hashes  # no empty tables either


def _ready(n: int) -> Ready:
    return Ready(f"e{n}", b"x" * 100, {}, {}, 0.0, 0.0, (), None, "phone", "fast", 1)


def test_fast_lane_answers_hold_to_their_bound() -> None:
    ready = ReadyAnswers(max_bytes=10_000)
    ready.max = 5
    for n in range(12):
        ready.put(("GET", f"/{n}"), _ready(n))
        ready.put(("HEAD", f"/{n}"), ready.answers[("GET", f"/{n}")])
    size = ready.size()
    assert size.entries <= 5 == size.max_entries and size.evictions > 0
    assert size.bytes == 100 * len([s for s in ready.answers if s[0] == "GET"])
    by_bytes = ReadyAnswers(max_bytes=450)  # four bodies of 100 fit, not five
    for n in range(12):
        by_bytes.put(("GET", f"/{n}"), _ready(n))
        assert by_bytes.bytes <= 450
    by_bytes.drop(("GET", "/11"))
    assert by_bytes.size().bytes == 100 * len(by_bytes.answers)


def test_device_profiles_hold_to_their_bound() -> None:
    classify = DeviceClassifier(Devices())
    classify.max_profiles = 8
    for n in range(20):
        classify.profile({"User-Agent": f"App/{n} (iPhone)"})
    size = classify.size()
    assert size.entries <= 8 == size.max_entries and size.evictions == 16


def test_verified_tokens_hold_to_their_bound(tmp_path: Any) -> None:
    verifier = Verifier(Jwt(algorithms=["HS256"], secret_env="S", required_claims=["exp"]),
                        tmp_path, {"S": JWT_SECRET})
    verifier.max_verified = 5
    for n in range(12):
        token = jwt.encode({"sub": str(n), "exp": int(time.time()) + 60}, JWT_SECRET,
                           algorithm="HS256")
        assert verifier.verify(token)["sub"] == str(n)
    size = verifier.size()
    assert size.entries <= 5 == size.max_entries and size.evictions == 10


async def test_purge_times_hold_to_their_bound_and_never_let_a_purged_entry_back() -> None:
    from edge.backends.tiers import Invalidations

    now = [1000.0]
    purges = Invalidations(MemoryBackend(), clock=lambda: now[0])
    purges.max_tags = 10
    for n in range(30):
        now[0] += 1
        await purges.purge([f"member:{n}"])
    size = purges.size()
    assert size.entries <= 10 == size.max_entries and size.evictions >= 20
    # member:0 was purged at 1001 and its time forgotten: an entry stored before it still
    # fails, through the floor; one stored after every purge is good
    assert not purges.valid(("member:0",), 1000.5)
    assert purges.valid(("member:0",), now[0] + 1)
    assert not purges.valid(("member:29",), now[0] - 0.5)  # a purge still kept


async def test_event_history_holds_to_its_bytes_and_says_what_it_lost() -> None:
    from edge.backends import EventId

    backend = MemoryBackend()
    backend.max_history_bytes = 1000
    first, _ = await backend.event_publish(["member:1"], b"x" * 100, 1000, 3600, "ev")
    for n in range(2, 40):
        await backend.event_publish([f"member:{n}"], b"x" * 100, 1000, 3600, "ev")
    size = dict(backend.sizes())["event_history"]
    assert size.bytes is not None and size.bytes <= 1000 == size.max_bytes
    # member:1's history went whole: a client that saw nothing since says so, and is told
    # it missed something (it refreshes), not that nothing happened
    history = await backend.event_history("member:1", EventId(first.epoch, first.seq - 1),
                                          3600)
    assert history == ([], True)
    # a topic still kept replays as before
    last = await backend.event_history("member:39", EventId(first.epoch, 0), 3600)
    assert last is not None and len(last[0]) == 1 and last[1] is False


async def test_a_reload_lets_the_old_generation_go(make_edge: Any, upstream: Any,
                                                   tmp_path: Any) -> None:
    """Found by bench/soak.py: the fast lane's answers held their routes, and with them
    every old config generation (its verified-token cache, device profiles, sessions)."""
    import gc

    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    url = await upstream(catch_all(ok))
    routes = {"r.yaml": """
routes:
  - route: GET /generations-test
    source: {service: up, path: /x}
    auth: {jwt: "off"}
    shape: {}
    cache: {ttl: 60s, scope: public}
"""}
    edge = await make_edge(services_yaml({"up": url}), routes)
    for _ in range(2):
        resp = await edge.get("/generations-test", headers={"Accept-Encoding": "identity"})
        assert resp.status == 200
    state = edge.edge.state
    assert state.cache.ready.answers

    def live() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o).__name__ == "CompiledRoute"
                   and getattr(o, "name", "") == "GET /generations-test")

    assert live() == 1
    assert await state.reloader.reload()
    assert live() == 1  # the new generation's; the old one (its auth, tokens...) is gone


def test_stores_keep_bytes_at_their_length() -> None:
    """orjson and zstandard hand back bytes in worst-case buffers (a 60-byte orjson
    payload holds 4 KB): what a store keeps is copied to its own length, so the bytes a
    gauge counts are the bytes it holds (bench/soak.py found the event history at ~4 KB
    an event while its gauge said 60 B)."""
    backend = MemoryBackend(max_entries=10_000)
    route = RouteCache(CachePolicy(ttl="60s"), "r", False, CacheSettings())
    n = 1000

    async def fill() -> list[Any]:
        entries = []
        for i in range(n):
            doc = {"topics": [f"member:{i}"], "event": "soak", "data": {"n": i}}
            await backend.event_publish([f"member:{i}"], orjson.dumps(doc), 1000, 3600, "c")
            await backend.put(f"idem:{i}", orjson.dumps(doc), 60)
            await backend.hash_set(f"push:{i}", "device", orjson.dumps(doc), 60)
            entry = route.new_entry(200, [], orjson.dumps(doc), "json", time.time(), (),
                                    None, None, None)
            entries.append(entry)
        return entries

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        entries = asyncio.run(fill())
        per_item = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    # a topic with its one event, a key, a hash with its field and an entry: ~3 KB all
    # told when each holds its 60 bytes, over 16 KB with orjson's buffers kept
    assert per_item < 6000, per_item
    assert len(entries) == n
