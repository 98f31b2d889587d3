"""Prometheus metrics, one registry per EdgeApp (so tests can build many).

The per-request series (requests, latency, bytes, upstream latency) are plain counters in
dicts, turned into Prometheus families only when /metrics is scraped: the edge serves
from one thread, so prometheus_client's per-update locks would be pure cost on every
request. Rare events (errors, retries, reloads, circuit changes) use the library directly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from . import allocator
from .stores import StoreSize
from .upstream import UpstreamMetrics

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# a rate-limit check: microseconds in memory, a round trip or a timeout with Redis
CHECK_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class _RequestSeries(Collector):
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int, str], list[int]] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}
        self.upstream: dict[str, _Histogram] = {}
        self.shaped: dict[tuple[str, str], list[int]] = {}  # (route, device) → [up, sent]
        self.cache: dict[tuple[str, str], int] = {}  # (route, result) → answers
        # (route, limit, key kind, device, allowed) → decisions
        self.limits: dict[tuple[str, str, str, str, bool], int] = {}
        self.checks: dict[str, _Histogram] = {}  # rate-limit store → check durations
        self.streams: dict[str, int] = {}  # device class → open event streams
        self.events = {"published": 0, "delivered": 0, "dropped": 0, "replay_hit": 0,
                       "replay_miss": 0}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("edge_requests", "Requests answered by the edge",
                                       labels=["route", "method", "status_class", "device"])
        bytes_in = CounterMetricFamily("edge_request_body_bytes", "Request body bytes received",
                                       labels=["route"])
        bytes_out = CounterMetricFamily("edge_response_body_bytes", "Response body bytes sent",
                                        labels=["route"])
        by_route_in: dict[str, int] = {}
        by_route_out: dict[str, int] = {}
        for (route, method, status, device), (n, b_in, b_out) in list(self.requests.items()):
            requests.add_metric([route, method, f"{status}xx", device], n)
            by_route_in[route] = by_route_in.get(route, 0) + b_in
            by_route_out[route] = by_route_out.get(route, 0) + b_out
        for route, n in by_route_in.items():
            bytes_in.add_metric([route], n)
        for route, n in by_route_out.items():
            bytes_out.add_metric([route], n)
        latency = HistogramMetricFamily(
            "edge_request_duration_seconds",
            "Time from request to the last byte of the response", labels=["route", "method"])
        for (route, method), h in list(self.latency.items()):
            latency.add_metric([route, method], h.buckets(), h.total)
        upstream = HistogramMetricFamily("edge_upstream_duration_seconds",
                                         "Time to upstream response headers",
                                         labels=["service"])
        for service, h in list(self.upstream.items()):
            upstream.add_metric([service], h.buckets(), h.total)
        shaped_up = CounterMetricFamily(
            "edge_shaped_upstream_bytes", "Upstream body bytes of shaped responses",
            labels=["route", "device"])
        shaped_sent = CounterMetricFamily(
            "edge_shaped_sent_bytes", "Bytes sent for shaped responses (after shaping, "
            "encoding and compression)", labels=["route", "device"])
        for (route, device), (up, sent) in list(self.shaped.items()):
            shaped_up.add_metric([route, device], up)
            shaped_sent.add_metric([route, device], sent)
        cache = CounterMetricFamily(
            "edge_cache_results", "Answers of cached routes by how the cache served them "
            "(hit, stale, revalidated, collapsed, miss, bypass)", labels=["route", "result"])
        for (route, result), n in list(self.cache.items()):
            cache.add_metric([route, result], n)
        limits = CounterMetricFamily(
            "edge_ratelimit_decisions", "Rate-limit checks by route, limit, key kind, "
            "device class and result", labels=["route", "limit", "key", "device", "result"])
        for (route, name, key, device, allowed), n in list(self.limits.items()):
            limits.add_metric([route, name, key, device, "allowed" if allowed else "limited"],
                              n)
        checks = HistogramMetricFamily(
            "edge_ratelimit_check_duration_seconds", "Time to decide a request's rate limits, "
            "by where they were checked (memory, redis, or while redis is away: local, open)",
            labels=["store"])
        for store, h in list(self.checks.items()):
            checks.add_metric([store], h.buckets(), h.total)
        streams = GaugeMetricFamily("edge_sse_connections", "Open event streams",
                                    labels=["device"])
        for device, n in list(self.streams.items()):
            streams.add_metric([device], n)
        events = CounterMetricFamily("edge_sse_events", "Events published, delivered to a "
                                     "stream, or dropped for a client that fell behind",
                                     labels=["outcome"])
        for outcome in ("published", "delivered", "dropped"):
            events.add_metric([outcome], self.events[outcome])
        replays = CounterMetricFamily("edge_sse_replays", "Reconnections with Last-Event-ID: "
                                      "hit (history reached back) or miss (told to refresh)",
                                      labels=["result"])
        replays.add_metric(["hit"], self.events["replay_hit"])
        replays.add_metric(["miss"], self.events["replay_miss"])
        yield from (requests, latency, bytes_in, bytes_out, upstream, shaped_up, shaped_sent,
                    cache, limits, checks, streams, events, replays)


class StoreSizes(Collector):
    """`edge_store_*`: every in-memory store's size against its bound, read when scraped
    (stores.store_sizes; `source` is set once the state exists)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[tuple[str, StoreSize]]] = lambda: ()

    def collect(self) -> Iterable[Metric]:
        entries = GaugeMetricFamily("edge_store_entries", "Entries an in-memory store holds",
                                    labels=["store"])
        max_entries = GaugeMetricFamily("edge_store_max_entries", "The most entries the "
                                        "store may hold (its configured or fixed bound)",
                                        labels=["store"])
        size = GaugeMetricFamily("edge_store_bytes", "Bytes an in-memory store holds "
                                 "(values; where known)", labels=["store"])
        max_size = GaugeMetricFamily("edge_store_max_bytes", "The most bytes the store may "
                                     "hold", labels=["store"])
        evictions = CounterMetricFamily("edge_store_evictions", "Entries dropped to stay "
                                        "within the bound", labels=["store"])
        for name, s in self.source():
            entries.add_metric([name], s.entries)
            evictions.add_metric([name], s.evictions)
            if s.max_entries is not None:
                max_entries.add_metric([name], s.max_entries)
            if s.bytes is not None:
                size.add_metric([name], s.bytes)
            if s.max_bytes is not None:
                max_size.add_metric([name], s.max_bytes)
        yield from (entries, max_entries, size, max_size, evictions)


class HeapSizes(Collector):
    """`edge_heap_bytes{kind}`: the C allocator's own figures (allocator.heap), so RSS
    can be told apart into live blocks, freed memory the heaps keep, and large blocks."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("edge_heap_bytes", "Bytes of the C allocator's heaps: "
                                   "in_use, free (kept for reuse), mapped (large blocks)",
                                   labels=["kind"])
        for kind, n in allocator.heap().items():
            family.add_metric([kind], n)
        yield family


class Metrics(UpstreamMetrics):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._series = _RequestSeries()
        r.register(self._series)
        self.stores = StoreSizes()
        r.register(self.stores)
        r.register(HeapSizes())
        ProcessCollector(registry=r)  # process_resident_memory_bytes, open fds, CPU
        self.inflight = Gauge("edge_inflight_requests", "Requests being served", registry=r)
        self.upstream_errors = Counter("edge_upstream_errors", "Failed upstream calls",
                                       ["service", "kind"], registry=r)
        self.upstream_retries = Counter("edge_upstream_retries", "Upstream calls retried",
                                        ["service"], registry=r)
        self.circuit_state = Gauge("edge_circuit_state",
                                   "Circuit breaker state (0 closed, 1 open, 2 half-open)",
                                   ["service"], registry=r)
        self.shaping_skipped = Counter(
            "edge_shaping_skipped", "Shaped routes that relayed an upstream body unshaped",
            ["route", "reason"], registry=r)
        self.image_transforms = Histogram(
            "edge_image_transform_seconds", "Time to resize and encode one image", ["route"],
            registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.image_rejected = Counter("edge_image_rejected", "Source images refused",
                                      ["route", "reason"], registry=r)
        self.image_bytes = Counter("edge_image_bytes", "Image bytes read from sources and "
                                   "sent as outputs", ["route", "kind"], registry=r)
        self.image_masters_lookups = Counter(
            "edge_image_master_lookups", "Decoded sources looked for to make an output: hit "
            "(a resize and an encode) or miss (a decode first)", ["result"], registry=r)
        for result in ("hit", "miss"):  # both series from the start, at 0
            self.image_masters_lookups.labels(result)
        self.image_masters_evictions = Counter(
            "edge_image_master_evictions", "Decoded sources dropped to stay within "
            "images.masters", registry=r)
        self.image_masters_bytes = Gauge("edge_image_masters_bytes",
                                         "Bytes of decoded sources kept", registry=r)
        self.image_masters_count = Gauge("edge_image_masters",
                                         "Decoded sources kept", registry=r)
        self.image_masters_bound = Gauge("edge_image_masters_max_bytes",
                                         "images.masters: the most bytes of decoded "
                                         "sources kept", registry=r)
        self.sse_open = Gauge("edge_sse_streams", "Open event streams (all devices)",
                              registry=r)
        self.ws_open = Gauge("edge_websockets_open", "Open WebSockets relayed",
                             ["route", "device"], registry=r)
        self.ws_messages = Counter("edge_websocket_messages", "WebSocket messages relayed "
                                   "(in: from clients, out: to clients)",
                                   ["route", "direction"], registry=r)
        self.ws_bytes = Counter("edge_websocket_bytes", "WebSocket message bytes relayed",
                                ["route", "direction"], registry=r)
        self.ws_closes = Counter("edge_websocket_closes", "WebSockets closed, by the close "
                                 "code the client got", ["route", "code"], registry=r)
        self.ws_refused = Counter("edge_websocket_refusals", "WebSocket handshakes refused "
                                  "before the upgrade, by status", ["route", "status"],
                                  registry=r)
        self.push_deliveries = Counter(
            "edge_push_deliveries", "Push notifications by provider and outcome (sent, gone: "
            "the device is unregistered, retry, failed, dropped: the queue was full, online: "
            "the device had an open stream, expired: retries ran out)",
            ["provider", "outcome"], registry=r)
        self.push_registrations = Counter(
            "edge_push_registrations", "Device registrations by platform and what happened "
            "(registered, unregistered, replaced, gone)", ["platform", "result"], registry=r)
        self.push_queue = Gauge("edge_push_queue", "Push deliveries waiting on this instance",
                                registry=r)
        self.push_seconds = Histogram(
            "edge_push_send_duration_seconds", "Push service requests, by provider",
            ["provider"], buckets=BUCKETS, registry=r)
        # Redis as the edge sees it: each call by operation (get, add, put, delete, gcra,
        # publish, event_publish, event_history, hash_set, hash_all, cache_get, cache_set)
        self.redis_seconds = Histogram(
            "edge_redis_duration_seconds", "Redis calls by operation, as the edge waited for "
            "them", ["op"], buckets=CHECK_BUCKETS, registry=r)
        self.redis_errors = Counter("edge_redis_errors", "Redis calls that failed (errors, "
                                    "timeouts, no connection) by operation", ["op"],
                                    registry=r)
        self.ratelimit_degraded = Gauge(
            "edge_ratelimit_degraded", "1 while shared rate limits can't reach Redis "
            "(see rate_limits.on_backend_failure)", registry=r)
        self.reloads = Counter("edge_config_reloads", "Config reload attempts",
                               ["result"], registry=r)
        self.config_generation = Gauge("edge_config_generation",
                                       "Generation of the config being served", registry=r)
        self.config_last_error = Gauge("edge_config_last_reload_failed",
                                       "1 if the last reload attempt was rejected", registry=r)

    def request_done(self, route: str, method: str, status: int, device: str,
                     seconds: float, bytes_in: int, bytes_out: int) -> None:
        series = self._series
        key = (route, method, status // 100, device)
        counts = series.requests.get(key)
        if counts is None:
            counts = series.requests[key] = [0, 0, 0]
        counts[0] += 1
        counts[1] += bytes_in
        counts[2] += bytes_out
        hist = series.latency.get((route, method))
        if hist is None:
            hist = series.latency[(route, method)] = _Histogram()
        hist.observe(seconds)

    def shaped(self, route: str, device: str, upstream_bytes: int, sent: int) -> None:
        """What shaping saved: compare the two counters per route and device class."""
        counts = self._series.shaped.get((route, device))
        if counts is None:
            counts = self._series.shaped[(route, device)] = [0, 0]
        counts[0] += upstream_bytes
        counts[1] += sent

    def ratelimit_check(self, store: str, seconds: float) -> None:
        hist = self._series.checks.get(store)
        if hist is None:
            hist = self._series.checks[store] = _Histogram(CHECK_BUCKETS)
        hist.observe(seconds)

    def ratelimit(self, series: tuple[str, str, str, str, bool]) -> None:
        """One decision: (route, limit, key kind, device class, allowed)."""
        limits = self._series.limits
        limits[series] = limits.get(series, 0) + 1

    def sse_connections(self, device: str, delta: int) -> None:
        self._series.streams[device] = self._series.streams.get(device, 0) + delta

    def sse_published(self, event: str) -> None:
        self._series.events["published"] += 1

    def sse_delivered(self, delivered: int, dropped: int) -> None:
        self._series.events["delivered"] += delivered
        self._series.events["dropped"] += dropped

    def sse_replay(self, hit: bool) -> None:
        self._series.events["replay_hit" if hit else "replay_miss"] += 1

    def image_done(self, route: str, bytes_in: int, bytes_out: int, seconds: float) -> None:
        self.image_transforms.labels(route).observe(seconds)
        self.image_bytes.labels(route, "source").inc(bytes_in)
        self.image_bytes.labels(route, "output").inc(bytes_out)

    def cache_result(self, route: str, result: str) -> None:
        key = (route, result)
        self._series.cache[key] = self._series.cache.get(key, 0) + 1

    # UpstreamMetrics
    def observe(self, service: str, seconds: float) -> None:
        hist = self._series.upstream.get(service)
        if hist is None:
            hist = self._series.upstream[service] = _Histogram()
        hist.observe(seconds)

    def error(self, service: str, kind: str) -> None:
        self.upstream_errors.labels(service, kind).inc()

    def circuit(self, service: str, state: int) -> None:
        self.circuit_state.labels(service).set(state)

    def retry(self, service: str) -> None:
        self.upstream_retries.labels(service).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
