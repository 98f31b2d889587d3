"""Source: where the answer comes from, the innermost layer, for every route. A batch
(its items walk the pipeline again) answers whole; an image route's variant is made from
its source image (images.py); a composed route's sources are gathered into a `Document`;
any other route gets the upstream's `Reply` to the request (`calls.py` builds the request
and makes the call). The layers above shape, keep and encode what it returns."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from ..batch import SubRequest
from ..config import UNSAFE_METHODS
from ..context import Exchange
from ..encoding import NotAcceptable, choose_coding, compress
from ..errors import Problem
from ..wire import BodyTooLarge, forward_body, join_query, read_request_body
from .calls import call_failed, expect, invalidate, upstream_headers
from .images import image, image_target
from .stage import Document, Inner, Layer, Up
from .websocket import websocket


def target(x: Exchange) -> str:
    """The upstream path and query for this request (made once; the cache keys on it)."""
    if x.target:
        return x.target
    route, request = x.route, x.request
    builder = route.spec.upstream_path
    assert builder is not None  # only routes with several `sources` have none
    path = join_query(builder.build(x.params), route.query.map(request, x.raw_query))
    shaped = route.shape
    if shaped is not None and shaped.pager is not None:
        x.query = route.query.linkable(request.query)  # for the pager's links
        path = join_query(path, urlencode(shaped.pager.upstream_params(request.query, x)))
    x.target = path
    return path


def reference(x: Exchange) -> tuple[str, str]:
    """What the answer is made from, and its format: the cache's key is made of these."""
    route = x.route
    if route.image is not None:
        spec = image_target(x)
        return f"{x.target}|{spec!r}", spec.format
    if route.aggregate is not None:
        return f"{x.path}?{x.raw_query}", x.fmt
    return target(x), x.fmt


class Source(Layer):
    name = "source"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        route = x.route
        out: dict[str, Any] = {"kind": _kind(x)}
        if route.upstream is not None and route.aggregate is None:
            out["upstream"] = f"{route.upstream.name} {x.target}".strip()
        if "upstream" in x.timings:
            out["upstream_ms"] = round(x.timings["upstream"] * 1000, 1)
        if x.degraded:
            out["degraded"] = x.degraded
        return out

    def __call__(self, x: Exchange, inner: Inner) -> Awaitable[Up]:  # type: ignore[override]
        # (the chosen source's coroutine itself: one frame fewer on the hottest path)
        route = x.route
        if route.batch is not None:
            return self._batch(x)
        if route.websocket is not None:
            return websocket(self.state, x)
        if route.image is not None and x.request.method in ("GET", "HEAD"):
            return image(self.state, x)
        if route.aggregate is not None:
            return self._compose(x)
        return self._proxy(x)

    async def _proxy(self, x: Exchange) -> Up:
        """The upstream's answer to the client's request (the body streams through)."""
        route, request = x.route, x.request
        path = target(x)
        headers = upstream_headers(x)
        if x.revalidate is not None:  # the cache holds a version: unchanged costs a 304
            x.revalidate.ask_if_changed(headers)
        body: AsyncIterator[bytes] | bytes | None = None
        if x.body is not None:  # read already (an idempotent write's fingerprint needs it)
            body = x.body or None
        elif not request.content_length and not request.body_exists:
            if route.body_rules is not None:
                body = route.body_rules.apply(b"", x)
        elif route.body_rules is not None:
            await expect(request)
            raw = await read_request_body(request, route.max_body, x.bytes_in)
            body = route.body_rules.apply(raw, x)
        else:
            await expect(request)
            body = await forward_body(request, route.max_body, x.bytes_in, decode=route.decode)
            if not isinstance(body, bytes) and body is not None \
                    and request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
        t0 = time.perf_counter()
        upstream = route.upstream
        assert upstream is not None
        method = request.method
        if method == "HEAD" and route.shape is not None:
            method = "GET"  # the edge's representation is made from the body
        try:  # (call_upstream, inline: one frame fewer on the hottest path)
            resp = await upstream.request(method, path, headers, body, route.timeout)
        except (BodyTooLarge, Problem) as e:
            raise call_failed(x, e) from None
        x.timings["upstream"] = time.perf_counter() - t0
        try:
            if request.method in UNSAFE_METHODS:
                await invalidate(self.state, x, resp.status, resp.headers)
            return resp if route.owner is None else await route.owner.release(resp, x)
        except BaseException:
            resp.release()
            raise

    async def _compose(self, x: Exchange) -> Document:
        """A composed route's sources, gathered (aggregate.py)."""
        route = x.route
        plan = route.shape
        assert route.aggregate is not None and plan is not None
        t0 = time.perf_counter()
        doc, degraded = await route.aggregate.gather(x, upstream_headers(x), plan.max_body,
                                                     plan.max_depth)
        x.timings["upstream"] = time.perf_counter() - t0
        x.degraded = degraded
        return Document(doc)

    async def _batch(self, x: Exchange) -> Up:
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
                coding = choose_coding(request.headers.get("Accept-Encoding"), comp.prefer)
            except NotAcceptable:
                coding = None
            if coding is not None:
                body = compress(body, coding, quality=comp.levels[coding])
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
