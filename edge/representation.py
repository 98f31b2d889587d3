"""A cached representation (Entry) and what HTTP says of representations: strong ETags of
the bytes the edge makes, conditional requests (If-None-Match, If-Modified-Since → 304),
Age, and RFC 3229 deltas (226 with a JSON Patch or merge patch).

An entry is one representation variant — route + upstream request + the request inputs
the route reads (device and network class, `fields`, keymap, format, the upstream's Vary;
the caller for private answers) — held as its uncompressed bytes. Compressed variants are
added as clients ask for them, so each is compressed once. A few past versions stay with
the entry, so an app that holds one of them can get a patch to the current one instead of
all of it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import json_merge_patch
import jsonpatch
import msgpack
import orjson
from aiohttp import web
from multidict import CIMultiDict

from .encoding import FORMATS, compress, parse_qlist
from .stores import right_sized

Answer = tuple[web.StreamResponse, int]
# (body, msgpack?, cached?) → the body in the envelope, with this request's metadata
Wrap = Callable[[bytes, bool, bool], bytes]

IM_TYPES = {"json-patch": "application/json-patch+json",
            "merge-patch": "application/merge-patch+json"}
# A 304 carries what a 200 would, minus the body's own description (RFC 9110 §15.4.5).
NOT_ON_304 = frozenset({"content-type", "content-length", "content-encoding"})


def vary_value(headers: Mapping[str, str], name: str) -> str | None:
    """A request header as a Vary key reads it (RFC 9111 §4.1): every field line, joined,
    with the whitespace around commas gone (`fr, en` and `fr,en` are one variant)."""
    getall = getattr(headers, "getall", None)
    values = getall(name, ()) if getall is not None else (
        (headers[name],) if name in headers else ())
    if not values:
        return None
    return ",".join(part.strip() for value in values for part in value.split(","))


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
    for suffix in ("-br", "-gzip", "-zstd"):
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
    swr: float = 0.0  # served stale this long past fresh_until while it is refreshed
    sie: float = 0.0  # … or when the upstream fails
    origin_said: bool = False  # the upstream's own Cache-Control/Expires go to clients

    def fits(self, headers: Mapping[str, str]) -> bool:
        """May this entry answer a request with these headers (the upstream's Vary)?"""
        return all(vary_value(headers, name) == value for name, value in self.vary)

    @property
    def size(self) -> int:
        """Bytes it holds, counting room for the br and gzip variants added as clients ask
        (compressed JSON is rarely over a quarter of the original)."""
        variants = max(sum(len(v) for v in self.variants.values()), len(self.body) // 2)
        return len(self.body) + variants + sum(len(b) for _, b in self.history) + 256

    def ask_if_changed(self, headers: CIMultiDict[str]) -> None:
        """Make a request to the upstream conditional on this entry's upstream validators,
        so an unchanged representation costs a 304."""
        if self.up_etag:
            headers["If-None-Match"] = self.up_etag
        if self.up_last_modified:
            headers["If-Modified-Since"] = self.up_last_modified

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    def pack(self) -> bytes:
        return bytes(msgpack.packb([
            1, self.status, self.headers, self.body, self.etag, self.fmt, self.stored_at,
            self.fresh_until, self.stale_until, self.store_until, list(self.tags),
            self.up_etag, self.up_last_modified, self.variants, self.history, self.owner,
            [list(v) for v in self.vary], self.swr, self.sie, self.origin_said,
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
        if len(fields) > 19:
            entry.swr, entry.sie, entry.origin_said = fields[17:20]
        return entry

    def delta(self, base: str, kind: str) -> bytes | None:
        """A patch from the version `base` to this one, if it is kept and smaller."""
        memo = self.deltas.get((base, kind), b"")
        if memo != b"":
            return memo
        out = self._delta(base, kind)
        if len(self.deltas) > 16:
            self.deltas.clear()
        self.deltas[(base, kind)] = out = None if out is None else right_sized(out)
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


def age(entry: Entry, now: float | None = None) -> int:
    return max(0, int((now or time.time()) - entry.stored_at))


def kept_variant(variants: dict[str, bytes], body: bytes, coding: str, quality: int) -> bytes:
    """`body` in `coding`: compressed once, then kept in `variants` (an entry's) at its own
    length (stores.right_sized: zstd's buffer is sized for the worst case)."""
    encoded = variants.get(coding)
    if encoded is None:
        encoded = variants[coding] = right_sized(compress(body, coding, quality=quality))
    return encoded


def encode(status: int, headers: CIMultiDict[str], body: bytes, etag: str, *,
           conditional: Mapping[str, str] | None, coding: str | None, min_size: int,
           quality: Mapping[str, int], wrap: Wrap | None = None, cached: bool = False,
           variants: dict[str, bytes] | None = None,
           delta: Callable[[str | None], Answer | None] | None = None) -> Answer:
    """The answer for one representation, made or kept: the envelope (per request, so the
    ETag stays the data's, weak), a strong ETag per content coding, 304 when the client
    holds it (`conditional`: the request headers of a GET/HEAD), a delta (226) when
    `delta` offers one, else the body in the client's coding — compressed once per coding
    when `variants` keeps them."""
    if wrap is not None:
        body = wrap(body, headers.get("Content-Type") == FORMATS["msgpack"], cached)
    used = coding if coding is not None and len(body) >= min_size else None
    headers["ETag"] = quoted(etag, used, weak=wrap is not None)
    if (status == 200 and conditional is not None
            and not_modified(conditional, etag, headers.get("Last-Modified"))):
        for name in NOT_ON_304:
            headers.popall(name, None)
        return web.Response(status=304, headers=headers), 0
    if delta is not None and wrap is None:
        patched = delta(used)
        if patched is not None:
            return patched
    if used is not None:
        body = (kept_variant(variants, body, used, quality[used])
                if variants is not None and wrap is None
                else compress(body, used, quality=quality[used]))
        headers["Content-Encoding"] = used
    return web.Response(status=status, headers=headers, body=body), len(body)


def byte_range(header: str, length: int) -> tuple[int, int] | None | bool:
    """RFC 9110 §14.1.2 for one `Range: bytes=…` over `length` bytes: (first, last), or
    False when no part of it is there (416), or None when the edge ignores it and answers
    whole (another unit, several ranges, anything malformed)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash or not (first_s + last_s).isdigit() or len(first_s + last_s) > 19:
        return None
    if not first_s:  # the last N bytes
        n = int(last_s)
        return (max(0, length - n), length - 1) if n and length else False
    first = int(first_s)
    last = int(last_s) if last_s else max(first, length - 1)
    if last < first:
        return None
    if first >= length:
        return False
    return first, min(last, length - 1)


def if_range_holds(value: str | None, etag: str | None, last_modified: str | None) -> bool:
    """May a Range be honoured (RFC 9110 §13.1.5)? Without If-Range, yes; with it, only
    when it names the current representation: a strong ETag, compared strongly, or the
    exact Last-Modified date."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified
