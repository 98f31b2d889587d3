"""Auth: the app key (policies/apikey.py), then the caller's token and the route's allow
rules (policies/auth.py). Object rules (policies/objects.py) need the answer or the body,
so the Source stage applies them. A failure also spends the client's per-IP budget, so
guessing keys or tokens is rate-limited like everything else."""

from __future__ import annotations

from typing import Any

from ..context import Exchange
from ..errors import Problem
from .limits import charge_ip
from .stage import Answer, Stage


class Auth(Stage):
    name = "auth"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        route = x.route
        out: dict[str, Any] = {"jwt": route.auth.mode}
        if route.auth.rules:
            out["allow_rules"] = len(route.auth.rules)
        if route.api_key is not None:
            out["app_key"] = route.api_key.mode
        if x.app is not None:
            out["app"] = x.app.name
        if x.identity:
            out["sub"] = x.identity.get("sub")
        if route.owner is not None:
            out["owner_rule"] = "checked on the answer"
        if route.body_rules is not None:
            out["body_rules"] = "checked on the body"
        return out

    @staticmethod
    def applies(route: Any) -> bool:
        return route.api_key is not None or route.auth.mode != "off"

    async def __call__(self, x: Exchange) -> Answer | None:
        route, request = x.route, x.request
        try:
            if route.api_key is not None:  # the app first, then its user
                x.app = route.api_key.check(request.headers)
            x.identity = route.auth.check(request, x.params)
        except Problem:
            await charge_ip(self.state, x)
            raise
        return None
