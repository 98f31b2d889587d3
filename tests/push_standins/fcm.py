"""A stand-in for Firebase Cloud Messaging (HTTP v1) and Google's OAuth2 token endpoint, in
one aiohttp app on loopback: it checks what the real services check, so the edge's FCM
provider is tested against the protocol, not against a mock of itself.

- It makes a service account (a fresh RSA key) and gives its JSON key, `token_uri` at
  itself (`service_account()`, `write_service_account(path)`).
- `POST /token`: the JWT-bearer grant (RFC 7523). The assertion must be RS256, signed
  with the account's key (`kid` its `private_key_id` when given), iss = sub = the
  account's email, aud = token_uri, the firebase.messaging scope, at most an hour
  between iat and exp, not expired. Issues random access tokens lasting `expires_in`.
- `POST /v1/projects/{project}/messages:send`: a Bearer it issued and not expired (else
  401 UNAUTHENTICATED), its project (else 403), a message of FCM's shape (token, data
  values strings only and no reserved keys, data and notification within 4096 bytes,
  android.ttl as "86400s", …: else 400
  INVALID_ARGUMENT). Accepted messages are kept in `messages`.
- Per registration token it can answer otherwise (`answer(token, status)`): 404
  UNREGISTERED, 400 INVALID_ARGUMENT (not a valid registration token), 403
  SENDER_ID_MISMATCH, 429 QUOTA_EXCEEDED (Retry-After), 500 INTERNAL, 503 UNAVAILABLE.
- `expire_tokens()` ends every access token issued so far; `token_requests` counts grants
  asked for; `refuse_tokens = 400` makes the token endpoint refuse them.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options",
                  "token", "topic", "condition"}
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")

# status -> (Google status, FcmError errorCode or None, message), as FCM answers them
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("INVALID_ARGUMENT", "INVALID_ARGUMENT",
          "The registration token is not a valid FCM registration token"),
    403: ("PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
    404: ("NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for this device."),
    500: ("INTERNAL", "INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
}

_KEY: rsa.RSAPrivateKey | None = None


def _shared_key() -> rsa.RSAPrivateKey:
    """One RSA key for every stand-in of the session (making one takes a while)."""
    global _KEY
    if _KEY is None:
        _KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEY


def google_error(status: int, google_status: str, message: str,
                 error_code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": google_status}
    if error_code:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": error_code}]
    return web.json_response({"error": error}, status=status)


class FcmStandin:
    def __init__(self, project_id: str = "edge-tests", expires_in: int = 3600) -> None:
        self.project_id = project_id
        self.expires_in = expires_in
        self.key = _shared_key()
        self.private_key_id = secrets.token_hex(20)
        self.client_email = f"edge-push@{project_id}.iam.gserviceaccount.com"
        self.url = ""  # the base URL once started
        self.tokens: dict[str, float] = {}  # access token -> when it expires (time.time)
        self.token_requests = 0
        self.refuse_tokens: int | None = None  # a status the token endpoint answers instead
        self.rejected: list[str] = []  # why grants and sends were refused as malformed
        self.messages: list[dict[str, Any]] = []  # accepted, in order
        self.answers: dict[str, tuple[int, float | None]] = {}  # token -> (status, Retry-After)
        self.send_auth: list[str] = []  # the Bearer of each send, accepted or not

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)
        return app

    async def start(self, upstream: Any) -> str:
        """Serve with the `upstream` fixture; returns (and keeps) the base URL."""
        self.url = await upstream(self.app())
        return self.url

    def service_account(self, **changes: Any) -> dict[str, Any]:
        """The service account's JSON key; `changes` replace fields (None: drop it)."""
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        doc: dict[str, Any] = {
            "type": "service_account", "project_id": self.project_id,
            "private_key_id": self.private_key_id, "private_key": pem,
            "client_email": self.client_email, "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }
        doc.update(changes)
        return {k: v for k, v in doc.items() if v is not None}

    def write_service_account(self, path: Path, **changes: Any) -> Path:
        path.write_text(json.dumps(self.service_account(**changes), indent=2))
        return path

    def answer(self, token: str, status: int, retry_after: float | None = None) -> None:
        """Answer sends to this registration token with FCM's error for `status`."""
        self.answers[token] = (status, retry_after)

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    # ------------------------------------------------------------------ OAuth2 (RFC 7523)

    def _refuse_grant(self, error: str, description: str) -> web.Response:
        self.rejected.append(f"token: {description}")
        return web.json_response({"error": error, "error_description": description},
                                 status=400)

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if self.refuse_tokens is not None:
            return web.json_response({"error": "invalid_client"}, status=self.refuse_tokens)
        if request.content_type != "application/x-www-form-urlencoded":
            return self._refuse_grant("invalid_request", f"content type {request.content_type}")
        form = await request.post()
        if form.get("grant_type") != GRANT:
            return self._refuse_grant("unsupported_grant_type",
                                      f"grant_type {form.get('grant_type')!r}")
        assertion = form.get("assertion")
        if not isinstance(assertion, str):
            return self._refuse_grant("invalid_request", "no assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, self.key.public_key(), algorithms=["RS256"],
                                audience=self.token_uri,
                                options={"require": ["iss", "sub", "aud", "iat", "exp"]})
        except jwt.PyJWTError as e:
            return self._refuse_grant("invalid_grant", f"assertion: {e}")
        if "kid" in header and header["kid"] != self.private_key_id:
            return self._refuse_grant("invalid_grant", f"unknown kid {header['kid']!r}")
        if claims["iss"] != self.client_email or claims["sub"] != self.client_email:
            return self._refuse_grant("invalid_grant", "iss/sub is not the account's email")
        if SCOPE not in str(claims.get("scope", "")).split():
            return self._refuse_grant("invalid_scope", f"scope {claims.get('scope')!r}")
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return self._refuse_grant("invalid_grant", "exp - iat is not within an hour")
        if claims["iat"] > time.time() + 60:
            return self._refuse_grant("invalid_grant", "iat is in the future")
        access = "ya29." + secrets.token_urlsafe(32)
        self.tokens[access] = time.time() + self.expires_in
        return web.json_response({"access_token": access, "expires_in": self.expires_in,
                                  "token_type": "Bearer"})

    # ------------------------------------------------------------------ FCM HTTP v1

    def _invalid(self, why: str) -> web.Response:
        self.rejected.append(f"send: {why}")
        return google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {why}",
                            "INVALID_ARGUMENT")

    async def send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.send_auth.append(auth)
        access = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or self.tokens.get(access, 0.0) <= time.time():
            response = google_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                "Expected OAuth 2 access token, login cookie or other valid authentication "
                "credential.")
            response.headers["WWW-Authenticate"] = \
                'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            return response
        if request.match_info["project"] != self.project_id:
            self.rejected.append(f"send: project {request.match_info['project']}")
            return google_error(403, "PERMISSION_DENIED", "Permission "
                                "'cloudmessaging.messages.create' denied on resource")
        try:
            body = await request.json()
        except ValueError:
            return self._invalid("not JSON")
        why = self._check(body)
        if why:
            return self._invalid(why)
        msg = body["message"]
        if msg["token"] in self.answers:
            status, retry_after = self.answers[msg["token"]]
            google_status, code, text = ERRORS[status]
            response = google_error(status, google_status, text, code)
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
        self.messages.append(msg)
        name = f"projects/{self.project_id}/messages/{secrets.randbelow(10**16)}"
        return web.json_response({"name": name})

    @staticmethod
    def _check(body: Any) -> str | None:
        """Why FCM would refuse this body (None: it is well formed)."""
        if not isinstance(body, dict) or set(body) - {"message", "validate_only"}:
            return "the body must be {\"message\": …}"
        msg = body.get("message")
        if not isinstance(msg, dict):
            return "no message"
        if set(msg) - MESSAGE_FIELDS:
            return f"unknown fields {sorted(set(msg) - MESSAGE_FIELDS)}"
        if not isinstance(msg.get("token"), str) or not msg["token"]:
            return "message.token is required here"
        data = msg.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return "message.data values must be strings"
        for key in data:
            if key in ("from", "notification", "message_type") \
                    or key.startswith(("google", "gcm")):
                return f"message.data key {key!r} is reserved"
        notification = msg.get("notification", {})
        if len(json.dumps([data, notification], ensure_ascii=False).encode()) > 4096:
            return "Message is too big"
        if not isinstance(notification, dict) or set(notification) - {"title", "body", "image"} \
                or not all(isinstance(v, str) for v in notification.values()):
            return "message.notification must be {title, body, image} strings"
        android = msg.get("android", {})
        if not isinstance(android, dict):
            return "message.android must be an object"
        if "ttl" in android and not (isinstance(android["ttl"], str)
                                     and DURATION.match(android["ttl"])):
            return f"message.android.ttl {android['ttl']!r} is not a duration like '3.5s'"
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            return f"message.android.priority {android['priority']!r}"
        if not isinstance(android.get("collapse_key", ""), str):
            return "message.android.collapse_key must be a string"
        for block in ("apns", "webpush"):
            headers = (msg.get(block) or {}).get("headers", {})
            if not isinstance(headers, dict) or \
                    not all(isinstance(v, str) for v in headers.values()):
                return f"message.{block}.headers values must be strings"
        return None
