"""Metrics, health, readiness, request ids, the access log and device classes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from edge.config import Devices
from edge.context import ClientAddress, DeviceClassifier

from .conftest import REDIS_URL, free_port, headers_echo_app, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /members/{member_id}
    source: {service: svc, path: "/members/{member_id}"}
"""}


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    return await make_edge(services_yaml({"svc": await upstream(headers_echo_app())}), ROUTES)


async def test_metrics_count_by_route_template_and_device(edge: Any) -> None:
    for i in range(3):
        await edge.get(f"/members/{i}", headers={"X-Device-Type": "phone"})
    await edge.get("/members/9", headers={"User-Agent": "Mozilla/5.0 (iPad; CPU OS 17_0)"})
    await edge.get("/nowhere")
    text = await (await edge.get("/metrics")).text()
    assert ('edge_requests_total{device="phone",method="GET",route="GET /members/{member_id}",'
            'status_class="2xx"} 3.0') in text
    assert 'device="tablet"' in text
    assert 'route="unmatched",status_class="4xx"' in text
    assert 'edge_upstream_duration_seconds_count{service="svc"} 4.0' in text
    route = 'route="GET /members/{member_id}"'
    assert f'edge_request_duration_seconds_bucket{{le="+Inf",method="GET",{route}}} 4.0' in text
    assert f'edge_request_duration_seconds_count{{method="GET",{route}}} 4.0' in text
    assert 'edge_response_body_bytes_total{route="GET /members/{member_id}"}' in text
    assert "edge_config_generation 1.0" in text


async def test_metrics_only_for_allowed_networks(make_edge: Any, upstream: Any) -> None:
    client = await make_edge(services_yaml({"svc": await upstream(headers_echo_app())},
                                           "admin: {metrics_allow: [10.0.0.0/8]}\n"), ROUTES)
    resp = await client.get("/metrics")
    assert resp.status == 403


async def test_health_and_ready_on_memory(edge: Any) -> None:
    assert (await edge.get("/health")).status == 200
    resp = await edge.get("/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["backend"] == {"kind": "memory", "reachable": True}
    assert body["config_generation"] == 1


async def test_ready_checks_redis(make_edge: Any, upstream: Any, tmp_path: Any) -> None:
    url = await upstream(headers_echo_app())
    client = await make_edge(services_yaml({"svc": url}), ROUTES,
                             env={"EDGE_REDIS_URL": REDIS_URL})
    body = await (await client.get("/ready")).json()
    assert body["backend"] == {"kind": "redis", "reachable": True}
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = await make_edge(services_yaml({"svc": url}), ROUTES, env={"EDGE_REDIS_URL": dead},
                             root=tmp_path / "other")
    resp = await client.get("/ready")
    assert resp.status == 503
    assert (await resp.json())["backend"]["reachable"] is False


async def test_request_id_kept_when_valid_and_forwarded(edge: Any) -> None:
    resp = await edge.get("/members/1", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    assert (await resp.json())["headers"]["X-Request-ID"] == "abc-123"
    resp = await edge.get("/members/1", headers={"X-Request-ID": "bad id with spaces"})
    rid = resp.headers["X-Request-ID"]
    assert rid != "bad id with spaces" and len(rid) == 16
    assert (await resp.json())["headers"]["X-Request-ID"] == rid


async def test_access_log_is_one_json_line(edge: Any) -> None:
    await edge.get("/members/7?x=1", headers={"X-Request-ID": "r-1", "X-Device-Type": "watch"})
    stream = edge.edge.access_log.stream
    assert stream.getvalue() == b""  # batched: written within `interval`, not per request
    await asyncio.sleep(0.3)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "r-1"
    assert line["route"] == "GET /members/{member_id}"
    assert line["path"] == "/members/7"  # the query (which may hold secrets) is not logged
    assert line["status"] == 200 and line["device"] == "watch"
    assert "upstream_ms" in line and line["client_ip"] == "127.0.0.1"


@pytest.mark.parametrize("headers, device, network", [
    ({}, "desktop", "unknown"),
    ({"X-Device-Type": "watch"}, "watch", "unknown"),
    ({"X-Device-Type": "toaster", "User-Agent": "okhttp/4.9"}, "phone", "unknown"),
    ({"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"}, "phone",
     "unknown"),
    ({"User-Agent": "Mozilla/5.0 (Linux; Android 14; SM-X710) Tablet"}, "tablet", "unknown"),
    ({"User-Agent": "Mozilla/5.0 (Linux; Android 13; Wear OS)"}, "watch", "unknown"),
    ({"Save-Data": "on", "ECT": "4g"}, "desktop", "slow"),
    ({"ECT": "3g"}, "desktop", "medium"),
    ({"X-Network-Type": "wifi"}, "desktop", "fast"),
    ({"X-Network-Type": "2G"}, "desktop", "slow"),
])
def test_device_classes(headers: dict[str, str], device: str, network: str) -> None:
    profile = DeviceClassifier(Devices()).profile(headers)
    assert (profile.device, profile.network) == (device, network)


def test_client_hints_dont_split_device_profiles() -> None:
    # hints are read by image routes (images.negotiate), never by the device profile
    classify = DeviceClassifier(Devices())
    assert classify.profile({"Sec-CH-DPR": "2.75", "Viewport-Width": "412"}) is \
        classify.profile({"DPR": "abc"})


async def test_access_log_flushes_when_the_buffer_fills() -> None:
    import io

    from edge.accesslog import AccessLog

    log = AccessLog(io.BytesIO(), interval=60, max_bytes=200)
    for i in range(10):
        log.write({"i": i, "pad": "x" * 30})
    written = log.stream.getvalue()  # type: ignore[attr-defined]
    assert written.count(b"\n") >= 4  # flushed without waiting for the timer
    log.close()
    assert [json.loads(x)["i"] for x in log.stream.getvalue().splitlines()] == list(range(10))


def test_client_ip_believes_only_trusted_proxies() -> None:
    import ipaddress

    addr = ClientAddress([ipaddress.ip_network("10.0.0.0/8")])
    assert addr.client_ip("203.0.113.5", "1.2.3.4") == "203.0.113.5"
    assert addr.client_ip("10.0.0.2", "1.2.3.4, 10.0.0.9") == "1.2.3.4"
    assert addr.client_ip("10.0.0.2", "6.6.6.6, 1.2.3.4") == "1.2.3.4"
