"""A Web Push service stand-in that checks what a real one checks and what the browser
would: the VAPID token (RFC 8292: ES256, signed by the key in `k`, `aud` its own origin,
`exp` within a day, a `sub`), the RFC 8030 headers, and that the payload decrypts with the
subscription's private key (RFC 8291, aes128gcm). Not a mock of the edge: it is the far
side of the wire, on loopback."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    """A browser's subscription: its keys stay here, the edge gets `subscription`."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, base: str) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{base}/push/{self.name}",
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}


@dataclass
class Received:
    name: str
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]


class WebPushService:
    """`app()` to serve; `received` what it took; `answer(name, status, retry_after,
    times)` makes it refuse a subscription's next pushes."""

    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.received: list[Received] = []
        self.refused: list[tuple[str, int]] = []
        self._answers: dict[str, list[tuple[int, str | None]]] = {}

    def subscriber(self, name: str) -> Subscriber:
        sub = self.subscribers[name] = Subscriber(name)
        return sub

    def answer(self, name: str, status: int, retry_after: str | None = None,
               times: int = 1) -> None:
        self._answers.setdefault(name, []).extend([(status, retry_after)] * times)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/push/{name}", self._push)
        return app

    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        sub = self.subscribers.get(name)
        if sub is None:
            return web.Response(status=404)
        queued = self._answers.get(name)
        if queued:
            status, retry_after = queued.pop(0)
            self.refused.append((name, status))
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.Response(status=status, headers=headers)
        claims = self._vapid(request)
        for header in ("TTL", "Urgency"):
            assert header in request.headers, f"no {header} header"
        assert request.headers["Content-Encoding"] == "aes128gcm"
        assert request.headers["Urgency"] in ("very-low", "low", "normal", "high")
        topic = request.headers.get("Topic")
        assert topic is None or (len(topic) <= 32 and all(
            c.isalnum() or c in "-_" for c in topic)), topic
        body = await request.read()
        assert len(body) <= 4096, len(body)
        plain = http_ece.decrypt(body, private_key=sub.key, auth_secret=sub.auth,
                                 version="aes128gcm")
        self.received.append(Received(name, orjson.loads(plain), dict(request.headers),
                                      claims))
        return web.Response(status=201)

    @staticmethod
    def _vapid(request: web.Request) -> dict[str, Any]:
        scheme, _, params = request.headers["Authorization"].partition(" ")
        assert scheme == "vapid", scheme
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        raw = unb64url(fields["k"])
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        origin = f"{request.scheme}://{request.host}"
        claims: dict[str, Any] = jwt.decode(fields["t"], key, algorithms=["ES256"],
                                            audience=origin)
        assert claims["exp"] <= time.time() + 24 * 3600, "exp more than 24 h away"
        assert str(claims["sub"]).startswith(("mailto:", "https:"))
        claims["k"] = fields["k"]
        return claims
