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
the client with 1014 (bad gateway); an edge that shuts down, or a reload that retires the
config generation a socket opened under, closes it with 1001 once `drain_timeout` is over."""

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
    """The handshake's last steps: the origin, the caller's sockets, the upstream's socket,
    and the client's upgrade. The answer is the upgraded socket (101); the pipeline's
    `serve` runs its `Relay` once the stages' frames are gone (an idle socket holds less)."""
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
    who = str(x.identity.get("sub")) if x.identity and x.identity.get("sub") \
        else x.client_ip
    caller = f"{route.name}|{who}"
    sockets: Sockets = state.sockets
    sockets.enter(caller, policy.max_per_identity)
    try:
        upstream = await _connect(x, passed, policy)
        try:
            chosen = upstream.protocol
            if chosen is None and "bearer" in offered:
                chosen = "bearer"  # a browser that offered protocols needs one back
            client = Upgraded(
                protocols=(chosen,) if chosen else (), max_msg_size=policy.max_message,
                compress=policy.compress, heartbeat=policy.heartbeat or None,
                autoping=True)
            client.headers[rt.rid_header] = x.request_id
            await client.prepare(request)
        except BaseException:
            if not upstream.closed:
                await upstream.close(code=WSCloseCode.GOING_AWAY)
            raise
    except BaseException:
        sockets.leave(caller)
        raise
    client.relay = Relay(client, upstream, policy, sockets, state.metrics, caller)
    return client, 0


class Upgraded(web.WebSocketResponse):
    """The client's socket, upgraded, with the relay that serves it."""

    relay: Relay


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


class Relay:
    """One WebSocket's frames, both ways, from the upgrade to both sides' close.

    The request's own task carries the client's messages up; one task carries the
    upstream's down. Whichever side ends stops the other (the task that carries it is
    cancelled), and each side is closed with the code and reason the other gave, or the
    edge's own (1008 past the message rate, 1001 idle or shutting down, 1014 when the
    upstream failed). Idle sockets are found by the process's one sweep (`Sockets.watch`),
    not a timer each: state is a few slots, so that thousands of idle sockets stay
    cheap."""

    __slots__ = ("client", "upstream", "policy", "sockets", "metrics", "caller", "bucket",
                 "last", "n_in", "n_out", "b_in", "b_out", "to_client", "to_upstream",
                 "task", "ended", "rt")

    def __init__(self, client: web.WebSocketResponse,
                 upstream: aiohttp.ClientWebSocketResponse, policy: Any, sockets: Sockets,
                 metrics: Metrics, caller: str) -> None:
        self.client, self.upstream, self.policy = client, upstream, policy
        self.sockets, self.metrics, self.caller = sockets, metrics, caller
        now = time.monotonic()
        # one allowance for all the caller's sockets on this route (on this instance)
        self.bucket = sockets.bucket(caller, float(policy.burst), now)
        self.last = now  # the last message either way
        self.n_in = self.n_out = self.b_in = self.b_out = 0
        # how each side is to be closed, once known: (code, reason)
        self.to_client: tuple[int, bytes] | None = None
        self.to_upstream: tuple[int, bytes] | None = None
        self.task: asyncio.Task[Any] | None = None
        self.ended = False  # one side is done: the other is being stopped
        self.rt: Any = None  # the config generation that let it open

    def stop(self, to_client: tuple[int, bytes], to_upstream: tuple[int, bytes]) -> None:
        """End the relay from outside (idle, the edge closing): both sides get these."""
        if self.to_client is None:
            self.to_client = to_client
        if self.to_upstream is None:
            self.to_upstream = to_upstream
        if not self.ended and self.task is not None:
            self.ended = True
            self.task.cancel()

    async def run(self, x: Exchange) -> Answer:
        client, upstream, metrics, sockets = self.client, self.upstream, self.metrics, \
            self.sockets
        route = x.route_name
        open_gauge = metrics.ws_open.labels(route, x.device.device)
        open_gauge.inc()
        me = self.task = asyncio.current_task()
        self.rt = x.rt
        sockets.watch(self)
        down = asyncio.ensure_future(self._down())
        try:
            await self._up()
        except asyncio.CancelledError:
            if not self.ended:
                # The client's connection is gone (aiohttp cancels the handler), or the
                # edge is shutting down past its drain: what a side said still goes through.
                said = (_code(client.close_code), b"") if client.close_code \
                    else (WSCloseCode.GOING_AWAY, b"edge restarting")
                if self.to_client is None:
                    self.to_client = said
                if self.to_upstream is None:
                    self.to_upstream = said
            # Stopping the relay was the point, and both sides get closed just below: the
            # socket's answer (101) is still what the access log and the metrics record.
            if me is not None:
                me.uncancel()
        except Exception as e:  # the upstream's connection failed under a send
            log.debug("WebSocket relay on %s: %r", route, e)
            if self.to_client is None:
                self.to_client = (BAD_GATEWAY, b"upstream failed")
        finally:
            self.ended = True
            sockets.unwatch(self)
            sockets.leave(self.caller)
            down.cancel()
            code, reason = self.to_client or (  # (else the client closed it: its code)
                (_code(client.close_code), b"") if client.close_code
                else (WSCloseCode.GOING_AWAY, b""))
            up_code, up_reason = self.to_upstream or (code, reason)
            x.bytes_in[0] += self.b_in
            x.timings["ws_messages_in"] = self.n_in
            x.timings["ws_messages_out"] = self.n_out
            x.timings["ws_close"] = code
            open_gauge.dec()
            metrics.ws_messages.labels(route, "in").inc(self.n_in)
            metrics.ws_messages.labels(route, "out").inc(self.n_out)
            metrics.ws_bytes.labels(route, "in").inc(self.b_in)
            metrics.ws_bytes.labels(route, "out").inc(self.b_out)
            metrics.ws_closes.labels(route, str(int(code))).inc()
            # Both closing handshakes at once, in a task of their own: the client's
            # connection going away as it closes (aiohttp then cancels this handler) must
            # not cut the upstream's close short.
            closing = asyncio.ensure_future(_close_both(
                down, client, code, reason, upstream, up_code, up_reason))
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)
            try:
                await asyncio.shield(closing)
            except asyncio.CancelledError:
                if me is not None:
                    me.uncancel()
        return client, self.b_out

    async def _up(self) -> None:
        """The client's messages to the upstream, each once the previous one went out."""
        client, upstream, policy, bucket = self.client, self.upstream, self.policy, \
            self.bucket
        rate, burst = policy.messages_per_second, policy.burst
        while True:
            msg = await client.receive()
            kind = msg.type
            if kind is WSMsgType.CLOSE:  # the client's code and reason, passed on
                if self.to_upstream is None:
                    self.to_upstream = (_code(msg.data), (msg.extra or "").encode())
                return
            if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
                # too big (aiohttp closed it with 1009), broken, or closed already
                if self.to_upstream is None:
                    self.to_upstream = (WSCloseCode.GOING_AWAY, b"client gone")
                return
            now = time.monotonic()
            allowance = bucket[0] + (now - bucket[1]) * rate
            if allowance > burst:
                allowance = burst
            bucket[1] = now
            if allowance < 1:
                bucket[0] = allowance
                self.to_client = (WSCloseCode.POLICY_VIOLATION, b"message rate limit exceeded")
                self.to_upstream = (WSCloseCode.GOING_AWAY, b"client closed by the edge")
                return
            bucket[0] = allowance - 1
            self.last = now
            self.n_in += 1
            self.b_in += len(msg.data)
            if kind is WSMsgType.TEXT:
                await upstream.send_str(msg.data)
            else:
                await upstream.send_bytes(msg.data)

    async def _down(self) -> None:
        """The upstream's messages to the client; when the upstream is done, the request's
        task (carrying the client's messages) is stopped."""
        client, upstream = self.client, self.upstream
        try:
            while True:
                msg = await upstream.receive()
                kind = msg.type
                if kind is WSMsgType.CLOSE:
                    if self.to_client is None:
                        self.to_client = (_code(msg.data), (msg.extra or "").encode())
                    return
                if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
                    # gone without a close frame (reset, a broken frame): 1014, bad gateway
                    if self.to_client is None:
                        self.to_client = (BAD_GATEWAY, b"upstream failed")
                    return
                self.last = time.monotonic()
                self.n_out += 1
                self.b_out += len(msg.data)
                if kind is WSMsgType.TEXT:
                    await client.send_str(msg.data)
                else:
                    await client.send_bytes(msg.data)
        finally:
            if not self.ended and self.task is not None:
                self.ended = True
                self.task.cancel()


_CLOSING: set[asyncio.Future[None]] = set()  # (held until done: asyncio keeps weak refs)


async def _close_both(down: asyncio.Future[None], client: web.WebSocketResponse, code: int,
                      reason: bytes, upstream: aiohttp.ClientWebSocketResponse,
                      up_code: int, up_reason: bytes) -> None:
    await asyncio.gather(down, return_exceptions=True)
    await asyncio.gather(
        client.close(code=code, message=reason[:123]),
        upstream.close(code=up_code, message=up_reason[:123]), return_exceptions=True)


def _code(code: int | None) -> int:
    if code is None or code in _RESERVED:
        return WSCloseCode.INTERNAL_ERROR
    return code
