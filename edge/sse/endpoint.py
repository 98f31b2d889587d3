"""The two HTTP faces of the hub: `GET /events` (an app's stream) and
`POST /_edge/publish` (a backend's event)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from ..backends import BackendError, EventId
from ..config import Events
from ..context import Exchange, Incoming
from ..errors import Problem
from ..policies.auth import RouteAuthPolicy
from ..push.dispatch import Dispatcher, PushOptions
from ..wire import read_request_body
from .hub import Event, Hub, Subscriber, TopicRules, valid_topic

_EVENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SEND_TIMEOUT = 10.0  # a client that takes longer to accept a write is gone
STALLED = 256 * 1024  # bytes waiting in the socket's buffer: the client isn't reading


class _Hangup(asyncio.Protocol):
    """Stands between a stream's transport and aiohttp's protocol, passing everything on,
    to hear the moment the client hangs up: aiohttp itself only tells a handler through a
    failed write, i.e. at the next heartbeat, and a gone stream would hold its slot
    (max_per_identity) until then. The client's FIN counts: aiohttp closes the connection
    on it anyway, and it arrives a turn of the loop before the connection is lost — before
    a request the client sent next."""

    __slots__ = ("inner", "hub", "sub")

    def __init__(self, inner: asyncio.Protocol, hub: Hub, sub: Subscriber) -> None:
        self.inner, self.hub, self.sub = inner, hub, sub

    def hung_up(self) -> None:
        self.hub.leave(self.sub)  # the slot is free now, not once the handler gets to run
        self.sub.gone()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.hung_up()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        try:
            return self.inner.eof_received()
        finally:
            self.hung_up()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Stream(EventSourceResponse):
    """aiohttp-sse's event stream, calling `broken` when a write fails — the heartbeat's
    too: that is how a client that vanished without hanging up is noticed (its stream
    woken to end), with no timer per stream of our own."""

    def __init__(self, broken: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._broken = broken

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await super().write(data)
        except BaseException:  # reset, timed out (cancelled), written after the end
            self._broken()
            raise

    def stop_streaming(self) -> None:
        super().stop_streaming()
        # The cancelled ping task keeps its CancelledError, whose traceback holds the
        # ping's frame and so this response, its request and connection: a cycle per
        # stream, freed only by a full collection. Let go of the task once it is done.
        assert self._ping_task is not None
        self._ping_task.add_done_callback(self._ping_ended)

    def _ping_ended(self, task: asyncio.Task[None]) -> None:
        self._ping_task = None


def _topics(request: Incoming, settings: Events) -> list[str]:
    topics: list[str] = []
    for value in request.query.getall("topic", []):
        topics.extend(t.strip() for t in value.split(",") if t.strip())
    if not topics:
        raise Problem("bad-request", "name the topics to follow: ?topic=public&topic=…")
    if len(topics) > settings.max_topics:
        raise Problem("bad-request", f"at most {settings.max_topics} topics per stream")
    for topic in topics:
        if not valid_topic(topic):
            raise Problem("bad-request", f"{topic[:64]!r} is not a topic name")
    return list(dict.fromkeys(topics))


def _last_id(request: Incoming) -> str | None:
    return request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None


async def subscribe(request: Incoming, hub: Hub, settings: Events, rules: TopicRules,
                    auth: RouteAuthPolicy, ctx: Exchange, rid_header: str
                    ) -> tuple[web.StreamResponse, int]:
    """An app's event stream: authorized per topic before it opens, then what it missed
    (Last-Event-ID), then live events, heartbeats, and a last word when it ends."""
    if "access_token" in request.query or "token" in request.query:
        raise Problem("bad-request", "send the token in the Authorization header or the "
                      "cookie: URLs end up in logs")
    topics = _topics(request, settings)
    claims = auth.check(request, {})
    ctx.identity = claims
    for topic in topics:
        if not rules.allowed(topic, claims):
            if claims is None:
                raise Problem("unauthorized", f"topic {topic!r} needs a token",
                              headers={"WWW-Authenticate": "Bearer"})
            raise Problem("forbidden", f"you may not follow topic {topic!r}")
    last = _last_id(request)
    who = f"sub:{claims['sub']}" if claims and claims.get("sub") is not None \
        else f"ip:{ctx.client_ip}"
    expires = float(claims["exp"]) if claims and isinstance(claims.get("exp"), int | float) \
        else None
    device_id = claims.get("device_id") if claims else None
    device_id = device_id if isinstance(device_id, str) else \
        request.headers.get("X-Device-ID")
    if device_id is not None and not DEVICE_ID.match(device_id):
        device_id = None
    sub = hub.join(frozenset(topics), ctx.device.device, who, device_id)
    assert isinstance(request, web.BaseRequest)  # a stream needs a real connection
    # The request id goes in the stream's first comment rather than a header: one header
    # more makes aiohttp grow every stream's header table (~0.4 KB each, x10,000 streams).
    resp = _Stream(sub.gone, ping_interval=settings.heartbeat, send_timeout=SEND_TIMEOUT)
    loop = asyncio.get_running_loop()
    expiry: asyncio.TimerHandle | None = None
    sent = 0
    transport = request.transport
    inner = transport.get_protocol() if transport is not None else None
    hangup = _Hangup(inner, hub, sub) if isinstance(inner, asyncio.Protocol) else None
    if transport is not None and hangup is not None:
        transport.set_protocol(hangup)
    try:
        await resp.prepare(request)
        if expires is not None:
            expiry = loop.call_at(loop.time() + max(0.0, expires - time.time()), sub.wake)
        hello = (f": {rid_header}: {ctx.request_id}\n"
                 f"retry: {int(settings.retry * 1000)}\n\n").encode()
        await resp.write(hello)
        sent += len(hello)
        newest: EventId | None = None  # the last event this client has, as far as we know
        if last is not None:
            try:
                after: EventId | None = EventId.parse(last)
            except ValueError:
                after = None  # not ours, or from before ids had an epoch: refresh
            events, lost, known = await hub.history(sub.topics, after)
            if lost:
                sent += await _refresh(resp, lost, "the events since your last one are no "
                                       "longer kept: fetch afresh")
            newest = after if known else None
            for event in events:
                sent += await _write(request, resp, event, sub)
                newest = event.id
        while True:
            if not (sub.queue or sub.overflowed or sub.missed or sub.closing):
                # waited for here rather than in a method: each idle stream holds one
                # coroutine frame fewer
                sub.waiter = loop.create_future()
                try:
                    await sub.waiter
                finally:
                    sub.waiter = None
            if sub.closing == "gone" or not resp.is_connected():
                break
            if sub.closing == "drain":
                sent += await _send(resp, "reconnect", {"reason": "the edge is restarting"},
                                    retry=int(settings.retry * 1000))
                break
            if sub.overflowed:
                sent += await _send(resp, "overflow", {"reason": "too many events waiting "
                                                       "for you: reconnect with "
                                                       "Last-Event-ID"})
                break
            if expires is not None and time.time() >= expires:
                sent += await _send(resp, "token-expired", {"reason": "your token expired: "
                                                            "reconnect with a new one"})
                break
            if sub.missed:
                sub.missed = False
                sent += await _refresh(resp, sorted(sub.topics), "events may have passed "
                                       "you by: fetch afresh")
            for event in sub.take():
                if newest is not None and event.id.epoch == newest.epoch \
                        and event.id.seq <= newest.seq:
                    continue  # already sent from the history; one of another epoch can't be
                sent += await _write(request, resp, event, sub)
                newest = event.id
    except (ConnectionResetError, TimeoutError, BackendError, RuntimeError):
        pass  # the client went away (or stalled): nothing more to say to it
    finally:
        hub.leave(sub)
        if transport is not None and inner is not None and transport.get_protocol() is hangup:
            transport.set_protocol(inner)  # the connection may serve other requests
        if expiry is not None:
            expiry.cancel()
        if resp.prepared and resp.is_connected():
            resp.stop_streaming()
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
    return resp, sent


async def _write(request: web.BaseRequest, resp: EventSourceResponse, event: Event,
                 sub: Subscriber) -> int:
    """An event's bytes (encoded once for all its streams). A client whose unsent bytes
    pile up past STALLED is not reading: it is cut off instead of being waited for."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError
    if transport.get_write_buffer_size() > STALLED:
        transport.abort()
        raise TimeoutError
    topic = next((t for t in event.topics if t in sub.topics), event.topics[0])
    data = event.wire(topic)
    await resp.write(data)
    return len(data)


async def _refresh(resp: EventSourceResponse, topics: list[str], reason: str) -> int:
    return await _send(resp, "refresh", {"topics": topics, "reason": reason})


async def _send(resp: EventSourceResponse, name: str, data: Any, retry: int | None = None
                ) -> int:
    """A word from the edge itself: no id, so the client's Last-Event-ID stays its last
    event's."""
    text = orjson.dumps(data).decode()
    await resp.send(text, event=name, retry=retry)
    return len(text) + len(name) + 32


def publisher_keys(settings: Events, env: dict[str, str]) -> list[bytes]:
    return [env[name].encode() for name in settings.publisher_keys_env if env.get(name)]


async def publish(request: Incoming, hub: Hub, settings: Events, keys: list[bytes],
                  auth: RouteAuthPolicy, bytes_in: list[int], push: Dispatcher | None = None
                  ) -> tuple[web.Response, int]:
    """A backend's event: `{topic | topics, event?, data, id?, push?}` with a publisher
    key or a token holding the publisher role. `id` makes retries safe: the same id twice
    within the history's age publishes once. `push` (title, body, collapse_key, ttl,
    urgency, mode) sends it to the topics' registered devices too (edge/push)."""
    presented = request.headers.get("Authorization", "")
    key = presented[7:].encode() if presented.startswith("Bearer ") else b""
    if not (key and any(hmac.compare_digest(key, k) for k in keys)):
        if "." not in key.decode(errors="replace"):
            raise Problem("unauthorized", "publishing needs a publisher key or a token",
                          headers={"WWW-Authenticate": "Bearer"})
        claims = auth.check(request, {})
        roles = (claims or {}).get("roles")
        held = roles if isinstance(roles, list) else [roles]
        if settings.publisher_role not in held:
            raise Problem("forbidden", f"publishing needs the '{settings.publisher_role}' role")
    raw = await read_request_body(request, settings.max_event_size + 4096, bytes_in)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or "data" not in doc:
        raise Problem("bad-request", 'expected {"topic": "...", "event": "...", "data": ...}')
    topics = doc.get("topics", [doc["topic"]] if "topic" in doc else [])
    if not isinstance(topics, list) or not topics or len(topics) > 64 or not all(
            isinstance(t, str) and valid_topic(t) for t in topics):
        raise Problem("bad-request", "topic(s): 1 to 64 topic names")
    name = doc.get("event", "message")
    if not isinstance(name, str) or not _EVENT_NAME.match(name):
        raise Problem("bad-request", "event: letters, digits, '.', '_' or '-'")
    if len(orjson.dumps(doc["data"])) > settings.max_event_size:
        raise Problem("payload-too-large", f"data is limited to {settings.max_event_size} "
                      "bytes")
    options = PushOptions.parse(doc["push"]) if doc.get("push") is not None else None
    publisher_id = doc.get("id")
    if publisher_id is not None:
        if not isinstance(publisher_id, str) or not 0 < len(publisher_id) <= 200:
            raise Problem("bad-request", "id: a string of up to 200 characters")
        marker = "evpub:" + hashlib.sha256(publisher_id.encode()).hexdigest()[:32]
        try:
            first = await hub.backend.add(marker, b"1", settings.history_age)
        except BackendError:
            first = True  # better twice than never
        if not first:
            body = orjson.dumps({"duplicate": True, "topics": topics})
            return web.Response(body=body, content_type="application/json"), len(body)
    topics = list(dict.fromkeys(topics))
    event_id = await hub.publish(topics, name, doc["data"])
    out: dict[str, Any] = {"id": str(event_id), "topics": topics}
    if options is not None:
        out["push"] = {"queued": await push.publish(str(event_id), topics, name, doc["data"],
                                                    options) if push is not None else 0}
    body = orjson.dumps(out)
    return web.Response(status=202, body=body, content_type="application/json"), len(body)


async def relay_purges(hub: Hub, tags: list[str]) -> None:
    """The cache's purges, as `invalidate` events on the topics named like the tags."""
    if hub.settings is None:
        return
    topics = [t for t in tags if t != "*" and not t.startswith(("route:", "uri:"))
              and valid_topic(t)]
    if topics:
        try:
            await hub.publish(topics, "invalidate", {"tags": tags})
        except Problem:
            pass
