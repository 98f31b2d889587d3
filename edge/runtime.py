"""One generation of config, compiled for serving, and the holder a reload swaps it in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import aiohttp

from .aggregate import AggregatePlan
from .backends import Backend
from .batch import BatchRunner, OfflineQueue
from .config import (
    CachePolicy,
    CacheSettings,
    Compression,
    Config,
    Route,
    RouteAuth,
    RouteSpec,
    Shape,
    WebSocketPolicy,
)
from .context import ClientAddress, DeviceClassifier
from .imaging import ImageRoute
from .inputs import Input, Inputs, join_vary
from .locations import LocationRewriter
from .metrics import Metrics
from .policies.apikey import KeyRing, RouteKeys
from .policies.auth import RouteAuthPolicy, Verifier, build_verifier
from .policies.cache import RouteCache, fill_tags
from .policies.idempotency import IdempotencyPolicy
from .policies.objects import BodyCheck, OwnerCheck
from .policies.ratelimit import RouteLimits, compile_limits
from .push.dispatch import Dispatcher
from .push.endpoint import VAPID_PATH
from .push.providers.base import Provider
from .push.providers.build import build_providers
from .push.store import Registrations
from .routing import RouteTable
from .shaping import ShapePlan
from .sockets import Sockets
from .sse.endpoint import publisher_keys
from .sse.hub import TopicRules
from .upstream import Upstream
from .wire import REQUEST_DROP, PassCompression, QueryMapper

if TYPE_CHECKING:
    from .caching import EdgeCache
    from .imaging import ImagePool
    from .policies.ratelimit import Limiter
    from .reload import Reloader
    from .sse.hub import Hub

_EDGE_PARAMS = frozenset({"fields", "keymap", "envelope"})  # the edge's, not sent upstream


@dataclass(eq=False, slots=True)
class CompiledRoute:
    """A route with everything it needs per request prepared at load time."""

    spec: RouteSpec
    name: str
    upstream: Upstream | None  # None for batch and offline-queue routes
    query: QueryMapper
    auth: RouteAuthPolicy
    timeout: aiohttp.ClientTimeout
    max_body: int
    strip_headers: frozenset[str]
    shape: ShapePlan | None = None
    compress: PassCompression | None = None
    aggregate: AggregatePlan | None = None
    idempotency: IdempotencyPolicy | None = None
    batch: BatchRunner | OfflineQueue | None = None
    cache: RouteCache | None = None
    invalidates: tuple[str, ...] = ()
    limits: RouteLimits | None = None
    image: ImageRoute | None = None
    locations: LocationRewriter | None = None  # the service's paths → edge paths
    decode: bool = False  # request bodies are decoded before they go upstream
    owner: OwnerCheck | None = None  # auth.owner: the answer is released to its owner only
    body_rules: BodyCheck | None = None  # auth.body: the request body names the caller
    stages: tuple[Any, ...] | None = None  # the pipeline stages it walks (pipeline.plan)
    api_key: RouteKeys | None = None  # None: the route ignores app keys
    websocket: WebSocketPolicy | None = None  # a WebSocket route's policy
    republish: str | None = None  # the topic its upstream event stream is published into

    def invalidate_tags(self, params: Mapping[str, str]) -> list[str]:
        return fill_tags(self.invalidates, params)


class Runtime:
    """One generation of config, ready to serve. Swapped whole on reload."""

    def __init__(self, config: Config, upstreams: dict[str, Upstream], generation: int) -> None:
        self.config = config
        self.generation = generation
        edge = config.edge
        self.upstreams = upstreams
        self.devices = DeviceClassifier(edge.devices)
        self.clients = ClientAddress(edge.trusted_proxies)
        self.inputs = Inputs(edge.devices)
        # an image answer depends on Accept, client hints, the device and network class
        self.image_vary = join_vary(self.inputs.vary(
            {Input.FORMAT, Input.HINTS, Input.DEVICE, Input.NETWORK}))
        # an image answer is never compressed again; the qualities only matter to deltas
        self.image_quality = edge.compression.levels
        self.public_hosts = {h.lower(): h for h in edge.public_hosts}
        self.default_host = edge.public_hosts[0] if edge.public_hosts else None
        self.type_base = edge.problem_type_base
        self.rid_header = edge.observability.request_id_header
        self.access_log = edge.observability.access_log
        self.max_path = edge.limits.max_path_length
        self.keymaps = dict(edge.keymaps)
        self.admin = {edge.admin.metrics_path: "metrics", edge.admin.health_path: "health",
                      edge.admin.ready_path: "ready"}
        self.metrics_allow = ClientAddress(edge.admin.metrics_allow)
        self.purge_path = edge.admin.purge_path
        self.purge_role = edge.admin.purge_role
        self.verifier: Verifier | None = build_verifier(edge.auth, config.root, config.env)
        identity = edge.auth.identity_headers
        strip = REQUEST_DROP | {h.lower() for h in identity}
        self.app_keys = KeyRing(edge.auth.api_keys, config.api_keys)
        strip |= {self.app_keys.identity_header.lower()}
        cookie = edge.auth.jwt.cookie if edge.auth.jwt else None
        self.purge_auth = RouteAuthPolicy(RouteAuth(jwt="required"), self.verifier, cookie,
                                          identity)
        self.events = edge.events
        self.topic_rules = TopicRules(edge.events.topics if edge.events else [])
        self.events_auth = RouteAuthPolicy(
            RouteAuth(jwt="optional" if self.verifier is not None else "off"), self.verifier,
            cookie, identity)
        self.publisher_keys = publisher_keys(edge.events, config.env) if edge.events else []
        self.table: RouteTable[CompiledRoute] = RouteTable()
        self.routes: list[CompiledRoute] = []
        self.rate_allow = ClientAddress(edge.rate_limits.allow)
        # edge.yaml's defaults are one budget across the routes that use them (their scope)
        default_limits = compile_limits(edge.rate_limits.defaults, "default")
        # what requests that never reach a route's own limits are charged to (404, 405, a
        # failed token, the publish and purge endpoints): the defaults' per-IP budget
        per_ip = [limit for limit in default_limits if limit.kinds == ("ip",)]
        self.ip_limits = RouteLimits(per_ip, "unrouted") if per_ip else None
        rewriters = {name: LocationRewriter(svc.url) for name, svc in edge.services.items()}
        for spec in config.routes:
            m = spec.model
            auth = RouteAuthPolicy(m.auth, self.verifier, cookie, identity,
                                   in_subprotocol=m.websocket is not None)
            app_keys = self.app_keys.for_route(m.auth.api_key, spec.name)
            compiled = default_limits if m.rate_limit is None else \
                compile_limits(m.rate_limit, spec.name)
            limits = RouteLimits(compiled, spec.name) if compiled else None
            max_body = m.max_request_body or edge.limits.max_request_body
            if m.batch is not None or m.offline_queue is not None:
                route = CompiledRoute(
                    spec=spec, name=spec.name, upstream=None, query=QueryMapper(m.query),
                    auth=auth, timeout=aiohttp.ClientTimeout(), max_body=max_body,
                    strip_headers=strip,
                    batch=BatchRunner(m.batch, self.type_base, identity)
                    if m.batch is not None else
                    OfflineQueue(m.offline_queue, self.type_base, identity)
                    if m.offline_queue is not None else None, limits=limits,
                    api_key=app_keys)
                for method in spec.methods:
                    self.table.add(method, spec.template, route)
                self.routes.append(route)
                continue
            first = m.source or next(iter((m.sources or {}).values()))
            decode = m.request_encoding == "decode" or bool(m.auth.body)
            shape = spec.shape
            upstream = upstreams[first.service]
            timeout = upstream.timeout(first.timeout)
            if m.source is not None and spec.answers("GET"):
                rewriters[first.service].add(m.source.path, spec.template)
            fixed = frozenset(k for k, _ in parse_qsl(first.path.partition("?")[2],
                                                      keep_blank_values=True))
            route = CompiledRoute(
                spec=spec, name=spec.name, upstream=upstream,
                query=QueryMapper(m.query, _edge_params(shape), fixed),
                auth=auth, timeout=timeout, max_body=max_body,
                strip_headers=(strip if m.auth.forward_token else strip | {"authorization"})
                | ({"content-encoding"} if decode else set()), decode=decode,
                shape=ShapePlan(spec.shapers, shape, m.compression or edge.compression, edge,
                                self.inputs)
                if shape is not None else None,
                compress=_pass_compression(m.compression or edge.compression),
                aggregate=AggregatePlan(m.sources, upstreams) if m.sources else None,
                cache=_route_cache(m, spec.name, edge.cache),
                image=ImageRoute.build(m.image, config.env) if m.image is not None else None,
                invalidates=tuple(m.invalidates), limits=limits,
                locations=rewriters[first.service],
                owner=OwnerCheck(m.auth.owner, edge.limits.max_shaped_body,
                                 edge.limits.max_json_depth) if m.auth.owner else None,
                body_rules=BodyCheck(m.auth.body) if m.auth.body else None,
                idempotency=IdempotencyPolicy(
                    m.idempotency, lock_ttl=max(30.0, 3 * (timeout.sock_read or 10.0)))
                if m.idempotency is not None else None,
                api_key=app_keys, websocket=m.websocket, republish=m.republish,
            )
            if app_keys is not None:  # the upstream learns the app's name, never its key
                route.strip_headers |= {app_keys.header.lower()}
            for method in spec.methods:
                self.table.add(method, spec.template, route)
            self.routes.append(route)
        self.inflight = 0
        self.drained: asyncio.Future[None] | None = None  # set while a reload retires us
        self.push_providers: dict[str, Provider] = {}  # build_runtime's
        # the paths push answers (edge/push/endpoint.py), worked out once
        push = edge.push
        self.push_paths = (push.registrations_path, VAPID_PATH) if push is not None else ()

    async def wait_idle(self) -> None:
        if self.inflight:
            self.drained = asyncio.get_running_loop().create_future()
            await self.drained


def _route_cache(m: Route, name: str, settings: CacheSettings) -> RouteCache | None:
    """A route's cache policy; image routes are always cached, for their `ttl`."""
    if m.cache is not None:
        return RouteCache(m.cache, name, _credentials_required(m), settings,
                          m.auth.forward_token)
    if m.image is not None:
        policy = CachePolicy.model_construct(ttl=m.image.ttl, delta=False)
        return RouteCache(policy, name, _credentials_required(m), settings)
    return None


def _credentials_required(m: Route) -> bool:
    return m.auth.jwt == "required" or m.auth.api_key == "required"


def _edge_params(shape: Shape | None) -> frozenset[str]:
    if shape is None:
        return frozenset()
    if shape.paginate is None:
        return _EDGE_PARAMS
    p = shape.paginate
    return _EDGE_PARAMS | {p.page_param, p.size_param, p.cursor_param}


def _pass_compression(c: Compression) -> PassCompression | None:
    return PassCompression(c.min_size, c.levels, tuple(c.prefer)) if c.passthrough else None


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
    # the new upstreams of a config that fails here have made no connections: nothing to
    # close (see Upstream)
    runtime = Runtime(config, upstreams, generation)
    runtime.push_providers = build_providers(
        config.edge.push, config.env, config.root,
        previous.push_providers if previous else None)
    kept_ids = {id(u) for u in upstreams.values()}
    retired = [u for u in old.values() if id(u) not in kept_ids]
    return runtime, retired


class State:
    """The mutable parts: a reload swaps `runtime`; a handler reads it once per request."""

    runtime: Runtime
    backend: Backend
    cache: EdgeCache
    limiter: Limiter
    hub: Hub
    images: ImagePool
    reloader: Reloader
    push: Dispatcher

    def __init__(self, metrics: Metrics, clock: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.metrics = metrics
        # Where the edge reads the time (seconds; tests pass fakes). `clock`: the wall
        # clock, for what is compared across instances (cache entries' times, purges);
        # `monotonic`: for intervals in this process (rate limits, TTLs in memory).
        self.clock: Callable[[], float] = clock or time.time
        self.monotonic: Callable[[], float] = monotonic or time.monotonic
        self.sockets = Sockets()  # open WebSockets, per caller


def configure_push(state: State, rt: Runtime) -> None:
    """The push deliveries under this config generation (at start and on reload)."""
    push = rt.config.edge.push
    store = Registrations(state.backend, push.max_per_identity, state.clock) \
        if push is not None else None
    state.push.configure(push, store, rt.push_providers)
