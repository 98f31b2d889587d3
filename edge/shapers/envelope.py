"""The standard envelope: `{"success", "data", "metadata"}`, for apps built around it.

`metadata` carries `cached`, `data_sources`, `response_time_ms` and `api_version`. Problem
answers get the matching `{"success": false, "error": {...problem...}, "metadata"}` when
the envelope applies to the request (see app.py).
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import orjson

from ..config.models import EdgeFile, Shape
from ..context import RequestContext
from ..inputs import Input

TRUE = frozenset({"1", "true", "yes", "on"})


class Envelope:
    name = "envelope"

    def __init__(self, when: str, api_version: str, sources: tuple[str, ...]) -> None:
        self.always = when == "always"
        self.api_version = api_version
        self.sources = list(sources)

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Envelope | None:
        e = shape.envelope
        return None if e is None else cls(e.when, e.api_version, sources)

    def wanted(self, query_value: str | None, header_value: str | None) -> bool:
        if self.always:
            return True
        return (query_value or header_value or "").lower() in TRUE

    def metadata(self, ctx: RequestContext, cached: bool = False) -> dict[str, Any]:
        meta = {"cached": cached, "data_sources": self.sources,
                "response_time_ms": round((time.perf_counter() - ctx.started) * 1000, 2),
                "api_version": self.api_version}
        if ctx.degraded:
            meta["degraded"] = ctx.degraded
        return meta

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        if not ctx.envelope:
            return doc
        return {"success": True, "data": doc, "metadata": self.metadata(ctx)}

    def wrap(self, body: bytes, fmt: str, ctx: RequestContext, cached: bool) -> bytes:
        """A serialized document put in the envelope as it is delivered, without parsing
        it again: the metadata (cached, response time) is this request's own."""
        meta = self.metadata(ctx, cached)
        if fmt == "msgpack":
            pack = msgpack.packb
            return b"".join((b"\x83", pack("success"), pack(True), pack("data"), body,
                             pack("metadata"), pack(meta, use_bin_type=True)))
        return b"".join((b'{"success":true,"data":', body, b',"metadata":',
                         orjson.dumps(meta), b"}"))

    def error(self, problem: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"success": False, "error": problem, "metadata": self.metadata(ctx)}

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset() if self.always else frozenset({Input.ENVELOPE})
