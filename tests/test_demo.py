"""`edge demo` end to end: the bundled upstreams behind the bundled routes."""

from __future__ import annotations

import asyncio
import gzip
import re
from pathlib import Path
from typing import Any

import orjson

from edge.cli import DEMO_APP_KEY, DEMO_PUBLISHER_KEY, DEMO_SECRET, DEMO_WIDGET_KEY, make_token


async def test_demo_serves_the_example_routes(demo: Any) -> None:
    base, s = demo
    member = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "1001", ["member"], 600)}
    async with s.get(f"{base}/api/v1/providers?city=Jakarta&size=2") as r:
        assert r.status == 200
        body = await r.json()
        assert len(body["items"]) == 2 and body["has_more"] is True
    async with s.get(f"{base}/api/v1/members/1001", headers=member) as r:
        assert r.status == 200
        assert (await r.json())["mn"].startswith("MBR-")  # members-v1 keymap
    async with s.get(f"{base}/api/v1/members/1002", headers=member) as r:
        assert r.status == 403
    async with s.get(f"{base}/api/v1/members/1001/claims?status=paid&size=3",
                     headers=member) as r:
        claims = await r.json()
        assert r.status == 200 and len(claims["items"]) == 3
        assert r.headers["X-Edge-Keymap"] == "claims-v1"
        assert {c["st"] for c in claims["items"]} == {"paid"}
        full_size = len(await r.read())
    phone = {**member, "X-Device-Type": "phone"}
    async with s.get(f"{base}/api/v1/members/1001/claims?status=paid&size=3",
                     headers=phone) as r:
        assert set(r.headers["Vary"].split(", ")) >= {"Accept", "Accept-Encoding",
                                                     "X-Device-Type"}
        assert len(await r.read()) < full_size / 3
    async with s.get(f"{base}/api/v1/members/1001/dashboard?envelope=true",
                     headers={**member, "X-Device-Type": "phone"}) as r:
        assert r.status == 200
        dash = await r.json()
        assert set(dash["data"]) == {"member", "claims", "latest_provider", "benefits",
                                     "notifications"}
        assert dash["metadata"]["data_sources"] == [
            "member", "claims", "latest_provider", "benefits", "notifications"]
    batch = [{"id": "me", "path": "/api/v1/members/1001"},
             {"id": "other", "path": "/api/v1/members/1002"},
             {"id": "claim", "path": "/api/v1/claims/CLM-999999"}]
    async with s.post(f"{base}/batch", json=batch, headers=member) as r:
        assert r.status == 200
        assert [i["status"] for i in await r.json()] == [200, 403, 404]
    claim = {"member_id": "1001", "provider_id": "PRV-001", "service_date": "2026-03-14",
             "items": [{"benefit_code": "CONS-GP", "amount": 150000}]}
    ops = {"operations": [{"local_id": "demo-1", "method": "POST", "path": "/api/v1/claims",
                           "body": claim, "timestamp": "2026-11-20T08:00:00Z"}]}
    seen = []
    for _ in range(3):
        async with s.post(f"{base}/offline/queue", json=ops, headers=member) as r:
            assert r.status == 200
            seen.append((await r.json())["results"][0])
    assert {res["server_id"] for res in seen} == {seen[0]["server_id"]}
    assert [res.get("replayed", False) for res in seen] == [False, True, True]
    # the claims service names the new claim by its own path; the app gets the edge's
    async with s.post(f"{base}/api/v1/claims", json=claim,
                      headers={**member, "Idempotency-Key": "demo-location-1"}) as r:
        assert r.status == 201
        created = r.headers["Location"]
        assert created == f"/api/v1/claims/{(await r.json())['id']}"
    async with s.get(f"{base}{created}", headers=member) as r:
        assert r.status == 200
    # cached: hits, 304s, and a delta after a claim changes
    async with s.get(f"{base}/api/v1/providers?city=Jakarta&size=2") as r:
        assert r.headers["Cache-Status"].startswith("edge; hit")
        assert "s-maxage=3600" in r.headers["Cache-Control"]
        etag = r.headers["ETag"]
    async with s.get(f"{base}/api/v1/providers?city=Jakarta&size=2",
                     headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    # app keys: an optional one on the providers raises the limit to its tier's; a wrong
    # one is refused; /demo/app needs one, and the widget's key is for the providers only
    app = {"X-API-Key": DEMO_APP_KEY}
    async with s.get(f"{base}/api/v1/providers?city=Jakarta&size=2", headers=app) as r:
        assert r.status == 200
        assert '"per-device";q=1000;w=60' in r.headers["RateLimit-Policy"]
    async with s.get(f"{base}/api/v1/providers?city=Jakarta&size=2",
                     headers={"X-API-Key": DEMO_APP_KEY[:-1]}) as r:
        assert r.status == 401
    async with s.get(f"{base}/demo/app") as r:
        assert r.status == 401
    async with s.get(f"{base}/demo/app", headers=app) as r:
        seen = {k.lower(): v for k, v in (await r.json())["headers"].items()}
        assert seen["x-edge-app"] == "demo-app" and "x-api-key" not in seen
    async with s.get(f"{base}/demo/app", headers={"X-API-Key": DEMO_WIDGET_KEY}) as r:
        assert r.status == 403
    plain = {**member, "Accept-Encoding": "identity"}
    async with s.get(f"{base}/api/v1/members/1001/dashboard", headers=plain) as r:
        dash_etag = r.headers["ETag"]
        claim_id = (await r.json())["claims"][0]["id"]
    admin = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "ops", ["admin"], 600)}
    async with s.post(f"{base}/api/v1/members/1001/claims/{claim_id}/status",
                      json={"status": "paid"}, headers=admin) as r:
        assert r.status == 200
    async with s.get(f"{base}/api/v1/members/1001/dashboard",
                     headers={**plain, "If-None-Match": dash_etag, "A-IM": "json-patch"}) as r:
        assert r.status == 226
        assert r.headers["Content-Type"] == "application/json-patch+json"
    # a per-device limit: the headers count down, then 429 with Retry-After
    device = {**member, "X-Device-ID": "demo-loop"}
    remaining = []
    for _ in range(25):
        async with s.get(f"{base}/api/v1/members/1001/benefits", headers=device) as r:
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
                break
            remaining.append(r.headers["RateLimit"])
    assert r.status == 429
    assert '"per-device";r=19;' in remaining[0] and len(remaining) >= 20
    # server-sent events: a public topic, and what a backend publishes reaches it
    async with s.get(f"{base}/events?topic=public") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        async with s.post(f"{base}/_edge/publish", headers={
                "Authorization": f"Bearer {DEMO_PUBLISHER_KEY}"},
                json={"topic": "public", "event": "hello", "data": {"n": 1}}) as r:
            assert r.status == 202
        lines: list[str] = []
        while "event: hello\r\n" not in lines:  # (a demo tick may come first)
            lines.append((await asyncio.wait_for(stream.content.readline(), 5)).decode())
    # images sized per device
    async with s.get(f"{base}/img/providers/PRV-001/photos/1.jpg", headers={
            "User-Agent": "iPhone", "Accept": "image/webp"}) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
        # anonymous on an optional-auth route: shareable, so a CDN may keep resized photos
        assert r.headers["Cache-Control"].startswith("public, max-age=86400")
        phone_bytes = len(await r.read())
    async with s.get(f"{base}/img/providers/PRV-001/photos/1.jpg", headers=member) as r:
        assert r.status == 200  # … and with a token, the caller's own
        assert r.headers["Cache-Control"].startswith("private")
    async with s.get(f"{base}/media/providers/PRV-001/photos/1.jpg") as r:
        assert phone_bytes < len(await r.read()) / 5
    for _ in range(4):  # fails every other call upstream; the retry hides it
        async with s.get(f"{base}/demo/flaky") as r:
            assert r.status == 200
    async with s.get(f"{base}/demo/big?mb=20") as r:
        assert len(await r.read()) == 20 * 1024 * 1024
    async with s.get(f"{base}/media/providers/PRV-001/logo.png") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    async with s.get(f"{base}/metrics") as r:
        assert 'route="GET /api/v1/members/{member_id}"' in await r.text()


async def test_demo_routes_keep_members_to_their_own_records(demo: Any) -> None:
    """The holes a review found in the bundled routes: objects whose path names no owner."""
    base, s = demo
    m1001 = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "1001", ["member"], 600)}
    m1002 = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "1002", ["member"], 600)}
    staff = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "9001", ["admin"], 600)}
    for path in ("/api/v1/claims/CLM-000197", "/api/v1/policies/POL-1002"):
        async with s.get(f"{base}{path}", headers=m1001) as r:
            assert r.status == 404, path
            assert (await r.json())["type"] == "urn:edge:problem:resource-not-found"
        for who in (m1002, staff):
            async with s.get(f"{base}{path}", headers=who) as r:
                assert r.status == 200, path
    claim = {"member_id": "1001", "provider_id": "PRV-001", "service_date": "2026-03-14",
             "items": [{"benefit_code": "CONS-GP", "amount": 150000}]}
    async with s.post(f"{base}/api/v1/claims", json=claim, headers=m1002) as r:
        assert r.status == 403
    ops = {"operations": [{"local_id": "x-1", "method": "POST", "path": "/api/v1/claims",
                           "body": claim, "timestamp": "2026-11-20T08:00:00Z"}]}
    async with s.post(f"{base}/offline/queue", json=ops, headers=m1002) as r:
        assert (await r.json())["results"][0]["status"] == 403
    check = {"member_id": "1001", "benefit_code": "CONS-GP", "amount": 1000}
    async with s.post(f"{base}/api/v1/benefits/check", json=check, headers=m1002) as r:
        assert r.status == 403
    # a gzip body reaches the claims service whole (it used to be a 500)
    own = {**claim, "member_id": "1002"}
    async with s.post(f"{base}/api/v1/claims", data=gzip.compress(orjson.dumps(own)),
                      headers={**m1002, "Content-Encoding": "gzip",
                               "Content-Type": "application/json"}) as r:
        assert r.status == 201
        assert (await r.json())["member_id"] == "1002"


async def test_demo_real_time_routes(demo: Any) -> None:
    base, s = demo
    token = make_token(DEMO_SECRET, "1001", ["member"], 600)
    async with s.ws_connect(base.replace("http", "ws") + "/api/v1/support/chat",
                            headers={"Authorization": f"Bearer {token}"},
                            protocols=("chat.v1",)) as ws:
        assert ws.protocol == "chat.v1"
        assert "Hello 1001" in (await ws.receive_json())["text"]
        await ws.send_str("my claim?")
        assert "my claim?" in (await ws.receive_json())["text"]
        await ws.send_str("bye")
        msg = await ws.receive()
        assert (msg.data, msg.extra) == (4000, "chat ended")
    async with s.get(f"{base}/api/v1/members/1001/notifications/stream",
                     headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "41"}) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        assert await r.content.readline() == b"id: 42\n"
    async with s.get(f"{base}/api/v1/members/1002/notifications/stream",
                     headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 403


async def test_demo_pushes_an_event_to_a_device_without_a_stream(demo: Any,
                                                                  tmp_path: Path) -> None:
    """One publish: the app with its stream open gets the event there, the subscribed
    device without one gets it through the demo's Web Push service, decrypted only with
    its own key."""
    from edge.demo.pushclient import Subscription, register

    base, s = demo
    found = re.search(r'endpoints: \["(http://127\.0\.0\.1:\d+)"\]',
                      (tmp_path / "config" / "edge.yaml").read_text())
    assert found is not None
    sub = Subscription(found[1])
    member = make_token(DEMO_SECRET, "1001", ["member"], 600)
    ready = asyncio.Event()
    messages = sub.messages(s, ready)
    pushed = asyncio.ensure_future(messages.__anext__())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await register(s, base, member, sub, "laptop-1", ["member:1001"])
        async with s.get(f"{base}/events?topic=member:1001", headers={
                "Authorization": f"Bearer {member}", "X-Device-ID": "phone-1"}) as stream:
            assert stream.status == 200
            async with s.post(f"{base}/_edge/publish", headers={
                    "Authorization": f"Bearer {DEMO_PUBLISHER_KEY}"}, json={
                    "topic": "member:1001", "event": "claim-update",
                    "data": {"claim": "CLM-000062", "status": "paid"},
                    "push": {"title": "Claim paid", "body": "CLM-000062"}}) as r:
                published = await r.json()
            assert published["push"] == {"queued": 1}
            async with asyncio.timeout(10):
                while not (line := await stream.content.readline()).startswith(b"data:"):
                    pass
            assert orjson.loads(line[5:])["data"]["claim"] == "CLM-000062"
        doc = await asyncio.wait_for(pushed, 10)
        assert (doc["id"], doc["title"], doc["data"]["status"]) == (
            published["id"], "Claim paid", "paid")
    finally:
        pushed.cancel()
        await messages.aclose()


async def test_revisits_cost_nothing_when_nothing_changed(demo: Any) -> None:
    """The app pattern the README shows: keep each screen and its ETag, follow the member's
    invalidate events, and revisit only what they name — with If-None-Match and A-IM."""
    base, s = demo
    member = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "1001", ["member"], 600),
              "X-Device-Type": "phone", "Accept-Encoding": "br"}
    admin = {"Authorization": "Bearer " + make_token(DEMO_SECRET, "ops", ["admin"], 600)}
    screens = {"dashboard": "/api/v1/members/1001/dashboard",
               "claims": "/api/v1/members/1001/claims?size=5",
               "provider": "/api/v1/providers/PRV-001"}
    held: dict[str, str] = {}
    for name, path in screens.items():
        async with s.get(base + path, headers=member) as r:
            assert r.status == 200, (name, await r.text())
            held[name] = r.headers["ETag"]
    claim = None
    async with s.get(base + screens["claims"], headers={**member, "Accept-Encoding": "identity",
                                                        "X-Edge-Keymap": "none"}) as r:
        claim = (await r.json())["items"][0]["id"]
    async with s.get(f"{base}/events?topic=member:1001", headers=member) as events:
        assert events.status == 200
        async with s.post(f"{base}/api/v1/members/1001/claims/{claim}/status", headers=admin,
                          json={"status": "paid"}) as r:
            assert r.status == 200, await r.text()
        named: set[str] = set()
        async with asyncio.timeout(10):
            while not named:
                line = await events.content.readline()
                if line.startswith(b"data: ") and b'"tags"' in line:
                    named.update(orjson.loads(line[6:])["data"]["tags"])
    assert {"member:1001", "claims:1001"} <= named
    # the provider screen is tagged with nothing the event named: no request at all; asked
    # anyway, it is a 304 of a few hundred bytes
    async with s.get(base + screens["provider"],
                     headers={**member, "If-None-Match": held["provider"]}) as r:
        assert r.status == 304 and not await r.read()
    # the dashboard was named: a delta from the version the app holds
    async with s.get(base + screens["dashboard"], headers={
            **member, "If-None-Match": held["dashboard"], "A-IM": "json-patch"}) as r:
        assert r.status == 226, await r.text()
        assert r.headers["IM"] == "json-patch"
        assert len(await r.read()) < 1000
