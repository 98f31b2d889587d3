"""Everything a platform engineer writes in YAML, declared once as typed models.

The models' docstrings and field descriptions are the user documentation: the JSON Schema
in ``config/schema/`` is generated from them (``edge schema``, see schema.py), and the
loader (load.py) turns every validation error into ``file:line:col: error: path: message``.
"""

from __future__ import annotations

import datetime
import fnmatch
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..routing import METHODS, PathBuilder, Template
from ..units import Duration, Rate, Size

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


EnvName = Annotated[str, Field(pattern=_ENV_NAME.pattern)]

# --------------------------------------------------------------------------- edge.yaml


class Listen(Model):
    host: str = "127.0.0.1"
    """Address to listen on. Use 0.0.0.0 in a container."""
    port: int = Field(8080, ge=0, le=65535)
    """TCP port; 0 picks a free one."""


class Timeouts(Model):
    connect: Duration = 2.0
    """Time to get a connection: a free one from the pool, or a new TCP connection."""
    read: Duration = 10.0
    """Longest wait for the next bytes from the service: first the response headers, then
    each part of the body (like nginx's proxy_read_timeout), so a long download that
    keeps flowing is never cut, and a stalled one is."""


class Pool(Model):
    size: int = Field(100, ge=1, le=10000)
    """Most connections open to this service at once (per edge process)."""
    keepalive: Duration = 30.0
    """How long an idle keep-alive connection stays in the pool."""


class Retries(Model):
    attempts: int = Field(2, ge=1, le=5)
    """Tries in total (1 = no retry). Only idempotent requests without a body are retried."""
    backoff: Duration = 0.05
    """First pause before a retry; doubles each time, with full jitter."""
    max_backoff: Duration = 1.0
    """Longest pause before a retry."""
    budget: float = Field(0.2, ge=0, le=1)
    """Retries allowed as a fraction of requests (plus `min_per_second`), so a failing
    service is not hit with a retry storm."""
    min_per_second: float = Field(5.0, ge=0)
    """Retries always allowed per second whatever the budget says."""
    on_status: list[int] = [502, 503, 504]
    """Upstream statuses that are retried (connection errors always are)."""


class CircuitBreaker(Model):
    enabled: bool = True
    """false: every request goes to the service whatever it did before (an origin behind
    its own load balancer, or one a shared cache must always ask)."""
    failure_threshold: int = Field(5, ge=1)
    """Consecutive failures (connection error, timeout, or a 5xx in `failure_statuses`)
    that open the circuit."""
    open_for: Duration = 30.0
    """How long the circuit stays open before letting trial requests through."""
    half_open_requests: int = Field(1, ge=1)
    """Trial requests let through while half-open; all must succeed to close it."""
    failure_statuses: list[int] = [502, 503, 504]
    """Upstream statuses counted as failures."""


class Service(Model):
    """An upstream service: one pooled HTTP client per edge process."""

    url: str
    """Base URL, e.g. http://members.internal:8080 (a path prefix is allowed)."""
    timeouts: Timeouts = Timeouts()
    pool: Pool = Pool()
    retries: Retries = Retries()
    circuit_breaker: CircuitBreaker = CircuitBreaker()

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", v):
            raise ValueError(f"expected an http(s) base URL without query, got {v!r}")
        return v.rstrip("/")


class Jwt(Model):
    """How bearer tokens are verified. Keys come from env vars or files, never inline."""

    algorithms: list[Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                             "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
                             "EdDSA"]] = ["HS256"]
    """Accepted algorithms (allowlist); 'none' can never be accepted."""
    secret_env: EnvName | None = None
    """Env var holding the shared secret for HS* algorithms."""
    public_key_files: list[str] = []
    """PEM public keys for RS*/ES*/PS*/EdDSA (paths relative to the config dir)."""
    jwks_file: str | None = None
    """A JWKS document with public keys, matched by `kid`."""
    issuer: str | None = None
    """Required `iss` when set."""
    audience: str | None = None
    """Required `aud` when set."""
    leeway: Duration = 30.0
    """Clock skew tolerated on exp/nbf/iat."""
    required_claims: list[str] = ["exp", "sub"]
    """Claims every token must carry."""
    cookie: str | None = None
    """Also read the token from this cookie (for EventSource clients)."""


# ------------------------------------------------------------------------ app API keys

_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
KEY_NAME = r"^[A-Za-z0-9._:-]{1,64}$"


def _route_pattern(v: str) -> str:
    method, _, path = " ".join(v.split()).partition(" ")
    method = method.upper()
    if (method not in METHODS and method != "*") or not path or path[0] not in "/*":
        raise ValueError("expected a route name or glob, 'METHOD /path' like "
                         f"'GET /api/v1/providers*' or '* /api/v1/catalog/*', got {v!r}")
    return f"{method} {path}"


def key_allows(patterns: Sequence[str], route_name: str) -> bool:
    """Whether a key whose `routes` are `patterns` may call the route `route_name`."""
    return not patterns or any(fnmatch.fnmatchcase(route_name, p) for p in patterns)


class ApiKey(Model):
    """One app key. Only its hash is written down, never the key: `edge apikey new` makes a
    key and the lines to paste here, `edge apikey hash` hashes a key read from stdin."""

    name: str = Field(pattern=KEY_NAME)
    """Unique. The upstream receives it (`identity_header`); the access log and the
    `api_key` rate-limit key use it."""
    hash: str
    """`sha256:<64 hex digits>` of the key. A fast hash is the right one: keys are random
    256-bit strings made by `edge apikey new`, so there is nothing to guess (a slow password
    hash such as scrypt protects guessable secrets, and would cost CPU on every request).
    Presented keys shorter than 32 characters are refused whatever their hash."""
    tier: str | None = Field(None, pattern=KEY_NAME)
    """A rate-limit tier, one of `tiers`: rate limits use their `per_tier` rate for it."""
    routes: list[Annotated[str, AfterValidator(_route_pattern)]] = []
    """Routes this key may call, by name or glob: 'GET /api/v1/providers*',
    '* /api/v1/catalog/*'. Empty: every route that takes keys. Elsewhere it gets 403."""
    not_before: datetime.datetime | None = None
    """Refused before this time, e.g. 2026-03-01T00:00:00Z."""
    expires: datetime.datetime | None = None
    """Refused from this time on. To rotate a key: add the new one, ship it in the app, and
    give the old one an `expires`; both are accepted until then."""
    revoked: bool = False
    """Refused at once (keep the entry, so the name is not given out again)."""

    @field_validator("not_before", "expires")
    @classmethod
    def _zoned(cls, v: datetime.datetime | None) -> datetime.datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("expected a time with its zone, like 2026-03-01T00:00:00Z, got "
                             f"{v.isoformat()}")
        return v

    @field_validator("hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        # never echo the value: it may be a plain key pasted by mistake
        if not _KEY_HASH.match(v.strip().lower()):
            raise ValueError("expected 'sha256:<64 hex digits>', the key's hash, never the key "
                             "itself: `edge apikey hash` (key on stdin) or `edge apikey new` "
                             "make one")
        return v.strip().lower()


class ApiKeysFile(Model):
    """The file named by `auth.api_keys.file` (reloaded with the config)."""

    keys: list[ApiKey] = []


class ApiKeys(Model):
    """App API keys. Apps send one in `header`; a route takes keys with `auth: {api_key:
    required | optional}`. A missing, unknown, expired, not yet valid or revoked key is a 401
    (`unauthorized`); a valid key not allowed on the route a 403 (`forbidden`)."""

    header: str = "X-API-Key"
    """Request header carrying the key. Routes that check keys don't pass it upstream."""
    identity_header: str = "X-Edge-App"
    """Header the upstream gets with the verified key's `name`. Clients' copies are always
    removed."""
    keys: list[ApiKey] = []
    """Keys given inline."""
    file: str | None = None
    """A YAML file with more keys (`keys: [...]`), relative to the config dir, so they can
    be managed apart. Keep it in the config dir (not in routes/): it is reloaded with the
    config, so revoking a key is an edit, not a restart."""
    tiers: list[Annotated[str, Field(pattern=KEY_NAME)]] = []
    """The rate-limit tiers keys may name (`tier`) and rate limits may set (`per_tier`)."""

    @field_validator("header", "identity_header")
    @classmethod
    def _header(cls, v: str) -> str:
        if not _HEADER_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid header name")
        return v


class Auth(Model):
    jwt: Jwt | None = None
    identity_headers: dict[str, str] = {"X-Edge-Subject": "sub"}
    """Request headers set on upstream calls from verified claims (header: claim).
    Incoming copies of these headers are always removed, so clients can't forge them."""
    api_keys: ApiKeys | None = None
    """App API keys (none unless given)."""

    @field_validator("identity_headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
        return v


class UserAgentRule(Model):
    pattern: str
    """Regular expression searched in User-Agent (case-insensitive)."""
    device: str
    """Device class given when it matches."""

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return v


NETWORK_CLASSES = ("slow", "medium", "fast", "unknown")
"""The classes of a client's network (from Save-Data, ECT or X-Network-Type). Fixed, unlike
device classes; `shape.fields` and `image.by_device` may be keyed by them."""


class NetworkThreshold(Model):
    """A network class's bounds: a client whose `Downlink` hint is at most `max_downlink`,
    or whose `RTT` hint is at least `min_rtt`, is on this class of network (or a slower
    one)."""

    max_downlink: float | None = Field(None, ge=0, le=10_000)
    """Mbit/s (the `Downlink` client hint, RFC 8942 / Network Information)."""
    min_rtt: Duration | None = None
    """The `RTT` client hint (whole milliseconds on the wire)."""


class NetworkHints(Model):
    """How the network class is read from a request. `Save-Data: on` is `slow`; else
    the slowest class any of `ECT`, `Downlink`, `RTT` and `X-Network-Type` indicates
    (ECT: slow-2g and 2g are slow, 3g medium, 4g fast)."""

    slow: NetworkThreshold = NetworkThreshold.model_validate(
        {"max_downlink": 0.4, "min_rtt": "1400ms"})
    """Defaults: 0.4 Mbit/s, 1400 ms (ECT's 2g is 70 kbit/s and 1400 ms)."""
    medium: NetworkThreshold = NetworkThreshold.model_validate(
        {"max_downlink": 1.5, "min_rtt": "270ms"})
    """Defaults: 1.5 Mbit/s, 270 ms (ECT's 3g is 700 kbit/s and 270 ms)."""
    critical: bool = False
    """Also send `Critical-CH: ECT, Downlink, RTT` where `Accept-CH` asks for them: a
    browser that sent none retries the request once with them (a round trip more on the
    first visit). Apps send their hints anyway."""

    @model_validator(mode="after")
    def _ordered(self) -> NetworkHints:
        slow, medium = self.slow, self.medium
        if (slow.max_downlink is not None and medium.max_downlink is not None
                and slow.max_downlink > medium.max_downlink):
            raise ValueError("slow.max_downlink must not be above medium.max_downlink")
        if (slow.min_rtt is not None and medium.min_rtt is not None
                and slow.min_rtt < medium.min_rtt):
            raise ValueError("slow.min_rtt must not be below medium.min_rtt")
        return self


class Devices(Model):
    __doc__ = (f"Device classes (network classes are fixed: {', '.join(NETWORK_CLASSES)}). "
               "Keep them few: each one is a cache variant.")

    classes: list[str] = ["phone", "tablet", "desktop", "watch"]
    default: str = "desktop"
    """Class when nothing else says."""
    header: str = "X-Device-Type"
    """Header a client may use to name its class directly (must be one of `classes`)."""
    user_agent: list[UserAgentRule] = [
        UserAgentRule(pattern=r"watch|wear ?os", device="watch"),
        UserAgentRule(pattern=r"ipad|tablet|kindle|silk", device="tablet"),
        UserAgentRule(pattern=r"mobile|iphone|android|okhttp|cfnetwork|dart", device="phone"),
    ]
    """First matching rule wins."""
    network: NetworkHints = NetworkHints()
    """The network class from the client's hints (thresholds for Downlink and RTT)."""


class Limits(Model):
    max_request_body: Size = 10 * 1024 * 1024
    """Largest request body accepted (413 beyond)."""
    max_header_size: Size = 8192
    """Largest single request header line."""
    max_path_length: int = Field(2048, ge=64)
    """Longest request path + query accepted (414 beyond)."""
    max_shaped_body: Size = 4 * 1024 * 1024
    """Largest upstream body a shaped route reads into memory (see `shape.on_oversize`)."""
    max_json_depth: int = Field(64, ge=2, le=512)
    """Deepest JSON nesting a shaped route parses; deeper bodies are relayed unshaped."""
    max_fields_length: int = Field(1024, ge=16, le=65536)
    """Longest `?fields=` selection a client may send (400 beyond)."""
    header_timeout: Duration = 10.0
    """A request head must arrive whole this soon after its first byte (or after the
    connection opens), else 408 and the connection is closed: slowloris gets nowhere."""
    keepalive_timeout: Duration = 75.0
    """An idle keep-alive connection is closed after this long (nginx's default)."""
    max_connections_per_ip: int = Field(256, ge=1)
    """Open connections one client address may hold (trusted proxies and
    rate_limits.allow are exempt); more are refused with 503. Generous, for carrier NAT."""


class Compression(Model):
    """How the edge compresses what it encodes itself (brotli, zstd or gzip, by
    Accept-Encoding)."""

    min_size: Size = 256
    """Bodies smaller than this are sent uncompressed (the headers would eat the gain)."""
    brotli_quality: int = Field(5, ge=0, le=11)
    """0-11. 5 compresses 10 KB of JSON in ~0.1 ms (bench/brotli_quality.py); 9 and up
    cost milliseconds per document, so they only pay off for cached bodies."""
    gzip_level: int = Field(6, ge=1, le=9)
    zstd_level: int = Field(3, ge=1, le=19)
    """1-19 (no "ultra" levels: their windows pass the 8 MB HTTP clients may refuse, RFC
    9659). 3 compresses 10 KB of JSON in ~0.015 ms, 8x faster than brotli 5, for ~11%
    more bytes."""
    prefer: list[Literal["br", "zstd", "gzip"]] = Field(["br", "zstd", "gzip"],
                                                        min_length=1)
    """The codings offered, best first: a client's q-values decide, and among those it
    rates equally (browsers and curl send all three) the first here wins. br makes the
    fewest bytes; put zstd first to spend far less CPU for a little more."""

    @property
    def levels(self) -> dict[str, int]:
        """The level for each coding."""
        return {"br": self.brotli_quality, "gzip": self.gzip_level, "zstd": self.zstd_level}

    passthrough: bool = True
    """Also compress, as it streams, what pass-through routes relay when the upstream sent
    it uncompressed and the type is text-like (JSON, text, XML; never images, archives
    or event streams). The upstream's strong ETag is then weakened."""


class Admin(Model):
    metrics_path: str = "/metrics"
    health_path: str = "/health"
    ready_path: str = "/ready"
    metrics_allow: list[Network] = [
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"),
        ipaddress.ip_network("192.168.0.0/16"),
    ]
    """Peers allowed to read /metrics (others get 403)."""
    purge_path: str = "/_edge/purge"
    """POST {"tags": [...]} | {"route": "GET /x/{id}"} | {"all": true} empties the edge
    cache on every instance. Needs a valid JWT carrying `purge_role` in `roles`."""
    purge_role: str = "admin"
    playground: bool = False
    """Serve the policy playground at /_edge/playground: a page that runs a route for
    several devices side by side, and previews an edit of its YAML. Only to
    `metrics_allow` networks; its calls need a token with `purge_role`."""


class CacheSettings(Model):
    """The edge cache: a bounded in-memory tier in each instance, plus Redis (shared by
    all instances) when the backend has a Redis URL."""

    max_memory: Size = 64 * 1024 * 1024
    """Bytes the in-memory tier may hold (least recently used entries go first)."""
    max_entry: Size = 1024 * 1024
    """Largest representation cached; bigger ones are served, not stored."""
    delta_history: int = Field(4, ge=0, le=32)
    """Past representations kept per entry, to answer A-IM delta requests from them."""
    targeted: list[str] = ["Surrogate-Control"]
    """Origin fields aimed at the edge's cache, first present wins (RFC 9213): read instead
    of Cache-Control and Expires to decide storing and freshness, and not passed on.
    `CDN-Cache-Control` is not here by default: it goes on to the CDN in front. Add it
    when no CDN sits in front of the edge."""


class ImageSettings(Model):
    """The image routes' worker processes and what they keep between transforms."""

    workers: int | None = Field(None, ge=1, le=256)
    """Worker processes for transforms (default: the CPUs this process may use, a
    container's CPU limit included)."""
    masters: Size = 128 * 1024 * 1024
    """Bytes of decoded sources kept, so each further size or format of a photo is a
    resize and an encode, not a fetch and a decode (a 3000x2000 JPEG asked for at most
    1440 px keeps 4.5 MB). Memory shared with the workers, counted in this process's
    cgroup, not in its RSS; 0 turns it off. Linux only."""


class TopicRule(Model):
    """Who may subscribe to which topics. `{sub}` and `{claims.NAME}` are the caller's
    verified claims; `*` matches any run of characters except `:`."""

    topic: str
    """'public', 'user:{sub}', 'member:{claims.member_id}', 'news:*'."""
    public: bool = False
    """Anyone may subscribe, without a token."""
    roles: list[str] = []
    """A token whose `roles` hold one of these (default: any valid token)."""


class Events(Model):
    """Server-sent events: apps subscribe to topics at `path`, backends publish at
    `publish_path`; every event has an increasing id, topics keep a bounded history for
    reconnecting clients (Last-Event-ID), and with Redis all instances share them."""

    path: str = "/events"
    publish_path: str = "/_edge/publish"
    topics: list[TopicRule] = [TopicRule(topic="public", public=True)]
    publisher_keys_env: list[EnvName] = []
    """Env vars holding publisher keys (sent as `Authorization: Bearer <key>`)."""
    publisher_role: str = "publisher"
    """Or a JWT whose `roles` hold this."""
    history: int = Field(1000, ge=1, le=100_000)
    """Events kept per topic for replay."""
    history_age: Duration = 3600.0
    """…and for at most this long."""
    history_memory: Size = 32 * 1024 * 1024
    """In memory (no Redis URL): the bytes of history kept across all topics; the
    topics published to least recently lose theirs first (their streams' clients then
    get a `refresh` when they reconnect far behind). Redis keeps history per topic."""
    heartbeat: Duration = 15.0
    """Comment lines this often keep idle connections open through proxies."""
    retry: Duration = 3.0
    """The reconnection delay suggested to clients (`retry:`)."""
    max_topics: int = Field(16, ge=1, le=256)
    """Topics one connection may join."""
    max_queue: int = Field(256, ge=1)
    """Events waiting for one client; a client that falls further behind is told so and
    disconnected."""
    max_connections: int = Field(10_000, ge=1)
    """Open streams per instance (503 beyond)."""
    max_per_identity: int = Field(8, ge=1)
    """Open streams per caller (token subject, else client address; 429 beyond)."""
    max_event_size: Size = 64 * 1024
    """Largest published `data` (JSON bytes)."""


class WebPushProvider(Model):
    """Web Push (RFC 8030) with encrypted payloads (RFC 8291, aes128gcm) and VAPID
    (RFC 8292). The key pair's public half is served at `/_edge/push/vapid` for apps to
    subscribe with (`applicationServerKey`)."""

    KEY: ClassVar[tuple[str, str]] = ("vapid_private_key_env", "vapid_private_key_file")
    """Where its key comes from: an env var's name, or a file."""

    vapid_private_key_env: EnvName | None = None
    """Env var holding the VAPID private key: PEM, or the raw 32-byte P-256 key in
    base64url (what `vapid --gen` and most tools print)."""
    vapid_private_key_file: str | None = None
    """…or a PEM file (relative to the config directory)."""
    subject: str = "mailto:ops@example.com"
    """Who runs this sender (`mailto:` or `https:`), in every VAPID token."""
    endpoints: list[str] = ["https://fcm.googleapis.com",
                            "https://updates.push.services.mozilla.com",
                            "https://*.push.apple.com", "https://*.notify.windows.com"]
    """Push services subscriptions may point at, as origins (shell patterns:
    `https://*.push.apple.com`, `http://127.0.0.1:*`): the edge posts to no other
    address, whatever a client registers."""
    concurrency: int = Field(64, ge=1, le=10_000)
    """Requests to push services at once."""


class ApnsProvider(Model):
    """Apple Push Notification service: the HTTP/2 provider API with token-based auth
    (an ES256 JWT from the team's .p8 key, reused until it nears its hour)."""

    KEY: ClassVar[tuple[str, str]] = ("private_key_env", "private_key_file")
    """Where its key comes from: an env var's name, or a file."""

    team_id: str
    key_id: str
    private_key_env: EnvName | None = None
    """Env var holding the .p8 key (PEM)."""
    private_key_file: str | None = None
    """…or the .p8 file (relative to the config directory)."""
    url: str = "https://api.push.apple.com"
    """`https://api.sandbox.push.apple.com` for development builds."""
    bundle_ids: list[str] = []
    """Apps (bundle ids, `apns-topic`) devices may register for; empty: any."""
    ca_file: str | None = None
    """Trust this CA for `url` besides the system's (a test stand-in)."""
    concurrency: int = Field(32, ge=1, le=10_000)
    """Requests in flight at once (streams over one HTTP/2 connection)."""


class FcmProvider(Model):
    """Firebase Cloud Messaging, HTTP v1 API, authorised by a service account (OAuth2
    JWT-bearer grant; the access token is refreshed before it expires)."""

    KEY: ClassVar[tuple[str, str]] = ("service_account_env", "service_account_file")
    """Where its key comes from: an env var's name, or a file."""

    service_account_env: EnvName | None = None
    """Env var holding the service account's JSON key."""
    service_account_file: str | None = None
    """…or its file (relative to the config directory)."""
    project_id: str | None = None
    """Default: the service account's `project_id`."""
    url: str = "https://fcm.googleapis.com"
    concurrency: int = Field(64, ge=1, le=10_000)


class PushDefaults(Model):
    ttl: Duration = 86400.0
    """How long a push service keeps an undelivered notification."""
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    """Web Push `Urgency`; APNs priority 10 for high, else 5; FCM HIGH for high."""


class Push(Model):
    """Push notifications for registered devices without an open event stream: an event
    published with `push` options reaches them through Web Push, APNs or FCM."""

    webpush: WebPushProvider | None = None
    apns: ApnsProvider | None = None
    fcm: FcmProvider | None = None
    registrations_path: str = "/_edge/push/registrations"
    max_per_identity: int = Field(10, ge=1, le=1000)
    """Devices one caller (token subject) may register; registering one more replaces
    their oldest."""
    registration_ttl: Duration = 60 * 86400.0
    """A registration not renewed (registered again) for this long is dropped."""
    max_topics: int = Field(32, ge=1, le=256)
    queue: int = Field(100_000, ge=1)
    """Deliveries waiting on this instance; more are dropped (counted)."""
    retries: int = Field(3, ge=0, le=10)
    """Attempts after the first on 429 and 5xx (and network errors), backing off
    (honouring Retry-After)."""
    max_retry_after: Duration = 600.0
    """A longer Retry-After gives up on the delivery."""
    defaults: PushDefaults = PushDefaults()
    by_device: dict[str, PushDefaults] = {}
    """Per device class (the class the device registered with)."""


KeyKind = Literal["device", "user", "api_key", "ip", "route"]


class RateOverride(Model):
    rate: Rate
    burst: int | None = Field(None, ge=1)


class RateLimit(Model):
    """One limit: `rate` requests per period for each key, up to `burst` at once (GCRA:
    requests are spaced out, never counted in fixed windows)."""

    key: KeyKind | list[KeyKind] = "ip"
    """Who shares the budget: device (the token's device claim, else the device's API key
    — not a verified app key, which every install of an app shares — else X-Device-ID
    *within the client IP*, else the IP), user (token `sub`, else the IP), api_key (the
    verified app key's name, else the `api_key_header` value), ip (the real client, behind
    trusted proxies), route (everyone on the route), or a list of these."""
    rate: Rate
    """'100/min', '10/s', '5000/h'."""
    burst: int | None = Field(None, ge=1)
    """Requests allowed at once (default: the rate's count, a full period's worth)."""
    name: str | None = None
    """Shown in the RateLimit headers and metrics. Limits with the same name and key share
    a budget across routes; default: per route."""
    per_device: dict[str, RateOverride] = {}
    """Other rates by device class: `{watch: {rate: 20/min, burst: 5}}`."""
    per_tier: dict[str, RateOverride] = {}
    """Other rates for callers whose verified app key has this `tier` (see
    `auth.api_keys.tiers`): `{partner: {rate: 1000/min}}`. Wins over `per_device`."""


class RateLimits(Model):
    """Process-wide rate-limit settings (routes declare their limits)."""

    defaults: list[RateLimit] = []
    """Limits for every route that has no `rate_limit` of its own."""
    allow: list[Network] = []
    """Internal callers (CIDRs) that are never limited."""
    device_claim: str = "device_id"
    """The JWT claim holding a verified device id."""
    device_header: str = "X-Device-ID"
    api_key_header: str = "X-API-Key"
    on_backend_failure: Literal["local", "open", "closed"] = "local"
    """With Redis slow or down: `local` limits per instance in memory, `open` lets
    everything through, `closed` answers 503. Redis is tried again every second."""
    max_keys: int = Field(100_000, ge=100)
    """Buckets the in-memory limiter keeps (idle ones go first)."""


class Backend(Model):
    redis_url_env: EnvName | None = "EDGE_REDIS_URL"
    """Env var holding a Redis URL. When it is set, shared state lives in Redis; otherwise
    everything is in memory (one instance)."""
    memory_max_entries: int = Field(100_000, ge=100)
    """The in-memory backend keeps at most this many entries in each of its tables
    (idempotency and offline-queue records, push registration fields, event topics); the
    oldest go first. Also the purge times each instance keeps (with Redis too)."""
    at_start: Literal["degrade", "refuse"] = "degrade"
    """Redis set but not answering when the edge starts: `degrade` serves anyway (rate
    limits as `rate_limits.on_backend_failure` says, cache misses, events on this instance
    only) and says so; `refuse` exits with code 4, for orchestrators that should retry."""


class Reload(Model):
    watch: bool = True
    """Reload when a file under the config dir changes (SIGHUP always reloads)."""
    interval: Duration = 1.0
    """How often the config dir is checked for changes."""


class Observability(Model):
    access_log: bool = True
    """One JSON line per request on stdout."""
    request_id_header: str = "X-Request-ID"


class EdgeFile(Model):
    """config/edge.yaml: the process-wide settings."""

    listen: Listen = Listen()
    trusted_proxies: list[Network] = []
    """CIDRs of load balancers / CDNs whose X-Forwarded-* headers are believed."""
    public_hosts: list[str] = []
    """The hostnames apps and CDNs reach the edge by (`api.example.com`). Upstreams get
    `X-Forwarded-Host` only from here (the request's Host when it is one of them, else the
    first) or from a trusted proxy — never a Host a client made up."""
    services: dict[str, Service] = {}
    auth: Auth = Auth()
    devices: Devices = Devices()
    limits: Limits = Limits()
    admin: Admin = Admin()
    backend: Backend = Backend()
    reload: Reload = Reload()
    observability: Observability = Observability()
    keymaps: dict[str, dict[str, str]] = {}
    """Named, versioned key-shortening tables (`claims-v1: {claim_number: cn, ...}`),
    published at /_edge/keymaps/NAME so apps can expand keys. Never change a published
    version: add `claims-v2` instead."""
    compression: Compression = Compression()
    cache: CacheSettings = CacheSettings()
    images: ImageSettings = ImageSettings()
    rate_limits: RateLimits = RateLimits()
    events: Events | None = None
    """Server-sent events (off unless given)."""
    push: Push | None = None
    """Push notifications to registered devices (off unless given; needs `events`)."""
    drain_timeout: Duration = 30.0
    """On shutdown or reload, how long in-flight requests may take to finish."""
    problem_type_base: str = "urn:edge:problem:"
    """Prefix of the `type` of every problem+json answer."""


# ----------------------------------------------------------------------- routes/*.yaml


class QueryPolicy(Model):
    """Which client query parameters reach the upstream."""

    pass_: Literal["all", "none"] | list[str] = Field("all", alias="pass")
    """'all', 'none', or a list of parameter names to forward."""
    rename: dict[str, str] = {}
    """Client name → upstream name."""
    set: dict[str, str] = {}
    """Parameters always sent (override the client's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              use_attribute_docstrings=True)


class Source(Model):
    service: str
    """Name of a service in edge.yaml."""
    path: str
    """Upstream path template; may use the route's parameters, e.g. /members/{member_id}."""
    timeout: Duration | None = None
    """Overrides the service's `timeouts.read` for this route."""

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {v!r}")
        return v


class AggregateSource(Source):
    """One of several sources composed into one document. Its path may use route
    parameters and values from other sources' bodies: `/providers/{member.provider_id}`
    waits for `member` and runs as soon as it has answered."""

    fallback: Any = None
    """Used when this source fails or times out (the response then names it degraded).
    Without one, a failed source that is not required yields null."""
    required: bool = False
    """A failure of this source fails the whole request (502/504 naming it)."""
    pick: str | None = None
    """A JSON pointer into the body (`/items`): only that part is used."""
    first: bool = False
    """Take the first element of a list (null when empty)."""
    into: str | None = None
    """Nest this source's result inside another source's object instead of at the top."""
    key: str | None = None
    """The key it gets (default: the source's name)."""


class AllowRule(Model):
    """One way to be allowed in: compare a claim with a constant or a path parameter."""

    claim: str
    equals: str | None = None
    """The claim equals this (may be a path parameter like '{member_id}')."""
    contains: str | None = None
    """The claim (a list, or a space-separated string like `scope`) contains this."""


class OwnerRule(Model):
    """Object-level access (OWASP API1): the upstream's answer is released only when a
    field in it names the caller. Otherwise the client gets 404 (never 403: it must not
    learn that the object exists), and so does an upstream 403/404 on this route, so both
    look the same. A 2xx answer that can't be checked (not JSON, too big, no such field)
    is refused too. Checked before the answer is shaped or cached; a cached answer keeps
    its owner and is checked again on every hit."""

    field: str
    """A JSON pointer into the upstream's answer: `/member_id`."""
    claim: str | None = None
    """It must equal this claim of the caller's token (`sub`)..."""
    param: str | None = None
    """...or this path parameter."""
    unless: list[AllowRule] = []
    """Callers for whom any of these holds skip the check (staff: `{claim: roles,
    contains: admin}`)."""


class BodyRule(Model):
    """A field of the request's JSON body must name the caller, else 403. The body is read
    (and decoded) whole, so the upstream gets it with its own Content-Length."""

    field: str
    """A JSON pointer into the request body: `/member_id`."""
    claim: str
    """It must equal this claim of the caller's token."""
    set: bool = False
    """When the body lacks the field, fill it in from the claim (instead of 403)."""
    unless: list[AllowRule] = []
    """Callers for whom any of these holds skip the check."""


class RouteAuth(Model):
    jwt: Literal["required", "optional", "off"] = "optional"
    """required: 401 without a valid token; optional: a token, if sent, must be valid;
    off: tokens are ignored."""
    api_key: Literal["required", "optional", "off"] = "off"
    """An app key (edge.yaml `auth.api_keys`), checked before the token. required: 401
    without a valid one; optional: a key, if sent, must be valid; off: keys are ignored and
    the header passes through."""
    allow: list[AllowRule] = []
    """If any rule is given, at least one must hold (403 otherwise)."""
    owner: OwnerRule | None = None
    """Release the answer only to its owner (a field of the answer names them)."""
    body: list[BodyRule] = []
    """Fields of a JSON request body that must name the caller (POST/PUT/PATCH/DELETE)."""
    unowned: str | None = None
    """Why any caller may have every object this route reaches. It silences `edge check`'s
    warning about a `jwt: required` route with a path parameter and no `allow` or `owner`
    rule: say it, so the next engineer knows it was meant."""
    forward_token: bool = False
    """Pass the client's Authorization header to the upstream."""


PruneKind = Literal["null", "empty_string", "empty_list", "empty_object"]


class RoundPolicy(Model):
    """Less precision where the app doesn't need it."""

    floats: int | None = Field(None, ge=0, le=15)
    """Round every float to this many decimals."""
    timestamps: Literal["date", "minute", "second"] | None = None
    """Trim ISO-8601 timestamps to the date, the minute or the second."""
    keys: list[str] | None = None
    """Only under these keys (at any depth); everywhere when unset."""


class EnvelopePolicy(Model):
    """Wrap answers as `{"success", "data", "metadata"}` (and problems likewise)."""

    when: Literal["always", "on_request"] = "on_request"
    """on_request: only when the client sends `?envelope=true` or `X-Edge-Envelope: true`."""
    api_version: str = "1"
    """Reported as metadata.api_version."""


class PagePolicy(Model):
    """Paging for a list route: the edge clamps the size and adds `hasMore`, `next` and a
    `Link` header (RFC 8288)."""

    style: Literal["page", "cursor"] = "page"
    page_param: str = "page"
    size_param: str = "size"
    cursor_param: str = "cursor"
    upstream: dict[Literal["page", "size", "cursor"], str] = {}
    """The upstream's names for page/size/cursor when they differ from the client's."""
    default_size: int = Field(20, ge=1)
    max_size: int = Field(100, ge=1)
    max_by_device: dict[str, int] = {}
    """Smaller pages for some device classes, e.g. {watch: 5, phone: 20}."""
    items: str = "items"
    """Slash path to the list in the upstream document ('' for a top-level list)."""
    total: str | None = None
    """Slash path to a total count, if the upstream gives one."""
    has_more: str | None = None
    """Slash path to the upstream's own has-more flag, if any."""
    next_cursor: str | None = None
    """Slash path to the next cursor (cursor style)."""


SHAPE_STEPS = ("fields", "prune", "round", "keymap", "columnar", "paginate", "envelope")
"""The order `shape` steps run in, whatever order the YAML lists them: the shaper registry
(edge.shapers.SHAPERS) follows it and the `Shape` description quotes it."""


class Shape(Model):
    __doc__ = ("How a route reshapes the upstream's JSON. Steps run in a fixed order, "
               f"whatever order the keys are written in: {', '.join(SHAPE_STEPS)}; then "
               "serialization (JSON or MessagePack) and compression.")

    fields: str | dict[str, str] | None = None
    """A selection like `id,status,provider(name)`, for everyone or per class. Keys:
    `default`, a device class (`phone`), a network class (`slow`), or `phone/slow`; the
    most specific wins (pair, then network, then device, then default)."""
    client_fields: bool = True
    """Let clients narrow (never widen) the selection with `?fields=`."""
    keymap: str | None = None
    """Name of a keymap from edge.yaml; clients opt out with `?keymap=none` or
    `X-Edge-Keymap: none`."""
    prune: bool | list[PruneKind] = False
    """Drop empty values: true for all kinds, or a list of them."""
    round: RoundPolicy | None = None
    columnar: list[str] = []
    """Slash paths to lists of objects to send as `{"_k": [keys], "_d": [[row], ...]}`
    (`items`, `items/history`, or `.` for a top-level list). Runs after the keymap, so `_k`
    holds the short names."""
    paginate: PagePolicy | None = None
    envelope: EnvelopePolicy | None = None
    on_oversize: Literal["pass", "error"] = "pass"
    """An upstream body over limits.max_shaped_body: pass it through unshaped, or 502."""


TagHeader = Literal["Surrogate-Key", "Cache-Tag", "Edge-Cache-Tag"]


class CachePolicy(Model):
    """Keep this GET route's answers at the edge (a shared HTTP cache, RFC 9111) and tell
    CDNs and apps how long they may keep them. The origin's Cache-Control and Expires
    decide first; these settings apply where it says nothing."""

    ttl: Duration | None = None
    """How long an answer is fresh when the origin says nothing (`max-age` on answers).
    Unset: the origin's word only, else a heuristic (a tenth of the time since its
    Last-Modified, at most a day)."""
    scope: Literal["public", "private"] | None = None
    """public: one answer for everyone, credentials stripped, CDNs may store it
    (`s-maxage`); private: one per caller (keyed by the token's subject), only the app
    may store it. Default: private where every caller presents credentials (`jwt` or
    `api_key` required); elsewhere an anonymous answer is shared and an answer to a
    request with a token, cookie or app key is the caller's own. A route with
    `jwt: required` can't be public."""
    stale_while_revalidate: Duration = 0.0
    """After `ttl`, serve the stale answer this much longer while one background request
    refreshes it."""
    stale_if_error: Duration = 0.0
    """After `ttl`, serve the stale answer this much longer when the upstream fails."""
    s_maxage: Duration | None = None
    """How long shared caches (CDNs) keep a public answer; default `ttl`."""
    surrogate_control: bool = False
    """Also send `Surrogate-Control: max-age=…` (for CDNs that read it instead)."""
    cdn_cache_control: bool = False
    """Also send `CDN-Cache-Control: max-age=…` (RFC 9213) for the CDN in front: what
    `s_maxage` says, plus the stale allowances."""
    tags: list[str] = []
    """Purge handles, with route parameters: `member:{member_id}`. Sent to CDNs in the
    `tag_headers` and usable with the purge endpoint."""
    tag_headers: list[TagHeader] = ["Surrogate-Key"]
    override_upstream: bool = False
    """Store answers even when the upstream says `no-store`/`private` or sets a cookie.
    Shown by `edge routes`."""
    delta: bool = True
    """Answer `A-IM: json-patch` / `merge-patch` with a patch from the client's version."""


class WebSocketPolicy(Model):
    """A WebSocket route's policy. The handshake is an ordinary request first: routing,
    device, auth (a token in `Authorization`, or for browsers a `bearer.<jwt>`
    subprotocol, offered beside `bearer`), the route's rate limits; refusals are
    problem+json before the upgrade."""

    origins: list[str] = []
    """Browser origins allowed to open it (`https://app.example.com`, or `*`). Requests
    without `Origin` (apps) are always allowed; with one, it must be listed or be one of
    the edge's `public_hosts` (cross-site WebSocket hijacking)."""
    max_message: Size = 1024 * 1024
    """Largest message either way; a bigger one closes the socket with 1009."""
    messages_per_second: float = Field(50.0, gt=0)
    """Messages a caller (token subject, else client address) may send on this route, all
    their sockets together, on average; past `burst` the socket is closed with 1008."""
    burst: int = Field(100, ge=1)
    idle_timeout: Duration = 300.0
    """No message either way for this long: closed with 1001."""
    heartbeat: Duration = 30.0
    """Ping the client this often; no pong in time closes the socket."""
    compress: bool = True
    """Negotiate permessage-deflate with each side (each side decides its own)."""
    max_per_identity: int = Field(16, ge=1)
    """Open sockets per caller (token subject, else client address) on this instance."""


class ImageVariant(Model):
    width: int | None = Field(None, ge=16, le=8192)
    quality: int | None = Field(None, ge=1, le=100)


class ImagePolicy(Model):
    """This route's source is an image: resized and re-encoded per device (Pillow, in a
    pool of worker processes), cached, and answered with a strong ETag."""

    widths: list[int] = [160, 320, 480, 640, 800, 1080, 1440]
    """Output widths: asked-for sizes snap up to the next one (caches stay small)."""
    presets: dict[str, ImageVariant] = {}
    """Named sizes for `?preset=thumb`."""
    by_device: dict[str, ImageVariant] = {}
    """Defaults per device class (`phone`) or network class (`slow`; Save-Data counts as
    slow); network wins. Client Hints (Sec-CH-Width, Viewport-Width × DPR) come first."""
    default: ImageVariant = ImageVariant(width=800)
    fit: Literal["contain", "cover"] = "contain"
    crop: Literal["center", "top", "bottom", "left", "right", "entropy"] = "center"
    formats: list[Literal["avif", "webp", "jpeg", "png"]] = ["avif", "webp", "jpeg"]
    """Output formats offered, picked by the client's Accept."""
    sources: list[Literal["jpeg", "png", "gif", "webp", "avif"]] = ["jpeg", "png", "gif",
                                                                    "webp"]
    """Source formats that may be opened at all."""
    quality: dict[Literal["avif", "webp", "jpeg"], int] = {}
    """Quality per output format when nothing else says (defaults: avif 55, webp 75,
    jpeg 80); a preset's or device's quality is for JPEG and scaled for the others."""
    effort: Literal["fast", "balanced", "small"] = "balanced"
    """Encoder time against bytes. `fast`: bicubic resize, WebP method 1, AVIF speed 10,
    plain JPEG (about 0.75x the CPU of `balanced` per transform, about as many bytes);
    `balanced`: Lanczos, WebP method 4, AVIF speed 8, optimised progressive JPEG;
    `small`: WebP method 6, AVIF speed 6 (several times the encode time, ~2% fewer bytes)."""
    signing_keys_env: list[EnvName] = []
    """Env vars with HMAC keys (32+ bytes). Arbitrary `?w=&h=&q=&fit=` need a `sig` made
    with one of them; presets and device defaults don't."""
    max_source: Size = 20 * 1024 * 1024
    max_pixels: int = Field(40_000_000, ge=1, le=89_000_000)
    """Checked from the image header, before decoding."""
    max_output: Size = 5 * 1024 * 1024
    timeout: Duration = 30.0
    """The longest one transform may take: past it the answer is 422 `too-slow`, and the
    worker process doing it is killed at once and replaced (other transforms go on)."""
    ttl: Duration = 86400.0
    """How long a transformed image is kept and may be cached by CDNs and apps."""


ROUTE_KINDS = ("source", "sources", "batch", "offline_queue")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Route(Model):
    """One route: `METHOD /path/template` → an upstream source, plus its policies."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True,
        json_schema_extra={"oneOf": [{"required": [k]} for k in ROUTE_KINDS]})

    route: str
    """'GET /api/v1/members/{member_id}'. HEAD is served by GET routes. `* /path` answers
    every method (a route for the same path and one method wins over it)."""
    methods: list[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]] | None \
        = None
    """With `* /path`: only these methods (others get 405)."""
    source: Source | None = None
    """The one upstream this route proxies (or shapes)."""
    sources: dict[str, AggregateSource] | None = None
    """Several upstreams called concurrently and composed into one JSON document
    (`{name: body, ...}` unless `into`/`key`/`pick`/`first` say otherwise)."""
    query: QueryPolicy = QueryPolicy()
    auth: RouteAuth = RouteAuth()
    max_request_body: Size | None = None
    """Overrides limits.max_request_body for this route."""
    request_encoding: Literal["pass", "decode"] = "pass"
    """A compressed request body (`Content-Encoding: gzip`, `br`, `deflate`): `pass` sends
    the upstream the bytes and headers the client sent; `decode` undoes the coding first
    (bounded by max_request_body, bombs refused with 413, unknown codings with 415) and
    sends the decoded bytes with their own Content-Length and no Content-Encoding. Routes
    whose policies read the body (batch, offline queue, `auth.body` rules) always decode."""
    shape: Shape | None = None
    """Reshape JSON responses (buffers them); without it, bodies stream through."""
    compression: Compression | None = None
    """Overrides the edge.yaml compression settings for this route's shaped responses."""
    idempotency: Idempotency | None = None
    """Honour `Idempotency-Key` (POST, PUT, PATCH and DELETE routes)."""
    cache: CachePolicy | None = None
    """Cache answers at the edge (any GET route; RFC 9111)."""
    invalidates: list[str] = []
    """Tags a successful POST/PUT/PATCH/DELETE here purges: `member:{member_id}`."""
    image: ImagePolicy | None = None
    """The source is an image to resize and re-encode per device (GET routes)."""
    example: str | None = None
    """A request path (and query) this route answers, e.g.
    `/api/v1/members/1001/claims?size=5`: shown by `edge routes --json` and filled in by
    the playground. Checked against the route's template."""
    republish: str | None = None
    """A topic: the edge follows this route's upstream `text/event-stream` itself and
    publishes every event into that topic, so apps follow it on `/events` (with replay)
    instead of each holding a stream to the backend. GET routes without path parameters;
    needs `events` in edge.yaml."""
    websocket: WebSocketPolicy | None = None
    """This GET route is a WebSocket: the handshake passes the route's auth and limits,
    then frames are relayed both ways to the source (`ws://` / `wss://` of its service)."""
    rate_limit: list[RateLimit] | None = None
    """Limits for this route (every one must allow a request); default: edge.yaml's
    rate_limits.defaults. `[]`: none."""
    batch: BatchPolicy | None = None
    """Instead of a source: this POST route runs a list of sub-requests."""
    offline_queue: OfflineQueuePolicy | None = None
    """Instead of a source: this POST route applies a device's queued operations."""
    description: str = ""


class Idempotency(Model):
    """Honour `Idempotency-Key` on this (unsafe) route: the first response is stored per
    caller and key, and a retry with the same key gets it back without a second upstream
    call (IETF httpapi idempotency-key draft)."""

    ttl: Duration = 86400.0
    """How long a stored response answers retries."""
    required: bool = False
    """Refuse requests without an `Idempotency-Key` (400)."""
    wait: Duration = 5.0
    """A retry arriving while the first request is still in flight waits this long for
    its response, then gets 409 (0: answer 409 at once)."""
    max_response: Size = 1024 * 1024
    """Largest response body stored; a bigger one is replayed with its status and headers
    but no body."""


class BatchPolicy(Model):
    """This route is a batch endpoint: a JSON list of sub-requests, each run through its
    own route as if it had arrived alone, answered as one JSON list."""

    max_items: int = Field(20, ge=1, le=1000)
    """Most sub-requests in one batch (413 beyond)."""
    concurrency: int = Field(8, ge=1, le=256)
    """Sub-requests in flight at once."""
    max_item_response: Size = 1024 * 1024
    """Largest sub-response body embedded; a bigger one answers that item with 502."""
    timeout: Duration = 30.0
    """The whole batch; items not done by then answer 504."""


class OfflineQueuePolicy(Model):
    """This route takes a device's queued offline operations and applies them in order,
    each with its `local_id` as the Idempotency-Key, so replaying a queue creates nothing
    twice. Unsafe operations may only target routes with `idempotency`."""

    max_operations: int = Field(100, ge=1, le=10000)
    """Most operations in one upload (413 beyond)."""
    max_item_response: Size = 256 * 1024
    """Largest response body read per operation."""
    timeout: Duration = 60.0
    """The whole upload; operations not done by then answer 504."""
    server_id: str = "id"
    """Where the created resource's id is in a 2xx JSON response body (a dotted key path);
    when absent there, the last segment of the `Location` header."""


class RoutesFile(Model):
    routes: list[Route]


# ------------------------------------------------------------------ what the loader makes


@dataclass(frozen=True)
class RouteSpec:
    """A validated route with everything derived from it at load time."""

    model: Route
    method: str
    template: Template
    upstream_path: PathBuilder | None  # None for a route with several `sources`
    file: str
    line: int
    shapers: tuple[Any, ...] = ()
    """The `shape` steps, built once by the loader (edge.shapers instances, SHAPE_STEPS
    order); `Any` because config knows no shaper type."""

    @property
    def name(self) -> str:
        methods = self.model.methods
        return f"{','.join(methods) if methods else self.method} {self.template.text}"

    @property
    def methods(self) -> tuple[str, ...]:
        """What the route table holds it under (`*`: any method)."""
        return tuple(self.model.methods or (self.method,))

    def answers(self, method: str) -> bool:
        """Does this route take requests with this method?"""
        return self.method == method or (self.method == "*" and (
            not self.model.methods or method in self.model.methods))

    @property
    def shape(self) -> Shape | None:
        """What answers go through: the `shape` block, or `shape: {}` for composed `sources`
        (always JSON); None when bodies stream through."""
        m = self.model
        return m.shape if m.shape is not None or m.sources is None else Shape()


@dataclass(frozen=True)
class Config:
    root: Path
    edge: EdgeFile
    routes: tuple[RouteSpec, ...]
    env: dict[str, str] = field(default_factory=dict, compare=False)
    warnings: tuple[str, ...] = ()  # `file:line:col: warning: ...`, shown by `edge check`
    api_keys: tuple[ApiKey, ...] = ()  # auth.api_keys.keys and those of its file

    def redis_url(self) -> str | None:
        name = self.edge.backend.redis_url_env
        return (self.env.get(name) or None) if name else None
