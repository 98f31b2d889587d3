"""Shaping: a route's shapers compiled (ShapePlan), and the steps the pipeline's Shape
and Encode layers take with them: parse the upstream's JSON within limits, run the
shapers, serialize (`represent`), and deliver the representation (`deliver`: ETag, 304,
content coding, the envelope)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
from aiohttp import web
from multidict import CIMultiDict

from .config import Compression, EdgeFile, Shape
from .context import Exchange
from .encoding import (
    FORMATS,
    NotAcceptable,
    choose_coding,
    choose_format,
    decode,
)
from .errors import Problem
from .inputs import NETWORK_HINTS, Input, Inputs, join_vary
from .representation import Wrap, encode, etag_of
from .shapers import Shaper
from .shapers.envelope import Envelope
from .shapers.fields import Fields
from .shapers.paginate import Paginator
from .wire import (
    RESPONSE_DROP,
    privatized,
)

# The representation changes, so the upstream's validators and length no longer apply.
SHAPED_DROP = RESPONSE_DROP | {"content-type", "content-encoding", "etag", "content-md5"}


class ShapePlan:
    """A route's shaping, compiled at load time (the loader built its shapers)."""

    def __init__(self, shapers: Sequence[Shaper], shape: Shape, compression: Compression,
                 edge: EdgeFile, inputs: Inputs) -> None:
        # the envelope is not a step of the document: its metadata is per request, so it
        # goes on at delivery, after the cache (`enveloping`)
        self.envelope = next((s for s in shapers if isinstance(s, Envelope)), None)
        self.shapers: list[Shaper] = [s for s in shapers if not isinstance(s, Envelope)]
        self.pager = next((s for s in self.shapers if isinstance(s, Paginator)), None)
        self.fields = next((s for s in self.shapers if isinstance(s, Fields)), None)
        self.compression = compression
        self.max_body = edge.limits.max_shaped_body
        self.max_depth = edge.limits.max_json_depth
        self.on_oversize = shape.on_oversize
        self.quality = compression.levels
        self.codings = tuple(compression.prefer)
        # every variant of the route says the same Vary: what its steps read, declared
        self.reads = frozenset({Input.FORMAT, Input.CODING}).union(
            *(s.reads for s in self.shapers),
            self.envelope.reads if self.envelope is not None else ())
        self.vary = join_vary(inputs.vary(self.reads))
        # a route that reads the network class asks for the hints it is read from
        self.client_hints: tuple[tuple[str, str], ...] = ()
        if Input.NETWORK in self.reads:
            hints = ", ".join(NETWORK_HINTS)
            self.client_hints = (("Accept-CH", hints),) + (
                (("Critical-CH", hints),) if edge.devices.network.critical else ())
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
                    choose_coding(headers.get("Accept-Encoding"), self.codings))
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


def is_json(content_type: str | None) -> bool:
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
    fmt: str = "json"
    upstream: Mapping[str, str] | None = None  # the upstream's headers (validators, Vary)


def represent(doc: Any, fmt: str, headers: CIMultiDict[str], vary: str,
              hints: Iterable[tuple[str, str]] = ()) -> bytes:
    """Serialize a shaped document; sets Content-Type, Vary and the client hints asked
    for (Accept-CH)."""
    out = msgpack.packb(doc, use_bin_type=True) if fmt == "msgpack" else orjson.dumps(doc)
    headers["Content-Type"] = FORMATS[fmt]
    headers["Vary"] = vary
    headers.extend(hints)
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


def keymap_document(name: str, table: Mapping[str, str]) -> dict[str, Any]:
    """What /_edge/keymaps/NAME serves: the table both ways, so apps can expand keys."""
    return {"name": name, "keys": dict(table), "expand": {v: k for k, v in table.items()}}
