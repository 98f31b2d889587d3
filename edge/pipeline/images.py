"""An image route's source (imaging.py, images/): the size and format this client should
get (query, preset, client hints, device and network class, Accept), made in a worker
process from the source image. The Cache layer keeps the result like any answer (ETag,
304, coalesced misses); the source image is kept here too, and revalidated with its
upstream validators, so a new size of a known image costs the upstream a 304."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from images import Result, Spec

from ..context import Exchange
from ..errors import Problem
from ..imageworker import Job
from ..imaging import ACCEPT_CH
from ..shaping import Shaped
from ..wire import OverCap, Reply, read_capped
from .calls import CONDITIONALS, call_upstream, upstream_headers

if TYPE_CHECKING:
    from ..imaging import ImagePool, ImageRoute
    from ..representation import Entry
    from ..runtime import State

# headers that differ per request without changing what the upstream answers
_PER_REQUEST = frozenset({"x-forwarded-for", "traceparent", "tracestate"})


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


@dataclass(slots=True)
class _Source:
    """What the source's upstream said: 200 with the bytes, or 304 (unchanged)."""

    status: int
    raw: bytes | None = None
    etag: str | None = None
    modified: str | None = None
    family: bool = False  # other requests shared this fetch: more outputs of it are coming


@dataclass(slots=True)
class _Shared:
    """A fetch in flight, and how many other requests wait for it."""

    answer: asyncio.Future[_Source | None]
    joined: int = 0


async def image(state: State, x: Exchange) -> Shaped | Reply:
    """The variant, made; or the upstream's answer when it has no image to give.

    The source is fetched conditionally on what is kept of it — the validators of its
    master (the source decoded once, images.masters) or its cached bytes — so a new size
    of a known photo costs the upstream a 304 and the workers a resize and an encode.
    Concurrent requests for one source share one fetch, and one decode."""
    rt, route = x.rt, x.route
    img, rc = route.image, route.cache
    assert img is not None and rc is not None
    spec = image_target(x)
    path = x.target
    pool = state.images
    masters = pool.masters
    headers = upstream_headers(x)
    for name in CONDITIONALS:
        headers.popall(name, None)
    headers["Accept"] = "image/*"
    headers["Accept-Encoding"] = "identity"
    source_id = f"{route.name}|{path}"
    source_key = "src:" + hashlib.blake2b(source_id.encode(), digest_size=16).hexdigest()
    known = masters.sources.get(source_id) if masters.bound else None
    cached: Entry | None = None
    if known is not None:
        _, etag, modified = known
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
    else:
        cached = await state.cache.get(source_key)
        if cached is not None:
            cached.ask_if_changed(headers)
    started = state.cache.clock()
    t0 = time.perf_counter()
    got = await _fetch_shared(state, x, path, headers)
    x.timings["upstream"] = time.perf_counter() - t0
    if not isinstance(got, _Source):
        return got  # relayed as it came
    raw, bytes_in = got.raw, 0
    if got.status == 304 and known is not None:
        validators: tuple[str | None, str | None] = known[1], known[2]
    elif got.status == 304 and cached is not None:
        raw, validators = cached.body, (cached.up_etag, cached.up_last_modified)
    elif got.status == 304:  # unasked for: the bytes, unconditionally
        got = await _fetch_bytes(state, x, path, _unconditional(headers))
        if not isinstance(got, _Source):
            return got
        raw, validators = got.raw, (got.etag, got.modified)
    else:
        validators = got.etag, got.modified
    if got.status == 200:
        assert raw is not None
        bytes_in = len(raw)
        if any(validators) and len(raw) <= state.cache.settings.max_entry:
            await state.cache.put(source_key, rc.new_entry(
                200, [], raw, "source", started, rc.tags(x.params), *validators, None))
    t1 = time.perf_counter()
    result = None
    key = masters.key(source_id, *validators) if masters.bound and any(validators) else None
    if key is not None:
        result = await _from_master(pool, key, spec, img, route.name)
    if result is None:
        if raw is None:  # the master went meanwhile
            cached = await state.cache.get(source_key)
            if cached is not None and (cached.up_etag, cached.up_last_modified) == validators:
                raw = cached.body
            else:
                got = await _fetch_bytes(state, x, path, _unconditional(headers))
                if not isinstance(got, _Source):
                    return got
                raw, validators = got.raw, (got.etag, got.modified)
                key = masters.key(source_id, *validators) if key and any(validators) else None
        assert raw is not None
        result = await _decoded(pool, key, source_id, validators, raw, spec, img, route.name,
                                got.family)
    x.timings["transform"] = time.perf_counter() - t1
    state.metrics.image_done(route.name, bytes_in, len(result.body), x.timings["transform"])
    out: CIMultiDict[str] = CIMultiDict(
        (("Content-Type", result.content_type), ("Vary", rt.image_vary),
         ("Accept-CH", ACCEPT_CH)))
    return Shaped(200, out, result.body, result.format)


async def _from_master(pool: ImagePool, key: str, spec: Spec, img: ImageRoute,
                       route: str) -> Result | None:
    """The output made from the source's master, if one is kept (or being made) and
    large enough for it."""
    making = pool.making.get(key)
    if making is not None:  # another request is decoding this source: wait for it
        await asyncio.shield(making)
    lent = pool.masters.lend(key)
    if lent is None:
        return None
    master, fd = lent
    return await pool.job(Job(spec, img.limits, master=master), route, img.policy.timeout,
                          lent=fd)


async def _decoded(pool: ImagePool, key: str | None, source_id: str,
                   validators: tuple[str | None, str | None], raw: bytes, spec: Spec,
                   img: ImageRoute, route: str, family: bool) -> Result:
    """The output made from the source's bytes, and its master kept under `key` (if
    any), which requests for the same source wait for rather than decode it too. The
    first output of a source makes no master (most photos are asked for once), unless
    other requests for the source came with it (`family`)."""
    if key is not None and key in pool.making:  # begun since we looked: wait for it
        result = await _from_master(pool, key, spec, img, route)
        if result is not None:
            return result
    if key is None or key in pool.making or not (pool.masters.second(key) or family):
        return await pool.run(raw, spec, img.limits, route, img.policy.timeout)
    making = pool.making[key] = asyncio.get_running_loop().create_future()
    try:
        result = await pool.job(Job(spec, img.limits, raw, keep=img.master_width), route,
                                img.policy.timeout, keep=(key, source_id, validators))
    finally:
        del pool.making[key]
        making.set_result(None)
    assert result is not None
    return result


async def _fetch_shared(state: State, x: Exchange, path: str, headers: CIMultiDict[str]
                        ) -> _Source | Reply:
    """The source, fetched once for every request that asks for it with the same
    conditions and the same credentials at the same time (each caller's own fetch when
    the shared one ends in anything but a 200 or 304)."""
    pool = state.images
    rid = x.rt.rid_header.lower()
    who = tuple((k.lower(), v) for k, v in headers.items()
                if k.lower() not in _PER_REQUEST and k.lower() != rid)
    key = (x.route.name, path, who)
    shared = pool.fetching.get(key)
    if shared is not None:
        shared.joined += 1
        try:
            got = await asyncio.shield(shared.answer)
        except Exception:
            got = None
        if got is not None:
            return got
        return await _fetch_bytes(state, x, path, headers)
    shared = pool.fetching[key] = _Shared(asyncio.get_running_loop().create_future())
    answer: _Source | Reply | None = None
    try:
        answer = await _fetch_bytes(state, x, path, headers)
        if isinstance(answer, _Source) and shared.joined:
            answer.family = True
        return answer
    finally:
        del pool.fetching[key]
        shared.answer.set_result(answer if isinstance(answer, _Source) else None)


async def _fetch_bytes(state: State, x: Exchange, path: str, headers: CIMultiDict[str]
                       ) -> _Source | Reply:
    img = x.route.image
    assert img is not None
    resp = await call_upstream(x, "GET", path, headers, None)
    if resp.status == 304:
        resp.release()
        return _Source(304)
    if resp.status != 200:
        return resp
    try:
        raw = await read_capped(resp, img.limits.max_source_bytes)
    except OverCap:
        raise Problem("bad-image", f"too-large: the source image is over "
                      f"{img.limits.max_source_bytes} bytes", reason="too-large") from None
    finally:
        resp.release()
    return _Source(200, raw, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))


def _unconditional(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    fresh = headers.copy()
    for name in CONDITIONALS:
        fresh.popall(name, None)
    return fresh
