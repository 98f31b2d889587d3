"""Prometheus metrics, one registry per application (so tests can build many apps)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .upstream import UpstreamMetrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics(UpstreamMetrics):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("edge_requests", "Requests answered by the edge",
                                ["route", "method", "status_class", "device"], registry=r)
        self.latency = Histogram("edge_request_duration_seconds",
                                 "Time from request to the last byte of the response",
                                 ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.bytes_in = Counter("edge_request_body_bytes", "Request body bytes received",
                                ["route"], registry=r)
        self.bytes_out = Counter("edge_response_body_bytes", "Response body bytes sent",
                                 ["route"], registry=r)
        self.inflight = Gauge("edge_inflight_requests", "Requests being served", registry=r)
        self.upstream_latency = Histogram(
            "edge_upstream_duration_seconds", "Time to upstream response headers",
            ["service"], buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter("edge_upstream_errors", "Failed upstream calls",
                                       ["service", "kind"], registry=r)
        self.upstream_retries = Counter("edge_upstream_retries", "Upstream calls retried",
                                        ["service"], registry=r)
        self.circuit_state = Gauge("edge_circuit_state",
                                   "Circuit breaker state (0 closed, 1 open, 2 half-open)",
                                   ["service"], registry=r)
        self.reloads = Counter("edge_config_reloads", "Config reload attempts",
                               ["result"], registry=r)
        self.config_generation = Gauge("edge_config_generation",
                                       "Generation of the config being served", registry=r)
        self.config_last_error = Gauge("edge_config_last_reload_failed",
                                       "1 if the last reload attempt was rejected", registry=r)
        # labels() costs a lock and a dict lookup; the request path reuses children.
        self._children: dict[tuple[Any, ...], Any] = {}

    def request_done(self, route: str, method: str, status: int, device: str,
                     seconds: float, bytes_in: int, bytes_out: int) -> None:
        key = (route, method, status // 100, device)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self.requests.labels(route, method, f"{status // 100}xx", device),
                self.latency.labels(route, method),
                self.bytes_in.labels(route), self.bytes_out.labels(route))
        child[0].inc()
        child[1].observe(seconds)
        if bytes_in:
            child[2].inc(bytes_in)
        if bytes_out:
            child[3].inc(bytes_out)

    # UpstreamMetrics
    def observe(self, service: str, seconds: float) -> None:
        key = ("up", service)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.upstream_latency.labels(service)
        child.observe(seconds)

    def error(self, service: str, kind: str) -> None:
        self.upstream_errors.labels(service, kind).inc()

    def circuit(self, service: str, state: int) -> None:
        self.circuit_state.labels(service).set(state)

    def retry(self, service: str) -> None:
        self.upstream_retries.labels(service).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
