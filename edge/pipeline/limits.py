"""RateLimit: the route's limits (policies/ratelimit.py), checked once the caller is known;
and the per-IP budget that requests no route's limits see are charged to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..context import Exchange
from ..errors import Problem
from ..policies.ratelimit import Decision
from .stage import Answer, Stage

if TYPE_CHECKING:
    from ..runtime import State


def _refused(decision: Decision, detail: str) -> Problem:
    return Problem("rate-limited", f"{detail}; retry in {decision.retry_after}s",
                   headers={**decision.headers, "Retry-After": str(decision.retry_after)})


async def charge_ip(state: State, x: Exchange) -> None:
    """Count a request that no route's limits see (404, 405, a failed token, publish,
    purge) against the client's per-IP budget: rate_limits.defaults with `key: ip`."""
    rt = x.rt
    if rt.ip_limits is None or x.buffer_limit is not None \
            or rt.rate_allow.is_trusted(x.client_ip):
        return  # batch items were charged as the batch
    decision = await state.limiter.check(rt.ip_limits, x, x.request.headers)
    if not decision.allowed:
        raise _refused(decision, "too many requests from this address")


class RateLimit(Stage):
    name = "rate-limit"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        route = x.route
        if route.limits is None:
            return {"limits": "none"}
        return {"charged": [limit.name for limit in route.limits.limits],
                "headers": dict(x.response_headers or {})}

    @staticmethod
    def applies(route: Any) -> bool:
        return route.limits is not None

    async def __call__(self, x: Exchange) -> Answer | None:
        route = x.route
        if route.limits is None or x.rt.rate_allow.is_trusted(x.client_ip):
            return None
        decision = await self.state.limiter.check(route.limits, x, x.request.headers)
        if not decision.allowed:
            raise _refused(decision, "over this route's rate limit")
        x.response_headers = decision.headers
        return None
