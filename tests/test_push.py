"""Push notifications end to end through Web Push: devices register (member tokens, the
topic rules of /events), an event published with `push` options reaches the stand-in push
service encrypted for each offline device once, devices with an open stream get it there
instead (`only-if-offline`), gone subscriptions are unregistered, a 429 is retried."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .conftest import bearer, services_yaml
from .push_standins.webpush import WebPushService
from .test_sse import Stream

KEY = "publisher-key-" + "x" * 20
VAPID = ec.generate_private_key(ec.SECP256R1())
VAPID_RAW = base64.urlsafe_b64encode(
    VAPID.private_numbers().private_value.to_bytes(32, "big")).rstrip(b"=").decode()

PUSH = """
auth:
  jwt:
    algorithms: [HS256]
    secret_env: EDGE_JWT_SECRET
events:
  topics:
    - {topic: public, public: true}
    - {topic: "member:{sub}"}
    - {topic: "claims:{sub}"}
  publisher_keys_env: [PUBKEY]
push:
  webpush:
    vapid_private_key_env: EDGE_VAPID_KEY
    subject: mailto:ops@example.com
    endpoints: ["http://127.0.0.1:*"]
  max_per_identity: 2
  retries: 2
  by_device:
    watch: {urgency: high, ttl: 60s}
"""
ROUTES = {"r.yaml": "route: GET /x\nsource: {service: svc, path: /x}\n"}
REGS = "/_edge/push/registrations"


@pytest.fixture
async def push(make_edge: Any, upstream: Any, backend_env: dict[str, str]
               ) -> tuple[Any, WebPushService, str, str, str]:
    """An edge pushing to a stand-in Web Push service, on each backend. Members are named
    afresh for each test (a shared Redis keeps registrations)."""
    service = WebPushService()
    base = await upstream(service.app())
    edge = await make_edge(services_yaml({"svc": base}, PUSH), ROUTES, env={
        "PUBKEY": KEY, "EDGE_VAPID_KEY": VAPID_RAW, **backend_env})
    return edge, service, base, f"m{secrets.token_hex(6)}", f"m{secrets.token_hex(6)}"


async def register(edge: Any, service: WebPushService, base: str, sub: str, name: str,
                   topics: list[str], **extra: Any) -> Any:
    subscription = service.subscriber(name).subscription(base)
    resp = await edge.post(REGS, json={"platform": "webpush", "subscription": subscription,
                                       "device_id": name, "topics": topics, **extra},
                           headers=bearer(sub))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def publish(edge: Any, topics: list[str], data: Any, **push: Any) -> Any:
    body = {"topics": topics, "event": "claim-update", "data": data, "push": push}
    resp = await edge.post("/_edge/publish", data=orjson.dumps(body),
                           headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def settle(service: WebPushService, n: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while len(service.received) < n:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and nothing more arrives


async def test_a_device_registers_for_its_own_topics(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    sub = service.subscriber("phone-1").subscription(base)
    doc = {"platform": "webpush", "subscription": sub, "device_id": "phone-1",
           "topics": [f"member:{ME}"]}
    assert (await edge.post(REGS, json=doc)).status == 401
    other = {**doc, "topics": [f"member:{OTHER}"]}
    assert (await edge.post(REGS, json=other, headers=bearer(ME))).status == 403
    elsewhere = {**doc, "subscription": {**sub, "endpoint": "https://evil.example/p/1"}}
    resp = await edge.post(REGS, json=elsewhere, headers=bearer(ME))
    assert resp.status == 400 and "push.webpush.endpoints" in (await resp.json())["detail"]
    reg = await register(edge, service, base, ME, "phone-1", [f"member:{ME}", "public"])
    assert reg["topics"] == [f"member:{ME}", "public"] and reg["platform"] == "webpush"
    mine = await (await edge.get(REGS, headers=bearer(ME))).json()
    assert [r["id"] for r in mine["registrations"]] == [reg["id"]]
    assert "endpoint" not in str(mine)  # a device's address is not shown back
    assert (await edge.get(REGS, headers=bearer(OTHER))).status == 200
    assert (await edge.delete(f"{REGS}/{reg['id']}", headers=bearer(OTHER))).status == 404
    assert (await edge.delete(f"{REGS}/{reg['id']}", headers=bearer(ME))).status == 204
    assert (await (await edge.get(REGS, headers=bearer(ME))).json()) == {
        "registrations": []}


async def test_the_vapid_public_key_is_served(push: Any) -> None:
    edge, *_ = push
    doc = await (await edge.get("/_edge/push/vapid")).json()
    raw = base64.urlsafe_b64decode(doc["public_key"] + "==")
    assert raw == VAPID.public_key().public_bytes(Encoding.X962,
                                                  PublicFormat.UncompressedPoint)


async def test_an_event_reaches_an_offline_device_encrypted_once(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    await register(edge, service, base, ME, "phone-1", [f"member:{ME}", f"claims:{ME}"])
    out = await publish(edge, [f"member:{ME}", f"claims:{ME}"], {"claim": "CLM-1"},
                        title="Claim paid", body="CLM-1 was paid", collapse_key="CLM-1",
                        urgency="high")
    assert out["push"] == {"queued": 1}  # two of its topics: one push
    await settle(service, 1)
    (got,) = service.received
    assert got.payload == {"id": out["id"], "topic": f"member:{ME}", "event": "claim-update",
                           "data": {"claim": "CLM-1"}, "title": "Claim paid",
                           "body": "CLM-1 was paid"}
    assert got.headers["Urgency"] == "high" and got.headers["Topic"] == "CLM-1"
    assert got.headers["TTL"] == "86400"
    assert got.claims["aud"] == base and got.claims["sub"] == "mailto:ops@example.com"


async def test_a_device_with_an_open_stream_gets_it_there(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    await register(edge, service, base, ME, "phone-1", [f"member:{ME}"])
    await register(edge, service, base, ME, "tablet-1", [f"member:{ME}"])
    resp = await edge.get(f"/events?topic=member:{ME}", headers={
        **bearer(ME), "X-Device-ID": "phone-1"})
    stream = Stream(resp)
    out = await publish(edge, [f"member:{ME}"], {"n": 1})  # only-if-offline: the default
    got = await stream.next()
    assert got["id"] == out["id"]
    await settle(service, 1)
    assert [r.name for r in service.received] == ["tablet-1"]
    await publish(edge, [f"member:{ME}"], {"n": 2}, mode="always")
    await settle(service, 3)
    assert sorted(r.name for r in service.received[1:]) == ["phone-1", "tablet-1"]
    await publish(edge, [f"member:{ME}"], {"n": 3}, mode="never")
    await stream.close()
    # the stream is closed: the phone is offline again
    for _ in range(100):
        if not edge.edge.state.hub.presence.local:
            break
        await asyncio.sleep(0.01)
    await publish(edge, [f"member:{ME}"], {"n": 4})
    await settle(service, 5)
    assert sorted(r.payload["data"]["n"] for r in service.received[3:]) == [4, 4]
    metrics = await (await edge.get("/metrics")).text()
    assert 'edge_push_deliveries_total{outcome="online",provider="webpush"} 1.0' in metrics


async def test_a_gone_subscription_is_unregistered(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    await register(edge, service, base, ME, "phone-1", [f"member:{ME}"])
    service.answer("phone-1", 410)
    await publish(edge, [f"member:{ME}"], {"n": 1})
    for _ in range(200):
        mine = await (await edge.get(REGS, headers=bearer(ME))).json()
        if not mine["registrations"]:
            break
        await asyncio.sleep(0.02)
    assert mine == {"registrations": []}
    assert service.refused == [("phone-1", 410)]
    metrics = await (await edge.get("/metrics")).text()
    assert 'edge_push_registrations_total{platform="webpush",result="gone"} 1.0' in metrics


async def test_a_busy_push_service_is_retried_after_its_retry_after(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    await register(edge, service, base, ME, "phone-1", [f"member:{ME}"])
    service.answer("phone-1", 429, retry_after="0")
    service.answer("phone-1", 503)
    await publish(edge, [f"member:{ME}"], {"n": 1})
    await settle(service, 1, timeout=10)
    assert service.refused == [("phone-1", 429), ("phone-1", 503)]
    # past push.retries, a delivery is given up
    service.answer("phone-1", 500, times=3)
    await publish(edge, [f"member:{ME}"], {"n": 2})
    for _ in range(300):
        metrics = await (await edge.get("/metrics")).text()
        if 'outcome="expired"' in metrics:
            break
        await asyncio.sleep(0.05)
    assert 'edge_push_deliveries_total{outcome="expired",provider="webpush"} 1.0' in metrics
    assert len(service.received) == 1


async def test_a_caller_s_devices_are_bounded(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    first = await register(edge, service, base, ME, "d1", [f"member:{ME}"])
    await asyncio.sleep(0.01)
    await register(edge, service, base, ME, "d2", [f"member:{ME}"])
    await register(edge, service, base, ME, "d3", [f"member:{ME}"])  # max_per_identity: 2
    mine = await (await edge.get(REGS, headers=bearer(ME))).json()
    assert first["id"] not in [r["id"] for r in mine["registrations"]]
    assert [r["device_id"] for r in mine["registrations"]] == ["d2", "d3"]
    await publish(edge, [f"member:{ME}"], {"n": 1})
    await settle(service, 2)
    assert sorted(r.name for r in service.received) == ["d2", "d3"]


async def test_per_device_class_defaults(push: Any) -> None:
    edge, service, base, ME, OTHER = push
    resp = await edge.post(REGS, json={
        "platform": "webpush", "subscription": service.subscriber("w").subscription(base),
        "device_id": "w", "topics": [f"member:{ME}"]},
        headers={**bearer(ME), "X-Device-Type": "watch"})
    assert resp.status == 201 and (await resp.json())["device"] == "watch"
    await publish(edge, [f"member:{ME}"], {"n": 1})
    await settle(service, 1)
    assert service.received[0].headers["Urgency"] == "high"
    assert service.received[0].headers["TTL"] == "60"


def test_push_config_is_checked(tmp_path: Any) -> None:
    from edge.config import ConfigError, load_config
    from edge.config.env import env_problems

    from .conftest import write_config

    no_events = PUSH.replace("events:\n  topics:", "nothing:\n  topics:", 1).split(
        "nothing:")[0] + "push:\n  webpush: {vapid_private_key_env: EDGE_VAPID_KEY}\n" \
        "  by_device: {fridge: {urgency: low}}\n"
    root = write_config(tmp_path / "a", services_yaml({"svc": "http://127.0.0.1:1"},
                                                      no_events), ROUTES)
    with pytest.raises(ConfigError) as e:
        load_config(root, {})
    text = "\n".join(e.value.problems)
    assert "push: delivers events published to topics: it needs `events`" in text
    assert "push.by_device: 'fridge' is not one of devices.classes" in text
    root = write_config(tmp_path / "b", services_yaml({"svc": "http://127.0.0.1:1"}, PUSH),
                        ROUTES)
    config = load_config(root, {"EDGE_JWT_SECRET": "s" * 32, "PUBKEY": KEY})
    assert env_problems(config) == []  # no key: Web Push is off, like publishing
    config = load_config(root, {"EDGE_JWT_SECRET": "s" * 32, "PUBKEY": KEY,
                                "EDGE_VAPID_KEY": "not a key"})
    (problem,) = env_problems(config)
    line = (root / "edge.yaml").read_text().splitlines().index("  webpush:") + 1
    assert f"edge.yaml:{line}:3: error: push.webpush: the VAPID key is neither PEM nor " \
        "a base64url" in problem


async def test_one_event_reaches_web_apns_and_fcm_devices(make_edge: Any, upstream: Any,
                                                          tmp_path: Any) -> None:
    """Through the edge to all three kinds of push service (each a stand-in checking what
    the real one checks): an iPhone, an Android phone and a browser of one member, each
    once; an iPhone whose token APNs no longer knows is unregistered."""
    from cryptography.hazmat.primitives import serialization

    from .push_standins.apns import ApnsStandIn
    from .push_standins.fcm import FcmStandin

    me = f"m{secrets.token_hex(6)}"
    team_key = ec.generate_private_key(ec.SECP256R1())
    p8 = tmp_path / "AuthKey.p8"
    p8.write_bytes(team_key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = team_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    fcm = FcmStandin()
    await fcm.start(upstream)
    account = fcm.write_service_account(tmp_path / "fcm.json")
    web = WebPushService()
    web_base = await upstream(web.app())
    async with ApnsStandIn(tmp_path / "apns", "TEAM123456", "KEY1234567", public,
                           ["com.example.app"]) as apns:
        extra = PUSH.replace("  max_per_identity: 2", f"""\
  apns:
    team_id: TEAM123456
    key_id: KEY1234567
    private_key_file: {p8}
    url: {apns.url}
    ca_file: {apns.ca_file}
    bundle_ids: [com.example.app]
  fcm:
    service_account_file: {account}
    url: {fcm.url}
  max_per_identity: 5""")
        edge = await make_edge(services_yaml({"svc": web_base}, extra), ROUTES,
                               env={"PUBKEY": KEY, "EDGE_VAPID_KEY": VAPID_RAW})
        try:
            tokens = {"apns": "a1" * 32, "fcm": "fcm-token-" + "x" * 40}
            for platform, token in tokens.items():
                resp = await edge.post(REGS, headers=bearer(me), json={
                    "platform": platform, "token": token, "app": "com.example.app",
                    "device_id": platform, "topics": [f"member:{me}"]})
                assert resp.status == 201, await resp.text()
            gone = await edge.post(REGS, headers=bearer(me), json={
                "platform": "apns", "token": "b2" * 32, "app": "com.example.app",
                "device_id": "old-iphone", "topics": [f"member:{me}"]})
            assert gone.status == 201
            apns.answer("b2" * 32, 410, "Unregistered")
            resp = await edge.post(REGS, headers=bearer(me), json={
                "platform": "apns", "token": "c3" * 32, "app": "com.other.app",
                "device_id": "x", "topics": [f"member:{me}"]})
            assert resp.status == 400  # not one of apns.bundle_ids
            await register(edge, web, web_base, me, "browser", [f"member:{me}"])
            out = await publish(edge, [f"member:{me}"], {"claim": "CLM-9"},
                                title="Claim paid", body="CLM-9")
            assert out["push"] == {"queued": 4}
            async with asyncio.timeout(10):
                while not (apns.received and fcm.messages and web.received
                           and apns.refused):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            (ios,) = apns.received
            assert ios.token == "a1" * 32 and ios.body["aps"]["alert"]["title"] == "Claim paid"
            assert ios.body["edge"]["id"] == out["id"]
            (android,) = fcm.messages
            assert android["token"] == tokens["fcm"] and android["data"]["id"] == out["id"]
            assert android["notification"] == {"title": "Claim paid", "body": "CLM-9"}
            assert [r.name for r in web.received] == ["browser"]
            for _ in range(100):
                mine = await (await edge.get(REGS, headers=bearer(me))).json()
                if len(mine["registrations"]) == 3:
                    break
                await asyncio.sleep(0.02)
            assert sorted(r["device_id"] for r in mine["registrations"]) == [
                "apns", "browser", "fcm"]
        finally:
            await edge.close()
            await edge.edge.close()
