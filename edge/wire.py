"""The HTTP message toolkit: which headers cross the edge (hop-by-hop, edge-owned), request
bodies framed exactly as they are forwarded, capped reads of upstream bodies, and the
streaming pass-through of an upstream answer — bodies never held whole unless a policy
must read them, and then only up to a limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiMapping

from .config import QueryPolicy
from .context import Exchange, Incoming
from .encoding import (
    DecodeError,
    NotAcceptable,
    StreamCompressor,
    TooLarge,
    UnsupportedCoding,
    choose_coding,
    compress,
    decode,
    is_compressible,
)
from .errors import Problem
from .headers import canonical
from .locations import HEADERS as LOCATION_HEADERS
from .sockets import Sockets

# RFC 9110 §7.6.1 connection-specific fields, plus the de-facto ones.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
# Set by the edge itself on the way up; never copied from the client.
REQUEST_DROP = HOP_BY_HOP | {"host", "expect", "x-forwarded-for", "x-forwarded-proto",
                              "x-forwarded-host", "forwarded", "content-length"}
RESPONSE_DROP = HOP_BY_HOP | {"content-length", "server", "date"}
# Bodies up to this size (with a known Content-Length) are read at once: one write to the
# client instead of a chunk loop. Still bounded, so memory stays flat.
SMALL_BODY = 64 * 1024
CHUNK = 64 * 1024
# A request body without a length is read up to this much before the upstream is called.
SPOOL = 1024 * 1024
DECODABLE = "gzip, deflate, br"


class BodyTooLarge(Exception):
    pass


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def filter_headers(headers: Mapping[str, str], drop: frozenset[str]) -> CIMultiDict[str]:
    extra = _connection_tokens(headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in drop or low in extra:
            continue
        # `X_Edge_Subject` is `X-Edge-Subject` to CGI/WSGI, Rails or nginx with
        # underscores_in_headers: never let a client smuggle an edge-owned name that way
        if "_" in low and canonical(low) in drop:
            continue
        out.add(name, value)
    return out


def upstream_headers(headers: Mapping[str, str], drop: frozenset[str],
                     ctx: Exchange) -> CIMultiDict[str]:
    """An upstream response's headers to relay: hop-by-hop and `drop` gone, and `Location`
    and `Content-Location` turned into the edge's paths (edge/locations.py)."""
    out = filter_headers(headers, drop)
    rewrite = getattr(ctx.route, "locations", None)
    if rewrite is not None:
        for name in LOCATION_HEADERS:
            value = out.get(name)
            if value is not None:
                out[name] = rewrite(value)
    return out


class HasQuery(Protocol):
    """What the query mapping reads from a request (parsed lazily by aiohttp)."""

    @property
    def query(self) -> MultiMapping[str]: ...


class QueryMapper:
    """A route's `query` block, compiled. `map(request)` → the upstream query string;
    `linkable(query)` → the client parameters a link back to the route may carry."""

    def __init__(self, cfg: QueryPolicy, edge_params: frozenset[str] = frozenset(),
                 fixed: frozenset[str] = frozenset()) -> None:
        # `edge_params` are the edge's own (e.g. `fields`), `fixed` the ones the source path
        # sets itself (a client's `?member_id=` never joins the template's): never forwarded
        reserved = self.reserved = edge_params | fixed
        self.passthrough = cfg.pass_ == "all" and not cfg.rename and not cfg.set and not reserved
        self.allow = None if cfg.pass_ == "all" else (
            frozenset() if cfg.pass_ == "none" else frozenset(cfg.pass_))
        self.rename = dict(cfg.rename)
        self.set = dict(cfg.set)
        # links carry what the route reads, not whatever a client added (pass: all reads all)
        self.links = None if self.allow is None else \
            self.allow | frozenset(self.rename) | edge_params

    def linkable(self, query: MultiMapping[str]) -> MultiMapping[str]:
        keep = self.links
        if keep is None:
            return query
        return MultiDict([(k, v) for k, v in query.items() if k in keep])

    def map(self, request: HasQuery, raw_query: str) -> str:
        if self.passthrough:
            return raw_query
        pairs = [(self.rename.get(k, k), v) for k, v in request.query.items()
                 if (self.allow is None or k in self.allow) and k not in self.reserved
                 and self.rename.get(k, k) not in self.set]
        pairs.extend(self.set.items())
        return urlencode(pairs)


def join_query(path: str, query: str) -> str:
    if not query:
        return path
    return f"{path}&{query}" if "?" in path else f"{path}?{query}"


async def _stream_body(content: aiohttp.StreamReader, limit: int,
                       counter: list[int]) -> AsyncIterator[bytes]:
    async for chunk in content.iter_chunked(CHUNK):
        counter[0] += len(chunk)
        if counter[0] > limit:
            raise BodyTooLarge
        yield chunk


def request_body(request: Incoming, limit: int,
                 counter: list[int]) -> AsyncIterator[bytes] | None:
    """The client's body as a stream for the upstream, or None when there is none."""
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit, length)
        if length == 0:
            return None
    elif not request.body_exists:
        return None
    return _stream_body(request.content, limit, counter)


def _too_large(limit: int, length: int | None = None) -> Problem:
    if length is not None:
        return Problem("payload-too-large",
                       f"request body is {length} bytes; this route accepts {limit}")
    return Problem("payload-too-large", f"request body is over this route's {limit} bytes")


async def forward_body(request: Incoming, limit: int, counter: list[int], *,
                       decode: bool) -> AsyncIterator[bytes] | bytes | None:
    """The body to send upstream, framed so that what the upstream is promised is what it
    gets. The server never decodes request bodies (auto_decompress=False), so by default
    the client's bytes go with the client's Content-Encoding and Content-Length.

    A body without a length (chunked) is read up to SPOOL bytes first: one that ends there
    goes with its own Content-Length, and one over the route's limit never reaches the
    upstream. Past SPOOL it streams on; if it then passes the limit, the upstream
    connection is dropped mid-body, so the upstream never sees a complete request.
    With `decode`, the whole body is read and decoded (see `decode_body`)."""
    if decode:
        raw = await read_request_body(request, limit, counter, decode=True)
        return raw or None
    stream = request_body(request, limit, counter)
    if stream is None or request.content_length is not None:
        return stream
    head: list[bytes] = []
    size = 0
    spool = min(limit, SPOOL)
    try:
        async for chunk in stream:
            head.append(chunk)
            size += len(chunk)
            if size > spool:
                return _Chunks(b"".join(head), stream).iter_any()
    except BodyTooLarge:
        raise _too_large(limit) from None
    return b"".join(head) or None


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """A request body with its Content-Encoding undone, held to `limit` decoded bytes."""
    if not content_encoding or not raw:
        return raw
    try:
        return decode(raw, content_encoding, max_size=limit)
    except TooLarge:
        raise Problem("payload-too-large",
                      f"the decoded request body is over this route's {limit} bytes") from None
    except UnsupportedCoding as e:
        raise Problem("unsupported-media-type", f"{e}; this route reads gzip, deflate and br",
                      headers={"Accept-Encoding": DECODABLE}) from None
    except DecodeError as e:
        raise Problem("bad-request", f"the request body is not valid: {e}") from None


async def read_request_body(request: Incoming, limit: int, counter: list[int], *,
                            decode: bool = True) -> bytes:
    """The client's whole body (b"" when none), refusing more than `limit` bytes, with its
    Content-Encoding undone unless `decode` is False."""
    stream = request_body(request, limit, counter)
    if stream is None:
        return b""
    try:
        raw = b"".join([chunk async for chunk in stream])
    except BodyTooLarge:
        raise _too_large(limit) from None
    if not decode:
        return raw
    return decode_body(raw, request.headers.get("Content-Encoding"), limit)


async def read_json_object(request: Incoming, limit: int, counter: list[int],
                           expected: str = "expected a JSON object") -> dict[str, Any]:
    """The body as a JSON object (the edge's own JSON calls); else a 400 saying
    `expected`."""
    raw = await read_request_body(request, limit, counter)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise Problem("bad-request", expected)
    return doc


class Reply(Protocol):
    """What the edge reads from an upstream answer: aiohttp's, or a stored one."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content(self) -> Any: ...  # has iter_any()
    async def read(self) -> bytes: ...
    def release(self) -> Any: ...


class _Chunks:
    def __init__(self, head: bytes, rest: AsyncIterator[bytes] | None) -> None:
        self.head, self.rest = head, rest

    async def iter_any(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        if self.rest is not None:
            async for chunk in self.rest:
                yield chunk


class BufferedReply:
    """An upstream answer read into memory, to store or to replay from a store.

    When it was too big to keep whole, `omitted` is set, `body` is what was read and
    `content` still yields the rest from the live response.
    """

    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes, *,
                 omitted: bool = False, rest: AsyncIterator[bytes] | None = None,
                 length: int | None = None, source: Reply | None = None) -> None:
        self.status = status
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.body = body
        self.omitted = omitted
        self.content = _Chunks(body, rest)
        self.content_length: int | None = length if rest is not None else len(body)
        self._source = source  # the live answer `rest` comes from, released with this

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type", "application/octet-stream")
        return raw.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.content.iter_any()])

    def release(self) -> None:
        if self._source is not None:
            self._source.release()


class TeeReply:
    """A live upstream answer that keeps a copy of its body as it streams through, up to
    `cap` bytes: once the whole body has gone by (and it fits, and it is as long as the
    origin said), `done(body)` is called. Cut short, or over the cap, nothing is kept."""

    def __init__(self, resp: Reply, cap: int, done: Callable[[bytes], None]) -> None:
        self._resp, self._cap, self._done = resp, cap, done
        self.status = resp.status
        self.headers = resp.headers
        self.content_length = resp.content_length
        self.content_type = resp.content_type

    @property
    def content(self) -> TeeReply:
        """Itself, read like a response's content (a property: a reference to itself would
        make each reply a cycle, kept with its upstream response until a full GC)."""
        return self

    async def iter_any(self) -> AsyncIterator[bytes]:
        kept: list[bytes] | None = []
        size = 0
        async for chunk in self._resp.content.iter_any():
            if kept is not None:
                size += len(chunk)
                if size > self._cap:
                    kept = None
                else:
                    kept.append(chunk)
            yield chunk
        self._finish(kept)

    async def read(self) -> bytes:
        body = await self._resp.read()
        if len(body) <= self._cap:
            self._finish([body])
        return body

    def _finish(self, kept: list[bytes] | None) -> None:
        if kept is None:
            return
        body = b"".join(kept)
        if self.content_length is None or len(body) == self.content_length:
            self._done(body)

    def release(self) -> Any:
        return self._resp.release()


async def buffer_reply(resp: Reply, cap: int) -> BufferedReply:
    """Read up to `cap` bytes of the body; past that, the reply streams the rest (and
    releases `resp` with it). A reply read whole has released `resp` already."""
    chunks: list[bytes] = []
    size = 0
    stream = resp.content.iter_any()
    try:
        async for chunk in stream:
            size += len(chunk)
            chunks.append(chunk)
            if size > cap:
                return BufferedReply(resp.status, resp.headers.items(), b"".join(chunks),
                                     omitted=True, rest=stream, length=resp.content_length,
                                     source=resp)
    except (aiohttp.ClientError, TimeoutError):
        resp.release()
        raise Problem("upstream-bad-response", "the upstream response was cut short") from None
    except BaseException:
        resp.release()
        raise
    resp.release()
    return BufferedReply(resp.status, resp.headers.items(), b"".join(chunks))


class OverCap(Exception):
    """The upstream body is over the cap being read to; `body` is what was read so far
    (a shaped route relays it and the rest as they came)."""

    def __init__(self, reason: str, body: bytes) -> None:
        super().__init__(reason)
        self.reason, self.body = reason, body


async def read_capped(resp: Reply, cap: int) -> bytes:
    """The whole body, or OverCap('too-large') with what was read once it passes `cap`."""
    length = resp.content_length
    if length is not None and length > cap:
        raise OverCap("too-large", b"")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        chunks.append(chunk)
        if size > cap:
            raise OverCap("too-large", b"".join(chunks))
    return b"".join(chunks)


class PassCompression:
    """Compression of pass-through bodies the upstream sent uncompressed (compiled once)."""

    def __init__(self, min_size: int, quality: dict[str, int],
                 codings: tuple[str, ...] = ("br", "zstd", "gzip")) -> None:
        self.min_size = min_size
        self.quality = quality
        self.codings = codings

    def applies(self, resp: Reply) -> bool:
        """Would the edge compress this answer for a client that asks? Then every client's
        answer says `Vary: Accept-Encoding`, compressed or not."""
        if "Content-Encoding" in resp.headers:
            return False
        if not is_compressible(resp.headers.get("Content-Type")):
            return False
        length = resp.content_length
        return length is None or length >= self.min_size

    def coding_for(self, request: Incoming, resp: Reply) -> str | None:
        accept = request.headers.get("Accept-Encoding")
        if not accept or not self.applies(resp):
            return None
        try:
            return choose_coding(accept, self.codings)
        except NotAcceptable:
            return None  # relaying the upstream's own bytes is still the best answer


def varies_on_coding(headers: CIMultiDict[str]) -> None:
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Accept-Encoding"
    elif "accept-encoding" not in vary.lower():
        headers["Vary"] = f"{vary}, Accept-Encoding"


def _recoded_headers(headers: CIMultiDict[str], coding: str) -> None:
    headers["Content-Encoding"] = coding
    etag = headers.get("ETag")
    if etag is not None and not etag.startswith("W/"):
        headers["ETag"] = "W/" + etag  # same content, different bytes (RFC 9110 §8.8.1)


async def send_upstream_response(request: Incoming, resp: Reply,
                                 ctx: Exchange, extra_headers: Mapping[str, str],
                                 compression: PassCompression | None = None,
                                 private: bool | None = None,
                                 sockets: Sockets | None = None,
                                 ) -> tuple[web.StreamResponse, int]:
    """Relay status, headers and body; returns the response and the body bytes sent.
    `private`: the answer is the caller's own (default: when the caller is identified)."""
    headers = upstream_headers(resp.headers, RESPONSE_DROP, ctx)
    headers.update(extra_headers)
    if private or (private is None and ctx.identity is not None):
        headers["Cache-Control"] = privatized(headers.get("Cache-Control"))
        for name in SHARED_ONLY:
            headers.popall(name, None)
    status = resp.status
    if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        if resp.content_length is not None and request.method == "HEAD":
            headers["Content-Length"] = str(resp.content_length)
        return web.Response(status=status, headers=headers), 0
    coding = None
    if compression is not None and compression.applies(resp):
        varies_on_coding(headers)
        coding = compression.coding_for(request, resp)
    if coding is not None:
        _recoded_headers(headers, coding)
    length = resp.content_length
    # a batch item (or an explained request) gets the whole body or an error; a small
    # body is read at once: one write to the client instead of a chunk loop
    whole_up_to = ctx.buffer_limit
    if whole_up_to is not None and resp.content_type == "text/event-stream":
        raise Problem("not-acceptable", "an event stream never ends, so it can't be read "
                      "whole (in a batch, or by explain): ask for it directly")
    if whole_up_to is not None or (length is not None and length <= SMALL_BODY):
        try:
            body = await (read_capped(resp, whole_up_to) if whole_up_to is not None
                          else resp.read())
        except OverCap:
            raise Problem("response-too-large", f"the response is over the "
                          f"{whole_up_to} bytes a batch item may carry") from None
        except (aiohttp.ClientError, TimeoutError):
            raise Problem("upstream-bad-response", "the upstream response was cut short")\
                from None
        if coding is not None:
            assert compression is not None
            body = compress(body, coding, quality=compression.quality[coding])
        return web.Response(status=status, headers=headers, body=body), len(body)
    if ctx.response_headers:
        headers.update(ctx.response_headers)
    if resp.content_type == "text/event-stream" and 200 <= status < 300 \
            and isinstance(request, web.BaseRequest) and sockets is not None:
        return await relay_events(request, resp, ctx, headers, sockets)
    stream = web.StreamResponse(status=status, headers=headers)
    if length is not None and coding is None:
        stream.content_length = length
    assert isinstance(request, web.BaseRequest)  # only a real client connection streams
    await stream.prepare(request)
    encoder = (StreamCompressor(coding, compression.quality[coding])
               if coding is not None and compression is not None else None)
    sent = 0
    try:
        async for chunk in resp.content.iter_any():
            if encoder is not None:
                # flush per upstream chunk: a slow stream must reach the client as it comes
                chunk = encoder.compress(chunk) + encoder.flush()
            await stream.write(chunk)
            sent += len(chunk)
        if encoder is not None:
            tail = encoder.finish()
            await stream.write(tail)
            sent += len(tail)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
        # Headers are gone already: the only honest signal left is a broken connection,
        # so the client can't mistake a truncated body for a whole one.
        ctx.timings["aborted"] = 1
        if request.transport is not None:
            request.transport.abort()
        return stream, sent
    await stream.write_eof()
    return stream, sent


async def relay_events(request: web.BaseRequest, resp: Reply, ctx: Exchange,
                       headers: CIMultiDict[str], sockets: Sockets
                       ) -> tuple[web.StreamResponse, int]:
    """An upstream's `text/event-stream`, relayed as a stream of events: each chunk goes
    out as it comes (never compressed or held), a `: heartbeat` comment is written between
    events when the upstream is silent past the heartbeat (so proxies and phones keep the
    connection), and the caller's open streams are capped as on `/events`. The client's
    `Last-Event-ID` reached the upstream with the request."""
    rt = ctx.rt
    events = rt.config.edge.events
    beat = events.heartbeat if events is not None else 15.0
    cap = events.max_per_identity if events is not None else 8
    caller = "ev|" + (str(ctx.identity.get("sub")) if ctx.identity and ctx.identity.get("sub")
                      else ctx.client_ip)
    sockets.enter(caller, cap, kind="too-many-streams", what="event streams")
    try:
        headers.popall("Content-Length", None)
        headers["Cache-Control"] = headers.get("Cache-Control") or "no-cache"
        headers["X-Accel-Buffering"] = "no"  # and nginx in front: don't hold it either
        stream = web.StreamResponse(status=resp.status, headers=headers)
        await stream.prepare(request)
        sent = 0
        at_boundary = True  # a heartbeat only ever goes between two events
        chunks = resp.content.iter_any().__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(beat):
                        chunk = await chunks.__anext__()
                except TimeoutError:
                    if at_boundary:
                        await stream.write(b": heartbeat\n\n")
                        sent += 14
                    continue
                except StopAsyncIteration:
                    break
                await stream.write(chunk)
                sent += len(chunk)
                at_boundary = chunk.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            ctx.timings["aborted"] = 1  # the upstream went: the client reconnects
        await stream.write_eof()
        return stream, sent
    finally:
        sockets.leave(caller)


_NOT_PRIVATE = frozenset({"public", "s-maxage", "proxy-revalidate"})
# fields only shared caches read (before Cache-Control): gone from a caller's own answer
SHARED_ONLY = ("CDN-Cache-Control", "Surrogate-Control")


def privatized(cache_control: str | None) -> str:
    """Cache-Control for an answer to an identified caller: never for shared caches."""
    if not cache_control:
        return "private, no-cache"
    parts = [p.strip() for p in cache_control.split(",") if p.strip()]
    names = {p.partition("=")[0].strip().lower() for p in parts}
    if "no-store" in names or "private" in names:
        return cache_control
    return ", ".join(["private", *(p for p in parts
                                   if p.partition("=")[0].strip().lower() not in _NOT_PRIVATE)])


def timing_header(upstream_seconds: float) -> str:
    return f"upstream;dur={upstream_seconds * 1000:.1f}"
