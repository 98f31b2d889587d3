"""A local APNs: Apple's HTTP/2 provider API as far as a sender can tell, on loopback.

Not a mock of the edge: a real HTTP/2 server over TLS (hypercorn, ALPN `h2` only, as
APNs), its certificate from a throwaway CA the test trusts through `ca_file`, checking
what APNs checks and answering as APNs does:

- `POST /3/device/<hex token>` over HTTP/2 (else 405 BadMethod / 404 BadPath);
- `authorization: bearer <JWT>`: ES256, `kid` the key id, signed by the team key whose
  public half it was given, `iss` the team id, `iat` neither in the future nor older than
  an hour (403 MissingProviderToken / InvalidProviderToken / ExpiredProviderToken); a new
  token on a connection less than 20 minutes after the one before: 429
  TooManyProviderTokenUpdates (unless the one before was refused);
- `apns-topic` one of its bundle ids (400 MissingTopic / TopicDisallowed);
  `apns-push-type` `alert` (the body has `aps.alert`) or `background` (`aps` has
  `content-available: 1` and nothing to show; priority 5) (400 InvalidPushType /
  BadPriority); `apns-priority` 5 or 10; `apns-expiration` an integer;
  `apns-collapse-id` ≤ 64 bytes;
- the body: JSON with `aps`, ≤ 4096 bytes (413 PayloadTooLarge, 400 PayloadEmpty).

Accepted pushes are kept in `received`; refusals in `refused`. `answer(token, …)` makes
it refuse one device token (410 Unregistered, 400 BadDeviceToken, 429, 5xx…);
`expire_provider_token(n)` refuses the next n requests with 403 ExpiredProviderToken.

    async with ApnsStandIn(tmp_path, team_id, key_id, public_pem, ["com.example.app"]) \
            as apns:
        ApnsProvider(..., url=apns.url, ca_file=str(apns.ca_file))

Close the client before leaving the block (the server waits a second for connections)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets

PATH = re.compile(r"/3/device/([^/]+)")
HEX = re.compile(r"[0-9A-Fa-f]+")
MAX_PAYLOAD = 4096
log = logging.getLogger("tests.apns_standin")


@dataclass
class Received:
    """One push APNs took."""

    token: str  # the device token
    headers: dict[str, str]  # as sent (lower-case names)
    body: dict[str, Any]
    bearer: str  # the provider token (JWT) it came with
    connection: tuple[str, int]  # the client's address: one per HTTP/2 connection
    http_version: str


@dataclass
class Refusal:
    token: str
    status: int
    reason: str


class Refused(Exception):
    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        self.status, self.reason, self.retry_after = status, reason, retry_after


class _Config(Config):
    """Serves on a socket already bound (and listening), so the port is known first."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[self._sock], insecure_sockets=[], quic_sockets=[])


class ApnsStandIn:
    def __init__(self, root: Path, team_id: str, key_id: str, public_key_pem: bytes | str,
                 bundle_ids: list[str]) -> None:
        self.root = root
        self.team_id, self.key_id = team_id, key_id
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        self.public_key = serialization.load_pem_public_key(pem)
        self.bundle_ids = set(bundle_ids)
        self.received: list[Received] = []
        self.refused: list[Refusal] = []
        self.ca_file = root / "apns-ca.pem"
        self.url = ""
        self._answers: dict[str, tuple[int, str, int | None]] = {}
        self._expire_next = 0
        self._tokens: dict[tuple[str, int], tuple[str, int]] = {}  # connection → JWT, iat
        self._renew: set[tuple[str, int]] = set()  # connections whose token was refused
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what the test tells it --------------------------------------------------------

    def answer(self, token: str, status: int, reason: str | None = None,
               retry_after: int | None = None) -> None:
        """Answer pushes to this device token with `status` (and `{"reason": …}`, and a
        `retry-after` header) from now on; status 200: accept them again."""
        if status == 200:
            self._answers.pop(token, None)
        else:
            default = {410: "Unregistered", 429: "TooManyRequests", 500: "InternalServerError",
                       503: "ServiceUnavailable"}.get(status, "BadRequest")
            self._answers[token] = (status, reason or default, retry_after)

    def expire_provider_token(self, n: int = 1) -> None:
        """Refuse the next `n` requests with 403 ExpiredProviderToken."""
        self._expire_next = n

    # -- the server -------------------------------------------------------------------

    async def __aenter__(self) -> ApnsStandIn:
        cert, key = await asyncio.to_thread(self._certificates)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        config = _Config(sock)
        config.certfile, config.keyfile = str(cert), str(key)
        config.alpn_protocols = ["h2"]  # APNs speaks HTTP/2 only
        config.h2_max_concurrent_streams = 1000
        config.graceful_timeout = 1.0
        config.errorlog = log
        config.accesslog = None
        self._task = asyncio.create_task(serve(self, config, shutdown_trigger=self._stop.wait))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def _certificates(self) -> tuple[Path, Path]:
        """A throwaway CA (its certificate in `ca_file`) and a server certificate from it
        for 127.0.0.1 and localhost."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "APNs stand-in CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(hours=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                           False, False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                            "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=2))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                               critical=True)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                     x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.root.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = self.root / "apns-server.pem", self.root / "apns-server.key"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_file, key_file

    # -- the ASGI app -----------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        match = PATH.fullmatch(scope["path"])
        token = match.group(1) if match else ""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            received = self._check(scope, token, headers, body)
        except Refused as refused:
            self.refused.append(Refusal(token, refused.status, refused.reason))
            extra = [] if refused.retry_after is None else [
                (b"retry-after", str(refused.retry_after).encode())]
            answer: dict[str, Any] = {"reason": refused.reason}
            if refused.status == 410:
                answer["timestamp"] = int(time.time() * 1000)
            await self._respond(send, refused.status, orjson.dumps(answer), extra)
            return
        self.received.append(received)
        await self._respond(send, 200, b"", [])

    async def _respond(self, send: Any, status: int, body: bytes,
                       extra: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"apns-id", str(uuid.uuid4()).upper().encode()), *extra]
        if body:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _check(self, scope: dict[str, Any], token: str, headers: dict[str, str],
               body: bytes) -> Received:
        """The push as APNs would take it, or Refused as APNs would refuse it."""
        if scope["http_version"] != "2":
            raise Refused(505, "HTTP2Required")
        if scope["method"] != "POST":
            raise Refused(405, "BadMethod")
        if not token:
            raise Refused(404, "BadPath")
        connection = tuple(scope["client"])
        bearer = self._check_provider_token(headers.get("authorization", ""), connection)
        topic = headers.get("apns-topic")
        if not topic:
            raise Refused(400, "MissingTopic")
        if topic not in self.bundle_ids:
            raise Refused(400, "TopicDisallowed")
        priority = headers.get("apns-priority", "10")
        if priority not in ("1", "5", "10"):
            raise Refused(400, "BadPriority")
        if not re.fullmatch(r"\d+", headers.get("apns-expiration", "0")):
            raise Refused(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode("latin-1")) > 64:
            raise Refused(400, "BadCollapseId")
        if not body:
            raise Refused(400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD:
            raise Refused(413, "PayloadTooLarge")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refused(400, "BadPayload") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            raise Refused(400, "BadPayload")
        aps = payload["aps"]
        push_type = headers.get("apns-push-type")
        if push_type == "alert":
            if not aps.get("alert"):
                raise Refused(400, "InvalidPushType")
        elif push_type == "background":
            if aps.get("content-available") != 1 or {"alert", "sound", "badge"} & set(aps):
                raise Refused(400, "InvalidPushType")
            if priority != "5":  # Apple: priority 10 for a background push is an error
                raise Refused(400, "BadPriority")
        else:
            raise Refused(400, "InvalidPushType")
        if not HEX.fullmatch(token):
            raise Refused(400, "BadDeviceToken")
        if token in self._answers:
            raise Refused(*self._answers[token])
        return Received(token, headers, payload, bearer, connection, scope["http_version"])

    def _check_provider_token(self, authorization: str, connection: tuple[str, int]) -> str:
        scheme, _, bearer = authorization.partition(" ")
        if scheme.lower() != "bearer" or not bearer:
            raise Refused(403, "MissingProviderToken")
        try:
            if self._expire_next > 0:
                self._expire_next -= 1
                raise Refused(403, "ExpiredProviderToken")
            try:
                header = jwt.get_unverified_header(bearer)
                if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                    raise Refused(403, "InvalidProviderToken")
                claims = jwt.decode(bearer, self.public_key, algorithms=["ES256"],
                                    options={"require": ["iss", "iat"], "verify_iat": False})
            except jwt.InvalidTokenError:
                raise Refused(403, "InvalidProviderToken") from None
            iat, now = claims["iat"], time.time()
            if claims["iss"] != self.team_id or not isinstance(iat, int) or iat > now + 2:
                raise Refused(403, "InvalidProviderToken")
            if now - iat > 3600:
                raise Refused(403, "ExpiredProviderToken")
        except Refused:
            self._renew.add(connection)
            raise
        previous = self._tokens.get(connection)
        if (previous is not None and previous[0] != bearer and connection not in self._renew
                and iat - previous[1] < 20 * 60):
            raise Refused(429, "TooManyProviderTokenUpdates")
        self._tokens[connection] = (bearer, iat)
        self._renew.discard(connection)
        return bearer
