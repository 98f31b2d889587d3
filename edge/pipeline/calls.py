"""The upstream call as every source makes it: the headers the upstream gets, the call
itself (a body over the limit is a 413, whenever it is found), the purge a successful write
triggers, and `Expect: 100-continue`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from ..config import UNSAFE_METHODS
from ..context import Exchange, Incoming
from ..errors import Problem
from ..routing import BadPath, split_path
from ..wire import LOCATION_HEADERS, BodyTooLarge, filter_headers

if TYPE_CHECKING:
    from ..runtime import State

CONDITIONALS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since",
                "If-Range", "A-IM")


def upstream_headers(x: Exchange) -> CIMultiDict[str]:
    """What the upstream gets: the client's headers less hop-by-hop and the edge's own,
    plus X-Forwarded-*, the request id and the caller's identity."""
    route, request, rt = x.route, x.request, x.rt
    headers = filter_headers(request.headers, route.strip_headers)
    peer = request.remote
    incoming_xff = request.headers.get("X-Forwarded-For")
    trusted = rt.clients.is_trusted(peer)
    if trusted and incoming_xff:
        headers["X-Forwarded-For"] = f"{incoming_xff}, {peer}"
    else:
        headers["X-Forwarded-For"] = peer or "unknown"
    proto = request.headers.get("X-Forwarded-Proto") if trusted else None
    headers["X-Forwarded-Proto"] = proto or request.scheme
    host = request.headers.get("X-Forwarded-Host") if trusted else None
    if host is None:  # a client's Host only when it is one of the edge's own names
        host = rt.public_hosts.get((request.headers.get("Host") or "").lower(),
                                   rt.default_host)
    if host:
        headers["X-Forwarded-Host"] = host
    rc = route.cache
    if rc is not None and not rc.private_for(x):
        # the answer will be shared: nothing one client holds may shape it
        headers.popall("Cookie", None)
        headers.popall("Authorization", None)
    headers[rt.rid_header] = x.request_id
    if "Accept-Encoding" not in headers:
        # Bodies pass through as encoded; a client that asked for no coding gets none.
        headers["Accept-Encoding"] = "identity"
    if x.identity:
        headers.update(route.auth.upstream_identity(x.identity))
    if x.app is not None:
        headers[route.api_key.identity_header] = x.app.name
    if x.cache_key is not None:
        # filling the cache: the whole representation, as it is; the client's own
        # conditions and range are answered from what is kept (x.revalidate asks the
        # origin about that)
        headers["Accept-Encoding"] = "identity"
        for name in CONDITIONALS:
            headers.popall(name, None)
        headers.popall("Range", None)
    elif route.shape is not None:
        headers["Accept-Encoding"] = "identity"  # cheaper on a LAN; decoded if ignored
        if x.conditional is not None:
            # the upstream's validators don't describe the edge's representation
            for name in CONDITIONALS:
                headers.popall(name, None)
    return headers


async def call_upstream(x: Exchange, method: str, path: str, headers: CIMultiDict[str],
                        body: AsyncIterator[bytes] | bytes | None
                        ) -> aiohttp.ClientResponse:
    route = x.route
    assert route.upstream is not None
    try:
        return await route.upstream.request(method, path, headers, body, route.timeout)
    except (BodyTooLarge, Problem) as e:
        raise call_failed(x, e) from None


def call_failed(x: Exchange, e: BodyTooLarge | Problem) -> Problem:
    """The problem a failed upstream call is: a 413 when the request body turned out to be
    over the route's limit (found while it streamed), else the call's own."""
    if isinstance(e, BodyTooLarge) or x.bytes_in[0] > x.route.max_body:
        return Problem("payload-too-large",
                       f"request body is over this route's {x.route.max_body} bytes")
    return e


async def invalidate(state: State, x: Exchange, status: int,
                     answer: Mapping[str, str] | None = None) -> None:
    """A write that worked purges what the cache keeps of its URI and of the URIs its
    answer names in Location and Content-Location (RFC 9111 §4.4), here and on every
    instance sharing the backend; and, on a route with `invalidates`, those tags."""
    route, request = x.route, x.request
    if request.method not in UNSAFE_METHODS or not 200 <= status < 400:
        return
    tags = route.invalidate_tags(x.params) if route.invalidates and status < 300 else []
    paths = [x.path]
    if answer is not None:
        rewrite = route.locations
        for name in LOCATION_HEADERS:
            value = answer.get(name)
            if value is not None:
                value = rewrite(value) if rewrite is not None else value
                if value.startswith("/"):  # the edge's own URIs only: never another host
                    paths.append(value.partition("?")[0])
    table = x.rt.table
    for path in paths:
        try:
            route_there = table.match("GET", split_path(path)).route
        except (BadPath, UnicodeDecodeError):
            continue
        if route_there is not None and route_there.cache is not None:
            tags.append("uri:" + path)  # (only URIs the cache may hold cost a purge)
    if tags:
        await state.cache.purge(tags)


async def expect(request: Incoming) -> None:
    """Answer `Expect: 100-continue` once the request has passed the route's checks."""
    value = request.headers.get("Expect")
    if value is None or not isinstance(request, web.BaseRequest):
        return
    if value.lower() != "100-continue":
        raise Problem("bad-request", f"unsupported Expect: {value[:40]!r}")
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
