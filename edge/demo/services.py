"""The demo upstream services: one aiohttp app factory each, and the ``SERVICES`` registry."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import orjson
from aiohttp import web

from edge.demo import vocab
from edge.demo.chaos import chaos_app
from edge.demo.claims import claims_app
from edge.demo.common import (
    fail,
    json_response,
    make_app,
    not_modified,
    paginate,
    with_validators,
)
from edge.demo.data import NOW, Json, get_dataset
from edge.demo.images import ImageCache, render_document, render_logo, render_photo

# -- members -------------------------------------------------------------------------------


async def get_member(request: web.Request) -> web.Response:
    member = get_dataset().members.get(request.match_info["member_id"])
    if member is None:
        fail(404, "member not found")
    return json_response(member)


async def list_members(request: web.Request) -> web.Response:
    return json_response(paginate(request, list(get_dataset().members.values())))


def members_app() -> web.Application:
    """GET /members/{id}, GET /members?page=&size=."""
    return make_app(
        "members",
        [web.get("/members", list_members), web.get("/members/{member_id}", get_member)],
    )


# -- providers -----------------------------------------------------------------------------

IMAGES = web.AppKey("images", ImageCache)
IMAGES_LAST_MODIFIED = NOW.replace(hour=0, minute=0, second=0)


async def get_provider(request: web.Request) -> web.Response:
    return json_response(_provider(request))


def _provider(request: web.Request) -> Json:
    provider = get_dataset().providers.get(request.match_info["provider_id"])
    if provider is None:
        fail(404, "provider not found")
    return provider


async def list_providers(request: web.Request) -> web.Response:
    """Providers filtered by ``type`` and ``city`` (case-insensitive part: "jakarta")."""
    city = request.query.get("city", "").casefold()
    kind = request.query.get("type", "")
    if kind and kind not in vocab.SPECIALTIES:
        fail(422, "type must be one of hospital, clinic, pharmacy", value=kind)
    found = [
        provider
        for provider in get_dataset().providers.values()
        if city in provider["address"]["city"].casefold()
        and (not kind or provider["type"] == kind)
    ]
    return json_response(paginate(request, found))


async def _image(
    request: web.Request, key: str, content_type: str, render: Callable[[], bytes]
) -> web.Response:
    image = await request.app[IMAGES].get(key, content_type, render)
    if not_modified(request, image.etag, IMAGES_LAST_MODIFIED):
        response = web.Response(status=304)
    else:
        response = web.Response(body=image.body, content_type=content_type)
    return with_validators(response, image.etag, IMAGES_LAST_MODIFIED, "public, max-age=86400")


async def get_logo(request: web.Request) -> web.Response:
    provider = _provider(request)
    render = partial(render_logo, provider["id"], provider["name"])
    return await _image(request, f"logo/{provider['id']}", "image/png", render)


async def get_photo(request: web.Request) -> web.Response:
    provider = _provider(request)
    number = int(request.match_info["number"])
    if not 1 <= number <= len(provider["photos"]):
        fail(404, "photo not found")
    render = partial(render_photo, provider["id"], number)
    return await _image(request, f"photo/{provider['id']}/{number}", "image/jpeg", render)


async def get_document(request: web.Request) -> web.Response:
    data = get_dataset()
    doc_id = request.match_info["doc_id"]
    claim_id = data.documents.get(doc_id)
    if claim_id is None:
        fail(404, "document not found")
    claim = data.claims[claim_id]
    kind = next(doc["kind"] for doc in claim["documents"] if doc["id"] == doc_id)
    total = f"{claim['total_amount']:,}".replace(",", ".")
    lines = [claim["claim_number"], claim["provider"]["name"], f"Total: Rp {total}"]
    render = partial(render_document, doc_id, kind, lines)
    return await _image(request, f"document/{doc_id}", "image/jpeg", render)


def providers_app() -> web.Application:
    """Provider directory plus its logos, photos and claim document scans."""
    app = make_app(
        "providers",
        [
            web.get("/providers", list_providers),
            web.get("/providers/documents/{doc_id}.jpg", get_document),
            web.get("/providers/{provider_id}", get_provider),
            web.get("/providers/{provider_id}/logo.png", get_logo),
            web.get(r"/providers/{provider_id}/photos/{number:\d+}.jpg", get_photo),
        ],
    )
    app[IMAGES] = ImageCache()
    return app


# -- benefits ------------------------------------------------------------------------------


async def get_benefits(request: web.Request) -> web.Response:
    summary = get_dataset().benefits.get(request.match_info["member_id"])
    if summary is None:
        fail(404, "member not found")
    return json_response(summary)


async def check_benefit(request: web.Request) -> web.Response:
    """Eligibility of one amount under one benefit code, against the member's usage."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        fail(422, "body must be JSON")
    if not isinstance(body, dict):
        fail(422, "invalid eligibility check", details=["body: must be a JSON object"])
    data = get_dataset()
    member_id, code, amount = body.get("member_id"), body.get("benefit_code"), body.get("amount")
    errors = []
    if not isinstance(member_id, str) or member_id not in data.members:
        errors.append("member_id: unknown member")
    if not isinstance(code, str) or code not in vocab.BENEFIT_CODES:
        errors.append("benefit_code: unknown benefit code")
    if type(amount) is not int or amount <= 0:
        errors.append("amount: must be a positive integer (IDR)")
    if errors:
        fail(422, "invalid eligibility check", details=errors)
    assert isinstance(member_id, str) and isinstance(code, str) and isinstance(amount, int)
    member, summary = data.members[member_id], data.benefits[member_id]
    policy = data.policy_for_member(member_id)
    assert policy is not None
    prefix = code.split("-")[0]
    category = next(c for c in summary["categories"] if c["code"] == prefix)
    kind = next(c[2] for c in vocab.CATEGORIES if c[0] == prefix)
    coverage = policy["coverage"][kind]
    if member["status"] != "active":
        eligible, reason = False, f"membership is {member['status']}"
    elif not coverage["covered"]:
        plan = member["plan"]["name"]
        eligible, reason = False, f"{category['name']} is not covered by the {plan} plan"
    elif amount > category["remaining"]:
        eligible, reason = False, f"amount exceeds the remaining {category['name']} limit"
    else:
        eligible, reason = True, "covered"
    copay = amount * coverage["copay_percentage"] // 100 if eligible else None
    return json_response(
        {
            "member_id": member_id,
            "benefit_code": code,
            "category": prefix,
            "amount": amount,
            "eligible": eligible,
            "reason": reason,
            "remaining_amount": category["remaining"],
            "copay_percentage": coverage["copay_percentage"],
            "copay_amount": copay,
            "covered_amount": None if copay is None else amount - copay,
        }
    )


def benefits_app() -> web.Application:
    """GET /benefits/{member_id}/summary, POST /benefits/check."""
    return make_app(
        "benefits",
        [
            web.get("/benefits/{member_id}/summary", get_benefits),
            web.post("/benefits/check", check_benefit),
        ],
    )


# -- policies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    body: bytes
    etag: str
    last_modified: datetime


@dataclass
class _PolicyBodies:
    """Policies serialized once, with an ETag from the content."""

    by_id: dict[str, _Encoded] = field(default_factory=dict)

    def get(self, policy: Json) -> _Encoded:
        encoded = self.by_id.get(policy["id"])
        if encoded is None:
            body = orjson.dumps(policy)
            digest = hashlib.sha256(body).hexdigest()[:16]
            etag = f"{policy['id']}-v{policy['version']}-{digest}"
            modified = datetime.fromisoformat(policy["updated_at"])
            encoded = self.by_id[policy["id"]] = _Encoded(body, etag, modified)
        return encoded


POLICY_BODIES = web.AppKey("policy_bodies", _PolicyBodies)


async def get_policy(request: web.Request) -> web.Response:
    policy = get_dataset().policies.get(request.match_info["policy_id"])
    if policy is None:
        fail(404, "policy not found")
    encoded = request.app[POLICY_BODIES].get(policy)
    if not_modified(request, encoded.etag, encoded.last_modified):
        response = web.Response(status=304)
    else:
        response = web.Response(body=encoded.body, content_type="application/json")
    return with_validators(response, encoded.etag, encoded.last_modified, "private, no-cache")


async def list_policies(request: web.Request) -> web.Response:
    policies = get_dataset().policies
    member_id = request.query.get("member_id")
    if member_id is None:
        return json_response(paginate(request, list(policies.values())))
    found = policies.get(f"POL-{member_id}")
    return json_response(paginate(request, [found] if found else []))


def policies_app() -> web.Application:
    """GET /policies/{id} (ETag, 304), GET /policies?member_id=."""
    app = make_app(
        "policies",
        [web.get("/policies", list_policies), web.get("/policies/{policy_id}", get_policy)],
    )
    app[POLICY_BODIES] = _PolicyBodies()
    return app


# -- notifications -------------------------------------------------------------------------


async def list_notifications(request: web.Request) -> web.Response:
    data = get_dataset()
    member_id = request.query.get("member_id")
    unread = request.query.get("unread", "")
    if unread not in ("", "true", "false"):
        fail(422, "unread must be true or false", value=unread)
    if member_id is None:
        pool = sorted(
            (n for own in data.notifications.values() for n in own),
            key=lambda n: n["created_at"],
            reverse=True,
        )
    else:
        pool = data.notifications.get(member_id, [])
    found = [n for n in pool if not unread or n["read"] == (unread == "false")]
    page = paginate(request, found)
    page["unread_count"] = sum(1 for n in pool if not n["read"])
    return json_response(page)


async def support_chat(request: web.Request) -> web.WebSocketResponse:
    """A support chat over a WebSocket: the agent answers every message, naming the member
    the edge says is asking (X-Edge-Subject); `bye` ends it with 4000."""
    ws = web.WebSocketResponse(protocols=("chat.v1",), heartbeat=None)
    await ws.prepare(request)
    member = request.headers.get("X-Edge-Subject", "guest")
    await ws.send_json({"from": "agent", "text": f"Hello {member}, how can we help?"})
    async for msg in ws:
        if msg.type is not web.WSMsgType.TEXT:
            continue
        if msg.data.strip().lower() == "bye":
            await ws.close(code=4000, message=b"chat ended")
            break
        await ws.send_json({"from": "agent", "text": f"Noted: {msg.data[:200]!r}. "
                            "A claims specialist will follow up."})
    return ws


async def notification_stream(request: web.Request) -> web.StreamResponse:
    """The member's notifications as they happen, as `text/event-stream`: one every few
    seconds, numbered; a reconnect with Last-Event-ID goes on from there."""
    member_id = request.query.get("member_id", "")
    try:
        n = int(request.headers.get("Last-Event-ID", "0"))
    except ValueError:
        n = 0
    every = float(request.query.get("every", "3"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    try:
        while True:
            n += 1
            event = {"member_id": member_id, "title": f"Claim update #{n}",
                     "body": "A claim of yours changed status."}
            await resp.write(f"id: {n}\nevent: notification\ndata: "
                             f"{json.dumps(event)}\n\n".encode())
            await asyncio.sleep(min(max(every, 0.1), 60))
    except ConnectionResetError:  # the reader went away: the stream ends
        return resp


def notifications_app() -> web.Application:
    """GET /notifications?member_id=&unread=true|false; /notifications/stream (SSE);
    /chat (a WebSocket)."""
    return make_app("notifications", [web.get("/notifications", list_notifications),
                                      web.get("/notifications/stream", notification_stream),
                                      web.get("/chat", support_chat)])


SERVICES: dict[str, Callable[[], web.Application]] = {
    "members": members_app,
    "claims": claims_app,
    "providers": providers_app,
    "benefits": benefits_app,
    "policies": policies_app,
    "notifications": notifications_app,
    "chaos": chaos_app,
}
