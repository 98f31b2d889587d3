"""The edge server: its request handler, its state, and config swaps while it serves."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
from aiohttp import web

from .accesslog import AccessLog
from .backends import Backend, open_backend
from .config import Config, ConfigError, RouteSpec, load_config
from .context import ClientAddress, DeviceClassifier, RequestContext
from .errors import Problem, problem_response
from .metrics import Metrics
from .policies.auth import RouteAuthPolicy, Verifier, build_verifier
from .proxy import (
    _REQUEST_DROP,
    BodyTooLarge,
    QueryMapper,
    filter_headers,
    join_query,
    request_body,
    send_upstream_response,
    timing_header,
)
from .routing import BadPath, RouteTable, split_path
from .upstream import Upstream

log = logging.getLogger("edge")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")


@dataclass(eq=False, slots=True)
class CompiledRoute:
    """A route with everything it needs per request prepared at load time."""

    spec: RouteSpec
    name: str
    upstream: Upstream
    query: QueryMapper
    auth: RouteAuthPolicy
    timeout: aiohttp.ClientTimeout
    max_body: int
    strip_headers: frozenset[str]


class Runtime:
    """One generation of config, ready to serve. Swapped whole on reload."""

    def __init__(self, config: Config, upstreams: dict[str, Upstream], generation: int) -> None:
        self.config = config
        self.generation = generation
        edge = config.edge
        self.upstreams = upstreams
        self.devices = DeviceClassifier(edge.devices)
        self.clients = ClientAddress(edge.trusted_proxies)
        self.type_base = edge.problem_type_base
        self.rid_header = edge.observability.request_id_header
        self.access_log = edge.observability.access_log
        self.max_path = edge.limits.max_path_length
        self.admin = {edge.admin.metrics_path: "metrics", edge.admin.health_path: "health",
                      edge.admin.ready_path: "ready"}
        self.metrics_allow = ClientAddress(edge.admin.metrics_allow)
        self.verifier: Verifier | None = build_verifier(edge.auth, config.root, config.env)
        identity = edge.auth.identity_headers
        strip = _REQUEST_DROP | {h.lower() for h in identity}
        cookie = edge.auth.jwt.cookie if edge.auth.jwt else None
        self.table: RouteTable[CompiledRoute] = RouteTable()
        self.routes: list[CompiledRoute] = []
        for spec in config.routes:
            m = spec.model
            route = CompiledRoute(
                spec=spec, name=spec.name, upstream=upstreams[m.source.service],
                query=QueryMapper(m.query),
                auth=RouteAuthPolicy(m.auth, self.verifier, cookie, identity),
                timeout=upstreams[m.source.service].timeout(m.source.timeout),
                max_body=m.max_request_body or edge.limits.max_request_body,
                strip_headers=strip if m.auth.forward_token else strip | {"authorization"},
            )
            self.table.add(spec.method, spec.template, route)
            self.routes.append(route)
        self.inflight = 0
        self.drained: asyncio.Future[None] | None = None  # set while a reload retires us

    async def wait_idle(self) -> None:
        if self.inflight:
            self.drained = asyncio.get_running_loop().create_future()
            await self.drained


def build_runtime(config: Config, previous: Runtime | None, metrics: Metrics,
                  generation: int) -> tuple[Runtime, list[Upstream]]:
    """A new Runtime, keeping the previous pools (and breaker state) of unchanged services.

    Returns the runtime and the upstreams it no longer uses (to close after a drain).
    """
    old = previous.upstreams if previous else {}
    upstreams: dict[str, Upstream] = {}
    for name, svc in config.edge.services.items():
        kept = old.get(name)
        upstreams[name] = kept if kept is not None and kept.cfg == svc else Upstream(
            name, svc, metrics)
    try:
        runtime = Runtime(config, upstreams, generation)
    except Exception:
        for name, up in upstreams.items():
            if old.get(name) is not up:
                asyncio.get_running_loop().create_task(up.close())
        raise
    kept_ids = {id(u) for u in upstreams.values()}
    retired = [u for u in old.values() if id(u) not in kept_ids]
    return runtime, retired


class State:
    """The mutable parts: a reload swaps `runtime`; a handler reads it once per request."""

    runtime: Runtime
    backend: Backend
    reloader: Reloader

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics


class Edge:
    """The request handler: admin endpoints, routing, policies, the proxy, the log line."""

    def __init__(self, state: State, access_log: AccessLog) -> None:
        self.state = state
        self.metrics = state.metrics
        self.access_log = access_log
        self.inflight = 0
        self.metrics.inflight.set_function(lambda: self.inflight)
        # Request ids: a random per-process prefix and a counter; unique, and far cheaper
        # than asking the OS for randomness on every request.
        self._rid_prefix = secrets.token_hex(4)
        self._rid_counter = itertools.count(1)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        rt = self.state.runtime
        started = time.perf_counter()
        rt.inflight += 1
        self.inflight += 1
        headers = request.headers
        rid = headers.get(rt.rid_header)
        if rid is None or not _REQUEST_ID.match(rid):
            rid = f"{self._rid_prefix}{next(self._rid_counter) & 0xFFFFFFFF:08x}"
        ctx = RequestContext(request_id=rid, route_name="unmatched", params={},
                             device=rt.devices.profile(headers),
                             client_ip=rt.clients.client_ip(request.remote,
                                                            headers.get("X-Forwarded-For")))
        bytes_in = [0]
        sent = 0
        status = 500
        try:
            try:
                response, sent = await self._dispatch(request, rt, ctx, bytes_in)
            except Problem as p:
                response = problem_response(p, type_base=rt.type_base, request_id=rid,
                                            instance=request.path)
                sent = len(response.body)  # type: ignore[arg-type]
            except Exception:
                log.exception("unhandled error in request %s (%s %s)", rid, request.method,
                              request.path)
                response = problem_response(Problem("internal"), type_base=rt.type_base,
                                            request_id=rid)
                sent = len(response.body)  # type: ignore[arg-type]
            if not response.prepared:
                response.headers[rt.rid_header] = rid
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            rt.inflight -= 1
            self.inflight -= 1
            if rt.drained is not None and rt.inflight == 0 and not rt.drained.done():
                rt.drained.set_result(None)
            self.metrics.request_done(ctx.route_name, request.method, status,
                                      ctx.device.device, elapsed, bytes_in[0], sent)
            if rt.access_log:
                self._log(request, ctx, status, elapsed, bytes_in[0], sent)

    def _log(self, request: web.BaseRequest, ctx: RequestContext, status: int, elapsed: float,
             bytes_in: int, sent: int) -> None:
        line: dict[str, Any] = {
            "ts": round(time.time(), 3), "request_id": ctx.request_id,
            "method": request.method, "path": request.path, "route": ctx.route_name,
            "status": status, "duration_ms": round(elapsed * 1000, 2),
            "bytes_in": bytes_in, "bytes_out": sent, "client_ip": ctx.client_ip,
            "device": ctx.device.device, "network": ctx.device.network,
        }
        if "upstream" in ctx.timings:
            line["upstream_ms"] = round(ctx.timings["upstream"] * 1000, 2)
        if ctx.identity and "sub" in ctx.identity:
            line["sub"] = str(ctx.identity["sub"])
        if ctx.timings.get("aborted"):
            line["aborted"] = True
        self.access_log.write(line)

    async def _dispatch(self, request: web.BaseRequest, rt: Runtime, ctx: RequestContext,
                        bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        raw_path = request.raw_path
        if len(raw_path) > rt.max_path:
            raise Problem("uri-too-long", f"paths are limited to {rt.max_path} characters")
        path, _, query = raw_path.partition("?")
        admin = rt.admin.get(path)
        if admin is not None and request.method in ("GET", "HEAD"):
            ctx.route_name = "admin"
            return await self._admin(admin, request, rt)
        try:
            segments = split_path(path)
        except (BadPath, UnicodeDecodeError) as e:
            raise Problem("bad-path", str(e) if isinstance(e, BadPath) else
                          "path is not valid UTF-8") from None
        match = rt.table.match(request.method, segments)
        route = match.route
        if route is None:
            if match.allowed:
                allow = ", ".join(sorted({*match.allowed, *(
                    ("HEAD",) if "GET" in match.allowed else ())}))
                raise Problem("method-not-allowed", f"allowed: {allow}",
                              headers={"Allow": allow})
            raise Problem("not-found", f"no route for {request.method} {request.path}")
        ctx.route_name = route.name
        ctx.params = match.params
        ctx.identity = route.auth.check(request, match.params)
        return await self._proxy(request, rt, route, ctx, bytes_in, query)

    async def _proxy(self, request: web.BaseRequest, rt: Runtime, route: CompiledRoute,
                     ctx: RequestContext, bytes_in: list[int],
                     raw_query: str) -> tuple[web.StreamResponse, int]:
        headers = filter_headers(request.headers, route.strip_headers)
        peer = request.remote
        incoming_xff = request.headers.get("X-Forwarded-For")
        trusted = rt.clients.is_trusted(peer)
        if trusted and incoming_xff:
            headers["X-Forwarded-For"] = f"{incoming_xff}, {peer}"
        else:
            headers["X-Forwarded-For"] = peer or "unknown"
        proto = request.headers.get("X-Forwarded-Proto") if trusted else None
        headers["X-Forwarded-Proto"] = proto or request.scheme
        host = request.headers.get("X-Forwarded-Host") if trusted else None
        host = host or request.headers.get("Host")
        if host:
            headers["X-Forwarded-Host"] = host
        headers[rt.rid_header] = ctx.request_id
        if "Accept-Encoding" not in headers:
            # Bodies pass through as encoded; a client that asked for no coding gets none.
            headers["Accept-Encoding"] = "identity"
        if ctx.identity:
            headers.update(route.auth.upstream_identity(ctx.identity))
        body = request_body(request, route.max_body, bytes_in)
        if body is not None:
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
            expect = request.headers.get("Expect")
            if expect is not None:
                await _continue(request, expect)
        path = join_query(route.spec.upstream_path.build(ctx.params),
                          route.query.map(request, raw_query))
        t0 = time.perf_counter()
        try:
            resp = await route.upstream.request(request.method, path, headers, body,
                                                route.timeout)
        except BodyTooLarge:
            raise Problem("payload-too-large",
                          f"request body is over this route's {route.max_body} bytes") from None
        except Problem:
            if bytes_in[0] > route.max_body:
                raise Problem("payload-too-large", f"request body is over this route's "
                              f"{route.max_body} bytes") from None
            raise
        upstream_time = time.perf_counter() - t0
        ctx.timings["upstream"] = upstream_time
        extra = {rt.rid_header: ctx.request_id, "Server-Timing": timing_header(upstream_time)}
        try:
            return await send_upstream_response(request, resp, ctx, extra)
        finally:
            resp.release()

    async def _admin(self, kind: str, request: web.BaseRequest,
                     rt: Runtime) -> tuple[web.StreamResponse, int]:
        if kind == "health":
            body = b'{"status":"ok"}'
        elif kind == "ready":
            backend = self.state.backend
            ok = await backend.ping()
            reloader = self.state.reloader
            body = orjson.dumps({
                "status": "ready" if ok else "unavailable",
                "config_generation": rt.generation, "routes": len(rt.routes),
                "backend": {"kind": backend.name, "reachable": ok},
                "last_reload_error": reloader.last_error,
            })
            if not ok:
                return web.Response(body=body, status=503, content_type="application/json",
                                    headers={"Cache-Control": "no-store"}), len(body)
        else:
            if not rt.metrics_allow.is_trusted(request.remote):
                raise Problem("forbidden", "metrics are only served to allowed networks")
            body = self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": self.metrics.content_type,
                                                    "Cache-Control": "no-store"}), len(body)
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"}), len(body)


async def _continue(request: web.BaseRequest, expect: str) -> None:
    """Answer `Expect: 100-continue` once the request has passed the route's checks."""
    if expect.lower() != "100-continue":
        raise Problem("bad-request", f"unsupported Expect: {expect[:40]!r}")
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


class Reloader:
    """Re-reads the config dir on demand (SIGHUP) or when its files change.

    A config that fails to load is reported (log + metric) and the running one stays.
    """

    def __init__(self, state: State, root: Path, env: dict[str, str] | None) -> None:
        self.state, self.root, self.env = state, root, env
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._snapshot = self._scan()
        self._closing: set[asyncio.Task[None]] = set()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in sorted(self.root.rglob("*")):
            if p.suffix in (".yaml", ".yml", ".pem", ".json") and p.is_file():
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def trigger(self) -> None:
        self._wake.set()

    async def reload(self) -> bool:
        state = self.state
        metrics = state.metrics
        old = state.runtime
        try:
            config = await asyncio.to_thread(load_config, self.root, self.env)
            runtime, retired = build_runtime(config, old, metrics, old.generation + 1)
        except (ConfigError, ValueError, OSError) as e:
            self.last_error = str(e)
            metrics.reloads.labels("error").inc()
            metrics.config_last_error.set(1)
            log.error("config reload rejected; still serving generation %d:\n%s",
                      old.generation, e)
            return False
        state.runtime = runtime
        self.last_error = None
        metrics.reloads.labels("ok").inc()
        metrics.config_last_error.set(0)
        metrics.config_generation.set(runtime.generation)
        log.info("config generation %d loaded: %d routes", runtime.generation,
                 len(runtime.routes))
        if retired:
            task = asyncio.get_running_loop().create_task(self._retire(old, retired))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return True

    async def _retire(self, old: Runtime, upstreams: list[Upstream]) -> None:
        """Close pools the new config dropped once the old generation's requests finish."""
        try:
            async with asyncio.timeout(old.config.edge.drain_timeout):
                await old.wait_idle()
        except TimeoutError:
            pass
        for up in upstreams:
            await up.close()

    async def run(self) -> None:
        edge = self.state.runtime.config.edge
        interval = edge.reload.interval
        while True:
            try:
                async with asyncio.timeout(interval if edge.reload.watch else None):
                    await self._wake.wait()
            except TimeoutError:
                snap = await asyncio.to_thread(self._scan)
                if snap == self._snapshot:
                    continue
                self._snapshot = snap
            else:
                self._wake.clear()
                self._snapshot = await asyncio.to_thread(self._scan)
            await self.reload()
            edge = self.state.runtime.config.edge
            interval = edge.reload.interval

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)


class EdgeApp:
    """The edge: its state, its request handler, and their lifecycle.

    It is served by aiohttp's low-level `web.Server` rather than a `web.Application`: the
    edge routes every request itself, so the generic router and middleware chain would
    only add cost to every request.
    """

    def __init__(self, config: Config, *, env: dict[str, str] | None = None,
                 watch: bool = True, access_log: IO[bytes] | None = None) -> None:
        self.config, self.env, self.watch = config, env, watch
        self.metrics = Metrics()
        self.state = State(self.metrics)
        self.access_log = AccessLog(access_log)
        self.handler = Edge(self.state, self.access_log)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def server_kwargs(self) -> dict[str, Any]:
        limits = self.config.edge.limits
        return {"access_log": None, "max_field_size": limits.max_header_size,
                "max_line_size": limits.max_path_length + 64}

    def make_server(self) -> web.Server:
        return web.Server(self.handler.handle, **self.server_kwargs)  # type: ignore[arg-type]

    async def start(self) -> None:
        state, config = self.state, self.config
        state.runtime, _ = build_runtime(config, None, self.metrics, 1)
        self.metrics.config_generation.set(1)
        state.backend = open_backend(config.redis_url())
        state.reloader = Reloader(state, config.root, self.env)
        if self.watch:
            self._watcher = asyncio.get_running_loop().create_task(state.reloader.run())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        await self.state.reloader.close()
        for up in self.state.runtime.upstreams.values():
            await up.close()
        await self.state.backend.close()
        self.access_log.close()


def setup_logging(level: int = logging.INFO) -> None:
    """Operational logs go to stderr; stdout carries only the JSON access lines."""
    root = logging.getLogger("edge")
    if root.handlers:
        return
    root.setLevel(level)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(err)
