"""HTTP caching rules (RFC 9111, RFC 5861): what an origin's answer says about keeping it,
and what a request says about being answered from what is kept. Pure functions over
headers; the edge cache (caching.py, policies/cache.py) applies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


def directives(headers: Mapping[str, str], name: str = "Cache-Control") -> dict[str, str | None]:
    """The header's directives, lower-case names, values unquoted (every field line)."""
    getall = getattr(headers, "getall", None)
    values = getall(name, []) if getall is not None else (
        [headers[name]] if name in headers else [])
    out: dict[str, str | None] = {}
    for value in values:
        for part in _split(value):
            key, eq, arg = part.partition("=")
            key = key.strip().lower()
            if not key:
                continue
            if key not in out:  # the first of a repeated directive counts
                out[key] = arg.strip().strip('"') if eq else None
    return out


def _split(value: str) -> list[str]:
    """Comma-separated, but not inside a quoted string (`no-cache="a, b"`)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def seconds(value: str | None) -> float | None:
    """A delta-seconds argument; None when absent or not a number (then: not given)."""
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return float(max(n, 0))


def http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class Stored:
    """What an origin's answer says about keeping it, as the edge (a shared cache) reads
    it: whether it may be stored at all, for how long it is fresh, and how stale it may
    be served."""

    storable: bool
    lifetime: float | None  # seconds fresh; None: the origin didn't say (the route decides)
    age: float  # how old it already was when it reached the edge (Age, Date)
    revalidate: bool  # no-cache: stored, but never served without asking the origin
    must_revalidate: bool  # must-revalidate / proxy-revalidate: never served stale
    swr: float | None  # the origin's stale-while-revalidate
    sie: float | None  # the origin's stale-if-error
    explicit: bool  # the origin sent Cache-Control or Expires
    heuristic: float | None = None  # §4.2.2: a tenth of its Last-Modified age, at most a day
    public: bool = False  # `public`: heuristic freshness allowed whatever the status


def targeted_field(headers: Mapping[str, str], targeted: Sequence[str]) -> str | None:
    """The first of the fields aimed at this cache that the answer has (RFC 9213)."""
    return next((name for name in targeted if name in headers), None)


def read_response(headers: Mapping[str, str], now: float, *, shared: bool = True,
                  targeted: Sequence[str] = ()) -> Stored:
    """RFC 9111 §3 and §4.2 for one answer: `shared` reads s-maxage and refuses `private`
    (§3.5: so does an answer with Set-Cookie at the edge, which never replays cookies).
    `targeted`: the fields aimed at this cache, in precedence order (RFC 9213:
    `Surrogate-Control`, `CDN-Cache-Control`, …); the first one present is read instead
    of Cache-Control and Expires."""
    field = targeted_field(headers, targeted) if targeted else None
    cc = directives(headers, field) if field is not None else directives(headers)
    if field is not None:
        for name in ("max-age", "s-maxage"):  # Surrogate-Control's `max-age=30+60`
            if cc.get(name):
                cc[name] = str(cc[name]).partition("+")[0]
    storable = "no-store" not in cc and not (shared and "private" in cc) \
        and "Set-Cookie" not in headers
    lifetime: float | None = None
    if shared and "s-maxage" in cc:
        lifetime = seconds(cc["s-maxage"])
    if lifetime is None and "max-age" in cc:
        lifetime = seconds(cc["max-age"])
        if lifetime is None:
            lifetime = 0.0  # an invalid max-age: stale (§4.2.1)
    date = http_date(headers.get("Date"))
    if lifetime is None and field is None and "Expires" in headers:
        expires = http_date(headers.get("Expires"))
        # an invalid Expires (`0`, garbage) means already expired (§5.3)
        lifetime = 0.0 if expires is None else max(0.0, expires - (date or now))
    # The age it arrived with is the upstream's Age (as Varnish reads it): Date has a
    # one-second grain and the clocks may differ, so it only dates an Expires.
    age = seconds(headers.get("Age")) or 0.0
    heuristic = None
    if lifetime is None:
        modified = http_date(headers.get("Last-Modified"))
        if modified is not None:
            heuristic = min(max(0.0, ((date or now) - modified) / 10), HEURISTIC_CAP)
    return Stored(
        storable=storable, lifetime=lifetime, age=min(age, 365 * 86_400.0),
        revalidate="no-cache" in cc,
        must_revalidate="must-revalidate" in cc or (shared and "proxy-revalidate" in cc),
        swr=seconds(cc.get("stale-while-revalidate")),
        sie=seconds(cc.get("stale-if-error")),
        explicit=bool(cc) or "Expires" in headers or field is not None, heuristic=heuristic,
        public="public" in cc)


HEURISTIC_CAP = 86_400.0  # as Squid and Firefox: a heuristic never says more than a day
# RFC 9110 §15.1: answers with these statuses may be given a heuristic lifetime (and the
# route's `ttl`, when the origin is silent); any other is kept only when the origin says
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# … and these may be kept with the origin's explicit freshness (the edge knows them)
EXPLICIT_STATUSES = HEURISTIC_STATUSES | {302, 303, 307}


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request says about being answered from a cache (§5.2.1)."""

    no_cache: bool = False
    max_age: float | None = None
    max_stale: float | None = None  # inf: any staleness
    min_fresh: float | None = None
    only_if_cached: bool = False

    def accepts(self, age: float, fresh_left: float) -> bool:
        """May an answer this old, fresh for this much longer (negative: stale for that
        long), be served without asking the origin?"""
        if self.no_cache:
            return False
        if self.max_age is not None and (age > self.max_age or self.max_age == 0):
            return False  # (max-age=0, a browser's reload: always ask the origin)
        if fresh_left > 0:
            return self.min_fresh is None or fresh_left >= self.min_fresh
        return self.max_stale is not None and -fresh_left <= self.max_stale


ANY = Asked()


def read_request(headers: Mapping[str, str]) -> Asked:
    if "Cache-Control" not in headers:
        return ANY
    cc = directives(headers)
    max_stale: float | None = None
    if "max-stale" in cc:
        max_stale = seconds(cc["max-stale"]) if cc["max-stale"] is not None else float("inf")
    return Asked(no_cache="no-cache" in cc, max_age=seconds(cc.get("max-age")),
                 max_stale=max_stale, min_fresh=seconds(cc.get("min-fresh")),
                 only_if_cached="only-if-cached" in cc)
