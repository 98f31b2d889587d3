"""What is added at delivery, after the cache: the envelope's per-request metadata,
Server-Timing on every answer, and the bytes-saved metrics for composed answers."""

from __future__ import annotations

import re
from typing import Any

import msgpack
import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /things
    source: {service: svc, path: /things}
    shape: {envelope: {when: on_request}}
    cache: {scope: public, ttl: 60s}
    rate_limit: []
  - route: GET /fresh
    source: {service: svc, path: /things}
    shape: {}
    rate_limit: []
  - route: GET /both
    sources:
      a: {service: svc, path: /things}
      b: {service: svc, path: /things}
    shape: {fields: {default: "a(items(id))"}}
    rate_limit: []
"""}


@pytest.fixture
async def client(make_edge: Any, upstream: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": i, "x": "y" * 40} for i in range(10)]})

    url = await upstream(catch_all(handler))
    return await make_edge(services_yaml({"svc": url}), ROUTES)


async def test_envelope_metadata_is_each_requests_own(client: Any) -> None:
    first = await client.get("/things?envelope=true")
    second = await client.get("/things?envelope=true")
    a, b = await first.json(), await second.json()
    assert a["metadata"]["cached"] is False and b["metadata"]["cached"] is True
    assert a["data"] == b["data"] and a["data"]["items"][0]["id"] == 0
    assert second.headers["Cache-Status"].startswith("edge; hit")
    # the ETag is the data's, weak: the same for both, and the plain answer shares it
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["ETag"].startswith("W/")
    plain = await client.get("/things")
    assert plain.headers["Cache-Status"].startswith("edge; hit")  # one entry for both
    assert "success" not in await plain.json()
    again = await client.get("/things?envelope=true",
                             headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304


async def test_envelope_in_msgpack(client: Any) -> None:
    r = await client.get("/things", headers={"X-Edge-Envelope": "true",
                                             "Accept": "application/msgpack"})
    doc = msgpack.unpackb(await r.read())
    assert doc["success"] is True and len(doc["data"]["items"]) == 10
    assert set(doc["metadata"]) >= {"cached", "response_time_ms"}


TIMING = re.compile(r"^edge;dur=\d+\.\d")


@pytest.mark.parametrize("path,status,cache", [
    ("/things", 200, "cache;desc=miss"),
    ("/things", 200, "cache;desc=hit"),
    ("/fresh", 200, None),
    ("/nowhere", 404, None),
    ("/health", 200, None),
])
async def test_server_timing_on_every_answer(client: Any, path: str, status: int,
                                             cache: str | None) -> None:
    if cache == "cache;desc=hit":
        await client.get(path)
    r = await client.get(path)
    assert r.status == status
    timing = r.headers["Server-Timing"]
    assert TIMING.match(timing), timing
    if cache:
        assert cache in timing
    if path == "/fresh":
        assert "upstream;dur=" in timing


async def test_composed_answers_count_the_bytes_they_save(client: Any) -> None:
    r = await client.get("/both")
    assert r.status == 200
    metrics = client.edge.metrics.render().decode()
    line = next(x for x in metrics.splitlines()
                if x.startswith("edge_shaped_upstream_bytes_total") and "/both" in x)
    assert float(line.rsplit(" ", 1)[1]) > 2 * len(await r.read())
