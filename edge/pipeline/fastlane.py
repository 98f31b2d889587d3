"""The fast lane, before the walk: a fresh public answer rendered before, asked for again
with the same request headers (caching.ReadyAnswers), goes out whole — the walk's stages
would all decide the same, except the ones that must run again here: freshness, purges
and the config generation (Cache), the rate limit (RateLimit), If-None-Match (304)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..accesslog import AccessLog
from ..caching import ReadyAnswers, held
from ..context import Exchange

if TYPE_CHECKING:
    from ..runtime import State


class FastLane:
    name = "fast-lane"

    def __init__(self, state: State, access_log: AccessLog,
                 request_id: Callable[[str | None], str]) -> None:
        self.state = state
        self.metrics = state.metrics
        self.access_log = access_log
        self.request_id = request_id

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
        now = time.time()
        if (now >= found.fresh_until or found.generation != rt.generation
                or not self.state.cache.invalidations.valid(found.tags, found.stored_at)):
            del ready[sig]
            return None
        rid = self.request_id(headers.get(rt.rid_header))
        limited: dict[str, str] | None = None
        client_ip = rt.clients.client_ip(request.remote, headers.get("X-Forwarded-For"))
        if found.limits is not None and not rt.rate_allow.is_trusted(client_ip):
            x = Exchange(request_id=rid, route_name=found.route, params={},
                         device=rt.devices.profile(headers), client_ip=client_ip)
            decision = await self.state.limiter.check(found.limits, x, headers)
            if not decision.allowed:
                return None  # nothing was charged: the walk answers the 429
            limited = decision.headers
        inm = headers.get("If-None-Match")
        if inm is not None and held(inm, found.etag):
            out, body, status = dict(found.nm_headers), None, 304
        else:
            out, body, status = dict(found.ok_headers), found.body, 200
        out[rt.rid_header] = rid
        age = int(now - found.stored_at)
        if age:
            out["Age"] = str(age)
        out["Cache-Status"] = f"edge; hit; ttl={int(found.fresh_until - now)}"
        out["Server-Timing"] = f"edge;dur={(time.perf_counter() - started) * 1000:.1f}, " \
            "cache;desc=hit"
        if limited:
            out.update(limited)
        sent = len(body) if body is not None and request.method == "GET" else 0
        elapsed = time.perf_counter() - started
        self.metrics.request_done(found.route, request.method, status, found.device, elapsed,
                                  0, sent)
        self.metrics.cache_result(found.route, "hit")
        if rt.access_log:
            self.access_log.write({
                "ts": round(time.time(), 3), "request_id": rid, "method": request.method,
                "path": request.raw_path.partition("?")[0], "route": found.route,
                "status": status, "duration_ms": round(elapsed * 1000, 2), "bytes_in": 0,
                "bytes_out": sent, "client_ip": client_ip, "device": found.device,
                "network": found.network, "cache": "hit"})
        return web.Response(status=status, headers=out, body=body)
