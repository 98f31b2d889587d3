"""The event hub: who is subscribed to what in this process, and the way events reach them.

An event gets its id from the backend (its history's epoch and one counter for all topics,
so ids only grow, even across a backend that starts over empty) and is kept in each of its
topics' bounded history. In memory the hub hands it to local subscribers at once; with
Redis every instance — this one included — receives it from one pub/sub channel, so all of
them deliver in the same (id) order. What is published while that subscription is broken
never arrives: once it is back, every open stream is told to refresh.

A subscriber is a bounded queue and a wake-up future; the connection's own handler
drains it. Publishing never waits for a client: one that falls `max_queue` events behind
is marked and its handler closes the stream with an `overflow` event.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..aio import stop
from ..backends import Backend, BackendError, EventId
from ..config import Events, TopicRule
from ..errors import Problem
from ..push.presence import Presence
from ..stores import StoreSize

log = logging.getLogger("edge.sse")
CHANNEL = "ev:live"
_TOPIC = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


def valid_topic(topic: str) -> bool:
    return bool(_TOPIC.match(topic))


@dataclass(slots=True)
class Event:
    id: EventId
    topics: list[str]
    event: str
    data: Any
    ts: float
    _wire: dict[str, bytes] | None = None

    @classmethod
    def decode(cls, event_id: EventId, ts: float, payload: bytes) -> Event:
        doc = orjson.loads(payload)
        return cls(event_id, doc["topics"], doc["event"], doc["data"], ts)

    def wire(self, topic: str) -> bytes:
        """The event as sent on a stream that follows `topic`: encoded once per topic,
        however many streams it goes to."""
        cache = self._wire
        if cache is None:
            cache = self._wire = {}
        out = cache.get(topic)
        if out is None:
            data = orjson.dumps({"topic": topic, "data": self.data}).decode()
            out = cache[topic] = (f"id: {self.id}\r\nevent: {self.event}\r\n"
                                  f"data: {data}\r\n\r\n").encode()
        return out


@dataclass(eq=False, slots=True)
class Subscriber:
    """One open stream, as the hub sees it: a bounded queue and a wake-up call."""

    topics: frozenset[str]
    device: str
    who: str
    limit: int
    device_id: str | None = None  # the device it says it is (for push: only-if-offline)
    queue: list[Event] = field(default_factory=list)
    waiter: asyncio.Future[None] | None = None
    overflowed: bool = False
    missed: bool = False  # events may have passed it by: its client must refresh
    closing: str | None = None  # drain: the edge is going away; gone: the client is

    def push(self, event: Event) -> bool:
        if self.overflowed:
            return False
        if len(self.queue) >= self.limit:
            self.overflowed = True
            self.queue.clear()
            self.wake()
            return False
        self.queue.append(event)
        self.wake()
        return True

    def wake(self, *_: Any) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def gone(self, *_: Any) -> None:
        """The client is gone: it hung up, or the heartbeat could not be written."""
        if self.closing is None:
            self.closing = "gone"
        self.wake()

    def take(self) -> list[Event]:
        events, self.queue = self.queue, []
        return events


class TopicRules:
    """`events.topics`, compiled: may this caller read that topic?"""

    def __init__(self, rules: list[TopicRule]) -> None:
        self.rules = rules

    def allowed(self, topic: str, claims: Mapping[str, Any] | None) -> bool:
        for rule in self.rules:
            if not rule.public:
                if claims is None:
                    continue
                if rule.roles:
                    roles = claims.get("roles")
                    held = roles if isinstance(roles, list) else [roles]
                    if not any(r in held for r in rule.roles):
                        continue
            regex = _rule_regex(rule.topic, claims)
            if regex is not None and re.fullmatch(regex, topic):
                return True
        return False


_PART = re.compile(r"\{(sub|claims\.[A-Za-z0-9_]+)\}|\*")


def _rule_regex(template: str, claims: Mapping[str, Any] | None) -> str | None:
    """The rule as a regex for this caller: its claims filled in (matched literally), `*`
    as any run of characters but ':'. None when a claim it needs is missing."""
    out, pos = [], 0
    for m in _PART.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        pos = m.end()
        if m.group(0) == "*":
            out.append("[^:]*")
            continue
        name = m.group(1)
        value = (claims or {}).get("sub" if name == "sub" else name[len("claims."):])
        if value is None or isinstance(value, dict | list | bool):
            return None
        out.append(re.escape(str(value)))
    out.append(re.escape(template[pos:]))
    return "".join(out)


class Hub:
    """Process-wide; outlives config reloads."""

    def __init__(self, backend: Backend, metrics: Any) -> None:
        self.backend = backend
        self.metrics = metrics
        self.settings: Events | None = None
        self.by_topic: dict[str, set[Subscriber]] = {}
        self.subscribers: set[Subscriber] = set()
        self.per_identity: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.presence = Presence(backend)
        metrics.sse_open.set_function(lambda: len(self.subscribers))

    def configure(self, settings: Events | None) -> None:
        """The settings in force; when they change (a reload), open streams are asked to
        reconnect, so each is authorized again under the new rules."""
        if settings is self.settings:
            return
        if self.settings is not None and settings != self.settings:
            self.drain()
        self.settings = settings
        if settings is not None and hasattr(self.backend, "max_history_bytes"):
            self.backend.max_history_bytes = settings.history_memory

    async def start(self) -> None:
        if self.backend.name != "memory":
            self._task = asyncio.get_running_loop().create_task(self._listen())
        await self.presence.start()

    async def close(self) -> None:
        await stop(self._task)
        await self.presence.close()

    def size(self) -> StoreSize:
        """Open streams (each with its queue of at most `events.max_queue` events)."""
        bound = self.settings.max_connections if self.settings is not None else None
        return StoreSize(len(self.subscribers), bound)

    # -- subscribing
    def join(self, topics: frozenset[str], device: str, who: str,
             device_id: str | None = None) -> Subscriber:
        s = self.settings
        assert s is not None
        if len(self.subscribers) >= s.max_connections:
            raise Problem("service-unavailable", "this instance holds all the event streams it "
                          "may; retry on another or later", headers={"Retry-After": "5"})
        if self.per_identity.get(who, 0) >= s.max_per_identity:
            raise Problem("too-many-streams", f"at most {s.max_per_identity} event streams "
                          "per caller", headers={"Retry-After": "5"})
        sub = Subscriber(topics, device, who, s.max_queue, device_id)
        self.subscribers.add(sub)
        if device_id is not None and who.startswith("sub:"):
            self.presence.enter(who[4:], device_id)
        self.per_identity[who] = self.per_identity.get(who, 0) + 1
        for topic in topics:
            self.by_topic.setdefault(topic, set()).add(sub)
        self.metrics.sse_connections(device, +1)
        return sub

    def leave(self, sub: Subscriber) -> None:
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        if sub.device_id is not None and sub.who.startswith("sub:"):
            self.presence.leave(sub.who[4:], sub.device_id)
        left = self.per_identity.get(sub.who, 1) - 1
        if left:
            self.per_identity[sub.who] = left
        else:
            self.per_identity.pop(sub.who, None)
        for topic in sub.topics:
            subs = self.by_topic.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_topic[topic]
        self.metrics.sse_connections(sub.device, -1)

    def drain(self) -> None:
        """Tell every stream to ask its client to reconnect (shutdown)."""
        for sub in list(self.subscribers):
            sub.closing = "drain"
            sub.wake()

    def refresh_all(self) -> None:
        """Tell every stream that events may have passed it by (the subscription to the
        other instances was broken)."""
        for sub in self.subscribers:
            sub.missed = True
            sub.wake()

    # -- publishing
    async def publish(self, topics: list[str], event: str, data: Any) -> EventId:
        s = self.settings
        assert s is not None
        payload = orjson.dumps({"topics": topics, "event": event, "data": data})
        try:
            event_id, ts = await self.backend.event_publish(topics, payload, s.history,
                                                            s.history_age, CHANNEL)
        except BackendError as e:
            raise Problem("backend-unavailable", f"the event could not be stored: {e}",
                          headers={"Retry-After": "1"}) from None
        self.metrics.sse_published(event)
        if self.backend.name == "memory":  # nobody else: deliver here, now
            self.deliver(Event(event_id, topics, event, data, ts))
        return event_id

    def deliver(self, event: Event) -> None:
        reached: set[Subscriber] = set()
        for topic in event.topics:
            reached.update(self.by_topic.get(topic, ()))
        delivered = dropped = 0
        for sub in reached:
            if sub.push(event):
                delivered += 1
            else:
                dropped += 1
        self.metrics.sse_delivered(delivered, dropped)

    async def history(self, topics: frozenset[str], after: EventId | None
                      ) -> tuple[list[Event], list[str], bool]:
        """Events after `after` on these topics, in id order without repeats; the topics
        whose history no longer reaches back that far; and whether `after` is an id of this
        history at all. One that isn't — unreadable (None), from before the backend started
        over, ahead of anything it issued — leaves every topic to refresh, nothing to
        replay."""
        s = self.settings
        assert s is not None
        found: dict[EventId, Event] = {}
        lost: list[str] = []
        known = after is not None
        for topic in sorted(topics):
            if after is None:
                break
            try:
                kept = await self.backend.event_history(topic, after, s.history_age)
            except BackendError as e:
                log.warning("event history unavailable: %s", e)
                lost.append(topic)
                continue
            if kept is None:
                known = False
                break
            events, gone = kept
            if gone:
                lost.append(topic)
            for event_id, payload in events:
                if event_id not in found:
                    found[event_id] = Event.decode(event_id, 0.0, payload)
        if not known:
            found, lost = {}, sorted(topics)
        self.metrics.sse_replay(hit=not lost)
        return [found[k] for k in sorted(found)], lost, known

    async def _listen(self) -> None:
        async for message in self.backend.listen(CHANNEL):
            if not message:
                self.refresh_all()
                continue
            try:
                raw_id, raw_ts, payload = message.split(b"\n", 2)
                self.deliver(Event.decode(EventId.parse(raw_id.decode()), int(raw_ts) / 1000,
                                          payload))
            except (ValueError, KeyError, orjson.JSONDecodeError):
                log.warning("ignored a malformed event message")
