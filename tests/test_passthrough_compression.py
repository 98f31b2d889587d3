"""Pass-through routes compress what the upstream sent uncompressed, as it streams."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import brotli
import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml

DOC = b'{"claims": [' + b",".join(
    b'{"claim_number": "KLM/2026/03/%06d", "status": "approved"}' % i for i in range(200)
) + b"]}"


def app() -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        what = request.match_info["tail"]
        if what == "json":
            return web.Response(body=DOC, content_type="application/json",
                                headers={"ETag": '"v1"'})
        if what == "tiny":
            return web.Response(body=b'{"a": 1}', content_type="application/json")
        if what == "gzipped":
            return web.Response(body=gzip.compress(DOC), headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"})
        if what == "png":
            return web.Response(body=DOC, content_type="image/png")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for i in range(3 if what == "drip" else 300):
            await resp.write(b"line %d of a long text stream\n" % i * 40)
            if what == "drip":
                await asyncio.sleep(0.3)
        await resp.write_eof()
        return resp

    return catch_all(handle)


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(app())
    return await make_edge(services_yaml({"svc": url}),
                           {"r.yaml": "route: GET /{what}\nsource: {service: svc, path: "
                                      "\"/{what}\"}\n"})


async def fetch(edge: Any, path: str, accept: str) -> tuple[Any, bytes]:
    resp = await edge.get(path, headers={"Accept-Encoding": accept}, auto_decompress=False)
    return resp, await resp.read()


@pytest.mark.parametrize("accept, coding, decode", [
    ("br", "br", brotli.decompress),
    ("gzip, br;q=0.5", "gzip", gzip.decompress),
])
async def test_json_is_compressed_and_etag_weakened(edge: Any, accept: str, coding: str,
                                                    decode: Any) -> None:
    resp, body = await fetch(edge, "/json", accept)
    assert resp.headers["Content-Encoding"] == coding
    assert "Accept-Encoding" in resp.headers["Vary"]
    assert resp.headers["ETag"] == 'W/"v1"'
    assert decode(body) == DOC and len(body) < len(DOC) / 5


@pytest.mark.parametrize("path, accept", [
    ("/json", "identity"), ("/tiny", "br"), ("/png", "br"), ("/gzipped", "br")])
async def test_left_alone(edge: Any, path: str, accept: str) -> None:
    resp, body = await fetch(edge, path, accept)
    assert resp.headers.get("Content-Encoding") in (None, "gzip")
    if path == "/gzipped":
        assert gzip.decompress(body) == DOC  # never compressed twice
    if path == "/json":
        assert resp.headers["ETag"] == '"v1"'


async def test_long_text_stream_is_compressed_as_it_flows(edge: Any) -> None:
    resp, body = await fetch(edge, "/stream", "gzip")
    assert resp.headers["Content-Encoding"] == "gzip"
    text = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    assert text.count(b"\n") == 300 * 40


async def test_slow_stream_chunks_arrive_decodable(edge: Any) -> None:
    resp = await edge.get("/drip", headers={"Accept-Encoding": "br"}, auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "br"
    decoder = brotli.Decompressor()
    first = await resp.content.readany()
    # the first flushed chunk decodes on its own, before the upstream has finished
    assert decoder.process(first).startswith(b"line 0 of a long text stream")
