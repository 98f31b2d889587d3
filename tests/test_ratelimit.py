"""Rate limits over real HTTP: exact admission, bursts then a steady rate, headers a client
can act on, keys, overrides, shared Redis across instances, and Redis going away."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest

from .conftest import FakeClock, free_port, headers_echo_app, services_yaml
from .test_auth import AUTH, bearer, token


def edge_yaml(url: str, extra: str = "") -> str:
    return services_yaml({"up": url}, AUTH + """
trusted_proxies: [127.0.0.1/32]
devices:
  user_agent:
    - {pattern: "Watch", device: watch}
""" + extra)


def routes(name: str) -> dict[str, str]:
    """Routes with limits whose budgets are this test's own (Redis outlives test runs)."""
    return {"r.yaml": f"""
routes:
  - route: GET /exact
    source: {{service: up, path: /x}}
    rate_limit: [{{name: {name}-exact, key: ip, rate: 10/h, burst: 50}}]
  - route: GET /steady
    source: {{service: up, path: /x}}
    rate_limit: [{{name: {name}-steady, key: ip, rate: 5/s, burst: 3}}]
  - route: GET /device
    source: {{service: up, path: /x}}
    rate_limit:
      - {{name: {name}-dev, key: device, rate: 10/h, burst: 3,
          per_device: {{watch: {{rate: 10/h, burst: 1}}}}}}
  - route: GET /user
    source: {{service: up, path: /x}}
    rate_limit: [{{name: {name}-user, key: user, rate: 10/h, burst: 2}}]
  - route: GET /two
    source: {{service: up, path: /x}}
    rate_limit:
      - {{name: {name}-a, key: ip, rate: 10/h, burst: 5}}
      - {{name: {name}-b, key: [ip, route], rate: 10/h, burst: 2}}
  - route: GET /free
    source: {{service: up, path: /x}}
  - route: POST /batch
    batch: {{}}
"""}


@pytest.fixture
async def up(upstream: Any) -> str:
    return str(await upstream(headers_echo_app()))


def unique() -> str:
    return "t" + uuid.uuid4().hex[:10]


def state(resp: Any) -> dict[str, dict[str, int]]:
    """RateLimit: "name";r=..;t=.. → {name: {r:.., t:..}}."""
    out = {}
    for item in resp.headers["RateLimit"].split(", "):
        name, *params = item.split(";")
        out[name.strip('"')] = {k: int(v) for k, v in (p.split("=") for p in params)}
    return out


async def flood(edge: Any, path: str, n: int, **headers: str) -> Counter[int]:
    resps = await asyncio.gather(*(edge.get(path, headers=headers) for _ in range(n)))
    return Counter(r.status for r in resps)


async def test_exactly_the_burst_is_admitted_under_200_concurrent_requests(
        make_edge: Any, up: str) -> None:
    edge = await make_edge(edge_yaml(up), routes(unique()))
    assert await flood(edge, "/exact", 200) == {200: 50, 429: 150}


async def test_two_instances_sharing_redis_admit_the_configured_total(
        make_edge: Any, up: str, redis_url: str) -> None:
    env = {"EDGE_REDIS_URL": redis_url}
    name = unique()
    a = await make_edge(edge_yaml(up), routes(name), env=env)
    b = await make_edge(edge_yaml(up), routes(name), env=env,
                        root=a.edge.config.root.parent / "b")
    got = await asyncio.gather(flood(a, "/exact", 100), flood(b, "/exact", 100))
    assert got[0] + got[1] == {200: 50, 429: 150}  # apart, they would admit 100
    assert a.edge.state.backend.name == b.edge.state.backend.name == "redis"


async def test_a_burst_then_the_steady_rate_with_headers_to_act_on(
        make_edge: Any, up: str, clock: FakeClock) -> None:
    name = unique()
    edge = await make_edge(edge_yaml(up), routes(name), clock=clock)
    key = f"{name}-steady"
    remaining = []
    for _ in range(3):
        resp = await edge.get("/steady")
        assert resp.status == 200
        assert resp.headers["RateLimit-Policy"] == f'"{key}";q=5;w=1'
        remaining.append(state(resp)[key]["r"])
    assert remaining == [2, 1, 0]
    refused = await edge.get("/steady")
    assert refused.status == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    problem = await refused.json(content_type=None)
    assert problem["type"] == "urn:edge:problem:rate-limited"
    assert refused.headers["Retry-After"] == "1"
    assert state(refused)[key]["r"] == 0
    clock.advance(0.19)  # not quite one interval (1/5 s) later: nothing yet
    assert (await edge.get("/steady")).status == 429
    clock.advance(0.02)  # just past it: exactly one more
    assert (await edge.get("/steady")).status == 200
    assert (await edge.get("/steady")).status == 429
    clock.advance(int(refused.headers["Retry-After"]))  # what the client was told
    assert (await edge.get("/steady")).status == 200


async def test_devices_users_and_combined_keys(make_edge: Any, up: str) -> None:
    name = unique()
    edge = await make_edge(edge_yaml(up), routes(name))
    a = {"X-Device-ID": "phone-a", "X-Forwarded-For": "10.0.0.1"}
    assert await flood(edge, "/device", 5, **a) == {200: 3, 429: 2}
    # another device on the same address has its own budget
    assert (await edge.get("/device", headers={**a, "X-Device-ID": "phone-b"})).status == 200
    # claiming phone-a's id from another address doesn't touch phone-a's budget
    spoof = {"X-Device-ID": "phone-a", "X-Forwarded-For": "10.9.9.9"}
    assert (await edge.get("/device", headers=spoof)).status == 200
    # a verified device id (token claim) counts the same from any address
    t = bearer(token(device_id="dev-42"))
    for ip in ("10.0.0.7", "10.0.0.8", "10.0.0.9"):
        assert (await edge.get("/device", headers={**t, "X-Forwarded-For": ip})).status == 200
    assert (await edge.get("/device", headers={**t, "X-Forwarded-For": "10.0.0.10"})).status \
        == 429
    # so does an API key
    for ip in ("10.0.1.1", "10.0.1.2", "10.0.1.3"):
        assert (await edge.get("/device", headers={"X-API-Key": "partner-1",
                                                   "X-Forwarded-For": ip})).status == 200
    assert (await edge.get("/device", headers={"X-API-Key": "partner-1"})).status == 429
    # a watch gets fewer
    watch = {"X-Device-ID": "w", "User-Agent": "Watch OS", "X-Forwarded-For": "10.0.0.3"}
    assert await flood(edge, "/device", 3, **watch) == {200: 1, 429: 2}
    # users: by token subject, wherever they come from
    for sub in ("1001", "1002"):
        assert await flood(edge, "/user", 3, **bearer(token(sub=sub))) == {200: 2, 429: 1}
    # two limits: the tighter one decides, and a refusal charges neither
    got = await flood(edge, "/two", 4, **{"X-Forwarded-For": "10.0.0.5"})
    assert got == {200: 2, 429: 2}
    resp = await edge.get("/two", headers={"X-Forwarded-For": "10.0.0.5"})
    assert state(resp)[f"{name}-b"]["r"] == 0
    assert set(state(resp)) == {f"{name}-a", f"{name}-b"}


async def test_internal_callers_are_never_limited_and_routes_without_limits_say_nothing(
        make_edge: Any, up: str) -> None:
    edge = await make_edge(edge_yaml(up, "rate_limits: {allow: [10.1.0.0/16]}\n"),
                           routes(unique()))
    assert await flood(edge, "/steady", 20, **{"X-Forwarded-For": "10.1.2.3"}) == {200: 20}
    free = await edge.get("/free")
    assert "RateLimit" not in free.headers


async def test_batch_items_each_count(make_edge: Any, up: str) -> None:
    name = unique()
    edge = await make_edge(edge_yaml(up), routes(name))
    resp = await edge.post("/batch", data=orjson.dumps(
        [{"id": i, "path": "/steady"} for i in range(5)]))
    assert [i["status"] for i in await resp.json()] == [200, 200, 200, 429, 429]


async def test_defaults_apply_to_routes_without_their_own(make_edge: Any, up: str) -> None:
    name = unique()
    edge = await make_edge(edge_yaml(up, f"""
rate_limits:
  defaults: [{{name: {name}-default, key: ip, rate: 10/h, burst: 2}}]
"""), routes(name))
    assert await flood(edge, "/free", 3) == {200: 2, 429: 1}
    # one budget across every route using the defaults
    assert (await edge.post("/batch", data=b"[]")).status == 429


def start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            out = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                 timeout=1)
            if out.stdout.strip() == b"PONG":
                return proc
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


async def degraded(edge: Any) -> float:
    text = await (await edge.get("/metrics")).text()
    m = re.search(r"^edge_ratelimit_degraded (\S+)$", text, re.M)
    assert m
    return float(m.group(1))


async def redis_calls(edge: Any) -> tuple[dict[str, float], dict[str, float]]:
    """edge_redis_duration_seconds_count and edge_redis_errors_total, by op."""
    text = await (await edge.get("/metrics")).text()
    timed = {m[1]: float(m[2]) for m in re.finditer(
        r'^edge_redis_duration_seconds_count\{op="(\w+)"\} (\S+)$', text, re.M)}
    failed = {m[1]: float(m[2]) for m in re.finditer(
        r'^edge_redis_errors_total\{op="(\w+)"\} (\S+)$', text, re.M)}
    return timed, failed


async def checks(edge: Any) -> dict[str, float]:
    """edge_ratelimit_check_duration_seconds_count by store."""
    text = await (await edge.get("/metrics")).text()
    return {m[1]: float(m[2]) for m in re.finditer(
        r'^edge_ratelimit_check_duration_seconds_count\{store="(\w+)"\} (\S+)$', text, re.M)}


@pytest.mark.parametrize("mode", ["local", "open", "closed"])
async def test_redis_going_away_and_coming_back(make_edge: Any, up: str, mode: str,
                                                clock: FakeClock) -> None:
    port = free_port()
    redis = start_redis(port)
    try:
        edge = await make_edge(edge_yaml(up, f"rate_limits: {{on_backend_failure: {mode}}}\n"),
                               routes(unique()),
                               env={"EDGE_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
                               clock=clock)
        assert await flood(edge, "/exact", 60) == {200: 50, 429: 10}
        assert await degraded(edge) == 0
        assert await checks(edge) == {"redis": 60}
        calls, errors = await redis_calls(edge)
        assert calls["gcra"] >= 1 and "gcra" not in errors  # batched: fewer than 60
        redis.terminate()
        redis.wait(5)
        started = time.monotonic()
        got = await flood(edge, "/exact", 60)
        assert time.monotonic() - started < 5  # never hangs on Redis
        assert await degraded(edge) == 1
        assert (await redis_calls(edge))[1]["gcra"] >= 1
        if mode != "closed":  # timed where they were decided; a 503 decides nothing
            assert await checks(edge) == {"redis": 60, mode: 60}
        if mode == "local":  # a fresh per-instance budget
            assert got == {200: 50, 429: 10}
        elif mode == "open":
            assert got == {200: 60}
        else:
            assert got == {503: 60}
        redis = start_redis(port)  # back, empty
        assert (await edge.get("/exact")).status != 200 or mode == "open"  # not yet tried
        clock.advance(1.0)  # the limiter tries Redis again after a second
        assert (await edge.get("/exact")).status == 200
        assert await degraded(edge) == 0
    finally:
        redis.kill()
        redis.wait(5)


async def test_decisions_are_counted(make_edge: Any, up: str) -> None:
    name = unique()
    edge = await make_edge(edge_yaml(up), routes(name))
    await flood(edge, "/steady", 5)
    text = await (await edge.get("/metrics")).text()
    assert (f'edge_ratelimit_decisions_total{{device="desktop",key="ip",limit="{name}-steady",'
            f'result="allowed",route="GET /steady"}} 3.0') in text
    assert f'limit="{name}-steady",result="limited",route="GET /steady"}} 2.0' in text
    assert await checks(edge) == {"memory": 5}
    assert 'edge_ratelimit_check_duration_seconds_bucket{le="1e-05",store="memory"}' in text


@pytest.mark.parametrize("limits, expected", [
    ("[{rate: 1/s, per_device: {toaster: {rate: 1/s}}}]", "'toaster' is not one of"),
    ("[{name: a, rate: 1/s}, {name: a, rate: 2/s}]", "must be unique here"),
    ("[{rate: often}]", "expected a rate like '60/min'"),
    ("[{rate: 1/s, key: [ip, ip]}]", "key lists each kind once"),
    ("[{rate: 1/s, key: phone}]", "rate_limit[0].key"),
])
def test_limit_config_errors(tmp_path: Any, limits: str, expected: str) -> None:
    from edge.config import ConfigError, load_config

    from .conftest import write_config

    root = write_config(tmp_path / "c", services_yaml({"up": "http://127.0.0.1:1"}), {
        "r.yaml": f"route: GET /x\nsource: {{service: up, path: /x}}\nrate_limit: {limits}\n"})
    with pytest.raises(ConfigError) as e:
        load_config(root, {})
    assert any(expected in p for p in e.value.problems), e.value.problems


async def test_cached_answers_are_limited_too(make_edge: Any, up: str) -> None:
    name = unique()
    r = routes(name)
    r["c.yaml"] = f"""
route: GET /cached
source: {{service: up, path: /x}}
auth: {{jwt: "off"}}
shape: {{}}
cache: {{scope: public, ttl: 60s}}
rate_limit: [{{name: {name}-c, key: device, rate: 10/h, burst: 5}}]
"""
    edge = await make_edge(edge_yaml(up), r)
    dev = {"X-Device-ID": "d1", "Accept-Encoding": "identity"}
    seen = []
    for _ in range(7):
        resp = await edge.get("/cached", headers=dev)
        seen.append((resp.status, state(resp)[f"{name}-c"]["r"]))
    assert seen == [(200, 4), (200, 3), (200, 2), (200, 1), (200, 0), (429, 0), (429, 0)]
    assert edge.edge.state.cache.ready.answers  # the hits came from the fast lane
    other = await edge.get("/cached", headers={**dev, "X-Device-ID": "d2"})
    assert other.status == 200 and other.headers["Cache-Status"].startswith("edge; hit")


async def test_redis_checks_ride_together_exactly() -> None:
    """Checks made together go in few script calls (at most GCRA_BATCH each), and a key
    that many of them share is decided exactly as if they had gone one by one."""
    from edge.backends.redis import GCRA_BATCH, RedisBackend

    port = free_port()
    redis = start_redis(port)
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0")
    try:
        hour = 3600.0
        shared, own = "rl:shared", "rl:own"
        n = GCRA_BATCH + 44
        # every request checks the shared key (burst 50); every 10th also its own (burst 3)
        got = await asyncio.gather(*(
            backend.gcra([shared, own] if i % 10 == 0 else [shared],
                         [hour / 10] * (2 if i % 10 == 0 else 1),
                         [hour / 10 * (50 if j == 0 else 3)
                          for j in range(2 if i % 10 == 0 else 1)])
            for i in range(n)))
        allowed = [i for i, (ok, _, _) in enumerate(got) if ok]
        # in order: the first 3 requests with their own key pass it, the rest of those fail
        # it (and are not charged to the shared key either), the rest fill the shared burst
        assert allowed == [i for i in range(n) if i % 10 or i in (0, 10, 20)][:50]
        stats = await backend.client.info("commandstats")
        calls = stats["cmdstat_evalsha"]["calls"] + stats.get("cmdstat_eval", {}).get("calls", 0)
        # all queued in one turn of the loop: batches of at most 256 (plus, the first time,
        # redis-py's retry after loading the script)
        assert 2 <= calls <= 3
        tat = float(await backend.client.get("edge:" + shared))
        now = got[-1][1]
        assert tat / 1e6 - now == pytest.approx(hour / 10 * 50, abs=1)
    finally:
        await backend.close()
        redis.kill()
        redis.wait(5)


async def test_checks_queued_behind_a_hung_redis_call_fail_with_it() -> None:
    """Redis accepts but never answers: the call in flight times out, and the checks that
    queued behind it fail with it (and fall back) instead of waiting for another call."""
    from edge.backends import BackendError
    from edge.backends.redis import RedisBackend

    accepted: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0")
    try:
        first = asyncio.ensure_future(backend.gcra(["rl:a"], [1.0], [1.0]))
        await asyncio.sleep(0.05)  # on its way
        queued = [asyncio.ensure_future(backend.gcra(["rl:b"], [1.0], [1.0]))
                  for _ in range(20)]
        got = await asyncio.gather(first, *queued, return_exceptions=True)
        assert all(isinstance(g, BackendError) for g in got)
        # one connection, for the first call: nothing more was tried for the queued checks
        await asyncio.sleep(0.1)
        assert len(accepted) == 1
        assert not backend._gcra_pending and not backend._gcra_busy
    finally:
        await backend.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
