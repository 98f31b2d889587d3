"""The edge's lifecycle: its state (config generation, backends, cache, limiter, images,
event hub, reloader), the server that feeds requests to the pipeline (edge/pipeline), and
an orderly start and close."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import IO, Any

from .accesslog import AccessLog
from .aio import stop
from .backends import open_backend
from .backends.redis import RedisCalls
from .caching import EdgeCache
from .config import Config
from .context import ClientAddress
from .imaging import ImagePool
from .metrics import Metrics
from .pipeline import Pipeline
from .policies.ratelimit import Limiter
from .push.dispatch import Dispatcher
from .reload import Reloader
from .republish import Republisher
from .runtime import State, build_runtime, configure_push
from .server import EdgeServer, Guard
from .sse.endpoint import relay_purges
from .sse.hub import Hub
from .stores import store_sizes

log = logging.getLogger("edge")


class EdgeApp:
    """The edge: its state, its request handler, and their lifecycle.

    It is served by aiohttp's low-level `web.Server` rather than a `web.Application`: the
    edge routes every request itself, so the generic router and middleware chain would
    only add cost to every request.
    """

    def __init__(self, config: Config, *, env: dict[str, str] | None = None,
                 watch: bool = True, access_log: IO[bytes] | None = None,
                 clock: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] | None = None,
                 republish: bool = True) -> None:
        """`clock` (wall) and `monotonic`: where the cache and the rate limits read the
        time; time.time and time.monotonic unless a test passes fakes. `republish=False`:
        the routes' `republish` streams are not followed (an edge that only explains)."""
        self.config, self.env, self.watch = config, env, watch
        self._republish = republish
        self.metrics = Metrics()
        self.state = State(self.metrics, clock, monotonic)
        self.access_log = AccessLog(access_log)
        self.handler = Pipeline(self.state, self.access_log)
        self._watcher: asyncio.Task[None] | None = None
        self.republisher = Republisher(self.state)

    @property
    def server_kwargs(self) -> dict[str, Any]:
        limits = self.config.edge.limits
        # auto_decompress=False: request bodies reach the proxy as the client framed them
        # (wire.forward_body); decoding is a route's choice, never the server's.
        return {"access_log": None, "auto_decompress": False,
                "max_field_size": limits.max_header_size,
                "max_line_size": limits.max_path_length + 64,
                "keepalive_timeout": limits.keepalive_timeout}

    def make_server(self, **kwargs: Any) -> EdgeServer:
        """The listener's server (`kwargs`: more of aiohttp's, e.g. from a test harness)."""
        edge = self.config.edge
        trusted = ClientAddress([*edge.trusted_proxies, *edge.rate_limits.allow])
        server_kwargs = {**self.server_kwargs, **kwargs}
        guard = Guard(edge.limits.header_timeout, edge.limits.max_connections_per_ip,
                      trusted.is_trusted, edge.problem_type_base,
                      server_kwargs["max_line_size"], server_kwargs["max_field_size"])
        return EdgeServer(self.handler.handle, guard=guard, **server_kwargs)

    async def start(self) -> None:
        state, config = self.state, self.config
        state.runtime, _ = await asyncio.to_thread(build_runtime, config, None, self.metrics, 1)
        self.metrics.config_generation.set(1)
        calls = RedisCalls(self.metrics.redis_seconds, self.metrics.redis_errors)
        state.backend = open_backend(config.redis_url(), config.edge.backend.memory_max_entries,
                                     calls, state.monotonic)
        state.cache = EdgeCache(config.edge.cache, state.backend, clock=state.clock)
        state.cache.invalidations.max_tags = config.edge.backend.memory_max_entries
        await state.cache.start()
        state.limiter = Limiter(state.backend, config.edge.rate_limits, self.metrics,
                                state.monotonic)
        state.images = ImagePool(self.metrics, workers=config.edge.images.workers,
                                 masters=config.edge.images.masters)
        self.metrics.stores.source = lambda: store_sizes(state)
        state.hub = Hub(state.backend, self.metrics)
        state.hub.configure(config.edge.events)
        await state.hub.start()
        state.push = Dispatcher(state.hub.presence, self.metrics)
        configure_push(state, state.runtime)
        hub = state.hub
        state.cache.on_purge = lambda tags: relay_purges(hub, tags)
        if self._republish:
            self.republisher.start()
        state.reloader = Reloader(state, config.root, self.env)
        if self.watch:
            await state.reloader.start()
            self._watcher = asyncio.get_running_loop().create_task(state.reloader.run())

    def drain_streams(self) -> None:
        """Ask every open event stream to tell its client to reconnect, and end."""
        self.state.hub.drain()

    async def close(self) -> None:
        self.drain_streams()
        await self.state.sockets.close()  # WebSockets still open: 1001, going away
        await asyncio.sleep(0)  # let the streams say goodbye
        await self.republisher.close()
        await self.state.push.close()
        for provider in self.state.runtime.push_providers.values():
            await provider.close()
        await self.state.hub.close()
        await stop(self._watcher)
        await self.state.reloader.close()
        await self.state.cache.close()
        self.state.images.close()
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
