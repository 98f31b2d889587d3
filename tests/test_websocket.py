"""WebSocket routes over real sockets: the handshake walks the route's policies (refusals are
problem+json before any upgrade), then frames, subprotocols and close codes are relayed
both ways with the route's limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType, web

from .conftest import JWT_SECRET, services_yaml

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
