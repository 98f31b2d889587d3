"""The open WebSockets and relayed event streams of this process, counted per caller."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .errors import Problem

if TYPE_CHECKING:
    from .pipeline.websocket import Relay

IDLE = (1001, b"idle")
RESTARTING = (1001, b"edge restarting")
RELOADED = (1001, b"config reloaded")


class Sockets:
    """The open WebSockets of this process, per caller (for `max_per_identity`)."""

    def __init__(self) -> None:
        self.per_caller: dict[str, int] = {}
        self.open = 0
        self.relays: dict[Relay, None] = {}  # the WebSockets being relayed
        self._sweep: asyncio.TimerHandle | None = None
        self._tick = 1.0
        # message allowances shared by a caller's sockets on a route: [tokens, at]
        self.buckets: dict[str, list[float]] = {}

    def bucket(self, caller: str, burst: float, now: float) -> list[float]:
        """The caller's message allowance on this route, one for all their sockets."""
        found = self.buckets.get(caller)
        if found is None:
            found = self.buckets[caller] = [burst, now]
        return found

    def watch(self, relay: Relay) -> None:
        """A relay starts: closed with 1001 once silent past its `idle_timeout` (found by
        one sweep for all of them, every second or a quarter of the shortest timeout)."""
        self.relays[relay] = None
        tick = max(0.02, min(1.0, relay.policy.idle_timeout / 4))
        if tick < self._tick and self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._tick = min(self._tick, tick)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._tick, self._idle)

    def unwatch(self, relay: Relay) -> None:
        self.relays.pop(relay, None)
        if not self.relays and self._sweep is not None:
            self._sweep.cancel()
            self._sweep, self._tick = None, 1.0

    def _idle(self) -> None:
        now = time.monotonic()
        for relay in [r for r in self.relays if now - r.last >= r.policy.idle_timeout]:
            relay.stop(IDLE, IDLE)
        self._sweep = asyncio.get_running_loop().call_later(self._tick, self._idle)

    def of(self, rt: object) -> list[Relay]:
        """The WebSockets opened under this config generation."""
        return [relay for relay in self.relays if relay.rt is rt]

    async def close(self, rt: object | None = None) -> None:
        """The edge is closing (or `rt`, a config generation, is retired): its WebSockets
        are closed with 1001 (going away)."""
        tasks: list[asyncio.Task[Any]] = []
        for relay in self.of(rt) if rt is not None else list(self.relays):
            relay.stop(RESTARTING if rt is None else RELOADED,
                       RESTARTING if rt is None else RELOADED)
            if relay.task is not None:
                tasks.append(relay.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    def enter(self, caller: str, cap: int, *, kind: str = "too-many-sockets",
              what: str = "WebSockets") -> None:
        n = self.per_caller.get(caller, 0)
        if n >= cap:
            raise Problem(kind, f"at most {cap} open {what} per caller",
                          headers={"Retry-After": "5"})
        self.per_caller[caller] = n + 1
        self.open += 1

    def leave(self, caller: str) -> None:
        n = self.per_caller.get(caller, 1) - 1
        if n > 0:
            self.per_caller[caller] = n
        else:
            self.per_caller.pop(caller, None)
            self.buckets.pop(caller, None)
        self.open -= 1
