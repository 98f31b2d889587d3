"""config/examples/shared-cache/, run as shipped (only the origin's address moved to a test
origin): the edge as a standards-following shared cache in front of an origin it doesn't
own — every method and path through, GET/HEAD from the cache as the origin allows,
credentials passed and their answers private, writes purging, the breaker never opening."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from .conftest import catch_all

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "examples" / "shared-cache"


class Site:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.seen: dict[str, web.Request] = {}
        self.failing = False

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            key = f"{request.method} {request.path}"
            self.hits[key] = self.hits.get(key, 0) + 1
            self.seen[key] = request
            if self.failing:
                return web.Response(status=503, text="down for maintenance")
            if request.method not in ("GET", "HEAD"):
                await request.read()
                return web.Response(status=204)
            if request.path == "/":
                return web.Response(text="<h1>home</h1>", content_type="text/html",
                                    headers={"Cache-Control": "max-age=60"})
            if request.path == "/account":
                return web.Response(text=f"hello {request.headers.get('Cookie')}",
                                    headers={"Cache-Control": "private"})
            return web.Response(  # a static file: only its age says how long to keep it
                body=b"x" * 5000, content_type="application/javascript",
                headers={"Last-Modified": formatdate(time.time() - 86_400, usegmt=True)})

        return catch_all(handle)


@pytest.fixture
async def shared(make_edge: Any, upstream: Any) -> tuple[Any, Site]:
    site = Site()
    url = await upstream(site.app())
    edge_yaml = (EXAMPLE / "edge.yaml").read_text().replace("http://127.0.0.1:8000", url)
    assert url not in (EXAMPLE / "edge.yaml").read_text()
    routes = {p.name: p.read_text() for p in (EXAMPLE / "routes").glob("*.yaml")}
    return await make_edge(edge_yaml, routes), site


async def test_the_front_page_and_static_files_are_kept(shared: Any) -> None:
    edge, site = shared
    for _ in range(3):
        home = await edge.get("/")
        assert await home.text() == "<h1>home</h1>"
        script = await edge.get("/static/app.js", headers={"Accept-Encoding": "br"})
        assert len(await script.read()) == 5000
        assert "Content-Encoding" not in script.headers  # as the origin sent it
    assert site.hits == {"GET /": 1, "GET /static/app.js": 1}
    assert home.headers["Cache-Status"].startswith("edge; hit")
    assert home.headers["Cache-Control"] == "max-age=60"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_every_method_reaches_the_origin_and_writes_purge(shared: Any,
                                                                method: str) -> None:
    edge, site = shared
    await edge.get("/static/app.js")
    resp = await edge.request(method, "/static/app.js", data=b"{}")
    assert resp.status == 204 and site.hits[f"{method} /static/app.js"] == 1
    await edge.get("/static/app.js")
    # a successful write purges what is kept of its URL (RFC 9111 §4.4)
    assert site.hits["GET /static/app.js"] == (1 if method == "OPTIONS" else 2)


async def test_credentials_reach_the_origin_and_their_answers_stay_private(
        shared: Any) -> None:
    edge, site = shared
    for who in ("a", "b"):
        resp = await edge.get("/account", headers={"Cookie": f"session={who}",
                                                    "Authorization": f"Bearer {who}"})
        assert await resp.text() == f"hello session={who}"
        assert resp.headers["Cache-Control"] == "private"
        assert site.seen["GET /account"].headers["Authorization"] == f"Bearer {who}"
    home = await edge.get("/", headers={"Cookie": "session=a"})
    assert home.headers["Cache-Status"] == "edge; fwd=bypass"
    assert home.headers["Cache-Control"].startswith("private")


async def test_a_failing_origin_is_always_asked_and_stale_answers_cover_it(
        shared: Any) -> None:
    edge, site = shared
    await edge.get("/")
    site.failing = True
    for _ in range(8):
        assert (await edge.get("/api/x")).status == 503  # the origin's, never circuit-open
    assert site.hits["GET /api/x"] == 8
    home = await edge.get("/")
    assert home.status == 200  # still fresh
