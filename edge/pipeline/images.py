"""An image route (imaging.py, images/): the size and format this client should get
(query, preset, client hints, device and network class, Accept), made once in a worker
process and cached like any answer (ETag, 304, coalesced misses). The source image is kept
too, and revalidated with its upstream validators."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ..caching import cache_result, respond_from
from ..context import Exchange
from ..errors import Problem
from ..imaging import ACCEPT_CH
from ..representation import Answer, Entry
from ..wire import OverCap, read_capped, send_upstream_response
from .calls import CONDITIONALS, call_upstream, upstream_headers

if TYPE_CHECKING:
    from ..runtime import State



async def image(state: State, x: Exchange) -> Answer:
    request, rt, route = x.request, x.rt, x.route
    img, rc = route.image, route.cache
    assert img is not None and rc is not None
    spec = img.spec(request.raw_path, request.query, request.headers, x.device)
    builder = route.spec.upstream_path
    assert builder is not None
    path = builder.build(x.params)  # the query is the edge's, never the upstream's
    extra = {rt.rid_header: x.request_id}
    described = [("Vary", rt.image_vary), ("Accept-CH", ACCEPT_CH)]
    tags = rc.tags(x.params)
    compression = rt.config.edge.compression
    source_key = "src:" + hashlib.blake2b(f"{route.name}|{path}".encode(),
                                          digest_size=16).hexdigest()

    async def fetch(previous: Entry | None, background: bool) -> Entry | Answer:
        c = replace(x, buffer_limit=img.limits.max_source_bytes, timings={}) \
            if background else x
        headers = upstream_headers(c)
        for name in CONDITIONALS:
            headers.popall(name, None)
        headers["Accept"] = "image/*"
        headers["Accept-Encoding"] = "identity"
        # the source too is kept (when small enough) and revalidated with its
        # upstream validators, so a new size of a known image costs a 304 upstream
        source = await state.cache.get(source_key)
        if source is not None:
            source.ask_if_changed(headers)
        started = state.cache.clock()
        t0 = time.perf_counter()
        resp = await call_upstream(c, "GET", path, headers, None)
        c.timings["upstream"] = time.perf_counter() - t0
        try:
            if resp.status == 304 and source is not None:
                raw = source.body
            elif resp.status != 200:
                return await send_upstream_response(request, resp, c, extra)
            else:
                try:
                    raw = await read_capped(resp, img.limits.max_source_bytes)
                except OverCap:
                    raise Problem("bad-image", f"too-large: the source image is over "
                                  f"{img.limits.max_source_bytes} bytes",
                                  reason="too-large") from None
                etag, modified = resp.headers.get("ETag"), resp.headers.get(
                    "Last-Modified")
                if etag or modified:
                    await state.cache.put(source_key, rc.new_entry(
                        200, [], raw, "source", started, tags, etag, modified, None))
        finally:
            resp.release()
        t1 = time.perf_counter()
        result = await state.images.run(raw, spec, img.limits, route.name,
                                             img.policy.timeout)
        c.timings["transform"] = time.perf_counter() - t1
        state.metrics.image_done(route.name, len(raw), len(result.body),
                                c.timings["transform"])
        return rc.new_entry(200, [("Content-Type", result.content_type), *described],
                            result.body, result.format, started, tags, None, None, None)

    private = rc.private_for(x)
    key = rc.key(x, f"{path}|{spec!r}", spec.format, request.headers)
    quality = {"br": compression.brotli_quality, "gzip": compression.gzip_level}

    def respond(entry: Entry, status: str, policy: bool) -> Answer:
        x.cache_result = cache_result(status)
        return respond_from(entry, request.headers, None, rc, private, status, policy,
                            extra, compression, quality, state.cache.clock())

    x.cache_result = "miss"
    return await state.cache.serve(key, rc, fetch, lambda e: True, respond)
