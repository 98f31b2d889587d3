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

import aiohttp
from aiohttp import web

from ..caching import EdgeCache, ReadyAnswers, cache_result, in_signature, make_ready
from ..context import Exchange
from ..encoding import DecodeError, TooLarge, decode
from ..errors import Problem
from ..freshness import EXPLICIT_STATUSES, HEURISTIC_STATUSES, read_request, read_response
from ..representation import Answer, Entry, if_none_match
from ..shaping import Shaped
from ..wire import RESPONSE_DROP, BufferedReply, OverCap, TeeReply, read_capped
from ..wire import upstream_headers as answer_headers
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
                if isinstance(out, RELAYED) and c.cache_key is not None:
                    return await self._relayed(c, out, previous, started, tags, background)
                if background:
                    _drop(out)
                return out
            if out.status == 304 and previous is not None:
                return rc.refreshed(previous, started, out.upstream)
            if out.status != 200 or c.degraded:  # a partial answer is the caller's alone
                return out
            up = out.upstream or {}
            said = read_response(up, started, targeted=rc.targeted) \
                if out.upstream is not None else None
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
            if entry.storable:  # never keep (and replay) somebody's cookie; nor what
                # the origin said to the edge alone
                entry.headers = [h for h in entry.headers
                                 if h[0].lower() not in rc.not_kept]
            return entry

        def respond(entry: Entry, status: str, policy: bool) -> Held:
            if route.owner is not None:
                route.owner.check_held(entry.owner, x)
            x.cache_result = cache_result(status)
            return Held(entry, status, policy)

        x.cache_result = "miss"
        if request.method == "HEAD" and route.shape is None and not image:
            # answered from a kept GET when there is one (RFC 9111 §4.3.5); else the HEAD
            # goes to the origin as it is, and nothing is kept
            x.cache_result = "method"

            async def fetch_head(previous: Entry | None, background: bool) -> Any:
                x.cache_key = None
                return await inner(x)

            fetch = fetch_head  # type: ignore[assignment]
        return await cache.serve(  # type: ignore[no-any-return]
            key, fetch, lambda e: e.storable, respond,
            fits=None if image else (lambda e: e.fits(request.headers)),
            rekey=None if image else (lambda: rc.key(x, ref, fmt, request.headers)),
            drop=_drop, asked=read_request(request.headers),
            fill=x.cache_result != "method")


    async def _relayed(self, x: Exchange, resp: Any, previous: Entry | None, started: float,
                       tags: tuple[str, ...], background: bool) -> Entry | Any:
        """An origin's answer relayed as it came (a pass-through route, or one the Shape
        layer let through): kept as the origin sent it when RFC 9111 allows — read whole
        when small, else kept while it streams to this client (`TeeReply`) and stored
        once it has gone by whole. Anything else goes on up to be relayed."""
        rc, request, cache = x.route.cache, x.request, self.state.cache
        status = resp.status
        if status == 304 and previous is not None:  # what the cache holds is current
            resp.release()
            return rc.refreshed(previous, started, resp.headers)
        said = read_response(resp.headers, started, targeted=rc.targeted)
        if not (status in HEURISTIC_STATUSES or (
                status in EXPLICIT_STATUSES and said.lifetime is not None)):
            return _unkept(resp, background)
        vary = rc.learn_vary(resp.headers, request.headers)
        if vary is None or not (rc.override or said.storable):
            return _unkept(resp, background)
        coding = resp.headers.get("Content-Encoding")
        rid = x.rt.rid_header.lower()
        headers = [(k, v) for k, v in answer_headers(resp.headers, RESPONSE_DROP, x).items()
                   if k.lower() not in _NOT_KEPT and k.lower() not in rc.not_kept
                   and k.lower() != rid]
        up_etag = resp.headers.get("ETag")
        if coding is not None and coding.lower() != "identity" and up_etag is not None \
                and not up_etag.startswith("W/"):
            up_etag = "W/" + up_etag  # kept decoded: the same content, other bytes
        key = x.cache_key

        def entry_of(body: bytes) -> Entry | None:
            if coding is not None:  # the origin coded it though asked not to: kept decoded
                try:
                    body = decode(body, coding, max_size=rc.max_entry)
                except (DecodeError, TooLarge):
                    return None
            entry = rc.new_entry(status, headers, body, RAW, started, tags, up_etag,
                                 resp.headers.get("Last-Modified"), None, said,
                                 etag=(if_none_match(up_etag) or [""])[0] if up_etag else "")
            entry.owner, entry.vary = x.owner, vary
            return entry

        length = resp.content_length
        if background or (length is not None and length <= READ_WHOLE):
            try:
                body = await read_capped(resp, rc.max_entry)
            except OverCap as over:
                if background:
                    resp.release()
                    return None
                return BufferedReply(status, resp.headers.items(), over.body,
                                     rest=resp.content.iter_any(), length=length, source=resp)
            except (aiohttp.ClientError, TimeoutError):
                resp.release()
                raise Problem("upstream-bad-response",
                              "the upstream response was cut short") from None
            resp.release()
            entry = entry_of(body)
            return entry if entry is not None else BufferedReply(
                status, resp.headers.items(), body)
        if length is not None and length > rc.max_entry:
            return resp  # too big to keep: relayed as it comes

        def done(body: bytes) -> None:
            entry = entry_of(body)
            store_key = rc.key(x, *reference(x), request.headers) if entry else None
            if entry is not None and store_key is not None and key is not None:
                cache.keep_later(store_key, entry)

        return TeeReply(resp, rc.max_entry, done)


RELAYED = (aiohttp.ClientResponse, BufferedReply)
RAW = "raw"  # the format of a kept relayed answer (its body as the origin sent it)
READ_WHOLE = 64 * 1024  # a relayed answer up to this long is read whole before it is sent
# never kept with an answer: the edge's own, made per request
_NOT_KEPT = frozenset({"server-timing", "age",
                       "cache-status", "content-length", "content-encoding"})


def _unkept(resp: Any, background: bool) -> Any:
    if background:
        _drop(resp)
        return None
    return resp


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
