"""Delivery: an event published with `push` options goes to the registered devices of its
topics, each once (a device registered for two of its topics too), through its platform's
provider.

The publishing instance delivers (the others only relay the event to their streams), so
every device is pushed to once in the fleet. Deliveries wait in one bounded queue per
instance (`push.queue`; past it they are dropped and counted); per provider, `concurrency`
workers take them. `only-if-offline` asks, just before sending, whether the device has an
event stream open anywhere (Presence). A 429 or 5xx is retried after its Retry-After, or
after a growing, jittered delay, up to `push.retries` times; a device the provider says is
gone is unregistered. Nothing survives a restart: pushes still queued then are lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ..backends import BackendError
from ..config.models import Push
from ..errors import Problem
from ..stores import StoreSize
from .presence import Presence
from .providers.base import Notification, Provider, Registration, Result, Urgency
from .store import Registrations

if TYPE_CHECKING:
    from ..metrics import Metrics

log = logging.getLogger("edge.push")
Mode = Literal["only-if-offline", "always", "never"]
MODES = ("only-if-offline", "always", "never")
URGENCIES = ("very-low", "low", "normal", "high")


@dataclass(frozen=True, slots=True)
class PushOptions:
    """What a publisher asks of an event's push (`push` in the publish body)."""

    mode: Mode = "only-if-offline"
    title: str | None = None
    body: str | None = None
    collapse_key: str | None = None
    ttl: float | None = None
    urgency: Urgency | None = None

    @classmethod
    def parse(cls, doc: Any) -> PushOptions:
        if not isinstance(doc, dict):
            raise Problem("bad-request", 'push: {"title", "body", "collapse_key", "ttl", '
                          '"urgency", "mode"}')
        mode = doc.get("mode", "only-if-offline")
        if mode not in MODES:
            raise Problem("bad-request", f"push.mode: one of {', '.join(MODES)}")
        urgency = doc.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Problem("bad-request", f"push.urgency: one of {', '.join(URGENCIES)}")
        ttl = doc.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                                or not 0 <= ttl <= 28 * 86400):
            raise Problem("bad-request", "push.ttl: seconds, at most 28 days")
        texts = {}
        for name, limit in (("title", 200), ("body", 1000), ("collapse_key", 64)):
            value = doc.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise Problem("bad-request", f"push.{name}: a string of at most {limit} "
                              "characters")
            texts[name] = value
        return cls(mode, texts["title"], texts["body"], texts["collapse_key"], ttl, urgency)


@dataclass(slots=True)
class Delivery:
    reg: Registration
    note: Notification
    mode: Mode
    attempt: int = 0


class Dispatcher:
    """The process's push deliveries; providers come from the serving config (`providers`
    is called for them at each send, so a reload's take over)."""

    def __init__(self, presence: Presence, metrics: Metrics) -> None:
        self.presence, self.metrics = presence, metrics
        self.settings: Push | None = None
        self.store: Registrations | None = None
        self.providers: dict[str, Provider] = {}
        self._queues: dict[str, deque[Delivery]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._workers: dict[str, list[asyncio.Task[None]]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self.dropped = 0
        self.pending = 0
        metrics.push_queue.set_function(lambda: self.pending)

    def configure(self, settings: Push | None, store: Registrations | None,
                  providers: dict[str, Provider]) -> None:
        """The config in force: its settings, store and providers (workers as needed)."""
        self.settings, self.store, self.providers = settings, store, providers
        for name, provider in providers.items():
            if name not in self._queues:
                self._queues[name] = deque()
                self._wakeups[name] = asyncio.Event()
            workers = self._workers.setdefault(name, [])
            loop = asyncio.get_running_loop()
            while len(workers) < provider.concurrency:
                workers.append(loop.create_task(self._work(name)))

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        tasks = [t for workers in self._workers.values() for t in workers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    async def publish(self, event_id: str, topics: list[str], event: str, data: Any,
                      options: PushOptions) -> int:
        """Queue the event's pushes; returns how many were queued."""
        settings, store = self.settings, self.store
        if settings is None or store is None or options.mode == "never":
            return 0
        seen: dict[str, tuple[Registration, str]] = {}
        for topic in topics:
            try:
                found = await store.for_topic(topic)
            except BackendError as e:
                log.warning("push registrations for %s unavailable: %s", topic, e)
                continue
            for reg in found:
                seen.setdefault(reg.id, (reg, topic))
        queued = 0
        for reg, topic in seen.values():
            if reg.platform not in self.providers:
                continue
            defaults = settings.by_device.get(reg.device, settings.defaults)
            note = Notification(
                event_id, topic, event, data, options.title, options.body,
                options.collapse_key,
                int(options.ttl if options.ttl is not None else defaults.ttl),
                options.urgency or defaults.urgency)
            if self._put(Delivery(reg, note, options.mode)):
                queued += 1
        return queued

    def size(self) -> StoreSize:
        """Deliveries waiting (`push.queue` at most; more are dropped, not queued)."""
        bound = self.settings.queue if self.settings is not None else None
        return StoreSize(self.pending, bound, evictions=self.dropped)

    def _put(self, d: Delivery) -> bool:
        settings = self.settings
        queue = self._queues.get(d.reg.platform)
        if settings is None or queue is None or self.pending >= settings.queue:
            self.metrics.push_deliveries.labels(d.reg.platform, "dropped").inc()
            self.dropped += 1
            return False
        self.pending += 1
        queue.append(d)
        self._wakeups[d.reg.platform].set()
        return True

    async def _work(self, name: str) -> None:
        queue, wakeup = self._queues[name], self._wakeups[name]
        while True:
            while not queue:
                wakeup.clear()
                await wakeup.wait()
            d = queue.popleft()
            self.pending -= 1
            try:
                await self._deliver(name, d)
            except Exception:  # one delivery's surprise must not stop the worker
                log.exception("push delivery through %s failed", name)

    async def _deliver(self, name: str, d: Delivery) -> None:
        provider = self.providers.get(name)
        settings = self.settings
        if provider is None or settings is None:
            return
        counter = self.metrics.push_deliveries
        if d.mode == "only-if-offline" and await self.presence.online(d.reg.sub,
                                                                      d.reg.device_id):
            counter.labels(name, "online").inc()
            return
        t0 = time.perf_counter()
        result = await provider.send(d.reg, d.note)
        self.metrics.push_seconds.labels(name).observe(time.perf_counter() - t0)
        if result.outcome == "retry":
            self._retry(name, d, result, settings)
            return
        counter.labels(name, result.outcome).inc()
        if result.outcome == "gone" and self.store is not None:
            try:
                await self.store.remove(d.reg)
            except BackendError as e:
                log.warning("could not unregister a gone device: %s", e)
            else:
                self.metrics.push_registrations.labels(d.reg.platform, "gone").inc()
        elif result.outcome == "failed":
            log.info("push through %s refused (%s): %s", name, result.status, result.reason)

    def _retry(self, name: str, d: Delivery, result: Result, settings: Push) -> None:
        counter = self.metrics.push_deliveries
        if d.attempt >= settings.retries or (
                result.retry_after is not None
                and result.retry_after > settings.max_retry_after):
            counter.labels(name, "expired").inc()
            return
        counter.labels(name, "retry").inc()
        delay = result.retry_after if result.retry_after is not None \
            else min(60.0, 0.5 * 2 ** d.attempt) * random.uniform(0.5, 1.5)
        again = replace(d, attempt=d.attempt + 1)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            self._put(again)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)
