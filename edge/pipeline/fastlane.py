"""The fast lane, before the walk: a fresh public answer rendered before, asked for again
with the same request headers (caching.ReadyAnswers), goes out whole. Of the walk's
stages, the answer already holds what Match, Profile, Auth, Negotiate and Source decided
(public answers have no caller to check); what must run again runs here, through the same
code: the cache's freshness, purge and generation checks, the RateLimit stage, the 304,
and Deliver's access-log line. It is the hottest path, so an exchange is only made when
the RateLimit stage needs one, and the answer goes out as bytes encoded when it was kept
(`Prepared`: the head's fixed part, a per-second part, the request id and timing, the
body — one write), not as a response object aiohttp lays out again each time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time

from ..caching import Ready, ReadyAnswers, held
from ..context import Exchange
from ..errors import Problem
from .deliver import REQUEST_ID, Deliver
from .limits import RateLimit

if TYPE_CHECKING:
    from ..runtime import State

Signature = tuple[str | None, ...]


class FastLane:
    name = "fast-lane"

    def __init__(self, state: State, pipeline: Any, deliver: Deliver) -> None:
        self.state = state
        self.pipeline = pipeline
        self.metrics = state.metrics
        self.rate_limit = RateLimit(state, pipeline)
        self.deliver = deliver

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """The answer kept, else the whole walk's (one coroutine for both: the hottest
        path has no frame to spare)."""
        answer = self.kept(request)
        if answer is None:
            return await self.pipeline.serve(request)  # type: ignore[no-any-return]
        if isinstance(answer, tuple):  # the rate limit to apply first
            limited = await self.limited(*answer)
            if limited is None:
                return await self.pipeline.serve(request)  # type: ignore[no-any-return]
            return limited
        return answer

    def kept(self, request: web.BaseRequest
             ) -> web.StreamResponse | tuple[Exchange, Signature] | None:
        """The kept answer; or an exchange and the answer's signature, when the route's
        rate limit must be applied first; or None: take the whole walk."""
        ready = self.state.cache.ready.answers
        if not ready:
            return None
        started = time.perf_counter()
        rt = self.state.runtime
        headers = request.headers
        if rt.app_keys.header in headers:  # to be verified, and its tier applied
            return None
        sig = ReadyAnswers.signature(request.method, request.raw_path, headers,
                                     rt.devices.header)
        if sig is None:
            return None
        found = ready.get(sig)
        if found is None:
            return None
        now = self.state.clock()
        if (now >= found.fresh_until or found.generation != rt.generation
                or not self.state.cache.invalidations.valid(found.tags, found.stored_at)):
            self.state.cache.ready.drop(sig)
            return None
        route = found.route
        rid = headers.get(rt.rid_header)
        if rid is None or not REQUEST_ID.match(rid):
            rid = self.pipeline.request_id(None)
        client_ip = (rt.clients.client_ip(request.remote, headers.get("X-Forwarded-For"))
                     if route.limits is not None or rt.access_log else "")
        if route.limits is not None and not rt.rate_allow.is_trusted(client_ip):
            # the RateLimit stage itself, on an exchange made only when it is needed
            x = Exchange(request_id=rid, route_name=route.name, params={}, started=started,
                         device=rt.devices.profile(headers), client_ip=client_ip,
                         request=request, rt=rt, route=route)
            return x, sig
        return self._answer(request, found, rid, client_ip, started, now, None)

    async def limited(self, x: Exchange, sig: Signature) -> web.StreamResponse | None:
        """The kept answer once the route's rate limit allows it; None: the walk answers
        (the 429, with nothing charged here)."""
        try:
            await self.rate_limit(x)
        except Problem:
            return None
        found = self.state.cache.ready.answers.get(sig)
        if found is None:  # gone while we waited
            return None
        return self._answer(x.request, found, x.request_id, x.client_ip, x.started,
                            self.state.clock(), x.response_headers)

    def _answer(self, request: web.BaseRequest, found: Ready, rid: str, client_ip: str,
                started: float, now: float, limited: dict[str, str] | None
                ) -> web.StreamResponse:
        rt = self.state.runtime
        route = found.route
        inm = request.headers.get("If-None-Match")
        status = 304 if inm is not None and (inm == found.sent_etag
                                             or held(inm, found.etag)) else 200
        body = found.body if status == 200 else None
        sent = len(body) if body is not None and request.method == "GET" else 0
        # what Deliver.account records, for an answer whose every fact is known here
        elapsed = time.perf_counter() - started
        metrics = self.metrics
        metrics.request_done(route.name, request.method, status, found.device, elapsed, 0,
                             sent)
        metrics.cache_result(route.name, "hit")
        if rt.access_log:
            line = self.deliver.line(rid, request.method, request.raw_path.partition("?")[0],
                                     route.name, status, elapsed, 0, sent, client_ip,
                                     found.device, found.network)
            line["cache"] = "hit"
            self.deliver.access_log.write(line)
        # (Server-Timing as server_timing says it, for an answer with no upstream time)
        timing = f"edge;dur={elapsed * 1000:.1f}, cache;desc=hit"
        head = found.ok_head if status == 200 else found.nm_head
        if head is not None and not limited:
            return cast(web.StreamResponse, Prepared(
                head, _timed(found, now), rt.rid_header, rid, timing,
                body if request.method == "GET" else None, request))
        out = dict(found.ok_headers if status == 200 else found.nm_headers)
        out[rt.rid_header] = rid
        out["Age"] = str(max(0, int(now - found.stored_at)))  # on every answer from cache
        out["Cache-Status"] = f"edge; hit; ttl={int(found.fresh_until - now)}"
        if limited:
            out.update(limited)
        out["Server-Timing"] = timing
        return web.Response(status=status, headers=out, body=body)


def _timed(ready: Ready, now: float) -> bytes:
    """Date, Age and Cache-Status, encoded again only when one of them changes (once a
    second at most)."""
    age, ttl = max(0, int(now - ready.stored_at)), int(ready.fresh_until - now)
    second = (int(time.time()), age, ttl)
    if ready.second != second:
        ready.second = second
        ready.timed = (f"Date: {rfc822_formatted_time()}\r\nAge: {age}\r\nCache-Status: "
                       f"edge; hit; ttl={ttl}\r\n").encode()
    return ready.timed


class Prepared:
    """An answer kept as bytes, in the shape of the response aiohttp's request handler
    expects back (prepare, write_eof, keep_alive): the head and body go to the transport
    in one write (two for a large body), in the order of the connection's requests, as
    aiohttp would write them."""

    __slots__ = ("_data", "_body", "keep_alive")

    def __init__(self, head: bytes, timed: bytes, rid_header: str, rid: str, timing: str,
                 body: bytes | None, request: web.BaseRequest) -> None:
        keep_alive = request.keep_alive
        tail = f"{rid_header}: {rid}\r\nServer-Timing: {timing}\r\n"
        if not keep_alive:
            tail += "Connection: close\r\n"
        elif request.version < (1, 1):
            tail += "Connection: keep-alive\r\n"
        data = head + timed + tail.encode() + b"\r\n"
        if body is not None and len(body) <= _JOINED:
            data, body = data + body, None
        self._data = data
        self._body = body
        self.keep_alive = keep_alive

    async def prepare(self, request: web.BaseRequest) -> None:
        protocol = request.protocol
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client has gone")
        transport.write(self._data)  # type: ignore[attr-defined]
        if self._body is not None:
            transport.write(self._body)  # type: ignore[attr-defined]
        if protocol.writing_paused:  # a slow reader: wait, as aiohttp's writer would
            await protocol._drain_helper()

    async def write_eof(self) -> None:
        return None


_JOINED = 64 * 1024  # a body up to this long goes out in the head's write
