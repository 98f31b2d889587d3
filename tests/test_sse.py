"""Server-sent events over real HTTP: topics and who may read them, publish → receive,
replay after a reconnect, history overflow, two instances on one Redis, slow consumers,
expiring tokens, limits, cache purges as events, drain."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest

from edge.backends import EventId
from edge.sse.hub import Event

from .conftest import free_port, headers_echo_app, services_yaml, shared_redis
from .test_auth import AUTH, bearer, token
from .test_ratelimit import start_redis

KEY = "publisher-key-" + "x" * 20


def edge_yaml(url: str, extra: str = "") -> str:
    return services_yaml({"up": url}, AUTH + """
events:
  topics:
    - {topic: public, public: true}
    - {topic: "news:*", public: true}
    - {topic: "user:{sub}"}
    - {topic: "member:{claims.member_id}"}
    - {topic: "staff:*", roles: [staff]}
  publisher_keys_env: [PUBKEY]
  history: 5
  heartbeat: 1s
  retry: 2s
  max_queue: 20
  max_per_identity: 3
""" + extra)


ROUTES = {"r.yaml": """
routes:
  - route: GET /x
    source: {service: up, path: /x}
"""}


class Stream:
    """A minimal EventSource: reads `id`/`event`/`data` blocks as they arrive."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.retry: int | None = None
        self.comments: list[str] = []

    async def next(self, timeout: float = 3.0) -> dict[str, Any]:
        event: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode()
                if line == "":
                    raise EOFError
                line = line.rstrip("\r\n")
                if line == "":
                    if "data" in event:
                        event["data"] = orjson.loads(event["data"])
                        return event
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(": ")
                if name == "retry":
                    self.retry = int(value)
                elif name == "data":
                    event["data"] = event.get("data", "") + value
                else:
                    event[name] = value

    async def close(self) -> None:
        self.resp.close()


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(headers_echo_app())
    return await make_edge(edge_yaml(url), ROUTES, env={"PUBKEY": KEY})


async def open_stream(edge: Any, query: str, **headers: str) -> Stream:
    resp = await edge.get(f"/events?{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return Stream(resp)


async def publish(edge: Any, topic: str | list[str], data: Any, event: str = "update",
                  **extra: Any) -> Any:
    body = {"topics" if isinstance(topic, list) else "topic": topic, "event": event,
            "data": data, **extra}
    resp = await edge.post("/_edge/publish", data=orjson.dumps(body),
                           headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status in (200, 202), await resp.text()
    return await resp.json()


async def publish_after_an_outage(edge: Any, topic: str, data: Any) -> Any:
    """As a publisher does after an outage: again after a 503 (Retry-After), which each
    pooled connection to the Redis that went away answers once."""
    for _ in range(10):
        resp = await edge.post("/_edge/publish", data=orjson.dumps({"topic": topic,
                                                                    "data": data}),
                               headers={"Authorization": f"Bearer {KEY}"})
        if resp.status != 503:
            break
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def test_publish_and_receive(edge: Any) -> None:
    stream = await open_stream(edge, "topic=public")
    out = await publish(edge, "public", {"hello": 1})
    got = await stream.next()
    assert got == {"id": str(out["id"]), "event": "update",
                   "data": {"topic": "public", "data": {"hello": 1}}}
    assert stream.retry == 2000
    assert stream.comments[0].startswith(": X-Request-ID: ")  # for tracing a stream
    await stream.close()


async def test_who_may_follow_which_topic(edge: Any) -> None:
    me = bearer(token(sub="1001", member_id="M-7"))
    for query in ("topic=user:1001", "topic=member:M-7", "topic=news:today&topic=public"):
        stream = await open_stream(edge, query, **me)
        await stream.close()
    for query, status in (("topic=user:1002", 403), ("topic=member:M-8", 403),
                          ("topic=staff:all", 403)):
        resp = await edge.get(f"/events?{query}", headers=me)
        assert resp.status == status
        assert resp.headers["Content-Type"] == "application/problem+json"
    assert (await edge.get("/events?topic=user:1001")).status == 401
    staff = bearer(token(sub="9", roles=["staff"]))
    await (await open_stream(edge, "topic=staff:all", **staff)).close()
    assert (await edge.get("/events?topic=public&access_token=abc")).status == 400
    assert (await edge.get("/events")).status == 400
    assert (await edge.get("/events?topic=a%20b")).status == 400


async def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(edge: Any) -> None:
    topic = f"news:{uuid.uuid4().hex[:8]}"
    stream = await open_stream(edge, f"topic={topic}")
    first = await publish(edge, topic, {"n": 0})
    assert (await stream.next())["id"] == str(first["id"])
    await stream.close()
    missed = [(await publish(edge, topic, {"n": n}))["id"] for n in (1, 2, 3)]
    again = await open_stream(edge, f"topic={topic}", **{"Last-Event-ID": str(first["id"])})
    got = [await again.next() for _ in range(3)]
    assert [e["id"] for e in got] == missed
    assert [e["data"]["data"]["n"] for e in got] == [1, 2, 3]
    live = await publish(edge, topic, {"n": 4})
    assert (await again.next())["id"] == str(live["id"])  # then live, nothing repeated
    await again.close()
    # the query form for a first connection
    third = await open_stream(edge, f"topic={topic}&last_event_id={missed[1]}")
    assert (await third.next())["data"]["data"]["n"] == 3
    await third.close()


async def test_a_history_that_no_longer_reaches_back_says_refresh(edge: Any) -> None:
    topic = f"news:{uuid.uuid4().hex[:8]}"
    first = await publish(edge, topic, {"n": 0})
    for n in range(1, 8):  # history keeps 5
        await publish(edge, topic, {"n": n})
    stream = await open_stream(edge, f"topic={topic}", **{"Last-Event-ID": str(first["id"])})
    refresh = await stream.next()
    assert refresh["event"] == "refresh" and refresh["data"]["topics"] == [topic]
    kept = [await stream.next() for _ in range(5)]
    assert [e["data"]["data"]["n"] for e in kept] == [3, 4, 5, 6, 7]
    await stream.close()


@pytest.mark.parametrize("backend", ["memory", "redis", "cluster"])
async def test_a_last_event_id_the_history_cannot_answer_gets_refresh_then_live(
        make_edge: Any, upstream: Any, backend: str, request: pytest.FixtureRequest) -> None:
    url = await upstream(headers_echo_app())
    env = {"PUBKEY": KEY, **({} if backend == "memory" else {
        "EDGE_REDIS_URL": shared_redis(request, backend)})}
    edge = await make_edge(edge_yaml(url), ROUTES, env=env)
    topic = f"news:{uuid.uuid4().hex[:8]}"
    watch = await open_stream(edge, f"topic={topic}")
    await asyncio.sleep(0.2)  # with Redis: the instance's subscription is up
    known = str((await publish(edge, topic, {"n": 0}))["id"])
    assert (await watch.next())["id"] == known  # delivered: not live for the streams below
    await watch.close()
    epoch, _, seq = known.rpartition("-")
    for last in ("garbage", "20",  # an id from before ids had an epoch
                 f"{int(epoch or 0) - 1}-{seq}",  # from another history (before a reset)
                 f"{epoch}-{int(seq) + 1000}"):  # ahead of anything this history issued
        stream = await open_stream(edge, f"topic={topic}", **{"Last-Event-ID": last})
        refresh = await stream.next()
        assert refresh["event"] == "refresh" and refresh["data"]["topics"] == [topic], last
        live = await publish(edge, topic, {"n": 1})
        assert (await stream.next())["id"] == str(live["id"]), last  # then the live stream
        await stream.close()


async def test_ids_keep_growing_across_a_redis_that_restarts_empty(make_edge: Any,
                                                                  upstream: Any) -> None:
    port = free_port()
    redis = start_redis(port)
    try:
        url = await upstream(headers_echo_app())
        edge = await make_edge(edge_yaml(url), ROUTES, env={
            "PUBKEY": KEY, "EDGE_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
        topic = f"news:{uuid.uuid4().hex[:8]}"
        stream = await open_stream(edge, f"topic={topic}")
        await asyncio.sleep(0.2)  # the instance's subscription to Redis is up
        before = [str((await publish(edge, topic, {"n": n}))["id"]) for n in range(3)]
        assert [(await stream.next())["id"] for _ in before] == before
        redis.kill()
        redis.wait(5)
        redis = start_redis(port)  # back, empty
        # the open stream: told that events may have passed it by while the instance's
        # subscription was down, then it goes on with the new ones
        refresh = await stream.next(timeout=10)
        assert refresh["event"] == "refresh" and refresh["data"]["topics"] == [topic]
        after = str((await publish_after_an_outage(edge, topic, {"n": 3}))["id"])
        got = await stream.next()
        assert got["id"] == after and got["data"]["data"]["n"] == 3
        # a reconnect from before the restart: its events are gone with Redis
        again = await open_stream(edge, f"topic={topic}", **{"Last-Event-ID": before[-1]})
        refresh = await again.next()
        assert refresh["event"] == "refresh" and refresh["data"]["topics"] == [topic]
        live = str((await publish(edge, topic, {"n": 4}))["id"])
        assert (await again.next())["id"] == (await stream.next())["id"] == live
        # one from after it is answered from the new history
        third = await open_stream(edge, f"topic={topic}", **{"Last-Event-ID": after})
        assert (await third.next())["id"] == live
        ids = [EventId.parse(i) for i in (*before, after, live)]
        assert ids == sorted(ids)  # ids only grow, whatever happened to Redis
        for s in (stream, again, third):
            await s.close()
    finally:
        redis.kill()
        redis.wait(5)


async def test_several_topics_one_stream_no_duplicates(edge: Any) -> None:
    a, b = f"news:{uuid.uuid4().hex[:6]}", f"news:{uuid.uuid4().hex[:6]}"
    stream = await open_stream(edge, f"topic={a}&topic={b}")
    both = await publish(edge, [a, b], {"both": True})
    only_b = await publish(edge, b, {"b": True})
    got = [await stream.next(), await stream.next()]
    assert [e["id"] for e in got] == [both["id"], only_b["id"]]
    await stream.close()


async def test_publishing_needs_a_key_or_the_role_and_ids_make_retries_safe(
        edge: Any) -> None:
    body = orjson.dumps({"topic": "public", "data": 1})
    assert (await edge.post("/_edge/publish", data=body)).status == 401
    assert (await edge.post("/_edge/publish", data=body,
                            headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await edge.post("/_edge/publish", data=body,
                            headers=bearer(token()))).status == 403
    ok = await edge.post("/_edge/publish", data=body,
                         headers=bearer(token(roles=["publisher"])))
    assert ok.status == 202
    bad = await edge.post("/_edge/publish", data=b'{"topic": "a b", "data": 1}',
                          headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status == 400
    pid = uuid.uuid4().hex
    first = await publish(edge, "public", {"x": 1}, id=pid)
    again = await publish(edge, "public", {"x": 1}, id=pid)
    assert "id" in first and again["duplicate"] is True


async def test_a_slow_consumer_is_cut_off_with_a_last_word(edge: Any) -> None:
    topic = f"news:{uuid.uuid4().hex[:8]}"
    stream = await open_stream(edge, f"topic={topic}")
    hub = edge.edge.state.hub
    sub = next(s for s in hub.subscribers if topic in s.topics)
    for n in range(25):  # max_queue 20, delivered faster than the stream is drained
        hub.deliver(Event(EventId(1, 10_000_000 + n), [topic], "flood", n, time.time()))
    got = []
    with pytest.raises(EOFError):
        while True:
            got.append(await stream.next())
    assert got[-1]["event"] == "overflow"
    assert sub not in hub.subscribers
    metrics = await (await edge.get("/metrics")).text()
    assert 'edge_sse_events_total{outcome="dropped"}' in metrics


async def test_an_expired_token_closes_the_stream(edge: Any) -> None:
    short = bearer(token(sub="1001", exp=int(time.time()) + 2))
    stream = await open_stream(edge, "topic=user:1001", **short)
    got = []
    started = time.monotonic()
    with pytest.raises(EOFError):
        while True:
            got.append(await stream.next(timeout=5))
    assert got[-1]["event"] == "token-expired"
    assert time.monotonic() - started < 4


async def test_heartbeats_and_connection_limits(edge: Any) -> None:
    me = bearer(token(sub="1001"))
    streams = [await open_stream(edge, "topic=user:1001", **me) for _ in range(3)]
    over = await edge.get("/events?topic=user:1001", headers=me)
    assert over.status == 429
    assert (await over.json(content_type=None))["type"] == "urn:edge:problem:too-many-streams"
    line = await asyncio.wait_for(streams[0].resp.content.readline(), 3)
    while not line.startswith(b": ping"):
        line = await asyncio.wait_for(streams[0].resp.content.readline(), 3)
    assert line.startswith(b": ping")  # a heartbeat within the 1 s interval
    for s in streams:
        await s.close()
    for _ in range(40):
        if not edge.edge.state.hub.subscribers:
            break
        await asyncio.sleep(0.1)
    assert not edge.edge.state.hub.subscribers  # gone clients are noticed


async def test_a_cache_purge_becomes_an_invalidate_event(edge: Any) -> None:
    stream = await open_stream(edge, "topic=news:member-1001")
    await edge.post("/_edge/purge", data=b'{"tags": ["news:member-1001", "other"]}',
                    headers=bearer(token(roles=["admin"])))
    got = await stream.next()
    assert got["event"] == "invalidate"
    assert got["data"]["data"]["tags"] == ["news:member-1001", "other"]
    await stream.close()


async def test_drain_tells_clients_to_reconnect(edge: Any) -> None:
    stream = await open_stream(edge, "topic=public")
    edge.edge.drain_streams()
    got = await stream.next()
    assert got["event"] == "reconnect"
    assert stream.retry == 2000


async def test_two_instances_sharing_redis(make_edge: Any, upstream: Any, redis_url: str
                                          ) -> None:
    url = await upstream(headers_echo_app())
    env = {"PUBKEY": KEY, "EDGE_REDIS_URL": redis_url}
    a = await make_edge(edge_yaml(url), ROUTES, env=env)
    b = await make_edge(edge_yaml(url), ROUTES, env=env, root=a.edge.config.root.parent / "b")
    topic = f"news:{uuid.uuid4().hex[:8]}"
    on_a = await open_stream(a, f"topic={topic}")
    on_b = await open_stream(b, f"topic={topic}")
    await asyncio.sleep(0.2)  # the instances' subscriptions to Redis are up
    sent = [(await publish(x, topic, {"n": n}))["id"] for n, x in enumerate((a, b, a, b))]
    got_a = [(await on_a.next())["id"] for _ in range(4)]
    got_b = [(await on_b.next())["id"] for _ in range(4)]
    assert got_a == got_b == sorted(sent, key=EventId.parse)  # everyone, in the same order
    await on_b.close()
    more = [(await publish(a, topic, {"n": n}))["id"] for n in range(3)]
    back = await open_stream(b, f"topic={topic}", **{"Last-Event-ID": str(got_b[-1])})
    assert [(await back.next())["id"] for _ in range(3)] == more
    await on_a.close()
    await back.close()


async def test_a_reload_that_changes_the_event_rules_asks_streams_to_reconnect(
        make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    edge = await make_edge(edge_yaml(url), ROUTES, env={"PUBKEY": KEY})
    stream = await open_stream(edge, "topic=public")
    root = edge.edge.config.root
    (root / "edge.yaml").write_text(edge_yaml(url).replace("history: 5", "history: 6"))
    assert await edge.edge.state.reloader.reload()
    got = await stream.next()
    assert got["event"] == "reconnect"


async def test_a_cookie_token_and_the_instance_wide_limit(make_edge: Any,
                                                         upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    yaml = edge_yaml(url, "").replace("    audience: edge\n",
                                      "    audience: edge\n    cookie: edge_token\n")
    yaml = yaml.replace("  max_per_identity: 3", "  max_per_identity: 3\n  max_connections: 1")
    edge = await make_edge(yaml, ROUTES, env={"PUBKEY": KEY})
    resp = await edge.get("/events?topic=user:1001",
                          cookies={"edge_token": token(sub="1001")})
    assert resp.status == 200
    full = await edge.get("/events?topic=public")
    assert full.status == 503 and full.headers["Retry-After"] == "5"
    resp.close()


async def test_an_event_stream_is_not_a_batch_item(make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    routes = {**ROUTES, "b.yaml": "route: POST /batch\nbatch: {}\n"}
    edge = await make_edge(edge_yaml(url), routes, env={"PUBKEY": KEY})
    resp = await edge.post("/batch", data=b'[{"id": 1, "path": "/events?topic=public"}]')
    item = (await resp.json())[0]
    assert item["status"] == 400 and "batch item" in item["body"]["detail"]


async def test_a_closed_stream_frees_its_slot_at_once(make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    # a heartbeat that never comes during the test: it is not what frees the slots
    edge = await make_edge(edge_yaml(url).replace("heartbeat: 1s", "heartbeat: 30s"), ROUTES,
                           env={"PUBKEY": KEY})
    me = bearer(token(sub="1001"))
    streams = [await open_stream(edge, "topic=user:1001", **me) for _ in range(3)]
    assert (await edge.get("/events?topic=user:1001", headers=me)).status == 429
    for stream in streams:
        await stream.close()
    again = [await open_stream(edge, "topic=user:1001", **me) for _ in range(3)]
    for stream in again:
        await stream.close()
