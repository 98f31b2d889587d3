"""A request leaves no reference cycles behind: what it held (its exchange, the upstream
response and its buffered body) is freed when it ends, not at the next full collection,
which with many long-lived objects comes rarely (bench/soak.py: 27,816 cyclic objects in
20 s, among them every cached pass-through answer and every failed shared fetch)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from .conftest import catch_all, free_port, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /files/{name}
    source: {service: origin, path: "/files/{name}"}
    cache: {ttl: 60s, scope: public}
  - route: GET /down
    source: {service: down, path: /x}
    cache: {ttl: 60s, scope: public}
"""}

WATCHED = {"TeeReply", "Exchange", "Problem", "ClientResponse", "BaseRequest"}


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
