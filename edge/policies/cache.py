"""A route's `cache` block, compiled (RouteCache): its keys, tags, Cache-Control and entry
lifetimes, the upstream's say (no-store, private, Set-Cookie, Vary), and the tags a write
purges. The representations it keeps are representation.Entry; the store is caching.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace

from multidict import CIMultiDict

from ..config import CachePolicy, CacheSettings
from ..context import Exchange
from ..freshness import HEURISTIC_STATUSES, Stored, read_response
from ..representation import Entry, etag_of, vary_value
from ..routing import PLACEHOLDER
from ..stores import right_sized


def _seconds(value: float) -> int:
    return max(0, int(round(value)))


class RouteCache:
    """A route's `cache` block, compiled."""

    def __init__(self, cfg: CachePolicy, route_name: str, credentials_required: bool,
                 settings: CacheSettings, forward_token: bool = False) -> None:
        self.cfg = cfg
        self.route_name = route_name
        # `scope` as the route says it; else private where every caller presents
        # credentials, and per request elsewhere (private_for)
        self.explicit = cfg.scope
        self.scope = cfg.scope or ("private" if credentials_required else "public")
        # the credentials the origin gets: a cookie always, Authorization when forwarded
        self.credentials = ("Authorization", "Cookie") if forward_token else ("Cookie",)
        self.ttl = cfg.ttl  # None: the origin's word, else a heuristic (RFC 9111 §4.2.2)
        self.swr = cfg.stale_while_revalidate
        self.sie = cfg.stale_if_error
        self.max_entry = settings.max_entry
        self.targeted = tuple(settings.targeted)  # fields aimed at the edge (RFC 9213)
        # never kept with an answer: cookies, and what the origin said to the edge alone
        self.not_kept = frozenset({"set-cookie", *(f.lower() for f in self.targeted)})
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
        # what answers say when the origin said nothing (no ttl: nothing more than that)
        self.public_cc = ", ".join([f"public, max-age={_seconds(cfg.ttl)}",
                                    f"s-maxage={_seconds(s_maxage or 0)}", *tail]) \
            if cfg.ttl is not None else None
        self.private_cc = ", ".join([f"private, max-age={_seconds(cfg.ttl)}", *tail]) \
            if cfg.ttl is not None else "private"
        self.surrogate = (f"max-age={_seconds(s_maxage)}"
                          if cfg.surrogate_control and s_maxage is not None else None)
        self.cdn_cc = (", ".join([f"max-age={_seconds(s_maxage)}", *tail])
                       if cfg.cdn_cache_control and s_maxage is not None else None)
        self.tag_templates = tuple(cfg.tags)
        self.tag_headers = tuple(cfg.tag_headers)
        self.route_tag = f"route:{route_name}"

    def private_for(self, ctx: Exchange) -> bool:
        """Is this request's answer its caller's own? As the route says, when it says;
        else when the caller presented credentials (a verified token or app key, a cookie,
        an Authorization header the route forwards): an
        anonymous answer on an optional-auth route is shared (RFC 9111 §3.5)."""
        if self.explicit is not None:
            return self.explicit == "private"
        if self.scope == "private" or ctx.identity is not None or ctx.app is not None:
            return True
        headers = ctx.request.headers
        return any(name in headers for name in self.credentials)

    def key(self, ctx: Exchange, upstream: str, fmt: str,
            headers: Mapping[str, str]) -> str | None:
        """The entry's key; None when this request must not use the cache."""
        who = ""
        if self.private_for(ctx):
            if ctx.identity and ctx.identity.get("sub") is not None:
                who = f"{ctx.identity.get('iss', '')}:{ctx.identity['sub']}"
            elif any(name in headers for name in self.credentials):
                return None  # someone the edge can't tell apart: never share their answer
            else:
                who = "anonymous"
            if ctx.app is not None:  # the upstream may answer each app its own way
                who += f"|app={ctx.app.name}"
        d = ctx.device
        parts = (self.route_name, upstream, fmt, d.device, d.network, "s" if d.save_data else "",
                 ctx.fields_param or "", "k0" if ctx.keymap_off else "",
                 "", who,
                 *(f"{n}={vary_value(headers, n) or ''}" for n in self.vary_names))
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
        return tuple((n, vary_value(request_headers, n)) for n in sorted(names))

    def tags(self, params: Mapping[str, str]) -> tuple[str, ...]:
        return (*fill_tags(self.tag_templates, params), self.route_tag, "*")

    def cache_control(self, private: bool) -> str | None:
        return self.private_cc if private else self.public_cc

    def lifetimes(self, said: Stored | None, status: int = 200
                  ) -> tuple[float, float, float, float]:
        """(age already spent, fresh for, stale-while-revalidate, stale-if-error) for an
        answer the upstream said this of (RFC 9111 §4.2, RFC 5861). The upstream's word
        wins; the route's `ttl` is the lifetime when it says nothing, else a heuristic
        (a tenth of the Last-Modified age, for the statuses that allow one);
        `override_upstream` makes the route's settings win outright."""
        if said is None or (self.override and self.ttl is not None):
            return 0.0, self.ttl or 0.0, self.swr, self.sie
        if said.revalidate:
            lifetime = 0.0
        elif said.lifetime is not None:
            lifetime = said.lifetime
        elif self.ttl is not None:
            lifetime = self.ttl
        elif said.heuristic is not None and (status in HEURISTIC_STATUSES or said.public):
            lifetime = said.heuristic
        else:
            lifetime = 0.0
        if said.must_revalidate:
            return said.age, lifetime, 0.0, 0.0
        return (said.age, lifetime, said.swr if said.swr is not None else self.swr,
                said.sie if said.sie is not None else self.sie)

    def _times(self, started: float, said: Stored | None, status: int = 200
               ) -> tuple[float, float, float, float, float, float]:
        age, lifetime, swr, sie = self.lifetimes(said, status)
        stored_at = started - age
        fresh = stored_at + lifetime
        stale = fresh + max(swr, sie)
        # kept a while past staleness, to revalidate and to answer deltas from (and an
        # answer stale on arrival, `no-cache`, kept for its validators)
        store = (max(stale, started) + max(lifetime, 60.0) if self.history or fresh <= started
                 else stale)
        return stored_at, fresh, stale, store, swr, sie

    def new_entry(self, status: int, headers: Iterable[tuple[str, str]], body: bytes, fmt: str,
                  started: float, tags: tuple[str, ...], up_etag: str | None,
                  up_last_modified: str | None, previous: Entry | None,
                  said: Stored | None = None, etag: str | None = None) -> Entry:
        """An entry for this answer; `etag`: the validator it keeps (the origin's, for a
        relayed answer), else a strong one of the bytes the edge made."""
        etag = etag if etag is not None else etag_of(body)
        history: list[tuple[str, bytes]] = []
        if previous is not None and self.history:
            if previous.etag != etag:
                history.append((previous.etag, previous.body))
            history.extend(h for h in previous.history if h[0] != etag)
            del history[self.history:]
        stored_at, fresh, stale, store, swr, sie = self._times(started, said, status)
        entry = Entry(status, list(headers), right_sized(body), etag, fmt, stored_at, fresh,
                      stale, store, tags, up_etag, up_last_modified, {}, history)
        entry.swr, entry.sie = swr, sie
        entry.origin_said = said is not None and said.explicit and not self.override
        return entry

    def refreshed(self, entry: Entry, started: float,
                  headers: Mapping[str, str] | None = None) -> Entry:
        """The same representation, fresh again: the upstream answered 304. Its caching
        headers replace the stored ones, and what the stored answer said stays in force
        where the 304 says nothing (RFC 9111 §4.3.4)."""
        kept = entry.headers
        if headers is not None:
            updated = {k.lower(): (k, v) for k, v in headers.items()
                       if k.lower() in _UPDATED_BY_304}
            if updated:
                kept = [h for h in kept if h[0].lower() not in updated]
                kept.extend(updated.values())
        said = None
        if entry.origin_said or headers is not None:
            merged = CIMultiDict(kept)
            if headers is not None and "Age" in headers:
                merged["Age"] = headers["Age"]
            said = read_response(merged, started, targeted=self.targeted)
        stored_at, fresh, stale, store, swr, sie = self._times(started, said, entry.status)
        return replace(entry, stored_at=stored_at, fresh_until=fresh, stale_until=stale,
                       store_until=store, deltas={}, swr=swr, sie=sie, headers=kept,
                       origin_said=said is not None and said.explicit and not self.override)


# what a 304 may change in a stored answer's headers (the representation stays)
_UPDATED_BY_304 = frozenset({"cache-control", "expires", "date", "last-modified",
                             "cdn-cache-control", "surrogate-control", "edge-cache-control"})


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
