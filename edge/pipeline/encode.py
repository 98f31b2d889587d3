"""Encode: the answer as bytes for this client, the outermost layer. What comes up from
below becomes the response: a `Shaped` or `Held` representation gets its strong ETag (its
compressed variant its own), a 304 when the client holds it, a 226 delta when it holds an
older version the cache still knows, the envelope when asked for, and the body in the
negotiated coding; the upstream's `Reply` (a streamed route, or one the Shape layer could
not shape) is relayed as it came, compressed on the way when the route says so."""

from __future__ import annotations

from typing import Any, cast

from ..caching import respond_from, respond_raw
from ..context import Exchange
from ..representation import Answer
from ..shaping import Shaped, deliver, enveloping
from ..wire import Reply, send_upstream_response, timing_header
from .cache import RAW, keep_ready
from .stage import Held, Inner, Layer, Up


class Encode(Layer):
    name = "encode"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        if x.route.shape is None and x.route.image is None:
            return None
        return {"coding": x.coding or "identity", "envelope": x.envelope}

    async def __call__(self, x: Exchange, inner: Inner) -> Up:
        out = await inner(x)
        if isinstance(out, tuple):  # answered below (a batch)
            return out
        if isinstance(out, Held):
            return self._held(x, out)
        if isinstance(out, Shaped):
            plan = x.route.shape
            assert plan is not None
            return deliver(out, plan, x, x.coding, {})
        # the upstream's Reply, relayed (inline: the pass-through's hottest path)
        reply = cast(Reply, out)
        route = x.route
        extra = {x.rt.rid_header: x.request_id}
        if x.shape_skipped is not None:
            extra["X-Edge-Shaped"] = f"skipped; reason={x.shape_skipped}"
        upstream = x.timings.get("upstream")
        if upstream is not None:  # a streamed answer's headers go out before Deliver's
            extra["Server-Timing"] = timing_header(upstream)
        rc = route.cache
        private = x.identity is not None
        if rc is not None and x.cache_result is not None:  # (a cached route's, not kept)
            private = rc.private_for(x)
            extra["Cache-Status"] = (
                "edge; fwd=method" if x.cache_result == "method" else
                "edge; fwd=bypass" if x.cache_key is None else "edge; fwd=uri-miss")
        try:
            return await send_upstream_response(
                x.request, reply, x, extra, route.compress if route.shape is None else None,
                private=private, sockets=self.state.sockets)
        finally:
            reply.release()

    def _held(self, x: Exchange, held: Held) -> Answer:
        route, request = x.route, x.request
        rc = route.cache
        plan = route.shape
        if plan is None:  # an image: its formats are compressed already
            compression, quality = x.rt.config.edge.compression, x.rt.image_quality
            coding, wrap = None, None
        else:
            compression, quality, coding = plan.compression, plan.quality, x.coding
            wrap = enveloping(plan, x)
        cache = self.state.cache
        if held.entry.fmt == RAW:  # the origin's own answer, kept
            answer = respond_raw(held.entry, request.headers, request.method, rc,
                                 rc.private_for(x), held.status, held.policy, {},
                                 route.compress if plan is None else None, cache.clock())
            keep_ready(cache, x, held, answer)
            return answer
        answer = respond_from(held.entry, request.headers, coding, rc, rc.private_for(x),
                              held.status, held.policy, {}, compression, quality,
                              cache.clock(), wrap)
        keep_ready(cache, x, held, answer)
        return answer
