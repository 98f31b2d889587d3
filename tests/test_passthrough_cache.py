"""The edge cache on routes that pass the origin's answers through (RFC 9111): any content
type kept as the origin sent it, small bodies read whole, big ones kept while they stream
to the first client, HEAD answered from a kept GET, conditionals and byte ranges answered
from what is kept, heuristic freshness, and scope following the credentials presented.
Each test runs against a real origin that scripts its answers and records what reaches
it, with the cache in memory and in Redis."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web

from .conftest import FakeClock, catch_all, services_yaml

ROUTES = {"r.yaml": """
routes:
  - route: GET /t/{name}
    source: {service: origin, path: "/t/{name}"}
    auth: {jwt: "off", forward_token: true}
    cache: {ttl: 60s}
  - route: GET /o/{name}
    source: {service: origin, path: "/t/{name}"}
    cache: {}
  - route: GET /pub/{name}
    source: {service: origin, path: "/t/{name}"}
    auth: {jwt: "off", forward_token: true}
    cache: {ttl: 60s, scope: public}
  - route: GET /cdn/{name}
    source: {service: origin, path: "/t/{name}"}
    cache: {ttl: 60s, s_maxage: 600s, stale_if_error: 1h, cdn_cache_control: true}
  - route: GET /s/{name}
    source: {service: origin, path: "/s/{name}"}
    shape: {}
  - route: GET /sc/{name}
    source: {service: origin, path: "/t/{name}"}
    shape: {}
    cache: {ttl: 60s}
  - route: POST /t/{name}
    source: {service: origin, path: "/t/{name}"}
"""}

BIG = 300 * 1024  # over the size read whole: kept while it streams


class Origin:
    """`/t/NAME` answers `size` bytes of text (or `type`), streamed in chunks without a
    Content-Length when `stream` is set, with the headers scripted for NAME; it counts
    requests per NAME and keeps the last request's method and headers."""

    def __init__(self) -> None:
        self.script: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, int] = {}
        self.seen: dict[str, tuple[str, dict[str, str]]] = {}

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            name = request.path.rsplit("/", 1)[1]
            self.hits[name] = self.hits.get(name, 0) + 1
            self.seen[name] = (request.method, dict(request.headers))
            if request.method == "POST":
                return web.Response(status=204)
            script = dict(self.script.get(name, {}))
            size = script.pop("size", 1000)
            status = script.pop("status", 200)
            stream = script.pop("stream", False)
            body = (name.encode() + b" ") * (size // (len(name) + 1) + 1)
            body = body[:size] if size else b'{"name": "%s"}' % name.encode()
            headers = {"Content-Type": script.pop("type", "text/plain"), **script}
            if stream:
                resp = web.StreamResponse(status=status, headers=headers)
                await resp.prepare(request)
                for i in range(0, len(body), 64 * 1024):
                    await resp.write(body[i:i + 64 * 1024])
                await resp.write_eof()
                return resp
            return web.Response(status=status, body=body, headers=headers)

        return catch_all(handle)


@pytest.fixture
async def cache(backend_env: dict[str, str], make_edge: Any, upstream: Any,
                clock: FakeClock) -> tuple[Any, Origin, FakeClock]:
    origin = Origin()
    url = await upstream(origin.app())
    edge = await make_edge(services_yaml({"origin": url}), ROUTES, env=backend_env,
                           clock=clock)
    return edge, origin, clock


def unique(name: str) -> str:
    return f"{name}{time.time_ns()}"  # Redis outlives a test: every test its own keys


async def get(edge: Any, path: str, method: str = "GET", **headers: str) -> tuple[Any, bytes]:
    resp = await edge.request(method, path, headers={"Accept-Encoding": "identity", **headers})
    return resp, await resp.read()


def status_of(resp: Any) -> str:
    return str(resp.headers.get("Cache-Status", ""))


async def settle(edge: Any) -> None:
    """Let an entry kept while it streamed reach the store."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_a_text_answer_is_kept_and_served_as_the_origin_sent_it(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("plain")
    origin.script[name] = {"ETag": '"abc"', "Last-Modified": formatdate(usegmt=True)}
    first, body = await get(edge, f"/t/{name}")
    assert first.status == 200 and len(body) == 1000
    assert "fwd=uri-miss; stored" in status_of(first)
    assert first.headers["Age"] == "0"  # on every answer from the cache
    clock.advance(5)
    hit, again = await get(edge, f"/t/{name}")
    assert again == body and hit.headers["Cache-Status"].startswith("edge; hit")
    assert hit.headers["Content-Type"].startswith("text/plain")
    assert hit.headers["ETag"] == '"abc"'  # the origin's validator, not one of the edge's
    assert hit.headers["Age"] == "5"
    assert hit.headers["Cache-Control"] == "public, max-age=60, s-maxage=60"
    assert "X-Edge-Shaped" not in hit.headers
    assert origin.hits[name] == 1


async def test_the_fill_asks_for_the_whole_identity_representation(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("fill")
    origin.script[name] = {"ETag": '"abc"'}
    await get(edge, f"/t/{name}", **{"If-None-Match": '"zzz"', "Range": "bytes=0-9",
                                     "Accept-Encoding": "br"})
    method, seen = origin.seen[name]
    assert method == "GET"
    assert "If-None-Match" not in seen and "Range" not in seen
    assert seen["Accept-Encoding"] == "identity"


async def test_a_conditional_request_is_answered_from_the_kept_validators(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("cond")
    modified = formatdate(time.time() - 3600, usegmt=True)
    origin.script[name] = {"ETag": '"abc"', "Last-Modified": modified}
    await get(edge, f"/t/{name}")
    by_tag, body = await get(edge, f"/t/{name}", **{"If-None-Match": 'W/"abc"'})
    assert by_tag.status == 304 and body == b"" and by_tag.headers["ETag"] == '"abc"'
    by_date, _ = await get(edge, f"/t/{name}", **{"If-Modified-Since": modified})
    assert by_date.status == 304
    other, _ = await get(edge, f"/t/{name}", **{"If-None-Match": '"old"'})
    assert other.status == 200
    assert origin.hits[name] == 1


async def test_head_is_answered_from_a_kept_get_else_passes_through(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("head")
    head, body = await get(edge, f"/t/{name}", "HEAD")
    assert head.status == 200 and body == b""
    assert origin.seen[name][0] == "HEAD"  # a miss asks the origin the client's question
    assert head.headers["Cache-Status"] == "edge; fwd=method"
    await get(edge, f"/t/{name}", "HEAD")
    assert origin.hits[name] == 2  # … and keeps nothing
    await get(edge, f"/t/{name}")
    again, body = await get(edge, f"/t/{name}", "HEAD")
    assert again.headers["Cache-Status"].startswith("edge; hit")  # RFC 9111 §4.3.5
    assert again.headers["Content-Length"] == "1000" and body == b""
    assert origin.hits[name] == 3


async def test_head_on_a_shaped_route_describes_the_shaped_answer(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("shead")
    origin.script[name] = {"type": "application/json", "size": 0}
    got, body = await get(edge, f"/s/{name}")
    head, nothing = await get(edge, f"/s/{name}", "HEAD")
    assert origin.seen[name][0] == "GET"  # the edge's representation is made from a body
    assert head.status == 200 and nothing == b"" and "X-Edge-Shaped" not in head.headers
    assert head.headers["ETag"] == got.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(body))


async def test_a_byte_range_is_served_from_the_kept_answer(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("range")
    origin.script[name] = {"ETag": '"r1"'}
    _, whole = await get(edge, f"/t/{name}")
    part, body = await get(edge, f"/t/{name}", Range="bytes=10-19")
    assert part.status == 206 and body == whole[10:20]
    assert part.headers["Content-Range"] == "bytes 10-19/1000"
    tail, body = await get(edge, f"/t/{name}", Range="bytes=-5")
    assert tail.status == 206 and body == whole[-5:]
    past, _ = await get(edge, f"/t/{name}", Range="bytes=5000-")
    assert past.status == 416 and past.headers["Content-Range"] == "bytes */1000"
    changed, body = await get(edge, f"/t/{name}", Range="bytes=0-9", **{"If-Range": '"r0"'})
    assert changed.status == 200 and body == whole  # If-Range names another version
    same, body = await get(edge, f"/t/{name}", Range="bytes=0-9", **{"If-Range": '"r1"'})
    assert same.status == 206 and body == whole[:10]
    several, body = await get(edge, f"/t/{name}", Range="bytes=0-1,5-6")
    assert several.status == 200 and body == whole
    assert origin.hits[name] == 1


async def test_a_compressible_answer_is_compressed_once_per_coding(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("zip")
    origin.script[name] = {"size": 10_000, "ETag": '"z"'}
    _, whole = await get(edge, f"/t/{name}")
    packed, body = await get(edge, f"/t/{name}", **{"Accept-Encoding": "br"})
    assert packed.headers["Content-Encoding"] == "br"
    assert body == whole  # (decoded by the client)
    assert packed.headers["ETag"] == 'W/"z"'  # other bytes, same content
    assert "Accept-Encoding" in packed.headers["Vary"]
    plain, _ = await get(edge, f"/t/{name}")
    assert "Accept-Encoding" in plain.headers["Vary"]  # every answer says so
    assert origin.hits[name] == 1


async def test_a_big_body_is_kept_while_it_streams_to_the_first_client(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("big")
    origin.script[name] = {"size": BIG, "stream": True, "type": "application/octet-stream"}
    first, body = await get(edge, f"/t/{name}")
    assert len(body) == BIG and first.headers["Cache-Status"] == "edge; fwd=uri-miss"
    await settle(edge)
    hit, again = await get(edge, f"/t/{name}")
    assert hit.headers["Cache-Status"].startswith("edge; hit"), hit.headers
    assert again == body and origin.hits[name] == 1


async def test_a_body_over_the_entry_bound_passes_uncached(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("huge")
    origin.script[name] = {"size": 1024 * 1024 + 1, "stream": True,
                           "type": "application/octet-stream"}
    for _ in range(2):
        resp, body = await get(edge, f"/t/{name}")
        assert len(body) == 1024 * 1024 + 1
        await settle(edge)
    assert origin.hits[name] == 2


@pytest.mark.parametrize(("said", "kept"), [
    ({"status": 404}, True),  # heuristically cacheable: the route's ttl
    ({"status": 500}, False),
    ({"status": 302, "Location": "/t/x"}, False),  # only with the origin's freshness
    ({"status": 302, "Location": "/t/x", "Cache-Control": "max-age=30"}, True),
    ({"Cache-Control": "no-store"}, False),
    ({"Cache-Control": "private"}, False),
    ({"Set-Cookie": "a=1"}, False),
    ({"Vary": "*"}, False),
])
async def test_what_is_kept_follows_the_status_and_the_origin(
        cache: Any, said: dict[str, Any], kept: bool) -> None:
    edge, origin, _ = cache
    name = unique("k")
    origin.script[name] = said
    for _ in range(2):
        await get(edge, f"/t/{name}")
    assert origin.hits[name] == (1 if kept else 2)


async def test_freshness_without_a_ttl_is_the_origin_s_or_a_heuristic(cache: Any) -> None:
    edge, origin, clock = cache
    told, guessed, silent = unique("told"), unique("guess"), unique("silent")
    origin.script[told] = {"Cache-Control": "max-age=5"}
    # modified 1000 s ago: fresh for a tenth of that (RFC 9111 §4.2.2)
    origin.script[guessed] = {"Last-Modified": formatdate(time.time() - 1000, usegmt=True)}
    for name in (told, guessed, silent):
        await get(edge, f"/o/{name}")
    clock.advance(4)
    for name in (told, guessed, silent):
        await get(edge, f"/o/{name}")
    assert (origin.hits[told], origin.hits[guessed], origin.hits[silent]) == (1, 1, 2)
    clock.advance(90)
    await get(edge, f"/o/{guessed}")
    assert origin.hits[guessed] == 1
    clock.advance(20)
    await get(edge, f"/o/{guessed}")
    assert origin.hits[guessed] == 2


async def test_vary_keys_the_kept_answers(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("lang")
    origin.script[name] = {"Vary": "Accept-Language"}
    await get(edge, f"/t/{name}", **{"Accept-Language": "fr"})
    en, _ = await get(edge, f"/t/{name}", **{"Accept-Language": "en"})
    assert not en.headers["Cache-Status"].startswith("edge; hit")
    fr, _ = await get(edge, f"/t/{name}", **{"Accept-Language": "fr"})
    assert fr.headers["Cache-Status"].startswith("edge; hit")
    await get(edge, f"/t/{name}", **{"Accept-Language": "de, en;q=0.5"})
    same, _ = await get(edge, f"/t/{name}", **{"Accept-Language": "de,en;q=0.5"})
    assert same.headers["Cache-Status"].startswith("edge; hit")  # normalised
    assert origin.hits[name] == 3


async def test_credentials_make_the_answer_the_caller_s_own(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("cred")
    origin.script[name] = {"Cache-Control": "max-age=60"}
    anonymous, _ = await get(edge, f"/t/{name}")
    assert anonymous.headers["Cache-Control"] == "max-age=60"
    mine, _ = await get(edge, f"/t/{name}", Authorization="Basic YTpi", Cookie="s=1")
    assert mine.headers["Cache-Status"] == "edge; fwd=bypass"
    assert mine.headers["Cache-Control"].startswith("private")
    seen = origin.seen[name][1]
    assert seen["Authorization"] == "Basic YTpi" and seen["Cookie"] == "s=1"
    # a route that says `scope: public` shares the answer and keeps credentials from it
    shared, _ = await get(edge, f"/pub/{name}", Authorization="Basic YTpi")
    assert "Authorization" not in origin.seen[name][1]
    again, _ = await get(edge, f"/pub/{name}", Authorization="Basic eDp5")
    assert again.headers["Cache-Status"].startswith("edge; hit")


async def test_a_write_purges_the_kept_answer(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("w")
    await get(edge, f"/t/{name}")
    resp = await edge.post(f"/t/{name}")
    assert resp.status == 204
    again, _ = await get(edge, f"/t/{name}")
    assert not again.headers["Cache-Status"].startswith("edge; hit")
    assert origin.hits[name] == 3


async def test_surrogate_control_is_for_the_edge_and_goes_no_further(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("surr")
    origin.script[name] = {"Cache-Control": "max-age=5", "Surrogate-Control": "max-age=100"}
    first, _ = await get(edge, f"/t/{name}")
    assert "Surrogate-Control" not in first.headers
    clock.advance(50)
    hit, _ = await get(edge, f"/t/{name}")
    assert hit.headers["Cache-Status"].startswith("edge; hit")
    assert hit.headers["Cache-Control"] == "max-age=5"  # what clients are told stays
    assert "Surrogate-Control" not in hit.headers
    assert origin.hits[name] == 1


async def test_cdn_cache_control_goes_on_to_the_cdn_but_never_on_a_private_answer(
        cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("cdn")
    origin.script[name] = {"Cache-Control": "max-age=5", "CDN-Cache-Control": "max-age=300"}
    shared, _ = await get(edge, f"/t/{name}")
    assert shared.headers["CDN-Cache-Control"] == "max-age=300"
    mine, _ = await get(edge, f"/t/{name}", Cookie="s=1")
    assert "CDN-Cache-Control" not in mine.headers
    assert mine.headers["Cache-Control"].startswith("private")
    routed, _ = await get(edge, f"/cdn/{unique('c')}")
    assert routed.headers["CDN-Cache-Control"] == "max-age=600, stale-if-error=3600"


async def test_shaped_and_relayed_answers_of_one_url_are_kept_apart(cache: Any) -> None:
    edge, origin, _ = cache
    name = unique("both")
    origin.script[name] = {"type": "application/json", "size": 0, "ETag": '"o"'}
    for _ in range(2):
        raw, raw_body = await get(edge, f"/t/{name}")
        shaped, shaped_body = await get(edge, f"/sc/{name}")
    assert raw_body == b'{"name": "%s"}' % name.encode()  # the origin's bytes
    assert shaped_body == b'{"name":"%s"}' % name.encode()  # the edge's
    assert raw.headers["ETag"] == '"o"' and shaped.headers["ETag"] != '"o"'
    assert raw.headers["Cache-Status"].startswith("edge; hit")
    assert shaped.headers["Cache-Status"].startswith("edge; hit")
    assert origin.hits[name] == 2


async def test_the_origin_s_stale_rules_apply_to_kept_relayed_answers(cache: Any) -> None:
    edge, origin, clock = cache
    name = unique("swr")
    origin.script[name] = {"Cache-Control": "max-age=10, stale-while-revalidate=30, "
                                            "stale-if-error=600"}
    await get(edge, f"/t/{name}")
    clock.advance(15)
    stale, body = await get(edge, f"/t/{name}")
    assert "detail=stale-while-revalidate" in stale.headers["Cache-Status"]
    assert len(body) == 1000
    await settle(edge)
    assert origin.hits[name] == 2  # refreshed in the background
    fresh, _ = await get(edge, f"/t/{name}")
    assert fresh.headers["Cache-Status"].startswith("edge; hit; ttl=")
    assert "stale" not in fresh.headers["Cache-Status"]
    origin.script[name]["status"] = 503
    clock.advance(100)
    covered, body = await get(edge, f"/t/{name}")
    assert covered.status == 200 and len(body) == 1000
    assert "detail=stale-if-error; fwd-status=503" in covered.headers["Cache-Status"]
