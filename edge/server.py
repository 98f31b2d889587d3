"""The HTTP server side of the edge: aiohttp's low-level server with the defences a public
listener needs and aiohttp leaves out.

- A request head must arrive whole within `limits.header_timeout` of its first byte (or
  of the connection's start): a slowloris trickling one byte a second gets a 408 and is
  closed. Between requests, `limits.keepalive_timeout` closes idle connections.
- At most `limits.max_connections_per_ip` open connections per client address (trusted
  proxies and `rate_limits.allow` exempt): more get a 503 and are closed at once.
- What aiohttp's parser refuses (a malformed request, a 100 KB header) is answered as
  problem+json like every other edge error, not as aiohttp's plain text.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from .errors import KINDS, PROBLEM_JSON


@dataclass(frozen=True, slots=True)
class Guard:
    """What the listener enforces, fixed at start (a change waits for a restart)."""

    header_timeout: float
    max_per_ip: int
    exempt: Callable[[str], bool]  # addresses never capped
    type_base: str
    max_line: int  # the parser's request-line limit: how a too-long line is told from a
    max_field: int  # too-long header (aiohttp raises LineTooLong with the limit it passed)


def problem_bytes(kind: str, detail: str, type_base: str, extra_headers: str = "") -> bytes:
    """A whole HTTP/1.1 problem+json response that closes the connection, for the moments
    before there is a request to answer properly."""
    status, title = KINDS[kind]
    body = orjson.dumps({"type": type_base + kind, "title": title, "status": status,
                         "detail": detail})
    return (f"HTTP/1.1 {status} {title}\r\nContent-Type: {PROBLEM_JSON}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{extra_headers}"
            "Connection: close\r\n\r\n").encode() + body


class EdgeRequestHandler(RequestHandler):
    """One client connection."""

    # (aiohttp's handler has slots: ours too, a dict fewer on every open connection)
    __slots__ = ("_guard", "_peer", "_head_timer", "_refused")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        assert isinstance(server, EdgeServer)
        self._guard = guard = server.guard
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) and peer else None
        if ip is not None and not guard.exempt(ip):
            if server.per_ip[ip] >= guard.max_per_ip:
                assert isinstance(transport, asyncio.Transport)
                transport.write(problem_bytes(
                    "too-many-connections",
                    f"at most {guard.max_per_ip} connections per client address",
                    guard.type_base, "Retry-After: 1\r\n"))
                transport.close()
                self._refused = True
                return  # never registered: the server doesn't count or serve it
            server.per_ip[ip] += 1
            self._peer = ip
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused or self._manager is None:
            return
        self._disarm()
        if self._peer is not None:
            server = self._manager
            assert isinstance(server, EdgeServer)
            left = server.per_ip[self._peer] - 1
            if left > 0:
                server.per_ip[self._peer] = left
            else:
                del server.per_ip[self._peer]
            self._peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._request_in_progress:
            self._disarm()
        elif self._head_timer is None:
            self._arm()  # part of the next request's head: the rest has a deadline

    def _arm(self) -> None:
        if self._head_timer is None and self._guard.header_timeout > 0:
            self._head_timer = self._loop.call_later(self._guard.header_timeout,
                                                     self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if self._messages or self._request_in_progress or transport is None:
            return
        assert isinstance(transport, asyncio.Transport)
        transport.write(problem_bytes(
            "request-timeout", f"the request head did not arrive within "
            f"{self._guard.header_timeout:g}s", self._guard.type_base))
        self.force_close()
        transport.close()

    def _request_line(self, exc: LineTooLong) -> bool:
        limit = exc.args[1] if len(exc.args) > 1 else None
        guard = self._guard
        return limit == guard.max_line and limit != guard.max_field  # equal: can't tell

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote,
                               exc_info=exc)
            kind, detail = "internal", ""
        elif isinstance(exc, LineTooLong):
            kind = "uri-too-long" if self._request_line(exc) else "header-too-large"
            detail = ("the request line is too long" if kind == "uri-too-long"
                      else "a request header is too large")
        else:
            kind, detail = "bad-request", "the request is not valid HTTP/1.1"
        if kind != "internal":
            self.logger.debug("refused a request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent")
        status_, title = KINDS[kind]
        doc: dict[str, Any] = {"type": self._guard.type_base + kind, "title": title,
                               "status": status_}
        if detail:
            doc["detail"] = detail
        body = orjson.dumps(doc)
        resp = web.Response(status=status_, body=body, content_type=PROBLEM_JSON,
                            headers={"Cache-Control": "no-store"})
        resp.force_close()
        return resp


class EdgeServer(web.Server):
    """aiohttp's low-level server, making EdgeRequestHandlers and counting connections per
    client address."""

    def __init__(self, handler: Any, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard
        self.per_ip: Counter[str] = Counter()

    def __call__(self) -> RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)
