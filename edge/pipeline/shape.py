"""Shape: the route's shapers over the answer's document (shaping.py, shapers/). On the
way up it turns the upstream's JSON `Reply`, or a composed route's `Document`, into a
`Shaped` representation: parsed within limits, shaped, serialized (JSON or MessagePack).

Only 2xx JSON is shaped. Anything else — another status, another type, a body the edge
can't decode or parse, one over the size cap — goes on up as the upstream sent it (the
Encode layer relays it with `X-Edge-Shaped: skipped; reason=…`), so nobody mistakes it
for a shaped answer."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from ..context import Exchange
from ..encoding import DecodeError, TooLarge
from ..errors import Problem
from ..shaping import SHAPED_DROP, Shaped, is_json, parse_json, represent, shape
from ..wire import BufferedReply, OverCap, Reply, read_capped
from ..wire import upstream_headers as answer_headers
from .stage import Document, Held, Inner, Layer, Up


class Shape(Layer):
    name = "shape"

    @staticmethod
    def applies(route: Any) -> bool:
        return route.shape is not None and route.image is None

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        if x.shape_skipped is not None:
            return {"skipped": x.shape_skipped}
        return {"steps": [s.name for s in x.route.shape.shapers] or "none",
                "format": x.fmt}

    async def __call__(self, x: Exchange, inner: Inner) -> Up:
        out = await inner(x)
        if isinstance(out, Document):
            return self._document(x, out.doc)
        if isinstance(out, (tuple, Shaped, Held)):
            return out
        return await self._reply(x, out)

    @staticmethod
    def _document(x: Exchange, doc: Any) -> Shaped:
        plan = x.route.shape
        headers: CIMultiDict[str] = CIMultiDict()
        doc = shape(doc, plan, x, headers)
        if x.degraded:
            headers["X-Edge-Degraded"] = ", ".join(x.degraded)
            headers["Cache-Control"] = "no-store"  # a partial answer is not worth keeping
        elif "Cache-Control" not in headers:
            headers["Cache-Control"] = "private, no-cache"  # unless the cache says more
        body = represent(doc, x.fmt, headers, plan.vary, plan.client_hints)
        if x.trace is not None:
            x.trace.note(x.fmt, bytes=len(body))
        return Shaped(200, headers, body, x.fmt)

    @staticmethod
    async def _reply(x: Exchange, resp: Reply) -> Shaped | Reply:
        plan = x.route.shape
        status = resp.status
        if not 200 <= status < 300 or not is_json(resp.content_type):
            if status == 304 and x.revalidate is not None:  # what the cache holds is current
                resp.release()
                return Shaped(304, CIMultiDict(), b"", x.fmt, resp.headers)
            x.shape_skipped = "status" if not 200 <= status < 300 else "not-json"
            return resp
        try:
            raw = await read_capped(resp, plan.max_body)
        except OverCap as skip:
            if plan.on_oversize == "error" or x.buffer_limit is not None:
                resp.release()
                kind = "upstream-bad-response" if plan.on_oversize == "error" \
                    else "response-too-large"
                raise Problem(kind, "the upstream response is larger than this route "
                              "shapes") from None
            x.shape_skipped = "too-large"
            # what was read, then the rest as it comes
            return BufferedReply(status, resp.headers.items(), skip.body,
                                 rest=resp.content.iter_any(), length=resp.content_length,
                                 source=resp)
        except (aiohttp.ClientError, TimeoutError):
            resp.release()
            raise Problem("upstream-bad-response",
                          "the upstream response was cut short") from None
        resp.release()
        x.timings["upstream_bytes"] = len(raw)
        if x.trace is not None:
            x.trace.note("upstream", status=status, type=resp.content_type, bytes=len(raw))
        headers = answer_headers(resp.headers, SHAPED_DROP, x)
        try:
            doc = parse_json(raw, resp.headers.get("Content-Encoding"),
                             max_size=plan.max_body, max_depth=plan.max_depth)
            doc = shape(doc, plan, x, headers)
        except (DecodeError, TooLarge, orjson.JSONDecodeError, RecursionError) as e:
            # Deeper than limits.max_json_depth (checked before parsing), past orjson's
            # own 1024 levels, or deep enough to exhaust the shapers' recursion: relayed,
            # never a 500.
            if isinstance(e, RecursionError) or "depth limit" in str(e):
                x.shape_skipped = "too-deep"
            elif isinstance(e, orjson.JSONDecodeError):
                x.shape_skipped = "malformed-json"
            else:
                x.shape_skipped = "undecodable"
            return BufferedReply(status, resp.headers.items(), raw)
        body = represent(doc, x.fmt, headers, plan.vary_with(resp.headers.get("Vary")),
                         plan.client_hints)
        if x.trace is not None:
            x.trace.note(x.fmt, bytes=len(body))
        return Shaped(status, headers, body, x.fmt, resp.headers)

