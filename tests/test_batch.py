"""POST /batch: many requests in one round trip, each through its own route."""

from __future__ import annotations

import asyncio
from typing import Any

import brotli
import orjson
import pytest
from aiohttp import web

from edge.demo.services import SERVICES

from .conftest import catch_all, services_yaml
from .test_auth import bearer, token

AUTH = """
auth:
  jwt:
    algorithms: [HS256]
    secret_env: EDGE_JWT_SECRET
    issuer: https://id.example
    audience: edge
devices:
  user_agent:
    - {pattern: "iPhone", device: phone}
"""
ROUTES = {"r.yaml": """
routes:
  - route: GET /api/members/{member_id}
    source: {service: members, path: "/members/{member_id}"}
    auth:
      jwt: required
      allow: [{claim: sub, equals: "{member_id}"}]
    shape:
      fields: {phone: "id,first_name", default: "*"}
  - route: GET /api/claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    auth: {jwt: required}
  - route: POST /api/claims
    source: {service: claims, path: /claims}
    auth: {jwt: required}
    idempotency: {ttl: 1h}
  - route: GET /api/claims-stats
    source: {service: claims, path: /_stats}
  - route: GET /slow/{rest...}
    source: {service: slow, path: "/{rest}"}
  - route: POST /batch
    batch: {max_items: 5, timeout: 2s, max_item_response: 64KiB}
  - route: POST /offline/queue
    offline_queue: {}
"""}


def claim_body(amount: int = 150_000) -> dict[str, Any]:
    return {"member_id": "1001", "provider_id": "PRV-001", "service_date": "2026-03-14",
            "items": [{"benefit_code": "CONS-GP", "amount": amount}]}


class Barrier:
    """An upstream whose requests wait until `n` of them are in flight (or 0.3 s passes):
    it answers `together` only when they really ran concurrently."""

    def __init__(self, n: int) -> None:
        self.n, self.waiting, self.event = n, 0, asyncio.Event()

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            if request.path.startswith("/big"):
                return web.json_response({"blob": "x" * 100_000})
            if request.path.startswith("/sleep"):
                await asyncio.sleep(5)
            self.waiting += 1
            if self.waiting >= self.n:
                self.event.set()
            try:
                await asyncio.wait_for(self.event.wait(), 0.3)
                return web.json_response({"together": True})
            except TimeoutError:
                return web.json_response({"together": False})

        return catch_all(handler)


@pytest.fixture
async def setup(make_edge: Any, upstream: Any) -> tuple[Any, Barrier]:
    barrier = Barrier(3)
    urls = {"members": await upstream(SERVICES["members"]()),
            "claims": await upstream(SERVICES["claims"]()),
            "slow": await upstream(barrier.app())}
    return await make_edge(services_yaml(urls, AUTH), ROUTES), barrier


async def batch(edge: Any, items: Any, sub: str = "1001", **headers: str) -> Any:
    resp = await edge.post("/batch", data=orjson.dumps(items),
                           headers={**bearer(token(sub=sub)), **headers})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return orjson.loads(await resp.read())


async def test_batch_mixes_successes_404s_and_a_forbidden_item(setup: Any) -> None:
    edge, _ = setup
    out = await batch(edge, [
        {"id": "me", "method": "GET", "path": "/api/members/1001"},
        {"id": "missing", "method": "GET", "path": "/api/claims/CLM-999999"},
        {"id": "other", "method": "GET", "path": "/api/members/1002"},
        {"id": "claim", "method": "GET", "path": "/api/claims/CLM-000001"},
        {"id": "noroute", "path": "/nowhere"},
    ])
    by_id = {item["id"]: item for item in out}
    assert [item["id"] for item in out] == ["me", "missing", "other", "claim", "noroute"]
    assert by_id["me"]["status"] == 200 and by_id["me"]["body"]["id"] == "1001"
    assert by_id["missing"]["status"] == 404
    assert by_id["other"]["status"] == 403
    assert by_id["other"]["body"]["type"] == "urn:edge:problem:forbidden"
    assert by_id["other"]["headers"]["Content-Type"] == "application/problem+json"
    assert by_id["claim"]["status"] == 200 and by_id["claim"]["body"]["id"] == "CLM-000001"
    assert by_id["noroute"]["status"] == 404
    # each item is traceable: its own request id, derived from the batch's
    rids = {item["headers"]["X-Request-ID"] for item in out}
    assert len(rids) == 5 and all(r.rsplit(".", 1)[1].isdigit() for r in rids)


async def test_items_use_the_batch_credentials_and_may_not_bring_their_own(
        setup: Any) -> None:
    edge, _ = setup
    resp = await edge.post("/batch", data=orjson.dumps([
        {"id": 1, "path": "/api/members/1001"}]))
    out = orjson.loads(await resp.read())
    assert out[0]["status"] == 401  # no token on the batch: none on its items
    stolen = token(sub="1002")
    out = await batch(edge, [
        {"id": 1, "path": "/api/members/1002",
         "headers": {"Authorization": f"Bearer {stolen}"}},
        {"id": 2, "path": "/api/members/1001", "headers": {"Cookie": "a=b"}},
        {"id": 3, "path": "/api/members/1001", "headers": {"X-Custom": "ok"}},
    ])
    assert [i["status"] for i in out] == [400, 400, 200]
    assert "comes from the batch request" in out[0]["body"]["detail"]


async def test_items_are_shaped_like_a_request_of_their_own(setup: Any) -> None:
    edge, _ = setup
    out = await batch(edge, [
        {"id": "phone", "path": "/api/members/1001"},
        {"id": "narrow", "path": "/api/members/1001?fields=first_name"},
    ], **{"User-Agent": "MyApp iPhone"})
    assert set(out[0]["body"]) == {"id", "first_name"}  # the phone's default projection
    assert set(out[1]["body"]) == {"first_name"}  # narrowed further by ?fields=


async def test_writes_run_in_order_and_each_counts(setup: Any) -> None:
    edge, _ = setup
    out = await batch(edge, [
        {"id": f"c{n}", "method": "POST", "path": "/api/claims", "body": claim_body(n * 1000)}
        for n in range(1, 4)
    ] + [{"id": "stats", "path": "/api/claims-stats"}])
    created = [item["body"] for item in out[:3]]
    assert [item["status"] for item in out[:3]] == [201, 201, 201]
    assert [c["total_amount"] for c in created] == [1000, 2000, 3000]
    ids = [c["id"] for c in created]
    assert ids == sorted(ids)  # created one after another, in list order


async def test_safe_items_run_concurrently_unless_sequential_is_asked(setup: Any) -> None:
    edge, barrier = setup
    items = [{"id": n, "path": f"/slow/wait/{n}"} for n in range(3)]
    out = await batch(edge, items)
    assert [i["body"]["together"] for i in out] == [True, True, True]
    barrier.waiting, barrier.event = 0, asyncio.Event()
    out = await batch(edge, {"order": "sequential", "requests": items})
    assert out[0]["body"]["together"] is False


async def test_one_slow_or_oversized_item_never_fails_the_batch(setup: Any) -> None:
    edge, _ = setup
    out = await batch(edge, [
        {"id": "slow", "path": "/slow/sleep"},
        {"id": "big", "path": "/slow/big"},
        {"id": "ok", "path": "/api/claims/CLM-000002"},
    ])
    by_id = {item["id"]: item for item in out}
    assert by_id["slow"]["status"] == 504  # the batch's 2s ran out
    assert by_id["big"]["status"] == 502  # over max_item_response
    assert by_id["big"]["body"]["type"] == "urn:edge:problem:response-too-large"
    assert by_id["ok"]["status"] == 200


@pytest.mark.parametrize("body, status, detail", [
    (b"not json", 400, "not JSON"),
    (b'{"requests": 3}', 400, "expected a JSON list"),
    (b"[1]", 400, "requests[0] must be an object"),
    (b'[{"id": "a", "path": "/x"}, {"id": "a", "path": "/y"}]', 400, "used twice"),
    (orjson.dumps([{"path": "/x"}] * 6), 413, "at most 5 requests"),
    (b'{"order": "random", "requests": []}', 400, "order must be one of"),
])
async def test_malformed_batches_are_problems(setup: Any, body: bytes, status: int,
                                              detail: str) -> None:
    edge, _ = setup
    resp = await edge.post("/batch", data=body)
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    assert detail in (await resp.json(content_type=None))["detail"]


async def test_bad_items_answer_alone(setup: Any) -> None:
    edge, _ = setup
    out = await batch(edge, [
        {"id": "m", "method": "FETCH", "path": "/api/claims/CLM-000001"},
        {"id": "p", "path": "api/claims/CLM-000001"},
        {"id": "nest", "method": "POST", "path": "/batch", "body": []},
        {"id": "ok", "path": "/api/claims/CLM-000001"},
    ])
    assert [i["status"] for i in out] == [400, 400, 400, 200]
    assert "don't nest" in out[2]["body"]["detail"]


async def test_batch_answer_is_compressed_and_items_are_counted(setup: Any) -> None:
    edge, _ = setup
    resp = await edge.post("/batch", data=orjson.dumps([
        {"id": n, "path": f"/api/claims/CLM-00000{n}"} for n in range(1, 5)]),
        headers={**bearer(token()), "Accept-Encoding": "br"}, auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "br"
    out = orjson.loads(brotli.decompress(await resp.read()))
    assert [i["status"] for i in out] == [200] * 4
    metrics = await (await edge.get("/metrics")).text()
    line = next(m for m in metrics.splitlines() if m.startswith("edge_requests_total")
                and 'route="GET /api/claims/{claim_id}"' in m)
    assert line.endswith(" 4.0")

