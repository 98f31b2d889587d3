"""Memory under a long mixed load: does the edge's RSS level off once its stores are full?

    .venv/bin/python bench/soak.py                    # 600 s
    .venv/bin/python bench/soak.py --smoke            # 60 s
    .venv/bin/python bench/soak.py --duration 1800 --json

Runs `edge demo` (memory backends) on a copy of config/ (ports moved, demo keys; loopback
trusted as a proxy, so each simulated app has its own X-Forwarded-For address; rate limits
as the demo has them; the reload watcher on) and drives it with aiohttp from this process:
`--concurrency` (32) workers with no think time, a weighted mix of shaped member GETs,
cached public GETs with ever new query strings, the composed dashboard, image GETs (presets,
device sizes, signed arbitrary sizes), POST /batch, POST /offline/queue and POST
/api/v1/claims with fresh idempotency keys, claim status changes (cache purges) and event
publishes onto fresh topics, from ever new simulated apps (device id, User-Agent, network
hints, address, token), plus `--streams` (50) event streams reconnecting now and then and a
config reload (a route file touched) every `--reload-every` s. 429s are a normal outcome;
5xx and failed requests are errors. `--max-entries N` lowers backend.memory_max_entries and
rate_limits.max_keys (100,000) to N in the copy, and events.history_memory to N x 20 bytes,
so those stores fill within a run.

Every 10 s it samples the edge process's VmRSS and open fds, the demo upstreams' process
RSS (the edge's child running edge.demo.upstreams) and every edge_store_* series on
/metrics, and at the end prints tables and a verdict: "RSS flat over the last third" when
max - min of the edge's RSS peaks over the last third of the run (the highest sample of
each minute) is within 5% of their mean,
which stores reached their bounds and which were still growing. Exit code 0 either way
(1 only when the edge died).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import EDGE_BIN, cpu_seconds, new_loop, preflight, proc_stat, raise_nofile
from payload import demo_config
from proxy import ROOT, fmt_row, free_port, process

from edge.cli import DEMO_APP_KEY, DEMO_IMAGE_KEY, DEMO_PUBLISHER_KEY, DEMO_SECRET, make_token
from edge.demo.data import get_dataset
from edge.demo.vocab import BENEFIT_CODES, CLAIM_STATUSES
from images import sign

SAMPLE_EVERY = 10.0  # seconds between samples
FLAT = 0.05  # max - min of the RSS peaks over the last third, as a share of their mean
# The RSS compared is each minute's highest sample, what a memory limit has to allow. The
# edge trims its heaps every 30 s (edge/allocator.py), and the pages a trim returns are
# faulted back within seconds as requests reuse them: single 10 s samples swing ~8%
# (~216-236 MB) with no trend, and min - max over them measured that swing, not growth.
PEAK_WINDOW = 60.0  # seconds
AT_BOUND = 0.95  # a store at >= this share of its bound has reached it
# --max-entries N: the event history's bytes (32 MB by default, ~100 B an event here, at
# ~6 publishes a second) bounded at N x this, so that it too fills within the run
HISTORY_BYTES_PER_ENTRY = 20
CLIENTS_KEPT = 4096  # recent simulated apps a request may come from again
NEW_CLIENT = 0.25  # share of requests from an app never seen before

# request kind -> weight (share of the workers' requests)
MIX: dict[str, float] = {
    "member": 10, "claims": 16, "benefits": 4, "notifications": 4, "claim": 5,
    "providers": 16, "provider": 5, "dashboard": 8, "image": 3, "image_signed": 0.5,
    "media": 2, "batch": 5, "offline": 2, "claim_post": 1, "status": 0.5, "publish": 2,
}

# short column names for the stores tables (others: the first 9 characters)
SHORT = {
    "cache_memory": "cache", "ready_answers": "ready", "purged_tags": "purged",
    "backend_keys": "be_keys", "backend_hash_fields": "be_fields",
    "rate_limit_buckets": "rl_bkts", "event_topics": "topics", "event_history": "history",
    "device_profiles": "devices", "verified_tokens": "tokens", "image_masters": "masters",
    "image_sources_seen": "img_seen", "event_streams": "streams", "push_queue": "push_q",
}

UAS = {  # device class -> User-Agent template ({n}: the app's number, so every app differs)
    "phone": ("SoakApp/3.{v} (iPhone; iOS 17.{v}; build {n}) CFNetwork/1490",
              "SoakApp/3.{v} (Linux; Android 14; Pixel {v}; build {n}) okhttp/4.12"),
    "tablet": ("SoakApp/3.{v} (iPad; iPadOS 17.{v}; build {n})",),
    "desktop": ("Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) SoakBrowser/{n}",),
    "watch": ("SoakApp/3.{v} (Watch; watchOS 10.{v}; build {n})",),
}
NETWORKS = ({}, {}, {"Save-Data": "on"}, {"ECT": "4g"}, {"ECT": "3g"}, {"ECT": "2g"},
            {"Downlink": "0.3"}, {"Downlink": "1.5", "RTT": "250"}, {"Downlink": "10"})
ENCODINGS = ("br", "br", "gzip", "br, gzip", "identity", "zstd")
IMAGE_ACCEPT = ("image/webp,*/*", "image/webp,*/*", "image/jpeg", "*/*",
                "image/avif,image/webp,*/*")


# ----------------------------------------------------------------------------- the demo


def soak_config(tmp: Path, max_entries: int | None) -> tuple[Path, str]:
    """payload.demo_config's copy of config/, then: rate limits back on for loopback (the
    demo's own per-device and per-IP limits apply), loopback trusted as a proxy (so each
    simulated app's X-Forwarded-For is its address), the reload watcher back on; with
    `max_entries`, backend.memory_max_entries and rate_limits.max_keys set to it, and
    events.history_memory to `HISTORY_BYTES_PER_ENTRY` bytes per entry."""
    cfg, _ = demo_config(ROOT / "config", tmp / "config")
    path = cfg / "edge.yaml"
    text = path.read_text()
    edits = [(r"^(  allow: )\[127\.0\.0\.0/8\]", r"\g<1>[]"),
             (r"^trusted_proxies: \[\]", "trusted_proxies: [127.0.0.1/32]"),
             (r"^(  watch: )false", r"\g<1>true")]
    if max_entries is not None:
        edits += [(r"^backend:\n", f"backend:\n  memory_max_entries: {max_entries}\n"),
                  (r"^rate_limits:\n", f"rate_limits:\n  max_keys: {max_entries}\n"),
                  (r"^events:\n", "events:\n  history_memory: "
                                  f"{max_entries * HISTORY_BYTES_PER_ENTRY}\n")]
    for pattern, repl in edits:
        text, n = re.subn(pattern, repl, text, count=1, flags=re.M)
        if n != 1:
            raise RuntimeError(f"{path}: expected a line matching {pattern!r}")
    path.write_text(text)
    return cfg, f"http://127.0.0.1:{free_port()}"


def demo_env() -> dict[str, str]:
    """The demo's own secrets and keys, in-process state, no added latency."""
    drop = {"EDGE_JWT_SECRET", "EDGE_REDIS_URL", "EDGE_DEMO_LATENCY_MS", "EDGE_IMAGE_KEY",
            "EDGE_PUBLISH_KEY", "EDGE_VAPID_KEY"}
    return {k: v for k, v in os.environ.items() if k not in drop}


# ------------------------------------------------------------------------------ /proc


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def descendants(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = proc_stat(int(entry.name))
        if fields is not None:
            parent[int(entry.name)] = int(fields[1])
    below, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - below
        below |= frontier
    for p in sorted(below):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        yield p, cmd


def processes(edge_pid: int) -> dict[str, Any]:
    """The edge's RSS and fds; the upstreams' RSS (their whole process tree); the RSS of the
    edge's other children (image workers) summed."""
    tree = list(descendants(edge_pid))
    ups = next((p for p, cmd in tree if "edge.demo.upstreams" in cmd), None)
    under_ups = {p for p, _ in descendants(ups)} if ups is not None else set()
    others = [p for p, _ in tree if p != ups and p not in under_ups]
    return {
        "edge_rss_kb": rss_kb(edge_pid), "edge_fds": fd_count(edge_pid),
        "edge_cpu_s": round(cpu_seconds(edge_pid), 2),
        "upstreams_pid": ups,
        "upstreams_rss_kb": (sum(rss_kb(p) or 0 for p in (ups, *under_ups))
                             if ups is not None else None),
        "workers": len(others), "workers_rss_kb": sum(rss_kb(p) or 0 for p in others),
    }


_STORE_LINE = re.compile(r'^edge_store_(\w+)\{store="([^"]+)"\} (\S+)$', re.M)
_STORE_FIELD = {"entries": "entries", "max_entries": "max_entries", "bytes": "bytes",
                "max_bytes": "max_bytes", "evictions_total": "evictions"}


_HEAP_LINE = re.compile(r'^edge_heap_bytes\{kind="([a-z_]+)"\} (\S+)$', re.M)


def parse_heap(text: str) -> dict[str, int]:
    """edge_heap_bytes: the C allocator's in_use, free and mapped bytes (glibc only)."""
    return {kind: int(float(value)) for kind, value in _HEAP_LINE.findall(text)}


def parse_stores(text: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, store, value in _STORE_LINE.findall(text):
        key = _STORE_FIELD.get(name)
        if key is not None:
            out.setdefault(store, {})[key] = int(float(value))
    return out


# ---------------------------------------------------------------------------- the load


@dataclass(slots=True)
class App:
    """One simulated app install: its own address, device id, User-Agent, hints, token."""

    n: int
    member: str
    headers: dict[str, str]
    token: str
    queued: int = 0  # offline operations it has made
    last_queue: bytes | None = None


@dataclass
class Stats:
    requests: int = 0
    status: Counter[int] = field(default_factory=Counter)  # all statuses
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)  # exception class names
    sse_connects: Counter[int] = field(default_factory=Counter)
    sse_open: int = 0
    sse_events: int = 0
    sse_failures: int = 0
    reloads: int = 0

    @property
    def errors5xx(self) -> int:
        return sum(n for s, n in self.status.items() if s >= 500)

    def record(self, kind: str, status: int | None, exc: str = "") -> None:
        self.requests += 1
        c = self.by_kind.setdefault(kind, Counter())
        c["n"] += 1
        if status is None:
            self.failures[exc] += 1
            c["failed"] += 1
            return
        self.status[status] += 1
        c["429" if status == 429 else f"{status // 100}xx"] += 1


class Workload:
    def __init__(self, edge: str, route_dir: Path, rng: random.Random) -> None:
        self.edge, self.route_dir, self.rng = edge, route_dir, rng
        data = get_dataset()
        self.members = sorted(data.members)
        self.claims = {m: [c["id"] for c in cs] for m, cs in data.claims_by_member.items()}
        self.providers = {pid: len(p["photos"]) for pid, p in data.providers.items()}
        self.cities = sorted({p["address"]["city"] for p in data.providers.values()})
        self.apps: deque[App] = deque(maxlen=CLIENTS_KEPT)
        self.counter = itertools.count(1)
        self.admin = make_token(DEMO_SECRET, "ops-1", ["admin"], 86400)
        self.kinds = list(MIX)
        self.weights = list(itertools.accumulate(MIX.values()))
        self.stats = Stats()

    # -- who is asking
    def new_app(self) -> App:
        n = next(self.counter)
        r = self.rng
        device = r.choice(("phone", "phone", "phone", "tablet", "desktop", "watch"))
        headers = {
            "User-Agent": r.choice(UAS[device]).format(v=n % 9, n=n),
            "X-Device-ID": f"soak-{n:08d}",
            "X-Forwarded-For": f"100.{64 + (n >> 16) % 64}.{(n >> 8) & 255}.{n & 255}",
            **r.choice(NETWORKS),
        }
        if r.random() < 0.3:
            headers["X-Device-Type"] = device
        member = r.choice(self.members)
        # a token of its own (exp differs), as each install logs in for itself
        app = App(n, member, headers, make_token(DEMO_SECRET, member, ["member"],
                                                 3600 + n % 7200))
        self.apps.append(app)
        return app

    def app(self) -> App:
        if not self.apps or self.rng.random() < NEW_CLIENT:
            return self.new_app()
        return self.rng.choice(self.apps)

    def headers(self, app: App, *, auth: bool = True, **more: str) -> dict[str, str]:
        h = {**app.headers, "Accept-Encoding": self.rng.choice(ENCODINGS), **more}
        if auth:
            h["Authorization"] = f"Bearer {app.token}"
        return h

    # -- what it asks
    def providers_query(self) -> str:
        r = self.rng
        parts = []
        if r.random() < 0.7:  # a substring of a city, in any case: many distinct keys
            city = r.choice(self.cities)
            i = r.randrange(len(city) - 2)
            city = city[i:i + r.randint(3, len(city) - i)]
            city = "".join(c.upper() if r.random() < 0.5 else c.lower() for c in city)
            parts.append(f"city={city.replace(' ', '%20')}")
        if r.random() < 0.4:
            parts.append(f"type={r.choice(('hospital', 'clinic', 'pharmacy'))}")
        parts.append(f"size={r.randint(1, 40)}")
        parts.append(f"page={r.randint(1, 3)}")
        r.shuffle(parts)
        return "&".join(parts)

    def photo(self) -> tuple[str, int]:
        pid = self.rng.choice(list(self.providers))
        return pid, self.rng.randint(1, self.providers[pid])

    def claim_body(self, app: App) -> dict[str, Any]:
        r = self.rng
        code = r.choice(list(BENEFIT_CODES))
        return {"member_id": app.member, "provider_id": r.choice(list(self.providers)),
                "service_date": f"2026-0{r.randint(1, 3)}-{r.randint(1, 28):02d}",
                "items": [{"benefit_code": code, "amount": r.randint(1, 50) * 10_000}]}

    def request(self, kind: str) -> tuple[str, str, dict[str, str], bytes | None]:
        """(method, path and query, headers, body) of one request of `kind`."""
        r, app = self.rng, self.app()
        m = app.member
        if kind == "member":
            return "GET", f"/api/v1/members/{m}", self.headers(app), None
        if kind == "claims":
            q = [f"page={r.randint(1, 4)}", f"size={r.choice((5, 10, 20, 50))}"]
            if r.random() < 0.2:
                q.append(f"status={r.choice(CLAIM_STATUSES)}")
            return "GET", f"/api/v1/members/{m}/claims?{'&'.join(q)}", self.headers(app), None
        if kind == "benefits":
            return "GET", f"/api/v1/members/{m}/benefits", self.headers(app), None
        if kind == "notifications":
            q = "?unread=true" if r.random() < 0.5 else ""
            return "GET", f"/api/v1/members/{m}/notifications{q}", self.headers(app), None
        if kind == "claim":
            return "GET", f"/api/v1/claims/{r.choice(self.claims[m])}", self.headers(app), None
        if kind == "providers":
            more = {"X-API-Key": DEMO_APP_KEY} if r.random() < 0.1 else {}
            return ("GET", f"/api/v1/providers?{self.providers_query()}",
                    self.headers(app, auth=False, **more), None)
        if kind == "provider":
            return ("GET", f"/api/v1/providers/{r.choice(list(self.providers))}",
                    self.headers(app, auth=False), None)
        if kind == "dashboard":
            q = "?envelope=true" if r.random() < 0.2 else ""
            return "GET", f"/api/v1/members/{m}/dashboard{q}", self.headers(app), None
        if kind == "image":
            pid, k = self.photo()
            q = r.choice(("", "", "?preset=thumb", "?preset=card", "?preset=full"))
            more = {"Accept": r.choice(IMAGE_ACCEPT)}
            if not q and r.random() < 0.3:
                more["Sec-CH-Width"] = str(r.randint(150, 1500))
            return ("GET", f"/img/providers/{pid}/photos/{k}.jpg{q}",
                    self.headers(app, auth=False, **more), None)
        if kind == "image_signed":  # any size: every one a new transform and cache entry
            pid, k = self.photo()
            path = f"/img/providers/{pid}/photos/{k}.jpg?w={r.randint(64, 900)}"
            if r.random() < 0.5:
                path += f"&h={r.randint(64, 900)}&fit=cover"
            path += "&sig=" + sign(path, DEMO_IMAGE_KEY.encode())
            return ("GET", path, self.headers(
                app, auth=False, Accept=r.choice(IMAGE_ACCEPT[:4])), None)
        if kind == "media":
            pid, k = self.photo()
            return ("GET", f"/media/providers/{pid}/photos/{k}.jpg",
                    self.headers(app, auth=False), None)
        if kind == "batch":
            paths = [f"/api/v1/members/{m}", f"/api/v1/members/{m}/claims?size=5",
                     f"/api/v1/members/{m}/benefits", f"/api/v1/members/{m}/notifications",
                     f"/api/v1/claims/{r.choice(self.claims[m])}",
                     f"/api/v1/providers?{self.providers_query()}",
                     f"/api/v1/members/{r.choice(self.members)}"]  # someone else's: 403
            items = [{"id": str(i), "method": "GET", "path": p}
                     for i, p in enumerate(r.sample(paths, r.randint(2, len(paths))))]
            return ("POST", "/batch", self.headers(app, **{"Content-Type": "application/json"}),
                    json.dumps(items).encode())
        if kind == "offline":
            if app.last_queue is not None and r.random() < 0.1:
                body = app.last_queue  # uploaded again: replayed, nothing made twice
            else:
                ops = []
                for _ in range(r.randint(1, 3)):
                    app.queued += 1
                    ops.append({"local_id": f"{app.headers['X-Device-ID']}-{app.queued}",
                                "method": "POST", "path": "/api/v1/claims",
                                "timestamp": "2026-03-14T08:00:00Z",
                                "body": self.claim_body(app)})
                body = app.last_queue = json.dumps({"operations": ops}).encode()
            return ("POST", "/offline/queue",
                    self.headers(app, **{"Content-Type": "application/json"}), body)
        if kind == "claim_post":
            return ("POST", "/api/v1/claims", self.headers(app, **{
                "Content-Type": "application/json",
                "Idempotency-Key": f"soak-{app.n}-{r.getrandbits(64):016x}"}),
                json.dumps(self.claim_body(app)).encode())
        if kind == "status":  # an adjuster moves a claim on: the member's cache is purged
            h = self.headers(app, auth=False, **{"Content-Type": "application/json",
                                                 "Authorization": f"Bearer {self.admin}"})
            return ("POST", f"/api/v1/members/{m}/claims/{r.choice(self.claims[m])}/status",
                    h, json.dumps({"status": r.choice(CLAIM_STATUSES)}).encode())
        if kind == "publish":  # a backend's event, mostly onto a topic nobody had before
            topic = (f"member:{r.choice(self.members)}" if r.random() < 0.3
                     else f"member:soak-{app.n}")
            doc: dict[str, Any] = {"topic": topic, "event": "soak", "data": {"n": app.n}}
            if r.random() < 0.5:
                doc["id"] = f"soak-{app.n}-{r.getrandbits(48):012x}"
            return ("POST", "/_edge/publish", {
                "Authorization": f"Bearer {DEMO_PUBLISHER_KEY}",
                "Content-Type": "application/json",
                "X-Forwarded-For": app.headers["X-Forwarded-For"]}, json.dumps(doc).encode())
        raise ValueError(kind)

    # -- the tasks
    async def worker(self, session: aiohttp.ClientSession, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        r = self.rng
        while loop.time() < deadline:
            kind = r.choices(self.kinds, cum_weights=self.weights)[0]
            method, path, headers, body = self.request(kind)
            try:
                async with session.request(method, self.edge + path, headers=headers,
                                           data=body) as resp:
                    await resp.read()
                    self.stats.record(kind, resp.status)
            except (aiohttp.ClientError, TimeoutError) as e:
                self.stats.record(kind, None, type(e).__name__)
                await asyncio.sleep(0.05)

    async def stream(self, i: int, session: aiohttp.ClientSession, hold: tuple[float, float]
                     ) -> None:
        """One app's event stream: held `hold` s (random in the range), then reconnected
        with Last-Event-ID."""
        loop = asyncio.get_running_loop()
        r, st = self.rng, self.stats
        last: str | None = None
        while True:
            if i % 3 == 0:  # an anonymous app on the public topics
                topics = "topic=public&topic=notices"
                headers = {"X-Forwarded-For": f"100.127.{i % 256}.{r.randint(1, 254)}"}
            else:
                m = self.members[i % len(self.members)]
                topics = f"topic=public&topic=member:{m}&topic=claims:{m}"
                headers = {"X-Forwarded-For": f"100.126.{i % 256}.{r.randint(1, 254)}",
                           "Authorization": "Bearer " + make_token(DEMO_SECRET, m, ["member"],
                                                                   3600)}
            headers["X-Device-ID"] = f"soak-stream-{i}"
            if last is not None:
                headers["Last-Event-ID"] = last
            until = loop.time() + r.uniform(*hold)
            try:
                async with session.get(f"{self.edge}/events?{topics}",
                                       headers=headers) as resp:
                    st.sse_connects[resp.status] += 1
                    if resp.status != 200:
                        await resp.read()
                        await asyncio.sleep(2)
                        continue
                    st.sse_open += 1
                    try:
                        async with asyncio.timeout_at(until):
                            async for line in resp.content:
                                if line.startswith(b"id:"):
                                    last = line[3:].strip().decode()
                                    st.sse_events += 1
                    except TimeoutError:
                        pass
                    finally:
                        st.sse_open -= 1
            except (aiohttp.ClientError, TimeoutError):
                st.sse_failures += 1
                await asyncio.sleep(1)

    async def reloads(self, every: float) -> None:
        files = sorted(self.route_dir.glob("*.yaml"))
        for k in itertools.count():
            await asyncio.sleep(every)
            os.utime(files[k % len(files)])  # a newer mtime: the watcher reloads
            self.stats.reloads += 1


# ------------------------------------------------------------------------------ report


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def compact(n: int | None, *, size: bool = False) -> str:
    """An entry count (12345 -> 12k) or, with `size`, bytes (in MiB)."""
    if n is None:
        return "-"
    if size:
        return f"{n / 2**20:.1f}M" if n >= 2**20 / 10 else f"{n / 1024:.1f}K"
    if n < 10_000:
        return str(n)
    return f"{n / 1000:.0f}k" if n < 1_000_000 else f"{n / 1e6:.1f}M"


def clock(t: float) -> str:
    return f"{int(t) // 60}:{int(t) % 60:02d}"


def at_bound(s: dict[str, int]) -> bool:
    me, mb_ = s.get("max_entries"), s.get("max_bytes")
    return bool((me and s.get("entries", 0) >= AT_BOUND * me)
                or (mb_ and s.get("bytes", 0) >= AT_BOUND * mb_))


def grown(third: list[dict[str, int]]) -> bool:
    """Whether a store rose over `third` (its sizes in the last third of the samples): by
    over 5% and more than a handful from first to last, in entries or bytes, never
    dropping by more than 5% from one sample to the next (a reload starting it afresh, a
    bound clearing it)."""
    for key, floor in (("entries", 10), ("bytes", 64 * 1024)):
        seq = [s[key] for s in third if key in s]
        if len(seq) < max(2, len(third)):
            continue
        steady = all(b >= 0.95 * a for a, b in itertools.pairwise(seq))
        if steady and seq[-1] - seq[0] > max(floor, 0.05 * seq[0]):
            return True
    return False


def verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    third = samples[len(samples) - max(2, len(samples) // 3):]
    rss = [s["edge_rss_kb"] for s in third if s["edge_rss_kb"] is not None]
    by_window: dict[int, int] = {}
    for s in third:
        if s["edge_rss_kb"] is not None:
            w = int((s["t"] - third[0]["t"]) // PEAK_WINDOW)
            by_window[w] = max(by_window.get(w, 0), s["edge_rss_kb"])
    peaks = list(by_window.values())
    mean = statistics.fmean(peaks) if peaks else 0.0
    spread = (max(peaks) - min(peaks)) if peaks else 0
    flat = len(peaks) >= 2 and spread <= FLAT * mean
    names = list(samples[-1]["stores"])

    def sizes(name: str, among: list[dict[str, Any]]) -> list[dict[str, int]]:
        return [s["stores"].get(name, {}) for s in among]

    reached = [n for n in names if any(at_bound(x) or x.get("evictions", 0) > 0
                                       for x in sizes(n, samples))]
    growing = [n for n in names if n not in reached and grown(sizes(n, third))]
    return {"rss_flat": flat, "window_s": [third[0]["t"], third[-1]["t"]],
            "peak_min_kb": min(peaks, default=None), "peak_max_kb": max(peaks, default=None),
            "peak_mean_kb": round(mean), "spread_of_mean": spread / mean if mean else None,
            "rss_min_kb": min(rss, default=None), "rss_max_kb": max(rss, default=None),
            "reached_bound": reached, "still_growing": growing}


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return [fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths),
            *(fmt_row(r, widths) for r in rows)]


def report(samples: list[dict[str, Any]], stats: Stats, args: argparse.Namespace,
           elapsed: float) -> tuple[list[str], dict[str, Any]]:
    every, reload_every = args.every, args.reload_every
    points = [s for s in samples if round(s["t"]) % round(every) == 0]
    if points[-1] is not samples[-1]:
        points.append(samples[-1])
    lines = [f"edge soak: `edge demo` (memory backends), {args.concurrency} workers, "
             f"{args.streams} event streams, {elapsed:.0f} s; a sample every "
             f"{SAMPLE_EVERY:.0f} s, shown every {every:.0f} s", ""]
    rows, prev = [], None
    for s in points:
        rate = ((s["requests"] - prev["requests"]) / (s["t"] - prev["t"])
                if prev is not None and s["t"] > prev["t"] else 0.0)
        cpu = ["", ""]
        if prev is not None and s["t"] > prev["t"]:
            cpu = [f"{(s[k] - prev[k]) / (s['t'] - prev['t']) * 100:.0f}"
                   for k in ("edge_cpu_s", "bench_cpu_s")]
        rows.append([clock(s["t"]), f"{s['requests']:,}", f"{rate:,.0f}", str(s["5xx"]),
                     str(s["failed"]), f"{s['429']:,}", mb(s["edge_rss_kb"]),
                     str(s["edge_fds"]), *cpu, mb(s["upstreams_rss_kb"]),
                     mb(s["workers_rss_kb"]), str(s["sse_open"]), str(s["config_generation"]),
                     *(mb(s.get("heap", {}).get(k, 0) // 1024) for k in ("in_use", "free"))])
        prev = s
    lines += table(["time", "requests", "req/s", "5xx", "failed", "429", "edge RSS MB",
                    "fds", "edge CPU%", "bench CPU%", "upstreams MB", "workers MB",
                    "streams", "config gen", "heap used MB", "heap free MB"], rows)
    reloads = (f"a route file is touched every {reload_every:.0f} s" if reload_every > 0
               else "no reloads")
    lines += [f"failed: no answer (timeout, connection lost); edge: the `edge demo` process "
              "alone (VmRSS, /proc/<pid>/fd); CPU%: of one core over the interval; upstreams: "
              "its child running edge.demo.upstreams; workers: its other children (image "
              "workers, which map the decoded masters); streams: event streams held; config "
              f"gen: /ready's config_generation ({reloads}); heap: edge_heap_bytes, the C "
              "allocator's live blocks and the free memory its heaps keep", ""]

    names = list(samples[-1]["stores"])
    lines += ["stores: entries (last rows: the bound, evictions at the end)"]
    rows = [[clock(s["t"]), *(compact(s["stores"].get(n, {}).get("entries")) for n in names)]
            for s in points]
    last = samples[-1]["stores"]
    rows.append(["bound", *(compact(last[n].get("max_entries")) for n in names)])
    rows.append(["evicted", *(compact(last[n].get("evictions")) for n in names)])
    lines += table(["time", *(SHORT.get(n, n[:9]) for n in names)], rows)
    with_bytes = [n for n in names if "bytes" in last[n]]
    if with_bytes:
        lines += ["", "stores: bytes held"]
        rows = [[clock(s["t"]), *(compact(s["stores"].get(n, {}).get("bytes"), size=True)
                                  for n in with_bytes)] for s in points]
        rows.append(["bound", *(compact(last[n].get("max_bytes"), size=True)
                                for n in with_bytes)])
        lines += table(["time", *(SHORT.get(n, n[:9]) for n in with_bytes)], rows)
    lines.append("columns: " + ", ".join(f"{SHORT.get(n, n[:9])} = {n}" for n in names))

    lines += ["", f"requests by kind ({elapsed:.0f} s)"]
    rows = []
    for kind in MIX:
        c = stats.by_kind.get(kind, Counter())
        rows.append([kind, f"{c['n']:,}", f"{c['n'] / elapsed:,.1f}",
                     *(f"{c[k]:,}" for k in ("2xx", "3xx", "4xx", "429", "5xx", "failed"))])
    lines += table(["kind", "requests", "/s", "2xx", "3xx", "4xx", "429", "5xx", "failed"],
                   rows)
    sse = ", ".join(f"{code}: {n}" for code, n in sorted(stats.sse_connects.items()))
    lines.append(f"event streams: connects {sse or 'none'}; failed {stats.sse_failures}; "
                 f"events received {stats.sse_events:,}; config reloads {stats.reloads}")
    if stats.failures:
        lines.append("failed requests: " + ", ".join(
            f"{k} {n}" for k, n in stats.failures.most_common()))

    v = verdict(samples)
    lines.append("")
    window = f"{clock(v['window_s'][0])}-{clock(v['window_s'][1])}"
    spread = (f"each minute's peak {mb(v['peak_min_kb'])}-{mb(v['peak_max_kb'])} MB: max - min "
              f"{mb(v['peak_max_kb'] - v['peak_min_kb'])} MB = "
              f"{v['spread_of_mean'] * 100:.1f}% of their mean {mb(v['peak_mean_kb'])} MB"
              if v["spread_of_mean"] is not None else "no RSS read")
    lines.append(f"verdict: RSS {'flat' if v['rss_flat'] else 'NOT flat'} over the last third "
                 f"({window}: {spread}; flat means <= {FLAT * 100:.0f}%)")
    if v["rss_min_kb"] is not None:
        lines.append(f"  every sample there: {mb(v['rss_min_kb'])}-{mb(v['rss_max_kb'])} MB "
                     "(the heaps are trimmed every 30 s; what a trim returns comes back "
                     "within seconds)")
    if elapsed < 300:
        lines.append("  (a short run: the stores are still filling, so this says little; "
                     "soak for 10 minutes or more)")
    lines.append("  reached their bounds (>= 95% of max entries or bytes, or evicting, in some "
                 "sample): "
                 + (", ".join(v["reached_bound"]) or "none"))
    lines.append("  still growing through the last third (never at their bounds): "
                 + (", ".join(v["still_growing"]) or "none"))
    lines.append("  (verified_tokens and device_profiles belong to a config: each reload "
                 "starts them afresh)")
    errors = stats.errors5xx + sum(stats.failures.values())
    lines.append(f"  errors: {stats.errors5xx} 5xx, {sum(stats.failures.values())} failed "
                 f"requests of {stats.requests:,} ({errors / max(1, stats.requests) * 100:.2f}%)")
    return lines, v


# -------------------------------------------------------------------------------- main


async def soak(args: argparse.Namespace, edge: str, cfg: Path, edge_pid: int,
               alive: Any) -> tuple[list[dict[str, Any]], Stats, float]:
    load = Workload(edge, cfg / "routes", random.Random(args.seed))
    st = load.stats
    samples: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=30)
    conn = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout, auto_decompress=False,
                                     trust_env=False) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                                  trust_env=False) as sse_session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                  trust_env=False) as admin:

        async def sample(t: float) -> dict[str, Any]:
            async with admin.get(f"{edge}/metrics") as r:
                text = await r.text()
            stores, heap = parse_stores(text), parse_heap(text)
            async with admin.get(f"{edge}/ready") as r:
                gen = (await r.json()).get("config_generation")
            return {"t": round(t, 1), "requests": st.requests, "5xx": st.errors5xx,
                    "failed": sum(st.failures.values()), "429": st.status[429],
                    "sse_open": st.sse_open, "config_generation": gen,
                    "bench_cpu_s": round(time.process_time(), 2),
                    **processes(edge_pid), "stores": stores, "heap": heap}

        def progress(s: dict[str, Any]) -> None:
            print(f"[{clock(s['t']):>6}] {s['requests']:>9,} requests  5xx {s['5xx']}  "
                  f"failed {s['failed']}  429 {s['429']:,}  edge {mb(s['edge_rss_kb'])} MB  "
                  f"fds {s['edge_fds']}  upstreams {mb(s['upstreams_rss_kb'])} MB  "
                  f"streams {s['sse_open']}", file=sys.stderr)

        async def take(t: float) -> bool:
            if not alive():
                return False
            try:
                samples.append(await sample(t))
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                print(f"sample at {t:.0f} s failed: {e!r}", file=sys.stderr)
                return False
            progress(samples[-1])
            return True

        if not await take(0.0):
            raise RuntimeError("the edge did not answer /metrics")
        start = loop.time()
        deadline = start + args.duration
        hold = (10.0, 30.0) if args.duration <= 120 else (30.0, 120.0)
        side = [asyncio.create_task(load.stream(i, sse_session, hold))
                for i in range(args.streams)]
        if args.reload_every > 0:
            side.append(asyncio.create_task(load.reloads(args.reload_every)))
        workers = asyncio.gather(*(load.worker(session, deadline)
                                   for _ in range(args.concurrency)))
        try:
            k = 1
            while (at := start + k * SAMPLE_EVERY) < deadline - 1.0 and alive():
                await asyncio.sleep(max(0.0, at - loop.time()))
                if not await take(k * SAMPLE_EVERY):
                    break
                k += 1
            if alive():
                await workers  # they stop by themselves at the deadline
        finally:
            workers.cancel()
            for task in side:
                task.cancel()
            await asyncio.gather(workers, *side, return_exceptions=True)
        elapsed = loop.time() - start
        await take(args.duration)  # the last sample, after the load
    return samples, st, elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load (600)")
    ap.add_argument("--smoke", action="store_true", help="a 60 s run")
    ap.add_argument("--concurrency", type=int, default=32, help="request workers (32)")
    ap.add_argument("--streams", type=int, default=50, help="event streams held (50)")
    ap.add_argument("--reload-every", type=float, default=None,
                    help="seconds between config reloads (120; --smoke: 25; 0: none)")
    ap.add_argument("--every", type=float, default=None,
                    help="seconds between the table's rows (60; runs up to 120 s: 10)")
    ap.add_argument("--max-entries", type=int, metavar="N",
                    help="set backend.memory_max_entries and rate_limits.max_keys (100,000 "
                    "by default) to N and events.history_memory to N x "
                    f"{HISTORY_BYTES_PER_ENTRY} bytes in the copied config, so those stores "
                    "reach their bounds within a run (at least 100)")
    ap.add_argument("--seed", type=int, default=1, help="the workload's random seed (1)")
    ap.add_argument("--json", action="store_true", help="also one JSON line: the samples")
    args = ap.parse_args(argv)
    if args.smoke:
        args.duration = 60.0
    if args.duration < 2 * SAMPLE_EVERY or args.concurrency < 1 or args.streams < 0:
        ap.error(f"--duration must be at least {2 * SAMPLE_EVERY:.0f}, --concurrency at "
                 "least 1, --streams at least 0")
    if args.max_entries is not None and args.max_entries < 100:
        ap.error("--max-entries must be at least 100 (the config's minimum)")
    if args.reload_every is None:
        args.reload_every = 25.0 if args.duration <= 120 else 120.0
    if args.every is None:
        args.every = SAMPLE_EVERY if args.duration <= 120 else 60.0
    args.every = max(SAMPLE_EVERY, round(args.every / SAMPLE_EVERY) * SAMPLE_EVERY)
    if (code := preflight("soak.py", wrk=False)) is not None:
        return code
    raise_nofile()

    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-soak-")))
            cfg, edge = soak_config(tmp, args.max_entries)
            port = edge.rsplit(":", 1)[1]
            proc, _ = stack.enter_context(process(
                [str(EDGE_BIN), "demo", "--config", str(cfg), "--host", "127.0.0.1",
                 "--port", port], f"{edge}/ready", tmp / "edge.err", env=demo_env()))
            print(f"edge demo pid {proc.pid} at {edge}; {args.duration:.0f} s of load",
                  file=sys.stderr)
            loop = new_loop()
            try:
                samples, stats, elapsed = loop.run_until_complete(
                    soak(args, edge, cfg, proc.pid, lambda: proc.poll() is None))
            finally:
                loop.close()
            died = proc.poll()
            err_tail = (tmp / "edge.err").read_text(errors="replace")[-3000:]
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    lines, v = report(samples, stats, args, elapsed)
    if died is not None:
        lines += ["", f"THE EDGE EXITED (code {died}) during the run; its stderr ends:",
                  err_tail]
    print("\n".join(lines))
    if args.json:
        print(json.dumps({"duration_s": args.duration, "elapsed_s": round(elapsed, 1),
                          "concurrency": args.concurrency, "streams": args.streams,
                          "samples": samples, "verdict": v,
                          "kinds": {k: dict(c) for k, c in stats.by_kind.items()},
                          "edge_exited": died}))
    return 1 if died is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
