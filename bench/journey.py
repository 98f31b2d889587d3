"""A member's journey through the app, as a phone plays it: naive REST app vs the edge.

    .venv/bin/python bench/journey.py [--rtt-ms 50,300] [--mbps 1] [--reps 3]
                                      [--save-data auto|on|off] [--revisit fresh|revalidate]
                                      [--foreground together|per-screen] [--quick] [--json]

Runs `edge demo` on a copy of config/ (bench/payload.py's start_demo: ports moved, demo JWT
secret, no demo latency) and plays, per simulated network, the issue's journey with two
clients, each a fresh app (empty cache, new connections) on one aiohttp ClientSession:

    1 open the app: the dashboard        5 background: the app is in the background while
    2 the claims list                      an adjuster moves the claim on (admin token,
    3 one claim (the newest): the claim    POST /api/v1/members/1001/claims/{id}/status,
      and its provider                     not counted: it isn't the phone's traffic)
    4 the provider's photo               6 foreground: the dashboard, the claims list, the
                                           claim and the photo again

- naive: the demo upstreams called directly, as a typical REST app does: no shaping,
  `Accept-Encoding: gzip` only (the demo upstreams never compress), the member's token on
  its API calls, one call per resource the screen needs, in the order it needs them; calls
  that don't wait for another go out together (one round trip), a call that needs another's
  answer goes in the next round. Dashboard: member, claims (size 5), benefits, unread
  notifications, then the first claim's provider (config/routes/dashboard.yaml's sources);
  claims list: claims (size 20); claim: the claim and its provider together; photo: the raw
  upstream JPEG.
- edge: one call per screen to the edge's routes (the claim screen: the claim and the
  provider together, one round trip), member JWT, `X-Device-Type: phone`, the network hints
  a phone on that network would send (`ECT` per the Network Information API's table from
  the RTT and bandwidth, `Downlink` rounded to 25 kbit/s, `RTT` to 25 ms), `Save-Data: on`
  on the slow network (`--save-data auto`: at RTT >= 270 ms, where ECT turns 3g; the demo's
  routes serve their `slow` field sets and image size to it), `Accept-Encoding: br, gzip`,
  or `zstd, br, gzip` when a probe offering only zstd was answered `Content-Encoding: zstd`
  and this venv can decode it (the report says what the edge then chose), the photo from
  the image route (`/img/providers/{id}/photos/1.jpg`, `Accept: image/webp`, no token so the
  answer stays the shared public one). While in the background it follows
  `/events?topic=member:{sub}`: the purge's `invalidate` event names the changed cache tags.
  The edge's phone answers don't carry the provider's id, so the app is handed it (the id
  the naive app reads from the upstream's list) to build the provider and photo URLs.

Both apps keep an HTTP cache of what they were sent. The rule (`--revisit fresh`, default,
RFC 9111 for a private cache): an answer is reused without asking while it is fresh by its
`Cache-Control: max-age` (less `Age`) and no invalidation event named one of its tags;
otherwise the app asks again, with `If-None-Match: <ETag>` when it holds one, plus
`A-IM: json-patch` on the edge's JSON routes (a 226's patch is applied to the held JSON;
the 226 says `no-store`, which is the delta's, so the patched version keeps the lifetime
its last 200 gave). `--revisit revalidate`: every revisit asks, conditionally when it can,
fresh or not (a 304 then). The naive app's cache holds only what comes with validators or
max-age: the photo (`public, max-age=86400`, ETag); the upstreams' JSON has neither, so it
is fetched again. A cache entry's tags: the answer's `Surrogate-Key`/`Cache-Tag`, else the
tags config/routes gives that path (the edge sends none with private answers, so the app
knows its API's scheme). Coming back to the foreground (`--foreground together`, default)
the edge app's first screen asks, in the same round trip, for everything the events
invalidated (the dashboard, the claims list and the claim: three conditional requests with
`A-IM`), so the later screens have it; `per-screen`: each screen asks when it is shown.
The other strategy is played too and summed up in one line, without goals.

Network model, on the client: each round (the calls that go out together) really runs on
loopback (the servers' own time counts), then the client sleeps one RTT plus the round's
bytes, both directions, at `--mbps` (parallel calls share the bandwidth; sequential rounds
add up). No TCP/TLS handshakes are simulated (connections are kept alive; that favours the
naive app, which talks to five hosts). Bytes on the wire are measured, HTTP/1.1: the request
line and headers as aiohttp sent them, the status line and headers as received, the body as
received (compressed when compressed; chunk framing of the event stream included); HTTP/2's
header compression would shrink both clients' headers. Time to a usable screen: from the
screen's first call to its last answer decoded (and patched); a screen answered from the
app's cache takes ~0 ms. The background row has no screen: its round trip and bytes
(opening the event stream, the event) count in the totals, not its time.

Each journey is played `--reps` times per network (a fresh app each time; the edge's cache
is purged before each edge journey and the claim moves on again: paid, or processing when
it was paid, so its history grows by one entry a journey and later bodies are a little
larger); rows are medians, totals medians of journey totals. Warm-up first (not measured):
the image workers on another provider's photo, the JSON routes for another member (member
1001's answers start as misses), the upstream's render of the journey's photo (the demo
draws it on first use), and the zstd probe. A full run takes about a minute.

Goals (issue), per network: through the edge the whole journey moves <= 5% of the naive
app's bytes; <= 1 round trip per screen; a revisit of an unchanged screen (every resource
on it the same as before the background, checked against a fresh fetch) <= 0.1 KB; and at
300 ms RTT, 1 Mbit/s, >= 70% less time to usable screens over the journey. After each edge
journey every answer the app holds is checked against a fresh full fetch (the patched JSON
must equal it). Exit code 0 even when a goal is missed; read the met/missed lines.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import brotli
import jsonpatch
from _common import new_loop, preflight
from payload import start_demo
from proxy import fmt_row
from yarl import URL

from edge.cli import DEMO_SECRET, make_token

MEMBER = "1001"
WARM_MEMBER = "1002"  # warms the edge's JSON routes without touching member 1001's entries
USER_AGENT = "MemberApp/3.2 (iPhone; iOS 18.1) CFNetwork/1568"  # the same for both apps
TARGET_BYTES = 0.05
TARGET_ROUNDS = 1
TARGET_REVISIT_BYTES = 100  # 0.1 KB
TARGET_FASTER = 0.70
GOAL_RTT_MS = 300.0
SAVE_DATA_FROM_MS = 270.0  # ECT is 3g or slower from here (Network Information API)
EVENT_WAIT = 5.0  # seconds the backgrounded app waits for the invalidate event

# path -> cache tags, as config/routes says (private answers carry no Surrogate-Key)
TAG_RULES = (
    (re.compile(r"^/api/v1/members/([^/]+)/dashboard$"), ("member:{0}", "claims:{0}")),
    (re.compile(r"^/api/v1/members/([^/]+)/claims$"), ("member:{0}", "claims:{0}")),
    (re.compile(r"^/api/v1/claims/([^/]+)$"), ("claim:{0}",)),
)

SCREENS = ("1 open: dashboard", "2 claims list", "3 claim + provider", "4 provider photo",
           "5 background", "6 dashboard again", "6 claims list again", "6 claim again",
           "6 photo again")
BACKGROUND = "5 background"
REVISITS = SCREENS[5:]


def zstd_decoder() -> Callable[[bytes], bytes] | None:
    """A zstd decompressor if this Python has one (3.14's compression.zstd, zstandard,
    pyzstd), else None."""
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14

        return zstd.decompress  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]

        def _zstandard(data: bytes) -> bytes:
            # stream_reader: frames without a content size in their header too
            return zstandard.ZstdDecompressor().stream_reader(data).read()  # type: ignore

        return _zstandard
    except ImportError:
        pass
    try:
        import pyzstd  # type: ignore[import-not-found]

        return pyzstd.decompress  # type: ignore[no-any-return]
    except ImportError:
        return None


ZSTD = zstd_decoder()


def decode(headers: Any, body: bytes) -> bytes:
    coding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if coding == "br":
        return brotli.decompress(body)  # type: ignore[no-any-return]
    if coding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if coding == "zstd":
        if ZSTD is None:
            raise RuntimeError("the edge answered zstd, which this venv can't decode")
        return ZSTD(body)
    if coding != "identity":
        raise RuntimeError(f"unexpected Content-Encoding: {coding}")
    return body


def network_hints(rtt_ms: float, mbps: float) -> dict[str, str]:
    """What a phone's Network Information API reports: ECT from its table (slow-2g: RTT >=
    2000 ms or downlink <= 50 kbit/s; 2g: 1400 ms / 70 kbit/s; 3g: 270 ms / 700 kbit/s;
    else 4g), Downlink in Mbit/s rounded to 25 kbit/s, RTT rounded to 25 ms."""
    ect = "4g"
    for name, min_rtt, max_mbps in (("slow-2g", 2000, 0.05), ("2g", 1400, 0.07),
                                    ("3g", 270, 0.7)):
        if rtt_ms >= min_rtt or mbps <= max_mbps:
            ect = name
            break
    return {"ECT": ect, "Downlink": f"{round(mbps / 0.025) * 0.025:g}",
            "RTT": str(int(round(rtt_ms / 25) * 25))}


# ---------------------------------------------------------------------------- the wire


@dataclass(slots=True)
class Answer:
    status: int
    headers: Any  # CIMultiDictProxy[str]
    body: bytes  # as received (still encoded)
    head: int  # request line + headers, status line + headers: bytes on the wire
    payload: int  # body bytes on the wire (chunk framing included)


def _sent_bytes(method: str, url: Any, headers: Any) -> int:
    line = f"{method} {url.raw_path_qs} HTTP/1.1\r\n"
    return len(line) + sum(len(k.encode()) + len(v.encode()) + 4
                           for k, v in headers.items()) + 2


def _received_head(r: aiohttp.ClientResponse) -> int:
    line = f"HTTP/{r.version.major}.{r.version.minor} {r.status} {r.reason}\r\n"
    return len(line) + sum(len(k) + len(v) + 4 for k, v in r.raw_headers) + 2


async def _on_headers_sent(_session: Any, ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestHeadersSentParams) -> None:
    if isinstance(ctx.trace_request_ctx, dict):
        ctx.trace_request_ctx["sent"] = _sent_bytes(params.method, params.url, params.headers)


def new_session() -> aiohttp.ClientSession:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    return aiohttp.ClientSession(auto_decompress=False, trust_env=False,
                                 trace_configs=[trace],
                                 timeout=aiohttp.ClientTimeout(total=30))


def _chunked(r: aiohttp.ClientResponse) -> bool:
    return "chunked" in (r.headers.get("Transfer-Encoding") or "").lower()


class Link:
    """One phone's network: runs the calls of a round together, counts what they put on
    the wire, then sleeps one RTT plus the round's bytes at the bandwidth."""

    def __init__(self, session: aiohttp.ClientSession, rtt_ms: float, mbps: float) -> None:
        self.session, self.rtt, self.bps = session, rtt_ms / 1000, mbps * 1e6
        self.requests = self.rounds = self.head = self.payload = 0
        self.codings: Counter[str] = Counter()  # Content-Encoding of JSON answers

    def counters(self) -> tuple[int, int, int, int]:
        return self.requests, self.rounds, self.head, self.payload

    async def transfer(self, nbytes: int) -> None:
        await asyncio.sleep(self.rtt + nbytes * 8 / self.bps)

    async def call(self, url: str, headers: dict[str, str]) -> Answer:
        ctx: dict[str, int] = {}
        async with self.session.get(url, headers=headers, allow_redirects=False,
                                    trace_request_ctx=ctx) as r:
            if not _chunked(r):
                # (not iter_chunks: aiohttp shares one empty reader among bodiless answers,
                # and once one has been iterated it yields (b"", True) forever)
                body, framing = await r.read(), 0
            else:
                parts, framing, size = [], 5, 0  # 5: the last chunk, "0\r\n\r\n"
                async for data, end in r.content.iter_chunks():
                    parts.append(data)
                    size += len(data)
                    if end and size:
                        framing += len(f"{size:x}") + 4
                        size = 0
                body = b"".join(parts)
            if body and "json" in (r.headers.get("Content-Type") or ""):
                self.codings[r.headers.get("Content-Encoding", "identity")] += 1
            return Answer(r.status, r.headers, body, ctx.get("sent", 0) + _received_head(r),
                          len(body) + framing)

    async def round(self, calls: Sequence[tuple[str, dict[str, str]]]) -> list[Answer]:
        answers = await asyncio.gather(*(self.call(u, h) for u, h in calls))
        nbytes = sum(a.head + a.payload for a in answers)
        self.requests += len(calls)
        self.rounds += 1
        self.head += sum(a.head for a in answers)
        self.payload += sum(a.payload for a in answers)
        await self.transfer(nbytes)
        return answers


# ----------------------------------------------------------------------------- the app


@dataclass(frozen=True, slots=True)
class Res:
    url: str
    headers: dict[str, str]
    json: bool = True
    delta: bool = False  # ask for a json-patch when revalidating


@dataclass(slots=True)
class Entry:
    res: Res
    doc: Any  # parsed JSON, or the image's bytes
    etag: str | None
    lifetime: float  # seconds fresh from when it was received (max-age less Age)
    checked: float  # monotonic time it was last received or validated
    tags: frozenset[str]
    invalid: bool = False  # an event named one of its tags

    def fresh(self, now: float) -> bool:
        return now < self.checked + self.lifetime


def _directives(headers: Any) -> dict[str, str]:
    out = {}
    for part in (headers.get("Cache-Control") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.lower()] = value.strip('"')
    return out


def _tags(url: str, headers: Any) -> frozenset[str]:
    said = " ".join(headers.getall("Surrogate-Key", []) + headers.getall("Cache-Tag", []))
    tags = {t for t in re.split(r"[\s,]+", said) if t}
    path = URL(url).path
    for pattern, templates in TAG_RULES:
        if m := pattern.match(path):
            tags.update(t.format(*m.groups()) for t in templates)
    return frozenset(tags)


class App:
    """A phone app's screens over a Link, with its own HTTP cache (see the docstring)."""

    def __init__(self, link: Link, revisit: str) -> None:
        self.link, self.revisit = link, revisit
        self.cache: dict[str, Entry] = {}
        self.how: list[str] = []  # per resource of the current screen: 200/304/226/local
        # set when the app comes back: what was checked since is used as it is
        self.since = float("inf")

    def invalidated(self) -> list[Res]:
        return [e.res for e in self.cache.values() if e.invalid]

    def invalidate(self, tags: set[str] | None) -> None:
        """Tags an event named (None: everything, as a `refresh` event says)."""
        for e in self.cache.values():
            if tags is None or e.tags & tags:
                e.invalid = True

    async def round(self, resources: Sequence[Res]) -> list[Any]:
        """One round: what the cache may answer comes from it, the rest goes out together."""
        out: list[Any] = [None] * len(resources)
        calls: list[tuple[int, Res, dict[str, str]]] = []
        now = time.monotonic()
        for i, res in enumerate(resources):
            e = self.cache.get(res.url)
            if e is not None and not e.invalid and (
                    e.checked >= self.since or (self.revisit == "fresh" and e.fresh(now))):
                out[i] = e.doc
                self.how.append("local")
                continue
            headers = dict(res.headers)
            if e is not None and e.etag:
                headers["If-None-Match"] = e.etag
                if res.delta:
                    headers["A-IM"] = "json-patch"
            calls.append((i, res, headers))
        if calls:
            answers = await self.link.round([(res.url, h) for _, res, h in calls])
            for (i, res, _), answer in zip(calls, answers, strict=True):
                out[i] = self._take(res, answer)
        return out

    def _take(self, res: Res, a: Answer) -> Any:
        now = time.monotonic()
        cc = _directives(a.headers)
        try:
            age = float(a.headers.get("Age") or 0)
        except ValueError:
            age = 0.0
        fresh_for: float | None = None  # None: the answer doesn't say
        if "max-age" in cc:
            try:
                fresh_for = max(0.0, float(cc["max-age"]) - age)
            except ValueError:
                fresh_for = 0.0
        if "no-cache" in cc or "no-store" in cc:
            fresh_for = 0.0
        old = self.cache.get(res.url)
        etag = a.headers.get("ETag")
        if a.status == 200:
            raw = decode(a.headers, a.body)
            doc = json.loads(raw) if res.json else raw
            if "no-store" not in cc and (etag or fresh_for):
                self.cache[res.url] = Entry(res, doc, etag, fresh_for or 0.0, now,
                                            _tags(res.url, a.headers))
            else:
                self.cache.pop(res.url, None)
        elif a.status == 304 and old is not None:
            doc = old.doc
            old.invalid, old.checked = False, now
            old.lifetime = old.lifetime if fresh_for is None else fresh_for
            old.etag = etag or old.etag
        elif a.status == 226 and old is not None:
            patch = json.loads(decode(a.headers, a.body))
            doc = jsonpatch.apply_patch(old.doc, patch)
            # The 226 says `no-store` and no max-age: that is the delta's own, not the
            # instance's. The patched instance keeps the lifetime its last 200 gave.
            self.cache[res.url] = Entry(res, doc, etag, old.lifetime, now, old.tags)
        else:
            raise RuntimeError(f"GET {res.url}: {a.status} {a.body[:300]!r}")
        self.how.append(str(a.status))
        return doc


# ------------------------------------------------------------------------- the journey


@dataclass(slots=True)
class Row:
    requests: int = 0
    rounds: int = 0
    head: int = 0
    payload: int = 0
    ms: float | None = None
    how: str = ""

    @property
    def bytes(self) -> int:
        return self.head + self.payload


@dataclass(slots=True)
class Journey:
    rows: dict[str, Row] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # revisits whose data didn't change
    foreground: str = ""
    codings: Counter[str] = field(default_factory=Counter)  # of the JSON answers

    def total(self, what: str, screens: Sequence[str] = SCREENS) -> float:
        if what == "ms":
            return sum(self.rows[s].ms or 0.0 for s in screens)
        return float(sum(getattr(self.rows[s], what) for s in screens))


async def screen(j: Journey, name: str, app: App, body: Callable[[], Awaitable[Any]]) -> Any:
    before = app.link.counters()
    app.how = []
    t0 = time.perf_counter()
    out = await body()
    ms = (time.perf_counter() - t0) * 1000
    req, rounds, head, payload = (b - a for a, b in zip(before, app.link.counters(),
                                                        strict=True))
    j.rows[name] = Row(req, rounds, head, payload, ms, "+".join(app.how) or "-")
    return out


@dataclass(frozen=True, slots=True)
class World:
    """What the bench (not the apps) uses: the edge, the upstreams, tokens, the claim."""

    edge: str
    services: dict[str, str]
    member_token: str
    admin_token: str
    claim_id: str
    provider_id: str
    side: aiohttp.ClientSession  # the bench's own calls: never counted

    async def move_claim(self) -> tuple[str, str]:
        """The adjuster's action: the claim to another status through the admin route
        (which purges the member's tags and publishes the invalidate event); returns what
        happened and the new status."""
        async with self.side.get(f"{self.services['claims']}/claims/{self.claim_id}") as r:
            status = (await r.json())["status"]
        new = "processing" if status == "paid" else "paid"
        url = f"{self.edge}/api/v1/members/{MEMBER}/claims/{self.claim_id}/status"
        async with self.side.post(url, json={"status": new}, headers={
                "Authorization": f"Bearer {self.admin_token}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"status change: {r.status} {(await r.text())[:300]}")
        return f"{self.claim_id} {status} -> {new}", new

    async def purge_edge(self) -> None:
        async with self.side.post(f"{self.edge}/_edge/purge", json={"all": True}, headers={
                "Authorization": f"Bearer {self.admin_token}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"purge: {r.status} {(await r.text())[:300]}")


async def naive_journey(w: World, rtt_ms: float, mbps: float, revisit: str) -> Journey:
    j = Journey()
    s = w.services
    api = {"Authorization": f"Bearer {w.member_token}", "Accept-Encoding": "gzip",
           "User-Agent": USER_AGENT}
    img = {"Accept-Encoding": "gzip", "Accept": "image/webp,image/*", "User-Agent": USER_AGENT}

    def r(service: str, path: str) -> Res:
        return Res(s[service] + path, api)

    async with new_session() as session:
        app = App(Link(session, rtt_ms, mbps), revisit)
        held: dict[str, Any] = {}

        async def dashboard() -> None:
            member, claims, _, _ = await app.round([
                r("members", f"/members/{MEMBER}"),
                r("claims", f"/claims?member_id={MEMBER}&size=5"),
                r("benefits", f"/benefits/{MEMBER}/summary"),
                r("notifications", f"/notifications?member_id={MEMBER}&unread=true")])
            await app.round([r("providers", f"/providers/{claims['items'][0]['provider']['id']}")])

        async def claims_list() -> None:
            held["list"] = (await app.round([r("claims",
                                                f"/claims?member_id={MEMBER}&size=20")]))[0]

        async def claim() -> None:
            first = held["list"]["items"][0]
            held["claim"], held["provider"] = await app.round([
                r("claims", f"/claims/{first['id']}"),
                r("providers", f"/providers/{first['provider']['id']}")])

        async def photo() -> None:
            await app.round([Res(f"{s['providers']}/providers/{held['provider']['id']}"
                                 f"/photos/1.jpg", img, json=False)])

        steps = (dashboard, claims_list, claim, photo)
        for name, step in zip(SCREENS[:4], steps, strict=True):
            await screen(j, name, app, step)
        said, new = await w.move_claim()  # in the background: the app does nothing
        j.notes.append(said)
        j.rows[BACKGROUND] = Row(how="-")
        app.since = time.monotonic()
        for name, step in zip(REVISITS, steps, strict=True):
            await screen(j, name, app, step)
        if held["claim"]["status"] != new:
            raise RuntimeError(f"naive app: the claim is {held['claim']['status']} after {said}")
    return j


@dataclass
class EventSink:
    tags: set[str] = field(default_factory=set)
    refresh: bool = False
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    payload: int = 0  # bytes read after the first chunk (chunk framing included)


async def follow(r: aiohttp.ClientResponse, sink: EventSink, first: asyncio.Event) -> None:
    """Reads the event stream, counting its bytes; `invalidate` events' tags go to `sink`."""
    buf, size, started = b"", 0, False
    async for data, end in r.content.iter_chunks():
        sink.payload += len(data)
        size += len(data)
        if end and size:
            sink.payload += len(f"{size:x}") + 4
            size = 0
        buf = (buf + data).replace(b"\r\n", b"\n")
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            name, data_lines = "message", []
            for line in block.decode().split("\n"):
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    data_lines.append(value)
            if not started:
                started = True
                first.set()
            if name == "invalidate" and data_lines:
                doc = json.loads("\n".join(data_lines))
                inner = doc.get("data", doc) if isinstance(doc, dict) else {}
                sink.tags.update(inner.get("tags", []))
                sink.seen.set()
            elif name == "refresh":
                sink.refresh = True
                sink.seen.set()


async def edge_journey(w: World, rtt_ms: float, mbps: float, revisit: str,
                       profile: dict[str, str], encoding: str, foreground: str) -> Journey:
    j = Journey(foreground=foreground)
    e = w.edge
    api = {"Authorization": f"Bearer {w.member_token}", "Accept-Encoding": encoding,
           "User-Agent": USER_AGENT, **profile}
    img = {"Accept": "image/webp,image/*", "Accept-Encoding": encoding,
           "User-Agent": USER_AGENT, **profile}
    dash = Res(f"{e}/api/v1/members/{MEMBER}/dashboard", api, delta=True)
    lst = Res(f"{e}/api/v1/members/{MEMBER}/claims?size=20", api, delta=True)
    await w.purge_edge()
    async with new_session() as session:
        link = Link(session, rtt_ms, mbps)
        app = App(link, revisit)
        held: dict[str, Any] = {}
        # The phone answers carry no provider id (claims list: provider/name; claim:
        # provider(name)), so the app can't build the provider's URLs from them: it is
        # handed the id the naive app reads from the upstream's list.
        pid = w.provider_id

        async def dashboard() -> None:
            await app.round([dash])

        async def claims_list() -> None:
            held["list"] = (await app.round([lst]))[0]

        async def claim() -> None:
            cid = held["list"]["items"][0]["id"]
            held["claim_res"] = [Res(f"{e}/api/v1/claims/{cid}", api, delta=True),
                                 Res(f"{e}/api/v1/providers/{pid}", api)]
            await app.round(held["claim_res"])

        async def photo() -> None:
            await app.round([Res(f"{e}/img/providers/{pid}/photos/1.jpg", img, json=False)])

        steps = (dashboard, claims_list, claim, photo)
        for name, step in zip(SCREENS[:4], steps, strict=True):
            await screen(j, name, app, step)
        if not (pid in json.dumps(held["list"])
                or pid in json.dumps(app.cache[held["claim_res"][0].url].doc)):
            j.notes.append("the edge's claims list and claim don't name the provider's id: "
                           "the app was handed it for the provider and photo URLs")
        snapshot = {url: copy.deepcopy(entry.doc) for url, entry in app.cache.items()}

        # 5 background: open the event stream (one round trip), the claim moves on, the
        # invalidate event arrives; then the app comes back and closes it.
        sink, first = EventSink(), asyncio.Event()
        ctx: dict[str, int] = {}
        events = {"Authorization": api["Authorization"], "Accept": "text/event-stream",
                  "User-Agent": USER_AGENT}
        r = await session.get(f"{e}/events?topic=member:{MEMBER}", headers=events,
                              trace_request_ctx=ctx)
        reader = asyncio.ensure_future(follow(r, sink, first))
        try:
            if r.status != 200:
                raise RuntimeError(f"/events: {r.status} {(await r.read())[:300]!r}")
            await asyncio.wait_for(first.wait(), EVENT_WAIT)  # the stream's opening chunk
            opening = ctx.get("sent", 0) + _received_head(r)
            await link.transfer(opening + sink.payload)
            j.notes.append((await w.move_claim())[0])
            try:
                await asyncio.wait_for(sink.seen.wait(), EVENT_WAIT)
            except TimeoutError:
                j.notes.append(f"no invalidate event within {EVENT_WAIT:g} s: the app "
                               "revalidates everything")
                sink.refresh = True
            await asyncio.sleep(0.05)  # anything right behind it
        finally:
            reader.cancel()
            r.close()
        said = [f"invalidate, {len(sink.tags)} tags"] if sink.tags else []
        said += ["refresh"] if sink.refresh else []
        j.rows[BACKGROUND] = Row(1, 1, opening, sink.payload, None, "sse: " + "; ".join(said))
        j.notes.append("the invalidate event's tags: " + ", ".join(sorted(sink.tags)))
        link.requests, link.rounds = link.requests + 1, link.rounds + 1
        link.head, link.payload = link.head + opening, link.payload + sink.payload
        app.invalidate(None if sink.refresh else sink.tags)

        # 6 foreground: `together`, the first screen also brings every answer the events
        # invalidated up to date, in the same round; `per-screen`, each screen its own
        app.since = time.monotonic()

        async def dashboard_and_changed() -> None:
            await app.round([dash, *(res for res in app.invalidated() if res.url != dash.url)])

        again = (dashboard_and_changed if foreground == "together" else dashboard,
                 claims_list, claim, photo)
        for name, step in zip(REVISITS, again, strict=True):
            await screen(j, name, app, step)

        # check: every screen the app holds is what a fresh full fetch gives now
        fresh: dict[str, Any] = {}
        for url, entry in app.cache.items():
            headers = img if url.endswith(".jpg") else api
            async with w.side.get(url, headers=headers) as resp:
                raw = decode(resp.headers, await resp.read())
            fresh[url] = raw if isinstance(entry.doc, bytes) else json.loads(raw)
            if fresh[url] != entry.doc:
                raise RuntimeError(f"edge app: {url} differs from a fresh fetch after the "
                                   "foreground revisit")
        urls = {"6 dashboard again": [dash.url], "6 claims list again": [lst.url],
                "6 claim again": [res.url for res in held["claim_res"]],
                "6 photo again": [f"{e}/img/providers/{pid}/photos/1.jpg"]}
        j.unchanged = [name for name, us in urls.items()
                       if all(snapshot.get(u) == fresh.get(u) for u in us)]
        j.codings = link.codings
    return j


# ------------------------------------------------------------------------------ runs


async def warm_up(w: World, profile: dict[str, str]) -> tuple[str, str]:
    """Image workers, JSON routes (another member), the photo's render upstream, and the
    zstd probe; returns the edge app's Accept-Encoding and what the probe was answered."""
    other = await _another_provider(w)
    warm_token = make_token(DEMO_SECRET, WARM_MEMBER, ["member"], 3600)
    auth = {"Authorization": f"Bearer {warm_token}", "X-Device-Type": "phone", **profile}
    img = {"Accept": "image/webp", "X-Device-Type": "phone", **profile}
    for url, headers in (
            (f"{w.services['providers']}/providers/{w.provider_id}/photos/1.jpg", {}),
            (f"{w.edge}/img/providers/{other}/photos/1.jpg", img),
            (f"{w.edge}/img/providers/{other}/photos/1.jpg", img),
            (f"{w.edge}/api/v1/members/{WARM_MEMBER}/dashboard", auth),
            (f"{w.edge}/api/v1/providers/{other}", auth)):
        async with w.side.get(url, headers=headers) as r:
            await r.read()
    probe = {**auth, "Accept-Encoding": "zstd"}
    async with w.side.get(f"{w.edge}/api/v1/members/{WARM_MEMBER}/claims?size=20",
                          headers=probe) as r:
        await r.read()
        got = r.headers.get("Content-Encoding", "identity")
    if got == "zstd" and ZSTD is not None:
        return "zstd, br, gzip", got
    return "br, gzip", got


async def _another_provider(w: World) -> str:
    async with w.side.get(f"{w.services['providers']}/providers?size=20") as r:
        items = (await r.json())["items"]
    return next(p["id"] for p in items if p["id"] != w.provider_id and p.get("photos"))


async def setup(edge: str, services: dict[str, str], side: aiohttp.ClientSession) -> World:
    async with side.get(f"{services['claims']}/claims?member_id={MEMBER}&size=20") as r:
        newest = (await r.json())["items"][0]
    pid = newest["provider"]["id"]
    async with side.get(f"{services['providers']}/providers/{pid}") as r:
        if not (await r.json()).get("photos"):
            raise RuntimeError(f"provider {pid} has no photos")
    return World(edge, services, make_token(DEMO_SECRET, MEMBER, ["member"], 3600),
                 make_token(DEMO_SECRET, "ops-journey", ["admin"], 3600), newest["id"], pid,
                 side)


def edge_profile(rtt_ms: float, mbps: float, save_data: str) -> dict[str, str]:
    profile = {"X-Device-Type": "phone", **network_hints(rtt_ms, mbps)}
    if save_data == "on" or (save_data == "auto" and rtt_ms >= SAVE_DATA_FROM_MS):
        profile["Save-Data"] = "on"
    return profile


@dataclass(slots=True)
class Runs:
    naive: list[Journey] = field(default_factory=list)
    edge: list[Journey] = field(default_factory=list)  # --foreground's
    other: list[Journey] = field(default_factory=list)  # the other foreground strategy


FOREGROUNDS = ("together", "per-screen")


async def run_all(edge: str, services: dict[str, str], rtts: list[float], mbps: float,
                  reps: int, save_data: str, revisit: str, foreground: str
                  ) -> tuple[str, str, dict[float, Runs]]:
    other = next(f for f in FOREGROUNDS if f != foreground)
    out: dict[float, Runs] = {}
    async with aiohttp.ClientSession(auto_decompress=False, trust_env=False,
                                     timeout=aiohttp.ClientTimeout(total=30)) as side:
        w = await setup(edge, services, side)
        encoding, probe = await warm_up(w, edge_profile(rtts[0], mbps, save_data))
        for rtt in rtts:
            runs = out[rtt] = Runs()
            profile = edge_profile(rtt, mbps, save_data)
            for rep in range(reps):
                print(f"RTT {rtt:g} ms: journey {rep + 1}/{reps}", file=sys.stderr)
                runs.naive.append(await naive_journey(w, rtt, mbps, revisit))
                runs.edge.append(await edge_journey(w, rtt, mbps, revisit, profile, encoding,
                                                    foreground))
                runs.other.append(await edge_journey(w, rtt, mbps, revisit, profile, encoding,
                                                     other))
    return encoding, probe, out


# ---------------------------------------------------------------------------- report


def median_row(rows: list[Row]) -> Row:
    ms = [r.ms for r in rows if r.ms is not None]
    hows = sorted({r.how for r in rows})
    return Row(max(r.requests for r in rows), max(r.rounds for r in rows),
               round(statistics.median(r.head for r in rows)),
               round(statistics.median(r.payload for r in rows)),
               statistics.median(ms) if ms else None, "|".join(hows))


def kb(n: float) -> str:
    return f"{n:,.0f}" if n < 10_000 else f"{n / 1000:,.1f}K"


def totals(js: list[Journey]) -> dict[str, float]:
    """Medians of the journeys' totals."""
    t = {what: statistics.median(j.total(what) for j in js)
         for what in ("requests", "rounds", "head", "payload", "ms")}
    t["bytes"] = t["head"] + t["payload"]
    return t


def _ms(r: Row) -> str:
    return "-" if r.ms is None else f"{r.ms:,.0f}"


def report(rtt: float, mbps: float, profile: dict[str, str], encoding: str, revisit: str,
           foreground: str, runs: Runs) -> tuple[list[str], dict[str, Any]]:
    n_rows = {s: median_row([j.rows[s] for j in runs.naive]) for s in SCREENS}
    e_rows = {s: median_row([j.rows[s] for j in runs.edge]) for s in SCREENS}
    tn, te, to = totals(runs.naive), totals(runs.edge), totals(runs.other)
    head = ["screen", "naive calls", "RTs", "bytes", "ms", "|", "edge calls", "RTs", "bytes",
            "ms", "edge answers"]
    rows = [head]
    for s in SCREENS:
        n, e = n_rows[s], e_rows[s]
        rows.append([s, str(n.requests), str(n.rounds), kb(n.bytes), _ms(n), "|",
                     str(e.requests), str(e.rounds), kb(e.bytes), _ms(e), e.how])
    rows.append(["total", f"{tn['requests']:.0f}", f"{tn['rounds']:.0f}", kb(tn["bytes"]),
                 f"{tn['ms']:,.0f}", "|", f"{te['requests']:.0f}", f"{te['rounds']:.0f}",
                 kb(te["bytes"]), f"{te['ms']:,.0f}", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    rule = fmt_row(["-" * w for w in widths], widths)
    hints = ", ".join(f"{k}: {v}" for k, v in profile.items())
    lines = [f"RTT {rtt:g} ms, {mbps:g} Mbit/s. Edge app: {hints}, Accept-Encoding: "
             f"{encoding}; revisits: {revisit}; foreground: {foreground}",
             fmt_row(head, widths), rule, *(fmt_row(r, widths) for r in rows[1:-1]), rule,
             fmt_row(rows[-1], widths)]
    byte_ratio = te["bytes"] / tn["bytes"]
    faster = 1 - te["ms"] / tn["ms"]
    lines += [
        f"edge/naive: {te['requests'] / tn['requests']:.2f}x the calls, "
        f"{te['rounds'] / tn['rounds']:.2f}x the round trips, {byte_ratio * 100:.1f}% of the "
        f"bytes, {te['ms'] / tn['ms'] * 100:.1f}% of the time ({faster * 100:.1f}% less)",
        f"headers in those bytes: naive {kb(tn['head'])} of {kb(tn['bytes'])}, edge "
        f"{kb(te['head'])} of {kb(te['bytes'])}",
        f"edge with foreground {runs.other[0].foreground} instead (no goal): "
        f"{to['requests']:.0f} calls, {to['rounds']:.0f} round trips, {kb(to['bytes'])} bytes, "
        f"{to['ms']:,.0f} ms: {to['bytes'] / tn['bytes'] * 100:.1f}% of the naive bytes, "
        f"{(1 - to['ms'] / tn['ms']) * 100:.1f}% less time"]
    # goals
    worst_rounds = max(e_rows[s].rounds for s in SCREENS if s != BACKGROUND)
    # unchanged in every journey (checked against a fresh fetch); worst bytes of them
    unchanged = [s for s in REVISITS if all(s in j.unchanged for j in runs.edge)]
    revisit_bytes = {s: max(j.rows[s].bytes for j in runs.edge) for s in unchanged}
    goals: dict[str, bool | None] = {
        "bytes": byte_ratio <= TARGET_BYTES,
        "round_trips_per_screen": worst_rounds <= TARGET_ROUNDS,
        "unchanged_revisit": (all(b <= TARGET_REVISIT_BYTES for b in revisit_bytes.values())
                              if revisit_bytes else None),
        "faster": faster >= TARGET_FASTER if rtt == GOAL_RTT_MS else None,
    }

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("met" if ok else "missed")

    unchanged_said = ", ".join(f"{s.removeprefix('6 ')} {b:,} B"
                               for s, b in revisit_bytes.items())
    lines += [
        f"goal: the edge moves <= {TARGET_BYTES * 100:.0f}% of the naive bytes: "
        f"{byte_ratio * 100:.1f}%: {verdict(goals['bytes'])}",
        f"goal: <= {TARGET_ROUNDS} round trip per screen through the edge: at most "
        f"{worst_rounds}: {verdict(goals['round_trips_per_screen'])}",
        f"goal: a revisit of an unchanged screen <= {TARGET_REVISIT_BYTES / 1000:g} KB: "
        + (f"{unchanged_said}: {verdict(goals['unchanged_revisit'])}" if revisit_bytes
           else "no screen was unchanged: not measured"),
        f"goal: >= {TARGET_FASTER * 100:.0f}% less time at {GOAL_RTT_MS:g} ms RTT: "
        f"{faster * 100:.1f}% less: "
        + (verdict(goals["faster"]) if rtt == GOAL_RTT_MS
           else f"(the goal is at {GOAL_RTT_MS:g} ms; informational here)"),
    ]
    codings = sum((j.codings for j in runs.edge), Counter())
    lines.append("the edge's JSON answers came with Content-Encoding: " + ", ".join(
        f"{c} {n}" for c, n in codings.most_common()) + " (all journeys; small ones go "
        "uncompressed)")
    lines += [f"note: {n}" for n in sorted({n for j in runs.edge for n in j.notes
                                             if " -> " not in n})]
    data = {"rtt_ms": rtt, "mbps": mbps, "profile": profile, "accept_encoding": encoding,
            "revisit": revisit, "foreground": foreground,
            "naive": {s: _row_json(n_rows[s]) for s in SCREENS},
            "edge": {s: _row_json(e_rows[s]) for s in SCREENS},
            "totals": {"naive": tn, "edge": te, "edge_other_foreground": to},
            "bytes_ratio": byte_ratio, "time_saved": faster,
            "time_saved_other_foreground": 1 - to["ms"] / tn["ms"],
            "unchanged_revisits_bytes": revisit_bytes, "goals": goals,
            "edge_json_codings": dict(codings),
            "claim_changes": [n for j in runs.naive + runs.edge + runs.other
                              for n in j.notes if " -> " in n]}
    return lines, data


def _row_json(r: Row) -> dict[str, Any]:
    return {"requests": r.requests, "round_trips": r.rounds, "bytes": r.bytes,
            "header_bytes": r.head, "ms": r.ms, "answers": r.how}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt-ms", default="50,300",
                    help="simulated round-trip times, comma-separated (50,300)")
    ap.add_argument("--mbps", type=float, default=1.0, help="simulated bandwidth (1 Mbit/s)")
    ap.add_argument("--reps", type=int, default=3, help="journeys per client and RTT (3)")
    ap.add_argument("--save-data", choices=("auto", "on", "off"), default="auto",
                    help=f"Save-Data: on from the edge app (auto: at RTT >= "
                    f"{SAVE_DATA_FROM_MS:g} ms)")
    ap.add_argument("--revisit", choices=("fresh", "revalidate"), default="fresh",
                    help="fresh: reuse what Cache-Control says is fresh and no event "
                    "invalidated; revalidate: every revisit asks (conditionally)")
    ap.add_argument("--foreground", choices=FOREGROUNDS, default="together",
                    help="together: coming back, the first screen's round also brings what "
                    "the events invalidated; per-screen: each screen asks when shown (the "
                    "other is run too and summed up in one line)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 journey per RTT")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    try:
        rtts = [float(x) for x in args.rtt_ms.split(",") if x.strip()]
    except ValueError:
        ap.error("--rtt-ms: numbers separated by commas, e.g. 50,300")
    if not rtts or min(rtts) < 0 or args.mbps <= 0 or args.reps < 1:
        ap.error("--rtt-ms must be >= 0, --mbps > 0 and --reps >= 1")
    reps = 1 if args.quick else args.reps
    if (code := preflight("journey.py", wrk=False)) is not None:
        return code
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            edge, services = start_demo(stack, "edge-journey-")
            loop = new_loop()
            task = loop.create_task(run_all(edge, services, rtts, args.mbps, reps,
                                            args.save_data, args.revisit, args.foreground))
            try:
                encoding, probe, results = loop.run_until_complete(task)
            except KeyboardInterrupt:
                task.cancel()  # let its sessions and streams close before the loop does
                with suppress(BaseException):
                    loop.run_until_complete(task)
                raise
            finally:
                loop.close()
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    lines = [f"edge journey benchmark: member {MEMBER}, `edge demo` on a copy of config/, "
             f"median of {reps} journey(s) per client and network, "
             f"{time.monotonic() - started:.0f} s",
             "RTs = round trips; bytes = request and response headers (HTTP/1.1, measured) + "
             "bodies as received; ms = time to a usable screen (simulated RTT and bandwidth)"]
    out: dict[str, Any] = {"reps": reps, "accept_encoding": encoding, "zstd_probe": probe,
                           "zstd_decoder": ZSTD is not None, "runs": []}
    for rtt, runs in results.items():
        part, data = report(rtt, args.mbps, edge_profile(rtt, args.mbps, args.save_data),
                            encoding, args.revisit, args.foreground, runs)
        lines += ["", *part]
        out["runs"].append(data)
    changes = [n for d in out["runs"] for n in d["claim_changes"]]
    lines += ["", f"claim moved on in the background: {changes[0]} (then on again each "
              f"journey; {len(changes)} in all)",
              f"edge app's Accept-Encoding: {encoding} (a probe offering only zstd was "
              f"answered Content-Encoding: {probe}"
              + (", which this venv can't decode)" if probe == "zstd" and ZSTD is None
                 else ")")]
    print("\n".join(lines))
    if args.json:
        out["pass"] = all(g is not False for d in out["runs"] for g in d["goals"].values())
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
