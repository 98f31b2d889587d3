"""WebSocket routes: the handshake has walked the stages (route, device, auth, limits) like
any request; here the edge checks the browser's `Origin` and the caller's open sockets,
opens the upstream's socket first (so an unreachable or refusing upstream is a 502/504
problem before any upgrade), then upgrades the client with the subprotocol the upstream
chose and relays frames both ways.

The relay reads one message from a side only once the previous one went out on the other
(`send_*` waits for the transport to drain), so a slow reader holds back its writer
through TCP instead of growing the edge's buffers: aiohttp stops reading a socket while
its queue of parsed messages is over a bound. Close codes and reasons go through both
ways; a client past its message rate is closed with 1008; a side silent past
`idle_timeout` closes both with 1001; an upstream whose connection fails mid-way closes
the client with 1014 (bad gateway); an edge that shuts down closes its sockets with 1001
once `drain_timeout` is over."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from ..context import Exchange
from ..errors import Problem
from ..metrics import Metrics
from ..policies.auth import TOKEN_PROTOCOL, offered_protocols
from ..representation import Answer
from ..sockets import Sockets
from .calls import upstream_headers

if TYPE_CHECKING:
    from ..runtime import State

log = logging.getLogger("edge.websocket")

# the client's handshake headers the upstream handshake makes its own
_HANDSHAKE = ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions",
              "Sec-WebSocket-Protocol", "Sec-WebSocket-Accept", "Upgrade", "Connection",
              "Origin")
BAD_GATEWAY = 1014  # RFC 6455 §11.7: the upstream's connection failed
# close codes a peer may not send (RFC 6455 §7.4.1); these become 1011 on the other side
_RESERVED = {1004, 1005, 1006, 1015}


def origin_allowed(origin: str | None, allowed: list[str], public_hosts: dict[str, str]
                   ) -> bool:
    if origin is None:
        return True  # an app, not a browser page: nothing to hijack
    if "*" in allowed or origin in allowed:
        return True
    host = origin.partition("://")[2].lower()
    return bool(host) and host in public_hosts


async def websocket(state: State, x: Exchange) -> Answer:
    route, request, rt = x.route, x.request, x.rt
    policy = route.websocket
    assert policy is not None and route.upstream is not None
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise Problem("upgrade-required", "this route is a WebSocket: ask for "
                      "`Upgrade: websocket`", headers={"Upgrade": "websocket"})
    if not isinstance(request, web.BaseRequest) or request.method != "GET":
        raise Problem("bad-request", "a WebSocket route takes a WebSocket handshake "
                      "(not a batch item)")
    if not origin_allowed(request.headers.get("Origin"), policy.origins, rt.public_hosts):
        raise Problem("forbidden", "this origin may not open this WebSocket")
    offered = offered_protocols(request.headers)
    passed = [p for p in offered if p != "bearer" and not p.startswith(TOKEN_PROTOCOL)]
    caller = str(x.identity.get("sub")) if x.identity and x.identity.get("sub") \
        else x.client_ip
    sockets: Sockets = state.sockets
    sockets.enter(f"{route.name}|{caller}", policy.max_per_identity)
    try:
        upstream = await _connect(x, passed, policy)
        try:
            return await _relay(x, request, upstream, offered, policy, sockets,
                                state.metrics, f"{route.name}|{caller}")
        finally:
            if not upstream.closed:
                await upstream.close(code=WSCloseCode.GOING_AWAY)
    finally:
        sockets.leave(f"{route.name}|{caller}")


async def _connect(x: Exchange, protocols: list[str], policy: Any
                   ) -> aiohttp.ClientWebSocketResponse:
    from .source import target  # (source.py chooses this module: imported late)

    route = x.route
    headers = upstream_headers(x)
    for name in _HANDSHAKE:
        headers.popall(name, None)
    base = route.upstream.base
    url = ("ws" + base[4:] if base.startswith("http") else base) + target(x)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(route.timeout.sock_connect or 10.0):
            upstream = await route.upstream.ws_session.ws_connect(
                url, protocols=protocols, headers=headers, max_msg_size=policy.max_message,
                compress=15 if policy.compress else 0, autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0))
    except TimeoutError:
        raise Problem("upstream-timeout", f"'{route.upstream.name}' did not take the "
                      "WebSocket in time") from None
    except aiohttp.WSServerHandshakeError as e:
        raise Problem("upstream-bad-response", f"'{route.upstream.name}' refused the "
                      f"WebSocket ({e.status})") from None
    except (aiohttp.ClientError, OSError):
        raise Problem("upstream-unreachable",
                      f"could not reach '{route.upstream.name}'") from None
    x.timings["upstream"] = time.perf_counter() - t0
    return upstream


async def _relay(x: Exchange, request: web.BaseRequest,
                 upstream: aiohttp.ClientWebSocketResponse, offered: list[str],
                 policy: Any, sockets: Sockets, metrics: Metrics, caller: str) -> Answer:
    chosen = upstream.protocol
    if chosen is None and "bearer" in offered:
        chosen = "bearer"  # a browser that offered protocols needs one back
    client = web.WebSocketResponse(
        protocols=(chosen,) if chosen else (), max_msg_size=policy.max_message,
        compress=policy.compress, heartbeat=policy.heartbeat or None, autoping=True)
    client.headers[x.rt.rid_header] = x.request_id
    await client.prepare(request)
    counts = {"in": 0, "out": 0, "in_bytes": 0, "out_bytes": 0}
    last = [time.monotonic()]
    closed: dict[str, Any] = {}

    # one allowance for all the caller's sockets on this route (on this instance)
    bucket = sockets.bucket(caller, float(policy.burst), time.monotonic())

    async def to_upstream() -> None:
        while True:
            msg = await client.receive()
            if msg.type is WSMsgType.CLOSE:  # the client's code and reason, passed on
                closed.setdefault("upstream", (_code(msg.data), (msg.extra or "").encode()))
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                # too big (aiohttp closed it with 1009), broken, or closed already
                closed.setdefault("upstream", (WSCloseCode.GOING_AWAY, b"client gone"))
                return
            now = time.monotonic()
            allowance = min(policy.burst,
                            bucket[0] + (now - bucket[1]) * policy.messages_per_second)
            bucket[1] = now
            if allowance < 1:
                bucket[0] = allowance
                closed["client"] = (WSCloseCode.POLICY_VIOLATION,
                                    b"message rate limit exceeded")
                closed["upstream"] = (WSCloseCode.GOING_AWAY, b"client closed by the edge")
                return
            bucket[0] = allowance - 1
            last[0] = now
            counts["in"] += 1
            counts["in_bytes"] += len(msg.data)
            if msg.type is WSMsgType.TEXT:
                await upstream.send_str(msg.data)
            else:
                await upstream.send_bytes(msg.data)

    async def to_client() -> None:
        while True:
            msg = await upstream.receive()
            if msg.type is WSMsgType.CLOSE:
                closed.setdefault("client", (_code(msg.data), (msg.extra or "").encode()))
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                # gone without a close frame (reset, a broken frame): 1014, bad gateway
                closed.setdefault("client", (BAD_GATEWAY, b"upstream failed"))
                return
            last[0] = time.monotonic()
            counts["out"] += 1
            counts["out_bytes"] += len(msg.data)
            if msg.type is WSMsgType.TEXT:
                await client.send_str(msg.data)
            else:
                await client.send_bytes(msg.data)

    route = x.route_name
    open_gauge = metrics.ws_open.labels(route, x.device.device)
    open_gauge.inc()
    tasks = [asyncio.ensure_future(c) for c in (to_upstream(), to_client())]
    loop = asyncio.get_running_loop()

    timer: list[asyncio.TimerHandle] = []

    def idle() -> None:  # a timer, not a task: an idle socket costs less memory
        left = last[0] + policy.idle_timeout - time.monotonic()
        if left > 0:
            timer[0] = loop.call_later(left, idle)
            return
        closed["client"] = closed["upstream"] = (WSCloseCode.GOING_AWAY, b"idle")
        tasks[0].cancel()  # (ends the wait below)

    timer.append(loop.call_later(policy.idle_timeout, idle))
    me = asyncio.current_task()  # closing the edge cancels it: both sides get 1001
    if me is not None:
        sockets.relays.add(me)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # the client's connection is gone (aiohttp cancels the handler), or the edge is
        # shutting down past its drain: whatever a side said already still goes through
        said = (_code(client.close_code), b"") if client.close_code \
            else (WSCloseCode.GOING_AWAY, b"edge restarting")
        closed.setdefault("client", said)
        closed.setdefault("upstream", said)
        # Stopping the relay was the point, and both sides get closed just below: the
        # socket's answer (101) is still what the access log and the metrics record.
        if me is not None:
            me.uncancel()
    finally:
        timer[0].cancel()
        if me is not None:
            sockets.relays.discard(me)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        code, reason = closed.get("client") or (  # (else the client closed it: its code)
            (_code(client.close_code), b"") if client.close_code
            else (WSCloseCode.GOING_AWAY, b""))
        if not client.closed:
            await client.close(code=code, message=reason[:123])
        up_code, up_reason = closed.get("upstream", (code, reason))
        if not upstream.closed:
            await upstream.close(code=up_code, message=up_reason[:123])
        x.bytes_in[0] += counts["in_bytes"]
        x.timings["ws_messages_in"] = counts["in"]
        x.timings["ws_messages_out"] = counts["out"]
        x.timings["ws_close"] = code
        open_gauge.dec()
        for way in ("in", "out"):
            metrics.ws_messages.labels(route, way).inc(counts[way])
            metrics.ws_bytes.labels(route, way).inc(counts[way + "_bytes"])
        metrics.ws_closes.labels(route, str(int(code))).inc()
    return client, counts["out_bytes"]


def _code(code: int | None) -> int:
    if code is None or code in _RESERVED:
        return WSCloseCode.INTERNAL_ERROR
    return code
