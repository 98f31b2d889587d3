"""Hot reload: valid edits apply, broken ones are reported and change nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from .conftest import catch_all, services_yaml


def app_with_slow() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(0.5)
        return web.json_response({"path": request.path})

    return catch_all(handle)


ONE = """
route: GET /a
source: {service: svc, path: /a}
"""
TWO = """
routes:
  - route: GET /a
    source: {service: svc, path: /a-v2}
  - route: GET /b
    source: {service: svc, path: /b}
"""


async def wait_for(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_file_change_reloads(make_edge: Any, upstream: Any, tmp_path: Path) -> None:
    url = await upstream(app_with_slow())
    edge_yaml = services_yaml({"svc": url}, "reload: {interval: 100ms}\n")
    client = await make_edge(edge_yaml, {"r.yaml": ONE}, watch=True)
    assert (await client.get("/b")).status == 404
    (tmp_path / "config" / "routes" / "r.yaml").write_text(TWO)

    async def b_served() -> bool:
        return (await client.get("/b")).status == 200

    await wait_for(b_served)
    assert (await (await client.get("/a")).json())["path"] == "/a-v2"
    ready = await (await client.get("/ready")).json()
    assert ready["config_generation"] == 2


async def test_broken_edit_keeps_last_good_config(make_edge: Any, upstream: Any,
                                                  tmp_path: Path) -> None:
    url = await upstream(app_with_slow())
    edge_yaml = services_yaml({"svc": url}, "reload: {interval: 100ms}\n")
    client = await make_edge(edge_yaml, {"r.yaml": ONE}, watch=True)
    (tmp_path / "config" / "routes" / "r.yaml").write_text(
        "route: GET /a\nsource: {service: nope, path: /a}\n")

    async def rejected() -> bool:
        text = await (await client.get("/metrics")).text()
        return 'edge_config_reloads_total{result="error"} 1.0' in text

    await wait_for(rejected)
    assert (await client.get("/a")).status == 200
    ready = await (await client.get("/ready")).json()
    assert ready["config_generation"] == 1
    assert "r.yaml:2:" in ready["last_reload_error"]
    assert "unknown service 'nope'" in ready["last_reload_error"]
    text = await (await client.get("/metrics")).text()
    assert "edge_config_last_reload_failed 1.0" in text


async def test_in_flight_requests_finish_on_the_old_config(make_edge: Any, upstream: Any,
                                                           tmp_path: Path) -> None:
    url = await upstream(app_with_slow())
    routes = {"r.yaml": "route: GET /slow\nsource: {service: svc, path: /slow}\n"}
    client = await make_edge(services_yaml({"svc": url}), routes)
    state = client.edge.state
    slow = asyncio.ensure_future(client.get("/slow"))
    await asyncio.sleep(0.1)
    # the new config renames the service: the old pool must stay open until /slow is done
    (tmp_path / "config" / "edge.yaml").write_text(services_yaml({"svc2": url}))
    (tmp_path / "config" / "routes" / "r.yaml").write_text(
        "route: GET /slow\nsource: {service: svc2, path: /slow}\n")
    assert await state.reloader.reload()
    resp = await slow
    assert resp.status == 200
    assert (await resp.json())["path"] == "/slow"
    assert state.runtime.generation == 2
    assert (await client.get("/slow")).status == 200


async def test_unchanged_services_keep_their_pool(make_edge: Any, upstream: Any,
                                                  tmp_path: Path) -> None:
    url = await upstream(app_with_slow())
    client = await make_edge(services_yaml({"svc": url}), {"r.yaml": ONE})
    state = client.edge.state
    before = state.runtime.upstreams["svc"]
    (tmp_path / "config" / "routes" / "r.yaml").write_text(TWO)
    assert await state.reloader.reload()
    assert state.runtime.upstreams["svc"] is before


async def test_process_wide_settings_follow_a_reload(make_edge: Any, upstream: Any,
                                                     tmp_path: Path) -> None:
    """rate_limits' headers and bounds and the cache's memory bound apply on reload; the
    buckets and the cached entries that still fit stay."""
    url = await upstream(app_with_slow())
    limited = """
route: GET /a
source: {service: svc, path: /a}
rate_limit: [{key: device, rate: 1/h, burst: 1}]
"""
    client = await make_edge(services_yaml({"svc": url}), {"r.yaml": limited})
    state = client.edge.state
    phone = {"X-Device-ID": "phone-1"}
    assert (await client.get("/a", headers=phone)).status == 200
    assert (await client.get("/a", headers=phone)).status == 429  # its own budget is spent
    assert (await client.get("/a", headers={"X-Phone": "p2"})).status == 200  # the IP's
    (tmp_path / "config" / "edge.yaml").write_text(services_yaml(
        {"svc": url}, "rate_limits: {device_header: X-Phone, max_keys: 500}\n"
                      "cache: {max_memory: 1KiB}\n"))
    assert await state.reloader.reload()
    # X-Device-ID means nothing now: those requests share the address's budget, spent above
    assert (await client.get("/a", headers=phone)).status == 429
    assert (await client.get("/a", headers={"X-Phone": "p3"})).status == 200  # a device
    assert (await client.get("/a", headers={"X-Phone": "p3"})).status == 429
    assert state.limiter.local.max_buckets == 500
    assert state.cache.store.memory.max_bytes == 1024
