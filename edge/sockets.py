"""The open WebSockets and relayed event streams of this process, counted per caller."""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import Problem


class Sockets:
    """The open WebSockets of this process, per caller (for `max_per_identity`)."""

    def __init__(self) -> None:
        self.per_caller: dict[str, int] = {}
        self.open = 0
        self.relays: set[asyncio.Task[Any]] = set()  # the WebSockets' relay tasks
        # message allowances shared by a caller's sockets on a route: [tokens, at]
        self.buckets: dict[str, list[float]] = {}

    def bucket(self, caller: str, burst: float, now: float) -> list[float]:
        """The caller's message allowance on this route, one for all their sockets."""
        found = self.buckets.get(caller)
        if found is None:
            found = self.buckets[caller] = [burst, now]
        return found

    async def close(self) -> None:
        """The edge is closing: every WebSocket is closed with 1001 (going away)."""
        for task in list(self.relays):
            task.cancel()
        await asyncio.gather(*self.relays, return_exceptions=True)

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
