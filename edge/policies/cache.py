"""HTTP caching at the edge: representation ETags, conditional answers, cache entries,
the headers CDNs and apps read, and RFC 3229 deltas.

An entry is one representation variant — route + upstream request + device and network
class + `fields` + keymap + envelope + format (+ caller, for private answers) — held as
its uncompressed bytes. Compressed variants are added as clients ask for them, so each
is compressed once. A few past versions stay with the entry, so an app that holds one of
them can get a JSON Patch (or merge patch) to the current one instead of all of it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any

import json_merge_patch
import jsonpatch
import msgpack
import orjson

from ..config import CachePolicy, CacheSettings
from ..context import Exchange
from ..encoding import parse_qlist
from ..routing import PLACEHOLDER

IM_TYPES = {"json-patch": "application/json-patch+json",
            "merge-patch": "application/merge-patch+json"}
# A 304 carries what a 200 would, minus the body's own description (RFC 9110 §15.4.5).
NOT_ON_304 = frozenset({"content-type", "content-length", "content-encoding"})


def etag_of(body: bytes) -> str:
    """A strong validator for these exact bytes: 16 url-safe characters."""
    digest = hashlib.blake2b(body, digest_size=12).digest()
    return base64.urlsafe_b64encode(digest).decode()


def quoted(tag: str, coding: str | None = None, *, weak: bool = False) -> str:
    """The ETag header value; a compressed variant is a representation of its own."""
    value = f'"{tag}-{coding}"' if coding else f'"{tag}"'
    return "W/" + value if weak else value


def _bare(tag: str) -> str:
    """Weak comparison: drop W/, the quotes and a coding suffix."""
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    for suffix in ("-br", "-gzip"):
        if tag.endswith(suffix):
            return tag[: -len(suffix)]
    return tag


def if_none_match(header: str | None) -> list[str] | None:
    """The entity-tags a client holds (`["*"]` for `*`), None without the header."""
    if header is None:
        return None
    return [_bare(t) for t in header[:2048].split(",") if t.strip()][:32]


def not_modified(headers: Mapping[str, str], etag: str,
                 last_modified: str | None) -> bool:
    """RFC 9110 §13.2.2 for GET/HEAD: If-None-Match wins; If-Modified-Since without it."""
    held = if_none_match(headers.get("If-None-Match"))
    if held is not None:
        return "*" in held or etag in held
    since = headers.get("If-Modified-Since")
    if since is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def wanted_delta(headers: Mapping[str, str]) -> str | None:
    """`json-patch` or `merge-patch` when the client's A-IM accepts one."""
    raw = headers.get("A-IM")
    if not raw:
        return None
    best, best_q = None, 0.0
    for token, q in parse_qlist(raw):
        if token in IM_TYPES and q > best_q:
            best, best_q = token, q
    return best


@dataclass(slots=True)
class Entry:
    """One cached representation."""

    status: int
    headers: list[tuple[str, str]]  # Content-Type, Vary, Last-Modified, X-Edge-*, …
    body: bytes  # uncompressed
    etag: str
    fmt: str
    stored_at: float  # wall clock when its upstream request started
    fresh_until: float
    stale_until: float  # serving stale (revalidate or error) is allowed until then
    store_until: float  # kept in the store until then (for revalidation and deltas)
    tags: tuple[str, ...]
    up_etag: str | None = None  # the upstream's validators, to revalidate with
    up_last_modified: str | None = None
    variants: dict[str, bytes] = field(default_factory=dict)  # coding → compressed body
    history: list[tuple[str, bytes]] = field(default_factory=list)  # older, newest first
    deltas: dict[tuple[str, str], bytes | None] = field(default_factory=dict)  # not stored
    storable: bool = True  # false when the upstream said no-store/private or set a cookie
    owner: str | None = None  # auth.owner: whose object this is (checked on every hit)
    # the upstream's Vary: (header, value in the request that fetched it), lower-case names
    vary: tuple[tuple[str, str | None], ...] = ()

    def fits(self, headers: Mapping[str, str]) -> bool:
        """May this entry answer a request with these headers (the upstream's Vary)?"""
        return all(headers.get(name) == value for name, value in self.vary)

    @property
    def size(self) -> int:
        """Bytes it holds, counting room for the br and gzip variants added as clients ask
        (compressed JSON is rarely over a quarter of the original)."""
        variants = max(sum(len(v) for v in self.variants.values()), len(self.body) // 2)
        return len(self.body) + variants + sum(len(b) for _, b in self.history) + 256

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    def pack(self) -> bytes:
        return bytes(msgpack.packb([
            1, self.status, self.headers, self.body, self.etag, self.fmt, self.stored_at,
            self.fresh_until, self.stale_until, self.store_until, list(self.tags),
            self.up_etag, self.up_last_modified, self.variants, self.history, self.owner,
            [list(v) for v in self.vary],
        ], use_bin_type=True))

    @classmethod
    def unpack(cls, raw: bytes) -> Entry:
        fields = msgpack.unpackb(raw)
        (version, status, headers, body, etag, fmt, stored_at, fresh_until, stale_until,
         store_until, tags, up_etag, up_lm, variants, history) = fields[:15]
        if version != 1:
            raise ValueError("unknown entry version")
        entry = cls(status, [tuple(h) for h in headers], body, etag, fmt, stored_at,
                    fresh_until, stale_until, store_until, tuple(tags), up_etag, up_lm,
                    dict(variants), [tuple(h) for h in history])
        if len(fields) > 16:
            entry.owner = fields[15]
            entry.vary = tuple((str(n), v) for n, v in fields[16])
        return entry

    def delta(self, base: str, kind: str) -> bytes | None:
        """A patch from the version `base` to this one, if it is kept and smaller."""
        memo = self.deltas.get((base, kind), b"")
        if memo != b"":
            return memo
        out = self._delta(base, kind)
        if len(self.deltas) > 16:
            self.deltas.clear()
        self.deltas[(base, kind)] = out
        return out

    def _delta(self, base: str, kind: str) -> bytes | None:
        if self.fmt != "json":
            return None
        old = next((body for tag, body in self.history if tag == base), None)
        if old is None:
            return None
        src, dst = orjson.loads(old), orjson.loads(self.body)
        if kind == "json-patch":
            patch: Any = jsonpatch.make_patch(src, dst).patch
            result = jsonpatch.apply_patch(src, patch)
        else:
            # RFC 7396 can't say "set to null", so not every change can be said this way
            patch = json_merge_patch.create_patch(src, dst)
            result = json_merge_patch.merge(copy.deepcopy(src), patch)
        # Only a patch that rebuilds the document exactly goes out: same values and types
        # (1 is not 1.0, false is not 0), member order aside (JSON objects have none).
        if _canonical(result) != _canonical(dst):
            return None
        out = orjson.dumps(patch)
        return out if len(out) < len(self.body) else None


def _canonical(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _seconds(value: float) -> int:
    return max(0, int(round(value)))


class RouteCache:
    """A route's `cache` block, compiled."""

    def __init__(self, cfg: CachePolicy, route_name: str, auth_mode: str,
                 settings: CacheSettings) -> None:
        self.cfg = cfg
        self.route_name = route_name
        self.scope = cfg.scope or ("public" if auth_mode == "off" else "private")
        self.ttl = cfg.ttl
        self.swr = cfg.stale_while_revalidate
        self.sie = cfg.stale_if_error
        self.max_entry = settings.max_entry
        self.history = settings.delta_history if cfg.delta else 0
        self.delta = cfg.delta
        self.override = cfg.override_upstream
        # request headers the upstream's answers on this route were seen to Vary on: part
        # of every key from then on (learned, since the upstream only says so in answers)
        self.vary_names: tuple[str, ...] = ()
        tail = []
        if self.swr:
            tail.append(f"stale-while-revalidate={_seconds(self.swr)}")
        if self.sie:
            tail.append(f"stale-if-error={_seconds(self.sie)}")
        s_maxage = cfg.s_maxage if cfg.s_maxage is not None else cfg.ttl
        self.public_cc = ", ".join([f"public, max-age={_seconds(self.ttl)}",
                                    f"s-maxage={_seconds(s_maxage)}", *tail])
        self.private_cc = ", ".join([f"private, max-age={_seconds(self.ttl)}", *tail])
        self.surrogate = (f"max-age={_seconds(s_maxage)}" if cfg.surrogate_control
                          else None)
        self.tag_templates = tuple(cfg.tags)
        self.tag_headers = tuple(cfg.tag_headers)
        self.route_tag = f"route:{route_name}"

    def private_for(self, ctx: Exchange) -> bool:
        return self.scope == "private" or ctx.identity is not None

    def key(self, ctx: Exchange, upstream: str, fmt: str,
            headers: Mapping[str, str]) -> str | None:
        """The entry's key; None when this request must not use the cache."""
        who = ""
        if self.private_for(ctx):
            if ctx.identity and ctx.identity.get("sub") is not None:
                who = f"{ctx.identity.get('iss', '')}:{ctx.identity['sub']}"
            elif "Cookie" in headers:
                return None  # someone the edge can't tell apart: never share their answer
            else:
                who = "anonymous"
            if ctx.app is not None:  # the upstream may answer each app its own way
                who += f"|app={ctx.app.name}"
        d = ctx.device
        parts = (self.route_name, upstream, fmt, d.device, d.network, "s" if d.save_data else "",
                 ctx.fields_param or "", "k0" if ctx.keymap_off else "",
                 "", who,
                 *(f"{n}={headers.get(n, '')}" for n in self.vary_names))
        return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()

    def learn_vary(self, upstream_headers: Mapping[str, str],
                   request_headers: Mapping[str, str]) -> tuple[tuple[str, str | None], ...] | None:
        """The (header, value) pairs an answer with these headers was chosen by, remembered
        for this route's keys; None for `Vary: *` (an answer never to be stored)."""
        names = upstream_vary(upstream_headers)
        if names is None:
            return None
        if not names.issubset(self.vary_names):
            merged = {*self.vary_names, *names}
            if len(merged) > MAX_VARY:
                return None  # too many variants to key on: not kept at all
            self.vary_names = tuple(sorted(merged))
        return tuple((n, request_headers.get(n)) for n in sorted(names))

    def tags(self, params: Mapping[str, str]) -> tuple[str, ...]:
        return (*fill_tags(self.tag_templates, params), self.route_tag, "*")

    def cache_control(self, private: bool) -> str:
        return self.private_cc if private else self.public_cc

    def new_entry(self, status: int, headers: Iterable[tuple[str, str]], body: bytes, fmt: str,
                  started: float, tags: tuple[str, ...], up_etag: str | None,
                  up_last_modified: str | None, previous: Entry | None) -> Entry:
        etag = etag_of(body)
        history: list[tuple[str, bytes]] = []
        if previous is not None and self.history:
            if previous.etag != etag:
                history.append((previous.etag, previous.body))
            history.extend(h for h in previous.history if h[0] != etag)
            del history[self.history:]
        fresh = started + self.ttl
        stale = fresh + max(self.swr, self.sie)
        # kept a while past staleness, to revalidate and to answer deltas from
        store = stale + max(self.ttl, 60.0) if self.history else stale
        return Entry(status, list(headers), body, etag, fmt, started, fresh, stale, store, tags,
                     up_etag, up_last_modified, {}, history)

    def refreshed(self, entry: Entry, started: float) -> Entry:
        """The same representation, fresh again (the upstream answered 304)."""
        fresh = started + self.ttl
        stale = fresh + max(self.swr, self.sie)
        store = stale + max(self.ttl, 60.0) if self.history else stale
        return replace(entry, stored_at=started, fresh_until=fresh, stale_until=stale,
                       store_until=store, deltas={})


def fill_tags(templates: Iterable[str], params: Mapping[str, str]) -> list[str]:
    """`member:{member_id}` → `member:1001`."""
    return [PLACEHOLDER.sub(lambda m: params.get(m.group(1), ""), t) for t in templates]


MAX_VARY = 8
# The edge asks upstreams for identity and codes the answer itself: never a variant.
_EDGE_NEGOTIATED = frozenset({"accept-encoding"})


def upstream_vary(headers: Mapping[str, str]) -> frozenset[str] | None:
    """The request headers an upstream answer varies on (lower-case); None for `*`."""
    names: set[str] = set()
    for value in headers.getall("Vary", []) if hasattr(headers, "getall") else \
            [headers.get("Vary", "")]:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "*":
                return None
            if name and name not in _EDGE_NEGOTIATED:
                names.add(name)
    return frozenset(names)


def storable(headers: Mapping[str, str]) -> bool:
    """May the upstream's answer be stored by the edge (without an override)?"""
    if "Set-Cookie" in headers:
        return False
    cc = headers.get("Cache-Control", "").lower()
    return not any(d.strip().partition("=")[0] in ("no-store", "private")
                   for d in cc.split(","))


def age(entry: Entry, now: float | None = None) -> int:
    return max(0, int((now or time.time()) - entry.stored_at))
