"""The edge server: the request handler (admin, routing, policies, proxy) and its lifecycle."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import IO, Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from .accesslog import AccessLog
from .aio import stop
from .backends import open_backend
from .backends.cache import ALL as ALL_TAG
from .backends.redis import RedisCalls
from .batch import SubRequest
from .caching import (
    Answer,
    EdgeCache,
    Ready,
    ReadyAnswers,
    held,
    in_signature,
    make_ready,
    respond_from,
)
from .config import UNSAFE_METHODS, Config
from .context import ClientAddress, Incoming, RequestContext
from .encoding import NotAcceptable, choose_coding, compress
from .errors import Problem, problem_response
from .imaging import ACCEPT_CH, ImagePool
from .metrics import Metrics
from .policies.cache import Entry, storable
from .policies.idempotency import HEADER as IDEMPOTENCY_KEY
from .policies.idempotency import IdempotencyPolicy, caller, fingerprint, parse_key
from .policies.ratelimit import Limiter
from .proxy import (
    BodyTooLarge,
    BufferedReply,
    Reply,
    Skip,
    buffer_reply,
    filter_headers,
    forward_body,
    join_query,
    read_capped,
    read_request_body,
    send_upstream_response,
    timing_header,
)
from .reload import Reloader
from .routing import BadPath, split_path
from .runtime import CompiledRoute, Runtime, State, build_runtime
from .server import EdgeServer, Guard
from .shaping import (
    Shaped,
    ShapePlan,
    deliver,
    keymap_document,
    represent,
    send_shaped,
    shape,
    shape_reply,
)
from .sse.endpoint import publish, relay_purges, subscribe
from .sse.hub import Hub

log = logging.getLogger("edge")
KEYMAPS_PREFIX = "/_edge/keymaps/"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")
_CONDITIONALS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since",
                 "If-Range", "A-IM")


class Edge:
    """The request handler: admin endpoints, routing, policies, the proxy, the log line."""

    def __init__(self, state: State, access_log: AccessLog) -> None:
        self.state = state
        self.metrics = state.metrics
        self.access_log = access_log
        self.inflight = 0
        self.metrics.inflight.set_function(lambda: self.inflight)
        # Request ids: a random per-process prefix and a counter; unique, and far cheaper
        # than asking the OS for randomness on every request.
        self._rid_prefix = secrets.token_hex(4)
        self._rid_counter = itertools.count(1)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ready = self.state.cache.ready.answers
        if ready and (request.method == "GET" or request.method == "HEAD"):
            answer = await self._ready(request, ready)
            if answer is not None:
                return answer
        return await self.serve(request)

    async def _ready(self, request: web.BaseRequest,
                     ready: dict[tuple[str | None, ...], Ready]) -> web.Response | None:
        """The fast lane: a fresh public answer rendered before, for the same request
        headers (see caching.ReadyAnswers). None: take the full pipeline."""
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
        rid = headers.get(rt.rid_header)
        if rid is None or not _REQUEST_ID.match(rid):
            rid = f"{self._rid_prefix}{next(self._rid_counter) & 0xFFFFFFFF:08x}"
        limited: dict[str, str] | None = None
        if found.limits is not None:
            client_ip = rt.clients.client_ip(request.remote, headers.get("X-Forwarded-For"))
            if not rt.rate_allow.is_trusted(client_ip):
                ctx = RequestContext(request_id=rid, route_name=found.route, params={},
                                     device=rt.devices.profile(headers), client_ip=client_ip)
                decision = await self.state.limiter.check(found.limits, ctx, headers)
                if not decision.allowed:
                    return None  # nothing was charged: the full pipeline answers the 429
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
                "bytes_out": sent, "client_ip": rt.clients.client_ip(
                    request.remote, headers.get("X-Forwarded-For")),
                "device": found.device, "network": found.network, "cache": "hit"})
        return web.Response(status=status, headers=out, body=body)

    async def serve(self, request: Incoming, rid: str | None = None,
                    buffer_limit: int | None = None) -> web.StreamResponse:
        """One request, start to end. Batch items come here too, with their own request id
        and a `buffer_limit`: their responses are read whole, never streamed."""
        rt = self.state.runtime
        started = time.perf_counter()
        rt.inflight += 1
        self.inflight += 1
        headers = request.headers
        if rid is None:
            rid = headers.get(rt.rid_header)
            if rid is None or not _REQUEST_ID.match(rid):
                rid = f"{self._rid_prefix}{next(self._rid_counter) & 0xFFFFFFFF:08x}"
        ctx = RequestContext(request_id=rid, route_name="unmatched", params={}, started=started,
                             device=rt.devices.profile(headers),
                             client_ip=rt.clients.client_ip(request.remote,
                                                            headers.get("X-Forwarded-For")),
                             buffer_limit=buffer_limit)
        bytes_in = [0]
        sent = 0
        status = 500
        try:
            try:
                events = rt.events
                if (events is not None and request.method == "GET" and buffer_limit is None
                        and request.raw_path.partition("?")[0] == events.path):
                    # straight to the stream: one frame fewer held by each idle stream
                    ctx.route_name, ctx.path = "events", events.path
                    self.state.hub.configure(events)
                    response, sent = await subscribe(request, self.state.hub, events,
                                                     rt.topic_rules, rt.events_auth, ctx,
                                                     rt.rid_header)
                else:
                    response, sent = await self._dispatch(request, rt, ctx, bytes_in)
            except Problem as p:
                response = problem_response(p, type_base=rt.type_base, request_id=rid,
                                            instance=ctx.path or None,
                                            wrap=self._wrapper(ctx))
                sent = len(response.body)  # type: ignore[arg-type]
            except Exception:
                log.exception("unhandled error in request %s (%s %s)", rid, request.method,
                              request.path)
                response = problem_response(Problem("internal"), type_base=rt.type_base,
                                            request_id=rid)
                sent = len(response.body)  # type: ignore[arg-type]
            if not response.prepared:
                response.headers[rt.rid_header] = rid
                if ctx.response_headers:
                    response.headers.update(ctx.response_headers)
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            rt.inflight -= 1
            self.inflight -= 1
            if rt.drained is not None and rt.inflight == 0 and not rt.drained.done():
                rt.drained.set_result(None)
            self.metrics.request_done(ctx.route_name, request.method, status,
                                      ctx.device.device, elapsed, bytes_in[0], sent)
            if ctx.cache_result is not None:
                self.metrics.cache_result(ctx.route_name, ctx.cache_result)
            if ctx.shape_skipped is not None:
                self.metrics.shaping_skipped.labels(ctx.route_name, ctx.shape_skipped).inc()
            upstream_bytes = ctx.timings.get("upstream_bytes")
            if upstream_bytes is not None:
                self.metrics.shaped(ctx.route_name, ctx.device.device, int(upstream_bytes), sent)
            if rt.access_log:
                self._log(request, ctx, status, elapsed, bytes_in[0], sent)

    def _wrapper(self, ctx: RequestContext) -> Callable[[dict[str, Any]], Any] | None:
        """The envelope for problem answers, when the request's route and client want it."""
        if not ctx.envelope or ctx.route is None or ctx.route.shape is None:
            return None
        envelope = ctx.route.shape.envelope
        if envelope is None:
            return None
        return lambda problem: envelope.error(problem, ctx)

    def _log(self, request: Incoming, ctx: RequestContext, status: int, elapsed: float,
             bytes_in: int, sent: int) -> None:
        line: dict[str, Any] = {
            "ts": round(time.time(), 3), "request_id": ctx.request_id,
            "method": request.method, "path": ctx.path, "route": ctx.route_name,
            "status": status, "duration_ms": round(elapsed * 1000, 2),
            "bytes_in": bytes_in, "bytes_out": sent, "client_ip": ctx.client_ip,
            "device": ctx.device.device, "network": ctx.device.network,
        }
        if "upstream" in ctx.timings:
            line["upstream_ms"] = round(ctx.timings["upstream"] * 1000, 2)
        if ctx.identity and "sub" in ctx.identity:
            line["sub"] = str(ctx.identity["sub"])
        if ctx.app is not None:
            line["app"] = ctx.app.name
        if ctx.timings.get("aborted"):
            line["aborted"] = True
        if ctx.replayed:
            line["replayed"] = True
        self.access_log.write(line)

    async def _dispatch(self, request: Incoming, rt: Runtime, ctx: RequestContext,
                        bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        raw_path = request.raw_path
        if len(raw_path) > rt.max_path:
            raise Problem("uri-too-long", f"paths are limited to {rt.max_path} characters")
        path, _, query = raw_path.partition("?")
        ctx.path = path
        admin = rt.admin.get(path)
        if admin is not None and request.method in ("GET", "HEAD"):
            ctx.route_name = "admin"
            return await self._admin(admin, request, rt)
        events = rt.events
        if events is not None and (path == events.path or path == events.publish_path):
            hub = self.state.hub
            hub.configure(events)
            if path == events.path and request.method == "GET":
                # a client's GET never gets here (serve takes it straight to the stream)
                raise Problem("bad-request", "an event stream can't be a batch item")
            if path == events.publish_path and request.method == "POST":
                ctx.route_name = "publish"
                await self._charge_ip(rt, ctx, request)
                return await publish(request, hub, events, rt.publisher_keys,
                                     rt.events_auth, bytes_in)
            allow = "GET" if path == events.path else "POST"
            raise Problem("method-not-allowed", f"allowed: {allow}", headers={"Allow": allow})
        if path == rt.purge_path and request.method == "POST":
            ctx.route_name = "purge"
            await self._charge_ip(rt, ctx, request)
            return await self._purge(request, rt, bytes_in)
        if path.startswith(KEYMAPS_PREFIX) and request.method in ("GET", "HEAD"):
            ctx.route_name = "keymaps"
            return self._keymap(path[len(KEYMAPS_PREFIX):], rt)
        try:
            segments = split_path(path)
        except (BadPath, UnicodeDecodeError) as e:
            raise Problem("bad-path", str(e) if isinstance(e, BadPath) else
                          "path is not valid UTF-8") from None
        match = rt.table.match(request.method, segments)
        route = match.route
        if route is None:
            await self._charge_ip(rt, ctx, request)
            if match.allowed:
                allow = ", ".join(sorted({*match.allowed, *(
                    ("HEAD",) if "GET" in match.allowed else ())}))
                raise Problem("method-not-allowed", f"allowed: {allow}",
                              headers={"Allow": allow})
            raise Problem("not-found", f"no route for {request.method} {request.path}")
        ctx.route_name = route.name
        ctx.route = route
        ctx.params = match.params
        if route.shape is not None and route.shape.envelope is not None:
            # decided before auth, so a 401/403 arrives in the envelope too
            ctx.envelope = route.shape.envelope.wanted(request.query.get("envelope"),
                                                       request.headers.get("X-Edge-Envelope"))
        try:
            if route.api_key is not None:  # the app first, then its user
                ctx.app = route.api_key.check(request.headers)
            ctx.identity = route.auth.check(request, match.params)
        except Problem:
            await self._charge_ip(rt, ctx, request)  # a key- or token-guessing flood pays too
            raise
        if route.limits is not None and not rt.rate_allow.is_trusted(ctx.client_ip):
            decision = await self.state.limiter.check(route.limits, ctx, request.headers)
            if not decision.allowed:
                raise Problem("rate-limited", f"over this route's rate limit; retry in "
                              f"{decision.retry_after}s", headers={
                                  **decision.headers,
                                  "Retry-After": str(decision.retry_after)})
            ctx.response_headers = decision.headers
        if route.batch is not None:
            return await self._batch(request, rt, route, ctx, bytes_in)
        return await self._proxy(request, rt, route, ctx, bytes_in, query)

    async def _charge_ip(self, rt: Runtime, ctx: RequestContext, request: Incoming) -> None:
        """Count a request that no route's limits see against the client's per-IP budget
        (rate_limits.defaults with `key: ip`); 429 once it is spent."""
        if rt.ip_limits is None or ctx.buffer_limit is not None \
                or rt.rate_allow.is_trusted(ctx.client_ip):
            return  # batch items were charged as the batch
        decision = await self.state.limiter.check(rt.ip_limits, ctx, request.headers)
        if not decision.allowed:
            raise Problem("rate-limited", f"too many requests from this address; retry in "
                          f"{decision.retry_after}s", headers={
                              **decision.headers, "Retry-After": str(decision.retry_after)})

    async def _batch(self, request: Incoming, rt: Runtime, route: CompiledRoute,
                     ctx: RequestContext, bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        """A batch or offline-queue route: every item through `serve`, one JSON answer."""
        assert route.batch is not None
        if ctx.buffer_limit is not None:
            raise Problem("bad-request", "batches don't nest")
        await _expect(request)
        raw = await read_request_body(request, route.max_body, bytes_in)
        limit = route.batch.cfg.max_item_response

        def run(sub: SubRequest, rid: str) -> Awaitable[web.StreamResponse]:
            return self.serve(sub, rid, limit)

        doc = await route.batch.run(raw, request.headers, request.remote, request.scheme,
                                    ctx.request_id, run)
        body = orjson.dumps(doc)
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store",
                   "Vary": "Accept-Encoding"}
        comp = rt.config.edge.compression
        if len(body) >= comp.min_size:
            try:
                coding = choose_coding(request.headers.get("Accept-Encoding"))
            except NotAcceptable:
                coding = None
            if coding is not None:
                body = compress(body, coding, quality=comp.brotli_quality if coding == "br"
                                else comp.gzip_level)
                headers["Content-Encoding"] = coding
        return web.Response(body=body, headers=headers), len(body)

    async def _proxy(self, request: Incoming, rt: Runtime, route: CompiledRoute,
                     ctx: RequestContext, bytes_in: list[int],
                     raw_query: str) -> tuple[web.StreamResponse, int]:
        if route.image is not None and request.method in ("GET", "HEAD"):
            return await self._image(request, rt, route, ctx, bytes_in)
        shaped = route.shape
        fmt, coding = "json", None
        if shaped is not None:
            fmt, coding = shaped.negotiate(request.headers)
            query_params = request.query
            ctx.fields_param = query_params.get("fields")
            ctx.keymap_off = (query_params.get("keymap") == "none"
                              or request.headers.get("X-Edge-Keymap") == "none")
            if request.method in ("GET", "HEAD"):
                # the edge answers conditionals on what it shaped
                ctx.conditional = request.headers
        cached = route.cache is not None and request.method in ("GET", "HEAD")
        if route.aggregate is not None:
            assert shaped is not None
            if cached:
                return await self._cached(request, rt, route, ctx, fmt, coding,
                                          f"{ctx.path}?{raw_query}", None, bytes_in)
            return await self._aggregate(route, shaped, ctx, self._headers(request, rt, ctx),
                                         fmt, coding, rt)
        builder = route.spec.upstream_path
        assert builder is not None  # only routes with several `sources` have none
        path = join_query(builder.build(ctx.params), route.query.map(request, raw_query))
        if shaped is not None and shaped.pager is not None:
            ctx.query = request.query
            path = join_query(path, urlencode(shaped.pager.upstream_params(request.query, ctx)))
        if cached:  # a hit never needs the upstream headers: they are built on a miss
            return await self._cached(request, rt, route, ctx, fmt, coding, path, path,
                                      bytes_in)
        headers = self._headers(request, rt, ctx)
        idempotency = route.idempotency
        key = request.headers.get(IDEMPOTENCY_KEY)
        if request.method in UNSAFE_METHODS:
            if idempotency is None:
                if getattr(request, "offline", False):
                    raise Problem("not-idempotent", f"{route.name} has no `idempotency`, so "
                                  "a replayed offline operation could write twice")
            elif key is not None:
                return await self._idempotent(request, rt, route, ctx, bytes_in, path,
                                              headers, idempotency, key, fmt, coding)
            elif idempotency.required:
                raise Problem("idempotency-key-missing",
                              f"{route.name} needs an Idempotency-Key header")
        if request.content_length or request.body_exists:
            await _expect(request)
        body: AsyncIterator[bytes] | bytes | None
        if route.body_rules is not None:
            raw = await read_request_body(request, route.max_body, bytes_in)
            body = route.body_rules.apply(raw, ctx)
        else:
            body = await forward_body(request, route.max_body, bytes_in, decode=route.decode)
        if body is not None and not isinstance(body, bytes) \
                and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        t0 = time.perf_counter()
        resp = await self._upstream(request.method, path, headers, body, route, bytes_in)
        upstream_time = time.perf_counter() - t0
        ctx.timings["upstream"] = upstream_time
        extra = {rt.rid_header: ctx.request_id, "Server-Timing": timing_header(upstream_time)}
        try:
            await self._invalidate(route, ctx, request.method, resp.status)
            reply = resp if route.owner is None else await route.owner.release(resp, ctx)
            return await self._send(request, reply, ctx, route, fmt, coding, extra)
        finally:
            resp.release()

    @staticmethod
    def _headers(request: Incoming, rt: Runtime, ctx: RequestContext) -> CIMultiDict[str]:
        """What the upstream gets: the client's headers less hop-by-hop and the edge's own,
        plus X-Forwarded-*, the request id and the caller's identity."""
        route = ctx.route
        headers = filter_headers(request.headers, route.strip_headers)
        peer = request.remote
        incoming_xff = request.headers.get("X-Forwarded-For")
        trusted = rt.clients.is_trusted(peer)
        if trusted and incoming_xff:
            headers["X-Forwarded-For"] = f"{incoming_xff}, {peer}"
        else:
            headers["X-Forwarded-For"] = peer or "unknown"
        proto = request.headers.get("X-Forwarded-Proto") if trusted else None
        headers["X-Forwarded-Proto"] = proto or request.scheme
        host = request.headers.get("X-Forwarded-Host") if trusted else None
        if host is None:  # a client's Host only when it is one of the edge's own names
            host = rt.public_hosts.get((request.headers.get("Host") or "").lower(),
                                       rt.default_host)
        if host:
            headers["X-Forwarded-Host"] = host
        rc = route.cache
        if rc is not None and not rc.private_for(ctx):
            # the answer will be shared: nothing one client holds may shape it
            headers.popall("Cookie", None)
            headers.popall("Authorization", None)
        headers[rt.rid_header] = ctx.request_id
        if "Accept-Encoding" not in headers:
            # Bodies pass through as encoded; a client that asked for no coding gets none.
            headers["Accept-Encoding"] = "identity"
        if ctx.identity:
            headers.update(route.auth.upstream_identity(ctx.identity))
        if ctx.app is not None:
            headers[route.api_key.identity_header] = ctx.app.name
        if route.shape is not None:
            headers["Accept-Encoding"] = "identity"  # cheaper on a LAN; decoded if ignored
            if ctx.conditional is not None:
                # the upstream's validators don't describe the edge's representation
                for name in _CONDITIONALS:
                    headers.popall(name, None)
        return headers

    async def _invalidate(self, route: CompiledRoute, ctx: RequestContext, method: str,
                          status: int) -> None:
        """A successful write through a route with `invalidates` purges its tags."""
        if route.invalidates and 200 <= status < 300 and method in UNSAFE_METHODS:
            await self.state.cache.purge(route.invalidate_tags(ctx.params))

    @staticmethod
    async def _upstream(method: str, path: str, headers: CIMultiDict[str],
                        body: AsyncIterator[bytes] | bytes | None, route: CompiledRoute,
                        bytes_in: list[int]) -> aiohttp.ClientResponse:
        assert route.upstream is not None
        try:
            return await route.upstream.request(method, path, headers, body, route.timeout)
        except BodyTooLarge:
            raise Problem("payload-too-large",
                          f"request body is over this route's {route.max_body} bytes") from None
        except Problem:
            if bytes_in[0] > route.max_body:
                raise Problem("payload-too-large", f"request body is over this route's "
                              f"{route.max_body} bytes") from None
            raise

    @staticmethod
    async def _send(request: Incoming, resp: Reply, ctx: RequestContext, route: CompiledRoute,
                    fmt: str, coding: str | None,
                    extra: dict[str, str]) -> tuple[web.StreamResponse, int]:
        if route.shape is not None:
            return await send_shaped(request, resp, ctx, route.shape, fmt, coding, extra)
        return await send_upstream_response(request, resp, ctx, extra, route.compress)

    async def _idempotent(self, request: Incoming, rt: Runtime, route: CompiledRoute,
                          ctx: RequestContext, bytes_in: list[int], path: str,
                          headers: CIMultiDict[str], policy: IdempotencyPolicy, raw_key: str,
                          fmt: str, coding: str | None) -> tuple[web.StreamResponse, int]:
        """An unsafe request with an Idempotency-Key: the upstream sees it at most once."""
        key = parse_key(raw_key)
        await _expect(request)
        body = await read_request_body(request, route.max_body, bytes_in,
                                       decode=route.decode)
        if route.body_rules is not None:
            body = route.body_rules.apply(body, ctx)
        live: list[aiohttp.ClientResponse] = []

        async def call() -> BufferedReply:
            resp = await self._upstream(request.method, path, headers, body or None, route,
                                        bytes_in)
            live.append(resp)
            await self._invalidate(route, ctx, request.method, resp.status)
            reply = resp if route.owner is None else await route.owner.release(resp, ctx)
            return await buffer_reply(reply, policy.max_response)

        t0 = time.perf_counter()
        try:
            reply, replayed = await policy.run(
                self.state.backend, caller(ctx.identity, ctx.client_ip), key,
                fingerprint(request.method, request.raw_path, body), call)
            upstream_time = time.perf_counter() - t0
            extra = {rt.rid_header: ctx.request_id}
            if replayed:
                ctx.replayed = True
                extra["Idempotent-Replayed"] = "true"
            else:
                ctx.timings["upstream"] = upstream_time
                extra["Server-Timing"] = timing_header(upstream_time)
            return await self._send(request, reply, ctx, route, fmt, coding, extra)
        finally:
            for resp in live:
                resp.release()

    async def _aggregate(self, route: CompiledRoute, plan: ShapePlan, ctx: RequestContext,
                         headers: CIMultiDict[str], fmt: str, coding: str | None,
                         rt: Runtime) -> tuple[web.StreamResponse, int]:
        shaped, upstream_time = await self._compose(route, plan, ctx, headers, fmt)
        extra = {rt.rid_header: ctx.request_id, "Server-Timing": timing_header(upstream_time)}
        if "Cache-Control" not in shaped.headers:
            shaped.headers["Cache-Control"] = "private, no-cache"
        return deliver(shaped, plan, ctx, coding, extra)

    @staticmethod
    async def _compose(route: CompiledRoute, plan: ShapePlan, ctx: RequestContext,
                       headers: CIMultiDict[str], fmt: str) -> tuple[Shaped, float]:
        """An aggregated route's document, shaped and serialized."""
        assert route.aggregate is not None
        t0 = time.perf_counter()
        doc, degraded = await route.aggregate.gather(ctx, headers, plan.max_body,
                                                      plan.max_depth)
        upstream_time = time.perf_counter() - t0
        ctx.timings["upstream"] = upstream_time
        ctx.degraded = degraded
        out: CIMultiDict[str] = CIMultiDict()
        doc, vary = shape(doc, plan, ctx, out)
        if degraded:
            out["X-Edge-Degraded"] = ", ".join(degraded)
            out["Cache-Control"] = "no-store"  # a partial answer is not worth keeping
        return Shaped(200, out, represent(doc, fmt, out, vary)), upstream_time

    async def _cached(self, request: Incoming, rt: Runtime, route: CompiledRoute,
                      ctx: RequestContext, fmt: str, coding: str | None, upstream_ref: str,
                      path: str | None, bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        """A GET on a cached route: from the edge cache when it can, else fetched once
        (however many ask at the same time) and kept."""
        rc, plan = route.cache, route.shape
        assert rc is not None and plan is not None
        cache = self.state.cache
        extra = {rt.rid_header: ctx.request_id}
        key = rc.key(ctx, upstream_ref, fmt, request.headers)
        private = rc.private_for(ctx)
        tags = rc.tags(ctx.params)

        async def fetch(previous: Entry | None, background: bool) -> Entry | Answer:
            c = replace(ctx, buffer_limit=rc.max_entry, timings={}) if background else ctx
            headers = self._headers(request, rt, ctx)
            started = cache.clock()
            if path is None:  # aggregated
                shaped, took = await self._compose(route, plan, c, headers, fmt)
                if c.degraded:
                    return deliver(shaped, plan, c, coding,
                                   {**extra, "Server-Timing": timing_header(took)})
                return rc.new_entry(200, shaped.headers.items(), shaped.body, fmt, started,
                                    tags, None, None, previous)
            h = headers
            if previous is not None and (previous.up_etag or previous.up_last_modified):
                h = headers.copy()
                if previous.up_etag:
                    h["If-None-Match"] = previous.up_etag
                if previous.up_last_modified:
                    h["If-Modified-Since"] = previous.up_last_modified
            t0 = time.perf_counter()
            resp = await self._upstream("GET", path, h, None, route, bytes_in)
            took = time.perf_counter() - t0
            c.timings["upstream"] = took
            timing = {**extra, "Server-Timing": timing_header(took)}
            try:
                if resp.status == 304 and previous is not None:
                    return rc.refreshed(previous, started)
                reply = resp if route.owner is None else await route.owner.release(resp, c)
                out = await shape_reply(request, reply, c, plan, fmt, timing)
                if not isinstance(out, Shaped):
                    return out
                if out.status != 200:
                    return deliver(out, plan, c, coding, timing)
                up_etag = resp.headers.get("ETag")
                entry = rc.new_entry(200, out.headers.items(), out.body, fmt, started, tags,
                                     up_etag, resp.headers.get("Last-Modified"), previous)
                entry.owner = c.owner
                vary = rc.learn_vary(resp.headers, request.headers)
                entry.vary = vary or ()
                # `Vary: *` (or more variants than the edge keys on): never kept
                entry.storable = vary is not None and (rc.override or storable(resp.headers))
                if entry.storable:  # never keep (and replay) somebody's cookie
                    entry.headers = [h for h in entry.headers if h[0].lower() != "set-cookie"]
                return entry
            finally:
                resp.release()

        def respond(entry: Entry, status: str, policy: bool) -> Answer:
            if route.owner is not None:
                route.owner.check_held(entry.owner, ctx)
            ctx.cache_result = _cache_result(status)
            answer = respond_from(entry, request.headers, coding, rc, private, status, policy,
                                  extra, plan.compression, plan.quality, cache.clock())
            if (policy and not private and answer[0].status == 200 and entry.storable
                    and in_signature(entry.vary)
                    and isinstance(answer[0], web.Response) and request.method == "GET"
                    and "If-None-Match" not in request.headers
                    and ctx.cache_result in ("hit", "miss", "revalidated", "collapsed")):
                sig = ReadyAnswers.signature(request.method, request.raw_path,
                                             request.headers, rt.devices.header)
                if sig is not None:
                    cache.ready.put(sig, make_ready(answer[0], entry, route.name,
                                                    ctx.device.device, ctx.device.network,
                                                    rt.generation, route.limits))
                    # HEAD gets the same answer without its body (aiohttp drops it)
                    cache.ready.put(("HEAD", *sig[1:]), cache.ready.answers[sig])
            return answer

        ctx.cache_result = "miss"
        return await cache.serve(
            key, rc, fetch, lambda e: e.storable, respond,
            fits=lambda e: e.fits(request.headers),
            rekey=lambda: rc.key(ctx, upstream_ref, fmt, request.headers))

    async def _image(self, request: Incoming, rt: Runtime, route: CompiledRoute,
                     ctx: RequestContext, bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        """An image route: the size and format this client should get (query, preset,
        Client Hints, device and network class, Accept), made once in a worker process
        and cached like any answer (ETag, 304, coalesced misses)."""
        img, rc = route.image, route.cache
        assert img is not None and rc is not None
        spec, used = img.spec(request.raw_path, request.query, request.headers, ctx.device)
        builder = route.spec.upstream_path
        assert builder is not None
        path = builder.build(ctx.params)  # the query is the edge's, never the upstream's
        extra = {rt.rid_header: ctx.request_id}
        described = [("Vary", ", ".join(used)), ("Accept-CH", ACCEPT_CH)]
        tags = rc.tags(ctx.params)
        compression = rt.config.edge.compression
        source_key = "src:" + hashlib.blake2b(f"{route.name}|{path}".encode(),
                                              digest_size=16).hexdigest()

        async def fetch(previous: Entry | None, background: bool) -> Entry | Answer:
            c = replace(ctx, buffer_limit=img.limits.max_source_bytes, timings={}) \
                if background else ctx
            headers = self._headers(request, rt, c)
            for name in _CONDITIONALS:
                headers.popall(name, None)
            headers["Accept"] = "image/*"
            headers["Accept-Encoding"] = "identity"
            # the source too is kept (when small enough) and revalidated with its
            # upstream validators, so a new size of a known image costs a 304 upstream
            source = await self.state.cache.get(source_key)
            if source is not None:
                if source.up_etag:
                    headers["If-None-Match"] = source.up_etag
                if source.up_last_modified:
                    headers["If-Modified-Since"] = source.up_last_modified
            started = self.state.cache.clock()
            t0 = time.perf_counter()
            resp = await self._upstream("GET", path, headers, None, route, bytes_in)
            c.timings["upstream"] = time.perf_counter() - t0
            try:
                if resp.status == 304 and source is not None:
                    raw = source.body
                elif resp.status != 200:
                    return await send_upstream_response(request, resp, c, extra)
                else:
                    try:
                        raw = await read_capped(resp, img.limits.max_source_bytes)
                    except Skip:
                        raise Problem("bad-image", f"too-large: the source image is over "
                                      f"{img.limits.max_source_bytes} bytes",
                                      reason="too-large") from None
                    etag, modified = resp.headers.get("ETag"), resp.headers.get(
                        "Last-Modified")
                    if etag or modified:
                        await self.state.cache.put(source_key, rc.new_entry(
                            200, [], raw, "source", started, tags, etag, modified, None))
            finally:
                resp.release()
            t1 = time.perf_counter()
            result = await self.state.images.run(raw, spec, img.limits, route.name,
                                                 img.policy.timeout)
            c.timings["transform"] = time.perf_counter() - t1
            self.metrics.image_done(route.name, len(raw), len(result.body),
                                    c.timings["transform"])
            return rc.new_entry(200, [("Content-Type", result.content_type), *described],
                                result.body, result.format, started, tags, None, None, None)

        private = rc.private_for(ctx)
        key = rc.key(ctx, f"{path}|{spec!r}", spec.format, request.headers)
        quality = {"br": compression.brotli_quality, "gzip": compression.gzip_level}

        def respond(entry: Entry, status: str, policy: bool) -> Answer:
            ctx.cache_result = _cache_result(status)
            return respond_from(entry, request.headers, None, rc, private, status, policy,
                                extra, compression, quality, self.state.cache.clock())

        ctx.cache_result = "miss"
        return await self.state.cache.serve(key, rc, fetch, lambda e: True, respond)

    async def _purge(self, request: Incoming, rt: Runtime,
                     bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        """POST {"tags": [...]} | {"route": "GET /x"} | {"all": true}: empty the edge cache
        of those entries, on every instance. Needs a token with the purge role."""
        if rt.verifier is None:
            raise Problem("forbidden", "purging needs auth.jwt in edge.yaml")
        token = rt.purge_auth.token(request.headers, request.cookies)
        if token is None:
            raise Problem("unauthorized", "purging needs a bearer token",
                          headers={"WWW-Authenticate": "Bearer"})
        claims = rt.verifier.verify(token)
        roles = claims.get("roles")
        if not (roles == rt.purge_role or isinstance(roles, list) and rt.purge_role in roles):
            raise Problem("forbidden", f"purging needs the '{rt.purge_role}' role")
        raw = await read_request_body(request, 64 * 1024, bytes_in)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        tags: list[str] = []
        if isinstance(doc, dict) and doc.get("all") is True:
            tags = [ALL_TAG]
        elif isinstance(doc, dict) and isinstance(doc.get("route"), str):
            name = " ".join(doc["route"].split())
            if not any(r.name == name for r in rt.routes):
                raise Problem("not-found", f"no route named {name[:200]!r}")
            tags = [f"route:{name}"]
        elif isinstance(doc, dict) and isinstance(doc.get("tags"), list) and doc["tags"] and \
                all(isinstance(t, str) and 0 < len(t) <= 256 for t in doc["tags"][:1000]):
            tags = doc["tags"][:1000]
        else:
            raise Problem("bad-request", 'expected {"tags": ["member:1001", ...]}, '
                          '{"route": "GET /api/v1/x/{id}"} or {"all": true}')
        event = await self.state.cache.purge(tags)
        body = orjson.dumps({"purged": tags, "at": event["at"]})
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"}), len(body)

    def _keymap(self, name: str, rt: Runtime) -> tuple[web.StreamResponse, int]:
        table = rt.keymaps.get(name)
        if table is None:
            raise Problem("not-found", f"no keymap named {name[:64]!r}")
        body = orjson.dumps(keymap_document(name, table))
        # A published keymap version never changes, so it may be cached for good.
        return web.Response(body=body, content_type="application/json", headers={
            "Cache-Control": "public, max-age=31536000, immutable"}), len(body)

    async def _admin(self, kind: str, request: Incoming,
                     rt: Runtime) -> tuple[web.StreamResponse, int]:
        if kind == "health":
            body = b'{"status":"ok"}'
        elif kind == "ready":
            backend = self.state.backend
            ok = await backend.ping()
            reloader = self.state.reloader
            body = orjson.dumps({
                "status": "ready" if ok else "unavailable",
                "config_generation": rt.generation, "routes": len(rt.routes),
                "backend": {"kind": backend.name, "reachable": ok},
                "last_reload_error": reloader.last_error,
            })
            if not ok:
                return web.Response(body=body, status=503, content_type="application/json",
                                    headers={"Cache-Control": "no-store"}), len(body)
        else:
            if not rt.metrics_allow.is_trusted(request.remote):
                raise Problem("forbidden", "metrics are only served to allowed networks")
            body = self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": self.metrics.content_type,
                                                    "Cache-Control": "no-store"}), len(body)
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"}), len(body)


def _cache_result(cache_status: str) -> str:
    """The metrics label for a Cache-Status value."""
    if "bypass" in cache_status:
        return "bypass"
    if cache_status.startswith("hit"):
        return "stale" if "detail=stale" in cache_status else "hit"
    if "collapsed" in cache_status:
        return "collapsed"
    if "fwd-status=304" in cache_status:
        return "revalidated"
    return "miss"


async def _expect(request: Incoming) -> None:
    """Answer `Expect: 100-continue` once the request has passed the route's checks."""
    expect = request.headers.get("Expect")
    if expect is None or not isinstance(request, web.BaseRequest):
        return
    if expect.lower() != "100-continue":
        raise Problem("bad-request", f"unsupported Expect: {expect[:40]!r}")
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


class EdgeApp:
    """The edge: its state, its request handler, and their lifecycle.

    It is served by aiohttp's low-level `web.Server` rather than a `web.Application`: the
    edge routes every request itself, so the generic router and middleware chain would
    only add cost to every request.
    """

    def __init__(self, config: Config, *, env: dict[str, str] | None = None,
                 watch: bool = True, access_log: IO[bytes] | None = None,
                 clock: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        """`clock` (wall) and `monotonic`: where the cache and the rate limits read the
        time; time.time and time.monotonic unless a test passes fakes."""
        self.config, self.env, self.watch = config, env, watch
        self.metrics = Metrics()
        self.state = State(self.metrics, clock, monotonic)
        self.access_log = AccessLog(access_log)
        self.handler = Edge(self.state, self.access_log)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def server_kwargs(self) -> dict[str, Any]:
        limits = self.config.edge.limits
        # auto_decompress=False: request bodies reach the proxy as the client framed them
        # (proxy.forward_body); decoding is a route's choice, never the server's.
        return {"access_log": None, "auto_decompress": False,
                "max_field_size": limits.max_header_size,
                "max_line_size": limits.max_path_length + 64,
                "keepalive_timeout": limits.keepalive_timeout}

    def make_server(self, **kwargs: Any) -> EdgeServer:
        """The listener's server (`kwargs`: more of aiohttp's, e.g. from a test harness)."""
        edge = self.config.edge
        trusted = ClientAddress([*edge.trusted_proxies, *edge.rate_limits.allow])
        guard = Guard(edge.limits.header_timeout, edge.limits.max_connections_per_ip,
                      trusted.is_trusted, edge.problem_type_base)
        return EdgeServer(self.handler.handle, guard=guard,
                          **{**self.server_kwargs, **kwargs})

    async def start(self) -> None:
        state, config = self.state, self.config
        state.runtime, _ = await asyncio.to_thread(build_runtime, config, None, self.metrics, 1)
        self.metrics.config_generation.set(1)
        calls = RedisCalls(self.metrics.redis_seconds, self.metrics.redis_errors)
        state.backend = open_backend(config.redis_url(), config.edge.backend.memory_max_entries,
                                     calls, state.monotonic)
        state.cache = EdgeCache(config.edge.cache, state.backend, clock=state.clock)
        await state.cache.start()
        state.limiter = Limiter(state.backend, config.edge.rate_limits, self.metrics,
                                state.monotonic)
        state.images = ImagePool(self.metrics)
        state.hub = Hub(state.backend, self.metrics)
        state.hub.configure(config.edge.events)
        await state.hub.start()
        hub = state.hub
        state.cache.on_purge = lambda tags: relay_purges(hub, tags)
        state.reloader = Reloader(state, config.root, self.env)
        if self.watch:
            await state.reloader.start()
            self._watcher = asyncio.get_running_loop().create_task(state.reloader.run())

    def drain_streams(self) -> None:
        """Ask every open event stream to tell its client to reconnect, and end."""
        self.state.hub.drain()

    async def close(self) -> None:
        self.drain_streams()
        await asyncio.sleep(0)  # let the streams say goodbye
        await self.state.hub.close()
        await stop(self._watcher)
        await self.state.reloader.close()
        await self.state.cache.close()
        self.state.images.close()
        for up in self.state.runtime.upstreams.values():
            await up.close()
        await self.state.backend.close()
        self.access_log.close()


def setup_logging(level: int = logging.INFO) -> None:
    """Operational logs go to stderr; stdout carries only the JSON access lines."""
    root = logging.getLogger("edge")
    if root.handlers:
        return
    root.setLevel(level)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(err)
