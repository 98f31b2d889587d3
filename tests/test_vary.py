"""Every variant of a route says the same, complete Vary (RFC 9110 §12.5.5): it comes from
what the route's steps read, declared once, not from the headers one request carried."""

from __future__ import annotations

import io
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from .conftest import catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /claims
    source: {service: svc, path: /claims}
    shape:
      fields: {default: "*", phone: "items(id)", slow: "items(id)"}
      keymap: k1
    cache: {scope: public, ttl: 60s}
    rate_limit: []
  - route: GET /plain
    source: {service: svc, path: /claims}
    shape: {}
    rate_limit: []
  - route: GET /raw
    source: {service: svc, path: /raw}
    rate_limit: []
  - route: GET /img/{name}.jpg
    source: {service: svc, path: "/img/{name}.jpg"}
    image: {widths: [100, 200, 400]}
    rate_limit: []
"""}

KEYMAPS = """
keymaps:
  k1: {items: it}
"""

REQUESTS = [
    {},
    {"X-Device-Type": "phone"},
    {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"},
    {"Save-Data": "on"},
    {"Accept-Encoding": "br", "X-Device-Type": "tablet"},
]


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
async def url(upstream: Any) -> str:
    photo = _jpeg()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/raw":
            return web.json_response({"big": "x" * 2000})
        if request.path.startswith("/img/"):
            return web.Response(body=photo, content_type="image/jpeg")
        return web.json_response({"items": [{"id": i, "n": "x" * 50} for i in range(20)]},
                                 headers={"Vary": "Accept-Language"})

    return str(await upstream(catch_all(handler)))


async def varies(client: Any, path: str) -> set[str]:
    seen = set()
    for headers in REQUESTS:
        r = await client.get(path, headers=headers)
        assert r.status == 200, await r.text()
        seen.add(r.headers.get("Vary"))
    return seen


async def test_a_shaped_cached_route_sends_one_complete_vary(make_edge: Any, url: str) -> None:
    client = await make_edge(services_yaml({"svc": url}, KEYMAPS), ROUTES)
    for _ in range(2):  # misses, then hits
        assert await varies(client, "/claims") == {
            "Accept, Accept-Encoding, X-Device-Type, User-Agent, Save-Data, ECT, Downlink, "
            "RTT, X-Network-Type, X-Edge-Keymap, Accept-Language"}
    assert await varies(client, "/plain") == {"Accept, Accept-Encoding, Accept-Language"}


async def test_the_configured_device_header_is_the_one_named(make_edge: Any, url: str) -> None:
    edge_yaml = services_yaml({"svc": url}, KEYMAPS + """
devices:
  header: X-Client-Class
  user_agent: []
""")
    client = await make_edge(edge_yaml, ROUTES)
    [vary] = await varies(client, "/claims")
    assert "X-Client-Class" in vary
    assert "User-Agent" not in vary and "X-Device-Type" not in vary  # no UA rules: no UA


async def test_pass_through_compression_always_says_it_varies(make_edge: Any,
                                                              url: str) -> None:
    client = await make_edge(services_yaml({"svc": url}, KEYMAPS), ROUTES)
    for headers in ({"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip"}, {}):
        r = await client.get("/raw", headers=headers, auto_decompress=False)
        assert r.headers["Vary"] == "Accept-Encoding"


async def test_image_answers_name_every_hint_they_read(make_edge: Any, url: str) -> None:
    client = await make_edge(services_yaml({"svc": url}, KEYMAPS), ROUTES)
    seen = await varies(client, "/img/a.jpg")
    r = await client.get("/img/a.jpg", headers={"Sec-CH-Width": "150"})
    seen.add(r.headers["Vary"])
    [vary] = seen
    for name in ("Accept", "Sec-CH-Width", "Sec-CH-DPR", "Sec-CH-Viewport-Width",
                 "X-Device-Type", "User-Agent", "Save-Data"):
        assert name in vary.split(", ")
