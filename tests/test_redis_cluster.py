"""Redis Cluster and TLS: the URLs, rate-limit checks batched per slot, limits in different
slots (refunded when one refuses, and what that changes), a node going away, and a
TLS-only cluster with an ACL user.

The Redis-backed tests elsewhere (limits, cache, purges, events, idempotency) run on one
Redis and on the session's cluster through the `redis_url` fixture; these are about what
only a cluster has."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram
from redis.crc import key_slot

from edge.backends import BackendError, EventId, redacted, url_problem
from edge.backends.redis import (
    CLUSTER_DEADLINE,
    GCRA_BATCH,
    PREFIX,
    RedisBackend,
    RedisCalls,
    cluster_url,
)

from .conftest import _self_signed, headers_echo_app, services_yaml
from .redis_cluster import Cluster, running
from .test_auth import AUTH, bearer, token
from .test_ratelimit import state

HOUR = 3600.0


def is_cluster(url: str) -> bool:
    return "+cluster://" in url


def slot(key: str) -> int:
    return key_slot((PREFIX + key).encode())


def timed() -> tuple[RedisCalls, CollectorRegistry]:
    """RedisCalls counting into a registry of the test's own."""
    registry = CollectorRegistry()
    return RedisCalls(Histogram("t_redis_seconds", "", ["op"], registry=registry)), registry


def calls(registry: CollectorRegistry, op: str) -> int:
    return int(registry.get_sample_value("t_redis_seconds_count", {"op": op}) or 0)


async def keys_like(client: Any, pattern: str) -> list[str]:
    """The keys matching `pattern`, on one Redis or on every primary of a cluster."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        found = await client.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = await client.keys(pattern)
    return sorted(k.decode() for k in found)


def two_slots() -> tuple[str, str]:
    """Two rate-limit keys of this test's own, in different cluster slots."""
    run = uuid.uuid4().hex[:8]
    a = f"rl:{{a-{run}}}x"
    b = next(k for k in (f"rl:{{b{i}-{run}}}y" for i in range(100)) if slot(k) != slot(a))
    return a, b


# -- URLs

@pytest.mark.parametrize("url, nodes, options", [
    ("redis+cluster://10.0.0.1:7000", [("10.0.0.1", 7000)], {}),
    ("redis+cluster://a:7000,b:7001,c/0", [("a", 7000), ("b", 7001), ("c", 6379)], {}),
    ("rediss+cluster://edge:s%40cret@[::1]:7000,h:7001?ssl_ca_certs=/ca.pem",
     [("::1", 7000), ("h", 7001)],
     {"username": "edge", "password": "s@cret", "ssl": True, "ssl_ca_certs": "/ca.pem"}),
    ("redis+cluster://:pw@h:1?socket_timeout=0.5", [("h", 1)],
     {"password": "pw", "socket_timeout": 0.5}),
])
def test_cluster_urls(url: str, nodes: list[tuple[str, int]], options: dict[str, Any]
                      ) -> None:
    assert cluster_url(url) == (nodes, options)
    assert url_problem(url) is None


@pytest.mark.parametrize("url, problem", [
    ("redis+cluster://h:1/2", "database 0 only"),
    ("redis+cluster://h:1,h:port", "host:port, not 'h:port'"),
    ("cluster://h:1", "not a Redis URL (cluster)"),
    ("redis://h:1/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
])
def test_bad_urls_say_why(url: str, problem: str) -> None:
    assert problem in (url_problem(url) or "")


def test_urls_shown_without_credentials() -> None:
    assert redacted("rediss+cluster://edge:pw@a:1,b:2/0?ssl_keyfile=/k") == \
        "rediss+cluster://a:1,b:2/0"
    assert redacted("rediss://:pw@h:6380/3") == "rediss://h:6380/3"


def test_a_rediss_url_makes_tls_connections() -> None:
    """What the TLS tests below (a real TLS cluster) and conftest.private_redis (one
    server) exercise end to end, as redis-py is told it."""
    from redis.asyncio.connection import SSLConnection

    one = RedisBackend("rediss://edge:pw@127.0.0.1:1/2?ssl_ca_certs=/ca.pem")
    pool = one.client.connection_pool
    assert pool.connection_class is SSLConnection
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["ssl_ca_certs"]) == (
        "edge", "/ca.pem")
    cluster = RedisBackend("rediss+cluster://edge:pw@127.0.0.1:1?ssl_ca_certs=/ca.pem")
    [node] = cluster.client.nodes_manager.startup_nodes.values()
    assert node.connection_class is SSLConnection
    assert node.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    assert node.connection_kwargs["username"] == "edge"


# -- rate limits

async def test_checks_ride_together_per_slot(redis_url: str) -> None:
    """Checks queued together on keys of one slot go in one script call (at most
    GCRA_BATCH a call), decided as if one by one: on one Redis and on a cluster alike."""
    recorder, registry = timed()
    backend = RedisBackend(redis_url, recorder)
    run = uuid.uuid4().hex[:8]
    shared, own = f"rl:{{c-{run}}}shared", f"rl:{{c-{run}}}own"
    n = GCRA_BATCH + 44
    try:
        got = await asyncio.gather(*(
            backend.gcra([shared, own] if i % 10 == 0 else [shared],
                         [HOUR / 10] * (2 if i % 10 == 0 else 1),
                         [HOUR / 10 * (50 if j == 0 else 3)
                          for j in range(2 if i % 10 == 0 else 1)])
            for i in range(n)))
        allowed = [i for i, (ok, _, _) in enumerate(got) if ok]
        assert allowed == [i for i in range(n) if i % 10 or i in (0, 10, 20)][:50]
        assert calls(registry, "gcra") == 2
    finally:
        await backend.close()


async def test_checks_on_many_slots_go_one_call_per_slot(redis_url: str) -> None:
    recorder, registry = timed()
    backend = RedisBackend(redis_url, recorder)
    run = uuid.uuid4().hex[:8]
    keys = [f"rl:{{ip=10.1.{i}.1-{run}}}x" for i in range(100)]
    try:
        twice = [k for k in keys for _ in range(2)]
        got = await asyncio.gather(*(backend.gcra([k], [HOUR], [HOUR]) for k in twice))
        assert [ok for ok, _, _ in got] == [True, False] * 100
        # one Redis: one call for all; a cluster: one per slot (in rounds of at most
        # GCRA_SLOTS slots, sent together)
        expected = len({slot(k) for k in keys}) if is_cluster(redis_url) else 1
        assert calls(registry, "gcra") == expected
    finally:
        await backend.close()


async def test_a_request_refused_by_one_limit_is_not_charged_to_another(redis_url: str
                                                                        ) -> None:
    """Two limits in two slots (on a cluster): the request one refuses costs the other
    nothing, once its refund is in — and it hears the headers one Redis would give."""
    recorder, registry = timed()
    backend = RedisBackend(redis_url, recorder)
    a, b = two_slots()  # a: a burst of 1; b: a burst of 5
    try:
        assert (await backend.gcra([a, b], [HOUR, HOUR], [HOUR, 5 * HOUR]))[0]
        ok, now, tats = await backend.gcra([a, b], [HOUR, HOUR], [HOUR, 5 * HOUR])
        assert not ok
        assert tats[0] - now == pytest.approx(HOUR, abs=1)  # a: full
        assert tats[1] - now == pytest.approx(HOUR, abs=1)  # b: as before: one charge
        alone = [(await backend.gcra([b], [HOUR], [5 * HOUR]))[0] for _ in range(5)]
        assert alone == [True] * 4 + [False]  # b was charged once, not twice
        assert calls(registry, "gcra_refund") == (1 if is_cluster(redis_url) else 0)
    finally:
        await backend.close()


async def test_limits_in_two_slots_never_admit_more_than_the_tighter(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    a, b = two_slots()  # a: a burst of 50; b: of 30
    try:
        got = await asyncio.gather(*(backend.gcra([a, b], [HOUR, HOUR], [50 * HOUR, 30 * HOUR])
                                     for _ in range(100)))
        assert sum(ok for ok, _, _ in got) == 30
        # a was charged for the 30 admitted only: 20 more fit
        more = await asyncio.gather(*(backend.gcra([a], [HOUR], [50 * HOUR])
                                      for _ in range(25)))
        assert sum(ok for ok, _, _ in more) == 20
    finally:
        await backend.close()


async def test_a_refused_request_holds_its_place_in_other_slots_until_refunded(
        redis_url: str) -> None:
    """The one difference a cluster makes. A request (R1) on limits a and b, refused by b,
    and a request (R2) on a alone arrive together. One Redis decides R1 (refused, nothing
    charged) then R2 (allowed). A cluster checks a for both in one call and b in another:
    R1 takes a's last place, so R2 is refused; then R1 is refused by b and gives a's
    place back — to the next request. Never more admitted than one Redis admits."""
    backend = RedisBackend(redis_url)
    a, b = two_slots()  # both a burst of 1; b already spent
    try:
        assert (await backend.gcra([b], [HOUR], [HOUR]))[0]
        r1, r2 = await asyncio.gather(backend.gcra([a, b], [HOUR, HOUR], [HOUR, HOUR]),
                                      backend.gcra([a], [HOUR], [HOUR]))
        later = await backend.gcra([a], [HOUR], [HOUR])
        admitted = [r1[0], r2[0], later[0]]
        if is_cluster(redis_url):
            assert admitted == [False, False, True]
        else:
            assert admitted == [False, True, False]
    finally:
        await backend.close()


def limits_routes(name: str) -> dict[str, str]:
    return {"r.yaml": f"""
routes:
  - route: GET /many
    source: {{service: up, path: /x}}
    rate_limit:
      - {{name: {name}-ip, key: ip, rate: 10/h, burst: 5}}
      - {{name: {name}-iproute, key: [ip, route], rate: 10/h, burst: 5}}
      - {{name: {name}-dev, key: device, rate: 10/h, burst: 5}}
      - {{name: {name}-user, key: user, rate: 10/h, burst: 1}}
"""}


async def test_a_requests_limits_on_one_client_share_a_slot(
        make_edge: Any, upstream: Any, redis_url: str) -> None:
    """Limits on the caller's address (alone, with the route, its claimed device) are in
    one slot, charged all or nothing in one script; the user's limit is in its own. When
    the user's limit refuses, the others are not charged for it."""
    up = await upstream(headers_echo_app())
    name = "t" + uuid.uuid4().hex[:10]
    edge = await make_edge(services_yaml({"up": up}, AUTH + "trusted_proxies: [127.0.0.1/32]\n"),
                           limits_routes(name), env={"EDGE_REDIS_URL": redis_url})
    me = {"X-Forwarded-For": "10.7.0.1", "X-Device-ID": "phone-1"}
    first = await edge.get("/many", headers={**me, **bearer(token(sub="u1"))})
    again = await edge.get("/many", headers={**me, **bearer(token(sub="u1"))})
    other = await edge.get("/many", headers={**me, **bearer(token(sub="u2"))})
    assert [first.status, again.status, other.status] == [200, 429, 200]
    left = state(other)
    assert {k: v["r"] for k, v in left.items()} == {
        f"{name}-ip": 3, f"{name}-iproute": 3, f"{name}-dev": 3, f"{name}-user": 0}
    keys = await keys_like(edge.edge.state.backend.client, f"edge:rl:*n:{name}-*")
    assert len(keys) == 5  # the three on the address, the two users
    on_address = [k for k in keys if "-user|" not in k]
    users = [k for k in keys if "-user|" in k]
    if is_cluster(redis_url):
        assert {k.partition("}")[0] for k in on_address} == {"edge:rl:{ip=10.7.0.1"}
        assert len({key_slot(k.encode()) for k in on_address}) == 1
        assert [k.partition("}")[0] for k in users] == [
            "edge:rl:{u=https://id.example:u1", "edge:rl:{u=https://id.example:u2"]
    else:  # one Redis: the names they always had
        assert all(k.startswith(f"edge:rl:n:{name}-") for k in keys)


# -- events

async def test_event_history_and_what_it_no_longer_keeps(redis_url: str) -> None:
    """An event goes to several topics' histories with one id (one script, one slot);
    a topic's history, read back, says when it no longer reaches back far enough."""
    backend = RedisBackend(redis_url)
    a, b = (f"news:{uuid.uuid4().hex[:8]}" for _ in range(2))
    try:
        ids = [(await backend.event_publish([a, b] if n % 2 else [a], b'{"n": %d}' % n, 3,
                                            60.0, "ev:test"))[0] for n in range(5)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        kept = await backend.event_history(a, ids[0], 60.0)
        assert kept == ([(i, b'{"n": %d}' % n) for n, i in enumerate(ids) if n >= 2], True)
        assert await backend.event_history(a, ids[1], 60.0) == (kept[0], False)
        assert await backend.event_history(b, ids[0], 60.0) == (
            [(ids[1], b'{"n": 1}'), (ids[3], b'{"n": 3}')], False)
        ahead = EventId(ids[-1].epoch, ids[-1].seq + 1)
        assert await backend.event_history(a, ahead, 60.0) is None
        events = await keys_like(backend.client, f"edge:*{a}")
        ev = "edge:{ev}:" if is_cluster(redis_url) else "edge:ev:"  # one Redis: as always
        assert events == [f"{ev}last:{a}", f"{ev}lost:{a}", f"{ev}s:{a}"]
        if is_cluster(redis_url):
            assert {key_slot(k.encode()) for k in events} == {key_slot(b"edge:{ev}:ids")}
    finally:
        await backend.close()


# -- subscriptions

async def test_a_subscription_ends_when_cancelled_at_any_moment(redis_url: str) -> None:
    """Cancelled while it connects, subscribes or waits, it ends (the edge's close waits
    for it): even when Python 3.11's asyncio.wait_for, under redis-py, swallows the
    cancellation, as it did for about one in five of these before."""
    import random

    backend = RedisBackend(redis_url)
    try:
        for _ in range(40):
            task = asyncio.ensure_future(anext(backend.listen("cancelled")))
            await asyncio.sleep(random.random() * 0.004)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, "a cancelled subscription went on"
    finally:
        await backend.close()


# -- a node going away

@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of the test's own, to break."""
    with running(tmp_path / "cluster") as cluster:
        yield cluster


async def subscribed(cluster: Cluster, channel: str, *, not_on: int | None = None,
                     timeout: float = 10.0) -> int:
    """The node a subscription to `channel` goes through, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in range(len(cluster.ports)):
            if i == not_on:
                continue
            out = await asyncio.to_thread(cluster.node, i, "pubsub", "numsub", channel)
            if out.split()[-1] != "0":
                return i
        await asyncio.sleep(0.05)
    raise AssertionError(f"nobody subscribed to {channel}")


async def test_a_node_going_away(own_cluster: Cluster) -> None:
    """Its keys fail fast (BackendError: the policies decide), the others still answer,
    and a subscription through it moves to another node and says something may have
    passed it by."""
    backend = RedisBackend(own_cluster.url)
    got: list[bytes] = []

    async def listen() -> None:
        async for message in backend.listen("news"):
            got.append(message)

    task = asyncio.ensure_future(listen())
    try:
        assert await backend.ping()
        via = await subscribed(own_cluster, "edge:news")
        port = own_cluster.ports[via]

        def key_on(mine: bool) -> str:
            return next(k for k in (f"k{i}" for i in range(1000))
                        if (backend.client.get_node_from_key(PREFIX + k).port == port) == mine)

        gone, kept = key_on(True), key_on(False)
        await backend.put(gone, b"1", 60)
        await backend.put(kept, b"2", 60)
        own_cluster.procs[via].kill()
        await asyncio.to_thread(own_cluster.procs[via].wait, 5)
        started = time.monotonic()
        with pytest.raises(BackendError):
            await backend.get(gone)
        assert time.monotonic() - started < CLUSTER_DEADLINE + 0.5
        assert not await backend.ping()  # /ready: not every primary answers
        assert await backend.get(kept) == b"2"
        now = await subscribed(own_cluster, "edge:news", not_on=via)
        await asyncio.to_thread(own_cluster.node, now, "publish", "edge:news", "after")
        for _ in range(100):
            if got == [b"", b"after"]:
                break
            await asyncio.sleep(0.02)
        assert got == [b"", b"after"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await backend.close()


# -- TLS

@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster speaking TLS only (its bus too), open only to the ACL user `edge`."""
    with running(tmp_path / "cluster", tls=_self_signed(tmp_path),
                 user=("edge", "s3cret")) as cluster:
        yield cluster


async def test_a_tls_cluster_with_an_acl_user(tls_cluster: Cluster, make_edge: Any,
                                             upstream: Any) -> None:
    url = tls_cluster.url
    assert url.startswith("rediss+cluster://edge:s3cret@127.0.0.1:")
    one, two = RedisBackend(url), RedisBackend(url)
    heard: list[bytes] = []

    async def listen() -> None:
        async for message in two.listen("ev:live"):
            heard.append(message)

    task = asyncio.ensure_future(listen())
    try:
        assert await one.ping()
        await one.put("cache:tls", b"entry", 60)
        assert await two.get("cache:tls") == b"entry"
        a, b = two_slots()
        assert (await one.gcra([a, b], [HOUR, HOUR], [HOUR, HOUR]))[0]
        assert not (await two.gcra([a, b], [HOUR, HOUR], [HOUR, HOUR]))[0]
        await subscribed(tls_cluster, "edge:ev:live")
        topic = f"news:{uuid.uuid4().hex[:6]}"
        event_id, _ = await one.event_publish([topic, topic + "x"], b"{}", 10, 60.0, "ev:live")
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard and heard[0].startswith(str(event_id).encode() + b"\n")
        kept = await two.event_history(topic + "x", EventId(event_id.epoch, 0), 60.0)
        assert kept is not None and [i for i, _ in kept[0]] == [event_id]
        # without TLS, or without the user, nothing answers
        for wrong in (url.replace("rediss+", "redis+", 1), url.replace("edge:s3cret@", "")):
            backend = RedisBackend(wrong)
            assert not await backend.ping()
            await backend.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await one.close()
        await two.close()
    edge = await make_edge(services_yaml({"up": await upstream(headers_echo_app())}),
                           {}, env={"EDGE_REDIS_URL": url})
    body = await (await edge.get("/ready")).json()
    assert body["backend"] == {"kind": "redis", "reachable": True}
