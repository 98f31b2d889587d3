"""Streaming pass-through: headers both ways, bodies, query strings, big and slow bodies."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_chunked(65536):
            h.update(chunk)
            n += len(chunk)
        return web.json_response({
            "method": request.method, "path": request.raw_path,
            "query": request.rel_url.raw_query_string, "headers": dict(request.headers),
            "body_len": n, "sha256": h.hexdigest(),
        }, headers={"Connection": "close, X-Upstream-Secret", "X-Upstream-Secret": "s",
                    "Keep-Alive": "timeout=5", "X-Kept": "yes"})

    return catch_all(echo)


ROUTES = {"r.yaml": """
routes:
  - route: GET /api/items/{item_id}
    source: {service: svc, path: "/items/{item_id}"}
  - route: POST /api/items
    source: {service: svc, path: /items}
  - route: GET /api/search
    source: {service: svc, path: "/search?fixed=1"}
    query: {pass: [q, page], rename: {page: p}, set: {limit: "5"}}
  - route: GET /api/raw
    source: {service: svc, path: /raw}
  - route: GET /files/{rest...}
    source: {service: svc, path: "/static/{rest...}"}
  - route: GET /img/{name}.jpg
    source: {service: svc, path: "/images/{name}.jpg"}
"""}


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(echo_app())
    return await make_edge(services_yaml({"svc": url}), ROUTES)


async def test_get_is_forwarded_with_path_params(edge: Any) -> None:
    resp = await edge.get("/api/items/42")
    assert resp.status == 200
    body = await resp.json()
    assert body["method"] == "GET"
    assert body["path"] == "/items/42"
    assert resp.headers["X-Kept"] == "yes"
    assert "X-Request-ID" in resp.headers
    assert "upstream;dur=" in resp.headers["Server-Timing"]


async def test_hop_by_hop_headers_dropped_both_ways(edge: Any) -> None:
    resp = await edge.get("/api/items/1", headers={
        "Connection": "keep-alive, X-Client-Private", "X-Client-Private": "p",
        "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Authorization": "Basic x",
        "X-Normal": "n"})
    body = await resp.json()
    sent = {k.lower() for k in body["headers"]}
    assert "x-client-private" not in sent
    assert "keep-alive" not in sent and "te" not in sent and "proxy-authorization" not in sent
    assert body["headers"]["X-Normal"] == "n"
    # the upstream's Connection-listed and hop-by-hop headers don't reach the client
    assert "X-Upstream-Secret" not in resp.headers
    assert "Keep-Alive" not in resp.headers


async def test_forwarded_headers_set_and_untrusted_ones_replaced(edge: Any) -> None:
    resp = await edge.get("/api/items/1", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https"})
    h = (await resp.json())["headers"]
    assert h["X-Forwarded-For"] == "127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    assert "X-Forwarded-Host" not in h  # no public_hosts configured: none is sent


async def test_trusted_proxy_forwarded_headers_are_extended(make_edge: Any,
                                                            upstream: Any) -> None:
    url = await upstream(echo_app())
    client = await make_edge(services_yaml({"svc": url}, "trusted_proxies: [127.0.0.0/8]\n"),
                             ROUTES)
    resp = await client.get("/api/items/1", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "app.example",
        "X-Forwarded-Proto": "https"})
    h = (await resp.json())["headers"]
    assert h["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert h["X-Forwarded-Host"] == "app.example"
    assert h["X-Forwarded-Proto"] == "https"


async def test_query_passes_through_by_default(edge: Any) -> None:
    body = await (await edge.get("/api/items/7?a=1&b=%20x&a=2")).json()
    assert body["query"] == "a=1&b=%20x&a=2"


async def test_query_policy_filters_renames_and_sets(edge: Any) -> None:
    body = await (await edge.get("/api/search?q=dental&page=3&limit=999&evil=1")).json()
    assert body["path"].startswith("/search?fixed=1&")
    assert body["query"] == "fixed=1&q=dental&p=3&limit=5"


@pytest.mark.parametrize("path", [
    "/api/items/..%2F..%2Fadmin",
    "/api/items/%2e%2e",
    "/api/items/a%2Fb",
    "/api/items/a%00b",
    "/files/a/../../etc/passwd",
    "/files/%2e%2e/secret",
])
async def test_path_traversal_is_refused(edge: Any, path: str) -> None:
    resp = await edge.get(path)
    assert resp.status in (400, 404)
    assert resp.headers["Content-Type"] == "application/problem+json"


async def test_param_values_are_encoded_for_the_upstream(edge: Any) -> None:
    body = await (await edge.get("/api/items/a%3Fb%23c%20d")).json()
    assert body["path"] == "/items/a%3Fb%23c%20d"


async def test_tail_and_affix_params(edge: Any) -> None:
    body = await (await edge.get("/files/css/site%20v2.css")).json()
    assert body["path"] == "/static/css/site%20v2.css"
    body = await (await edge.get("/img/cat.jpg")).json()
    assert body["path"] == "/images/cat.jpg"
    assert (await edge.get("/img/cat.png")).status == 404


async def test_post_body_streams_to_upstream(edge: Any) -> None:
    payload = b"x" * (3 * 1024 * 1024 + 17)

    async def gen() -> Any:
        for i in range(0, len(payload), 100_000):
            yield payload[i:i + 100_000]

    resp = await edge.post("/api/items", data=gen())
    body = await resp.json()
    assert body["body_len"] == len(payload)
    assert body["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_body_over_the_limit_is_413(make_edge: Any, upstream: Any) -> None:
    url = await upstream(echo_app())
    client = await make_edge(services_yaml({"svc": url}, "limits: {max_request_body: 1KiB}\n"),
                             ROUTES)
    resp = await client.post("/api/items", data=b"x" * 2000)
    assert resp.status == 413
    problem = await resp.json()
    assert problem["type"] == "urn:edge:problem:payload-too-large"

    async def gen() -> Any:  # chunked: no Content-Length to check up front
        for _ in range(10):
            yield b"y" * 500

    resp = await client.post("/api/items", data=gen())
    assert resp.status == 413


async def test_head_uses_get_route(edge: Any) -> None:
    resp = await edge.head("/api/items/1")
    assert resp.status == 200
    assert await resp.read() == b""


async def test_404_and_405_are_problems(edge: Any) -> None:
    resp = await edge.get("/nope")
    assert resp.status == 404
    p = orjson.loads(await resp.read())
    assert p["type"] == "urn:edge:problem:not-found"
    assert p["status"] == 404 and p["request_id"] == resp.headers["X-Request-ID"]
    resp = await edge.delete("/api/items/1")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"


def streaming_app(total: int, chunk: int = 1 << 20) -> web.Application:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = total
        await resp.prepare(request)
        block = b"z" * chunk
        left = total
        while left:
            n = min(chunk, left)
            await resp.write(block[:n])
            left -= n
        return resp

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(4):
            await resp.write(b"chunk-%d\n" % i)
            await asyncio.sleep(0.3)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/drip", drip)
    return app


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


STREAM_ROUTES = {"s.yaml": """
routes:
  - route: GET /big
    source: {service: svc, path: /big}
  - route: GET /drip
    source: {service: svc, path: /drip}
"""}


@pytest.mark.slow
async def test_big_body_streams_with_flat_memory(make_edge: Any, upstream: Any) -> None:
    total = 400 * 1024 * 1024
    url = await upstream(streaming_app(total))
    client = await make_edge(services_yaml({"svc": url}), STREAM_ROUTES)
    resp = await client.get("/big")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(total)
    before = rss_bytes()
    got = 0
    peak = before
    async for chunk in resp.content.iter_chunked(1 << 20):
        got += len(chunk)
        if got % (32 << 20) < len(chunk):
            peak = max(peak, rss_bytes())
    assert got == total
    assert peak - before < 64 * 1024 * 1024, f"RSS grew by {(peak - before) >> 20} MiB"


async def test_slow_chunks_arrive_one_by_one(make_edge: Any, upstream: Any) -> None:
    url = await upstream(streaming_app(0))
    client = await make_edge(services_yaml({"svc": url}), STREAM_ROUTES)
    loop = asyncio.get_running_loop()
    resp = await client.get("/drip")
    arrivals = []
    async for line in resp.content:
        arrivals.append((loop.time(), line))
    assert [line for _, line in arrivals] == [b"chunk-%d\n" % i for i in range(4)]
    # the first chunk reached us well before the upstream finished (~1.2 s)
    assert arrivals[-1][0] - arrivals[0][0] > 0.6


async def test_expect_100_continue_upload(edge: Any) -> None:
    payload = b"q" * 200_000
    resp = await edge.post("/api/items", data=payload, expect100=True)
    body = await resp.json()
    assert body["body_len"] == len(payload)
    assert "Expect" not in body["headers"]  # the edge answered it; the upstream never sees it
