"""Rate limits: GCRA per key, exact under concurrency, in memory or shared through Redis.

GCRA keeps one number per key, its theoretical arrival time (TAT). Each request moves it
`interval` (= period / rate) ahead of max(TAT, now); it is refused when that would put it
more than `tolerance` (= burst × interval) ahead of now. So a key gets `burst` requests at
once and then one every `interval` — never the double bursts of fixed windows. Several
limits on one request are checked together and charged only if all of them allow it: in
memory in one synchronous step, in Redis in one script (the Redis clock for all
instances, so N instances admit exactly the configured rate together). On a Redis Cluster
each key carries the client it counts as its hash tag (`rl:{ip=10.0.0.1}…`), so a request's
limits on one client are in one slot; limits on different things (a user and a route) are
checked slot by slot and a refusal in one is refunded in the others (edge/backends/redis.py
says how, and what that changes).

If Redis is slow or down the limiter degrades (`on_backend_failure`): to this instance's
memory (`local`), to letting everything through (`open`) or to 503 (`closed`); it logs the
change once, shows it in `edge_ratelimit_degraded`, and tries Redis again every second.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..backends import Backend, BackendError
from ..backends.memory import MemoryBackend
from ..config import RateLimit, RateLimits
from ..context import Exchange
from ..errors import Problem

log = logging.getLogger("edge.ratelimit")
RETRY_REDIS = 1.0  # seconds between attempts to use Redis again after a failure


@dataclass(frozen=True, slots=True)
class Policy:
    count: int
    period: float
    burst: int
    interval: float  # seconds between requests at the steady rate
    tolerance: float  # how far ahead of now the TAT may run
    name: str = ""
    header: str = ""  # its RateLimit-Policy item, made once

    @classmethod
    def of(cls, name: str, rate: tuple[int, float], burst: int | None) -> Policy:
        count, period = rate
        b = burst if burst is not None else count
        interval = period / count
        return cls(count, period, b, interval, b * interval, name,
                   f'"{name}";q={count};w={_secs(period)}')


class CompiledLimit:
    """One `rate_limit` entry, compiled."""

    def __init__(self, cfg: RateLimit, scope: str) -> None:
        self.kinds: tuple[str, ...] = tuple(cfg.key) if isinstance(cfg.key, list) \
            else (cfg.key,)
        self.name = cfg.name or "-".join(self.kinds)
        # an explicit name shares the budget with every route using it; otherwise it is
        # the route's own (or, for edge.yaml's defaults, one budget across all routes)
        self.scope = f"n:{cfg.name}" if cfg.name else scope
        self.default = Policy.of(self.name, cfg.rate, cfg.burst)
        self.by_device = {d: Policy.of(self.name, o.rate, o.burst)
                          for d, o in cfg.per_device.items()}
        self.by_tier = {t: Policy.of(self.name, o.rate, o.burst)
                        for t, o in cfg.per_tier.items()}
        self.kind_label = "+".join(self.kinds)

    def policy(self, device: str, tier: str | None = None) -> Policy:
        # a verified key's tier is a deal with its holder; the device class only a guess
        if tier is not None and tier in self.by_tier:
            return self.by_tier[tier]
        return self.by_device.get(device, self.default)


class RouteLimits:
    """One route's limits, with what each device class (and app key tier) needs made once:
    the policies, the numbers the GCRA step reads, the `RateLimit-Policy` value and the
    metric series."""

    __slots__ = ("limits", "route", "_plans")

    def __init__(self, limits: Sequence[CompiledLimit], route: str) -> None:
        self.limits = tuple(limits)
        self.route = route
        # device class (or class and tier) → plan; classes and tiers come from config
        self._plans: dict[str | tuple[str, str], _Plan] = {}

    def plan(self, device: str, tier: str | None = None) -> _Plan:
        key = device if tier is None else (device, tier)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.limits, self.route, device, tier)
        return plan


class _Plan:
    __slots__ = ("policies", "intervals", "tolerances", "policy_header", "state_prefixes",
                 "allowed", "limited")

    def __init__(self, limits: Sequence[CompiledLimit], route: str, device: str,
                 tier: str | None) -> None:
        self.policies = [limit.policy(device, tier) for limit in limits]
        self.intervals = [p.interval for p in self.policies]
        self.tolerances = [p.tolerance for p in self.policies]
        self.policy_header = ", ".join(
            p.header if limit.name == p.name else
            f'"{limit.name}";q={p.count};w={_secs(p.period)}'
            for limit, p in zip(limits, self.policies, strict=True))
        self.state_prefixes = [f'"{limit.name}";r=' for limit in limits]
        self.allowed = [(route, limit.name, limit.kind_label, device, True) for limit in limits]
        self.limited = [(route, limit.name, limit.kind_label, device, False)
                        for limit in limits]


def compile_limits(limits: Sequence[RateLimit], scope: str) -> list[CompiledLimit]:
    return [CompiledLimit(cfg, f"{scope}#{i}") for i, cfg in enumerate(limits)]


def _key_part(kind: str, ctx: Exchange, headers: Mapping[str, str],
              settings: RateLimits, route: str) -> str:
    ip = ctx.client_ip
    identity = ctx.identity or {}
    if kind == "ip":
        return f"ip={ip}"
    if kind == "route":
        return f"r={route}"
    if kind == "user":
        sub = identity.get("sub")
        return f"u={identity.get('iss', '')}:{sub}" if sub is not None else f"ip={ip}"
    if kind == "device":
        verified = identity.get(settings.device_claim)
        if verified is not None:
            return f"d={verified}"
        api_key = headers.get(settings.api_key_header)
        if api_key and ctx.app is None:  # a device's own key; an app key is every install's
            return "k=" + hashlib.sha256(api_key.encode()).hexdigest()[:24]
        claimed = headers.get(settings.device_header)
        if claimed:
            # unverified: it only narrows the client's own address, so it can neither
            # spend another device's budget nor step outside the address's
            return f"ip={ip}/d={claimed[:128]}"
        return f"ip={ip}"
    if kind == "api_key":
        if ctx.app is not None:
            return f"app={ctx.app.name}"
        api_key = headers.get(settings.api_key_header)
        if api_key:
            return "k=" + hashlib.sha256(api_key.encode()).hexdigest()[:24]
        return f"ip={ip}"
    raise ValueError(kind)


def _slot_tag(who: str) -> str:
    """The hash tag of a limit's key: the client it counts (a claimed device within its
    address counts as the address), so that a request's limits on one client share a
    Redis Cluster slot and are charged in one script (edge/backends/redis.py). A tag holds
    no braces and stays short."""
    if who.startswith("ip=") and "/d=" in who:
        who = who.partition("/d=")[0]
    if len(who) > 64 or "{" in who or "}" in who:
        return hashlib.blake2b(who.encode(), digest_size=8).hexdigest()
    return who


@dataclass(slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0


class Limiter:
    """Process-wide: the buckets outlive config reloads."""

    def __init__(self, backend: Backend, settings: RateLimits, metrics: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` times the retries of Redis, and the buckets kept here when Redis is
        away (the memory backend's buckets are on its own clock)."""
        self.clock = clock
        self.shared = backend if not isinstance(backend, MemoryBackend) else None
        self.slotted = backend.cluster  # keys need hash tags
        self.local = backend if isinstance(backend, MemoryBackend) else MemoryBackend(
            clock=clock)
        self.configure(settings)
        self.metrics = metrics
        self.retry_at = 0.0
        self.degraded = False
        metrics.ratelimit_degraded.set(0)

    def configure(self, settings: RateLimits) -> None:
        """The settings (headers, claim, failure mode, bucket bound); on a reload they apply
        to the next check and the buckets themselves are kept."""
        self.settings = settings
        self.local.max_buckets = settings.max_keys

    async def check(self, limits: RouteLimits, ctx: Exchange,
                    headers: Mapping[str, str]) -> Decision:
        started = time.perf_counter()
        plan = limits.plan(ctx.device.device, ctx.app.tier if ctx.app is not None else None)
        keys = []
        slotted = self.slotted
        for limit in limits.limits:
            if len(limit.kinds) == 1:
                parts = _key_part(limit.kinds[0], ctx, headers, self.settings, limits.route)
                who = parts
            else:
                each = [_key_part(k, ctx, headers, self.settings, limits.route)
                        for k in limit.kinds]
                parts = "|".join(each)
                who = next((p for p in each if not p.startswith("r=")), each[0])
            raw = f"{limit.scope}|{parts}"
            if len(raw) > 96:
                raw = hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()
            keys.append(f"rl:{{{_slot_tag(who)}}}{raw}" if slotted else "rl:" + raw)
        if self.shared is None:  # the embedded default: no await, no coroutine
            result: tuple[bool, float, list[float]] | None = self.local.gcra_now(
                keys, plan.intervals, plan.tolerances)
            store = "memory"
        else:
            result = await self._gcra(keys, plan.intervals, plan.tolerances)
            store = self.settings.on_backend_failure if self.degraded else "redis"
        if result is None:  # `open` while Redis is away
            self.metrics.ratelimit_check(store, time.perf_counter() - started)
            return Decision(True, {})
        ok, now, tats = result
        state = []
        retry = 0.0
        count = self.metrics.ratelimit
        for i, policy in enumerate(plan.policies):
            ahead = tats[i] - now
            if ok:
                remaining = int((policy.tolerance - ahead + 1e-9) // policy.interval)
                count(plan.allowed[i])
            else:
                remaining = 0
                over = ahead + policy.interval - policy.tolerance
                if over > 1e-9:
                    retry = max(retry, over)
                    count(plan.limited[i])
                else:  # this limit had room; another one refused the request
                    count(plan.allowed[i])
            state.append(f"{plan.state_prefixes[i]}{max(0, remaining)};"
                         f"t={max(0, math.ceil(ahead))}")
        decision_headers = {"RateLimit-Policy": plan.policy_header,
                            "RateLimit": ", ".join(state)}
        self.metrics.ratelimit_check(store, time.perf_counter() - started)
        return Decision(ok, decision_headers, max(1, math.ceil(retry)) if not ok else 0)

    async def _gcra(self, keys: list[str], intervals: list[float], tolerances: list[float]
                    ) -> tuple[bool, float, list[float]] | None:
        if self.shared is not None and self.clock() >= self.retry_at:
            try:
                result = await self.shared.gcra(keys, intervals, tolerances)
            except BackendError as e:
                self._degrade(e)
            else:
                if self.degraded:
                    self.degraded = False
                    self.metrics.ratelimit_degraded.set(0)
                    log.warning("rate limits are shared through redis again")
                return result
        if self.shared is not None:
            mode = self.settings.on_backend_failure
            if mode == "open":
                return None
            if mode == "closed":
                raise Problem("backend-unavailable", "rate limits can't be checked; retry "
                              "later", headers={"Retry-After": "1"})
        return await self.local.gcra(keys, intervals, tolerances)

    def _degrade(self, error: BackendError) -> None:
        self.retry_at = self.clock() + RETRY_REDIS
        if not self.degraded:
            self.degraded = True
            self.metrics.ratelimit_degraded.set(1)
            log.warning("rate limits: redis unavailable (%s); %s until it is back", error,
                        {"local": "limiting per instance", "open": "letting requests through",
                         "closed": "refusing requests"}[self.settings.on_backend_failure])


def _secs(period: float) -> str:
    return str(int(period)) if period == int(period) else f"{period:g}"
