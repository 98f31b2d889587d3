"""Aggregated routes: several demo services composed into one answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.config import ConfigError, load_config
from edge.demo.services import SERVICES

from .conftest import free_port, services_yaml, write_config

DASHBOARD = {"d.yaml": """
routes:
  - route: GET /dashboard/{member_id}
    sources:
      member: {service: members, path: "/members/{member_id}", required: true}
      claims: {service: claims, path: "/claims?member_id={member_id}&size=5", pick: /items,
               fallback: []}
      benefits: {service: benefits, path: "/benefits/{member_id}/summary", fallback: null}
      notifications: {service: notifications, path: "/notifications?member_id={member_id}",
                      pick: /items, into: member, key: inbox, fallback: []}
      latest: {service: claims, path: "/claims/{claims.0.id}", fallback: {}}
    shape:
      envelope: {when: on_request}
  - route: GET /needs-down/{member_id}
    sources:
      member: {service: members, path: "/members/{member_id}"}
      gone: {service: down, path: "/x", required: true}
"""}


@pytest.fixture
async def services(upstream: Any) -> dict[str, str]:
    urls = {n: await upstream(SERVICES[n]())
            for n in ("members", "claims", "benefits", "notifications")}
    urls["down"] = f"http://127.0.0.1:{free_port()}"
    return urls


async def test_dashboard_from_four_services_in_one_call(make_edge: Any,
                                                         services: dict[str, str]) -> None:
    edge = await make_edge(services_yaml(services), DASHBOARD)
    resp = await edge.get("/dashboard/1001")
    assert resp.status == 200
    doc = orjson.loads(await resp.read())
    assert set(doc) == {"member", "claims", "benefits", "latest"}
    assert doc["member"]["id"] == "1001"
    assert len(doc["claims"]) == 5
    assert doc["benefits"]["member_id"] == "1001"
    assert isinstance(doc["member"]["inbox"], list)  # nested with `into`
    # `latest` waited for `claims` and fetched its first claim by id
    assert doc["latest"]["id"] == doc["claims"][0]["id"]
    assert "X-Edge-Degraded" not in resp.headers


async def test_failed_optional_source_falls_back_and_is_named(
        make_edge: Any, services: dict[str, str]) -> None:
    services = {**services, "benefits": f"http://127.0.0.1:{free_port()}"}
    edge = await make_edge(services_yaml(services), DASHBOARD)
    resp = await edge.get("/dashboard/1001?envelope=true")
    assert resp.status == 200
    assert resp.headers["X-Edge-Degraded"] == "benefits"
    body = orjson.loads(await resp.read())
    assert body["data"]["benefits"] is None
    assert body["metadata"]["degraded"] == ["benefits"]
    assert body["metadata"]["data_sources"] == ["member", "claims", "benefits",
                                                "notifications", "latest"]


async def test_dependent_source_degrades_with_its_dependency(
        make_edge: Any, services: dict[str, str]) -> None:
    edge = await make_edge(services_yaml(services), {"r.yaml": """
route: GET /chain
sources:
  first: {service: down, path: /x, fallback: {}}
  then: {service: claims, path: "/claims/{first.id}", fallback: "unknown"}
  alone: {service: members, path: /members/1001, pick: /id}
"""})
    resp = await edge.get("/chain")
    assert resp.status == 200
    assert resp.headers["X-Edge-Degraded"] == "first, then"
    assert orjson.loads(await resp.read()) == {"first": {}, "then": "unknown", "alone": "1001"}


async def test_required_source_failure_fails_the_request(make_edge: Any,
                                                         services: dict[str, str]) -> None:
    edge = await make_edge(services_yaml(services), DASHBOARD)
    resp = await edge.get("/needs-down/1001")
    assert resp.status == 502
    problem = await resp.json(content_type=None)
    assert problem["type"] == "urn:edge:problem:upstream-unreachable"
    assert problem["source"] == "gone"
    assert "'gone'" in problem["detail"]
    resp = await edge.get("/dashboard/9999")  # member is required and answers 404
    assert resp.status == 502
    assert (await resp.json(content_type=None))["source"] == "member"


@pytest.mark.parametrize("routes, expected", [
    ("""
route: GET /a
sources:
  one: {service: s, path: "/x/{two.id}"}
  two: {service: s, path: "/y/{one.id}"}
""", "GET /a: sources wait for each other in a cycle: one -> two -> one"),
    ("""
route: GET /a
sources:
  one: {service: s, path: "/x/{nope.id}"}
""", "GET /a: sources.one.path uses '{nope.id}' but there is no source 'nope'"),
    ("""
route: POST /a
sources:
  one: {service: s, path: /x}
""", "POST /a: `sources` compose reads; a route with several sources must be GET"),
    ("""
route: GET /a
source: {service: s, path: /x}
sources:
  one: {service: s, path: /x}
""", "GET /a: give exactly one of `source` (one upstream), `sources` (several, composed), "
    "`batch` or `offline_queue`, not source and sources"),
    ("""
route: GET /a
sources:
  one: {service: s, path: /x, into: two}
  two: {service: s, path: /y, into: one}
""", "GET /a: sources nest into each other in a cycle: one -> two -> one"),
])
def test_source_graph_errors(tmp_path: Path, routes: str, expected: str) -> None:
    root = write_config(tmp_path / "c", 'services:\n  s: {url: "http://127.0.0.1:1"}\n',
                        {"r.yaml": routes})
    with pytest.raises(ConfigError) as e:
        load_config(root, {})
    assert any(expected in p for p in e.value.problems), e.value.problems
