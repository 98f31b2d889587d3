"""Upstream services: a pooled client each, retries with a budget, a circuit breaker."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterable, Callable, Mapping

import aiohttp
from yarl import URL

from .config import Service
from .errors import Problem

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

CLOSED, OPEN, HALF_OPEN = 0, 1, 2


class CircuitBreaker:
    """Consecutive-failure breaker: closed → open → half-open → closed (or open again)."""

    def __init__(self, threshold: int, open_for: float, half_open_requests: int,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[int], None] | None = None) -> None:
        self.threshold, self.open_for, self.trials = threshold, open_for, half_open_requests
        self.clock = clock
        self.on_change = on_change
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.in_trial = 0
        self.trial_successes = 0
        self.off = False  # never opens (circuit_breaker.enabled: false)

    def _set(self, state: int) -> None:
        if state != self.state:
            self.state = state
            if self.on_change:
                self.on_change(state)

    def retry_after(self) -> int:
        return max(1, math.ceil(self.opened_at + self.open_for - self.clock()))

    def before(self) -> None:
        """Call before a request; raises Problem('circuit-open') when it may not go."""
        if self.state == CLOSED:
            return
        if self.state == OPEN:
            if self.clock() - self.opened_at < self.open_for:
                raise _open(self.retry_after())
            self._set(HALF_OPEN)
            self.in_trial = self.trial_successes = 0
        if self.in_trial >= self.trials:
            raise _open(1)
        self.in_trial += 1

    def record(self, ok: bool) -> None:
        if self.off:
            return
        if self.state == HALF_OPEN:
            self.in_trial = max(0, self.in_trial - 1)
            if not ok:
                self._trip()
                return
            self.trial_successes += 1
            if self.trial_successes >= self.trials:
                self.failures = 0
                self._set(CLOSED)
            return
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.state == CLOSED and self.failures >= self.threshold:
            self._trip()

    def _trip(self) -> None:
        self.opened_at = self.clock()
        self.failures = 0
        self._set(OPEN)


def _open(retry_after: int) -> Problem:
    return Problem("circuit-open", "the upstream service is failing; try again later",
                   headers={"Retry-After": str(retry_after)})


class RetryBudget:
    """Token bucket: each request deposits `ratio` tokens, each retry spends one."""

    def __init__(self, ratio: float, min_per_second: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ratio, self.min_per_second, self.clock = ratio, min_per_second, clock
        self.cap = max(10.0, min_per_second * 10)
        self.tokens = self.cap
        self.last = clock()

    def deposit(self) -> None:
        self.tokens = min(self.cap, self.tokens + self.ratio)

    def withdraw(self) -> bool:
        now = self.clock()
        self.tokens = min(self.cap, self.tokens + (now - self.last) * self.min_per_second)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class UpstreamMetrics:
    """What the upstream client reports; app.py wires it to Prometheus."""

    def observe(self, service: str, seconds: float) -> None: ...
    def error(self, service: str, kind: str) -> None: ...
    def circuit(self, service: str, state: int) -> None: ...
    def retry(self, service: str) -> None: ...


class Upstream:
    """One backend service; `close()` when retired. Its connection pool is made by its
    first request (inside the running loop), so one built for a config that is then
    rejected holds nothing to close."""

    def __init__(self, name: str, cfg: Service, metrics: UpstreamMetrics | None = None) -> None:
        self.name, self.cfg = name, cfg
        self.base = cfg.url
        self.metrics = metrics or UpstreamMetrics()
        self._session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None
        self._timeout = self.timeout(None)
        cb = cfg.circuit_breaker
        self.breaker = CircuitBreaker(cb.failure_threshold, cb.open_for, cb.half_open_requests,
                                      on_change=lambda s: self.metrics.circuit(name, s))
        self.breaker.off = not cb.enabled
        self.failure_statuses = frozenset(cb.failure_statuses)
        self.budget = RetryBudget(cfg.retries.budget, cfg.retries.min_per_second)
        self.retry_statuses = frozenset(cfg.retries.on_status)
        self.metrics.circuit(name, CLOSED)

    def timeout(self, read: float | None) -> aiohttp.ClientTimeout:
        """`connect` covers the wait for a pooled connection too; `read` is the longest
        silence from the upstream (headers, then each body read). Built once per route."""
        t = self.cfg.timeouts
        return aiohttp.ClientTimeout(total=None, connect=t.connect, sock_read=read or t.read)

    @property
    def session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            cfg = self.cfg
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=cfg.pool.size, limit_per_host=0,
                                               keepalive_timeout=cfg.pool.keepalive,
                                               ttl_dns_cache=60),
                timeout=self._timeout,
                auto_decompress=False,  # bodies pass through as the upstream encoded them
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return session

    @property
    def ws_session(self) -> aiohttp.ClientSession:
        """WebSockets' own client: a socket holds its connection for its whole life, so it
        never waits for (or takes) one of the pool's `pool.size` connections; the route's
        `max_per_identity` and the connection limits bound them instead."""
        session = self._ws_session
        if session is None:
            session = self._ws_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False)
        return session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._ws_session is not None:
            await self._ws_session.close()

    async def request(self, method: str, path: str, headers: Mapping[str, str],
                      body: AsyncIterable[bytes] | bytes | None = None,
                      timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """Send one request (retrying when safe); the caller must release the response.

        Raises Problem for circuit-open (503), unreachable (502) and timeout (504).
        """
        url = URL(self.base + path, encoded=True)
        timeout = timeout or self._timeout
        retry = self.cfg.retries
        attempts = retry.attempts if (method in IDEMPOTENT and not body) else 1
        self.budget.deposit()
        attempt = 0
        while True:
            attempt += 1
            problem: Problem | None = None  # (before anything here may raise: see below)
            self.breaker.before()
            started = time.perf_counter()
            try:
                resp = await self.session.request(method, url, headers=headers, data=body,
                                                  allow_redirects=False, timeout=timeout)
            except TimeoutError:  # aiohttp's read/connect timeouts are TimeoutErrors too
                problem = Problem("upstream-timeout",
                                  f"'{self.name}' did not answer in time")
                kind = "timeout"
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as e:
                problem = Problem("upstream-unreachable", f"could not reach '{self.name}'")
                kind = "connect" if isinstance(e, aiohttp.ClientConnectorError) else "io"
            except aiohttp.ClientResponseError:
                problem = Problem("upstream-bad-response",
                                  f"'{self.name}' sent a malformed response")
                kind = "protocol"
            self.metrics.observe(self.name, time.perf_counter() - started)
            if problem is None:
                failed = resp.status in self.failure_statuses
                self.breaker.record(not failed)
                if (resp.status in self.retry_statuses and attempt < attempts
                        and self.budget.withdraw()):
                    resp.release()
                    self.metrics.retry(self.name)
                    await self._backoff(attempt)
                    continue
                return resp
            self.breaker.record(False)
            self.metrics.error(self.name, kind)
            if attempt < attempts and kind != "timeout" and self.budget.withdraw():
                self.metrics.retry(self.name)
                await self._backoff(attempt)
                continue
            try:
                raise problem
            finally:  # the traceback holds this frame: not the problem too (a cycle)
                problem = None

    async def _backoff(self, attempt: int) -> None:
        r = self.cfg.retries
        cap = min(r.max_backoff, r.backoff * (2 ** (attempt - 1)))
        await asyncio.sleep(random.uniform(0, cap))
