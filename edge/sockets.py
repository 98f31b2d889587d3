"""The open WebSockets of this process (pipeline/websocket.py), counted per caller."""

from __future__ import annotations

from .errors import Problem


class Sockets:
    """The open WebSockets of this process, per caller (for `max_per_identity`)."""

    def __init__(self) -> None:
        self.per_caller: dict[str, int] = {}
        self.open = 0

    def enter(self, caller: str, cap: int) -> None:
        n = self.per_caller.get(caller, 0)
        if n >= cap:
            raise Problem("too-many-sockets", f"at most {cap} open WebSockets per caller "
                          "on this route", headers={"Retry-After": "5"})
        self.per_caller[caller] = n + 1
        self.open += 1

    def leave(self, caller: str) -> None:
        n = self.per_caller.get(caller, 1) - 1
        if n > 0:
            self.per_caller[caller] = n
        else:
            self.per_caller.pop(caller, None)
        self.open -= 1
