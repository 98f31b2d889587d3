"""Location and Content-Location from a backend come out as the edge's own paths."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from edge.locations import LocationRewriter
from edge.routing import parse_template

from .conftest import catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: POST /api/v1/claims
    source: {service: claims, path: /claims}
  - route: GET /api/v1/claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    shape: {}
  - route: GET /api/v1/claims/{claim_id}/documents/{doc}.pdf
    source: {service: claims, path: "/claims/{claim_id}/docs/{doc}"}
  - route: GET /api/v1/old/{claim_id}
    source: {service: claims, path: "/old/{claim_id}"}
"""}


def app() -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        where = request.headers.get("X-Answer-Location", "")
        status = 201 if request.method == "POST" else 301 if "/old/" in request.path else 200
        return web.json_response({"id": "CLM-7"}, status=status, headers={
            "Location": where, "Content-Location": where})

    return catch_all(handle)


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> tuple[Any, str]:
    url = str(await upstream(app()))
    return await make_edge(services_yaml({"claims": url + "/v2"}), ROUTES), url


@pytest.mark.parametrize("sent, expected", [
    ("/v2/claims/CLM-7", "/api/v1/claims/CLM-7"),
    ("{up}/v2/claims/CLM-7", "/api/v1/claims/CLM-7"),  # the service's own address
    ("/v2/claims/CLM-7?view=full#items", "/api/v1/claims/CLM-7?view=full#items"),
    ("/v2/claims/CLM%207", "/api/v1/claims/CLM%207"),
    ("/v2/claims/CLM-7/docs/d1", "/api/v1/claims/CLM-7/documents/d1.pdf"),
    ("https://cdn.example/claims/CLM-7", "https://cdn.example/claims/CLM-7"),  # elsewhere
    ("http://127.0.0.1:1/v2/claims/CLM-7", "http://127.0.0.1:1/v2/claims/CLM-7"),
    ("/v2/members/1001", "/v2/members/1001"),  # no GET route reads it
    ("/claims/CLM-7", "/claims/CLM-7"),  # outside the service's base path
    ("CLM-7", "CLM-7"),  # relative to the request: left as sent
    ("/v2/claims/..%2F..%2Fetc", "/v2/claims/..%2F..%2Fetc"),
])
async def test_created_resources_are_named_by_edge_paths(edge: Any, sent: str,
                                                         expected: str) -> None:
    client, up = edge
    resp = await client.post("/api/v1/claims", json={},
                             headers={"X-Answer-Location": sent.replace("{up}", up)})
    assert resp.status == 201
    assert resp.headers["Location"] == expected
    assert resp.headers["Content-Location"] == expected


async def test_redirects_and_shaped_answers_too(edge: Any) -> None:
    client, up = edge
    resp = await client.get("/api/v1/old/CLM-7", allow_redirects=False,
                            headers={"X-Answer-Location": f"{up}/v2/claims/CLM-7"})
    assert resp.status == 301 and resp.headers["Location"] == "/api/v1/claims/CLM-7"
    resp = await client.get("/api/v1/claims/CLM-7",
                            headers={"X-Answer-Location": "/v2/claims/CLM-7"})
    assert resp.status == 200  # a shaped route rebuilds its headers: still rewritten
    assert resp.headers["Content-Location"] == "/api/v1/claims/CLM-7"


def test_routes_that_cannot_be_reversed_are_left_out() -> None:
    rewrite = LocationRewriter("http://claims:8001")
    rewrite.add("/claims?member={member}", parse_template("/members/{member}/claims"))
    rewrite.add("/claims/{id}/{extra}", parse_template("/c/{id}"))  # extra has no home
    rewrite.add("/claims/{a.id}", parse_template("/c/{id}"))  # another source's body
    rewrite.add("/claims/{id}", parse_template("/first/{id}"))
    rewrite.add("/claims/{id}", parse_template("/second/{id}"))  # the first one wins
    assert rewrite.routes == 1
    assert rewrite("/claims") == "/claims"
    assert rewrite("/claims/7") == "/first/7"
    assert rewrite("http://claims:8001/claims/7") == "/first/7"
    assert rewrite("http://claims/claims/7") == "http://claims/claims/7"  # port 80
    assert rewrite("http://[::1/claims/7") == "http://[::1/claims/7"  # unparseable
