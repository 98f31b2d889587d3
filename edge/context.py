"""Who and what is asking: the device profile, the client address, the request context."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Protocol

from multidict import CIMultiDictProxy, MultiMapping

from .config import Devices
from .inputs import NETWORK_HEADERS
from .stores import StoreSize

SAVE_DATA, ECT, DOWNLINK, RTT, NETWORK_TYPE = NETWORK_HEADERS

if TYPE_CHECKING:
    from .policies.apikey import AppKey

_ECT = {"slow-2g": "slow", "2g": "slow", "3g": "medium", "4g": "fast"}
_SPEED = {"slow": 0, "medium": 1, "fast": 2}
PROFILES = 4096  # device profiles kept, and User-Agents classified
_DECIMAL = re.compile(r"\d{1,6}(?:\.\d{1,3})?")
_NETWORK_TYPE = {"2g": "slow", "edge": "slow", "gprs": "slow", "3g": "medium",
                 "4g": "fast", "lte": "fast", "5g": "fast", "wifi": "fast",
                 "ethernet": "fast", "cellular": "medium"}


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A small, named description of the client; classes become cache variants."""

    device: str
    network: str
    save_data: bool = False
    used_headers: tuple[str, ...] = ()  # request headers that decided the profile (for Vary)
    network_by: tuple[str, ...] = ()  # each hint read and the class it says (for explain)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _classify_ua(rules: tuple[tuple[re.Pattern[str], str], ...], default: str, ua: str) -> str:
    for pattern, device in rules:
        if pattern.search(ua):
            return device
    return default


def _is_trusted(trusted: tuple[Network, ...], ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in trusted)


class DeviceClassifier:
    """Built once per config from `devices`; `profile(headers)` is cheap per request."""

    def __init__(self, cfg: Devices) -> None:
        self.classes = frozenset(cfg.classes)
        self.default = cfg.default
        self.header = cfg.header
        self.rules = [(re.compile(r.pattern, re.IGNORECASE), r.device) for r in cfg.user_agent]
        net = cfg.network
        self.downlink = ((net.slow.max_downlink, "slow"), (net.medium.max_downlink, "medium"))
        self.rtt = ((net.slow.min_rtt, "slow"), (net.medium.min_rtt, "medium"))
        # (a function of the rules, not a bound method: a cache on self holding self
        # would make every config generation cyclic garbage, freed only by a full GC)
        self._by_ua = lru_cache(maxsize=PROFILES)(
            partial(_classify_ua, tuple(self.rules), self.default))
        self._profiles: dict[tuple[str | None, ...], DeviceProfile] = {}
        self.max_profiles = PROFILES
        self.evictions = 0

    def size(self) -> StoreSize:
        """The profiles kept (one per distinct combination of the headers that decide
        them); the User-Agent classification cache beside it is bounded the same."""
        return StoreSize(len(self._profiles), self.max_profiles, evictions=self.evictions)

    def profile(self, headers: Mapping[str, str]) -> DeviceProfile:
        # Few distinct header combinations exist in a fleet: classify each once.
        # (client hints are read where they matter, by the image routes: images.negotiate)
        get = headers.get
        key = (get(self.header), get("User-Agent"), get(SAVE_DATA), get(ECT),
               get(NETWORK_TYPE), get(DOWNLINK), get(RTT))
        found = self._profiles.get(key)
        if found is None:
            if len(self._profiles) >= self.max_profiles:
                self.evictions += len(self._profiles)
                self._profiles.clear()
            found = self._profiles[key] = self._classify(*key)
        return found

    def _classify(self, named: str | None, ua: str | None, save: str | None, ect: str | None,
                  network_type: str | None, downlink: str | None,
                  rtt: str | None) -> DeviceProfile:
        used: list[str] = []
        if named is not None and named.lower() in self.classes:
            device = named.lower()
            used.append(self.header)
        else:
            device = self._by_ua(ua[:512]) if ua else self.default
            if ua:
                used.append("User-Agent")
        save_data = (save or "").strip().lower() == "on"
        said: list[tuple[str, str, str]] = []  # (header, its value, the class it says)
        if save_data:
            said.append((SAVE_DATA, "on", "slow"))
        else:
            if ect is not None and ect.strip().lower() in _ECT:
                said.append((ECT, ect.strip().lower(), _ECT[ect.strip().lower()]))
            mbps = _decimal(downlink)
            if mbps is not None:
                said.append((DOWNLINK, f"{mbps:g} Mbit/s", next(
                    (c for bound, c in self.downlink if bound is not None and mbps <= bound),
                    "fast")))
            ms = _decimal(rtt)
            if ms is not None:
                said.append((RTT, f"{ms:g} ms", next(
                    (c for bound, c in self.rtt if bound is not None and ms >= bound * 1000),
                    "fast")))
            if network_type is not None and network_type.strip().lower() in _NETWORK_TYPE:
                kind = network_type.strip().lower()
                said.append((NETWORK_TYPE, kind, _NETWORK_TYPE[kind]))
        # the slowest any hint says: a phone is as slow as its worst sign
        network = min((c for _, _, c in said), key=_SPEED.__getitem__, default="unknown")
        used += [h for h, _, _ in said]
        return DeviceProfile(device=device, network=network, save_data=save_data,
                             used_headers=tuple(used),
                             network_by=tuple(f"{h}: {v} → {c}" for h, v, c in said))


def _decimal(raw: str | None) -> float | None:
    """A client hint's number (`Downlink: 0.35`, `RTT: 250`), or None if it isn't one."""
    if raw is None:
        return None
    raw = raw.strip()
    return float(raw) if _DECIMAL.fullmatch(raw) else None


class ClientAddress:
    """Works out the real client IP, believing X-Forwarded-For only from trusted proxies."""

    def __init__(self, trusted: Sequence[Network]) -> None:
        self.trusted = tuple(trusted)
        self._cache = lru_cache(maxsize=1024)(partial(_is_trusted, self.trusted))

    def is_trusted(self, ip: str | None) -> bool:
        return bool(self.trusted) and ip is not None and self._cache(ip)

    def client_ip(self, peer: str | None, xff: str | None) -> str:
        """The rightmost address in the chain that is not a trusted proxy."""
        if peer is None:
            return "unknown"
        if not xff or not self.is_trusted(peer):
            return peer
        hops = [h.strip() for h in xff.split(",")]
        for hop in reversed(hops):
            if not hop:
                continue
            if not self.is_trusted(hop):
                return hop
        return hops[0] or peer


class Incoming(Protocol):
    """What the pipeline reads from a request: an aiohttp request, or one item of a batch."""

    @property
    def method(self) -> str: ...
    @property
    def raw_path(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def query(self) -> MultiMapping[str]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def scheme(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def body_exists(self) -> bool: ...
    @property
    def content(self) -> Any: ...  # has iter_chunked(n)


@dataclass(slots=True)
class Exchange:
    """One request on its way through the pipeline (edge/pipeline): what the stages have
    learnt and decided so far. Every stage reads and writes this, nothing else."""

    request_id: str
    route_name: str
    params: dict[str, str]
    device: DeviceProfile
    client_ip: str
    identity: dict[str, Any] | None = None
    app: AppKey | None = None  # the verified app key, on routes that take keys
    path: str = ""  # the raw (still percent-encoded) path, without the query
    fields_param: str | None = None  # the client's ?fields=, for shaped routes
    fields: Any = None  # … parsed (a shapers.projection.Selection)
    keymap_off: bool = False  # the client asked for full keys (?keymap=none)
    envelope: bool = False  # answers (data and problems) go in the standard envelope
    started: float = 0.0  # perf_counter() when the request arrived
    route: Any = None  # the matched runtime.CompiledRoute, once routing is done
    degraded: list[str] | None = None  # aggregated sources that fell back
    shape_skipped: str | None = None  # why a shaped route relayed the body unshaped
    page: dict[str, Any] | None = None  # pagination state of a paginated route
    query: Any = None  # the parsed client query, when a shaped route needs it
    timings: dict[str, float] = field(default_factory=dict)
    # Set for batch items: read whole responses (up to this size), never stream them.
    buffer_limit: int | None = None
    replayed: bool = False  # answered from a stored idempotent response
    conditional: Any = None  # the request headers, for a GET/HEAD's If-None-Match & co.
    cache_result: str | None = None  # how a cached route's answer came about
    response_headers: dict[str, str] | None = None  # added to the answer (RateLimit …)
    owner: str | None = None  # whose object the answer is (auth.owner), once checked
    request: Any = None  # the Incoming request (a client's, or a batch item)
    rt: Any = None  # the runtime.Runtime (config generation) serving it
    raw_query: str = ""
    target: str = ""  # the upstream path and query, once the source has built it
    fmt: str = "json"  # the representation negotiated for a shaped route
    coding: str | None = None  # the content coding negotiated for a shaped route
    bytes_in: list[int] = field(default_factory=lambda: [0])  # request body bytes read
    trace: Any = None  # a pipeline.Trace when the request is being explained
    cache_key: str | None = None  # the edge cache's key for the answer, on a cached route
    revalidate: Any = None  # the cache's entry the upstream is asked about (a 304 keeps it)
    body: bytes | None = None  # the request body, when a stage had to read it whole
    variant: Any = None  # an image route's images.ImageSpec for this request


RequestContext = Exchange  # the name the shapers know it by
