"""Web Push: a message to a browser's (or a PWA's) subscription, through its push service.

- Delivery is RFC 8030: `POST` to the subscription's endpoint with `TTL`, `Urgency` and,
  for a collapse key, `Topic` (newer replaces older in the push service).
- The payload is encrypted for the subscription (RFC 8291 over RFC 8188 `aes128gcm`): a
  fresh P-256 key per message, agreed with the subscription's `p256dh`, salted with its
  `auth` secret. http_ece does the cryptography.
- The sender is identified with VAPID (RFC 8292): `Authorization: vapid t=<JWT>, k=<key>`,
  an ES256 JWT for the endpoint's origin (`aud`), valid 12 hours and reused for 11.
- 404 and 410 mean the subscription is gone; 429 and 5xx are retried (Retry-After
  honoured); 413 and other 4xx fail the message, not the subscription.

Endpoints are the clients' to give, so the edge only posts to push services the config
allows (`webpush.endpoints`): never to an arbitrary URL.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import http_ece
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...config.models import WebPushProvider
from .base import Notification, Registration, Result, read_secret
from .base import retry_after as parse_retry_after

MAX_PAYLOAD = 3993  # plaintext that still fits 4096 bytes once encrypted (one record)
VAPID_LIFE = 12 * 3600
VAPID_REUSE = 11 * 3600


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A VAPID private key: PEM, or the raw 32-byte scalar in base64url."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
    else:
        try:
            raw = unb64url(text)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError("push.webpush: the VAPID key is neither PEM nor a base64url "
                             "32-byte P-256 private key")
        key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("push.webpush: the VAPID key must be a P-256 (prime256v1) key")
    return key


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The key's public half as apps pass it to `pushManager.subscribe`."""
    return b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))


def endpoint_allowed(endpoint: str, patterns: list[str]) -> bool:
    """Is the endpoint's origin one the config allows? (The origin alone: a pattern's
    `*` can't reach into a path or past a user part.)"""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username \
            or parts.password is not None or len(endpoint) > 2048:
        return False
    origin = f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")
    return any(fnmatch.fnmatchcase(origin, p) for p in patterns)


class WebPush:
    name = "webpush"

    def __init__(self, cfg: WebPushProvider, key: ec.EllipticCurvePrivateKey) -> None:
        self.cfg = cfg
        self.concurrency = cfg.concurrency
        self.key = key
        self.public_key = public_key_b64(key)
        self._tokens: dict[str, tuple[str, float]] = {}  # audience -> (JWT, minted at)
        self._session: aiohttp.ClientSession | None = None

    def vapid(self, endpoint: str) -> str:
        """The Authorization header for this endpoint's push service."""
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        token, minted = self._tokens.get(audience, ("", 0.0))
        if now - minted > VAPID_REUSE:
            token = jwt.encode({"aud": audience, "exp": int(now) + VAPID_LIFE,
                                "sub": self.cfg.subject}, self.key, algorithm="ES256")
            self._tokens[audience] = (token, now)
        return f"vapid t={token}, k={self.public_key}"

    @staticmethod
    def encrypt(payload: bytes, reg: Registration) -> bytes:
        sender = ec.generate_private_key(ec.SECP256R1())
        out: bytes = http_ece.encrypt(payload, private_key=sender,
                                      dh=unb64url(reg.keys["p256dh"]),
                                      auth_secret=unb64url(reg.keys["auth"]),
                                      version="aes128gcm")
        return out

    async def send(self, reg: Registration, note: Notification) -> Result:
        if not endpoint_allowed(reg.token, self.cfg.endpoints):
            return Result("gone", reason="endpoint no longer allowed")
        doc: dict[str, Any] = note.payload()
        payload = orjson.dumps(doc)
        if len(payload) > MAX_PAYLOAD:
            doc.pop("data", None)  # the app fetches it; id, topic and event still say what
            payload = orjson.dumps(doc)
            if len(payload) > MAX_PAYLOAD:
                return Result("failed", reason="payload too large")
        try:
            body = self.encrypt(payload, reg)
        except (ValueError, KeyError) as e:
            return Result("gone", reason=f"bad subscription keys: {e}")
        headers = {"TTL": str(note.ttl), "Urgency": note.urgency,
                   "Content-Encoding": "aes128gcm",
                   "Content-Type": "application/octet-stream",
                   "Authorization": self.vapid(reg.token)}
        if note.collapse_key:
            headers["Topic"] = _topic(note.collapse_key)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=10),
                cookie_jar=aiohttp.DummyCookieJar())
        try:
            async with self._session.post(reg.token, data=body, headers=headers,
                                          allow_redirects=False) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            return Result("retry", reason=type(e).__name__)
        if 200 <= status < 300:
            return Result("sent", status)
        if status in (404, 410):
            return Result("gone", status, reason="subscription expired")
        if status == 429 or status >= 500:
            return Result("retry", status, retry_after)
        return Result("failed", status, reason=f"push service answered {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def build_webpush(cfg: WebPushProvider, env: dict[str, str], root: Path) -> WebPush:
    text = read_secret(cfg.vapid_private_key_env, cfg.vapid_private_key_file, env, root,
                       "push.webpush")
    return WebPush(cfg, load_vapid_key(text))


def _topic(collapse_key: str) -> str:
    """RFC 8030 §5.4: at most 32 characters of the base64url alphabet."""
    if len(collapse_key) <= 32 and all(c.isalnum() or c in "-_" for c in collapse_key):
        return collapse_key
    return b64url(hashlib.sha256(collapse_key.encode()).digest())[:32]
