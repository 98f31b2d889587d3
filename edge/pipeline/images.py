"""An image route's source (imaging.py, images/): the size and format this client should
get (query, preset, client hints, device and network class, Accept), made in a worker
process from the source image. The Cache layer keeps the result like any answer (ETag,
304, coalesced misses); the source image is kept here too, and revalidated with its
upstream validators, so a new size of a known image costs the upstream a 304."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from ..context import Exchange
from ..errors import Problem
from ..imaging import ACCEPT_CH
from ..shaping import Shaped
from ..wire import OverCap, Reply, read_capped
from .calls import CONDITIONALS, call_upstream, upstream_headers

if TYPE_CHECKING:
    from ..runtime import State


def image_target(x: Exchange) -> Any:
    """The variant this request asks for (made once), and the source image's path."""
    if x.variant is None:
        route, request = x.route, x.request
        x.variant = route.image.spec(request.raw_path, request.query, request.headers,
                                     x.device)
        builder = route.spec.upstream_path
        assert builder is not None
        x.target = builder.build(x.params)  # the query is the edge's, never the upstream's
    return x.variant


async def image(state: State, x: Exchange) -> Shaped | Reply:
    """The variant, made; or the upstream's answer when it has no image to give."""
    rt, route = x.rt, x.route
    img, rc = route.image, route.cache
    assert img is not None and rc is not None
    spec = image_target(x)
    path = x.target
    headers = upstream_headers(x)
    for name in CONDITIONALS:
        headers.popall(name, None)
    headers["Accept"] = "image/*"
    headers["Accept-Encoding"] = "identity"
    source_key = "src:" + hashlib.blake2b(f"{route.name}|{path}".encode(),
                                          digest_size=16).hexdigest()
    source = await state.cache.get(source_key)
    if source is not None:
        source.ask_if_changed(headers)
    started = state.cache.clock()
    t0 = time.perf_counter()
    resp = await call_upstream(x, "GET", path, headers, None)
    x.timings["upstream"] = time.perf_counter() - t0
    if resp.status == 304 and source is not None:
        raw = source.body
        resp.release()
    elif resp.status != 200:
        return resp  # relayed as it came
    else:
        try:
            raw = await read_capped(resp, img.limits.max_source_bytes)
        except OverCap:
            raise Problem("bad-image", f"too-large: the source image is over "
                          f"{img.limits.max_source_bytes} bytes", reason="too-large") from None
        finally:
            resp.release()
        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        if etag or modified:
            await state.cache.put(source_key, rc.new_entry(
                200, [], raw, "source", started, rc.tags(x.params), etag, modified, None))
    t1 = time.perf_counter()
    result = await state.images.run(raw, spec, img.limits, route.name, img.policy.timeout)
    x.timings["transform"] = time.perf_counter() - t1
    state.metrics.image_done(route.name, len(raw), len(result.body), x.timings["transform"])
    out: CIMultiDict[str] = CIMultiDict(
        (("Content-Type", result.content_type), ("Vary", rt.image_vary),
         ("Accept-CH", ACCEPT_CH)))
    return Shaped(200, out, result.body, result.format)
