"""The edge's lifecycle: whatever it starts in the background is its own, and ends when it
closes."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from blockbuster import BlockingError

from edge.app import EdgeApp
from edge.config import load_config

from .conftest import (
    JWT_SECRET,
    EdgeTestServer,
    FakeClock,
    catch_all,
    edge_tasks,
    services_yaml,
    write_config,
)

ROUTES = {"r.yaml": """
routes:
  - route: GET /short/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
    cache: {scope: public, ttl: 1s, stale_while_revalidate: 30s}
    rate_limit: [{key: ip, rate: 100/s}]
  - route: GET /slow
    source: {service: up, path: "/slow"}
    auth: {jwt: off}
"""}
EXTRA = """
auth:
  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}
events:
  topics: [{topic: public, public: true}]
  heartbeat: 1s
reload: {interval: 100ms}
"""


async def test_close_leaves_no_task_of_ours_behind(tmp_path: Path, aiohttp_client: Any,
                                                   upstream: Any, clock: FakeClock,
                                                   redis_url: str) -> None:
    state = {"delay": 0.0}
    in_flight = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/slow":
            in_flight.set()
            await asyncio.sleep(30)
        await asyncio.sleep(state["delay"])
        return web.json_response({"path": request.path})

    url = await upstream(catch_all(handler))
    other = await upstream(catch_all(handler))
    root = write_config(tmp_path / "c", services_yaml({"up": url}, EXTRA), ROUTES)
    env = {"EDGE_JWT_SECRET": JWT_SECRET, "EDGE_REDIS_URL": redis_url}
    config = await asyncio.to_thread(load_config, root, env)
    edge = EdgeApp(config, env=env, watch=True, access_log=io.BytesIO(), clock=clock,
                   monotonic=clock.monotonic)
    await edge.start()
    client = await aiohttp_client(EdgeTestServer(edge))
    try:
        # the Redis listeners (purges, events) and the config watcher run from the start
        assert len(edge_tasks()) >= 3
        # an event stream is open
        stream = await client.get("/events?topic=public")
        assert stream.status == 200
        await stream.content.readline()
        # a stale answer's refresh is on its way
        assert (await client.get("/short/1")).status == 200
        clock.advance(1.1)
        state["delay"] = 30
        stale = await client.get("/short/1")
        assert "stale-while-revalidate" in stale.headers["Cache-Status"]
        # a reload retires an upstream that still has a request on its way
        slow = asyncio.ensure_future(client.get("/slow"))
        await in_flight.wait()
        retired = edge.state.runtime.upstreams["up"]
        write_config(root, services_yaml({"up": other}, EXTRA), ROUTES)
        assert await edge.state.reloader.reload()
        assert edge_tasks()
    finally:
        await edge.close()
        assert edge_tasks() == []
        assert retired.session.closed  # closed by its retirement, cut short
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        stream.close()
        await client.close()


async def test_a_blocking_call_in_the_edge_fails_the_test(tmp_path: Path) -> None:
    """The blockbuster fixture (conftest) is on: the edge reading its config on the loop
    is caught; in a thread it is fine."""
    root = write_config(tmp_path / "c", services_yaml({"up": "http://127.0.0.1:1"}), {})
    with pytest.raises(BlockingError):
        load_config(root, {})
    assert not (await asyncio.to_thread(load_config, root, {})).routes
