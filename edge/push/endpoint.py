"""The devices' side of push: registering (a member's token), listing and unregistering
their own devices, and the VAPID public key Web Push subscriptions are made with.

    POST   {registrations_path}        {"platform": "webpush", "subscription": {...}, ...}
    GET    {registrations_path}        the caller's devices (never their tokens)
    DELETE {registrations_path}/{id}   one of them
    GET    /_edge/push/vapid           {"public_key": "<base64url>"}

A device may follow only topics the caller could follow on `/events` (the same rules).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..backends import BackendError
from ..context import Exchange
from ..errors import Problem
from ..representation import Answer
from ..sse.hub import valid_topic
from ..wire import read_json_object
from .providers.base import Registration
from .providers.webpush import WebPush, endpoint_allowed, unb64url
from .store import registration_id

if TYPE_CHECKING:
    from ..runtime import Runtime, State

VAPID_PATH = "/_edge/push/vapid"
PLATFORMS = ("webpush", "apns", "fcm")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_APP = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{8,4096}$")


async def push_endpoint(state: State, x: Exchange) -> Answer | None:
    rt = x.rt
    push = rt.config.edge.push
    if push is None:
        return None
    path, method = x.path, x.request.method
    if path == VAPID_PATH:
        provider = rt.push_providers.get("webpush")
        if not isinstance(provider, WebPush):
            raise Problem("resource-not-found", "Web Push is not configured")
        if method not in ("GET", "HEAD"):
            raise Problem("method-not-allowed", "allowed: GET", headers={"Allow": "GET"})
        x.route_name = "push"
        return _json({"public_key": provider.public_key},
                     cache="public, max-age=3600")
    base = push.registrations_path
    if path != base and not path.startswith(base + "/"):
        return None
    x.route_name = "push"
    claims = rt.events_auth.check(x.request, {})
    if not claims or claims.get("sub") is None:
        raise Problem("unauthorized", "registering a device needs a token",
                      headers={"WWW-Authenticate": "Bearer"})
    x.identity = claims
    sub = str(claims["sub"])
    store = state.push.store
    assert store is not None
    try:
        if path == base and method == "POST":
            return await _register(state, x, rt, claims, sub)
        if path == base and method in ("GET", "HEAD"):
            mine = sorted(await store.of(sub), key=lambda r: r.created)
            return _json({"registrations": [_shown(r) for r in mine]})
        if path != base and method == "DELETE":
            reg = await store.get(path[len(base) + 1:])
            if reg is None or reg.sub != sub:
                raise Problem("resource-not-found", "no such registration of yours")
            await store.remove(reg)
            state.metrics.push_registrations.labels(reg.platform, "unregistered").inc()
            return web.Response(status=204, headers={"Cache-Control": "no-store"}), 0
    except BackendError as e:
        raise Problem("backend-unavailable", f"registrations are unavailable: {e}",
                      headers={"Retry-After": "1"}) from None
    allow = "GET, POST" if path == base else "DELETE"
    raise Problem("method-not-allowed", f"allowed: {allow}", headers={"Allow": allow})


async def _register(state: State, x: Exchange, rt: Runtime, claims: dict[str, Any],
                    sub: str) -> Answer:
    push = rt.config.edge.push
    assert push is not None
    doc = await read_json_object(x.request, 16 * 1024, x.bytes_in)
    platform = doc.get("platform")
    if platform not in PLATFORMS:
        raise Problem("bad-request", f"platform: one of {', '.join(PLATFORMS)}")
    if platform not in rt.push_providers:
        raise Problem("bad-request", f"this edge does not push through {platform}")
    keys: dict[str, str] = {}
    app: Any = doc.get("app", "web" if platform == "webpush" else None)
    if platform == "webpush":
        token, keys = _subscription(doc.get("subscription"), push)
    else:
        given = doc.get("token")
        if not isinstance(given, str) or not _TOKEN.match(given):
            raise Problem("bad-request", "token: the device's push token")
        token = given
    if not isinstance(app, str) or not _APP.match(app):
        raise Problem("bad-request", "app: the app's id (an iOS bundle id, an Android "
                      "package)")
    if platform == "apns" and push.apns is not None and push.apns.bundle_ids \
            and app not in push.apns.bundle_ids:
        raise Problem("bad-request", f"app: this edge pushes to "
                      f"{', '.join(push.apns.bundle_ids)} only")
    device_id = doc.get("device_id")
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise Problem("bad-request", "device_id: the id the app sends as X-Device-ID on "
                      "its event stream (letters, digits, '._:-')")
    locale = doc.get("locale")
    if locale is not None and (not isinstance(locale, str) or not _LOCALE.match(locale)):
        raise Problem("bad-request", "locale: a language tag like pt-BR")
    topics = doc.get("topics")
    if not isinstance(topics, list) or not 1 <= len(topics) <= push.max_topics or not all(
            isinstance(t, str) and valid_topic(t) for t in topics):
        raise Problem("bad-request", f"topics: 1 to {push.max_topics} topic names")
    for topic in topics:
        if not rt.topic_rules.allowed(topic, claims):
            raise Problem("forbidden", f"you may not follow topic {topic!r}")
    now = time.time()
    reg = Registration(id=registration_id(platform, token), sub=sub, platform=platform,
                       token=token, app=app, device_id=device_id,
                       topics=list(dict.fromkeys(topics)), created=now,
                       expires=now + push.registration_ttl, device=x.device.device,
                       locale=locale, keys=keys)
    store = state.push.store
    assert store is not None
    dropped = await store.register(reg)
    counter = state.metrics.push_registrations
    counter.labels(platform, "registered").inc()
    for gone in dropped:
        counter.labels(gone.platform, "replaced").inc()
    return _json(_shown(reg), status=201)


def _subscription(given: Any, push: Any) -> tuple[str, dict[str, str]]:
    """A PushSubscription's JSON (`subscription.toJSON()` in a browser)."""
    if not isinstance(given, dict) or not isinstance(given.get("endpoint"), str) \
            or not isinstance(given.get("keys"), dict):
        raise Problem("bad-request", 'subscription: {"endpoint": "https://...", '
                      '"keys": {"p256dh": "...", "auth": "..."}}')
    endpoint, keys = given["endpoint"], given["keys"]
    assert push.webpush is not None
    if not endpoint_allowed(endpoint, push.webpush.endpoints):
        raise Problem("bad-request", "subscription.endpoint: not a push service this edge "
                      "posts to (push.webpush.endpoints)")
    try:
        p256dh, auth = unb64url(keys["p256dh"]), unb64url(keys["auth"])
    except (KeyError, TypeError, ValueError):
        p256dh = auth = b""
    if len(p256dh) != 65 or p256dh[0] != 4 or len(auth) != 16:
        raise Problem("bad-request", "subscription.keys: p256dh (a P-256 point) and auth "
                      "(16 bytes), base64url")
    return endpoint, {"p256dh": keys["p256dh"], "auth": keys["auth"]}


def _shown(reg: Registration) -> dict[str, Any]:
    return {"id": reg.id, "platform": reg.platform, "app": reg.app,
            "device_id": reg.device_id, "device": reg.device, "topics": reg.topics,
            "locale": reg.locale, "created": int(reg.created), "expires": int(reg.expires)}


def _json(doc: Any, status: int = 200, cache: str = "no-store") -> Answer:
    body = orjson.dumps(doc)
    return web.Response(status=status, body=body, content_type="application/json",
                        headers={"Cache-Control": cache}), len(body)
