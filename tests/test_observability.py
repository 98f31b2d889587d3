"""Metrics, health, readiness, request ids, the access log and device classes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from edge.config import Devices
from edge.context import ClientAddress, DeviceClassifier

from .conftest import (
    REDIS_URL,
    bearer,
    catch_all,
    free_port,
    headers_echo_app,
    services_yaml,
)

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


async def test_ready_checks_redis(make_edge: Any, upstream: Any, tmp_path: Any,
                                  redis_url: str) -> None:
    url = await upstream(headers_echo_app())
    client = await make_edge(services_yaml({"svc": url}), ROUTES,
                             env={"EDGE_REDIS_URL": redis_url})
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


# --------------------------------------------------------------- deploy/ observability kit
# The Grafana dashboard and the Prometheus rules under deploy/ may only name metrics and
# labels a live edge exports: an edge is driven through every event that makes a series
# (proxied, failed and unreachable upstreams, cache hits, rate-limit refusals, an event
# stream and a missed replay, an image transform and a refusal, reloads good and bad, a
# Redis that is away), and its /metrics is the reference.

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "edge-dashboard.json"
RULES = DEPLOY / "prometheus" / "edge-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "edge-alerts.test.yml"
PUBKEY = "publisher-key-" + "p" * 24
KIT_EDGE = """
auth:
  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}
events:
  topics: [{topic: "news:*", public: true}]
  publisher_keys_env: [PUBKEY]
  history: 2
push:
  webpush: {vapid_private_key_env: EDGE_VAPID_KEY, endpoints: ["http://127.0.0.1:*"]}
"""
KIT_ROUTES = """
routes:
  - route: GET /ok/{id}
    source: {service: up, path: "/ok/{id}"}
    shape: {}
  - route: GET /limited
    source: {service: up, path: /ok/1}
    rate_limit: [{name: "{limit}", key: ip, rate: 1/h, burst: 1}]
  - route: GET /cached/{id}
    source: {service: up, path: "/ok/{id}"}
    shape: {}
    cache: {scope: public, ttl: 60s}
  - route: GET /fail
    source: {service: up, path: /fail}
    shape: {}
  - route: GET /down
    source: {service: down, path: /down}
  - route: GET /img/{name}
    source: {service: up, path: "/img/{name}"}
    image: {widths: [100, 200], default: {width: 100}}
  - route: GET /ws
    source: {service: up, path: /ws}
    auth: {jwt: "off"}
    websocket: {}
"""


def _kit_image() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 120, 40)).save(out, "JPEG", quality=80)
    return out.getvalue()


def _kit_upstream() -> web.Application:
    image = _kit_image()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                await ws.send_str(msg.data)
            return ws
        if request.path == "/fail":
            return web.json_response({"error": "boom"}, status=500)
        if request.path.startswith("/img/photo"):
            return web.Response(body=image, content_type="image/jpeg")
        if request.path.startswith("/img/broken"):
            return web.Response(body=image[:300], content_type="image/jpeg")
        return web.json_response({"id": request.path.rsplit("/", 1)[1], "pad": "x" * 200})

    return catch_all(handler)


async def _scrape(client: Any) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def _live_expositions(make_edge: Any, upstream: Any, tmp_path: Path) -> list[str]:
    """/metrics of an edge (on Redis) after traffic of every kind, and of one whose Redis
    is away (Redis errors, the rate limits' degraded mode)."""
    url = await upstream(_kit_upstream())
    dead = f"http://127.0.0.1:{free_port()}"
    root = tmp_path / "kit"
    edge_yaml = services_yaml({"up": url, "down": dead}, KIT_EDGE)
    # Redis keeps rate-limit buckets and cached answers between test runs: this run's
    # own limit (a burst of 1 an hour), cache keys and images
    run = uuid.uuid4().hex[:8]
    routes = {"r.yaml": KIT_ROUTES.replace("{limit}", f"obs-kit-{run}")}
    from .push_standins.webpush import WebPushService
    from .test_push import VAPID_RAW

    pusher = WebPushService()
    push_url = await upstream(pusher.app())
    client = await make_edge(edge_yaml, routes, root=root,
                             env={"EDGE_REDIS_URL": REDIS_URL, "PUBKEY": PUBKEY,
                                  "EDGE_VAPID_KEY": VAPID_RAW})
    # a device registered for pushes
    registered = await client.post("/_edge/push/registrations", headers=bearer(f"obs-{run}"),
                                   json={"platform": "webpush", "device_id": "d1",
                                         "topics": ["news:obs"],
                                         "subscription": pusher.subscriber(
                                             f"obs-{run}").subscription(push_url)})
    assert registered.status == 201, await registered.text()
    phone = {"X-Device-Type": "phone"}
    assert (await client.get("/ok/1", headers=phone)).status == 200
    assert (await client.get("/fail")).status == 500
    assert (await client.get("/down")).status == 502
    cached = [await client.get(f"/cached/{run}") for _ in range(2)]
    assert [r.headers["Cache-Status"].split(";")[1].strip() for r in cached] == [
        "fwd=uri-miss", "hit"]
    assert [(await client.get("/limited")).status for _ in range(3)] == [200, 429, 429]
    assert (await client.get(f"/img/photo-{run}.jpg")).status == 200
    assert (await client.get(f"/img/broken-{run}.jpg")).status == 422
    # an event stream that is a reconnection the history can't answer (a miss), a publish
    stream = await client.get("/events?topic=news:obs", headers={"Last-Event-ID": "garbage"})
    assert stream.status == 200
    published = await client.post("/_edge/publish", headers={"Authorization": f"Bearer {PUBKEY}"},
                                  data=json.dumps({"topic": "news:obs", "data": {"n": 1},
                                                   "push": {"mode": "always"}}))
    assert published.status in (200, 202), await published.text()
    for _ in range(200):  # pushed to the registered device
        if pusher.received:
            break
        await asyncio.sleep(0.02)
    assert pusher.received
    # a WebSocket: a message each way, a close; and a handshake refused (a foreign page)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi"
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
    await asyncio.sleep(0.05)  # (the socket's close is counted as its relay ends)
    # a good reload, then a rejected one
    state = client.edge.state
    assert await state.reloader.reload()
    (root / "routes" / "broken.yaml").write_text("route: GET /x\nsource: {service: nope}\n")
    assert not await state.reloader.reload()
    text = await _scrape(client)
    stream.close()

    away = await make_edge(
        services_yaml({"up": url}, "rate_limits: {on_backend_failure: local}\n"),
        {"r.yaml": routes["r.yaml"].split("  - route: GET /cached")[0]},
        root=tmp_path / "away", env={"EDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert (await away.get("/limited")).status == 200
    return [text, await _scrape(away)]



# Labels Prometheus itself puts on every scraped series (the edge doesn't export them).
TARGET_LABELS = {"job", "instance"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_METRIC = re.compile(r"(?<![\w:$])(edge_[A-Za-z0-9_:]*)")
_SELECTOR = re.compile(r"(edge_[A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)
_TEMPLATE_LABEL = re.compile(r"\$labels\.([A-Za-z_]\w*)|\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: it checks and unit-tests "
                    "deploy/prometheus/edge-alerts.yml. On Debian/Ubuntu: "
                    "apt-get install -y --no-install-recommends prometheus "
                    "(ships /usr/bin/promtool)")
    return path


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{out}"
    return out


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, text) for every query in the dashboard: panel targets' `expr` (with their
    legend, whose {{label}}s must exist too) and template variables' `query`."""
    doc = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            here = f"{where} / {node['title']}" if "title" in node else where
            if "expr" in node:
                out.append((here, node["expr"] + "\n" + node.get("legendFormat", "")))
            for value in node.values():
                walk(value, here)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    walk(doc["panels"], "panel")
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            out.append((f"variable {var['name']}",
                        query["query"] if isinstance(query, dict) else query))
    return out


def _exported(expositions: list[str]) -> dict[str, set[str]]:
    """Sample name → its label names, over the scraped texts (only series that have a
    sample: a family declared by HELP/TYPE alone doesn't count)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, set()).update(sample.labels)
    return out


def _unknown(text: str, exported: dict[str, set[str]]) -> list[str]:
    """Metric and label names in one query (PromQL, parsed roughly; Grafana's label_values;
    legend and annotation templates) that the edge doesn't export."""
    problems: list[str] = []
    code = _STRING.sub('""', text)  # label values can't be mistaken for names
    wanted = _LABEL_VALUES.match(code)
    if wanted:
        code = wanted.group(1)
    metrics = set(_METRIC.findall(code))
    for name in sorted(metrics - exported.keys()):
        problems.append(f"metric {name}")
    known = set(TARGET_LABELS)
    for name in metrics & exported.keys():
        known |= exported[name]
    for name, matchers in _SELECTOR.findall(code):
        allowed = exported.get(name, set()) | TARGET_LABELS
        problems += [f"label {label} on {name}" for label in _MATCHER.findall(matchers)
                     if label not in allowed]
    labels = [label.strip() for group in _GROUPING.findall(code)
              for label in group.split(",") if label.strip()]
    labels += [a or b for a, b in _TEMPLATE_LABEL.findall(text)]
    if wanted:
        labels.append(wanted.group(2))
    problems += [f"label {label}" for label in labels if label not in known]
    return list(dict.fromkeys(problems))


def _kit_queries() -> list[tuple[str, str]]:
    """Every query of the kit: the dashboard's, the rules' (with their annotations), and
    the series the rules' unit tests feed them."""
    out = _dashboard_queries()
    for rule in _rules():
        out.append((f"rule {rule['alert']}",
                    rule["expr"] + "\n" + "\n".join(rule["annotations"].values())))
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        out += [(f"rule test {test['name']!r}", s["series"]) for s in test["input_series"]]
    return out


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = _promtool()
    out = _run(promtool, "check", "rules", RULES.name, cwd=RULES.parent)
    assert f"SUCCESS: {len(_rules())} rules found" in out, out
    out = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert "SUCCESS" in out, out


def test_every_alert_is_tested_firing_and_quiet() -> None:
    rules = _rules()
    alerts = [rule["alert"] for rule in rules]
    assert len(set(alerts)) == len(alerts)
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(alerts) - fired == set(), "alerts never tested firing"
    assert set(alerts) - quiet == set(), "alerts never tested not firing"
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys()
        anchor = rule["annotations"]["runbook"].split(":", 1)[0]
        assert anchor == f"deploy/observability.md#{rule['alert'].lower()}"
    runbooks = (DEPLOY / "observability.md").read_text()
    for alert in alerts:
        assert f"### {alert}\n" in runbooks, f"no runbook section for {alert}"


def test_dashboard_is_grafana_json_with_valid_promql(tmp_path: Path) -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] >= 39 and doc["uid"] and doc["id"] is None
    variables = {var["name"]: var for var in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"route", "device"} <= variables.keys()
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
    # promtool parses each panel query as a recording rule, Grafana's variables filled in
    fill = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*", "$route": ".*",
            "$device": ".*", "$service": ".*"}
    rules = []
    for i, (where, text) in enumerate(_dashboard_queries()):
        if where.startswith("variable"):
            continue
        expr = text.rsplit("\n", 1)[0]
        for name, value in fill.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, (where, expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = _run(_promtool(), "check", "rules", path.name, cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out, out


def test_the_name_check_catches_what_the_edge_does_not_export() -> None:
    exported = {"edge_requests_total": {"route", "device"}, "edge_x_bucket": {"le", "op"}}
    assert _unknown('sum by (route) (rate(edge_requests_total{device=~"$d"}[5m]))',
                    exported) == []
    assert _unknown('histogram_quantile(0.9, sum by (le, op) (rate(edge_x_bucket[5m])))',
                    exported) == []
    assert _unknown('rate(edge_request_total{route="edge_nope"}[5m])', exported) == [
        "metric edge_request_total", "label route on edge_request_total"]
    assert _unknown('sum by (service) (edge_requests_total{kind="x"})', exported) == [
        "label kind on edge_requests_total", "label service"]
    assert _unknown("label_values(edge_requests_total, status)", exported) == ["label status"]
    assert _unknown("edge_requests_total\n{{route}} {{method}}", exported) == ["label method"]


async def test_dashboard_and_rules_name_only_what_a_live_edge_exports(
        make_edge: Any, upstream: Any, tmp_path: Path) -> None:
    exported = _exported(await _live_expositions(make_edge, upstream, tmp_path))
    problems = [f"{where}: {problem}" for where, text in _kit_queries()
                for problem in _unknown(text, exported)]
    assert problems == [], "the kit names what the edge doesn't export:\n" + "\n".join(
        problems)
    # and the dashboard shows every series the edge exports (its own edge_*; the process
    # collector's process_* are the standard ones, shown where the dashboard needs them)
    shown = {name for _, text in _dashboard_queries()
             for name in _METRIC.findall(_STRING.sub('""', text))}
    families: dict[str, set[str]] = {}
    for name in exported:
        if name.startswith("edge_") and not name.endswith("_created"):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            families.setdefault(base, set()).add(name)
    assert sorted(base for base, names in families.items() if not names & shown) == []
