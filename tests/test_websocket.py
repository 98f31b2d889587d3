"""WebSocket routes over real sockets: the handshake walks the route's policies (refusals are
problem+json before any upgrade), then frames, subprotocols and close codes are relayed
both ways with the route's limits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType, web

from .conftest import JWT_SECRET, free_port, services_yaml, write_config

AUTH = """
auth:
  jwt:
    algorithms: [HS256]
    secret_env: EDGE_JWT_SECRET
  identity_headers:
    X-Edge-Subject: sub
"""


def make_token(sub: str) -> str:
    claims = {"sub": sub, "exp": int(time.time()) + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

ROUTES = {"ws.yaml": """
routes:
  - route: GET /ws/echo
    source: {service: chat, path: /echo}
    auth: {jwt: required}
    rate_limit: []
    websocket:
      origins: [https://app.example.com]
      max_message: 64KiB
      messages_per_second: 5
      burst: 10
  - route: GET /ws/open
    source: {service: chat, path: /echo}
    auth: {jwt: "off"}
    rate_limit: []
    websocket: {max_per_identity: 2}
"""}


ROUTES_OPEN = {"ws.yaml": """
routes:
  - route: GET /ws/open
    source: {service: chat, path: /echo}
    auth: {jwt: "off"}
    rate_limit: []
    websocket: {}
"""}


def chat_app(seen: dict[str, Any]) -> web.Application:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        seen["headers"] = dict(request.headers)
        ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"))
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                if msg.data == "close-4001":
                    await ws.close(code=4001, message=b"done here")
                    break
                await ws.send_str("echo:" + msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:
                seen["closed_with"] = (msg.data, msg.extra) \
                    if msg.type is WSMsgType.CLOSE else msg.type
                break
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    return app


@pytest.fixture
async def chat(make_edge: Any, upstream: Any) -> tuple[Any, dict[str, Any]]:
    seen: dict[str, Any] = {}
    url = await upstream(chat_app(seen))
    edge = await make_edge(services_yaml({"chat": url}, AUTH), ROUTES)
    return edge, seen


def bearer(sub: str = "1001") -> dict[str, str]:
    return {"Authorization": "Bearer " + make_token(sub)}


async def test_frames_go_both_ways_with_the_callers_identity(chat: Any) -> None:
    edge, seen = chat
    async with edge.ws_connect("/ws/echo", headers=bearer(), protocols=("chat.v1",)) as ws:
        assert ws.protocol == "chat.v1"  # the upstream's choice, passed back
        await ws.send_str("hello")
        assert (await ws.receive()).data == "echo:hello"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive()).data == b"\x00\x01"
    headers = seen["headers"]
    assert "Authorization" not in headers  # not forward_token
    assert headers["X-Edge-Subject"] == "1001" and "X-Request-ID" in headers
    assert headers["Sec-WebSocket-Protocol"] == "chat.v1"


async def test_a_browser_token_in_a_subprotocol(chat: Any) -> None:
    edge, seen = chat
    token = make_token("1001")
    async with edge.ws_connect("/ws/echo", protocols=("bearer", "bearer." + token),
                               headers={"Origin": "https://app.example.com"}) as ws:
        assert ws.protocol == "bearer"  # no token is ever echoed back
        await ws.send_str("hi")
        assert (await ws.receive()).data == "echo:hi"
    assert token not in str(seen["headers"])


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer nope"}, 401),
    ({"Origin": "https://evil.example.com"}, 403),
])
async def test_refusals_are_problems_before_any_upgrade(chat: Any, headers: dict[str, str],
                                                        status: int) -> None:
    edge, seen = chat
    given = {**(bearer() if "Origin" in headers else {}), **headers}
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await edge.ws_connect("/ws/echo", headers=given)
    assert e.value.status == status
    assert "headers" not in seen  # the upstream never heard of it


async def test_a_plain_get_is_told_to_upgrade(chat: Any) -> None:
    edge, _ = chat
    resp = await edge.get("/ws/echo", headers=bearer())
    assert resp.status == 426 and resp.headers["Upgrade"] == "websocket"
    assert resp.headers["Content-Type"] == "application/problem+json"


async def test_close_codes_travel_both_ways(chat: Any) -> None:
    edge, seen = chat
    async with edge.ws_connect("/ws/echo", headers=bearer()) as ws:
        await ws.send_str("close-4001")
        msg = await ws.receive()
        assert msg.type is WSMsgType.CLOSE and msg.data == 4001 and msg.extra == "done here"
    async with edge.ws_connect("/ws/echo", headers=bearer()) as ws:
        await ws.send_str("x")
        await ws.receive()
        await ws.close(code=4100, message=b"bye")
    for _ in range(50):
        if "closed_with" in seen:
            break
        await asyncio.sleep(0.02)
    assert seen["closed_with"] == (4100, "bye")


async def test_a_message_over_the_limit_closes_with_1009(chat: Any) -> None:
    edge, _ = chat
    async with edge.ws_connect("/ws/echo", headers=bearer(), max_msg_size=0) as ws:
        await ws.send_bytes(b"x" * (1024 * 1024))
        msg = await ws.receive()
        assert msg.type is WSMsgType.CLOSE and msg.data == 1009


async def test_the_message_rate_limit_closes_with_1008(chat: Any) -> None:
    edge, _ = chat
    async with edge.ws_connect("/ws/echo", headers=bearer()) as ws:
        for i in range(30):
            await ws.send_str(str(i))
        codes = []
        for _ in range(40):
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                codes.append(msg.data)
                assert msg.extra == "message rate limit exceeded"
                break
        assert codes == [1008]


async def test_a_caller_s_open_sockets_are_capped(chat: Any) -> None:
    edge, _ = chat
    first = await edge.ws_connect("/ws/open")
    second = await edge.ws_connect("/ws/open")
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await edge.ws_connect("/ws/open")
    assert e.value.status == 429
    await first.close()
    await asyncio.sleep(0.05)
    third = await edge.ws_connect("/ws/open")
    await second.close()
    await third.close()


async def test_an_unreachable_upstream_is_a_502_before_the_upgrade(make_edge: Any) -> None:
    edge = await make_edge(services_yaml({"chat": "http://127.0.0.1:9"}, AUTH), ROUTES)
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await edge.ws_connect("/ws/open")
    assert e.value.status == 502


async def test_a_reader_that_stops_holds_back_the_upstream(make_edge: Any,
                                                           upstream: Any) -> None:
    """Backpressure: while the client reads nothing, the upstream can send only what the
    edge's bounded buffers and the sockets hold, not the 64 MB it tries to."""
    sent = {"bytes": 0}

    async def flood(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        chunk = os.urandom(65536)  # (compression would make 64 MB of "x" a few KB)
        for _ in range(1024):
            await ws.send_bytes(chunk)  # waits for the socket to drain
            sent["bytes"] += len(chunk)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/echo", flood)
    url = await upstream(app)
    edge = await make_edge(services_yaml({"chat": url}, AUTH), ROUTES)
    ws = await edge.ws_connect("/ws/open")
    await asyncio.sleep(1.5)  # reading nothing
    held = sent["bytes"]
    assert held < 24 * 1024 * 1024, held  # kernel buffers on loopback, and the edge's bound
    for _ in range(400):  # and it flows again once the client reads
        await ws.receive()
    assert sent["bytes"] > held
    await ws.close()


async def test_an_upstream_event_stream_is_relayed_with_heartbeats(make_edge: Any,
                                                                   upstream: Any) -> None:
    seen: dict[str, Any] = {}

    async def events(request: web.Request) -> web.StreamResponse:
        seen.setdefault("last", []).append(request.headers.get("Last-Event-ID"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"id: 7\ndata: one\n\n")
        await asyncio.sleep(1.3)  # silent: the edge fills in
        await resp.write(b"id: 8\ndata: two\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/events", events)
    url = await upstream(app)
    edge = await make_edge(
        services_yaml({"feed": url}, "events: {heartbeat: 500ms, max_per_identity: 1}\n"),
        {"r.yaml": "routes:\n  - route: GET /feed\n    source: {service: feed, path: /events}\n"
         "    auth: {jwt: 'off'}\n    rate_limit: []\n"})
    resp = await edge.get("/feed", headers={"Last-Event-ID": "6", "Accept-Encoding": "br"})
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert "Content-Encoding" not in resp.headers
    second = await edge.get("/feed")
    assert second.status == 429  # one stream per caller here, as on /events
    body = (await resp.read()).decode()
    assert seen["last"][0] == "6"  # forwarded, for the upstream to resume from
    assert body.startswith("id: 7\ndata: one\n\n: heartbeat\n\n")
    assert body.endswith("id: 8\ndata: two\n\n")


async def test_sigterm_closes_open_sockets_with_1001_after_the_drain(
        tmp_path: Any, upstream: Any) -> None:
    url = await upstream(chat_app({}))
    root = write_config(tmp_path / "c", services_yaml({"chat": url}, "drain_timeout: 1s\n"
                                                      "reload: {watch: false}\n"), ROUTES_OPEN)
    port = free_port()
    env = {**os.environ, "EDGE_JWT_SECRET": JWT_SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "serve", "--config", str(root), "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    ws = await s.ws_connect(f"http://127.0.0.1:{port}/ws/open")
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            await ws.send_str("hi")
            assert (await ws.receive()).data == "echo:hi"
            proc.send_signal(signal.SIGTERM)
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type is WSMsgType.CLOSE and msg.data == 1001, msg
            assert msg.extra == "edge restarting"
            await ws.close()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    assert b"Traceback" not in await proc.stderr.read()


async def test_metrics_and_one_access_log_line_per_socket(chat: Any) -> None:
    edge, _ = chat
    async with edge.ws_connect("/ws/echo", headers=bearer()) as ws:
        for i in range(3):
            await ws.send_str(str(i))
            await ws.receive()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await edge.ws_connect("/ws/echo")
    await asyncio.sleep(0.05)
    text = await (await edge.get("/metrics")).text()
    route = 'route="GET /ws/echo"'
    assert f'edge_websocket_messages_total{{direction="in",{route}}} 3.0' in text
    assert f'edge_websocket_messages_total{{direction="out",{route}}} 3.0' in text
    assert f'edge_websocket_closes_total{{code="1000",{route}}} 1.0' in text
    assert f'edge_websocket_refusals_total{{{route},status="401"}} 1.0' in text
    assert f'edge_websockets_open{{device="desktop",{route}}} 0.0' in text
    edge.edge.access_log.flush()
    lines = [json.loads(line) for line in edge.edge.access_log.stream.getvalue().splitlines()]
    socket = next(line for line in lines if line.get("ws_close") is not None)
    assert (socket["status"], socket["ws_messages_in"], socket["ws_messages_out"],
            socket["ws_close"]) == (101, 3, 3, 1000)


async def test_an_upstream_that_drops_the_connection_closes_the_client_with_1014(
        make_edge: Any, upstream: Any) -> None:
    async def drop(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        assert request.transport is not None
        request.transport.abort()  # no close frame
        return ws

    app = web.Application()
    app.router.add_get("/echo", drop)
    edge = await make_edge(services_yaml({"chat": await upstream(app)}, AUTH), ROUTES)
    async with edge.ws_connect("/ws/open") as ws:
        await ws.send_str("x")
        msg = await ws.receive()
        assert msg.type is WSMsgType.CLOSE and msg.data == 1014, msg


async def test_an_upstream_stream_republished_into_a_topic(make_edge: Any,
                                                           upstream: Any) -> None:
    """The edge follows the upstream's stream itself; apps follow the topic on /events."""
    asked: list[str | None] = []

    async def news(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("Last-Event-ID"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for n in (1, 2):
            await resp.write(f'id: {n}\nevent: headline\ndata: {{"n": {n}}}\n\n'.encode())
            await asyncio.sleep(0.3)
        return resp  # ends: the edge reconnects, from the last id

    app = web.Application()
    app.router.add_get("/news", news)
    edge = await make_edge(
        services_yaml({"feed": await upstream(app)},
                      "events: {topics: [{topic: news, public: true}]}\n"),
        {"r.yaml": "routes:\n  - route: GET /news\n    source: {service: feed, path: /news}\n"
         "    auth: {jwt: 'off'}\n    republish: news\n"})
    resp = await edge.get("/events?topic=news")
    seen: list[str] = []
    while len([ln for ln in seen if ln.startswith("data:")]) < 2:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().strip()
        if line:
            seen.append(line)
    assert [ln for ln in seen if ln.startswith("event:")][:2] == ["event: headline"] * 2
    data = [json.loads(ln[5:]) for ln in seen if ln.startswith("data:")]
    assert data[:2] == [{"topic": "news", "data": {"n": 1}}, {"topic": "news", "data": {"n": 2}}]
    resp.close()
    for _ in range(100):
        if len(asked) > 1:
            break
        await asyncio.sleep(0.05)
    assert asked[:2] == [None, "2"]  # the reconnect asked from where it stopped


async def test_a_silent_socket_is_closed_with_1001(make_edge: Any, upstream: Any) -> None:
    url = await upstream(chat_app({}))
    routes = {"ws.yaml": ROUTES_OPEN["ws.yaml"].replace("websocket: {}",
                                                        "websocket: {idle_timeout: 300ms}")}
    edge = await make_edge(services_yaml({"chat": url}), routes)
    async with edge.ws_connect("/ws/open") as ws:
        await ws.send_str("x")
        assert (await ws.receive()).data == "echo:x"
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "idle")


async def test_the_message_rate_is_the_callers_across_their_sockets(chat: Any) -> None:
    edge, _ = chat
    one = await edge.ws_connect("/ws/echo", headers=bearer("7"))
    two = await edge.ws_connect("/ws/echo", headers=bearer("7"))
    for i in range(8):  # the burst is 10: most of it on the first socket
        await one.send_str(str(i))
        await one.receive()
    for i in range(5):  # the same caller's second socket shares what is left
        await two.send_str(str(i))
    codes = []
    for _ in range(6):
        msg = await two.receive()
        if msg.type is WSMsgType.CLOSE:
            codes.append(msg.data)
            break
    assert codes == [1008]
    await one.close()


async def test_a_reload_closes_the_old_generation_s_sockets_after_the_drain(
        make_edge: Any, upstream: Any, tmp_path: Any) -> None:
    """A socket's handshake passed the config of its day: after a reload it may stay for
    `drain_timeout`, then goes with 1001; a new socket opens under the new config."""
    url = await upstream(chat_app({}))
    edge_yaml = services_yaml({"chat": url}, "drain_timeout: 300ms\n")
    edge = await make_edge(edge_yaml, ROUTES_OPEN)
    async with edge.ws_connect("/ws/open") as ws:
        await ws.send_str("a")
        assert (await ws.receive()).data == "echo:a"
        (tmp_path / "config" / "routes" / "ws.yaml").write_text(
            ROUTES_OPEN["ws.yaml"].replace("websocket: {}", "websocket: {burst: 5}"))
        assert await edge.edge.state.reloader.reload()
        await ws.send_str("b")  # still relayed during the drain
        assert (await ws.receive()).data == "echo:b"
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1001, msg
        assert msg.extra == "config reloaded"
    async with edge.ws_connect("/ws/open") as ws:
        await ws.send_str("c")
        assert (await ws.receive()).data == "echo:c"
