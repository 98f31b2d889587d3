"""Upstream failures: unreachable, slow, flaky, malformed; retries and the circuit breaker."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge.errors import Problem
from edge.upstream import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, RetryBudget

from .conftest import catch_all, free_port, services_yaml


class Chaos:
    """An upstream whose behaviour the test steers, counting what reaches it."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = 0
        self.status = 200
        self.delay = 0.0

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.calls += 1
            await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_next:
                self.fail_next -= 1
                return web.json_response({"error": "boom"}, status=503)
            if request.path == "/drop":
                resp = web.StreamResponse()
                resp.content_length = 1_000_000
                await resp.prepare(request)
                await resp.write(b"x" * 100_000)
                assert request.transport is not None
                request.transport.close()
                return resp
            if request.path == "/garbage":
                assert request.transport is not None
                request.transport.write(b"HTTP/1.1 2OO OK\r\nwhat\r\n\r\n")
                request.transport.close()
                return web.Response()
            return web.json_response({"ok": True, "n": self.calls}, status=self.status)

        return catch_all(handle)


ROUTES = {"r.yaml": """
routes:
  - route: GET /x
    source: {service: svc, path: /x}
  - route: POST /x
    source: {service: svc, path: /x}
  - route: GET /slow
    source: {service: svc, path: /slow, timeout: 200ms}
  - route: GET /drop
    source: {service: svc, path: /drop}
  - route: GET /garbage
    source: {service: svc, path: /garbage}
"""}

SERVICE = """
    timeouts: {{connect: 500ms, read: 2s}}
    retries: {{attempts: {attempts}, backoff: 10ms}}
    circuit_breaker: {{failure_threshold: {threshold}, open_for: {open_for}}}
"""


def edge_yaml(url: str, attempts: int = 2, threshold: int = 3, open_for: str = "300ms") -> str:
    return f"services:\n  svc:\n    url: {url}" + SERVICE.format(
        attempts=attempts, threshold=threshold, open_for=open_for)


async def test_unreachable_upstream_is_502(make_edge: Any) -> None:
    client = await make_edge(services_yaml({"svc": f"http://127.0.0.1:{free_port()}"}), ROUTES)
    resp = await client.get("/x")
    assert resp.status == 502
    p = await resp.json(content_type=None)
    assert p["type"] == "urn:edge:problem:upstream-unreachable"
    assert "127.0.0.1" not in p.get("detail", "")  # no upstream internals


async def test_timeout_is_504(make_edge: Any, upstream: Any) -> None:
    chaos = Chaos()
    chaos.delay = 1.0
    client = await make_edge(edge_yaml(await upstream(chaos.app())), ROUTES)
    resp = await client.get("/slow")
    assert resp.status == 504
    assert (await resp.json(content_type=None))["type"] == "urn:edge:problem:upstream-timeout"


async def test_idempotent_get_is_retried_post_is_not(make_edge: Any, upstream: Any) -> None:
    chaos = Chaos()
    client = await make_edge(edge_yaml(await upstream(chaos.app()), threshold=10), ROUTES)
    chaos.fail_next = 1
    resp = await client.get("/x")
    assert resp.status == 200
    assert chaos.calls == 2
    chaos.calls, chaos.fail_next = 0, 1
    resp = await client.post("/x", json={"a": 1})
    assert resp.status == 503  # the upstream's own answer, relayed
    assert chaos.calls == 1


async def test_circuit_opens_then_half_opens_then_closes(make_edge: Any, upstream: Any) -> None:
    chaos = Chaos()
    client = await make_edge(edge_yaml(await upstream(chaos.app()), attempts=1, threshold=3),
                             ROUTES)
    chaos.fail_next = 3
    for _ in range(3):
        assert (await client.get("/x")).status == 503
    calls = chaos.calls
    resp = await client.get("/x")
    assert resp.status == 503
    assert chaos.calls == calls  # answered by the breaker, not the upstream
    p = await resp.json(content_type=None)
    assert p["type"] == "urn:edge:problem:circuit-open"
    assert int(resp.headers["Retry-After"]) >= 1
    metrics = await (await client.get("/metrics")).text()
    assert 'edge_circuit_state{service="svc"} 1.0' in metrics
    await asyncio.sleep(0.35)
    resp = await client.get("/x")  # the trial request goes through and succeeds
    assert resp.status == 200
    assert (await client.get("/x")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'edge_circuit_state{service="svc"} 0.0' in metrics


async def test_malformed_upstream_response_is_502(make_edge: Any, upstream: Any) -> None:
    chaos = Chaos()
    client = await make_edge(edge_yaml(await upstream(chaos.app()), attempts=1), ROUTES)
    resp = await client.get("/garbage")
    assert resp.status == 502


async def test_upstream_dropping_mid_body_breaks_the_client_connection(
        make_edge: Any, upstream: Any) -> None:
    chaos = Chaos()
    client = await make_edge(edge_yaml(await upstream(chaos.app())), ROUTES)
    resp = await client.get("/drop")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


def test_breaker_states_with_a_fake_clock() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=2, open_for=10, half_open_requests=1, clock=lambda: now[0])
    b.record(False)
    b.record(True)  # a success resets the count
    b.record(False)
    assert b.state == CLOSED
    b.record(False)
    assert b.state == OPEN
    now[0] = 3
    with pytest.raises(Problem) as e:
        b.before()
    assert e.value.headers["Retry-After"] == "7"
    now[0] = 10
    b.before()
    assert b.state == HALF_OPEN
    with pytest.raises(Problem):
        b.before()  # only one trial at a time
    b.record(False)
    assert b.state == OPEN
    now[0] = 21
    b.before()
    b.record(True)
    assert b.state == CLOSED


def test_retry_budget_limits_retry_storms() -> None:
    now = [0.0]
    budget = RetryBudget(ratio=0.1, min_per_second=0, clock=lambda: now[0])
    granted = 0
    for _ in range(1000):
        budget.deposit()
        if budget.withdraw():
            granted += 1
    # 10 initial tokens + 10% of 1000 requests
    assert 100 <= granted <= 111
