"""What the upstream receives on the wire: request framing through the edge.

The upstream here is a raw socket that parses HTTP itself (tests/rawwire.py): a library
server would normalise exactly the mistakes these tests are about.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import brotli
import orjson
import pytest
from aiohttp import web

from .conftest import bearer, catch_all, services_yaml
from .rawwire import RawUpstream, raw_exchange


def _gzip_of_nothing_padded(total: int) -> bytes:
    """A valid gzip member of an empty body, padded to `total` bytes with an FNAME field."""
    header = b"\x1f\x8b\x08\x08" + b"\x00" * 4 + b"\x00\x03"
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflated.compress(b"") + deflated.flush()
    trailer = b"\x00" * 8  # CRC32 and size of nothing
    name_len = total - len(header) - len(body) - len(trailer) - 1
    data = header + b"n" * name_len + b"\x00" + body + trailer
    assert len(data) == total and gzip.decompress(data) == b""
    return data


ROUTES = {"r.yaml": """
    routes:
      - route: GET /a
        source: {service: up, path: /a}
        rate_limit: []
      - route: GET /b
        source: {service: up, path: /b}
        rate_limit: []
      - route: POST /upload
        source: {service: up, path: /upload}
        max_request_body: 64KiB
        rate_limit: []
      - route: POST /bigupload
        source: {service: up, path: /bigupload}
        max_request_body: 4MiB
        rate_limit: []
      - route: POST /decoded
        source: {service: up, path: /decoded}
        request_encoding: decode
        max_request_body: 64KiB
        rate_limit: []
"""}


@pytest.fixture
async def raw_up() -> Any:
    up = await RawUpstream(early=True).start()
    yield up
    await up.close()


async def _edge(make_edge: Any, url: str) -> Any:
    # one pooled connection: every request to the upstream rides the same one
    edge_yaml = (f"services:\n  up:\n    url: {url}\n    pool: {{size: 1}}\n"
                 f"    retries: {{attempts: 1}}\n")
    return await make_edge(edge_yaml, ROUTES)


async def test_compressed_body_is_forwarded_as_sent_and_the_next_request_stays_whole(
        make_edge: Any, raw_up: RawUpstream) -> None:
    client = await _edge(make_edge, raw_up.url)
    body = _gzip_of_nothing_padded(54)
    host, port = client.server.host, client.server.port
    first = (b"GET /a HTTP/1.1\r\nHost: edge\r\nContent-Encoding: gzip\r\n"
             b"Content-Length: 54\r\n\r\n" + body)
    out = await raw_exchange(host, port, first)
    assert out.startswith(b"HTTP/1.1 200")
    resp = await client.get("/b", headers={"X-A": "DELETE /internal/admin/users/1002 HTTP/1.1"})
    assert resp.status == 200
    assert [r.line for r in raw_up.requests] == ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]
    assert raw_up.requests[0].body == body
    assert raw_up.requests[0].header("Content-Encoding") == "gzip"
    assert raw_up.requests[0].header("Content-Length") == "54"
    assert raw_up.requests[1].connection == raw_up.requests[0].connection  # pooled
    assert raw_up.errors == []


async def test_a_big_gzip_upload_arrives_whole_and_still_labelled(make_edge: Any,
                                                                  raw_up: RawUpstream) -> None:
    client = await _edge(make_edge, raw_up.url)
    data = orjson.dumps([{"i": i, "text": "x" * (i % 50)} for i in range(3000)])
    packed = gzip.compress(data)
    assert len(packed) < 64 * 1024 < len(data)
    resp = await client.post("/upload", data=packed, headers={"Content-Encoding": "gzip"})
    assert resp.status == 200
    [req] = raw_up.requests
    assert req.body == packed
    assert req.header("Content-Encoding") == "gzip"
    assert req.header("Content-Length") == str(len(packed))


async def test_a_library_upstream_reads_the_gzip_body_it_was_sent(make_edge: Any,
                                                                 upstream: Any) -> None:
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.json())  # aiohttp decodes Content-Encoding itself
        return web.json_response({"ok": True}, status=201)

    url = await upstream(catch_all(handler))
    client = await make_edge(services_yaml({"up": url}), ROUTES)
    doc = {"member_id": "1001", "items": [{"amount": 150000}] * 500}
    resp = await client.post("/upload", data=gzip.compress(orjson.dumps(doc)),
                             headers={"Content-Encoding": "gzip",
                                      "Content-Type": "application/json"})
    assert resp.status == 201
    assert seen == [doc]


@pytest.mark.parametrize("coding,pack", [("gzip", gzip.compress), ("br", brotli.compress),
                                         ("deflate", zlib.compress)])
async def test_decode_routes_send_decoded_bytes_reframed(make_edge: Any, raw_up: RawUpstream,
                                                         coding: str, pack: Any) -> None:
    client = await _edge(make_edge, raw_up.url)
    data = b'{"hello": "' + b"w" * 5000 + b'"}'
    resp = await client.post("/decoded", data=pack(data), headers={"Content-Encoding": coding})
    assert resp.status == 200
    [req] = raw_up.requests
    assert req.body == data
    assert req.all("Content-Encoding") == []
    assert req.header("Content-Length") == str(len(data))


async def test_decode_routes_refuse_bombs_and_unknown_codings(make_edge: Any,
                                                              raw_up: RawUpstream) -> None:
    client = await _edge(make_edge, raw_up.url)
    bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))
    resp = await client.post("/decoded", data=bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"
    resp = await client.post("/decoded", data=b"abc", headers={"Content-Encoding": "zz"})
    assert resp.status == 415
    assert resp.content_type == "application/problem+json"
    assert "gzip" in resp.headers["Accept-Encoding"]
    resp = await client.post("/decoded", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert resp.status == 400
    assert raw_up.requests == []


async def test_bodies_over_the_limit_never_reach_the_upstream(make_edge: Any,
                                                              raw_up: RawUpstream) -> None:
    client = await _edge(make_edge, raw_up.url)
    host, port = client.server.host, client.server.port
    big = b"x" * (70 * 1024)
    # announced too big
    resp = await client.post("/upload", data=big)
    assert resp.status == 413
    # chunked, no length announced: read up to the limit before the upstream is called

    async def chunks() -> Any:
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    resp = await client.post("/upload", data=chunks())
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"
    out = await raw_exchange(host, port, b"POST /upload HTTP/1.1\r\nHost: e\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n"
                             + b"".join(b"%x\r\n" % 4096 + b"y" * 4096 + b"\r\n"
                                        for _ in range(20)) + b"0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413")
    assert raw_up.requests == [] and raw_up.raw == []


async def test_a_small_chunked_body_is_reframed_with_its_length(make_edge: Any,
                                                                raw_up: RawUpstream) -> None:
    client = await _edge(make_edge, raw_up.url)

    async def chunks() -> Any:
        yield b'{"a":'
        yield b' 1}'

    resp = await client.post("/upload", data=chunks())
    assert resp.status == 200
    [req] = raw_up.requests
    assert req.body == b'{"a": 1}'
    assert req.header("Content-Length") == "8"
    assert req.all("Transfer-Encoding") == []


async def test_a_long_chunked_body_over_the_limit_never_completes_upstream(
        make_edge: Any) -> None:
    up = await RawUpstream(early=False).start()
    try:
        client = await _edge(make_edge, up.url)
        piece = b"z" * 65536

        async def chunks() -> Any:
            for _ in range(80):  # 5 MiB, past the spool: it starts streaming upstream
                yield piece

        resp = await client.post("/bigupload", data=chunks())
        assert resp.status == 413
        assert resp.content_type == "application/problem+json"
        assert up.requests == []  # the upstream never parsed a complete request
        assert len(up.raw) == 1 and len(up.raw[0]) > 1024 * 1024  # it did start
        # the next request gets a fresh connection and arrives whole
        resp = await client.post("/bigupload", data=b"ok")
        assert resp.status == 200
        assert [r.body for r in up.requests] == [b"ok"]
    finally:
        await up.close()


async def test_underscored_spellings_of_identity_headers_never_reach_the_upstream(
        make_edge: Any, raw_up: RawUpstream) -> None:
    client = await _edge(make_edge, raw_up.url)
    host, port = client.server.host, client.server.port
    out = await raw_exchange(host, port, b"GET /a HTTP/1.1\r\nHost: e\r\n"
                             b"X_Edge_Subject: 1002\r\nx_forwarded_for: 10.0.0.1\r\n"
                             b"X-Edge-Subject: 1002\r\nX_Trace: kept\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    [req] = raw_up.requests
    names = [k.lower() for k, _ in req.headers]
    assert "x_edge_subject" not in names and "x-edge-subject" not in names
    assert "x_forwarded_for" not in names
    assert req.header("X_Trace") == "kept"


async def test_what_rules_and_shared_caches_send_upstream_on_the_wire(make_edge: Any) -> None:
    """Body rules re-frame what they re-serialize; a shared (public) answer is fetched
    without the client's cookie, token or made-up Host."""
    up = await RawUpstream(body=b'{"items": []}').start()
    try:
        edge_yaml = (f"services:\n  up:\n    url: {up.url}\n    pool: {{size: 1}}\n"
                     "public_hosts: [api.example.com]\n"
                     "auth:\n  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}\n")
        client = await make_edge(edge_yaml, {"r.yaml": """
            routes:
              - route: POST /things
                source: {service: up, path: /things}
                auth:
                  jwt: required
                  body: [{field: /member_id, claim: sub, set: true}]
                rate_limit: []
              - route: GET /public
                source: {service: up, path: /public}
                shape: {}
                cache: {scope: public, ttl: 60s}
                auth: {jwt: "off", forward_token: true}
                rate_limit: []
        """})
        packed = gzip.compress(b'{"note": "' + b"n" * 300 + b'"}')
        r = await client.post("/things", data=packed, headers={
            **bearer("1001"), "Content-Encoding": "gzip", "Content-Type": "application/json"})
        assert r.status == 200
        r = await client.get("/public", headers={"Cookie": "s=alice", "Host": "evil.example",
                                                 "Authorization": "Bearer x.y.z"})
        assert r.status == 200
        write, read = up.requests
        sent = orjson.dumps({"note": "n" * 300, "member_id": "1001"})
        assert write.body == sent and write.header("Content-Length") == str(len(sent))
        assert write.all("Content-Encoding") == [] and write.all("Transfer-Encoding") == []
        names = {k.lower() for k, _ in read.headers}
        assert not names & {"cookie", "authorization"}
        assert read.all("X-Forwarded-Host") == ["api.example.com"]
        assert read.all("Host") == [up.url.removeprefix("http://")]
        assert up.errors == []
    finally:
        await up.close()
