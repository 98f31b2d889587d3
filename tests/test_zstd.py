"""Content-Encoding: zstd (RFC 8878, RFC 9659) beside br and gzip, over real HTTP: shaped
answers with their own ETag per coding and their own cached variant, 304s across codings,
pass-through bodies compressed as they stream, the configured preference among codings a
client rates equally, and an upstream's zstd body decoded for shaping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zstandard
from aiohttp import web

from .conftest import catch_all, services_yaml

DOC = b'{"claims": [' + b",".join(
    b'{"id": %d, "claim_number": "KLM/2026/03/%06d", "status": "approved"}' % (i, i)
    for i in range(200)) + b"]}"
ROUTES = {"r.yaml": """
routes:
  - route: GET /shaped/{what}
    source: {service: svc, path: "/{what}"}
    auth: {jwt: "off"}
    shape: {}
    cache: {scope: public, ttl: 10m}
  - route: GET /pass/{what}
    source: {service: svc, path: "/{what}"}
    auth: {jwt: "off"}
"""}


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def app(hits: list[str]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        what = request.match_info["tail"]
        hits.append(what)
        if what == "zstd-upstream":
            return web.Response(body=zstandard.ZstdCompressor().compress(DOC), headers={
                "Content-Type": "application/json", "Content-Encoding": "zstd"})
        if what == "stream":
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            for i in range(3):
                await resp.write(b"line %d of a slow text stream\n" % i * 20)
                await asyncio.sleep(0.2)
            await resp.write_eof()
            return resp
        return web.Response(body=DOC, content_type="application/json")

    return catch_all(handle)


@pytest.fixture
async def setup(make_edge: Any, upstream: Any) -> tuple[Any, list[str]]:
    hits: list[str] = []
    url = await upstream(app(hits))
    return await make_edge(services_yaml({"svc": url}), ROUTES), hits


async def get(edge: Any, path: str, accept: str, **headers: str) -> tuple[Any, bytes]:
    resp = await edge.get(path, headers={"Accept-Encoding": accept, **headers},
                          auto_decompress=False)
    return resp, await resp.read()


async def test_a_shaped_answer_in_zstd_has_its_own_etag_and_variant(
        setup: tuple[Any, list[str]]) -> None:
    edge, hits = setup
    z, body = await get(edge, "/shaped/doc", "zstd")
    assert z.headers["Content-Encoding"] == "zstd"
    assert unzstd(body) == DOC.replace(b": ", b":").replace(b", ", b",")  # re-serialized
    assert z.headers["ETag"].endswith('-zstd"')
    assert "Accept-Encoding" in z.headers["Vary"]
    br, _ = await get(edge, "/shaped/doc", "br")
    plain, raw = await get(edge, "/shaped/doc", "identity")
    assert br.headers["Content-Encoding"] == "br" and "Content-Encoding" not in plain.headers
    assert len({z.headers["ETag"], br.headers["ETag"], plain.headers["ETag"]}) == 3
    assert unzstd(body) == raw
    again, again_body = await get(edge, "/shaped/doc", "zstd")
    assert again.headers["Cache-Status"].startswith("edge; hit")
    assert again_body == body and hits == ["doc"]  # one upstream call for every coding
    # a client holding any coding's variant holds the representation
    for held in (z.headers["ETag"], plain.headers["ETag"]):
        nm, _ = await get(edge, "/shaped/doc", "zstd", **{"If-None-Match": held})
        assert nm.status == 304 and nm.headers["ETag"] == z.headers["ETag"]


@pytest.mark.parametrize("accept, coding", [
    ("gzip, deflate, br, zstd", "br"),  # Chromium: br first among equals (the default)
    ("zstd", "zstd"),
    ("zstd;q=1, br;q=0.5", "zstd"),
    ("gzip, zstd;q=0", "gzip"),
])
async def test_q_values_then_the_configured_order(setup: tuple[Any, list[str]], accept: str,
                                                  coding: str) -> None:
    edge, _ = setup
    resp, _ = await get(edge, "/shaped/doc", accept)
    assert resp.headers["Content-Encoding"] == coding


async def test_prefer_puts_zstd_first(make_edge: Any, upstream: Any) -> None:
    url = await upstream(app([]))
    edge = await make_edge(services_yaml({"svc": url}, "compression:\n  prefer: [zstd, br, gzip]\n"
                                         "  zstd_level: 9\n"), ROUTES)
    for path in ("/shaped/doc", "/pass/doc"):
        resp, body = await get(edge, path, "gzip, deflate, br, zstd")
        assert resp.headers["Content-Encoding"] == "zstd", path
        assert len(unzstd(body)) > len(body) * 4


async def test_pass_through_streams_in_zstd(setup: tuple[Any, list[str]]) -> None:
    edge, _ = setup
    resp = await edge.get("/pass/stream", headers={"Accept-Encoding": "zstd"},
                          auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "zstd"
    decoder = zstandard.ZstdDecompressor().decompressobj()
    first = await resp.content.readany()  # the first lines, decodable before the rest
    assert decoder.decompress(first).startswith(b"line 0 of a slow text stream")
    rest = decoder.decompress(await resp.read())
    assert rest.endswith(b"line 2 of a slow text stream\n")
    json_resp, body = await get(edge, "/pass/doc", "zstd")
    assert json_resp.headers["Content-Encoding"] == "zstd" and unzstd(body) == DOC


async def test_an_upstream_zstd_body_is_decoded_for_shaping(
        setup: tuple[Any, list[str]]) -> None:
    edge, _ = setup
    resp = await edge.get("/shaped/zstd-upstream", headers={"Accept-Encoding": "identity"})
    assert resp.status == 200
    doc = await resp.json()
    assert len(doc["claims"]) == 200 and "X-Edge-Shaped" not in resp.headers
