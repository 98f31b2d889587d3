"""Upstream event streams republished into the edge's topics (a route's `republish`): the
edge itself follows the route's upstream `text/event-stream` and publishes each event into
the topic, so apps follow it through `/events` with the hub's replay, heartbeats, caps and
fan-out across instances, instead of each app holding a stream to the backend.

One follower per route and config generation; with Redis, one instance of the fleet
follows it (a lease in the backend, renewed while it reads), so every event is published
once. A follower that loses its upstream reconnects with backoff and `Last-Event-ID`."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from .backends import BackendError
from .errors import Problem

if TYPE_CHECKING:
    from .runtime import CompiledRoute, State

log = logging.getLogger("edge.republish")
LEASE = 15.0  # seconds an instance holds a route's stream without renewing
STREAM_READ = 300.0  # seconds without a byte (or a comment) before it reconnects
MAX_EVENT = 256 * 1024  # a bigger event ends the connection (a misbehaving upstream)


class Republisher:
    """Keeps one follower task per republishing route of the generation being served."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.me = secrets.token_hex(6)
        self._generation = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watch = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        tasks = [t for t in (self._watch, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self) -> None:
        await asyncio.sleep(1.0)  # once the edge is up and listening (not if it can't)
        while True:
            rt = self.state.runtime
            if rt.generation != self._generation:
                self._generation = rt.generation
                await self._restart([r for r in rt.routes if r.republish])
            await asyncio.sleep(0.5)

    async def _restart(self, routes: list[CompiledRoute]) -> None:
        old, self._tasks = self._tasks, {}
        for task in old.values():
            task.cancel()
        await asyncio.gather(*old.values(), return_exceptions=True)
        for route in routes:
            self._tasks[route.name] = asyncio.ensure_future(self._follow(route))

    async def _follow(self, route: CompiledRoute) -> None:
        topic, last_id, failures = route.republish or "", None, 0
        lease = f"republish:{route.name}"
        while True:
            try:
                if await self._hold(lease):
                    last_id = await self._read(route, topic, last_id, lease)
                    failures = 0
                else:
                    await asyncio.sleep(LEASE / 3)  # another instance follows it
                    continue
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError, Problem, BackendError,
                    ValueError) as e:
                failures += 1
                log.warning("republishing %s into %r: %s; reconnecting", route.name, topic,
                            str(e)[:200] or type(e).__name__)
            await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.5, 1))

    async def _hold(self, lease: str) -> bool:
        backend = self.state.backend
        if backend.name == "memory":
            return True
        if await backend.add(lease, self.me.encode(), LEASE):
            return True
        holder = await backend.get(lease)
        if holder == self.me.encode():
            await backend.put(lease, holder, LEASE)
            return True
        return False

    async def _read(self, route: CompiledRoute, topic: str, last_id: str | None,
                    lease: str) -> str | None:
        """Follow the stream until it ends; returns the last event id seen."""
        assert route.upstream is not None and route.spec.upstream_path is not None
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        path = route.spec.upstream_path.build({})
        # a quiet stream is no failure: the read timeout is the stream's, not the route's
        timeout = aiohttp.ClientTimeout(total=None, connect=route.timeout.connect,
                                        sock_read=STREAM_READ)
        resp = await route.upstream.request("GET", path, headers, None, timeout)
        try:
            if resp.status != 200 or resp.content_type != "text/event-stream":
                raise ValueError(f"the upstream answered {resp.status} {resp.content_type}")
            event: dict[str, Any] = {}
            data: list[str] = []
            size = 0
            renewed = asyncio.get_running_loop().time()
            async for raw in resp.content:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                size += len(raw)
                if size > MAX_EVENT:
                    raise ValueError("an event over 256 KiB")
                if line:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    elif name in ("id", "event"):
                        event[name] = value
                    continue
                if data:  # a blank line ends an event
                    text = "\n".join(data)
                    try:
                        payload: Any = orjson.loads(text)
                    except orjson.JSONDecodeError:
                        payload = text
                    await self.state.hub.publish([topic], event.get("event", "message"),
                                                 payload)
                if "id" in event:
                    last_id = event["id"]
                event, data, size = {}, [], 0
                now = asyncio.get_running_loop().time()
                if now - renewed > LEASE / 3:
                    if not await self._hold(lease):
                        return last_id  # another instance took over
                    renewed = now
        finally:
            resp.release()
        return last_id
