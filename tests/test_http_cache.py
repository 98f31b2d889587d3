"""The edge cache as an RFC 9111 shared cache (and RFC 5861's stale extensions): the origin's
caching headers decide, the route's settings are the default (or, with
`override_upstream`, win), and the request's own directives are heard. Each test runs
against a real origin that scripts its headers and counts what reaches it, with the
cache in memory and in Redis."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web

from .conftest import FakeClock, catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /r/{name}
    source: {service: origin, path: "/r/{name}"}
    shape: {}
    cache: {scope: public, ttl: 60s}
  - route: POST /r/{name}
    source: {service: origin, path: "/r/{name}"}
  - route: GET /swr/{name}
    source: {service: origin, path: "/r/{name}"}
    shape: {}
    cache: {scope: public, ttl: 60s, stale_while_revalidate: 30s}
  - route: GET /mine/{name}
    source: {service: origin, path: "/r/{name}"}
    shape: {}
    cache: {scope: public, ttl: 60s, override_upstream: true}
"""}


class Origin:
    """Answers `/r/NAME` with the headers scripted for NAME, counting the requests (and
    the conditional ones) it gets; a POST answers 201 with the scripted headers."""

    def __init__(self) -> None:
        self.script: dict[str, dict[str, str]] = {}
        self.hits: dict[str, int] = {}
        self.conditional: dict[str, int] = {}
        self.version = 1

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            name = request.path.rsplit("/", 1)[1]
            self.hits[name] = self.hits.get(name, 0) + 1
            headers = dict(self.script.get(name, {}))
            if request.method == "POST":
                self.version += 1
                return web.json_response({"ok": True}, status=201, headers=headers)
            etag = f'"v{self.version}"'
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                self.conditional[name] = self.conditional.get(name, 0) + 1
                return web.Response(status=304, headers=headers)
            return web.json_response({"name": name, "version": self.version,
                                      "lang": request.headers.get("Accept-Language")},
                                     headers=headers)

        return catch_all(handle)


@pytest.fixture
async def cache(backend_env: dict[str, str], make_edge: Any, upstream: Any,
                clock: FakeClock) -> tuple[Any, Origin, FakeClock]:
    origin = Origin()
    url = await upstream(origin.app())
    edge = await make_edge(services_yaml({"origin": url}), ROUTES, env=backend_env,
                           clock=clock)
    return edge, origin, clock


def unique(name: str) -> str:
    return f"{name}-{time.time_ns()}"  # Redis outlives a test: every test its own keys


async def get(edge: Any, path: str, **headers: str) -> Any:
    resp = await edge.get(path, headers=headers)
    await resp.read()
    return resp


def is_hit(resp: Any) -> bool:
    return bool(resp.headers["Cache-Status"].startswith("edge; hit"))


async def test_the_origin_max_age_decides_freshness(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("short")
    origin.script[name] = {"Cache-Control": "public, max-age=2"}
    await get(edge, f"/r/{name}")
    clock.advance(1)
    hit = await get(edge, f"/r/{name}")
    assert is_hit(hit)
    assert hit.headers["Age"] == "1"
    assert hit.headers["Cache-Control"] == "public, max-age=2"  # the origin's, not the route's
    clock.advance(1.5)
    again = await get(edge, f"/r/{name}")
    assert not is_hit(again)
    assert origin.hits[name] == 2


async def test_s_maxage_wins_over_max_age_and_expires(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("smax")
    past = formatdate(time.time() - 3600, usegmt=True)
    origin.script[name] = {"Cache-Control": "max-age=0, s-maxage=30", "Expires": past}
    await get(edge, f"/r/{name}")
    clock.advance(20)
    assert is_hit(await get(edge, f"/r/{name}"))
    assert origin.hits[name] == 1


@pytest.mark.parametrize("said", [{"Cache-Control": "no-cache"},
                                  {"Cache-Control": "max-age=0"},
                                  {"Expires": "Thu, 01 Jan 1970 00:00:00 GMT"},
                                  {"Expires": "0"}])
async def test_an_answer_stale_on_arrival_is_revalidated_every_time(
        cache: Any, said: dict[str, str]) -> None:
    edge, origin, _ = cache
    name = unique("stale")
    origin.script[name] = said
    first = await get(edge, f"/r/{name}")
    assert first.status == 200
    for _ in range(2):
        again = await get(edge, f"/r/{name}")
        assert again.status == 200
        assert "fwd-status=304" in again.headers["Cache-Status"], again.headers
    assert origin.hits[name] == 3 and origin.conditional[name] == 2


async def test_the_origin_age_is_already_spent(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("aged")
    origin.script[name] = {"Cache-Control": "max-age=10", "Age": "8"}
    first = await get(edge, f"/r/{name}")
    assert first.headers["Age"] == "8"
    clock.advance(3)
    assert not is_hit(await get(edge, f"/r/{name}"))
    assert origin.hits[name] == 2


async def test_the_route_ttl_applies_when_the_origin_says_nothing(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("silent")
    first = await get(edge, f"/r/{name}")
    assert first.headers["Cache-Control"].startswith("public, max-age=60")
    clock.advance(59)
    assert is_hit(await get(edge, f"/r/{name}"))


async def test_override_makes_the_route_win(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("override")
    origin.script[name] = {"Cache-Control": "max-age=1"}
    await get(edge, f"/mine/{name}")
    clock.advance(30)
    hit = await get(edge, f"/mine/{name}")
    assert is_hit(hit)
    assert hit.headers["Cache-Control"].startswith("public, max-age=60")
    assert origin.hits[name] == 1


async def test_stale_extensions_from_the_origin_and_must_revalidate(cache: Any) -> None:
    edge, origin, clock = cache
    lazy, strict = unique("lazy"), unique("strict")
    origin.script[lazy] = {"Cache-Control": "max-age=1, stale-while-revalidate=30"}
    # the route allows 30 s of stale-while-revalidate; the origin's must-revalidate wins
    origin.script[strict] = {"Cache-Control": "max-age=1, must-revalidate"}
    for name in (lazy, strict):
        await get(edge, f"/r/{name}")
        await get(edge, f"/swr/{name}")
    clock.advance(2)
    stale = await get(edge, f"/r/{lazy}")
    assert "stale-while-revalidate" in stale.headers["Cache-Status"]
    strict_answer = await get(edge, f"/swr/{strict}")
    assert "detail=stale" not in strict_answer.headers["Cache-Status"]
    assert "fwd-status=304" in strict_answer.headers["Cache-Status"]


async def test_a_304_updates_the_stored_headers(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("updated")
    origin.script[name] = {"Cache-Control": "no-cache"}
    await get(edge, f"/r/{name}")
    origin.script[name] = {"Cache-Control": "max-age=60"}  # said by the 304
    revalidated = await get(edge, f"/r/{name}")
    assert "fwd-status=304" in revalidated.headers["Cache-Status"]
    hit = await get(edge, f"/r/{name}")
    assert is_hit(hit)
    assert hit.headers["Cache-Control"] == "max-age=60"
    assert origin.hits[name] == 2


async def test_request_directives(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("asked")
    missing = await edge.get(f"/r/{unique('never')}",
                             headers={"Cache-Control": "only-if-cached"})
    assert missing.status == 504
    assert (await missing.json())["type"].endswith("not-cached")
    await get(edge, f"/r/{name}")  # stored, fresh for the route's 60 s
    assert (await get(edge, f"/r/{name}", **{"Cache-Control": "only-if-cached"})).status == 200
    for directive in ("no-cache", "max-age=0", "min-fresh=120"):
        answer = await get(edge, f"/r/{name}", **{"Cache-Control": directive})
        assert not is_hit(answer), directive
    assert origin.hits[name] == 4
    clock.advance(10)
    assert is_hit(await get(edge, f"/r/{name}", **{"Cache-Control": "max-age=30"}))
    clock.advance(70)  # stale now
    stale = await get(edge, f"/r/{name}", **{"Cache-Control": "max-stale=60"})
    assert is_hit(stale)
    assert "max-stale" in stale.headers["Cache-Status"]
    assert origin.hits[name] == 4


async def test_a_write_invalidates_its_uri_and_its_location(cache: Any) -> None:
    edge, origin, _ = cache
    a, b = unique("a"), unique("b")
    for name in (a, b):
        await get(edge, f"/r/{name}")
    assert (await edge.post(f"/r/{a}", json={})).status == 201
    assert not is_hit(await get(edge, f"/r/{a}"))
    assert is_hit(await get(edge, f"/r/{b}"))
    origin.script[a] = {"Location": f"/r/{b}"}  # a write that says where it made a change
    assert (await edge.post(f"/r/{a}", json={})).status == 201
    assert not is_hit(await get(edge, f"/r/{b}"))
    assert origin.hits[b] == 2


async def test_a_write_on_one_instance_invalidates_every_instance(
        make_edge: Any, upstream: Any, redis_url: str) -> None:
    origin = Origin()
    url = await upstream(origin.app())
    env = {"EDGE_REDIS_URL": redis_url}
    one = await make_edge(services_yaml({"origin": url}), ROUTES, env=env)
    two = await make_edge(services_yaml({"origin": url}), ROUTES, env=env,
                          root=one.edge.config.root.parent / "two")
    name = unique("shared")
    await get(one, f"/r/{name}")
    assert is_hit(await get(two, f"/r/{name}"))
    assert (await one.post(f"/r/{name}", json={})).status == 201
    for _ in range(100):  # the purge travels through Redis
        await asyncio.sleep(0.02)
        answer = await get(two, f"/r/{name}")
        if not is_hit(answer):
            break
    else:
        raise AssertionError("the other instance kept serving what a write changed")


async def test_a_bare_304_keeps_what_the_stored_answer_said(cache: Any) -> None:
    """A 304 without caching headers leaves the stored ones in force (RFC 9111 §4.3.4):
    a `no-cache` answer stays one to revalidate, never fresh for the route's ttl."""
    edge, origin, _ = cache
    name = unique("bare")
    origin.script[name] = {"Cache-Control": "no-cache"}
    await get(edge, f"/r/{name}")
    origin.script[name] = {}  # its 304s say nothing of caching
    for _ in range(2):
        answer = await get(edge, f"/r/{name}")
        assert "fwd-status=304" in answer.headers["Cache-Status"]
    assert origin.conditional[name] == 2
