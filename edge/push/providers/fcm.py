"""Firebase Cloud Messaging: a message to an Android (or iOS, or web) app's registration
token through the HTTP v1 API.

- Authorisation is OAuth2 with the project's service account: a JWT-bearer grant
  (RFC 7523), an RS256 assertion for the `firebase.messaging` scope posted to the
  account's `token_uri`, gives an access token (an hour, as Google issues them). It is kept
  and refreshed once less than five minutes remain; one refresh at a time, the sends that
  find one under way wait for it. A 401 from FCM forces one refresh and one retry.
- Delivery: `POST {url}/v1/projects/{project}/messages:send` with `{"message": …}`. `data`
  carries the event (`id`, `topic`, `event`, and `data` as JSON text: FCM's data values
  are strings only; left out when it would pass FCM's 4 KB, as Web Push does);
  `notification` only when there is a title or body. TTL, priority and collapse key go in
  each platform's own block: `android` (`ttl` as "86400s"), `apns` headers (priority 10
  only for a visible alert: Apple refuses 10 for a background, `content-available`
  push), `webpush` headers.
- Answers (FCM's error JSON: `error.details[].errorCode`): 404 UNREGISTERED, and 400/403
  saying UNREGISTERED or INVALID_ARGUMENT about the registration token, mean the
  registration is gone (a 404 without FCM's error body is a wrong `url`: it drops
  nothing); 429 QUOTA_EXCEEDED and 5xx are retried (Retry-After honoured); other 4xx fail
  the message, not the registration. A token endpoint refusing the grant fails the send
  ("oauth: <status>"); one out of reach has it retried.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ...config.models import FcmProvider
from .base import Notification, Registration, Result, read_secret
from .base import retry_after as parse_retry_after

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFE = 3600  # the longest Google accepts
REFRESH_BEFORE = 300  # seconds of an access token's life left when it is replaced
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
MAX_PAYLOAD = 4000  # FCM takes 4096 bytes of data and notification: a margin for keys


class NoToken(Exception):
    """No access token to send with: the send's outcome says why."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


def message(reg: Registration, note: Notification) -> dict[str, Any]:
    """The HTTP v1 `message` for one registration."""
    high = note.urgency == "high"
    ttl = int(note.ttl)
    visible = note.title is not None or note.body is not None
    msg: dict[str, Any] = {
        "token": reg.token,
        "data": {"id": note.event_id, "topic": note.topic, "event": note.event,
                 "data": orjson.dumps(note.data).decode()},
    }
    android: dict[str, Any] = {"ttl": f"{ttl}s", "priority": "HIGH" if high else "NORMAL"}
    apns_headers = {"apns-priority": "10" if high and visible else "5",
                    "apns-expiration": str(int(time.time()) + ttl if ttl else 0)}
    apns: dict[str, Any] = {"headers": apns_headers}
    if visible:
        msg["notification"] = {k: v for k, v in (("title", note.title), ("body", note.body))
                               if v is not None}
    else:
        apns["payload"] = {"aps": {"content-available": 1}}
    if len(orjson.dumps([msg["data"], msg.get("notification")])) > MAX_PAYLOAD:
        del msg["data"]["data"]  # the app fetches it: id, topic and event still say what
    if note.collapse_key:
        android["collapse_key"] = note.collapse_key
        apns_headers["apns-collapse-id"] = note.collapse_key.encode()[:64].decode(errors="ignore")
    msg["android"] = android
    msg["apns"] = apns
    msg["webpush"] = {"headers": {"TTL": str(ttl), "Urgency": note.urgency}}
    return msg


class Fcm:
    name = "fcm"

    def __init__(self, cfg: FcmProvider, account: dict[str, Any],
                 key: rsa.RSAPrivateKey, project_id: str) -> None:
        self.cfg = cfg
        self.concurrency = cfg.concurrency
        self.key = key
        self.client_email: str = account["client_email"]
        self.token_uri: str = account["token_uri"]
        self.key_id: str | None = account.get("private_key_id") or None
        self.send_url = f"{cfg.url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._token: str | None = None
        self._expires = 0.0  # time.monotonic() when the access token runs out
        self._lock = asyncio.Lock()
        self._refreshes = 0  # refreshes ended: a waiter sees whether one ran while it waited
        self._failure: Result | None = None  # how the last refresh failed, if it did
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # one more than the sends at once: a token refresh never waits behind them
                connector=aiohttp.TCPConnector(limit=self.concurrency + 1, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=10),
                cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _usable(self, rejected: str | None) -> str | None:
        token = self._token
        if token is not None and token != rejected \
                and self._expires - time.monotonic() > REFRESH_BEFORE:
            return token
        return None

    async def access_token(self, rejected: str | None = None) -> str:
        """The kept access token, or a new one when it nears its end (or FCM just refused
        it: `rejected`). Sends that wait while another refreshes take that refresh's
        outcome; the next send after a failed refresh tries again."""
        token = self._usable(rejected)
        if token is not None:
            return token
        seen = self._refreshes
        async with self._lock:
            if self._refreshes == seen:  # none ended while this send waited: refresh
                try:
                    token, expires_in = await self._fetch_token()
                except NoToken as e:
                    self._failure = e.result
                except (aiohttp.ClientError, TimeoutError) as e:
                    self._failure = Result("retry", reason=f"oauth: {type(e).__name__}")
                else:
                    self._token, self._failure = token, None
                    self._expires = time.monotonic() + expires_in
                self._refreshes += 1  # (not when cancelled: the waiters then refresh)
            token = self._token
            if token is not None and token != rejected and self._expires > time.monotonic():
                return token  # the new one; the refresh failing, the old one while it lasts
            raise NoToken(self._failure or Result("failed", reason="oauth: expired at once"))

    async def _fetch_token(self) -> tuple[str, float]:
        now = int(time.time())
        claims = {"iss": self.client_email, "sub": self.client_email, "aud": self.token_uri,
                  "scope": SCOPE, "iat": now, "exp": now + ASSERTION_LIFE}
        headers = {"kid": self.key_id} if self.key_id else None
        assertion = jwt.encode(claims, self.key, algorithm="RS256", headers=headers)
        async with self.session.post(self.token_uri, allow_redirects=False,
                                     data={"grant_type": GRANT, "assertion": assertion}) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise NoToken(Result("failed", reason=f"oauth: {resp.status}"))
        try:
            doc = orjson.loads(body)
            return str(doc["access_token"]), float(doc.get("expires_in", 3600))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise NoToken(Result("failed", reason="oauth: no access_token")) from None

    async def _post(self, body: bytes, token: str) -> tuple[int, float | None, dict[str, Any]]:
        """FCM's status, Retry-After and error object; the connection is back in the pool."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self.session.post(self.send_url, data=body, headers=headers,
                                     allow_redirects=False) as resp:
            status = resp.status
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raw = await resp.read()
        error: Any = None
        if status != 200:
            try:
                error = orjson.loads(raw).get("error")
            except (orjson.JSONDecodeError, AttributeError):
                pass
        return status, retry_after, error if isinstance(error, dict) else {}

    async def send(self, reg: Registration, note: Notification) -> Result:
        body = orjson.dumps({"message": message(reg, note)})
        try:
            token = await self.access_token()
            status, retry_after, error = await self._post(body, token)
            if status == 401:
                status, retry_after, error = await self._post(
                    body, await self.access_token(rejected=token))
        except NoToken as e:
            return e.result
        except (aiohttp.ClientError, TimeoutError) as e:
            return Result("retry", reason=type(e).__name__)
        if status == 200:
            return Result("sent", status)
        code = _error_code(error) or str(error.get("status") or status)
        about_token = "registration token" in str(error.get("message", "")).lower()
        if (status == 404 and error) or (status in (400, 403, 404) and code == "UNREGISTERED") \
                or (status == 400 and code == "INVALID_ARGUMENT" and about_token):
            return Result("gone", status, reason=code)
        if status == 429 or status >= 500:
            return Result("retry", status, retry_after, reason=code)
        return Result("failed", status, reason=code)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def build_fcm(cfg: FcmProvider, env: dict[str, str], root: Path) -> Fcm:
    """The provider from its service account key (JSON), checked now: a config naming a
    broken one is refused at load, not at the first push."""
    text = read_secret(cfg.service_account_env, cfg.service_account_file, env, root,
                       "push.fcm")
    try:
        account = orjson.loads(text)
    except orjson.JSONDecodeError:
        account = None
    if not isinstance(account, dict):
        raise ValueError("push.fcm: the service account key is not a JSON object")
    if account.get("type") != "service_account":
        raise ValueError(f"push.fcm: the key's type is {account.get('type')!r}, not "
                         "'service_account'")
    needed = ["client_email", "private_key", "token_uri"] + ([] if cfg.project_id
                                                               else ["project_id"])
    missing = [k for k in needed if not isinstance(account.get(k), str) or not account[k]]
    if missing:
        raise ValueError(f"push.fcm: the service account key has no {', '.join(missing)}")
    if not account["token_uri"].startswith(("https://", "http://")):
        raise ValueError("push.fcm: the service account's token_uri is not an http(s) URL")
    try:
        key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"push.fcm: the service account's private_key is not a PEM key "
                         f"({e})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("push.fcm: the service account's private_key is not an RSA key")
    return Fcm(cfg, account, key, cfg.project_id or account["project_id"])


def _error_code(error: dict[str, Any]) -> str | None:
    """FcmError's `errorCode` from an error's details."""
    details = error.get("details")
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict) and d.get("@type") == FCM_ERROR and d.get("errorCode"):
            return str(d["errorCode"])
    return None
