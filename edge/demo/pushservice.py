"""The demo's Web Push service: what Mozilla's or Google's push service is to a browser,
on loopback, so `edge demo` shows pushes with no internet.

    POST /push/{id}       a sender's message (RFC 8030): the VAPID token is checked (an
                          ES256 JWT signed by the key in `k`, for this origin, not expired:
                          401/403 otherwise), the encrypted body kept for TTL seconds
    GET  /subscribe/{id}  a user agent's channel (a WebSocket): the messages kept for it,
                          then each as it comes — still encrypted; only the subscriber's
                          private key opens them (edge/demo/pushclient.py)

Up to 100 messages wait per subscription; the service keeps nothing on disk.
"""

from __future__ import annotations

import base64
import time
from collections import deque

import jwt
import orjson
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric import ec

MAX_WAITING = 100
MAX_BODY = 4096
CHANNELS = web.AppKey("channels", dict)
WAITING = web.AppKey("waiting", dict)


def _key(text: str) -> ec.EllipticCurvePublicKey:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


async def push(request: web.Request) -> web.Response:
    scheme, _, params = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "vapid":
        return web.Response(status=401, text="VAPID required (RFC 8292)")
    try:
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        jwt.decode(fields["t"], _key(fields["k"]), algorithms=["ES256"],
                   audience=f"{request.scheme}://{request.host}")
    except (KeyError, ValueError, jwt.PyJWTError) as e:
        return web.Response(status=403, text=f"bad VAPID token: {e}")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return web.Response(status=413)
    if request.headers.get("Content-Encoding") != "aes128gcm":
        return web.Response(status=415, text="aes128gcm only")
    ttl = int(request.headers.get("TTL", "0") or 0)
    sub = request.match_info["id"]
    message = orjson.dumps({"body": base64.b64encode(body).decode(),
                            "urgency": request.headers.get("Urgency", "normal"),
                            "topic": request.headers.get("Topic")})
    channel = request.app[CHANNELS].get(sub)
    if channel is not None and not channel.closed:
        await channel.send_bytes(message)
    elif ttl > 0:
        waiting = request.app[WAITING].setdefault(sub, deque(maxlen=MAX_WAITING))
        waiting.append((time.time() + ttl, message))
    return web.Response(status=201, headers={"TTL": str(ttl)})


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    sub = request.match_info["id"]
    request.app[CHANNELS][sub] = ws
    now = time.time()
    for until, message in request.app[WAITING].pop(sub, ()):
        if until > now:
            await ws.send_bytes(message)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        if request.app[CHANNELS].get(sub) is ws:
            del request.app[CHANNELS][sub]
    return ws


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def push_service_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY + 1024)
    app[CHANNELS] = {}
    app[WAITING] = {}
    app.router.add_post("/push/{id}", push)
    app.router.add_get("/subscribe/{id}", subscribe)
    app.router.add_get("/health", health)
    return app
