"""POST /offline/queue: a device's queued writes, replayed as often as the network makes
it, create each thing exactly once — also across two edge instances sharing Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from edge.demo.services import SERVICES

from .conftest import services_yaml
from .test_auth import AUTH, bearer, token

ROUTES = {"r.yaml": """
routes:
  - route: POST /api/claims
    source: {service: claims, path: /claims}
    auth: {jwt: required}
    idempotency: {ttl: 24h}
  - route: POST /api/claims-unguarded
    source: {service: claims, path: /claims}
    auth: {jwt: required}
  - route: GET /api/claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    auth: {jwt: required}
  - route: POST /offline/queue
    auth: {jwt: required}
    offline_queue: {max_operations: 10}
"""}


def new_claim(amount: int) -> dict[str, Any]:
    return {"member_id": "1001", "provider_id": "PRV-001", "service_date": "2026-03-14",
            "items": [{"benefit_code": "CONS-GP", "amount": amount}]}


def queue(n: int = 3) -> list[dict[str, Any]]:
    """A field agent's queue: n claims made offline, each with the app's own id."""
    return [{"local_id": f"local-{uuid.uuid4()}", "method": "POST", "path": "/api/claims",
             "body": new_claim(100_000 + i), "timestamp": f"2026-11-20T08:0{i}:00Z"}
            for i in range(n)]


@pytest.fixture
async def claims(upstream: Any) -> str:
    return str(await upstream(SERVICES["claims"]()))


async def created(edge: Any, claims_url: str) -> int:
    async with edge.session.get(f"{claims_url}/_stats") as resp:
        return int((await resp.json())["created"])


async def upload(edge: Any, ops: Any, **extra: Any) -> dict[str, Any]:
    resp = await edge.post("/offline/queue", data=orjson.dumps({"operations": ops, **extra}),
                           headers=bearer(token()))
    assert resp.status == 200, await resp.text()
    return dict(orjson.loads(await resp.read()))


async def test_replaying_the_queue_three_times_creates_each_claim_once(
        make_edge: Any, claims: str) -> None:
    edge = await make_edge(services_yaml({"claims": claims}, AUTH), ROUTES)
    ops = queue(3)
    first = await upload(edge, ops)
    results = first["results"]
    assert [r["status"] for r in results] == [201, 201, 201]
    assert [r["local_id"] for r in results] == [op["local_id"] for op in ops]
    server_ids = [r["server_id"] for r in results]
    assert all(s.startswith("CLM-") for s in server_ids)
    assert server_ids == sorted(server_ids)  # applied in order
    for _ in range(2):  # the connection dropped before the app saw the answer, twice
        again = (await upload(edge, ops))["results"]
        assert [r["server_id"] for r in again] == server_ids
        assert all(r["replayed"] for r in again)
    assert await created(edge, claims) == 3
    # the claims are there, readable by their server ids
    got = await edge.get(f"/api/claims/{server_ids[0]}", headers=bearer(token()))
    assert (await got.json())["total_amount"] == 100_000


async def test_concurrent_replays_create_each_claim_once(make_edge: Any, claims: str) -> None:
    edge = await make_edge(services_yaml({"claims": claims}, AUTH), ROUTES)
    ops = queue(4)
    outs = await asyncio.gather(*(upload(edge, ops) for _ in range(3)))
    ids = [[r["server_id"] for r in out["results"]] for out in outs]
    assert ids[0] == ids[1] == ids[2]
    assert await created(edge, claims) == 4


async def test_two_instances_sharing_redis_create_each_claim_once(make_edge: Any,
                                                                   claims: str,
                                                                   redis_url: str) -> None:
    env = {"EDGE_REDIS_URL": redis_url}
    yaml = services_yaml({"claims": claims}, AUTH)
    a = await make_edge(yaml, ROUTES, env=env)
    b = await make_edge(yaml, ROUTES, env=env, root=a.edge.config.root.parent / "b")
    assert a.edge.state.backend.name == b.edge.state.backend.name == "redis"
    ops = queue(5)
    outs = await asyncio.gather(upload(a, ops), upload(b, ops), upload(a, ops))
    ids = [[r["server_id"] for r in out["results"]] for out in outs]
    assert ids[0] == ids[1] == ids[2]
    assert await created(a, claims) == 5


async def test_failures_are_reported_per_operation(make_edge: Any, claims: str) -> None:
    edge = await make_edge(services_yaml({"claims": claims}, AUTH), ROUTES)
    ops = [
        {"local_id": "bad", "method": "POST", "path": "/api/claims", "body": {"member_id": "x"}},
        {"local_id": "unguarded", "method": "POST", "path": "/api/claims-unguarded",
         "body": new_claim(1)},
        {"local_id": f"ok-{uuid.uuid4()}", "method": "POST", "path": "/api/claims",
         "body": new_claim(2)},
        {"local_id": "read", "method": "GET", "path": "/api/claims/CLM-000001"},
    ]
    results = (await upload(edge, ops))["results"]
    assert [r["status"] for r in results] == [422, 422, 201, 200]
    assert results[0]["error"]["title"] == "Unprocessable Entity"
    assert "member_id: unknown member" in str(results[0]["error"]["body"])
    assert results[1]["error"]["type"] == "urn:edge:problem:not-idempotent"
    assert results[2]["server_id"].startswith("CLM-")
    assert results[3]["server_id"] == "CLM-000001"
    assert await created(edge, claims) == 1  # the unguarded write never went out


async def test_stop_on_error_skips_the_rest(make_edge: Any, claims: str) -> None:
    edge = await make_edge(services_yaml({"claims": claims}, AUTH), ROUTES)
    ops = [{"local_id": f"bad-{uuid.uuid4()}", "method": "POST", "path": "/api/claims",
            "body": {}}] + queue(2)
    results = (await upload(edge, ops, on_error="stop"))["results"]
    assert [r["status"] for r in results] == [422, 424, 424]
    assert await created(edge, claims) == 0


async def test_queue_limits_and_shape(make_edge: Any, claims: str) -> None:
    edge = await make_edge(services_yaml({"claims": claims}, AUTH), ROUTES)
    resp = await edge.post("/offline/queue", data=orjson.dumps(queue(11)),
                           headers=bearer(token()))
    assert resp.status == 413
    resp = await edge.post("/offline/queue", data=b'{"operations": [{"method": "GET"}]}',
                           headers=bearer(token()))
    assert resp.status == 400
    assert "local_id" in (await resp.json(content_type=None))["detail"]
    resp = await edge.post("/offline/queue", data=b"[]")
    assert resp.status == 401  # the queue itself needs a token
