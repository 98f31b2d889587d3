"""The APNs provider against a local APNs (tests/push_standins/apns.py): real HTTP/2 over
TLS, provider tokens checked with the team key's public half."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edge.config.models import ApnsProvider
from edge.push.providers.apns import Apns, build_apns
from edge.push.providers.base import Notification, Registration, Result

from .conftest import free_port
from .push_standins.apns import ApnsStandIn

TEAM, KEY_ID, BUNDLE = "TEAM123456", "KEY1234567", "com.example.app"
DEVICE = "a1b2c3d4" * 8  # 32 bytes in hex, as APNs device tokens are


def private_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def team_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def p8(tmp_path: Path, team_key: ec.EllipticCurvePrivateKey) -> Path:
    path = tmp_path / f"AuthKey_{KEY_ID}.p8"
    path.write_bytes(private_pem(team_key))
    return path


@pytest.fixture
async def apns(tmp_path: Path, team_key: ec.EllipticCurvePrivateKey
               ) -> AsyncIterator[ApnsStandIn]:
    public = team_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    async with ApnsStandIn(tmp_path / "apns", TEAM, KEY_ID, public, [BUNDLE]) as standin:
        yield standin


def config(apns: ApnsStandIn, p8: Path, **kw: Any) -> ApnsProvider:
    fields: dict[str, Any] = {"team_id": TEAM, "key_id": KEY_ID, "private_key_file": str(p8),
                              "url": apns.url, "ca_file": str(apns.ca_file),
                              "bundle_ids": [BUNDLE], **kw}
    return ApnsProvider(**fields)


Build = Callable[..., Awaitable[Apns]]


@pytest.fixture
async def make_apns(tmp_path: Path, apns: ApnsStandIn, p8: Path) -> AsyncIterator[Build]:
    """build_apns off the loop, as the edge calls it; closed before the stand-in stops."""
    built: list[Apns] = []

    async def build(cfg: ApnsProvider | None = None, env: dict[str, str] | None = None,
                    **kw: Any) -> Apns:
        provider = await asyncio.to_thread(build_apns, cfg or config(apns, p8), env or {},
                                           tmp_path, **kw)
        built.append(provider)
        return provider

    yield build
    for provider in built:
        await provider.close()


def reg(token: str = DEVICE, app: str = BUNDLE) -> Registration:
    now = time.time()
    return Registration(id="r1", sub="alice", platform="apns", token=token, app=app,
                        device_id="d1", topics=["scores"], created=now, expires=now + 86400)


def note(**kw: Any) -> Notification:
    fields: dict[str, Any] = {"event_id": "42", "topic": "scores", "event": "goal",
                              "data": {"home": 1, "away": 0}, **kw}
    return Notification(**fields)


def claims(bearer: str, team_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return jwt.decode(bearer, team_key.public_key(), algorithms=["ES256"])


async def test_alert_push(make_apns: Build, apns: ApnsStandIn,
                          team_key: ec.EllipticCurvePrivateKey) -> None:
    provider = await make_apns()
    assert (provider.name, provider.concurrency) == ("apns", 32)
    sent = note(title="Goal!", body="1–0", urgency="high", ttl=3600, collapse_key="match-7")
    before = time.time()
    assert await provider.send(reg(), sent) == Result("sent", status=200)
    assert apns.refused == []
    [push] = apns.received
    assert push.token == DEVICE and push.http_version == "2"
    h = push.headers
    assert h["authorization"] == f"bearer {push.bearer}"
    assert (h["apns-topic"], h["apns-push-type"], h["apns-priority"]) == (BUNDLE, "alert", "10")
    assert before + 3600 - 1 <= int(h["apns-expiration"]) <= time.time() + 3600
    assert h["apns-collapse-id"] == "match-7"
    assert jwt.get_unverified_header(push.bearer)["kid"] == KEY_ID
    token = claims(push.bearer, team_key)
    assert token["iss"] == TEAM and before - 1 <= token["iat"] <= time.time()
    assert push.body == {"aps": {"alert": {"title": "Goal!", "body": "1–0"}, "sound": "default"},
                         "edge": sent.payload()}


async def test_alert_not_urgent_is_priority_5(make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    assert (await provider.send(reg(), note(body="hi"))).outcome == "sent"
    [push] = apns.received
    assert (push.headers["apns-push-type"], push.headers["apns-priority"]) == ("alert", "5")
    assert push.body["aps"] == {"alert": {"body": "hi"}, "sound": "default"}
    assert "apns-collapse-id" not in push.headers


async def test_background_push(make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    data_only = note(urgency="high", ttl=0)
    assert (await provider.send(reg(), data_only)).outcome == "sent"
    [push] = apns.received
    h = push.headers
    assert (h["apns-push-type"], h["apns-priority"]) == ("background", "5")
    assert h["apns-expiration"] == "0"  # ttl 0: try once, never stored
    assert push.body == {"aps": {"content-available": 1}, "edge": data_only.payload()}


async def test_provider_token_reused_then_reminted_when_expired(
        make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    for _ in range(2):
        assert (await provider.send(reg(), note())).outcome == "sent"
    first = apns.received[0].bearer
    assert apns.received[1].bearer == first
    apns.expire_provider_token(1)
    assert (await provider.send(reg(), note())).outcome == "sent"  # re-minted, sent again
    assert [(r.status, r.reason) for r in apns.refused] == [(403, "ExpiredProviderToken")]
    renewed = apns.received[2].bearer
    assert renewed != first
    assert (await provider.send(reg(), note())).outcome == "sent"
    assert apns.received[3].bearer == renewed
    apns.expire_provider_token(2)  # refused again after the new token: fails, once retried
    assert await provider.send(reg(), note()) == Result("failed", status=403,
                                                        reason="ExpiredProviderToken")
    assert len(apns.refused) == 3 and len(apns.received) == 4


async def test_provider_token_reminted_at_50_minutes(make_apns: Build,
                                                     apns: ApnsStandIn) -> None:
    now = [time.time() - 55 * 60]  # the first token is 55 minutes old by the real clock
    provider = await make_apns(clock=lambda: now[0])
    assert (await provider.send(reg(), note())).outcome == "sent"
    now[0] += 10 * 60
    assert (await provider.send(reg(), note())).outcome == "sent"
    now[0] += 45 * 60  # 55 minutes on: a new one (and APNs' 20-minute rule is kept)
    assert (await provider.send(reg(), note())).outcome == "sent"
    bearers = [push.bearer for push in apns.received]
    assert bearers[0] == bearers[1] != bearers[2]
    assert apns.refused == []


async def test_token_from_another_key_is_refused(make_apns: Build, apns: ApnsStandIn,
                                                 tmp_path: Path) -> None:
    other = tmp_path / "other.p8"
    other.write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1())))
    provider = await make_apns(config(apns, other))
    assert await provider.send(reg(), note()) == Result("failed", status=403,
                                                        reason="InvalidProviderToken")
    assert [r.reason for r in apns.refused] == ["InvalidProviderToken"] * 2  # tried twice
    assert apns.received == []


@pytest.mark.parametrize(("status", "reason", "retry_after", "expected"), [
    (410, "Unregistered", None, Result("gone", status=410, reason="Unregistered")),
    (400, "BadDeviceToken", None, Result("gone", status=400, reason="BadDeviceToken")),
    (400, "DeviceTokenNotForTopic", None,
     Result("gone", status=400, reason="DeviceTokenNotForTopic")),
    (429, "TooManyRequests", 7, Result("retry", status=429, retry_after=7,
                                       reason="TooManyRequests")),
    (429, "TooManyRequests", None, Result("retry", status=429, reason="TooManyRequests")),
    (500, "InternalServerError", None, Result("retry", status=500,
                                              reason="InternalServerError")),
    (503, "ServiceUnavailable", 30, Result("retry", status=503, retry_after=30,
                                           reason="ServiceUnavailable")),
    (400, "BadMessageId", None, Result("failed", status=400, reason="BadMessageId")),
    (413, "PayloadTooLarge", None, Result("failed", status=413, reason="PayloadTooLarge")),
])
async def test_refusals(make_apns: Build, apns: ApnsStandIn, status: int, reason: str,
                        retry_after: int | None, expected: Result) -> None:
    provider = await make_apns()
    apns.answer(DEVICE, status, reason, retry_after)
    assert await provider.send(reg(), note()) == expected
    assert [(r.token, r.status) for r in apns.refused] == [(DEVICE, status)]
    other = "ff" * 32  # the other devices are still served, on the same connection
    assert (await provider.send(reg(other), note())).outcome == "sent"


async def test_unreachable_is_retry(make_apns: Build, apns: ApnsStandIn, p8: Path) -> None:
    provider = await make_apns(config(apns, p8, url=f"https://127.0.0.1:{free_port()}"))
    result = await provider.send(reg(), note())
    assert (result.outcome, result.status) == ("retry", None)
    assert result.reason.startswith("ConnectError")


async def test_untrusted_certificate_is_refused(make_apns: Build, apns: ApnsStandIn,
                                                p8: Path) -> None:
    provider = await make_apns(config(apns, p8, ca_file=None))  # the system CAs only
    result = await provider.send(reg(), note())
    assert result.outcome == "retry" and "CERTIFICATE_VERIFY_FAILED" in result.reason
    assert apns.received == apns.refused == []


async def test_large_payload_drops_data(make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    assert (await provider.send(reg(), note(title="Big", data="x" * 5000))).outcome == "sent"
    [push] = apns.received
    assert push.body["edge"] == {"id": "42", "topic": "scores", "event": "goal"}
    assert push.body["aps"]["alert"] == {"title": "Big"}
    assert len(orjson.dumps(push.body)) <= 4096
    # a title that alone is too big: nothing to leave out
    assert await provider.send(reg(), note(title="x" * 5000)) == Result(
        "failed", reason="payload too large")
    assert len(apns.received) == 1 and apns.refused == []


async def test_collapse_id_cut_at_64_bytes(make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    assert (await provider.send(reg(), note(collapse_key="k" * 100))).outcome == "sent"
    assert (await provider.send(reg(), note(collapse_key="é" * 40))).outcome == "sent"
    first, second = (push.headers["apns-collapse-id"] for push in apns.received)
    assert first == "k" * 64
    assert second.encode("latin-1").decode() == "é" * 32  # whole characters, 64 bytes


async def test_malformed_device_token_is_gone_unsent(make_apns: Build,
                                                     apns: ApnsStandIn) -> None:
    provider = await make_apns()
    result = await provider.send(reg(token="../../3/device/x"), note())
    assert result.outcome == "gone"
    assert apns.received == apns.refused == []


async def test_fifty_at_once_over_one_connection(make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    tokens = [f"{i:064x}" for i in range(50)]
    results = await asyncio.gather(*(provider.send(reg(t), note(event_id=str(i)))
                                     for i, t in enumerate(tokens)))
    assert [r.outcome for r in results] == ["sent"] * 50
    assert sorted(push.token for push in apns.received) == tokens
    assert len({push.connection for push in apns.received}) == 1
    assert len({push.bearer for push in apns.received}) == 1


async def test_key_from_env_var(make_apns: Build, apns: ApnsStandIn,
                                team_key: ec.EllipticCurvePrivateKey) -> None:
    one_line = private_pem(team_key).decode().strip().replace("\n", "\\n")
    cfg = ApnsProvider(team_id=TEAM, key_id=KEY_ID, private_key_env="APNS_KEY", url=apns.url,
                       ca_file="apns/apns-ca.pem")  # relative to the config directory
    provider = await make_apns(cfg, {"APNS_KEY": one_line})
    assert (await provider.send(reg(), note())).outcome == "sent"


async def test_closed_provider_sends_nothing(make_apns: Build, apns: ApnsStandIn) -> None:
    provider = await make_apns()
    assert (await provider.send(reg(), note())).outcome == "sent"
    await provider.close()
    assert (await provider.send(reg(), note())).outcome == "retry"
    await provider.close()
    assert len(apns.received) == 1


@pytest.mark.parametrize(("content", "message"), [
    (b"not a key", "not an unencrypted PEM"),
    (private_pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    (private_pem(rsa.generate_private_key(65537, 2048)), "P-256"),
    (None, "cannot read"),
])
def test_bad_key_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    p8 = tmp_path / "AuthKey.p8"
    if content is not None:
        p8.write_bytes(content)
    cfg = ApnsProvider(team_id=TEAM, key_id=KEY_ID, private_key_file="AuthKey.p8")
    with pytest.raises(ValueError, match="push.apns") as raised:
        build_apns(cfg, {}, tmp_path)
    assert message in str(raised.value)


def test_bad_ca_file(tmp_path: Path, p8: Path) -> None:
    cfg = ApnsProvider(team_id=TEAM, key_id=KEY_ID, private_key_file=str(p8),
                       ca_file="missing.pem")
    with pytest.raises(ValueError, match="push.apns: cannot load ca_file"):
        build_apns(cfg, {}, tmp_path)
