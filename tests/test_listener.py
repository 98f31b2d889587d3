"""The listener's own defences, over raw sockets: slow heads, idle connections, connections
per address, what the parser refuses, and floods that no route's limits see."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml
from .rawwire import raw_exchange

EDGE = """
limits:
  header_timeout: 500ms
  keepalive_timeout: 1s
  max_connections_per_ip: 3
  max_header_size: 8KiB
auth:
  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}
rate_limits:
  defaults:
    - {name: per-ip, key: ip, rate: 10/min, burst: 10}
events:
  publisher_keys_env: [EDGE_PUBLISH_KEY]
"""

ROUTES = {"r.yaml": """
routes:
  - route: GET /ok
    source: {service: svc, path: /ok}
    rate_limit: []
  - route: GET /private
    source: {service: svc, path: /private}
    auth: {jwt: required}
    rate_limit: []
"""}


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    url = await upstream(catch_all(ok))
    return await make_edge(services_yaml({"svc": url}, EDGE), ROUTES,
                           env={"EDGE_PUBLISH_KEY": "k" * 32})


def addr(client: Any) -> tuple[str, int]:
    return client.server.host, client.server.port


async def read_all(reader: asyncio.StreamReader, limit: float) -> bytes:
    async with asyncio.timeout(limit):
        return await reader.read()  # until the edge closes


def problem_of(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head.lower()
    return int(head.split(b" ")[1]), orjson.loads(body)


async def test_a_head_that_trickles_in_is_cut_off(edge: Any) -> None:
    reader, writer = await asyncio.open_connection(*addr(edge))
    started = time.monotonic()
    writer.write(b"GET /ok HTTP/1.1\r\nHo")

    async def trickle() -> None:
        for ch in b"st: e\r\nX-A: 1\r\n":
            await asyncio.sleep(0.1)
            writer.write(bytes([ch]))

    task = asyncio.create_task(trickle())
    try:
        raw = await read_all(reader, 5)
    finally:
        task.cancel()
        writer.close()
    assert time.monotonic() - started < 3
    status, problem = problem_of(raw)
    assert status == 408 and problem["type"] == "urn:edge:problem:request-timeout"


async def test_a_silent_connection_is_closed(edge: Any) -> None:
    reader, writer = await asyncio.open_connection(*addr(edge))
    try:
        raw = await read_all(reader, 5)  # nothing sent at all
    finally:
        writer.close()
    assert raw.startswith(b"HTTP/1.1 408")


async def test_an_idle_keep_alive_connection_is_closed(edge: Any) -> None:
    reader, writer = await asyncio.open_connection(*addr(edge))
    try:
        writer.write(b"GET /ok HTTP/1.1\r\nHost: e\r\n\r\n")
        first = await reader.readuntil(b"true}")
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        rest = await read_all(reader, 5)
    finally:
        writer.close()
    assert rest == b"" and time.monotonic() - started < 4


async def test_connections_per_address_are_capped(edge: Any) -> None:
    held = [await asyncio.open_connection(*addr(edge)) for _ in range(3)]
    try:
        await asyncio.sleep(0.05)
        out = await raw_exchange(*addr(edge), b"GET /ok HTTP/1.1\r\nHost: e\r\n\r\n",
                                 until_closed=True)
        status, problem = problem_of(out)
        assert status == 503 and problem["type"] == "urn:edge:problem:too-many-connections"
    finally:
        for _, w in held:
            w.close()
    await asyncio.sleep(0.05)
    out = await raw_exchange(*addr(edge), b"GET /ok HTTP/1.1\r\nHost: e\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")


async def test_a_huge_token_gets_a_problem_not_plain_text(edge: Any) -> None:
    token = "Bearer " + "a" * 100_000
    out = await raw_exchange(*addr(edge), b"GET /private HTTP/1.1\r\nHost: e\r\n"
                             b"Authorization: " + token.encode() + b"\r\n\r\n",
                             until_closed=True)
    status, problem = problem_of(out)
    assert status == 431 and problem["type"] == "urn:edge:problem:header-too-large"


async def test_garbage_gets_a_problem(edge: Any) -> None:
    out = await raw_exchange(*addr(edge), b"GET /ok HTTP/1.1\r\nHost e\r\n\r\n",
                             until_closed=True)
    status, problem = problem_of(out)
    assert status == 400 and problem["type"] == "urn:edge:problem:bad-request"


@pytest.mark.parametrize("method,path,headers,expected", [
    ("GET", "/nowhere", {}, 404),
    ("DELETE", "/ok", {}, 405),
    ("GET", "/private", {"Authorization": "Bearer a.b.c"}, 401),
    ("POST", "/_edge/publish", {"Authorization": "Bearer wrong"}, 401),
])
async def test_floods_no_route_limits_see_spend_the_per_ip_budget(
        edge: Any, method: str, path: str, headers: dict[str, str], expected: int) -> None:
    statuses = []
    for _ in range(12):
        r = await edge.request(method, path, headers=headers, data=b"{}")
        statuses.append(r.status)
    assert statuses[:10] == [expected] * 10
    assert statuses[10:] == [429, 429]
    r = await edge.get("/ok")  # the same budget as a route using the defaults would spend
    assert r.status == 200  # (this route has none of its own: `rate_limit: []`)


async def test_an_overlong_request_line_gets_414(edge: Any) -> None:
    out = await raw_exchange(*addr(edge), b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: e\r\n\r\n",
                             until_closed=True)
    status, problem = problem_of(out)
    assert status == 414 and problem["type"] == "urn:edge:problem:uri-too-long"
