"""The policy playground's page and JSON calls (edge/playground): who may use them, a route
run for several devices through the serving pipeline (byte counts equal to what a plain
client gets), an edited route checked with its errors at the editor's line and column, and
previewed in a sandbox without touching the serving config."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from edge.cli import DEMO_SECRET
from edge.config import ConfigError, load_config
from edge.playground import route_block

from .conftest import bearer, services_yaml, write_config

CLAIMS = [{"id": f"C{i}", "claim_number": f"KLM-{i:04}", "status": "paid",
           "total_amount": 100 * i, "member_id": "1001", "notes": "x" * 40}
          for i in range(1, 6)]

AUTH = """
auth:
  jwt:
    algorithms: [HS256]
    secret_env: EDGE_JWT_SECRET
keymaps:
  claims-v1: {claim_number: cn, total_amount: ta}
admin:
  playground: true
"""

ROUTES = {"r.yaml": """\
routes:
  # a member's claims
  - route: GET /api/members/{member_id}/claims
    example: /api/members/1001/claims?size=5
    source: {service: claims, path: /claims}
    auth:
      jwt: required
    shape:
      fields:
        phone: "id,status"
      keymap: claims-v1
    rate_limit: []

  - route: GET /api/members/{member_id}/home
    sources:
      member: {service: claims, path: "/members/{member_id}"}
      plan: {service: claims, path: "/plans/{member.plan}"}
    rate_limit: []

  - route: GET /img/{name}.png
    source: {service: claims, path: "/img/{name}.png"}
    image: {by_device: {phone: {width: 320}}}
    rate_limit: []
"""}


def claims_app() -> web.Application:
    async def claims(_: web.Request) -> web.Response:
        return web.json_response(CLAIMS)

    async def member(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "plan": "gold"})

    async def plan(request: web.Request) -> web.Response:
        return web.json_response({"name": request.match_info["name"], "limit": 5000})

    async def image(_: web.Request) -> web.Response:
        out = io.BytesIO()
        Image.new("RGB", (640, 480), (200, 40, 40)).save(out, "PNG")
        return web.Response(body=out.getvalue(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/claims", claims)
    app.router.add_get("/members/{id}", member)
    app.router.add_get("/plans/{name}", plan)
    app.router.add_get("/img/{name}.png", image)
    return app


ADMIN = bearer("staff", ["admin"])
API = "/_edge/playground/api/"
CLAIMS_ROUTE = "GET /api/members/{member_id}/claims"


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(claims_app())
    return await make_edge(services_yaml({"claims": url}, AUTH), ROUTES)


async def call(edge: Any, name: str, doc: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> Any:
    h = {**ADMIN, **(headers or {})}
    if doc is None:
        return await edge.get(API + name, headers=h)
    return await edge.post(API + name, json=doc, headers=h)


async def routes(edge: Any) -> dict[str, Any]:
    resp = await call(edge, "routes")
    assert resp.status == 200, await resp.text()
    return {r["name"]: r for r in (await resp.json())["routes"]}


async def test_off_unless_enabled(make_edge: Any, upstream: Any) -> None:
    url = await upstream(claims_app())
    edge = await make_edge(services_yaml({"claims": url}, AUTH.replace(
        "playground: true", "playground: false")), ROUTES)
    for path in ("/_edge/playground", API + "routes"):
        assert (await edge.get(path, headers=ADMIN)).status == 404


async def test_the_page_is_static_and_cannot_be_framed(edge: Any) -> None:
    resp = await edge.get("/_edge/playground")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    assert "/_edge/playground/app.js" in page and "<script>" not in page
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        got = await edge.get(f"/_edge/playground/{asset}")
        assert got.status == 200 and got.headers["Content-Type"].startswith(kind)


async def test_admin_networks_only(make_edge: Any, upstream: Any) -> None:
    url = await upstream(claims_app())
    edge = await make_edge(services_yaml({"claims": url}, AUTH.replace(
        "playground: true", "playground: true\n  metrics_allow: [10.0.0.0/8]")), ROUTES)
    for path in ("/_edge/playground", API + "routes"):
        resp = await edge.get(path, headers=ADMIN)
        assert resp.status == 403
        assert resp.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(("headers", "status"), [
    ({"Authorization": ""}, 401),
    (bearer("1001"), 403),  # a member, not staff
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Origin": "https://evil.example"}, 403),
])
async def test_calls_need_staff_and_the_same_origin(edge: Any, headers: dict[str, str],
                                                    status: int) -> None:
    h = {**ADMIN, **headers}
    if not h["Authorization"]:
        del h["Authorization"]
    resp = await edge.get(API + "routes", headers=h)
    assert resp.status == status, await resp.text()


async def test_a_form_cannot_post_a_call(edge: Any) -> None:
    resp = await edge.post(API + "run", data="route=x", headers={
        **ADMIN, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415


async def test_routes_come_with_their_yaml_and_where(edge: Any) -> None:
    listed = await routes(edge)
    claims = listed[CLAIMS_ROUTE]
    assert claims["where"] == "routes/r.yaml:3"
    assert claims["params"] == ["member_id"] and claims["kind"] == "shaped"
    assert claims["example"] == "/api/members/1001/claims?size=5"
    assert claims["yaml"].startswith("  - route: GET /api/members/{member_id}/claims\n")
    assert claims["yaml"].endswith("    rate_limit: []\n")  # not the next route's lines
    assert claims["yaml_line"] == 3 and claims["runnable"]
    assert listed["GET /api/members/{member_id}/home"]["kind"] == "composed"
    assert listed["GET /img/{name}.png"]["kind"] == "image"


async def test_a_run_shows_what_each_device_gets_on_the_wire(edge: Any) -> None:
    member = bearer("1001")["Authorization"].removeprefix("Bearer ")
    resp = await call(edge, "run", {
        "route": CLAIMS_ROUTE, "path": "/api/members/1001/claims",
        "devices": ["phone", "desktop"], "headers": {"Accept-Encoding": "br"},
        "identity": {"token": member}})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["preview"] is None and doc["problems"] is None
    phone, desktop = doc["live"]
    assert phone["device"] == "phone" and phone["status"] == 200
    sizes = [{s["stage"]: s["bytes"] for s in r["stages"]} for r in (phone, desktop)]
    assert sizes[0]["json"] < sizes[1]["json"]  # (the phone's is too small to compress)
    assert desktop["headers"]["Content-Encoding"] == "br"
    assert phone["body"]["kind"] == "json" and '"status": "paid"' in phone["body"]["text"]
    assert '"cn": "KLM-0001"' in desktop["body"]["text"]  # decoded from br, keymapped
    assert phone["keymap"] == {"name": "claims-v1",
                               "keys": {"claim_number": "cn", "total_amount": "ta"}}
    stages = [s["stage"] for s in phone["stages"]]
    assert stages[0] == "upstream" and stages[-1] == "wire" and "fields" in stages
    assert phone["stages"][-1]["bytes"] == phone["bytes"]
    for result in (phone, desktop):  # what a plain client gets with the same headers
        plain = await edge.get("/api/members/1001/claims", headers={
            "Authorization": f"Bearer {member}", "Accept-Encoding": "br",
            "X-Device-Type": result["device"]}, auto_decompress=False)
        assert plain.status == 200
        assert len(await plain.read()) == result["bytes"]


async def test_a_composed_route_shows_its_sources_in_time(edge: Any) -> None:
    resp = await call(edge, "run", {"route": "GET /api/members/{member_id}/home",
                                    "path": "/api/members/1001/home", "devices": ["phone"]})
    (result,) = (await resp.json())["live"]
    member, plan = result["sources"]
    assert member["name"] == "member" and member["after"] == [] and member["ok"]
    assert plan["after"] == ["member"] and plan["start_ms"] >= member["end_ms"]


async def test_an_image_route_shows_the_image(edge: Any) -> None:
    resp = await call(edge, "run", {"route": "GET /img/{name}.png", "path": "/img/a.png",
                                    "devices": ["phone"],
                                    "headers": {"Accept": "image/webp"}})
    (result,) = (await resp.json())["live"]
    body = result["body"]
    assert result["status"] == 200 and body["kind"] == "image" and body["format"] == "webp"
    assert body["data_url"].startswith("data:image/webp;base64,")
    assert (body["width"], body["height"]) == (320, 240)


async def test_a_typo_is_placed_at_its_line_and_column_in_the_editor(edge: Any) -> None:
    yaml = (await routes(edge))[CLAIMS_ROUTE]["yaml"]
    typo = yaml.replace("      keymap: claims-v1", "      kaymap: claims-v1")
    resp = await call(edge, "check", {"route": CLAIMS_ROUTE, "yaml": typo})
    doc = await resp.json()
    assert doc["ok"] is False
    (problem,) = doc["problems"]
    line = typo.splitlines().index("      kaymap: claims-v1") + 1
    assert (problem["line"], problem["col"]) == (line, 7)
    assert "kaymap" in problem["message"] and "unknown key" in problem["message"]
    broken = yaml.replace('phone: "id,status"', 'phone: "id,status')
    doc = await (await call(edge, "check", {"route": CLAIMS_ROUTE, "yaml": broken})).json()
    (problem,) = doc["problems"]  # an unclosed quote: where it begins is said
    assert problem["line"] is not None and "quoted scalar at line" in problem["message"]
    doc = await (await call(edge, "check", {"route": CLAIMS_ROUTE, "yaml": yaml})).json()
    assert doc == {"ok": True, "problems": []}


async def test_a_preview_runs_the_edit_without_serving_it(edge: Any,
                                                          tmp_path: Path) -> None:
    route_file = tmp_path / "config" / "routes" / "r.yaml"
    before = route_file.read_text()
    yaml = (await routes(edge))[CLAIMS_ROUTE]["yaml"]
    edited = yaml.replace('phone: "id,status"', 'phone: "id,status,total_amount"')
    member = bearer("1001")["Authorization"].removeprefix("Bearer ")
    request = {"route": CLAIMS_ROUTE, "path": "/api/members/1001/claims",
               "devices": ["phone"], "identity": {"token": member}}
    doc = await (await call(edge, "run", {**request, "yaml": edited})).json()
    (live,), (preview,) = doc["live"], doc["preview"]
    assert doc["problems"] is None
    assert '"ta": 100' in preview["body"]["text"] and '"ta"' not in live["body"]["text"]
    assert preview["diff"]["bytes"] == preview["bytes"] - live["bytes"] > 0
    assert '+    "ta": 100' in preview["diff"]["text"]
    # nothing applied: the file and the serving route are as they were
    assert route_file.read_text() == before
    again = await (await call(edge, "run", request)).json()
    assert again["live"][0]["body"]["text"] == live["body"]["text"]
    # an edit that does not load is its problems, not a preview
    doc = await (await call(edge, "run", {**request, "yaml": edited.replace(
        "shape:", "shap:")})).json()
    assert doc["preview"] is None and doc["problems"][0]["line"] is not None


async def test_claims_are_minted_only_with_the_demo_secret(make_edge: Any,
                                                           upstream: Any) -> None:
    url = await upstream(claims_app())
    request = {"route": CLAIMS_ROUTE, "path": "/api/members/1001/claims",
               "devices": ["phone"], "identity": {"claims": {"sub": "1001"}}}
    edge = await make_edge(services_yaml({"claims": url}, AUTH), ROUTES)
    assert (await call(edge, "run", request)).status == 403
    assert (await edge.post(API + "demo-token", json={})).status == 404
    demo = await make_edge(services_yaml({"claims": url}, AUTH), ROUTES,
                           env={"EDGE_JWT_SECRET": DEMO_SECRET})
    resp = await demo.post(API + "demo-token", json={"roles": ["admin"]})
    token = (await resp.json())["token"]
    resp = await call(demo, "run", request, {"Authorization": f"Bearer {token}"})
    assert (await resp.json())["live"][0]["status"] == 200


def test_a_route_block_is_its_list_item() -> None:
    text = ("routes:\n  - route: GET /a\n    source: {service: s, path: /a}\n\n"
            "  # the next one\n  - route: GET /b\n    source: {service: s, path: /b}\n")
    assert route_block(text, 2) == ("  - route: GET /a\n    source: {service: s, "
                                    "path: /a}\n", 2, 4)
    assert route_block(text, 6)[0].startswith("  - route: GET /b")
    single = "route: GET /a\nsource: {service: s, path: /a}\n"
    assert route_block(single, 1) == (single, 1, 3)


def test_a_route_s_example_must_be_a_path_it_answers(tmp_path: Path) -> None:
    routes = {"r.yaml": ROUTES["r.yaml"].replace("example: /api/members/1001/claims?size=5",
                                                  "example: /api/member/1001/claims")}
    root = write_config(tmp_path / "c", services_yaml({"claims": "http://127.0.0.1:1"},
                                                      AUTH), routes)
    with pytest.raises(ConfigError) as e:
        load_config(root, {"EDGE_JWT_SECRET": DEMO_SECRET})
    (problem,) = e.value.problems
    assert problem.endswith("r.yaml:4:14: error: GET /api/members/{member_id}/claims: "
                            "example '/api/member/1001/claims' is not a path this route "
                            "answers")
