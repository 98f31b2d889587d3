"""Source: where the answer comes from, and the last stage that runs for every route. It
always answers: a batch (its items walk the pipeline again), an image (images.py), a
cached or composed answer (cached.py), an idempotent write (writes.py), or the upstream's
answer, streamed through or shaped (below). Shared here: the request the upstream gets,
and the call itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from multidict import CIMultiDict

from ..batch import SubRequest
from ..config import UNSAFE_METHODS
from ..context import Exchange
from ..encoding import NotAcceptable, choose_coding, compress
from ..errors import Problem
from ..policies.idempotency import HEADER as IDEMPOTENCY_KEY
from ..wire import (
    forward_body,
    join_query,
    read_request_body,
    timing_header,
)
from .cached import cached, compose_uncached
from .calls import call_upstream, expect, invalidate, send, upstream_headers
from .images import image
from .stage import Answer, Stage
from .writes import idempotent


class Source(Stage):
    name = "source"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        route = x.route
        out: dict[str, Any] = {"kind": _kind(x)}
        if route.upstream is not None and route.aggregate is None:
            out["upstream"] = f"{route.upstream.name} {x.target}".strip()
        if "upstream" in x.timings:
            out["upstream_ms"] = round(x.timings["upstream"] * 1000, 1)
        if x.cache_result is not None:
            out["cache"] = x.cache_result
        if x.shape_skipped is not None:
            out["shaped"] = f"skipped: {x.shape_skipped}"
        if x.degraded:
            out["degraded"] = x.degraded
        return out

    async def __call__(self, x: Exchange) -> Answer:
        route, request = x.route, x.request
        if route.batch is not None:
            return await self._batch(x)
        if route.image is not None and request.method in ("GET", "HEAD"):
            return await image(self.state, x)
        shaped = route.shape
        is_cached = route.cache is not None and request.method in ("GET", "HEAD")
        if route.aggregate is not None:
            if is_cached:
                return await cached(self.state, x, f"{x.path}?{x.raw_query}", None)
            return await compose_uncached(x)
        builder = route.spec.upstream_path
        assert builder is not None  # only routes with several `sources` have none
        path = join_query(builder.build(x.params), route.query.map(request, x.raw_query))
        if shaped is not None and shaped.pager is not None:
            x.query = route.query.linkable(request.query)  # for the pager's links
            path = join_query(path, urlencode(shaped.pager.upstream_params(request.query, x)))
        x.target = path
        if is_cached:  # a hit never needs the upstream headers: they are built on a miss
            return await cached(self.state, x, path, path)
        headers = upstream_headers(x)
        policy = route.idempotency
        key = request.headers.get(IDEMPOTENCY_KEY)
        if request.method in UNSAFE_METHODS:
            if policy is None:
                if getattr(request, "offline", False):
                    raise Problem("not-idempotent", f"{route.name} has no `idempotency`, so "
                                  "a replayed offline operation could write twice")
            elif key is not None:
                return await idempotent(self.state, x, path, headers, policy, key)
            elif policy.required:
                raise Problem("idempotency-key-missing",
                              f"{route.name} needs an Idempotency-Key header")
        return await self._proxy(x, path, headers)

    async def _proxy(self, x: Exchange, path: str, headers: CIMultiDict[str]) -> Answer:
        """The upstream's answer to the client's request, streamed through or shaped."""
        route, request = x.route, x.request
        body: AsyncIterator[bytes] | bytes | None = None
        if not request.content_length and not request.body_exists:
            if route.body_rules is not None:
                body = route.body_rules.apply(b"", x)
        elif route.body_rules is not None:
            await expect(request)
            raw = await read_request_body(request, route.max_body, x.bytes_in)
            body = route.body_rules.apply(raw, x)
        else:
            await expect(request)
            body = await forward_body(request, route.max_body, x.bytes_in, decode=route.decode)
        if body is not None and not isinstance(body, bytes) \
                and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        t0 = time.perf_counter()
        resp = await call_upstream(x, request.method, path, headers, body)
        upstream_time = x.timings["upstream"] = time.perf_counter() - t0
        extra = {x.rt.rid_header: x.request_id, "Server-Timing": timing_header(upstream_time)}
        try:
            await invalidate(self.state, x, resp.status)
            reply = resp if route.owner is None else await route.owner.release(resp, x)
            return await send(x, reply, extra)
        finally:
            resp.release()

    async def _batch(self, x: Exchange) -> Answer:
        """A batch or offline-queue route: every item walks the pipeline, one JSON answer."""
        route, request = x.route, x.request
        assert route.batch is not None
        if x.buffer_limit is not None and x.trace is None:  # (explain reads answers whole)
            raise Problem("bad-request", "batches don't nest")
        await expect(request)
        raw = await read_request_body(request, route.max_body, x.bytes_in)
        limit = route.batch.cfg.max_item_response
        serve = self.pipeline.serve

        def run(sub: SubRequest, rid: str) -> Awaitable[web.StreamResponse]:
            return serve(sub, rid, limit)

        doc = await route.batch.run(raw, request.headers, request.remote, request.scheme,
                                    x.request_id, run)
        body = orjson.dumps(doc)
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store",
                   "Vary": "Accept-Encoding"}
        comp = x.rt.config.edge.compression
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


def _kind(x: Exchange) -> str:
    route = x.route
    if route.batch is not None:
        return "batch" if route.spec.model.batch is not None else "offline queue"
    if route.image is not None:
        return "image"
    if route.aggregate is not None:
        return "composed" + (", cached" if route.cache is not None else "")
    parts = ["shaped" if route.shape is not None else "streamed"]
    if route.cache is not None:
        parts.append("cached")
    if route.idempotency is not None:
        parts.append("idempotent")
    return ", ".join(parts)
