"""Public cached routes can't be poisoned through what the cache doesn't key on: the
upstream's Vary, a client's Host, Cookie or Authorization, pagination links, duplicate
query parameters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /greeting
    source: {service: svc, path: /greeting}
    shape: {}
    cache: {scope: public, ttl: 60s}
    rate_limit: []
  - route: GET /star
    source: {service: svc, path: /star}
    shape: {}
    cache: {scope: public, ttl: 60s}
    rate_limit: []
  - route: GET /members/{member_id}/claims
    source: {service: svc, path: "/claims?member_id={member_id}"}
    shape:
      paginate: {max_size: 50}
    query: {pass: [status, page, size]}
    cache: {scope: public, ttl: 60s}
    rate_limit: []
  - route: GET /all/{member_id}
    source: {service: svc, path: "/claims?member_id={member_id}"}
    rate_limit: []
"""}


@pytest.fixture
async def calls() -> list[web.Request]:
    return []


@pytest.fixture
async def edge(make_edge: Any, upstream: Any, calls: list[web.Request]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        calls.append(request)
        if request.path == "/greeting":
            lang = request.headers.get("Accept-Language", "en")
            await asyncio.sleep(0.05)  # long enough for concurrent misses to coalesce
            word = {"fr": "bonjour", "en": "hello"}.get(lang, "hi")
            return web.json_response({"greeting": word}, headers={"Vary": "Accept-Language"})
        if request.path == "/star":
            return web.json_response({"n": len(calls)}, headers={"Vary": "*"})
        return web.json_response({
            "items": [{"id": 1}], "total": 100,
            "seen": {"query": request.query_string, "cookie": request.headers.get("Cookie"),
                     "authorization": request.headers.get("Authorization"),
                     "host": request.headers.get("X-Forwarded-Host")}})

    url = await upstream(catch_all(handler))
    return await make_edge(services_yaml({"svc": url}, "public_hosts: [api.example.com]\n"),
                           ROUTES)


async def greet(edge: Any, lang: str) -> tuple[str, str]:
    r = await edge.get("/greeting", headers={"Accept-Language": lang})
    assert r.status == 200
    return (await r.json())["greeting"], r.headers["Cache-Status"]


async def test_the_upstreams_vary_keys_the_cache(edge: Any, calls: list[Any]) -> None:
    assert (await greet(edge, "fr"))[0] == "bonjour"
    assert (await greet(edge, "en"))[0] == "hello"
    for _ in range(3):  # hits (and the fast lane) keep the variants apart
        fr, fr_status = await greet(edge, "fr")
        en, en_status = await greet(edge, "en")
        assert (fr, en) == ("bonjour", "hello")
        assert fr_status.startswith("edge; hit") and en_status.startswith("edge; hit")
    assert len(calls) == 2


async def test_coalesced_misses_only_share_a_matching_variant(edge: Any) -> None:
    got = await asyncio.gather(*(greet(edge, lang) for lang in ["fr", "en"] * 5))
    assert [g[0] for g in got] == ["bonjour", "hello"] * 5


async def test_vary_star_is_never_stored(edge: Any, calls: list[Any]) -> None:
    for _ in range(3):
        r = await edge.get("/star")
        assert r.status == 200
        assert "stored" not in r.headers["Cache-Status"]
        assert not r.headers["Cache-Status"].startswith("edge; hit")
    assert len(calls) == 3


async def test_a_public_answer_is_made_without_the_clients_cookie_or_host(edge: Any) -> None:
    r = await edge.get("/members/1001/claims", headers={
        "Cookie": "session=alice", "Host": "evil.example"})
    seen = (await r.json())["seen"]
    assert seen["cookie"] is None and seen["authorization"] is None
    assert seen["host"] == "api.example.com"
    r = await edge.get("/members/1001/claims", headers={"Host": "API.example.com"})
    assert r.headers["Cache-Status"].startswith("edge; hit")


async def test_links_carry_only_the_routes_parameters(edge: Any) -> None:
    r = await edge.get('/members/1001/claims?size=1&status=paid&utm="><script>')
    body = await r.json()
    assert body["next"] == "/members/1001/claims?status=paid&size=1&page=2"
    assert "utm" not in r.headers["Link"] and "script" not in r.headers["Link"]


async def test_a_template_query_value_wins_alone(edge: Any) -> None:
    r = await edge.get("/all/1001?member_id=1002&x=1")
    assert (await r.json())["seen"]["query"] == "member_id=1001&x=1"
