"""Cache: the edge cache (caching.py) around everything below it, for a GET on a cached
route. On the way down it looks the answer up (its key: the route's, from what the answer
is made of and the inputs the route declares it reads); a fresh entry goes up as `Held`
and nothing below runs. On a miss the layers below run once however many ask at the same
time, and what comes up `Shaped` is kept as an entry (when the upstream allows) and goes
up `Held`. An answer that can't be kept (another status, a relay) goes up as it came.
A rendered public answer is remembered for the fast lane (`keep_ready`, from Encode)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from ..caching import EdgeCache, ReadyAnswers, cache_result, in_signature, make_ready
from ..context import Exchange
from ..freshness import read_request, read_response
from ..representation import Answer, Entry
from ..shaping import Shaped
from .source import reference
from .stage import Held, Inner, Layer, Up


class Cache(Layer):
    name = "cache"

    @staticmethod
    def applies(route: Any) -> bool:
        return route.cache is not None

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        if x.cache_result is None:
            return None
        return {"result": x.cache_result, "key": x.cache_key}

    async def __call__(self, x: Exchange, inner: Inner) -> Up:
        request, route = x.request, x.route
        if request.method != "GET" and request.method != "HEAD":
            return await inner(x)
        rc = route.cache
        cache = self.state.cache
        ref, fmt = reference(x)
        key = x.cache_key = rc.key(x, ref, fmt, request.headers)
        image = route.image is not None
        tags = (*rc.tags(x.params), "uri:" + x.path)  # a write to the URI purges it

        async def fetch(previous: Entry | None, background: bool) -> Entry | Up:
            c = replace(x, buffer_limit=rc.max_entry, timings={}) if background else x
            c.revalidate = previous
            started = cache.clock()
            out = await inner(c)
            if not isinstance(out, Shaped):
                if background:
                    _drop(out)
                return out
            if out.status == 304 and previous is not None:
                return rc.refreshed(previous, started, out.upstream)
            if out.status != 200 or c.degraded:  # a partial answer is the caller's alone
                return out
            up = out.upstream or {}
            said = read_response(up, started) if out.upstream is not None else None
            entry = rc.new_entry(200, out.headers.items(), out.body, out.fmt, started, tags,
                                 up.get("ETag"), up.get("Last-Modified"), previous, said)
            if image:
                return entry
            entry.owner = c.owner
            vary = rc.learn_vary(up, request.headers)
            entry.vary = vary or ()
            # `Vary: *` (or more variants than the edge keys on): never kept; nor what the
            # upstream says no shared cache may keep (no-store, private, Set-Cookie)
            entry.storable = vary is not None and (
                rc.override or said is None or said.storable)
            if entry.storable:  # never keep (and replay) somebody's cookie
                entry.headers = [h for h in entry.headers if h[0].lower() != "set-cookie"]
            return entry

        def respond(entry: Entry, status: str, policy: bool) -> Held:
            if route.owner is not None:
                route.owner.check_held(entry.owner, x)
            x.cache_result = cache_result(status)
            return Held(entry, status, policy)

        x.cache_result = "miss"
        return await cache.serve(  # type: ignore[no-any-return]
            key, fetch, lambda e: e.storable, respond,
            fits=None if image else (lambda e: e.fits(request.headers)),
            rekey=None if image else (lambda: rc.key(x, ref, fmt, request.headers)),
            drop=_drop, asked=read_request(request.headers))


def _drop(out: Any) -> None:
    """An upstream answer nobody will read (a background refresh's, or one that lost to a
    stale entry): its connection goes back."""
    release = getattr(out, "release", None)
    if release is not None and not isinstance(out, tuple):
        release()


def keep_ready(cache: EdgeCache, x: Exchange, held: Held, answer: Answer) -> None:
    """Remember a rendered public 200 for the fast lane, when nothing about this request
    makes it someone's own and the fast lane can tell its variants apart."""
    request, entry = x.request, held.entry
    response = answer[0]
    if (held.policy and response.status == 200 and entry.storable
            and x.cache_result in ("hit", "miss", "revalidated", "collapsed")
            and request.method == "GET" and isinstance(response, web.Response)
            and "If-None-Match" not in request.headers and in_signature(entry.vary)
            and not x.envelope and x.route.image is None
            and not x.route.cache.private_for(x)):
        rt = x.rt
        sig = ReadyAnswers.signature(request.method, request.raw_path, request.headers,
                                     rt.devices.header)
        if sig is not None:
            ready = make_ready(response, entry, x.route, x.device.device, x.device.network,
                               rt.generation)
            cache.ready.put(sig, ready)
            # HEAD gets the same answer without its body (aiohttp drops it)
            cache.ready.put(("HEAD", *sig[1:]), ready)
