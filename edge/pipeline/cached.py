"""Cached answers (policies/cache.py, caching.py): from the edge cache when it can, else
fetched once however many ask at the same time, shaped, kept and answered; and composed
answers (aggregate.py), which a cached route keeps the same way."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from ..caching import ReadyAnswers, cache_result, in_signature, make_ready, respond_from
from ..context import Exchange
from ..policies.cache import storable
from ..representation import Answer, Entry
from ..shaping import Shaped, deliver, enveloping, represent, shape, shape_reply
from ..wire import timing_header
from .calls import call_upstream, upstream_headers

if TYPE_CHECKING:
    from ..runtime import State



async def cached(state: State, x: Exchange, upstream_ref: str, path: str | None) -> Answer:
    """A GET on a cached route. `path` is the upstream's, None for a composed route."""
    request, rt, route, fmt, coding = x.request, x.rt, x.route, x.fmt, x.coding
    rc, plan = route.cache, route.shape
    assert rc is not None and plan is not None
    cache = state.cache
    extra = {rt.rid_header: x.request_id}
    key = rc.key(x, upstream_ref, fmt, request.headers)
    private = rc.private_for(x)
    tags = rc.tags(x.params)

    async def fetch(previous: Entry | None, background: bool) -> Entry | Answer:
        c = replace(x, buffer_limit=rc.max_entry, timings={}) if background else x
        headers = upstream_headers(x)
        started = cache.clock()
        if path is None:  # aggregated
            shaped = await compose(c, headers)
            if c.degraded:  # a partial answer is the caller's alone, never kept
                return deliver(shaped, plan, c, coding, extra)
            return rc.new_entry(200, shaped.headers.items(), shaped.body, fmt, started,
                                tags, None, None, previous)
        if previous is not None:
            previous.ask_if_changed(headers)
        t0 = time.perf_counter()
        resp = await call_upstream(c, "GET", path, headers, None)
        took = time.perf_counter() - t0
        c.timings["upstream"] = took
        timing = {**extra, "Server-Timing": timing_header(took)}
        try:
            if resp.status == 304 and previous is not None:
                return rc.refreshed(previous, started)
            reply = resp if route.owner is None else await route.owner.release(resp, c)
            out = await shape_reply(request, reply, c, plan, fmt, timing)
            if not isinstance(out, Shaped):
                return out
            if out.status != 200:
                return deliver(out, plan, c, coding, timing)
            up_etag = resp.headers.get("ETag")
            entry = rc.new_entry(200, out.headers.items(), out.body, fmt, started, tags,
                                 up_etag, resp.headers.get("Last-Modified"), previous)
            entry.owner = c.owner
            vary = rc.learn_vary(resp.headers, request.headers)
            entry.vary = vary or ()
            # `Vary: *` (or more variants than the edge keys on): never kept
            entry.storable = vary is not None and (rc.override or storable(resp.headers))
            if entry.storable:  # never keep (and replay) somebody's cookie
                entry.headers = [h for h in entry.headers if h[0].lower() != "set-cookie"]
            return entry
        finally:
            resp.release()

    def respond(entry: Entry, status: str, policy: bool) -> Answer:
        if route.owner is not None:
            route.owner.check_held(entry.owner, x)
        x.cache_result = cache_result(status)
        wrap = enveloping(plan, x)
        answer = respond_from(entry, request.headers, coding, rc, private, status, policy,
                              extra, plan.compression, plan.quality, cache.clock(), wrap)
        if (policy and not private and answer[0].status == 200 and entry.storable
                and in_signature(entry.vary) and wrap is None
                and isinstance(answer[0], web.Response) and request.method == "GET"
                and "If-None-Match" not in request.headers
                and x.cache_result in ("hit", "miss", "revalidated", "collapsed")):
            sig = ReadyAnswers.signature(request.method, request.raw_path,
                                         request.headers, rt.devices.header)
            if sig is not None:
                cache.ready.put(sig, make_ready(answer[0], entry, route, x.device.device,
                                                x.device.network, rt.generation))
                # HEAD gets the same answer without its body (aiohttp drops it)
                cache.ready.put(("HEAD", *sig[1:]), cache.ready.answers[sig])
        return answer

    x.cache_result = "miss"
    return await cache.serve(
        key, rc, fetch, lambda e: e.storable, respond,
        fits=lambda e: e.fits(request.headers),
        rekey=lambda: rc.key(x, upstream_ref, fmt, request.headers))

async def compose_uncached(x: Exchange) -> Answer:
    plan = x.route.shape
    shaped = await compose(x, upstream_headers(x))
    extra = {x.rt.rid_header: x.request_id}
    if "Cache-Control" not in shaped.headers:
        shaped.headers["Cache-Control"] = "private, no-cache"
    return deliver(shaped, plan, x, x.coding, extra)


async def compose(x: Exchange, headers: CIMultiDict[str]) -> Shaped:
    """A composed route's document: its sources gathered, shaped and serialized."""
    route = x.route
    plan = route.shape
    assert route.aggregate is not None and plan is not None
    t0 = time.perf_counter()
    doc, degraded = await route.aggregate.gather(x, headers, plan.max_body, plan.max_depth)
    x.timings["upstream"] = time.perf_counter() - t0
    x.degraded = degraded
    out: CIMultiDict[str] = CIMultiDict()
    doc = shape(doc, plan, x, out)
    if degraded:
        out["X-Edge-Degraded"] = ", ".join(degraded)
        out["Cache-Control"] = "no-store"  # a partial answer is not worth keeping
    body = represent(doc, x.fmt, out, plan.vary)
    if x.trace is not None:
        x.trace.note(x.fmt, bytes=len(body))
    return Shaped(200, out, body)

