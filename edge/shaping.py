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
from .context import Exchange, Incoming
from .encoding import (
    FORMATS,
    DecodeError,
    NotAcceptable,
    TooLarge,
    choose_coding,
    choose_format,
    decode,
)
from .errors import Problem
from .inputs import Input, Inputs, join_vary
from .representation import Wrap, encode, etag_of
from .shapers import Shaper
from .shapers.envelope import Envelope
from .shapers.paginate import Paginator
from .wire import (
    RESPONSE_DROP,
    OverCap,
    Reply,
    privatized,
    read_capped,
    send_upstream_response,
    upstream_headers,
)

# The representation changes, so the upstream's validators and length no longer apply.
_SHAPED_DROP = RESPONSE_DROP | {"content-type", "content-encoding", "etag", "content-md5"}


class ShapePlan:
    """A route's shaping, compiled at load time (the loader built its shapers)."""

    def __init__(self, shapers: Sequence[Shaper], shape: Shape, compression: Compression,
                 edge: EdgeFile, inputs: Inputs) -> None:
        # the envelope is not a step of the document: its metadata is per request, so it
        # goes on at delivery, after the cache (`enveloping`)
        self.envelope = next((s for s in shapers if isinstance(s, Envelope)), None)
        self.shapers: list[Shaper] = [s for s in shapers if not isinstance(s, Envelope)]
        self.pager = next((s for s in self.shapers if isinstance(s, Paginator)), None)
        self.compression = compression
        self.max_body = edge.limits.max_shaped_body
        self.max_depth = edge.limits.max_json_depth
        self.on_oversize = shape.on_oversize
        self.quality = {"br": compression.brotli_quality, "gzip": compression.gzip_level}
        # every variant of the route says the same Vary: what its steps read, declared
        self.reads = frozenset({Input.FORMAT, Input.CODING}).union(
            *(s.reads for s in self.shapers),
            self.envelope.reads if self.envelope is not None else ())
        self.vary = join_vary(inputs.vary(self.reads))
        self._with_upstream: dict[str, str] = {}

    def vary_with(self, upstream_vary: str | None) -> str:
        """The route's Vary, joined by what the upstream's answer says it varies on."""
        if not upstream_vary:
            return self.vary
        found = self._with_upstream.get(upstream_vary)
        if found is None:
            if len(self._with_upstream) >= 64:
                self._with_upstream.clear()
            found = self._with_upstream[upstream_vary] = join_vary(
                self.vary.split(", "), upstream_vary.split(","))
        return found

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


async def send_shaped(request: Incoming, resp: Reply, ctx: Exchange, plan: ShapePlan,
                      fmt: str, coding: str | None,
                      extra: Mapping[str, str]) -> tuple[web.StreamResponse, int]:
    out = await shape_reply(request, resp, ctx, plan, fmt, extra)
    if not isinstance(out, Shaped):
        return out
    return deliver(out, plan, ctx, coding, extra)


async def shape_reply(request: Incoming, resp: Reply, ctx: Exchange, plan: ShapePlan,
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
    except OverCap as skip:
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
    if ctx.trace is not None:
        ctx.trace.note("upstream", status=resp.status, type=resp.content_type, bytes=len(raw))
    headers = upstream_headers(resp.headers, _SHAPED_DROP, ctx)
    try:
        doc = parse_json(raw, resp.headers.get("Content-Encoding"), max_size=plan.max_body,
                         max_depth=plan.max_depth)
        doc = shape(doc, plan, ctx, headers)
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
    body = represent(doc, fmt, headers, plan.vary_with(resp.headers.get("Vary")))
    if ctx.trace is not None:
        ctx.trace.note(fmt, bytes=len(body))
    return Shaped(resp.status, headers, body)


def represent(doc: Any, fmt: str, headers: CIMultiDict[str], vary: str) -> bytes:
    """Serialize a shaped document; sets Content-Type and Vary."""
    out = msgpack.packb(doc, use_bin_type=True) if fmt == "msgpack" else orjson.dumps(doc)
    headers["Content-Type"] = FORMATS[fmt]
    headers["Vary"] = vary
    return bytes(out)


def deliver(shaped: Shaped, plan: ShapePlan, ctx: Exchange, coding: str | None,
            extra: Mapping[str, str]) -> tuple[web.StreamResponse, int]:
    """A strong ETag for the representation (its compressed variant gets its own), 304
    when the client already holds it, else the body in the client's coding."""
    headers = shaped.headers
    headers.update(extra)
    if ctx.identity is not None:
        headers["Cache-Control"] = privatized(headers.get("Cache-Control"))
    return encode(shaped.status, headers, shaped.body, etag_of(shaped.body),
                  conditional=ctx.conditional, coding=coding,
                  min_size=plan.compression.min_size, quality=plan.quality,
                  wrap=enveloping(plan, ctx))


def enveloping(plan: ShapePlan, ctx: Exchange) -> Wrap | None:
    """How this request's answer is put in the envelope, if it asked for one. The envelope
    carries per-request metadata, so it goes on at delivery, after the cache; the ETag
    stays the data's, weak (the metadata is not part of what it validates)."""
    envelope = plan.envelope
    if envelope is None or not ctx.envelope:
        return None
    return lambda body, packed, cached: envelope.wrap(
        body, "msgpack" if packed else "json", ctx, cached)


def shape(doc: Any, plan: ShapePlan, ctx: Exchange, headers: CIMultiDict[str]) -> Any:
    """Run the route's shapers over a parsed document."""
    trace = ctx.trace
    if trace is not None:
        trace.note("parsed", bytes=len(orjson.dumps(doc)))
    if plan.pager is not None:
        plan.pager.read(doc, ctx)
    for shaper in plan.shapers:
        doc = shaper.apply(doc, ctx)
        headers.update(shaper.headers(ctx))
        if trace is not None:
            trace.note(shaper.name, bytes=len(orjson.dumps(doc)))
    return doc


async def _relay_rest(request: web.BaseRequest, resp: Reply,
                      ctx: Exchange, head: bytes,
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
