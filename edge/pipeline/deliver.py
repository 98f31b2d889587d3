"""The last stage: what every answer gets on its way out (the request id, the rate-limit
headers, Server-Timing), problems turned into problem+json (in the envelope when the route
and client want one), and the request's metrics and access-log line."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..accesslog import AccessLog
from ..context import Exchange
from ..errors import Problem, problem_response
from ..representation import Answer
from ..wire import timing_header

if TYPE_CHECKING:
    from ..runtime import State

log = logging.getLogger("edge")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")  # a client's own X-Request-ID


class Deliver:
    name = "deliver"

    def __init__(self, state: State, access_log: AccessLog) -> None:
        self.state = state
        self.metrics = state.metrics
        self.access_log = access_log

    def problem(self, x: Exchange, p: Problem) -> Answer:
        response = problem_response(p, type_base=x.rt.type_base, request_id=x.request_id,
                                    instance=x.path or None, wrap=_envelope(x))
        return response, len(response.body)  # type: ignore[arg-type]

    def crash(self, x: Exchange) -> Answer:
        request = x.request
        log.exception("unhandled error in request %s (%s %s)", x.request_id, request.method,
                      request.path)
        response = problem_response(Problem("internal"), type_base=x.rt.type_base,
                                    request_id=x.request_id)
        return response, len(response.body)  # type: ignore[arg-type]

    def finish(self, x: Exchange, answer: Answer) -> web.StreamResponse:
        response = answer[0]
        if not response.prepared:
            headers = response.headers
            headers[x.rt.rid_header] = x.request_id
            if x.response_headers:
                headers.update(x.response_headers)
            headers["Server-Timing"] = server_timing(time.perf_counter() - x.started,
                                                     x.timings, x.cache_result)
        if x.trace is not None:
            x.trace.note("deliver", status=response.status, bytes=answer[1],
                         headers={str(k): v for k, v in response.headers.items()
                                  if k.lower() in _SHOWN})
        return response

    def account(self, x: Exchange, answer: Answer | None) -> None:
        """Metrics and the access-log line, once the answer is out (or failed)."""
        elapsed = time.perf_counter() - x.started
        status, sent = (answer[0].status, answer[1]) if answer is not None else (500, 0)
        request, metrics = x.request, self.metrics
        metrics.request_done(x.route_name, request.method, status, x.device.device, elapsed,
                             x.bytes_in[0], sent)
        if x.cache_result is not None:
            metrics.cache_result(x.route_name, x.cache_result)
        if status != 101 and x.route is not None and x.route.websocket is not None:
            metrics.ws_refused.labels(x.route_name, str(status)).inc()
        if x.shape_skipped is not None:
            metrics.shaping_skipped.labels(x.route_name, x.shape_skipped).inc()
        upstream_bytes = x.timings.get("upstream_bytes")
        if upstream_bytes is not None:
            metrics.shaped(x.route_name, x.device.device, int(upstream_bytes), sent)
        if x.rt.access_log and x.trace is None:
            self._log(x, status, elapsed, sent)

    def _log(self, x: Exchange, status: int, elapsed: float, sent: int) -> None:
        line = self.line(x.request_id, x.request.method, x.path, x.route_name, status,
                         elapsed, x.bytes_in[0], sent, x.client_ip, x.device.device,
                         x.device.network)
        if "upstream" in x.timings:
            line["upstream_ms"] = round(x.timings["upstream"] * 1000, 2)
        if x.identity and "sub" in x.identity:
            line["sub"] = str(x.identity["sub"])
        if x.app is not None:
            line["app"] = x.app.name
        if x.timings.get("aborted"):
            line["aborted"] = True
        if x.replayed:
            line["replayed"] = True
        if x.cache_result == "hit":
            line["cache"] = "hit"
        if "ws_close" in x.timings:  # a WebSocket: one line at its close
            line["ws_messages_in"] = int(x.timings["ws_messages_in"])
            line["ws_messages_out"] = int(x.timings["ws_messages_out"])
            line["ws_close"] = int(x.timings["ws_close"])
        self.access_log.write(line)

    @staticmethod
    def line(rid: str, method: str, path: str, route: str, status: int, elapsed: float,
             bytes_in: int, sent: int, client_ip: str, device: str,
             network: str) -> dict[str, Any]:
        """The access-log line's common fields (the fast lane's hits write just these)."""
        return {"ts": round(time.time(), 3), "request_id": rid, "method": method,
                "path": path, "route": route, "status": status,
                "duration_ms": round(elapsed * 1000, 2), "bytes_in": bytes_in,
                "bytes_out": sent, "client_ip": client_ip, "device": device,
                "network": network}


# what the explain record shows of an answer's headers
_SHOWN = frozenset({"content-type", "content-encoding", "content-length", "cache-control",
                    "etag", "vary", "cache-status", "ratelimit", "ratelimit-policy",
                    "x-edge-shaped", "x-edge-keymap", "x-edge-degraded", "location",
                    "www-authenticate", "retry-after", "server-timing", "age"})


def _envelope(x: Exchange) -> Callable[[dict[str, Any]], Any] | None:
    """The envelope for problem answers, when the request's route and client want it."""
    route = x.route
    if not x.envelope or route is None or route.shape is None:
        return None
    envelope = route.shape.envelope
    if envelope is None:
        return None
    return lambda problem: envelope.error(problem, x)


def server_timing(elapsed: float, timings: Mapping[str, float], cache: str | None) -> str:
    """Where this answer's time went (W3C Server-Timing): the edge in all, the upstream and
    an image transform when there were any, and how the cache answered."""
    parts = [f"edge;dur={elapsed * 1000:.1f}"]
    upstream = timings.get("upstream")
    if upstream is not None:
        parts.append(timing_header(upstream))
    transform = timings.get("transform")
    if transform is not None:
        parts.append(f"transform;dur={transform * 1000:.1f}")
    if cache is not None:
        parts.append(f"cache;desc={cache}")
    return ", ".join(parts)

