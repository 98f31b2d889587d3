"""The edge cache over real HTTP: ETags and 304s, fresh/stale/revalidated entries,
coalescing, private answers, CDN headers, purges (also across instances), deltas."""

from __future__ import annotations

import asyncio
import re
import time
from email.utils import formatdate
from typing import Any

import brotli
import json_merge_patch
import jsonpatch
import orjson
import pytest
from aiohttp import web

from .conftest import FakeClock, catch_all, free_port, services_yaml
from .test_auth import AUTH, bearer, token

ROUTES = {"r.yaml": """
routes:
  - route: GET /public/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
    cache:
      scope: public
      ttl: 60s
      s_maxage: 10m
      stale_while_revalidate: 30s
      surrogate_control: true
      tags: ["doc:{id}", docs]
      tag_headers: [Surrogate-Key, Cache-Tag]
  - route: GET /short/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
    cache: {scope: public, ttl: 1s, stale_while_revalidate: 30s, tags: ["doc:{id}"]}
  - route: GET /fragile/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
    cache: {scope: public, ttl: 1s, stale_if_error: 1h}
  - route: GET /revalidate/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
    cache: {scope: public, ttl: 1s}
  - route: GET /mine
    source: {service: up, path: "/me"}
    auth: {jwt: required}
    shape:
      fields: {phone: "sub", default: "*"}
    cache: {ttl: 60s, tags: ["user"]}
  - route: GET /uncached/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
  - route: GET /override/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    shape: {}
    cache: {scope: public, ttl: 60s, override_upstream: true}
  - route: POST /doc/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
    invalidates: ["doc:{id}"]
  - route: GET /pass/{id}
    source: {service: up, path: "/doc/{id}"}
    auth: {jwt: off}
"""}
IDENTITY = {"Accept-Encoding": "identity"}  # aiohttp's client asks for br/gzip by default
EXTRA = AUTH + """
devices:
  user_agent:
    - {pattern: "iPhone", device: phone}
"""


class Upstream:
    """Documents with versions, validators and knobs, counting what reaches it."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.version = 1
        self.fail = False
        self.delay = 0.0
        self.not_modified = 0

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            self.hits[request.path] = self.hits.get(request.path, 0) + 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                return web.json_response({"error": "down"}, status=503)
            if request.method == "POST":
                self.version += 1
                return web.json_response({"ok": True})
            if request.path == "/me":
                sub = request.headers.get("X-Edge-Subject")
                return web.json_response({"sub": sub, "secret": f"only for {sub}"})
            etag = f'"v{self.version}"'
            if request.headers.get("If-None-Match") == etag:
                self.not_modified += 1
                return web.Response(status=304, headers={"ETag": etag})
            doc = {"id": request.path.rsplit("/", 1)[1], "version": self.version,
                   "items": [{"n": i, "label": f"item {i}"} for i in range(40)]}
            headers = {"ETag": etag, "Last-Modified": formatdate(1_700_000_000, usegmt=True)}
            q = request.query
            if "cc" in q:
                headers["Cache-Control"] = q["cc"]
            if "cookie" in q:
                headers["Set-Cookie"] = "session=abc"
            return web.json_response(doc, headers=headers)

        return catch_all(handler)


@pytest.fixture
async def up(upstream: Any) -> tuple[Upstream, str]:
    u = Upstream()
    return u, await upstream(u.app())


@pytest.fixture
async def edge(make_edge: Any, up: tuple[Upstream, str], clock: FakeClock) -> Any:
    return await make_edge(services_yaml({"up": up[1]}, EXTRA), ROUTES, clock=clock)


async def test_shaped_answers_carry_a_strong_etag_and_304_when_held(edge: Any) -> None:
    resp = await edge.get("/uncached/1", headers=IDENTITY)
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    body = await resp.read()
    br = await edge.get("/uncached/1", headers={"Accept-Encoding": "br"},
                        auto_decompress=False)
    br_etag = br.headers["ETag"]
    assert br.headers["Content-Encoding"] == "br" and br_etag != etag  # its own validator
    assert brotli.decompress(await br.read()) == body
    for held in (etag, br_etag, f"W/{etag}", f'"nope", {br_etag}', "*"):
        again = await edge.get("/uncached/1", headers={**IDENTITY, "If-None-Match": held})
        assert again.status == 304, held
        assert await again.read() == b""
        assert again.headers["ETag"] == etag and "Vary" in again.headers
        assert "Content-Type" not in again.headers
    miss = await edge.get("/uncached/1", headers={"If-None-Match": '"other"'})
    assert miss.status == 200


async def test_if_modified_since_uses_the_upstream_last_modified(edge: Any) -> None:
    later = formatdate(1_800_000_000, usegmt=True)
    earlier = formatdate(1_600_000_000, usegmt=True)
    assert (await edge.get("/public/1", headers={"If-Modified-Since": later})).status == 304
    assert (await edge.get("/public/1", headers={"If-Modified-Since": earlier})).status == 200
    both = await edge.get("/public/1", headers={"If-Modified-Since": later,
                                                 "If-None-Match": '"x"'})
    assert both.status == 200  # If-None-Match wins


async def test_pass_through_forwards_the_upstream_validators(edge: Any) -> None:
    resp = await edge.get("/pass/1", headers=IDENTITY)
    assert resp.headers["ETag"] == '"v1"'
    assert (await edge.get("/pass/1", headers={"If-None-Match": '"v1"'})).status == 304
    gz = await edge.get("/pass/1", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert gz.headers["Content-Encoding"] == "gzip" and gz.headers["ETag"] == 'W/"v1"'


async def test_a_fresh_hit_never_reaches_the_upstream(edge: Any, up: tuple[Upstream, str]
                                                     ) -> None:
    first = await edge.get("/public/7")
    assert first.headers["Cache-Status"] == "edge; fwd=uri-miss; stored"
    body = await first.read()
    for _ in range(5):
        hit = await edge.get("/public/7")
        assert await hit.read() == body
        assert hit.headers["Cache-Status"].startswith("edge; hit; ttl=")
        assert hit.headers["ETag"] == first.headers["ETag"]
    assert up[0].hits["/doc/7"] == 1
    metrics = await (await edge.get("/metrics")).text()
    assert 'edge_cache_results_total{result="hit",route="GET /public/{id}"} 5.0' in metrics
    held = await edge.get("/public/7", headers={"If-None-Match": first.headers["ETag"]})
    assert held.status == 304 and held.headers["Cache-Status"].startswith("edge; hit")
    assert up[0].hits["/doc/7"] == 1
    # variants are entries of their own, and compressed once
    br = await edge.get("/public/7", headers={"Accept-Encoding": "br"}, auto_decompress=False)
    assert brotli.decompress(await br.read()) == body


async def test_cdn_headers_for_public_answers(edge: Any, clock: FakeClock) -> None:
    resp = await edge.get("/public/3")
    assert resp.headers["Cache-Control"] == (
        "public, max-age=60, s-maxage=600, stale-while-revalidate=30")
    assert resp.headers["Surrogate-Control"] == "max-age=600"
    assert resp.headers["Surrogate-Key"] == "doc:3 docs"
    assert resp.headers["Cache-Tag"] == "doc:3,docs"
    clock.advance(1.1)
    hit = await edge.get("/public/3")
    assert hit.headers["Age"] == "1"


class Cdn:
    """What a CDN does with our headers: keep public answers for s-maxage, index them by
    Surrogate-Key, purge by key, never keep private ones."""

    def __init__(self, origin: Any) -> None:
        self.origin, self.store, self.origin_calls = origin, {}, 0

    async def get(self, path: str, **headers: str) -> tuple[int, bytes]:
        now = time.monotonic()
        kept = self.store.get(path)
        if kept is not None and kept["until"] > now:
            return 200, kept["body"]
        self.origin_calls += 1
        resp = await self.origin.get(path, headers=headers)
        body = await resp.read()
        cc = {d.strip().partition("=")[0]: d.strip().partition("=")[2]
              for d in resp.headers.get("Cache-Control", "").split(",")}
        if "s-maxage" in cc and "private" not in cc and "no-store" not in cc:
            self.store[path] = {"until": now + int(cc["s-maxage"]), "body": body,
                                "keys": resp.headers.get("Surrogate-Key", "").split()}
        return resp.status, body

    def purge(self, key: str) -> None:
        self.store = {p: v for p, v in self.store.items() if key not in v["keys"]}


async def test_a_cdn_honouring_s_maxage_and_surrogate_key(edge: Any,
                                                          up: tuple[Upstream, str]) -> None:
    cdn = Cdn(edge)
    for _ in range(3):
        assert (await cdn.get("/public/9"))[0] == 200
    assert cdn.origin_calls == 1
    cdn.purge("doc:9")
    await cdn.get("/public/9")
    assert cdn.origin_calls == 2
    # private answers never land in it
    for _ in range(2):
        await cdn.get("/mine", **bearer(token(sub="1001")))
    assert cdn.origin_calls == 4 and "/mine" not in cdn.store


async def test_two_users_never_see_each_others_private_answers(edge: Any,
                                                              up: tuple[Upstream, str]) -> None:
    for _ in range(3):
        for sub in ("1001", "1002"):
            resp = await edge.get("/mine", headers=bearer(token(sub=sub)))
            doc = await resp.json()
            assert doc["sub"] == sub and doc["secret"] == f"only for {sub}"
            assert resp.headers["Cache-Control"].startswith("private, max-age=60")
            assert "Surrogate-Key" not in resp.headers
    assert up[0].hits["/me"] == 2  # one entry each, then hits
    # one user's validator is not another's
    a = await edge.get("/mine", headers=bearer(token(sub="1001")))
    b = await edge.get("/mine", headers={**bearer(token(sub="1002")),
                                         "If-None-Match": a.headers["ETag"]})
    assert b.status == 200 and (await b.json())["sub"] == "1002"


async def test_device_classes_are_variants(edge: Any, up: tuple[Upstream, str]) -> None:
    phone = await edge.get("/mine", headers={**bearer(token()), "User-Agent": "x iPhone"})
    full = await edge.get("/mine", headers=bearer(token()))
    assert set(await phone.json()) == {"sub"} and "secret" in await full.json()


async def test_stale_while_revalidate_refreshes_once_in_the_background(
        edge: Any, up: tuple[Upstream, str], clock: FakeClock) -> None:
    await edge.get("/short/1")
    clock.advance(1.1)
    up[0].version = 2
    up[0].delay = 0.2
    stale = await asyncio.gather(*(edge.get("/short/1") for _ in range(5)))
    for resp in stale:
        assert "stale-while-revalidate" in resp.headers["Cache-Status"]
        assert (await resp.json())["version"] == 1
    for _ in range(100):  # the refresh takes the upstream's 0.2 s
        fresh = await edge.get("/short/1")
        if "stale" not in fresh.headers["Cache-Status"]:
            break
        await asyncio.sleep(0.02)
    assert up[0].hits["/doc/1"] == 2  # one refresh for all the stale answers
    fresh = await edge.get("/short/1")
    assert (await fresh.json())["version"] == 2
    assert fresh.headers["Cache-Status"].startswith("edge; hit")


async def test_stale_if_error_serves_the_last_good_answer(edge: Any, make_edge: Any,
                                                          up: tuple[Upstream, str],
                                                          clock: FakeClock) -> None:
    good = await (await edge.get("/fragile/1")).read()
    clock.advance(1.1)
    up[0].fail = True
    resp = await edge.get("/fragile/1")
    assert resp.status == 200 and await resp.read() == good
    assert "detail=stale-if-error" in resp.headers["Cache-Status"]
    # and when the upstream is gone altogether
    gone = await make_edge(services_yaml({"up": f"http://127.0.0.1:{free_port()}"}, EXTRA),
                           ROUTES, root=edge.edge.config.root.parent / "gone")
    assert (await gone.get("/fragile/1")).status == 502  # nothing to fall back on


async def test_an_expired_entry_is_revalidated_with_the_upstream_validators(
        edge: Any, up: tuple[Upstream, str], clock: FakeClock) -> None:
    first = await edge.get("/revalidate/5")
    clock.advance(1.1)
    again = await edge.get("/revalidate/5")
    assert again.headers["Cache-Status"] == "edge; fwd=stale; fwd-status=304; stored"
    assert up[0].not_modified == 1
    assert await again.read() == await first.read()
    assert again.headers["ETag"] == first.headers["ETag"]


async def test_a_hundred_concurrent_misses_make_one_upstream_call(
        edge: Any, up: tuple[Upstream, str]) -> None:
    up[0].delay = 0.3
    resps = await asyncio.gather(*(edge.get("/public/42") for _ in range(100)))
    assert {r.status for r in resps} == {200}
    assert len({await r.read() for r in resps}) == 1
    assert up[0].hits["/doc/42"] == 1
    assert sum("collapsed" in r.headers["Cache-Status"] for r in resps) == 99


@pytest.mark.parametrize("query", ["cc=no-store", "cc=private", "cookie=1"])
async def test_upstream_no_store_private_and_cookies_are_not_kept(
        edge: Any, up: tuple[Upstream, str], query: str) -> None:
    first = await edge.get(f"/public/8?{query}")
    second = await edge.get(f"/public/8?{query}")
    assert up[0].hits["/doc/8"] == 2
    assert "stored" not in second.headers["Cache-Status"]
    assert "public" not in first.headers["Cache-Control"]
    if query == "cookie=1":
        assert first.headers["Set-Cookie"].startswith("session=")
    else:
        assert first.headers["Cache-Control"] == query[3:]


async def test_the_override_is_visible_and_drops_cookies(edge: Any, up: tuple[Upstream, str],
                                                         capsys: Any) -> None:
    await edge.get("/override/1?cookie=1&cc=private")
    hit = await edge.get("/override/1?cookie=1&cc=private")
    assert up[0].hits["/doc/1"] == 1
    assert "Set-Cookie" not in hit.headers
    assert hit.headers["Cache-Control"].startswith("public")


async def test_purge_by_tag_route_and_all(edge: Any, up: tuple[Upstream, str]) -> None:
    admin = bearer(token(roles=["admin"]))
    for path in ("/public/1", "/public/2", "/short/1"):
        await edge.get(path)
    assert (await edge.post("/_edge/purge", data=b'{"tags": ["doc:1"]}')).status == 401
    assert (await edge.post("/_edge/purge", data=b'{"tags": ["doc:1"]}',
                            headers=bearer(token()))).status == 403
    resp = await edge.post("/_edge/purge", data=b'{"tags": ["doc:1"]}', headers=admin)
    assert resp.status == 200 and (await resp.json())["purged"] == ["doc:1"]
    await edge.get("/public/1")
    await edge.get("/public/2")
    assert up[0].hits == {"/doc/1": 3, "/doc/2": 1}  # /public/1 and /short/1 share doc:1
    await edge.post("/_edge/purge", data=b'{"route": "GET /public/{id}"}', headers=admin)
    await edge.get("/public/2")
    assert up[0].hits["/doc/2"] == 2
    await edge.post("/_edge/purge", data=b'{"all": true}', headers=admin)
    await edge.get("/public/2")
    assert up[0].hits["/doc/2"] == 3
    bad = await edge.post("/_edge/purge", data=b'{"route": "GET /nope"}', headers=admin)
    assert bad.status == 404
    bad = await edge.post("/_edge/purge", data=b'{"tags": []}', headers=admin)
    assert bad.status == 400


async def test_a_write_purges_the_tags_it_declares(edge: Any, up: tuple[Upstream, str]
                                                   ) -> None:
    events = edge.edge.state.cache.invalidations.subscribe()
    assert (await (await edge.get("/public/4")).json())["version"] == 1
    assert (await edge.post("/doc/4", data=b"{}")).status == 200
    assert (await (await edge.get("/public/4")).json())["version"] == 2
    event = events.get_nowait()
    assert event["tags"] == ["doc:4"]


async def test_purge_on_one_instance_is_seen_by_another(make_edge: Any,
                                                        up: tuple[Upstream, str],
                                                        redis_url: str) -> None:
    env = {"EDGE_REDIS_URL": redis_url}
    yaml = services_yaml({"up": up[1]}, EXTRA)
    a = await make_edge(yaml, ROUTES, env=env)
    b = await make_edge(yaml, ROUTES, env=env, root=a.edge.config.root.parent / "b")
    await a.edge.state.cache.purge(["*"])  # a clean slate in the shared Redis
    doc = f"/public/shared-{time.time_ns()}"
    await a.get(doc)
    hit = await b.get(doc)  # the shared tier: b never asked, yet it is a hit
    assert hit.headers["Cache-Status"].startswith("edge; hit")
    metrics = await (await b.get("/metrics")).text()  # b's Redis read, timed
    assert re.search(r'^edge_redis_duration_seconds_count\{op="cache_get"\} [1-9]', metrics,
                     re.M)
    upstream_path = "/doc/" + doc.rsplit("/", 1)[1]
    assert up[0].hits[upstream_path] == 1
    up[0].version = 2
    await a.post("/_edge/purge", data=orjson.dumps({"tags": [f"doc:{doc.rsplit('/', 1)[1]}"]}),
                 headers=bearer(token(roles=["admin"])))
    for _ in range(50):  # the purge travels over Redis pub/sub
        resp = await b.get(doc)
        if (await resp.json())["version"] == 2:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("instance b kept serving the purged entry")


async def test_the_shared_tier_uses_the_whole_redis_url(private_redis: str, make_edge: Any,
                                                       up: tuple[Upstream, str]) -> None:
    """EDGE_REDIS_URL as written: a user, a password and a database number (once lost by
    a second client built from a hand-parsed URL)."""
    import redis.asyncio as aioredis

    env = {"EDGE_REDIS_URL": private_redis}
    yaml = services_yaml({"up": up[1]}, EXTRA)
    a = await make_edge(yaml, ROUTES, env=env)
    b = await make_edge(yaml, ROUTES, env=env, root=a.edge.config.root.parent / "b")
    assert (await a.get("/public/acl")).headers["Cache-Status"] == "edge; fwd=uri-miss; stored"
    hit = await b.get("/public/acl")  # b never asked: it can only be the shared tier
    assert hit.headers["Cache-Status"].startswith("edge; hit")
    assert up[0].hits["/doc/acl"] == 1
    metrics = await (await a.get("/metrics")).text()
    assert 'edge_redis_errors_total{op="cache_set"}' not in metrics
    client = aioredis.Redis.from_url(private_redis)
    try:
        assert len(await client.keys("edge:cache:*")) == 1  # in database 3
        await client.select(0)
        assert await client.keys("edge:cache:*") == []
    finally:
        await client.aclose()


async def test_redis_down_means_misses_not_errors(make_edge: Any,
                                                  up: tuple[Upstream, str]) -> None:
    env = {"EDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    edge = await make_edge(services_yaml({"up": up[1]}, EXTRA), ROUTES, env=env)
    for _ in range(2):
        assert (await edge.get("/public/1")).status == 200
    assert up[0].hits["/doc/1"] == 1  # the memory tier still works
    metrics = await (await edge.get("/metrics")).text()
    assert re.search(r'^edge_redis_errors_total\{op="cache_set"\} [1-9]', metrics, re.M)


async def test_delta_from_the_version_the_app_holds(edge: Any, up: tuple[Upstream, str]
                                                    ) -> None:
    first = await edge.get("/public/11", headers=IDENTITY)
    held = await first.json()
    etag = first.headers["ETag"]
    await edge.post("/doc/11", data=b"{}")  # version 2, and purges doc:11
    for kind, apply in (("json-patch", jsonpatch.apply_patch),
                        ("merge-patch", json_merge_patch.merge)):
        resp = await edge.get("/public/11", headers={**IDENTITY, "If-None-Match": etag,
                                                     "A-IM": kind})
        assert resp.status == 226
        assert resp.headers["IM"] == kind and resp.headers["Delta-Base"] == etag
        assert resp.headers["Cache-Control"] == "no-store"
        patch = orjson.loads(await resp.read())
        current = await (await edge.get("/public/11")).json()
        assert apply(orjson.loads(orjson.dumps(held)), patch) == current
        assert resp.headers["ETag"] == (await edge.get("/public/11",
                                                       headers=IDENTITY)).headers["ETag"]
    unknown = await edge.get("/public/11", headers={"If-None-Match": '"zzz"',
                                                    "A-IM": "json-patch"})
    assert unknown.status == 200
    same = await edge.get("/public/11", headers={
        "If-None-Match": (await edge.get("/public/11")).headers["ETag"], "A-IM": "json-patch"})
    assert same.status == 304


@pytest.mark.parametrize("route, expected", [
    ("route: POST /x\nsource: {service: up, path: /x}\nshape: {}\ncache: {ttl: 1s}",
     "only GET routes are cached"),
    ("route: GET /x\nsource: {service: up, path: /x}\ncache: {ttl: 0s}",
     "cache.ttl must be more than 0"),
    ("route: GET /x\nsource: {service: up, path: /x}\nauth: {jwt: required}\nshape: {}\n"
     "cache: {ttl: 1s, scope: public}", "a CDN would serve a public answer"),
    ("route: GET /x/{id}\nsource: {service: up, path: /x}\nshape: {}\n"
     "cache: {ttl: 1s, tags: ['m:{nope}']}", "'{nope}' is not a parameter of the route"),
    ("route: GET /x\nsource: {service: up, path: /x}\nshape: {}\ncache: {ttl: 0s}",
     "cache.ttl must be more than 0"),
    ("route: GET /x\nsource: {service: up, path: /x}\ninvalidates: [x]",
     "`invalidates` is for POST, PUT, PATCH and DELETE routes"),
    ("route: GET /x\nsource: {service: up, path: /x}\nshape: {}\ncache: {ttl: 1s, "
     "tags: ['a b']}", "'a b' is not a tag"),
])
def test_cache_config_errors(tmp_path: Any, route: str, expected: str) -> None:
    from edge.config import ConfigError, load_config

    from .conftest import write_config

    root = write_config(tmp_path / "c", services_yaml({"up": "http://127.0.0.1:1"}, AUTH),
                        {"r.yaml": route})
    with pytest.raises(ConfigError) as e:
        load_config(root, {"EDGE_JWT_SECRET": "x" * 32})
    assert any(expected in p and "r.yaml:" in p for p in e.value.problems), e.value.problems


def test_edge_routes_shows_caching_and_overrides(tmp_path: Any, capsys: Any,
                                                 monkeypatch: Any) -> None:
    from edge.cli import main

    from .conftest import write_config

    root = write_config(tmp_path / "c", services_yaml({"up": "http://127.0.0.1:1"}, EXTRA),
                        ROUTES)
    monkeypatch.setenv("EDGE_JWT_SECRET", "x" * 32)
    assert main(["routes", "--wide", "--config", str(root)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("GET /override/{id}"))
    assert "public 60s OVERRIDES upstream no-store/private/Set-Cookie" in line
    assert "purges doc:{id}" in next(ln for ln in out.splitlines()
                                     if ln.startswith("POST /doc/{id}"))


async def test_preconditions_on_writes_reach_the_upstream_untouched(make_edge: Any,
                                                                    upstream: Any) -> None:
    from .conftest import headers_echo_app

    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"up": url}), {"r.yaml": """
routes:
  - route: PUT /x
    source: {service: up, path: /x}
    shape: {}
  - route: GET /x
    source: {service: up, path: /x}
    shape: {}
"""})
    since = formatdate(1_700_000_000, usegmt=True)
    resp = await edge.put("/x", data=b"{}", headers={"If-Match": '"v3"',
                                                     "If-Unmodified-Since": since})
    got = (await resp.json())["headers"]
    assert got["If-Match"] == '"v3"' and got["If-Unmodified-Since"] == since
    # on a shaped GET the edge answers conditionals itself: the upstream never sees them
    resp = await edge.get("/x", headers={"If-None-Match": '"zz"', "If-Modified-Since": since})
    got = (await resp.json())["headers"]
    assert "If-None-Match" not in got and "If-Modified-Since" not in got


async def test_stale_if_error_when_the_upstream_is_gone_or_its_circuit_open(
        make_edge: Any, tmp_path: Any, clock: FakeClock) -> None:
    u = Upstream()
    runner = web.AppRunner(u.app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yaml = (f"services:\n  up:\n    url: http://127.0.0.1:{port}\n"
            "    circuit_breaker: {failure_threshold: 1, open_for: 30s}\n"
            "    retries: {attempts: 1}\n" + EXTRA)
    edge = await make_edge(yaml, ROUTES, clock=clock)
    good = await (await edge.get("/fragile/1")).read()
    await runner.cleanup()  # the upstream goes away
    clock.advance(1.1)
    for expected in ("fwd-status=502", "fwd-status=503"):  # unreachable, then circuit open
        resp = await edge.get("/fragile/1")
        assert resp.status == 200 and await resp.read() == good
        assert expected in resp.headers["Cache-Status"]


async def test_head_on_a_cached_route(edge: Any) -> None:
    await edge.get("/public/5")
    resp = await edge.head("/public/5")
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["Cache-Status"].startswith("edge; hit")


async def test_the_fast_lane_for_repeated_public_answers(edge: Any,
                                                         up: tuple[Upstream, str]) -> None:
    """Repeated public answers skip the pipeline; what they say must not change."""
    cache = edge.edge.state.cache
    first = await edge.get("/public/21", headers=IDENTITY)
    second = await edge.get("/public/21", headers=IDENTITY)  # stores the rendered answer
    assert cache.ready.answers
    third = await edge.get("/public/21", headers=IDENTITY)  # served from it
    assert await third.read() == await first.read()
    for name in ("ETag", "Cache-Control", "Vary", "Content-Type", "Surrogate-Key"):
        assert third.headers[name] == second.headers[name], name
    assert third.headers["Cache-Status"].startswith("edge; hit; ttl=")
    assert third.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    mine = await edge.get("/public/21", headers={**IDENTITY, "X-Request-ID": "abc-123"})
    assert mine.headers["X-Request-ID"] == "abc-123"
    nm = await edge.get("/public/21", headers={**IDENTITY,
                                               "If-None-Match": first.headers["ETag"]})
    assert nm.status == 304 and "Content-Type" not in nm.headers
    head = await edge.head("/public/21", headers=IDENTITY)
    assert head.status == 200 and head.headers["ETag"] == first.headers["ETag"]
    # another variant (a phone) is another answer
    assert up[0].hits["/doc/21"] == 1
    phone = await edge.get("/public/21", headers={**IDENTITY, "User-Agent": "x iPhone"})
    assert phone.headers["ETag"] == first.headers["ETag"]  # shape {}: same bytes here
    assert up[0].hits["/doc/21"] == 2  # its own entry (device class is in the key)
    metrics = await (await edge.get("/metrics")).text()
    line = next(m for m in metrics.splitlines() if m.startswith("edge_cache_results_total")
                and 'result="hit"' in m and "/public/" in m)
    assert float(line.rsplit(" ", 1)[1]) >= 5
    # a purge, a write and a reload all end a fast answer
    up[0].version = 2
    await edge.post("/doc/21", data=b"{}")
    assert (await (await edge.get("/public/21", headers=IDENTITY)).json())["version"] == 3
    await edge.get("/public/21", headers=IDENTITY)
    assert cache.ready.answers
    runtime = edge.edge.state.runtime
    runtime.generation += 1  # what a reload does
    await edge.get("/public/21", headers=IDENTITY)  # not from the fast lane: re-rendered
    assert {r.generation for r in cache.ready.answers.values()
            if r.route.name == "GET /public/{id}" and r.body} >= {runtime.generation}
