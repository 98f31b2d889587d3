"""Routes for any method (`* /path`, optionally narrowed by `methods:`), and a service whose
circuit breaker is off: what a platform engineer needs to put the edge in front of an
origin they don't own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edge.config import ConfigError, load_config

from .conftest import catch_all, services_yaml, write_config


def echo() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path,
                                  "body": body.decode()})

    return catch_all(handle)


ROUTES = {"r.yaml": """
routes:
  - route: "* /legacy/{rest...}"
    source: {service: origin, path: "/old/{rest}"}
  - route: GET /legacy/special
    source: {service: origin, path: "/special"}
  - route: "* /narrow/{id}"
    methods: [GET, POST]
    source: {service: origin, path: "/narrow/{id}"}
"""}


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(echo())
    return await make_edge(services_yaml({"origin": url}), ROUTES)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                                    "PROPFIND"])
async def test_a_star_route_takes_every_method(edge: Any, method: str) -> None:
    resp = await edge.request(method, "/legacy/a/b", data=b"x" if method != "GET" else None)
    assert resp.status == 200, await resp.text()
    got = await resp.json()
    assert got["method"] == method and got["path"] == "/old/a/b"


async def test_a_route_for_one_method_wins_over_a_star_route(edge: Any) -> None:
    resp = await edge.get("/legacy/special")
    assert (await resp.json())["path"] == "/special"
    resp = await edge.post("/legacy/special")
    assert (await resp.json())["path"] == "/old/special"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT"])
async def test_trace_and_connect_are_never_relayed(edge: Any, method: str) -> None:
    resp = await edge.request(method, "/legacy/a")
    assert resp.status in (400, 404, 405)


async def test_methods_narrow_a_star_route(edge: Any) -> None:
    assert (await edge.post("/narrow/1")).status == 200
    head = await edge.head("/narrow/1")
    assert head.status == 200
    refused = await edge.put("/narrow/1")
    assert refused.status == 405
    assert refused.headers["Allow"] == "GET, HEAD, POST"


def problems(tmp_path: Path, routes: str) -> list[str]:
    root = write_config(tmp_path, services_yaml({"origin": "http://127.0.0.1:9"}),
                        {"r.yaml": routes})
    with pytest.raises(ConfigError) as exc:
        load_config(root, {})
    return [p.replace(f"{root}/", "") for p in exc.value.problems]


async def test_star_route_mistakes_are_config_errors(tmp_path: Path) -> None:
    methods_alone = ("route: GET /a\nmethods: [GET]\nsource: {service: origin, path: /a}\n")
    got = await asyncio.to_thread(problems, tmp_path / "1", methods_alone)
    assert got == ["routes/r.yaml:2:1: error: methods: a list of methods, for a route that "
                   "says `* /path`"]
    keyed = ("route: '* /a'\nsource: {service: origin, path: /a}\n"
             "idempotency: {ttl: 1h}\n")
    got = await asyncio.to_thread(problems, tmp_path / "2", keyed)
    assert len(got) == 1 and "idempotency is for POST, PUT, PATCH and DELETE" in got[0]
    twice = ("routes:\n  - route: '* /a'\n    source: {service: origin, path: /a}\n"
             "  - route: '* /a'\n    source: {service: origin, path: /b}\n")
    got = await asyncio.to_thread(problems, tmp_path / "3", twice)
    assert len(got) == 1 and "collides with '* /a'" in got[0]


async def test_a_service_with_its_breaker_off_is_always_asked(make_edge: Any,
                                                             upstream: Any) -> None:
    calls = {"n": 0}

    async def failing(request: web.Request) -> web.Response:
        calls["n"] += 1
        return web.Response(status=503, text="busy")

    url = await upstream(catch_all(failing))
    edge_yaml = (f"services:\n  off:\n    url: {url}\n    retries: {{attempts: 1}}\n"
                 "    circuit_breaker: {enabled: false, failure_threshold: 1}\n"
                 f"  on:\n    url: {url}\n    retries: {{attempts: 1}}\n"
                 "    circuit_breaker: {failure_threshold: 1}\n")
    routes = {"r.yaml": "routes:\n"
              "  - route: GET /off\n    source: {service: off, path: /x}\n"
              "  - route: GET /on\n    source: {service: on, path: /x}\n"}
    edge = await make_edge(edge_yaml, routes)
    statuses = [(await edge.get("/off")).status for _ in range(4)]
    assert statuses == [503] * 4 and calls["n"] == 4  # the origin's own 503, every time
    first, second = await edge.get("/on"), await edge.get("/on")
    assert first.status == 503 and await first.text() == "busy"
    assert second.status == 503
    assert (await second.json())["type"].endswith("circuit-open")
    assert calls["n"] == 5
