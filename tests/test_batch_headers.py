"""Batch items' own headers: tokens only, bounded, and never one the edge sets itself —
in no spelling an upstream could read as it (case, whitespace, `_` for `-`)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from .conftest import catch_all, services_yaml
from .test_auth import AUTH, bearer, token

ROUTES = {"r.yaml": """
routes:
  - route: GET /api/echo
    source: {service: svc, path: /echo}
    auth: {jwt: required}
  - route: POST /api/notes
    source: {service: svc, path: /notes}
    auth: {jwt: required}
    idempotency: {ttl: 1h}
  - route: POST /batch
    batch: {max_items: 20}
  - route: POST /offline/queue
    offline_queue: {}
"""}
IDENTITY = {"x-edge-subject", "x-edge-roles"}


class Recorder:
    """An upstream that answers `{}` and keeps the raw header pairs of every request."""

    def __init__(self) -> None:
        self.seen: list[list[tuple[bytes, bytes]]] = []

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            self.seen.append(list(request.raw_headers))
            return web.json_response({}, status=201 if request.method == "POST" else 200)

        return catch_all(handler)


@pytest.fixture
async def setup(make_edge: Any, upstream: Any) -> tuple[Any, Recorder]:
    recorder = Recorder()
    url = await upstream(recorder.app())
    return await make_edge(services_yaml({"svc": url}, AUTH), ROUTES), recorder


async def batch(edge: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = await edge.post("/batch", data=orjson.dumps(items),
                           headers=bearer(token(sub="1001", roles=["member"])))
    assert resp.status == 200, await resp.text()
    out: list[dict[str, Any]] = orjson.loads(await resp.read())
    return out


def assert_refused(item: dict[str, Any], detail: str) -> None:
    """A 400 problem of its own, whose detail says what was wrong (or names the header)."""
    assert item["status"] == 400, item
    assert item["headers"]["Content-Type"] == "application/problem+json"
    assert item["body"]["type"] == "urn:edge:problem:bad-request"
    assert item["body"]["status"] == 400
    assert detail in item["body"]["detail"]
    assert item["body"]["request_id"]


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("name", [
    " X-Custom", "X-Custom ", "X-Custom\t", "X Custom", "X-Custom:", "X-A\r\nX-B", "X-A\nX-B",
    "X-A\rX-B", "X-A\0", "X-(Custom)", "X-Ümlaut", "",
])
async def test_item_header_names_must_be_tokens(setup: Any, name: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    edge, recorder = setup
    out = await batch(edge, [
        {"id": "bad", "path": "/api/echo", "headers": {name: "1002"}},
        {"id": "ok", "path": "/api/echo", "headers": {"X-Custom": "fine"}},
    ])
    assert_refused(out[0], f"{name!r} is not a valid header name")
    assert out[1]["status"] == 200
    assert len(recorder.seen) == 1  # only the good item reached the upstream
    assert (b"X-Custom", b"fine") in recorder.seen[0]
    no_errors_logged(caplog)


@pytest.mark.parametrize("name", [
    "X-Edge-Subject ", "X-Edge-Roles\t", "X_Edge_Subject", "x_edge_roles", " x-edge_roles",
    "X-EDGE-SUBJECT\r\n", "host ", "X_Forwarded_For", "X_Forwarded_Host", "forwarded\t",
    "Transfer_Encoding", "Content_Length", "Proxy_Authorization", "authorization ", "COOKIE\t",
])
async def test_identity_and_edge_owned_names_are_refused_in_any_spelling(
        setup: Any, name: str, caplog: pytest.LogCaptureFixture) -> None:
    edge, recorder = setup
    out = await batch(edge, [
        {"id": "bad", "path": "/api/echo", "headers": {name: "1002"}},
        {"id": "ok", "path": "/api/echo"},
    ])
    assert_refused(out[0], repr(name))
    assert out[1]["status"] == 200
    assert len(recorder.seen) == 1
    no_errors_logged(caplog)


@pytest.mark.parametrize("name", ["X-Edge-Subject", "x-edge-roles"])
async def test_an_identity_header_spelled_exactly_is_refused_too(setup: Any,
                                                                 name: str) -> None:
    edge, recorder = setup
    out = await batch(edge, [{"id": "bad", "path": "/api/echo", "headers": {name: "1002"}}])
    assert_refused(out[0], "an item can't set it")
    assert recorder.seen == []


@pytest.mark.parametrize("headers, detail", [
    ({"X-Custom": "a\x01b"}, "must be a one-line string"),
    ({"X-Custom": "a\x7fb"}, "must be a one-line string"),
    ({"X-Custom": "v" * 4097}, "longer than 4096"),
    ({"X-" + "n" * 127: "v"}, "longer than 128"),
    ({f"X-H{i}": "v" for i in range(33)}, "at most 32 headers"),
])
async def test_values_are_one_line_and_every_part_is_bounded(
        setup: Any, headers: dict[str, str], detail: str,
        caplog: pytest.LogCaptureFixture) -> None:
    edge, recorder = setup
    out = await batch(edge, [
        {"id": "bad", "path": "/api/echo", "headers": headers},
        {"id": "ok", "path": "/api/echo", "headers": {
            "X-Tabbed": "a\tb", "X-Long": "v" * 4096, "X-" + "n" * 126: "v",
            **{f"X-H{i}": "v" for i in range(29)}}},
    ])
    assert_refused(out[0], detail)
    assert out[1]["status"] == 200
    assert len(recorder.seen) == 1
    assert (b"X-Tabbed", b"a\tb") in recorder.seen[0]
    no_errors_logged(caplog)


async def test_offline_operations_refuse_the_same_names(setup: Any) -> None:
    edge, recorder = setup
    ops = [{"local_id": "a", "method": "POST", "path": "/api/notes", "body": {"n": 1},
            "headers": {"X_Edge_Subject": "1002"}},
           {"local_id": "b", "method": "POST", "path": "/api/notes", "body": {"n": 2},
            "headers": {"X-Edge-Queued-At ": "yesterday"}},
           {"local_id": "c", "method": "POST", "path": "/api/notes", "body": {"n": 3},
            "headers": {"Idempotency-Key": "mine"}},
           {"local_id": "d", "method": "POST", "path": "/api/notes", "body": {"n": 4}}]
    resp = await edge.post("/offline/queue", data=orjson.dumps({"operations": ops}),
                           headers=bearer(token()))
    assert resp.status == 200, await resp.text()
    results = (await resp.json())["results"]
    assert [r["status"] for r in results] == [400, 400, 400, 201]
    assert results[0]["error"]["type"] == "urn:edge:problem:bad-request"
    assert len(recorder.seen) == 1


class RawUpstream:
    """A bare TCP upstream: keeps the bytes of each request head, answers a fixed 200."""

    ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: 2\r\n\r\n{}")

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(self.ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[RawUpstream, str]]:
    raw = RawUpstream()
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield raw, f"http://127.0.0.1:{port}"


async def test_no_spoofed_identity_line_reaches_a_raw_upstream(
        make_edge: Any, raw_upstream: tuple[RawUpstream, str],
        caplog: pytest.LogCaptureFixture) -> None:
    raw, url = raw_upstream
    edge = await make_edge(services_yaml({"svc": url}, AUTH), ROUTES)
    spoofs = [{"X-Edge-Subject ": "1002"}, {"X-Edge-Roles\t": "admin"},
              {"X_Edge_Subject": "1002"}, {"x_edge_roles": "admin"},
              {"X-Edge-Subject \r\nX-Edge-Roles": "admin"},
              {"X-Custom": "1\r\nX-Edge-Roles: admin"}]
    out = await batch(edge, [{"id": i, "path": "/api/echo", "headers": h}
                             for i, h in enumerate(spoofs)]
                      + [{"id": "ok", "path": "/api/echo", "headers": {"X-Custom": "1"}}])
    assert [i["status"] for i in out] == [400] * len(spoofs) + [200]
    assert len(raw.heads) == 1
    lines = raw.heads[0].split(b"\r\n")
    names = [line.partition(b":")[0] for line in lines[1:] if line]
    spelled = [n for n in names if re.sub(rb"[\s_-]", b"", n.lower())
               in (b"xedgesubject", b"xedgeroles")]
    assert sorted(spelled) == [b"X-Edge-Roles", b"X-Edge-Subject"]  # the real ones, once
    assert b"X-Edge-Subject: 1001\r\n" in raw.heads[0]
    assert b"X-Edge-Roles: member\r\n" in raw.heads[0]
    assert b"admin" not in raw.heads[0]
    no_errors_logged(caplog)
