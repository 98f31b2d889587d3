"""`edge explain` is the server's pipeline with a recorder: for every route of the bundled
demo, an explained request and a served one agree on the status, the headers that matter
and the body bytes; and the record says which stage stopped a refused request."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from edge.app import EdgeApp
from edge.cli import DEMO_APP_KEY, DEMO_PUBLISHER_KEY, DEMO_SECRET, make_token
from edge.config import load_config
from edge.demo.upstreams import start_upstreams, stop_upstreams
from edge.explain import explain, render

from .conftest import EdgeTestServer

REPO = Path(__file__).resolve().parent.parent
MEMBER = "Bearer " + make_token(DEMO_SECRET, "1001", ["member"], 600)
STAFF = "Bearer " + make_token(DEMO_SECRET, "ops-1", ["admin"], 600)
SAMPLES = {"member_id": "1001", "claim_id": "CLM-000086", "policy_id": "POL-1001",
           "provider_id": "PRV-001", "photo": "1", "code": "418"}
# random, slow or endless by design: nothing to compare
SKIP = {"GET /demo/flaky", "GET /demo/drop", "GET /demo/slow", "GET /demo/drip",
        "GET /demo/big", "GET /demo/echo",
        # endless event streams: explain refuses them (406), the server streams them
        "GET /api/v1/members/{member_id}/notifications/stream", "GET /api/v1/notices/stream"}
COMPARED = ("content-type", "content-encoding", "vary", "etag", "cache-control",
            "ratelimit-policy", "x-edge-shaped", "x-edge-keymap", "www-authenticate")


@pytest.fixture
async def demo(tmp_path: Path, aiohttp_client: Any) -> Any:
    ups = await start_upstreams({n: 0 for n in ("members", "claims", "providers", "benefits",
                                               "policies", "notifications", "chaos")})
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    text = (root / "edge.yaml").read_text()
    for up in ups:
        text = re.sub(rf"(  {up.name}:\n    url: )\S+", rf"\g<1>{up.url}", text)
    (root / "edge.yaml").write_text(text)
    env = {"EDGE_JWT_SECRET": DEMO_SECRET, "EDGE_PUBLISH_KEY": DEMO_PUBLISHER_KEY,
           "EDGE_IMAGE_KEY": "k" * 32}
    config = await asyncio.to_thread(load_config, root, env)
    edges: list[EdgeApp] = []

    async def serve() -> TestClient[Any, Any]:
        edge = EdgeApp(config, env=env, watch=False, access_log=io.BytesIO())
        await edge.start()
        edges.append(edge)
        client = await aiohttp_client(EdgeTestServer(edge), auto_decompress=False)
        client.edge = edge
        return client

    yield config, serve
    for edge in edges:
        await edge.close()
    await stop_upstreams(ups)


def sample(route: str) -> tuple[str, str]:
    method, template = route.split(" ", 1)
    path = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], template)
    return method, path


async def test_explain_agrees_with_the_server_on_every_demo_route(demo: Any) -> None:
    config, serve = demo
    cases = []
    for spec in config.routes:
        if spec.name in SKIP or spec.method not in ("GET",):
            continue
        method, path = sample(spec.name)
        for headers in ({"Authorization": MEMBER, "X-Device-Type": "phone",
                         "Accept-Encoding": "br"},
                        {"Accept-Encoding": "gzip", "X-API-Key": DEMO_APP_KEY},
                        {"Authorization": STAFF, "Save-Data": "on"}):
            cases.append((method, path, headers))
    cases.append(("GET", "/api/v1/members/1002", {"Authorization": MEMBER}))
    cases.append(("GET", "/api/v1/claims/CLM-000197", {"Authorization": MEMBER}))
    assert len(cases) > 40
    for method, path, headers in cases:
        headers = {**headers, "X-Request-ID": "compare-1"}
        server = await serve()  # a fresh edge for each side: both start with empty caches
        served = await server.request(method, path, headers=headers, skip_auto_headers=(
            "Accept", "Accept-Encoding", "User-Agent"))
        body = await served.read()
        explainer = await serve()
        record = await explainer.edge.handler.explain(method, path, CIMultiDict(headers))
        what = f"{method} {path} {headers}"
        assert record["status"] == served.status, what
        got = {k.lower(): v for k, v in record["headers"].items()}
        for name in COMPARED:
            assert got.get(name) == served.headers.get(name), f"{what}: {name}"
        assert record["bytes"] == len(body), what


async def test_the_record_says_which_stage_refused(demo: Any) -> None:
    config, serve = demo
    edge = await serve()
    for headers, stage, status in (({}, "auth", 401),
                                   ({"Authorization": "Bearer a.b.c"}, "auth", 401)):
        record = await edge.edge.handler.explain("GET", "/api/v1/members/1002",
                                                 CIMultiDict(headers))
        stopped = [s for s in record["steps"] if "stopped" in s]
        assert [(s["stage"], s["stopped"]) for s in stopped] == [(stage, status)]
    record = await edge.edge.handler.explain("GET", "/api/v1/members/1002",
                                             CIMultiDict({"Authorization": MEMBER}))
    assert [s for s in record["steps"] if "stopped" in s][0]["problem"] == "forbidden"
    lines = render(record)
    assert lines[0].startswith("route      GET /api/v1/members/{member_id}")
    assert any(line.startswith("auth       403 forbidden") for line in lines)


async def test_explain_follows_composed_and_image_routes(demo: Any) -> None:
    config, _ = demo
    lines: list[str] = []
    code = await explain(config, "GET", "/api/v1/members/1001/dashboard?envelope=true",
                         [f"Authorization: {MEMBER}", "X-Device-Type: phone"], lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "kind composed, cached" in text and "status     200" in text
    lines.clear()
    assert await explain(config, "GET", "/img/providers/PRV-001/photos/1.jpg",
                         ["Accept: image/webp", "Sec-CH-Width: 300"], lines.append) == 0
    text = "\n".join(lines)
    assert "kind image" in text and "content-type: image/webp" in text


async def test_the_admin_explain_endpoint(demo: Any) -> None:
    _, serve = demo
    edge = await serve()
    ask = {"method": "GET", "path": "/api/v1/members/1001",
           "headers": {"Authorization": MEMBER, "X-Device-Type": "phone"}}
    r = await edge.post("/_edge/explain", json=ask)
    assert r.status == 401
    r = await edge.post("/_edge/explain", json=ask, headers={"Authorization": MEMBER})
    assert r.status == 403
    r = await edge.post("/_edge/explain", json=ask, headers={"Authorization": STAFF})
    assert r.status == 200
    record = await r.json()
    assert record["status"] == 200
    assert [s["stage"] for s in record["steps"]][:3] == ["match", "profile", "auth"]
    r = await edge.post("/_edge/explain", json={**ask, "method": "POST"},
                        headers={"Authorization": STAFF})
    assert r.status == 400


async def test_bad_input_and_dead_upstreams_are_steps_not_tracebacks(demo: Any,
                                                                     tmp_path: Path) -> None:
    from .conftest import free_port, services_yaml, write_config

    config, _ = demo
    lines: list[str] = []
    code = await explain(config, "GET", "/api/v1/members/1001?fields=items(",
                         [f"Authorization: {MEMBER}"], lines.append)
    assert code == 1
    assert any(line.startswith("negotiate  400 bad-fields") for line in lines), lines
    root = write_config(tmp_path / "dead", services_yaml(
        {"gone": f"http://127.0.0.1:{free_port()}"}),
        {"r.yaml": "route: GET /x\nsource: {service: gone, path: /x}\n"})
    lines.clear()
    dead = await asyncio.to_thread(load_config, root, {})
    assert await explain(dead, "GET", "/x", [], lines.append) == 1
    assert any(line.startswith("source     502 upstream-unreachable") for line in lines)
    assert await explain(config, "GET", "/x", ["no colon"], lines.append) == 2


async def test_the_record_follows_the_stages_down_and_the_layers_up(demo: Any) -> None:
    """Stages are recorded as the request goes down, layers as the answer comes up: the
    source first, then what shaped, kept and encoded it; a second request is a cache hit
    and nothing below the cache runs."""
    _, serve = demo
    edge = await serve()
    headers = CIMultiDict({"Authorization": MEMBER, "X-Device-Type": "phone"})
    first = await edge.edge.handler.explain("GET", "/api/v1/claims/CLM-000086", headers)
    stages = [s["stage"] for s in first["steps"]]
    assert stages[:6] == ["match", "profile", "auth", "rate-limit", "negotiate", "source"]
    assert stages.index("source") < stages.index("upstream") < stages.index("shape") \
        < stages.index("cache") < stages.index("encode") < stages.index("deliver")
    assert next(s for s in first["steps"] if s["stage"] == "cache")["result"] == "miss"
    again = await edge.edge.handler.explain("GET", "/api/v1/claims/CLM-000086", headers)
    stages = [s["stage"] for s in again["steps"]]
    assert "source" not in stages and "upstream" not in stages
    assert next(s for s in again["steps"] if s["stage"] == "cache")["result"] == "hit"
