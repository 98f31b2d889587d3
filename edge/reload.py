"""Config hot reload: on SIGHUP or when a file under the config dir changes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .config import ConfigError, load_config
from .push.providers.base import Provider
from .runtime import Runtime, State, build_runtime, configure_push
from .upstream import Upstream

log = logging.getLogger("edge")


class Reloader:
    """Re-reads the config dir on demand (SIGHUP) or when its files change.

    A config that fails to load is reported (log + metric) and the running one stays.
    """

    def __init__(self, state: State, root: Path, env: dict[str, str] | None) -> None:
        self.state, self.root, self.env = state, root, env
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._snapshot: tuple[tuple[str, int, int], ...] = ()
        self._closing: set[asyncio.Task[None]] = set()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in sorted(self.root.rglob("*")):
            if p.suffix in (".yaml", ".yml", ".pem", ".json") and p.is_file():
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    async def start(self) -> None:
        """The files as they are now (off the loop: it stats every one), for run() to
        compare with."""
        self._snapshot = await asyncio.to_thread(self._scan)

    def trigger(self) -> None:
        self._wake.set()

    async def reload(self) -> bool:
        state = self.state
        metrics = state.metrics
        old = state.runtime
        try:
            config = await asyncio.to_thread(load_config, self.root, self.env)
            # compiling reads files too (key files, JWKS): off the loop as well
            runtime, retired = await asyncio.to_thread(build_runtime, config, old, metrics,
                                                       old.generation + 1)
        except (ConfigError, ValueError, OSError) as e:
            self.last_error = str(e)
            metrics.reloads.labels("error").inc()
            metrics.config_last_error.set(1)
            log.error("config reload rejected; still serving generation %d:\n%s",
                      old.generation, e)
            return False
        state.runtime = runtime
        # the fast lane's answers hold their routes, and through them the old generation
        # (its verified tokens, profiles, upstream sessions): let it go now
        state.cache.ready.clear()
        state.limiter.configure(config.edge.rate_limits)
        state.cache.configure(config.edge.cache)
        images = getattr(state, "images", None)
        if images is not None:
            images.configure(config.edge.images)
        hub = getattr(state, "hub", None)
        if hub is not None:
            hub.configure(config.edge.events)  # changed rules: streams reconnect under them
        if getattr(state, "push", None) is not None:
            configure_push(state, runtime)
        kept = set(map(id, runtime.push_providers.values()))
        dropped = [p for p in old.push_providers.values() if id(p) not in kept]
        self.last_error = None
        metrics.reloads.labels("ok").inc()
        metrics.config_last_error.set(0)
        metrics.config_generation.set(runtime.generation)
        log.info("config generation %d loaded: %d routes", runtime.generation,
                 len(runtime.routes))
        if retired or dropped or state.sockets.of(old):
            task = asyncio.get_running_loop().create_task(self._retire(old, retired,
                                                                       dropped))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return True

    async def _retire(self, old: Runtime, upstreams: list[Upstream],
                      providers: list[Provider]) -> None:
        """Once the old generation's requests finish, or `drain_timeout` is over: its
        WebSockets still open are closed with 1001 (their handshakes passed the old
        policies; the clients reconnect under the new ones, like nginx's old workers at
        `worker_shutdown_timeout`), then the pools the new config dropped are closed."""
        try:
            async with asyncio.timeout(old.config.edge.drain_timeout):
                await old.wait_idle()
        except TimeoutError:
            await self.state.sockets.close(old)
        finally:  # closed even when the edge stops first
            for up in upstreams:
                await up.close()
            for provider in providers:
                await provider.close()

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
