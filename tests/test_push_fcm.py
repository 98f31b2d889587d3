"""The FCM provider against a stand-in of FCM's HTTP v1 API and Google's token endpoint
(tests/push_standins/fcm.py), which checks the OAuth2 grant and the messages as the real
services do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.config.models import FcmProvider
from edge.push.providers.base import Notification, Registration, Result
from edge.push.providers.fcm import Fcm, build_fcm

from .conftest import free_port
from .push_standins.fcm import FcmStandin

Upstream = Callable[[Any], Awaitable[str]]


def reg(token: str = "fcm-token-1") -> Registration:
    return Registration(id="r1", sub="user-1", platform="fcm", token=token,
                        app="com.example.app", device_id="device-1", topics=["news"],
                        created=time.time(), expires=time.time() + 86400)


def note(**kw: Any) -> Notification:
    fields: dict[str, Any] = {"event_id": "ev-1", "topic": "news", "event": "story",
                              "data": {"id": 7, "title": "Café"}}
    return Notification(**{**fields, **kw})


@pytest.fixture
async def standin(upstream: Upstream) -> FcmStandin:
    s = FcmStandin()
    await s.start(upstream)
    return s


async def build(standin: FcmStandin, tmp_path: Path, *, url: str | None = None,
                **account: Any) -> Fcm:
    """The provider as the edge builds it: from a key file, outside the event loop."""
    path = standin.write_service_account(tmp_path / "service-account.json", **account)
    cfg = FcmProvider(service_account_file=path.name, url=url or standin.url)
    return await asyncio.to_thread(build_fcm, cfg, {}, tmp_path)


@pytest.fixture
async def fcm(standin: FcmStandin, tmp_path: Path) -> AsyncIterator[Fcm]:
    provider = await build(standin, tmp_path)
    yield provider
    await provider.close()


async def test_a_notification_arrives_in_fcm_shape(fcm: Fcm, standin: FcmStandin) -> None:
    before = int(time.time())
    result = await fcm.send(reg(), note(title="Hello", body="A new story", collapse_key="news",
                                        ttl=600, urgency="high"))
    assert result == Result("sent", 200)
    assert standin.rejected == []
    [msg] = standin.messages
    expiration = int(msg["apns"]["headers"].pop("apns-expiration"))
    assert before + 600 <= expiration <= int(time.time()) + 600
    assert msg == {
        "token": "fcm-token-1",
        "data": {"id": "ev-1", "topic": "news", "event": "story",
                 "data": json.dumps({"id": 7, "title": "Café"}, separators=(",", ":"),
                                    ensure_ascii=False)},
        "notification": {"title": "Hello", "body": "A new story"},
        "android": {"ttl": "600s", "priority": "HIGH", "collapse_key": "news"},
        "apns": {"headers": {"apns-priority": "10", "apns-collapse-id": "news"}},
        "webpush": {"headers": {"TTL": "600", "Urgency": "high"}},
    }
    assert json.loads(msg["data"]["data"]) == {"id": 7, "title": "Café"}


async def test_a_data_only_push_has_no_notification(fcm: Fcm, standin: FcmStandin) -> None:
    assert (await fcm.send(reg(), note(data=None))).outcome == "sent"
    [msg] = standin.messages
    assert "notification" not in msg
    assert msg["data"] == {"id": "ev-1", "topic": "news", "event": "story", "data": "null"}
    assert msg["android"] == {"ttl": "86400s", "priority": "NORMAL"}
    # a background push on iOS: content-available, and priority 5 (Apple refuses 10)
    assert msg["apns"]["payload"] == {"aps": {"content-available": 1}}
    assert msg["apns"]["headers"]["apns-priority"] == "5"
    assert msg["webpush"] == {"headers": {"TTL": "86400", "Urgency": "normal"}}


async def test_a_title_alone_is_a_notification_without_body(fcm: Fcm,
                                                            standin: FcmStandin) -> None:
    assert (await fcm.send(reg(), note(title="Only a title"))).outcome == "sent"
    assert standin.messages[0]["notification"] == {"title": "Only a title"}


async def test_data_past_fcms_4kb_is_left_for_the_app_to_fetch(fcm: Fcm,
                                                                standin: FcmStandin) -> None:
    assert (await fcm.send(reg("t1"), note(data="é" * 1900, title="Big"))).outcome == "sent"
    assert (await fcm.send(reg("t2"), note(data="é" * 2100, title="Bigger"))).outcome == "sent"
    small, big = standin.messages
    assert json.loads(small["data"]["data"]) == "é" * 1900
    assert big["data"] == {"id": "ev-1", "topic": "news", "event": "story"}
    assert big["notification"] == {"title": "Bigger"}


async def test_the_access_token_is_fetched_once_and_reused(fcm: Fcm,
                                                           standin: FcmStandin) -> None:
    for i in range(5):
        assert (await fcm.send(reg(f"t{i}"), note())).outcome == "sent"
    assert standin.token_requests == 1
    assert len(set(standin.send_auth)) == 1
    assert [m["token"] for m in standin.messages] == [f"t{i}" for i in range(5)]


async def test_a_token_near_its_end_is_refreshed_before_the_next_send(
        fcm: Fcm, standin: FcmStandin) -> None:
    standin.expires_in = 200  # under the five minutes' margin
    assert (await fcm.send(reg(), note())).outcome == "sent"
    assert (await fcm.send(reg(), note())).outcome == "sent"
    assert standin.token_requests == 2
    first, second = standin.send_auth
    assert first != second  # each send went with a token still valid: no 401 on the way


async def test_a_revoked_token_is_refreshed_once_and_the_send_retried(
        fcm: Fcm, standin: FcmStandin) -> None:
    assert (await fcm.send(reg(), note())).outcome == "sent"
    standin.expire_tokens()
    assert await fcm.send(reg("t2"), note()) == Result("sent", 200)
    assert standin.token_requests == 2
    old, refused, new = standin.send_auth
    assert refused == old != new
    assert [m["token"] for m in standin.messages] == ["fcm-token-1", "t2"]


async def test_30_sends_with_an_expired_token_make_one_token_request(
        fcm: Fcm, standin: FcmStandin) -> None:
    assert (await fcm.send(reg(), note())).outcome == "sent"
    standin.expire_tokens()
    results = await asyncio.gather(*(fcm.send(reg(f"t{i}"), note()) for i in range(30)))
    assert {r.outcome for r in results} == {"sent"}
    assert standin.token_requests == 2
    assert len(standin.messages) == 31
    assert len(standin.send_auth) == 1 + 30 + 30  # each went, was refused, went again


async def test_30_sends_at_once_share_the_first_token_request(fcm: Fcm,
                                                              standin: FcmStandin) -> None:
    standin.expires_in = 200  # every token is "near its end": still one refresh at a time
    results = await asyncio.gather(*(fcm.send(reg(f"t{i}"), note()) for i in range(30)))
    assert {r.outcome for r in results} == {"sent"}
    assert standin.token_requests == 1


@pytest.mark.parametrize(("status", "reason"), [(404, "UNREGISTERED"),
                                                (400, "INVALID_ARGUMENT")])
async def test_an_invalid_registration_token_is_gone(fcm: Fcm, standin: FcmStandin,
                                                     status: int, reason: str) -> None:
    standin.answer("stale", status)
    assert await fcm.send(reg("stale"), note()) == Result("gone", status, reason=reason)
    assert (await fcm.send(reg("fresh"), note())).outcome == "sent"


async def test_429_is_retried_after_its_retry_after(fcm: Fcm, standin: FcmStandin) -> None:
    standin.answer("busy", 429, retry_after=9)
    assert await fcm.send(reg("busy"), note()) == Result("retry", 429, 9.0,
                                                         reason="QUOTA_EXCEEDED")


@pytest.mark.parametrize(("status", "reason"), [(503, "UNAVAILABLE"), (500, "INTERNAL")])
async def test_server_errors_are_retried(fcm: Fcm, standin: FcmStandin, status: int,
                                         reason: str) -> None:
    standin.answer("t", status)
    assert await fcm.send(reg("t"), note()) == Result("retry", status, reason=reason)


async def test_other_refusals_fail_the_message_not_the_registration(
        fcm: Fcm, standin: FcmStandin) -> None:
    standin.answer("other-sender", 403)
    assert await fcm.send(reg("other-sender"), note()) == Result(
        "failed", 403, reason="SENDER_ID_MISMATCH")
    # INVALID_ARGUMENT about the message, not the registration token
    assert await fcm.send(reg(""), note()) == Result("failed", 400, reason="INVALID_ARGUMENT")


async def test_a_404_that_is_not_fcms_drops_nothing(standin: FcmStandin,
                                                    tmp_path: Path) -> None:
    fcm = await build(standin, tmp_path, url=standin.url + "/not-fcm")
    try:
        assert await fcm.send(reg(), note()) == Result("failed", 404, reason="404")
    finally:
        await fcm.close()


async def test_a_wrong_project_fails(standin: FcmStandin, tmp_path: Path) -> None:
    path = standin.write_service_account(tmp_path / "sa.json")
    cfg = FcmProvider(service_account_file=str(path), url=standin.url, project_id="other")
    fcm = await asyncio.to_thread(build_fcm, cfg, {}, tmp_path)
    try:
        assert fcm.send_url.endswith("/v1/projects/other/messages:send")
        assert await fcm.send(reg(), note()) == Result("failed", 403,
                                                       reason="PERMISSION_DENIED")
    finally:
        await fcm.close()


async def test_an_unreachable_fcm_is_retried(standin: FcmStandin, tmp_path: Path) -> None:
    fcm = await build(standin, tmp_path, url=f"http://127.0.0.1:{free_port()}")
    try:
        result = await fcm.send(reg(), note())
    finally:
        await fcm.close()
    assert result.outcome == "retry" and result.status is None
    assert standin.token_requests == 1  # the token came; the send could not go


async def test_an_unreachable_token_endpoint_is_retried(standin: FcmStandin,
                                                        tmp_path: Path) -> None:
    fcm = await build(standin, tmp_path, token_uri=f"http://127.0.0.1:{free_port()}/token")
    try:
        result = await fcm.send(reg(), note())
    finally:
        await fcm.close()
    assert result.outcome == "retry"
    assert standin.messages == []


async def test_a_refused_grant_fails_that_send_and_the_next_asks_again(
        fcm: Fcm, standin: FcmStandin) -> None:
    standin.refuse_tokens = 400
    assert await fcm.send(reg(), note()) == Result("failed", reason="oauth: 400")
    standin.refuse_tokens = None
    assert await fcm.send(reg(), note()) == Result("sent", 200)
    assert standin.token_requests == 2


async def test_sends_waiting_on_a_refused_grant_share_its_answer(
        fcm: Fcm, standin: FcmStandin) -> None:
    standin.refuse_tokens = 503
    results = await asyncio.gather(*(fcm.send(reg(f"t{i}"), note()) for i in range(10)))
    assert set(results) == {Result("failed", reason="oauth: 503")}
    assert standin.token_requests == 1


async def test_while_refreshes_fail_the_old_token_serves_until_it_ends(
        fcm: Fcm, standin: FcmStandin) -> None:
    standin.expires_in = 200  # near its end from the start: each send tries to refresh
    assert (await fcm.send(reg(), note())).outcome == "sent"
    standin.refuse_tokens = 503
    assert await fcm.send(reg("t2"), note()) == Result("sent", 200)
    assert standin.token_requests == 2
    standin.expire_tokens()  # FCM refuses the old one now: nothing left to send with
    assert await fcm.send(reg("t3"), note()) == Result("failed", reason="oauth: 503")
    assert [m["token"] for m in standin.messages] == ["fcm-token-1", "t2"]


async def test_the_service_account_may_come_from_the_environment(
        standin: FcmStandin, tmp_path: Path) -> None:
    env = {"FCM_SERVICE_ACCOUNT": json.dumps(standin.service_account())}
    cfg = FcmProvider(service_account_env="FCM_SERVICE_ACCOUNT", url=standin.url,
                      concurrency=8)
    fcm = build_fcm(cfg, env, tmp_path)
    try:
        assert (fcm.name, fcm.concurrency) == ("fcm", 8)
        assert (await fcm.send(reg(), note())).outcome == "sent"
    finally:
        await fcm.close()


@pytest.fixture
def offline() -> FcmStandin:
    """A stand-in not serving: its service account's JSON, for the checks at build time."""
    s = FcmStandin()
    s.url = "https://oauth2.example"
    return s


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize(("changes", "says"), [
    ({"client_email": None}, "has no client_email"),
    ({"client_email": None, "token_uri": None}, "has no client_email, token_uri"),
    ({"project_id": None}, "has no project_id"),
    ({"private_key": None}, "has no private_key"),
    ({"type": "authorized_user"}, "'authorized_user', not 'service_account'"),
    ({"private_key": "not a key"}, "private_key is not a PEM key"),
    ({"private_key": _ec_pem()}, "private_key is not an RSA key"),
    ({"token_uri": "file:///etc/passwd"}, "token_uri is not an http(s) URL"),
])
def test_a_broken_service_account_is_refused(offline: FcmStandin, tmp_path: Path,
                                             changes: dict[str, Any], says: str) -> None:
    path = offline.write_service_account(tmp_path / "sa.json", **changes)
    with pytest.raises(ValueError, match="push.fcm") as e:
        build_fcm(FcmProvider(service_account_file=str(path)), {}, tmp_path)
    assert says in str(e.value)


def test_the_project_may_come_from_the_config(offline: FcmStandin, tmp_path: Path) -> None:
    path = offline.write_service_account(tmp_path / "sa.json", project_id=None)
    fcm = build_fcm(FcmProvider(service_account_file=str(path), project_id="p1"), {},
                    tmp_path)
    assert fcm.send_url == "https://fcm.googleapis.com/v1/projects/p1/messages:send"


@pytest.mark.parametrize(("text", "says"), [("{not json", "not a JSON object"),
                                            ("[]", "not a JSON object")])
def test_a_key_that_is_not_json_is_refused(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "sa.json").write_text(text)
    with pytest.raises(ValueError, match=f"push.fcm: the service account key is {says}"):
        build_fcm(FcmProvider(service_account_file="sa.json"), {}, tmp_path)


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="push.fcm: cannot read"):
        build_fcm(FcmProvider(service_account_file="absent.json"), {}, tmp_path)
