"""The edge cache at serving time: look up, coalesce misses, refresh in the background,
answer from an entry (200, 304 or 226), purge.

`EdgeCache` is process-wide (it outlives config reloads); `RouteCache` (policies/cache.py)
is one route's policy. The fetch itself — the pipeline's layers below its Cache layer:
upstream call, shaping, serialization — is the caller's: `Fetch(previous entry,
in_background) -> Entry | anything else`, where anything else means "this can't be kept;
it is the answer for the leader as it is".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict

from .backends import Backend
from .backends.tiers import Invalidations, TieredCache
from .config import CacheSettings, Compression
from .encoding import NotAcceptable, choose_coding, compress, is_compressible
from .errors import Problem
from .freshness import ANY, Asked
from .inputs import ENVELOPE_HEADER, HINT_HEADERS, KEYMAP_HEADER, NETWORK_HEADERS
from .policies.cache import RouteCache
from .representation import (
    IM_TYPES,
    NOT_ON_304,
    Answer,
    Entry,
    Wrap,
    age,
    byte_range,
    encode,
    if_none_match,
    if_range_holds,
    kept_variant,
    not_modified,
    quoted,
    wanted_delta,
)
from .stores import StoreSize
from .wire import SHARED_ONLY, PassCompression, privatized, varies_on_coding

log = logging.getLogger("edge.cache")
# fetch(previous entry, in_background) → a new entry, or an answer that can't be cached
Fetch = Callable[[Entry | None, bool], Awaitable[Any]]


class EdgeCache:
    def __init__(self, settings: CacheSettings, backend: Backend, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock  # the wall clock (entries' times are shared through Redis)
        self.store = TieredCache(settings.max_memory, backend, Entry.pack, Entry.unpack,
                                 clock)
        self.invalidations = Invalidations(backend, clock)
        self.invalidations.on_all = self._forget_memory
        self._inflight: dict[str, asyncio.Future[Entry | None]] = {}
        self.ready = ReadyAnswers(settings.max_memory // 4)
        # told of every purge made here (not those heard from other instances)
        self.on_purge: Callable[[list[str]], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def configure(self, settings: CacheSettings) -> None:
        """A reloaded config's cache settings: the memory tier's bound and the largest entry
        apply at once (the entries stay; delta history follows the routes, rebuilt anyway)."""
        self.settings = settings
        self.store.memory.resize(settings.max_memory)
        self.ready.max_bytes = settings.max_memory // 4

    async def start(self) -> None:
        await self.invalidations.start()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.invalidations.close()
        await self.store.close()

    def _forget_memory(self) -> None:
        self.ready.clear()
        self._spawn(self.store.clear_memory())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def get(self, key: str) -> Entry | None:
        entry = (await self.lookup(key))[0]
        return entry

    async def lookup(self, key: str) -> tuple[Entry | None, Entry | None]:
        """(an entry that may be served, the stored one even if purged). A purged entry
        is never served, but its validators and body still help: the upstream may say
        it is unchanged, and an app holding it can get a delta to the new version."""
        entry: Entry | None = await self.store.get(key)
        if entry is None or not self.invalidations.valid(entry.tags, entry.stored_at):
            return None, entry
        return entry, entry

    async def put(self, key: str, entry: Entry) -> bool:
        ttl = entry.store_until - self.clock()
        if ttl <= 0 or len(entry.body) > self.settings.max_entry:
            return False
        await self.store.set(key, entry, ttl)
        return True

    def keep_later(self, key: str, entry: Entry) -> None:
        """Store an entry made after its answer went out (a body kept as it streamed)."""
        self._spawn(self.put(key, entry))

    async def purge(self, tags: list[str]) -> dict[str, Any]:
        event = await self.invalidations.purge(tags)
        if self.on_purge is not None:
            await self.on_purge(tags)
        return event

    async def serve(self, key: str | None, fetch: Fetch,
                    storable: Callable[[Entry], bool],
                    respond: Callable[[Entry, str, bool], Any],
                    fits: Callable[[Entry], bool] | None = None,
                    rekey: Callable[[], str | None] | None = None,
                    drop: Callable[[Any], None] | None = None,
                    asked: Asked = ANY, fill: bool = True) -> Any:
        """The answer for `key`: fresh, stale-while-revalidate, coalesced, fetched, or
        stale-if-error. `respond(entry, cache_status, policy_headers)` says how an entry
        answers; what `fetch` returns that is no entry (it can't be kept) is the answer
        as it is. No key: a caller the cache can't tell apart from others, fetched for
        itself alone.

        `fits(entry)` says whether an entry may answer this request (the upstream's Vary);
        `rekey()` is the key to store a fetched entry under, once its Vary is known;
        `drop(result)` lets go of a fetched answer a stale entry is served instead of.
        `asked`: the request's own say (RFC 9111 §5.2.1: no-cache, max-age, max-stale,
        min-fresh, only-if-cached). `fill=False`: a kept entry may answer, but a miss is
        fetched for this caller alone and nothing is kept (a HEAD)."""
        if key is None:
            if asked.only_if_cached:
                raise _not_cached()
            result = await fetch(None, False)
            return respond(result, "fwd=bypass", False) if isinstance(result, Entry) \
                else result
        entry, previous = await self.lookup(key)
        if entry is not None and fits is not None and not fits(entry):
            entry = previous = None
        now = self.clock()
        if entry is not None:
            left = entry.fresh_until - now
            if asked is ANY:
                if left > 0:
                    return respond(entry, f"hit; ttl={int(left)}", True)
                if -left < entry.swr:
                    self._refresh(key, entry, fetch, storable, rekey)
                    return respond(entry, f"hit; ttl={int(left)}; "
                                   "detail=stale-while-revalidate", True)
            elif asked.accepts(now - entry.stored_at, left):
                return respond(entry, f"hit; ttl={int(left)}" if left > 0 else
                               f"hit; ttl={int(left)}; detail=max-stale", True)
        if asked.only_if_cached:
            raise _not_cached()
        if not fill:
            return await fetch(None, False)
        pending = self._inflight.get(key)
        try:
            if pending is not None:
                shared = await asyncio.shield(pending)
                if shared is not None and (fits is None or fits(shared)):
                    return respond(shared, "fwd=uri-miss; collapsed", True)
                result = await fetch(previous, False)  # not shareable: this caller's own
                if isinstance(result, Entry):
                    return respond(result, "fwd=uri-miss", False)
                answer = result
            else:
                answer = await self._lead(key, previous, fetch, storable, respond, rekey)
        except Problem as p:
            if entry is not None and self.clock() < entry.fresh_until + entry.sie:
                return _stale_if_error(entry, p.status, respond, self.clock())
            raise
        finally:
            # the shared future holds the leader's exception, whose traceback holds this
            # frame: without the future here they make no cycle (freed now, not at a
            # full GC, with the exchange and upstream response the frames hold)
            pending = None
        status = _status(answer)
        if (status is not None and status >= 500 and entry is not None
                and self.clock() < entry.fresh_until + entry.sie):
            if drop is not None:
                drop(answer)
            return _stale_if_error(entry, status, respond, self.clock())
        return answer

    async def _lead(self, key: str, entry: Entry | None, fetch: Fetch,
                    storable: Callable[[Entry], bool],
                    respond: Callable[[Entry, str, bool], Any],
                    rekey: Callable[[], str | None] | None = None) -> Any:
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._inflight[key] = future
        try:
            result = await fetch(entry, respond is _discard)
            if not isinstance(result, Entry):
                future.set_result(None)
                return result
            if not storable(result):
                future.set_result(None)
                return respond(result, "fwd=uri-miss", False)
            store_key = rekey() if rekey is not None else key
            stored = store_key is not None and await self.put(store_key, result)
            future.set_result(result)
            if entry is None:
                how = "fwd=uri-miss"
            elif result.body is entry.body:  # the upstream said 304: same bytes, fresh again
                how = "fwd=stale; fwd-status=304"
            else:
                how = "fwd=stale"
            return respond(result, how + ("; stored" if stored else ""), True)
        except BaseException as e:
            if not future.done():
                if isinstance(e, Exception):
                    future.set_exception(e)
                else:
                    future.set_result(None)
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
            del future  # as in get(): the exception's traceback holds this frame

    def _refresh(self, key: str, entry: Entry, fetch: Fetch,
                 storable: Callable[[Entry], bool],
                 rekey: Callable[[], str | None] | None = None) -> None:
        """One background refresh per key at a time."""
        if key in self._inflight:
            return

        async def run() -> None:
            try:
                await self._lead(key, entry, fetch, storable, _discard, rekey)
            except Exception as e:  # the stale answer went out; the next request retries
                log.info("background refresh failed: %s", e)

        self._spawn(run())


def _not_cached() -> Problem:
    return Problem("not-cached", "the request said only-if-cached, and no stored answer "
                   "may answer it")


def _status(answer: Any) -> int | None:
    """The status of what a fetch gave instead of an entry (an answer, or an upstream's)."""
    if isinstance(answer, tuple):
        return int(answer[0].status)
    status = getattr(answer, "status", None)
    return status if isinstance(status, int) else None


def _stale_if_error(entry: Entry, status: int,
                    respond: Callable[[Entry, str, bool], Any], now: float) -> Any:
    return respond(entry, f"hit; ttl={int(entry.fresh_until - now)}; "
                   f"detail=stale-if-error; fwd-status={status}", True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # nobody waiting is fine: don't warn about it


def _discard(entry: Entry, status: str, policy: bool) -> None:
    return None


def _stored_headers(entry: Entry, rc: RouteCache, private: bool, cache_status: str,
                    policy_headers: bool, now: float | None) -> CIMultiDict[str]:
    """An entry's headers as an answer from the cache: the caching policy (the origin's,
    privatized for a caller's own answer, or the route's), never a cookie, the tags for
    CDNs, Age, Cache-Status (RFC 9211)."""
    headers: CIMultiDict[str] = CIMultiDict(entry.headers)
    if policy_headers:
        if entry.origin_said:  # the upstream's Cache-Control (and Expires) go on as said
            if private:
                headers["Cache-Control"] = privatized(headers.get("Cache-Control"))
                headers.popall("Expires", None)
        else:
            said = rc.cache_control(private)
            if said is not None:
                headers["Cache-Control"] = said
        headers.popall("Set-Cookie", None)
        if private:  # a CDN reads these before Cache-Control: never on a caller's own
            for name in SHARED_ONLY:
                headers.popall(name, None)
        else:
            if rc.surrogate:
                headers["Surrogate-Control"] = rc.surrogate
            if rc.cdn_cc:
                headers["CDN-Cache-Control"] = rc.cdn_cc
            named = [t for t in entry.tags if not t.startswith(_IMPLICIT)]
            if named:
                for tag_header in rc.tag_headers:
                    headers[tag_header] = (" " if tag_header == "Surrogate-Key"
                                           else ",").join(named)
        headers["Age"] = str(age(entry, now))  # on every answer from the cache, 0 too
    elif "Cache-Control" not in headers:
        headers["Cache-Control"] = "private, no-cache"
    elif private:
        headers["Cache-Control"] = privatized(headers.get("Cache-Control"))
        for name in SHARED_ONLY:
            headers.popall(name, None)
    headers["Cache-Status"] = f"edge; {cache_status}"
    return headers


def respond_from(entry: Entry, request_headers: Mapping[str, str], coding: str | None,
            rc: RouteCache, private: bool, cache_status: str, policy_headers: bool,
            extra: Mapping[str, str], compression: Compression,
            quality: Mapping[str, int], now: float | None = None,
            wrap: Wrap | None = None) -> Answer:
    """An answer from a cache entry: 304 if the client has it, 226 with a patch if it has
    an older version we still know, else 200 in the client's content coding."""
    headers = _stored_headers(entry, rc, private, cache_status, policy_headers, now)
    headers.update(extra)

    def delta(used: str | None) -> Answer | None:
        """226 with a patch from a version the client holds, if one is kept (RFC 3229)."""
        kind = wanted_delta(request_headers)
        if kind is None:
            return None
        for base in if_none_match(request_headers.get("If-None-Match")) or ():
            patch = entry.delta(base, kind)
            if patch is None:
                continue
            headers["Content-Type"] = IM_TYPES[kind]
            headers["IM"] = kind
            headers["Delta-Base"] = quoted(base)
            headers["ETag"] = quoted(entry.etag)  # what the client holds once it applies it
            headers["Cache-Control"] = "no-store"  # only for this client's version
            headers.popall("Surrogate-Control", None)
            if used is not None:  # small, but every byte counts on a phone
                packed = compress(patch, used, quality=quality[used])
                if len(packed) < len(patch):
                    patch = packed
                    headers["Content-Encoding"] = used
            return web.Response(status=226, headers=headers, body=patch), len(patch)
        return None

    return encode(entry.status, headers, entry.body, entry.etag, conditional=request_headers,
                  coding=coding, min_size=compression.min_size, quality=quality, wrap=wrap,
                  cached=cache_status.startswith("hit"), variants=entry.variants,
                  delta=delta if rc.delta else None)


def respond_raw(entry: Entry, request_headers: Mapping[str, str], method: str,
                rc: RouteCache, private: bool, cache_status: str, policy_headers: bool,
                extra: Mapping[str, str], compression: PassCompression | None,
                now: float | None = None) -> Answer:
    """An answer from a kept relayed answer (a route that passes the origin's bodies
    through): the origin's representation with its own validators; a 304 when the client
    holds it, a 206 for one byte range of it (a 416 past its end), else whole — compressed
    for the client (once per coding) when the route compresses pass-through answers."""
    headers = _stored_headers(entry, rc, private, cache_status, policy_headers, now)
    headers.update(extra)
    body, status = entry.body, entry.status
    if status != 200:
        return web.Response(status=status, headers=headers, body=body), len(body)
    etag = entry.up_etag
    last_modified = headers.get("Last-Modified")
    coding = None
    if (compression is not None and len(body) >= compression.min_size
            and is_compressible(headers.get("Content-Type"))):
        varies_on_coding(headers)
        try:
            coding = choose_coding(request_headers.get("Accept-Encoding"), compression.codings)
        except NotAcceptable:
            coding = None  # identity is still the best answer there is
    if coding is not None and etag is not None and not etag.startswith("W/"):
        headers["ETag"] = "W/" + etag  # same content, other bytes (RFC 9110 §8.8.1)
    if not_modified(request_headers, (if_none_match(etag) or ["\0"])[0] if etag else "\0",
                    last_modified):
        for name in NOT_ON_304:
            headers.popall(name, None)
        return web.Response(status=304, headers=headers), 0
    headers["Accept-Ranges"] = "bytes"
    wanted = request_headers.get("Range")
    if (wanted is not None and method == "GET"
            and if_range_holds(request_headers.get("If-Range"), etag, last_modified)):
        span = byte_range(wanted, len(body))
        if span is False:
            headers["Content-Range"] = f"bytes */{len(body)}"
            headers.popall("ETag", None)
            return web.Response(status=416, headers=headers), 0
        if isinstance(span, tuple):
            first, last = span
            part = body[first:last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
            if etag is not None:
                headers["ETag"] = etag  # the identity representation's
            return web.Response(status=206, headers=headers, body=part), len(part)
    if coding is not None:
        assert compression is not None
        body = kept_variant(entry.variants, body, coding, compression.quality[coding])
        headers["Content-Encoding"] = coding
    return web.Response(status=200, headers=headers, body=body), len(body)


# tags every entry has, never sent to CDNs: the route's, the URI's (purged by writes to
# it), and `*`
_IMPLICIT = ("route:", "uri:", "*")


def cache_result(cache_status: str) -> str:
    """The metrics label for a Cache-Status value."""
    if "bypass" in cache_status:
        return "bypass"
    if cache_status.startswith("hit"):
        return "stale" if "detail=stale" in cache_status else "hit"
    if "collapsed" in cache_status:
        return "collapsed"
    if "fwd-status=304" in cache_status:
        return "revalidated"
    return "miss"


# ------------------------------------------------------------------- ready answers

# Request headers that can change a public answer: the variant signature's parts.
_SIGNATURE_HEADERS = ("Accept", "Accept-Encoding", KEYMAP_HEADER, ENVELOPE_HEADER,
                      "User-Agent", *NETWORK_HEADERS, *HINT_HEADERS)
# With these the answer is not "the public one": the full pipeline decides.
_SLOW_PATH = ("Authorization", "Cookie", "A-IM", "If-Modified-Since", "Cache-Control",
              "Range")
_DYNAMIC = frozenset({"age", "cache-status", "x-request-id", "date", "content-length",
                      "ratelimit", "ratelimit-policy"})


@dataclass(slots=True)
class Ready:
    """A fresh public answer rendered whole: served again without the pipeline."""

    etag: str
    body: bytes
    ok_headers: dict[str, str]  # a 200's headers, less the per-request ones
    nm_headers: dict[str, str]  # a 304's
    fresh_until: float
    stored_at: float
    tags: tuple[str, ...]
    route: Any  # the runtime.CompiledRoute it came from (its limits apply on every use)
    device: str
    network: str
    generation: int
    # the status line and every header that is the same on each use, encoded once (None
    # when a header could not go on the wire as it is: the answer is made by aiohttp)
    ok_head: bytes | None = None
    nm_head: bytes | None = None
    sent_etag: str | None = None  # the ETag field as sent: an If-None-Match of just that
    # matches without parsing
    # the per-second part (Date, Age, Cache-Status), encoded for `second`
    second: tuple[int, int, int] = (-1, -1, -1)
    timed: bytes = b""


class ReadyAnswers:
    """The fast lane for the hottest answers: public, fresh, and asked for again with the
    same request headers. Keyed by everything in a request that could change the answer
    (method, path and query, the negotiation and device headers), so a lookup is a
    handful of header reads and one dict probe — no routing, no auth (public answers
    have none to check), no key hashing, no rendering. Purges, expiry and config reloads
    are checked on every use; anything unusual (a token, a cookie, a delta request)
    takes the full pipeline."""

    MAX = 10_000

    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.answers: dict[tuple[str | None, ...], Ready] = {}
        self.max = self.MAX
        # their bodies: the cache's own while it keeps the entry, theirs alone once it
        # has let it go; a quarter of cache.max_memory
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0

    def size(self) -> StoreSize:
        return StoreSize(len(self.answers), self.max, self.bytes, self.max_bytes,
                         self.evictions)

    @staticmethod
    def signature(method: str, raw_path: str, headers: Mapping[str, str],
                  device_header: str) -> tuple[str | None, ...] | None:
        for name in _SLOW_PATH:
            if name in headers:
                return None
        get = headers.get
        return (method, raw_path, get(device_header), *map(get, _SIGNATURE_HEADERS))

    def put(self, signature: tuple[str | None, ...], ready: Ready) -> None:
        if len(self.answers) >= self.max or self.bytes + len(ready.body) > self.max_bytes:
            self.evictions += len(self.answers)
            self.clear()
        old = self.answers.get(signature)
        if signature[0] != "HEAD":  # (a HEAD shares its GET's answer, body and all)
            self.bytes += len(ready.body) - (len(old.body) if old is not None else 0)
        self.answers[signature] = ready

    def drop(self, signature: tuple[str | None, ...]) -> None:
        old = self.answers.pop(signature, None)
        if old is not None and signature[0] != "HEAD":
            self.bytes -= len(old.body)

    def clear(self) -> None:
        self.answers.clear()
        self.bytes = 0


_SIGNED = frozenset(h.lower() for h in _SIGNATURE_HEADERS)


def in_signature(vary: tuple[tuple[str, str | None], ...]) -> bool:
    """Can the fast lane tell this entry's variants apart (its Vary is in the signature)?"""
    return all(name in _SIGNED for name, _ in vary)


def make_ready(response: web.Response, entry: Entry, route: Any, device: str, network: str,
               generation: int) -> Ready:
    """Keep a rendered 200 from a cache entry for the fast lane."""
    ok = {k: v for k, v in response.headers.items() if k.lower() not in _DYNAMIC}
    nm = {k: v for k, v in ok.items() if k.lower() not in NOT_ON_304}
    body = response.body
    assert isinstance(body, bytes)
    return Ready(entry.etag, body, ok, nm, entry.fresh_until, entry.stored_at, entry.tags,
                 route, device, network, generation,
                 encode_head(b"HTTP/1.1 200 OK\r\n", ok, len(body)),
                 encode_head(b"HTTP/1.1 304 Not Modified\r\n", nm, None),
                 next((v for k, v in ok.items() if k.lower() == "etag"), None))


def encode_head(status_line: bytes, headers: Mapping[str, str], length: int | None
                ) -> bytes | None:
    """A response head's fixed part as aiohttp would write it (its Server field, then
    Content-Length), without the blank line; None if a field can't be sent as it is."""
    lines = [status_line]
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            return None
        lines.append(f"{name}: {value}\r\n".encode())
    if not any(name.lower() == "server" for name in headers):
        lines.append(_SERVER)
    if length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    return b"".join(lines)


_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()


def held(if_none_match_header: str, etag: str) -> bool:
    tags = if_none_match(if_none_match_header) or []
    return "*" in tags or etag in tags
