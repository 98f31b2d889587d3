"""Apple Push Notification service: the HTTP/2 provider API with token-based auth.

One `POST {url}/3/device/<device token>` per notification, over one HTTP/2 connection
(httpx; aiohttp's client speaks HTTP/1.1 only, and APNs speaks HTTP/2 only), many
streams at once. The rules it follows:

- Auth: `authorization: bearer <JWT>`, ES256 with the team's .p8 key (P-256), `kid` the
  key id, claims `iss` (team id) and `iat`. Apple refuses a token older than an hour
  (403 ExpiredProviderToken) and one replaced more often than every 20 minutes (429
  TooManyProviderTokenUpdates): one token per instance, re-minted once it is 50 minutes
  old, or at once when APNs calls it expired or invalid (then the request is sent again,
  once).
- `apns-topic`: the app's bundle id (the registration's `app`); `apns-push-type`: `alert`
  when there is a title or body, else `background` (`content-available`), whose priority
  must be 5; `apns-priority` 10 only for an urgent alert; `apns-expiration` the UNIX time
  it may be held until (0: try once, never stored); `apns-collapse-id` ≤ 64 bytes.
- Payload ≤ 4096 bytes: the event (`Notification.payload()`) rides in the custom key
  `edge`; too big, its `data` is left out (the app fetches it: `id`, `topic`, `event`
  stay); still too big, the notification fails.
- Answers: 200 sent; 410, or 400 BadDeviceToken/DeviceTokenNotForTopic/Unregistered:
  the token is gone; 429 and 5xx (and network errors): retry, after `retry-after` when
  given; any other refusal fails with APNs' `reason`."""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...config.models import ApnsProvider
from .base import Notification, Registration, Result, read_secret
from .base import retry_after as parse_retry_after

WHAT = "push.apns"
TOKEN_LIFE = 50 * 60  # seconds a provider token is used (APNs: < 60 min, ≥ 20 min apart)
MAX_PAYLOAD = 4096  # bytes of JSON body APNs takes for a (non-VoIP) notification
MAX_COLLAPSE_ID = 64  # bytes
GONE_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})
TOKEN_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{1,200}")  # hex; also keeps the URL path intact
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def build_apns(cfg: ApnsProvider, env: dict[str, str], root: Path, *,
               clock: Callable[[], float] = time.time) -> Apns:
    """The provider for `cfg`. Reads files and loads keys and CAs: call it off the event
    loop (`asyncio.to_thread`). ValueError naming `push.apns` when the key is unusable."""
    pem = read_secret(cfg.private_key_env, cfg.private_key_file, env, root, WHAT)
    if "\\n" in pem and "\n" not in pem.strip():  # a PEM put in an env var on one line
        pem = pem.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"{WHAT}: the private key is not an unencrypted PEM (.p8) key: "
                         f"{e}") from None
    if not (isinstance(key, ec.EllipticCurvePrivateKey)
            and isinstance(key.curve, ec.SECP256R1)):
        raise ValueError(f"{WHAT}: the private key must be an EC P-256 key (Apple's .p8 "
                         f"auth key), not {type(key).__name__}")
    tls = ssl.create_default_context()  # the system's CAs…
    if cfg.ca_file:  # …and this one (a test stand-in, a private relay)
        ca = Path(cfg.ca_file) if Path(cfg.ca_file).is_absolute() else root / cfg.ca_file
        try:
            tls.load_verify_locations(cafile=str(ca))
        except (OSError, ValueError) as e:
            raise ValueError(f"{WHAT}: cannot load ca_file {ca}: {e}") from None
    return Apns(cfg, key, tls, clock=clock)


class Apns:
    """Sends notifications to APNs for one config generation (see the module's rules)."""

    name = "apns"

    def __init__(self, cfg: ApnsProvider, key: ec.EllipticCurvePrivateKey,
                 tls: ssl.SSLContext, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.concurrency = cfg.concurrency
        self.url = cfg.url.rstrip("/")
        self._key = key
        self._tls = tls
        self._clock = clock
        self._token = ""  # the provider token (JWT) in use…
        self._minted = 0.0  # …and its `iat`
        self._client: httpx.AsyncClient | None = None  # made on first send, in the loop
        self._closed = False

    def _bearer(self, stale: str = "") -> str:
        """The provider token: the one in use, unless it is `stale` (APNs refused it) or
        TOKEN_LIFE old. Concurrent sends refused with the same token re-mint it once."""
        now = self._clock()
        if not self._token or self._token == stale or now - self._minted >= TOKEN_LIFE:
            self._minted = float(int(now))
            self._token = jwt.encode({"iss": self.cfg.team_id, "iat": int(now)}, self._key,
                                     algorithm="ES256", headers={"kid": self.cfg.key_id})
        return self._token

    def _body(self, note: Notification, alert: bool) -> bytes | None:
        """The JSON payload, its `data` left out when it does not fit; None: nothing fits."""
        aps: dict[str, Any]
        if alert:
            shown = {k: v for k, v in (("title", note.title), ("body", note.body)) if v}
            aps = {"alert": shown, "sound": "default"}
        else:
            aps = {"content-available": 1}
        custom = note.payload()
        body = orjson.dumps({"aps": aps, "edge": custom})
        if len(body) > MAX_PAYLOAD:
            slim = {k: custom[k] for k in ("id", "topic", "event")}
            body = orjson.dumps({"aps": aps, "edge": slim})
        return body if len(body) <= MAX_PAYLOAD else None

    def _headers(self, reg: Registration, note: Notification, alert: bool) -> dict[str, Any]:
        urgent = alert and note.urgency == "high"  # a background push must be priority 5
        headers: dict[str, Any] = {
            "apns-topic": reg.app,
            "apns-push-type": "alert" if alert else "background",
            "apns-priority": "10" if urgent else "5",
            "apns-expiration": str(int(self._clock() + note.ttl) if note.ttl > 0 else 0),
        }
        if note.collapse_key:  # cut at 64 bytes, never inside a UTF-8 character
            cut = note.collapse_key.encode()[:MAX_COLLAPSE_ID]
            headers["apns-collapse-id"] = cut.decode(errors="ignore").encode()
        return headers

    async def send(self, reg: Registration, note: Notification) -> Result:
        if self._closed:
            return Result("retry", reason="provider closed (config reloaded)")
        if not DEVICE_TOKEN.fullmatch(reg.token):
            return Result("gone", reason="BadDeviceToken (not a hex device token)")
        alert = bool(note.title or note.body)
        body = self._body(note, alert)
        if body is None:
            return Result("failed", reason="payload too large")
        if self._client is None:
            # HTTP/2 only (no HTTP/1.1 fallback); no proxies from the environment, as the
            # edge's other clients
            self._client = httpx.AsyncClient(http1=False, http2=True, verify=self._tls,
                                             timeout=TIMEOUT, trust_env=False)
        url = f"{self.url}/3/device/{reg.token}"
        headers = self._headers(reg, note, alert)
        token = self._bearer()
        renewed = False
        while True:
            headers["authorization"] = f"bearer {token}"
            try:
                response = await self._client.post(url, content=body, headers=headers)
            except httpx.TransportError as e:  # connect, TLS, timeouts, a reset stream…
                return Result("retry", reason=f"{type(e).__name__}: {e}".rstrip(": "))
            status = response.status_code
            if status == 200:
                return Result("sent", status=200)
            reason = _reason(response)
            if status == 403 and reason in TOKEN_REASONS and not renewed:
                renewed = True  # a new provider token, and the request again, once
                token = self._bearer(stale=token)
                continue
            return _refused(status, reason, response.headers.get("retry-after"))

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _reason(response: httpx.Response) -> str:
    """APNs' `{"reason": "BadDeviceToken"}`, else the status."""
    try:
        reason = orjson.loads(response.content).get("reason")
    except (orjson.JSONDecodeError, AttributeError):
        reason = None
    return reason if isinstance(reason, str) and reason else f"HTTP {response.status_code}"


def _refused(status: int, reason: str, retry_after: str | None) -> Result:
    if status == 410 or (status == 400 and reason in GONE_REASONS):
        return Result("gone", status=status, reason=reason)
    if status == 429 or status >= 500:
        return Result("retry", status=status, retry_after=parse_retry_after(retry_after),
                      reason=reason)
    return Result("failed", status=status, reason=reason)
