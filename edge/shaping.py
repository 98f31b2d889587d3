"""Shaped responses: read the upstream's JSON, run the route's shapers, encode, compress.

Only 2xx JSON is shaped. Anything else — another status, another type, a body the edge
can't decode or parse, one over the size cap — is relayed as the upstream sent it, with
`X-Edge-Shaped: skipped; reason=…` so nobody mistakes it for a shaped answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgpack
import orjson
from aiohttp import web
from multidict import CIMultiDict

from .config import Compression, EdgeFile, Shape
from .context import Incoming, RequestContext
from .encoding import (
    FORMATS,
    DecodeError,
    NotAcceptable,
    TooLarge,
    choose_coding,
    choose_format,
    compress,
    decode,
)
from .errors import Problem
from .policies.cache import NOT_ON_304, etag_of, not_modified, quoted
from .proxy import (
    RESPONSE_DROP,
    Reply,
    Skip,
    privatized,
    read_capped,
    send_upstream_response,
    upstream_headers,
)
from .shapers import Shaper
from .shapers.envelope import Envelope
from .shapers.paginate import Paginator

# The representation changes, so the upstream's validators and length no longer apply.
_SHAPED_DROP = RESPONSE_DROP | {"content-type", "content-encoding", "etag", "content-md5"}


class ShapePlan:
    """A route's shaping, compiled at load time (the loader built its shapers)."""

    def __init__(self, shapers: Sequence[Shaper], shape: Shape, compression: Compression,
                 edge: EdgeFile) -> None:
        self.shapers: list[Shaper] = list(shapers)
        self.envelope = next((s for s in self.shapers if isinstance(s, Envelope)), None)
        self.pager = next((s for s in self.shapers if isinstance(s, Paginator)), None)
        self.compression = compression
        self.max_body = edge.limits.max_shaped_body
        self.max_depth = edge.limits.max_json_depth
        self.on_oversize = shape.on_oversize
        self.quality = {"br": compression.brotli_quality, "gzip": compression.gzip_level}

    def negotiate(self, headers: Mapping[str, str]) -> tuple[str, str | None]:
        """(format, coding) for this request, before the upstream is called; 406 if none."""
        try:
            return (choose_format(headers.get("Accept")),
                    choose_coding(headers.get("Accept-Encoding")))
        except NotAcceptable as e:
            raise Problem("not-acceptable", str(e)) from None


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


def _levels(skeleton: bytes, limit: int) -> bool | None:
    """True: nested deeper than `limit`; False: not; None: unbalanced (can't tell)."""
    for _ in range(limit):
        # mark both kinds of innermost pair first, so `[{}]` loses one level per pass
        shorter = skeleton.replace(b"[]", b"..").replace(b"{}", b"..").replace(b".", b"")
        if not shorter:
            return False
        if len(shorter) == len(skeleton):
            return None
        skeleton = shorter
    return True


def too_deep(body: bytes, limit: int) -> bool:
    """Is the JSON nested deeper than `limit`? Checked on the bytes, before parsing.

    Peeling innermost empty pairs off the bracket skeleton is C-speed (~13 µs for 10 KB);
    only when that says "too deep" or can't tell (brackets inside strings) is the exact
    check, with strings removed first, paid for.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    fast = _levels(body.translate(None, _NOT_BRACKETS), limit)
    if fast is False:
        return False
    exact = _levels(_STRING.sub(b"", body).translate(None, _NOT_BRACKETS), limit)
    return bool(exact)


def parse_json(raw: bytes, content_encoding: str | None, *, max_size: int,
               max_depth: int) -> Any:
    """Decode and parse an upstream body within limits. Raises DecodeError, TooLarge,
    orjson.JSONDecodeError, or RecursionError for a too-deep document."""
    body = decode(raw, content_encoding, max_size=max_size)
    if too_deep(body, max_depth):
        raise RecursionError
    return orjson.loads(body)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@dataclass(slots=True)
class Shaped:
    """A shaped representation: serialized, not yet compressed."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


async def send_shaped(request: Incoming, resp: Reply, ctx: RequestContext, plan: ShapePlan,
                      fmt: str, coding: str | None,
                      extra: Mapping[str, str]) -> tuple[web.StreamResponse, int]:
    out = await shape_reply(request, resp, ctx, plan, fmt, extra)
    if not isinstance(out, Shaped):
        return out
    return deliver(out, plan, ctx, coding, extra)


async def shape_reply(request: Incoming, resp: Reply, ctx: RequestContext, plan: ShapePlan,
                      fmt: str, extra: Mapping[str, str]
                      ) -> Shaped | tuple[web.StreamResponse, int]:
    """The upstream's answer shaped and serialized — or, when it can't be shaped, the
    answer relaying it as it came."""
    if not 200 <= resp.status < 300 or not _is_json(resp.content_type):
        reason = "status" if not 200 <= resp.status < 300 else "not-json"
        ctx.shape_skipped = reason
        return await send_upstream_response(
            request, resp, ctx, {**extra, "X-Edge-Shaped": f"skipped; reason={reason}"})
    try:
        raw = await read_capped(resp, plan.max_body)
    except Skip as skip:
        if plan.on_oversize == "error":
            raise Problem("upstream-bad-response",
                          "the upstream response is larger than this route shapes") from None
        if ctx.buffer_limit is not None:
            raise Problem("response-too-large",
                          "the upstream response is larger than this route shapes") from None
        ctx.shape_skipped = "too-large"
        assert isinstance(request, web.BaseRequest)  # only a real client connection streams
        return await _relay_rest(request, resp, ctx, skip.body,
                                 {**extra, "X-Edge-Shaped": "skipped; reason=too-large"})
    except (aiohttp.ClientError, TimeoutError):
        raise Problem("upstream-bad-response", "the upstream response was cut short") from None
    ctx.timings["upstream_bytes"] = len(raw)
    headers = upstream_headers(resp.headers, _SHAPED_DROP, ctx)
    try:
        doc = parse_json(raw, resp.headers.get("Content-Encoding"), max_size=plan.max_body,
                         max_depth=plan.max_depth)
        doc, vary = shape(doc, plan, ctx, headers)
    except (DecodeError, TooLarge, orjson.JSONDecodeError, RecursionError) as e:
        # Deeper than limits.max_json_depth (checked before parsing), past orjson's own
        # 1024 levels, or deep enough to exhaust the shapers' recursion: relay, never 500.
        if isinstance(e, RecursionError) or "depth limit" in str(e):
            reason = "too-deep"
        elif isinstance(e, orjson.JSONDecodeError):
            reason = "malformed-json"
        else:
            reason = "undecodable"
        passthrough = upstream_headers(resp.headers, RESPONSE_DROP, ctx)
        passthrough.update(extra)
        passthrough["X-Edge-Shaped"] = f"skipped; reason={reason}"
        ctx.shape_skipped = reason
        return web.Response(status=resp.status, headers=passthrough, body=raw), len(raw)
    body = represent(doc, fmt, headers, vary, resp.headers.get("Vary"))
    return Shaped(resp.status, headers, body)


def represent(doc: Any, fmt: str, headers: CIMultiDict[str], vary: list[str],
              upstream_vary: str | None = None) -> bytes:
    """Serialize a shaped document; sets Content-Type and Vary."""
    out = msgpack.packb(doc, use_bin_type=True) if fmt == "msgpack" else orjson.dumps(doc)
    headers["Content-Type"] = FORMATS[fmt]
    if upstream_vary:
        vary.extend(v.strip() for v in upstream_vary.split(",")
                    if v.strip() and v.strip() not in vary)
    headers["Vary"] = ", ".join(vary)
    return bytes(out)


def render(doc: Any, plan: ShapePlan, ctx: RequestContext, fmt: str, coding: str | None,
           headers: CIMultiDict[str], vary: list[str], extra: Mapping[str, str], *,
           status: int = 200) -> tuple[web.StreamResponse, int]:
    """Serialize, validate and compress a shaped document into the response."""
    body = represent(doc, fmt, headers, vary)
    return deliver(Shaped(status, headers, body), plan, ctx, coding, extra)


def deliver(shaped: Shaped, plan: ShapePlan, ctx: RequestContext, coding: str | None,
            extra: Mapping[str, str]) -> tuple[web.StreamResponse, int]:
    """A strong ETag for the representation (its compressed variant gets its own), 304
    when the client already holds it, else the body in the client's coding."""
    headers = shaped.headers
    headers.update(extra)
    if ctx.identity is not None:
        headers["Cache-Control"] = privatized(headers.get("Cache-Control"))
    body = shaped.body
    used = coding if coding is not None and len(body) >= plan.compression.min_size else None
    etag = etag_of(body)
    headers["ETag"] = quoted(etag, used)
    if (shaped.status == 200 and ctx.conditional is not None
            and not_modified(ctx.conditional, etag, headers.get("Last-Modified"))):
        for name in NOT_ON_304:
            headers.popall(name, None)
        return web.Response(status=304, headers=headers), 0
    if used is not None:
        body = compress(body, used, quality=plan.quality[used])
        headers["Content-Encoding"] = used
    return web.Response(status=shaped.status, headers=headers, body=body), len(body)


def shape(doc: Any, plan: ShapePlan, ctx: RequestContext, headers: CIMultiDict[str]
          ) -> tuple[Any, list[str]]:
    """Run the route's shapers over a parsed document; returns it and the Vary list."""
    vary: list[str] = ["Accept", "Accept-Encoding"]
    if plan.pager is not None:
        plan.pager.read(doc, ctx)
    for shaper in plan.shapers:
        doc = shaper.apply(doc, ctx)
        headers.update(shaper.headers(ctx))
        vary.extend(h for h in shaper.vary(ctx) if h not in vary)
    return doc, vary


async def _relay_rest(request: web.BaseRequest, resp: Reply,
                      ctx: RequestContext, head: bytes,
                      extra: Mapping[str, str]) -> tuple[web.StreamResponse, int]:
    """Stream an over-cap body through: what was already read, then the rest."""
    headers: CIMultiDict[str] = upstream_headers(resp.headers, RESPONSE_DROP, ctx)
    headers.update(extra)
    if ctx.response_headers:
        headers.update(ctx.response_headers)
    stream = web.StreamResponse(status=resp.status, headers=headers)
    if resp.content_length is not None:
        stream.content_length = resp.content_length
    await stream.prepare(request)
    sent = 0
    try:
        if head:
            await stream.write(head)
            sent += len(head)
        async for chunk in resp.content.iter_any():
            await stream.write(chunk)
            sent += len(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
        if request.transport is not None:
            request.transport.abort()
        return stream, sent
    await stream.write_eof()
    return stream, sent


def keymap_document(name: str, table: Mapping[str, str]) -> dict[str, Any]:
    """What /_edge/keymaps/NAME serves: the table both ways, so apps can expand keys."""
    return {"name": name, "keys": dict(table), "expand": {v: k for k, v in table.items()}}
