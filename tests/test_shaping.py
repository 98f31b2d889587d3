"""Shaped routes over real HTTP against the demo claims service."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import brotli
import msgpack
import orjson
import pytest
from aiohttp import web

from edge.demo.services import SERVICES

from .conftest import catch_all, services_yaml

EDGE_EXTRA = """
keymaps:
  claims-v1:
    claim_number: cn
    total_amount: ta
    approved_amount: aa
    provider: pv
    status: st
compression: {min_size: 256}
"""

ROUTES = {"claims.yaml": """
routes:
  - route: GET /claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    shape:
      fields:
        default: "*"
        phone: "id,claim_number,status,total_amount,provider(name)"
        watch: "id,status"
        slow: "id,status,total_amount"
  - route: GET /km/claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    shape:
      fields: "id,claim_number,status,total_amount,approved_amount,provider(name)"
      keymap: claims-v1
  - route: GET /list
    source: {service: claims, path: "/claims?member_id=1001"}
    shape:
      fields: "items(id,status,total_amount),page,has_more"
      prune: true
  - route: GET /odd/{what}
    source: {service: odd, path: "/{what}"}
    shape: {prune: true}
"""}


def odd_app() -> web.Application:
    doc = {"a": None, "b": "", "c": [], "d": {}, "e": {"f": None}, "g": 1}

    async def handle(request: web.Request) -> web.StreamResponse:
        what = request.match_info["tail"]
        if what == "text":
            return web.Response(text="plain words", content_type="text/plain")
        if what == "malformed":
            return web.Response(body=b'{"a": [1, 2', content_type="application/json")
        if what == "gzip":
            return web.Response(body=gzip.compress(orjson.dumps(doc)),
                                headers={"Content-Encoding": "gzip",
                                         "Content-Type": "application/json"})
        if what == "error":
            return web.json_response({"error": None}, status=500)
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    return catch_all(handle)


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    claims = await upstream(SERVICES["claims"]())
    odd = await upstream(odd_app())
    return await make_edge(services_yaml({"claims": claims, "odd": odd}, EDGE_EXTRA), ROUTES)


async def get_json(edge: Any, path: str, **headers: str) -> tuple[Any, Any]:
    resp = await edge.get(path, headers=headers)
    return resp, orjson.loads(await resp.read())


async def test_projection_per_device_class(edge: Any) -> None:
    _, full = await get_json(edge, "/claims/CLM-000001")
    assert "items" in full and "history" in full
    resp, phone = await get_json(edge, "/claims/CLM-000001", **{"X-Device-Type": "phone"})
    assert set(phone) == {"id", "claim_number", "status", "total_amount", "provider"}
    assert set(phone["provider"]) == {"name"}
    assert "X-Device-Type" in resp.headers["Vary"]
    _, watch = await get_json(edge, "/claims/CLM-000001", **{"X-Device-Type": "watch"})
    assert set(watch) == {"id", "status"}
    # Save-Data makes the network class `slow`, which wins over the device class
    _, slow = await get_json(edge, "/claims/CLM-000001",
                             **{"X-Device-Type": "phone", "Save-Data": "on"})
    assert set(slow) == {"id", "status", "total_amount"}


async def test_client_may_narrow_but_never_widen(edge: Any) -> None:
    _, doc = await get_json(edge, "/claims/CLM-000001?fields=id,provider(name,location)",
                            **{"X-Device-Type": "phone"})
    assert doc == {"id": "CLM-000001", "provider": {"name": doc["provider"]["name"]}}
    _, doc = await get_json(edge, "/claims/CLM-000001?fields=items", **{"X-Device-Type": "phone"})
    assert doc == {}


@pytest.mark.parametrize("fields", ["id,(", "id,,status", "a(b", "a)"])
async def test_broken_fields_is_400_with_position(edge: Any, fields: str) -> None:
    resp = await edge.get("/claims/CLM-000001", params={"fields": fields})
    assert resp.status == 400
    problem = await resp.json(content_type=None)
    assert problem["type"] == "urn:edge:problem:bad-fields"
    assert isinstance(problem["position"], int)
    assert "position" in problem["detail"]


async def test_keymap_shortens_and_can_be_turned_off(edge: Any) -> None:
    resp, doc = await get_json(edge, "/km/claims/CLM-000001")
    assert resp.headers["X-Edge-Keymap"] == "claims-v1"
    assert {"cn", "ta", "st", "pv"} <= set(doc) and "claim_number" not in doc
    resp, doc = await get_json(edge, "/km/claims/CLM-000001?keymap=none")
    assert resp.headers["X-Edge-Keymap"] == "none"
    assert "claim_number" in doc
    _, doc = await get_json(edge, "/km/claims/CLM-000001", **{"X-Edge-Keymap": "none"})
    assert "claim_number" in doc


async def test_keymap_is_published_with_a_long_cache_life(edge: Any) -> None:
    resp = await edge.get("/_edge/keymaps/claims-v1")
    assert resp.status == 200
    assert "immutable" in resp.headers["Cache-Control"]
    doc = await resp.json()
    assert doc["keys"]["claim_number"] == "cn" and doc["expand"]["cn"] == "claim_number"
    assert (await edge.get("/_edge/keymaps/nope")).status == 404


async def test_prune_drops_empty_values(edge: Any) -> None:
    _, doc = await get_json(edge, "/odd/plain")
    assert doc == {"g": 1}


async def test_list_route_projection_and_prune(edge: Any) -> None:
    _, doc = await get_json(edge, "/list")
    assert set(doc) == {"items", "page", "has_more"}
    assert all(set(item) <= {"id", "status", "total_amount"} for item in doc["items"])


async def test_msgpack_and_406(edge: Any) -> None:
    resp = await edge.get("/claims/CLM-000001", headers={"Accept": "application/msgpack"})
    assert resp.headers["Content-Type"] == "application/msgpack"
    assert msgpack.unpackb(await resp.read())["id"] == "CLM-000001"
    resp = await edge.get("/claims/CLM-000001", headers={"Accept": "text/html"})
    assert resp.status == 406
    assert (await resp.json(content_type=None))["type"] == "urn:edge:problem:not-acceptable"


@pytest.mark.parametrize("accept, coding", [
    ("br, gzip", "br"),
    ("br;q=0, gzip", "gzip"),
    ("gzip;q=0.5, br;q=0.9", "br"),
    ("identity", None),
    (None, None),
])
async def test_compression_follows_accept_encoding(edge: Any, accept: str | None,
                                                   coding: str | None) -> None:
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    skip = () if accept is not None else ("Accept-Encoding",)
    resp = await edge.get("/claims/CLM-000001", headers=headers, auto_decompress=False,
                          skip_auto_headers=skip)
    assert resp.headers.get("Content-Encoding") == coding
    raw = await resp.read()
    body = {"br": brotli.decompress, "gzip": gzip.decompress, None: bytes}[coding](raw)
    assert orjson.loads(body)["id"] == "CLM-000001"
    assert "Accept-Encoding" in resp.headers["Vary"]


async def test_small_bodies_are_not_compressed(edge: Any) -> None:
    resp = await edge.get("/claims/CLM-000001", headers={"Accept-Encoding": "br",
                                                         "X-Device-Type": "watch"},
                          auto_decompress=False)
    assert "Content-Encoding" not in resp.headers


async def test_unshapeable_upstream_bodies_pass_through(edge: Any) -> None:
    resp = await edge.get("/odd/text")
    assert await resp.text() == "plain words"
    assert resp.headers["X-Edge-Shaped"] == "skipped; reason=not-json"
    resp = await edge.get("/odd/malformed")
    assert resp.status == 200
    assert await resp.read() == b'{"a": [1, 2'
    assert resp.headers["X-Edge-Shaped"] == "skipped; reason=malformed-json"
    resp = await edge.get("/odd/error")
    assert resp.status == 500
    assert resp.headers["X-Edge-Shaped"] == "skipped; reason=status"
    metrics = await (await edge.get("/metrics")).text()
    assert ('edge_shaping_skipped_total{reason="malformed-json",route="GET /odd/{what}"} 1.0'
            in metrics)


async def test_gzip_encoded_upstream_json_is_decoded_and_shaped(edge: Any) -> None:
    _, doc = await get_json(edge, "/odd/gzip")
    assert doc == {"g": 1}


async def test_savings_are_counted_per_route_and_device(edge: Any) -> None:
    await edge.get("/claims/CLM-000001", headers={"X-Device-Type": "phone"})
    text = await (await edge.get("/metrics")).text()
    labels = 'device="phone",route="GET /claims/{claim_id}"'
    up = float(text.split(f"edge_shaped_upstream_bytes_total{{{labels}}} ")[1].split()[0])
    sent = float(text.split(f"edge_shaped_sent_bytes_total{{{labels}}} ")[1].split()[0])
    assert sent < up / 3


@pytest.mark.parametrize("depth, reason", [(65, "too-deep"), (900, "too-deep"),
                                           (3000, "too-deep")])
async def test_deep_json_is_relayed_not_a_500(make_edge: Any, upstream: Any, depth: int,
                                               reason: str) -> None:
    deep = b"[" * depth + b"1" + b"]" * depth

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=deep, content_type="application/json")

    url = await upstream(catch_all(handle))
    client = await make_edge(services_yaml({"deep": url}), {"r.yaml": """
route: GET /deep
source: {service: deep, path: /deep}
shape: {prune: true, fields: "*"}
"""})
    resp = await client.get("/deep")
    assert resp.status == 200
    assert resp.headers["X-Edge-Shaped"] == f"skipped; reason={reason}"
    assert await resp.read() == deep


async def test_round_and_columnar(make_edge: Any, upstream: Any) -> None:
    doc = {"items": [{"claim_number": "A", "ratio": 0.123456, "at": "2026-03-14T09:21:07Z"},
                     {"claim_number": "B", "ratio": 2.5, "at": "2026-03-15T10:00:59Z",
                      "extra": 1}]}

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    url = await upstream(catch_all(handle))
    client = await make_edge(services_yaml({"s": url}, "keymaps: {k-v1: {claim_number: cn}}\n"),
                             {"r.yaml": """
route: GET /c
source: {service: s, path: /c}
shape:
  round: {floats: 2, timestamps: minute}
  keymap: k-v1
  columnar: [items]
"""})
    body = orjson.loads(await (await client.get("/c")).read())
    assert body == {"items": {"_k": ["cn", "ratio", "at", "extra"],
                              "_d": [["A", 0.12, "2026-03-14T09:21Z", None],
                                     ["B", 2.5, "2026-03-15T10:00Z", 1]]}}


ENVELOPE_ROUTES = {"e.yaml": """
routes:
  - route: GET /e/claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    shape:
      fields: "id,status"
      envelope: {when: on_request, api_version: "2.1"}
  - route: GET /always/claims/{claim_id}
    source: {service: claims, path: "/claims/{claim_id}"}
    auth: {jwt: required}
    shape:
      envelope: {when: always}
"""}


async def test_envelope_on_request_and_for_problems(make_edge: Any, upstream: Any) -> None:
    claims = await upstream(SERVICES["claims"]())
    client = await make_edge(services_yaml({"claims": claims}, """
auth:
  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}
"""), ENVELOPE_ROUTES)
    plain = orjson.loads(await (await client.get("/e/claims/CLM-000001")).read())
    assert plain == {"id": "CLM-000001", "status": plain["status"]}
    resp = await client.get("/e/claims/CLM-000001?envelope=true")
    wrapped = orjson.loads(await resp.read())
    assert wrapped["success"] is True and wrapped["data"] == plain
    meta = wrapped["metadata"]
    assert meta["api_version"] == "2.1" and meta["data_sources"] == ["claims"]
    assert meta["cached"] is False and meta["response_time_ms"] >= 0
    assert "X-Edge-Envelope" in resp.headers["Vary"]
    header = orjson.loads(await (await client.get(
        "/e/claims/CLM-000001", headers={"X-Edge-Envelope": "true"})).read())
    assert header["success"] is True
    # problems come in the envelope too, with their status, as plain JSON
    bad = await client.get("/e/claims/CLM-000001?envelope=1&fields=(")
    assert bad.status == 400 and bad.headers["Content-Type"] == "application/json"
    body = orjson.loads(await bad.read())
    assert body["success"] is False and body["error"]["type"].endswith("bad-fields")
    denied = await client.get("/always/claims/CLM-000001")
    assert denied.status == 401
    body = orjson.loads(await denied.read())
    assert body["success"] is False and body["error"]["status"] == 401


PAGE_ROUTES = {"p.yaml": """
routes:
  - route: GET /members/{member_id}/claims
    source: {service: claims, path: "/claims?member_id={member_id}"}
    shape:
      fields: "items(id,status)"
      keymap: claims-v1
      paginate:
        default_size: 10
        max_size: 50
        max_by_device: {watch: 3}
        total: total
  - route: GET /bare/{member_id}/claims
    source: {service: claims, path: "/claims?member_id={member_id}"}
    shape:
      paginate: {upstream: {page: page, size: size}}
"""}


async def test_pagination_clamps_and_links(make_edge: Any, upstream: Any) -> None:
    claims = await upstream(SERVICES["claims"]())
    client = await make_edge(services_yaml({"claims": claims}, EDGE_EXTRA), PAGE_ROUTES)
    resp = await client.get("/members/1001/claims?page=2&size=500&keep=me")
    doc = orjson.loads(await resp.read())
    assert len(doc["items"]) == 50  # clamped to max_size
    assert doc["hasMore"] is True
    assert doc["next"].startswith("/members/1001/claims?")
    assert "page=3" in doc["next"] and "size=50" in doc["next"] and "keep=me" in doc["next"]
    link = resp.headers["Link"]
    assert 'rel="next"' in link and 'rel="prev"' in link and 'rel="first"' in link
    assert "page=1" in link
    watch = await client.get("/members/1001/claims", headers={"X-Device-Type": "watch"})
    wdoc = orjson.loads(await watch.read())
    assert len(wdoc["items"]) == 3 and "X-Device-Type" in watch.headers["Vary"]
    # the last page says so
    last = orjson.loads(await (await client.get("/members/1001/claims?size=50&page=99")).read())
    assert last["items"] == [] and last["hasMore"] is False and last["next"] is None


async def test_pagination_without_total_uses_page_fullness(make_edge: Any,
                                                          upstream: Any) -> None:
    claims = await upstream(SERVICES["claims"]())
    client = await make_edge(services_yaml({"claims": claims}, EDGE_EXTRA), PAGE_ROUTES)
    doc = orjson.loads(await (await client.get("/bare/1001/claims?size=5")).read())
    assert len(doc["items"]) == 5 and doc["hasMore"] is True
    assert doc["next"] == "/bare/1001/claims?size=5&page=2"


async def test_explain_prints_every_step(upstream: Any, tmp_path: Any) -> None:
    from edge.config import load_config
    from edge.explain import explain

    from .conftest import write_config

    claims = await upstream(SERVICES["claims"]())
    root = write_config(tmp_path / "x", services_yaml({"claims": claims, "odd": claims},
                                                      EDGE_EXTRA), ROUTES)
    lines: list[str] = []
    config = await asyncio.to_thread(load_config, root, {})
    code = await explain(config, "GET", "/km/claims/CLM-000001",
                         ["X-Device-Type: phone", "Accept-Encoding: br"], lines.append)
    text = "\n".join(lines)
    assert code == 0
    assert "route      GET /km/claims/{claim_id}" in text
    assert "device     phone / network unknown" in text
    for step in ("parsed", "fields", "keymap", "json", "on the wire"):
        assert any(line.startswith(step) for line in lines), step
    assert any(line.startswith(("br", "identity")) for line in lines)
    print("\n".join(lines))
    lines.clear()
    assert await explain(config, "GET", "/nowhere", [], lines.append) == 1
    assert lines[0] == "match      404 not-found: no route for GET /nowhere"
    assert "status     404" in lines


async def test_cursor_pagination(make_edge: Any, upstream: Any) -> None:
    async def handle(request: web.Request) -> web.Response:
        start = int(request.query.get("after", "0"))
        limit = int(request.query["limit"])
        items = [{"id": i} for i in range(start, min(start + limit, 12))]
        nxt = str(start + limit) if start + limit < 12 else None
        return web.Response(body=orjson.dumps({"data": items, "meta": {"next": nxt}}),
                            content_type="application/json")

    url = await upstream(catch_all(handle))
    client = await make_edge(services_yaml({"s": url}), {"r.yaml": """
route: GET /feed
source: {service: s, path: /feed}
shape:
  paginate:
    style: cursor
    upstream: {cursor: after, size: limit}
    items: data
    next_cursor: meta/next
    default_size: 5
"""})
    resp = await client.get("/feed")
    doc = orjson.loads(await resp.read())
    assert [x["id"] for x in doc["data"]] == [0, 1, 2, 3, 4]
    assert doc["hasMore"] is True and doc["next"] == "/feed?size=5&cursor=5"
    assert resp.headers["Link"] == '</feed?size=5&cursor=5>; rel="next"'
    doc = orjson.loads(await (await client.get(doc["next"])).read())
    assert [x["id"] for x in doc["data"]] == [5, 6, 7, 8, 9]
    last = orjson.loads(await (await client.get("/feed?cursor=10&size=5")).read())
    assert [x["id"] for x in last["data"]] == [10, 11]
    assert last["hasMore"] is False and last["next"] is None


@pytest.mark.parametrize("body, limit, deep", [
    (b'{"a": [1, {"b": [2]}]}', 4, False),
    (b'{"a": [1, {"b": [2]}]}', 3, True),
    (b'[' * 64 + b']' * 64, 64, False),
    (b'[' * 65 + b']' * 65, 64, True),
    (b'{"s": "]]]]"}', 2, False),  # brackets in strings don't count
    (b'[[[{"s": "[[[["}]]]', 4, False),
    (b'[[[{"s": "[[[["}]]]', 3, True),
    (b'{"s": "\\"[[[["}', 2, False),
])
def test_depth_is_checked_on_the_bytes(body: bytes, limit: int, deep: bool) -> None:
    from edge.shaping import too_deep

    assert too_deep(body, limit) is deep


async def test_over_long_fields_is_400(edge: Any) -> None:
    resp = await edge.get("/claims/CLM-000001", params={"fields": "a," * 600 + "b"})
    assert resp.status == 400
    problem = await resp.json(content_type=None)
    assert problem["detail"] == "fields: selection is longer than 1024 characters"
    assert problem["position"] == 1024


async def test_a_broken_fields_costs_the_upstream_nothing(make_edge: Any,
                                                          upstream: Any) -> None:
    """`fields=` is parsed when the request is negotiated, before the upstream call: a
    bad one is refused without asking the upstream for a document it can't shape."""
    calls: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.path_qs)
        return web.json_response({"id": 1, "name": "x"})

    up = await upstream(catch_all(handle))
    edge = await make_edge(services_yaml({"up": up}), {"r.yaml": (
        "route: GET /doc\nsource: {service: up, path: /doc}\nshape: {fields: '*'}\n")})
    resp = await edge.get("/doc", params={"fields": "id,("})
    assert resp.status == 400 and calls == []
    resp = await edge.get("/doc", params={"fields": "id"})
    assert resp.status == 200 and await resp.json() == {"id": 1} and calls == ["/doc"]
