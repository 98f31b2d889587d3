"""A request leaves no reference cycles behind: what it held (its exchange, the upstream
response and its buffered body) is freed when it ends, not at the next full collection,
which with many long-lived objects comes rarely (bench/soak.py: 27,816 cyclic objects in
20 s, among them every cached pass-through answer and every failed shared fetch)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from edge import allocator

from .conftest import catch_all, free_port, headers_echo_app, services_yaml
from .test_sse import ROUTES as SSE_ROUTES
from .test_sse import edge_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /files/{name}
    source: {service: origin, path: "/files/{name}"}
    cache: {ttl: 60s, scope: public}
  - route: GET /down
    source: {service: down, path: /x}
    cache: {ttl: 60s, scope: public}
"""}

WATCHED = {"TeeReply", "Exchange", "Problem", "ClientResponse", "BaseRequest", "_Stream",
           "Subscriber"}


@pytest.fixture
def cycles() -> Iterator[list[str]]:
    """The names of watched objects the cyclic GC finds garbage after the test's body."""
    gc.collect()
    found: list[str] = []
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def collect(found: list[str]) -> list[str]:
    gc.collect()
    found += sorted(type(o).__name__ for o in gc.garbage if type(o).__name__ in WATCHED)
    gc.garbage.clear()
    return found


async def test_cached_pass_through_and_failed_fetches_free_what_they_held(
        make_edge: Any, upstream: Any, cycles: list[str]) -> None:
    big = b"x" * (300 * 1024)  # over the size read whole: kept while it streams (TeeReply)

    async def files(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Cache-Control": "max-age=60"})
        await resp.prepare(request)
        for i in range(0, len(big), 64 * 1024):
            await resp.write(big[i:i + 64 * 1024])
        await resp.write_eof()
        return resp

    url = await upstream(catch_all(files))
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens: a Problem from the fetch
    edge = await make_edge(services_yaml({"origin": url, "down": down}), ROUTES)
    gc.collect()
    gc.garbage.clear()
    for n in range(5):
        resp = await edge.get(f"/files/f{n}")
        assert resp.status == 200 and len(await resp.read()) == len(big)
        resp = await edge.get("/down")
        assert resp.status in (502, 503, 504)
        await resp.read()
    assert collect(cycles) == []


async def test_a_reloaded_config_generation_is_freed_without_a_collection(
        make_edge: Any, upstream: Any, cycles: list[str]) -> None:
    # its device classifier and client-address policy cached bound methods of themselves
    # (lru_cache(self._f)): every generation a reload retired waited for a full collection
    async def doc(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    url = await upstream(catch_all(doc))
    down = f"http://127.0.0.1:{free_port()}"
    edge = await make_edge(services_yaml({"origin": url, "down": down}), ROUTES)
    for generation in range(3):
        for n in range(5):
            resp = await edge.get(f"/files/g{generation}-{n}",
                                  headers={"User-Agent": f"app/{generation}.{n}"})
            assert resp.status == 200
        assert await edge.edge.state.reloader.reload()
    gc.collect()
    assert sorted({type(o).__name__ for o in gc.garbage} & {
        "Runtime", "DeviceClassifier", "ClientAddress", "Route"}) == []


class Node:
    def __init__(self) -> None:
        self.me = self


async def test_the_trimmer_collects_what_the_rare_gc_leaves() -> None:
    trimmer = allocator.Trimmer(every=0.01, collect_every=0.1)
    gc.collect()
    gc.disable()  # as rare as the oldest generation's collections are in the edge
    try:
        node = weakref.ref(Node())
        trimmer.start()
        await asyncio.sleep(0.05)
        assert node() is not None and trimmer.collections == 0
        for _ in range(300):
            if trimmer.collections:
                break
            await asyncio.sleep(0.01)
        assert trimmer.collections >= 1 and node() is None
        await trimmer.close()
    finally:
        gc.enable()


async def test_an_event_stream_that_ends_frees_its_connection(
        make_edge: Any, upstream: Any, cycles: list[str]) -> None:
    # aiohttp-sse cancels the stream's ping task, and the task keeps its CancelledError,
    # whose traceback holds the ping's frame, the response, its request and connection:
    # one such graph per stream that ended (bench/soak.py), freed only by a full collection
    url = await upstream(headers_echo_app())
    edge = await make_edge(edge_yaml(url), SSE_ROUTES)  # heartbeat 1s

    async def held(seconds: float) -> None:
        async with edge.get("/events?topic=public") as resp:
            assert resp.status == 200
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    async for _line in resp.content:
                        pass

    await asyncio.gather(held(1.3), held(1.5))  # each past a heartbeat, then hung up
    for _ in range(100):
        if not edge.edge.state.hub.subscribers:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the cancelled ping tasks finish
    assert collect(cycles) == []
