"""The fast lane, before the walk: a fresh public answer rendered before, asked for again
with the same request headers (caching.ReadyAnswers), goes out whole. Of the walk's
stages, the answer already holds what Match, Profile, Auth, Negotiate and Source decided
(public answers have no caller to check); what must run again runs here, through the same
code: the cache's freshness, purge and generation checks, the RateLimit stage, the 304,
and Deliver's access-log line. It is the hottest path, so an exchange is only made when
the RateLimit stage needs one."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..caching import ReadyAnswers, held
from ..context import Exchange
from ..errors import Problem
from .deliver import REQUEST_ID, Deliver
from .limits import RateLimit

if TYPE_CHECKING:
    from ..runtime import State


class FastLane:
    name = "fast-lane"

    def __init__(self, state: State, pipeline: Any, deliver: Deliver) -> None:
        self.state = state
        self.pipeline = pipeline
        self.metrics = state.metrics
        self.rate_limit = RateLimit(state, pipeline)
        self.deliver = deliver

    async def __call__(self, request: web.BaseRequest) -> web.Response | None:
        """The answer, or None: take the whole walk."""
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
            del ready[sig]
            return None
        route = found.route
        rid = headers.get(rt.rid_header)
        if rid is None or not REQUEST_ID.match(rid):
            rid = self.pipeline.request_id(None)
        client_ip = (rt.clients.client_ip(request.remote, headers.get("X-Forwarded-For"))
                     if route.limits is not None or rt.access_log else "")
        limited: dict[str, str] | None = None
        if route.limits is not None and not rt.rate_allow.is_trusted(client_ip):
            # the RateLimit stage itself, on an exchange made only when it is needed
            x = Exchange(request_id=rid, route_name=route.name, params={}, started=started,
                         device=rt.devices.profile(headers), client_ip=client_ip,
                         request=request, rt=rt, route=route)
            try:
                await self.rate_limit(x)
            except Problem:
                return None  # nothing was charged: the walk answers the 429
            limited = x.response_headers
        inm = headers.get("If-None-Match")
        if inm is not None and held(inm, found.etag):
            out, body, status = dict(found.nm_headers), None, 304
        else:
            out, body, status = dict(found.ok_headers), found.body, 200
        out[rt.rid_header] = rid
        out["Age"] = str(max(0, int(now - found.stored_at)))  # on every answer from cache
        out["Cache-Status"] = f"edge; hit; ttl={int(found.fresh_until - now)}"
        if limited:
            out.update(limited)
        elapsed = time.perf_counter() - started
        out["Server-Timing"] = f"edge;dur={elapsed * 1000:.1f}, cache;desc=hit"  # (as
        # server_timing says it, for an answer with no upstream time)
        sent = len(body) if body is not None and request.method == "GET" else 0
        # what Deliver.account records, for an answer whose every fact is known here
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
        return web.Response(status=status, headers=out, body=body)
