"""Idempotency-Key: a retried write reaches the upstream once, on memory and on Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiohttp import web

from .conftest import FakeClock, catch_all, free_port, services_yaml
from .test_auth import AUTH, bearer, token

ROUTES = {"r.yaml": """
routes:
  - route: POST /orders
    source: {service: orders, path: /orders}
    auth: {jwt: optional}
    idempotency: {ttl: 1h, wait: 2s, max_response: 1KiB}
  - route: PUT /orders/{id}
    source: {service: orders, path: "/orders/{id}"}
    idempotency: {required: true}
  - route: POST /no-wait
    source: {service: orders, path: /orders}
    idempotency: {wait: 0s}
  - route: POST /plain
    source: {service: orders, path: /orders}
"""}


class Orders:
    """An upstream counting the writes it gets; `?delay=` slows it, `?status=` fails it."""

    def __init__(self) -> None:
        self.writes = 0
        self.arrived = asyncio.Event()  # a request reached it

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            self.arrived.set()
            await asyncio.sleep(float(request.headers.get("X-Delay", "0")))
            status = int(request.headers.get("X-Status", "201"))
            self.writes += 1
            if request.headers.get("X-Big"):
                return web.json_response({"n": self.writes, "pad": "x" * 5000}, status=status)
            return web.json_response({"n": self.writes, "got": orjson.loads(body or b"null"),
                                      "sub": request.headers.get("X-Edge-Subject")},
                                     status=status, headers={"Location": f"/o/{self.writes}"})

        return catch_all(handler)


@pytest.fixture
async def orders(upstream: Any) -> tuple[Orders, str]:
    o = Orders()
    return o, await upstream(o.app())


@pytest.fixture
async def edge(make_edge: Any, orders: tuple[Orders, str], clock: FakeClock) -> Any:
    return await make_edge(services_yaml({"orders": orders[1]}, AUTH), ROUTES, clock=clock)


def key() -> str:
    return str(uuid.uuid4())


async def post(edge: Any, k: str | None, body: Any, path: str = "/orders",
               **headers: str) -> Any:
    if k is not None:
        headers["Idempotency-Key"] = k
    return await edge.post(path, data=orjson.dumps(body), headers=headers)


async def test_a_retry_gets_the_first_answer_and_the_upstream_sees_one_write(
        edge: Any, orders: tuple[Orders, str]) -> None:
    k = key()
    first = await post(edge, k, {"item": "a"})
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    again = await post(edge, f'"{k}"', {"item": "a"})  # the draft's quoted form is the same key
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    assert again.headers["Location"] == first.headers["Location"]
    assert orders[0].writes == 1
    other = await post(edge, key(), {"item": "a"})  # a new key is a new write
    assert (await other.json())["n"] == 2


async def test_the_same_key_for_another_body_is_422(edge: Any) -> None:
    k = key()
    assert (await post(edge, k, {"item": "a"})).status == 201
    resp = await post(edge, k, {"item": "b"})
    assert resp.status == 422
    assert (await resp.json(content_type=None))["type"] == \
        "urn:edge:problem:idempotency-key-reused"


async def test_a_key_is_kept_for_its_ttl(edge: Any, orders: tuple[Orders, str],
                                         clock: FakeClock) -> None:
    k = key()
    assert (await post(edge, k, {"x": 1})).status == 201
    clock.advance(3599)
    again = await post(edge, k, {"x": 1})
    assert again.headers["Idempotent-Replayed"] == "true"
    clock.advance(2)  # past the route's hour: forgotten
    late = await post(edge, k, {"x": 1})
    assert late.status == 201 and "Idempotent-Replayed" not in late.headers
    assert orders[0].writes == 2


async def test_keys_belong_to_their_caller(edge: Any, orders: tuple[Orders, str]) -> None:
    k = key()
    a = await post(edge, k, {"x": 1}, **bearer(token(sub="1001")))
    b = await post(edge, k, {"x": 1}, **bearer(token(sub="1002")))
    assert "Idempotent-Replayed" not in b.headers
    assert (await a.json())["sub"] == "1001" and (await b.json())["sub"] == "1002"
    assert orders[0].writes == 2


async def test_concurrent_duplicates_wait_for_the_first(edge: Any,
                                                        orders: tuple[Orders, str]) -> None:
    k = key()
    resps = await asyncio.gather(*(post(edge, k, {"item": "a"}, **{"X-Delay": "0.3"})
                                   for _ in range(5)))
    assert [r.status for r in resps] == [201] * 5
    bodies = {await r.read() for r in resps}
    assert len(bodies) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in resps) == 4
    assert orders[0].writes == 1


async def test_a_duplicate_is_told_409_when_the_route_does_not_wait(
        edge: Any, orders: tuple[Orders, str]) -> None:
    k = key()
    first = asyncio.ensure_future(post(edge, k, {}, "/no-wait", **{"X-Delay": "0.3"}))
    await orders[0].arrived.wait()  # on its way: the key is taken
    dup = await post(edge, k, {}, "/no-wait")
    assert dup.status == 409
    assert dup.headers["Retry-After"] == "1"
    assert (await first).status == 201
    assert orders[0].writes == 1


async def test_answers_that_say_try_again_are_not_kept(edge: Any,
                                                       orders: tuple[Orders, str]) -> None:
    k = key()
    assert (await post(edge, k, {}, **{"X-Status": "503"})).status == 503
    assert (await post(edge, k, {}, **{"X-Status": "429"})).status == 429
    retry = await post(edge, k, {})
    assert retry.status == 201 and "Idempotent-Replayed" not in retry.headers
    assert orders[0].writes == 3
    # a 4xx is the answer to this request: kept
    k2 = key()
    assert (await post(edge, k2, {}, **{"X-Status": "400"})).status == 400
    replay = await post(edge, k2, {})
    assert replay.status == 400 and replay.headers["Idempotent-Replayed"] == "true"


async def test_a_big_answer_is_relayed_whole_and_replayed_without_its_body(
        edge: Any, orders: tuple[Orders, str]) -> None:
    k = key()
    first = await post(edge, k, {}, **{"X-Big": "1"})
    assert len((await first.json())["pad"]) == 5000
    again = await post(edge, k, {}, **{"X-Big": "1"})
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == b""
    assert orders[0].writes == 1


async def test_key_required_missing_and_malformed(edge: Any) -> None:
    resp = await edge.put("/orders/1", data=b"{}")
    assert resp.status == 400
    assert (await resp.json(content_type=None))["type"] == \
        "urn:edge:problem:idempotency-key-missing"
    resp = await edge.put("/orders/1", data=b"{}", headers={"Idempotency-Key": "a b"})
    assert resp.status == 400
    assert "visible ASCII" in (await resp.json(content_type=None))["detail"]


async def test_routes_without_idempotency_ignore_the_header(
        edge: Any, orders: tuple[Orders, str]) -> None:
    k = key()
    await post(edge, k, {}, "/plain")
    await post(edge, k, {}, "/plain")
    assert orders[0].writes == 2


async def test_two_instances_sharing_redis_write_once(make_edge: Any,
                                                       orders: tuple[Orders, str],
                                                       redis_url: str) -> None:
    env = {"EDGE_REDIS_URL": redis_url}
    yaml = services_yaml({"orders": orders[1]}, AUTH)
    a = await make_edge(yaml, ROUTES, env=env)
    b = await make_edge(yaml, ROUTES, env=env, root=a.edge.config.root.parent / "b")
    k = key()
    resps = await asyncio.gather(*(post(edge, k, {"n": 1}, **{"X-Delay": "0.2"})
                                   for edge in (a, b, a, b)))
    assert [r.status for r in resps] == [201] * 4
    assert len({await r.read() for r in resps}) == 1
    assert orders[0].writes == 1
    later = await post(b, k, {"n": 1})
    assert later.headers["Idempotent-Replayed"] == "true"


async def test_redis_down_fails_closed(make_edge: Any, orders: tuple[Orders, str]) -> None:
    env = {"EDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    edge = await make_edge(services_yaml({"orders": orders[1]}, AUTH), ROUTES, env=env)
    resp = await post(edge, key(), {})
    assert resp.status == 503
    assert (await resp.json(content_type=None))["type"] == \
        "urn:edge:problem:backend-unavailable"
    assert orders[0].writes == 0  # never a write the edge can't vouch for
    plain = await post(edge, None, {})  # without a key, nothing needs the backend
    assert plain.status == 201
