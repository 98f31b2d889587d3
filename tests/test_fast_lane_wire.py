"""The fast lane writes a kept answer as bytes encoded when it was kept, not through
aiohttp's response object. Read off the socket: the same status, headers and body the walk
gives (less what is made per request), correct framing for GET, HEAD and 304, answers in
the order of pipelined requests, and the connection closed when the client asks."""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /shaped/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: "off"}
    shape: {}
    cache: {scope: public, ttl: 10m}
  - route: GET /files/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: "off"}
    cache: {scope: public}
"""}
PER_REQUEST = {"date", "age", "cache-status", "x-request-id", "server-timing"}


def origin() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        body = (b'{"id": "%s", "items": [' % request.path.encode()
                + b", ".join(b'{"n": %d}' % i for i in range(50)) + b"]}")
        return web.Response(body=body, content_type="application/json",
                            headers={"ETag": '"v1"', "Cache-Control": "public, max-age=600"})
    return catch_all(handler)


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    return await make_edge(services_yaml({"up": await upstream(origin())}), ROUTES)


Answer = tuple[str, list[tuple[str, str]], bytes]


async def read_answer(reader: asyncio.StreamReader, method: str) -> Answer:
    """One response, framed strictly by its Content-Length (none for HEAD and 304)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head[:-4].split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    assert all(len(h) == 2 for h in headers), head
    fields = {k.lower(): v for k, v in headers}
    assert len(fields) == len(headers), f"a field twice: {head}"
    code = int(status.split(" ")[1])
    if method == "HEAD" or code == 304:
        return status, headers, b""  # type: ignore[return-value]
    body = await reader.readexactly(int(fields["content-length"]))
    return status, headers, body  # type: ignore[return-value]


def request(method: str, path: str, rid: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: edge", "Accept-Encoding: identity",
             f"X-Request-ID: {rid}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def fields(answer: Answer) -> dict[str, str]:
    return {k.lower(): v for k, v in answer[1]}


@pytest.mark.parametrize("path", ["/shaped/1", "/files/1"])
async def test_kept_answers_go_out_as_the_walk_makes_them(edge: Any, path: str) -> None:
    url = edge.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        # the walk: a miss, then a hit that keeps the rendered answer for the fast lane
        writer.write(request("GET", path, "walk-1") + request("GET", path, "walk-2"))
        await read_answer(reader, "GET")
        walked = await read_answer(reader, "GET")
        assert edge.edge.state.cache.ready.answers, "not kept for the fast lane"
        etag = fields(walked)["etag"]
        # the fast lane, pipelined: four requests in one write, answered in order
        writer.write(request("GET", path, "fast-1") + request("HEAD", path, "fast-2")
                     + request("GET", path, "fast-3", f"If-None-Match: {etag}")
                     + request("GET", path, "fast-4"))
        got = [await read_answer(reader, m) for m in ("GET", "HEAD", "GET", "GET")]
    finally:
        writer.close()
    ok, head, nm, again = got
    assert [fields(a)["x-request-id"] for a in got] == ["fast-1", "fast-2", "fast-3", "fast-4"]
    assert ok[0] == head[0] == again[0] == walked[0] == "HTTP/1.1 200 OK"
    assert ok[2] == again[2] == walked[2] and head[2] == b""
    fixed = {k: v for k, v in fields(walked).items() if k not in PER_REQUEST}
    for answer in (ok, head, again):
        assert {k: v for k, v in fields(answer).items() if k not in PER_REQUEST} == fixed
        f = fields(answer)
        assert f["cache-status"].startswith("edge; hit; ttl=")
        assert int(f["age"]) >= 0
        assert f["server-timing"].startswith("edge;dur=")
        assert parsedate_to_datetime(f["date"]).tzinfo is not None
    assert nm[0] == "HTTP/1.1 304 Not Modified"
    assert fields(nm)["etag"] == etag and "content-type" not in fields(nm)
    assert "content-length" not in fields(nm)


async def test_the_connection_closes_when_the_client_asks(edge: Any) -> None:
    url = edge.make_url("/")
    for _ in range(2):
        await edge.get("/shaped/2", headers={"Accept-Encoding": "identity"})
    assert edge.edge.state.cache.ready.answers
    for extra, version in ((("Connection: close",), "1.1"), ((), "1.0")):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(request("GET", "/shaped/2", "bye", *extra, version=version))
            answer = await read_answer(reader, "GET")
            assert fields(answer)["connection"] == "close"
            assert fields(answer)["cache-status"].startswith("edge; hit")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the edge
        finally:
            writer.close()
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:  # HTTP/1.0 asking to keep the connection: told it is kept
        writer.write(request("GET", "/shaped/2", "kept", "Connection: keep-alive",
                             version="1.0") * 2)
        for _ in range(2):
            answer = await read_answer(reader, "GET")
            assert fields(answer)["connection"].lower() == "keep-alive"
    finally:
        writer.close()
