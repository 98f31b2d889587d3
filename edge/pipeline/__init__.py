"""The request pipeline: every request through the edge runs these stages, in this order.

    FastLane     fastlane.py     a fresh public answer rendered before: served whole
    ------------ per request, over one Exchange (context.py) ---------------------------
    on the way down: a stage answers (the walk ends) or lets the request go on
    Endpoints    endpoints.py    /health /ready /metrics, keymaps, purge, publish, explain
    Match        match.py        the route and its path parameters; 404 405 414
    Profile      profile.py      the envelope, decided before auth so a 401 comes in it too
    Auth         access.py       app key, token, allow rules; 401 403
    RateLimit    limits.py       the route's limits; 429
    Negotiate    negotiate.py    format, coding, fields= and keymap for a shaped route; 406
    then layers, each around the ones below it: down, then up with what they made
    Encode       encode.py       up: ETag, 304/226, envelope, content coding; or the relay
    Cache        cache.py        down: a fresh entry answers; up: the answer kept
    Shape        shape.py        up: the upstream's JSON (or a composed document) shaped
    Idempotency  idempotency.py  down: a retried write is replayed; up: the answer stored
    Source       source.py       batch | image | composed | WebSocket | the upstream's reply
    ------------
    (a WebSocket's handshake walks all of the above; the Source answers with the upgraded
    socket, and `serve` relays its frames once the stages' frames are gone: websocket.py)
    Deliver      deliver.py      request id, Server-Timing, problems, metrics, access log

The server, batch items, the offline queue, the admin explain endpoint and `edge explain`
all run this same list (`Pipeline.serve`); `explain` only adds a Trace that records what
each stage decided. A route walks only the stages with something to do on it (`plan`).
What stays outside: the listener's guards (server.py) and event streams (`/events`),
which go straight to the hub so an idle stream holds nothing more.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from ..accesslog import AccessLog
from ..batch import SubRequest
from ..context import Exchange, Incoming
from ..errors import Problem
from ..representation import Answer
from ..sse.endpoint import subscribe
from .access import Auth
from .cache import Cache
from .deliver import REQUEST_ID, Deliver
from .encode import Encode
from .endpoints import Endpoints
from .fastlane import FastLane
from .idempotency import Idempotency
from .limits import RateLimit
from .match import Match
from .negotiate import Negotiate
from .profile import Profile
from .shape import Shape
from .source import Source
from .stage import Inner, Layer, Link, Up, bottom
from .trace import Trace
from .websocket import Upgraded

if TYPE_CHECKING:
    from ..runtime import State

EXPLAIN_LIMIT = 64 * 1024 * 1024  # an explained answer is read whole (up to this)

__all__ = ["STAGES", "Pipeline", "Trace"]

# The order every request takes: stages on the way down (one that answers ends the
# walk), then layers, each wrapping those after it.
STAGES = (Endpoints, Match, Profile, Auth, RateLimit, Negotiate)
LAYERS = (Encode, Cache, Shape, Idempotency, Source)


class Pipeline:
    """The stages, built once per process over the shared state."""

    def __init__(self, state: State, access_log: AccessLog) -> None:
        self.state = state
        self.metrics = state.metrics
        self.inflight = 0
        self.metrics.inflight.set_function(lambda: self.inflight)
        # Request ids: a random per-process prefix and a counter; unique, and far cheaper
        # than asking the OS for randomness on every request.
        self._rid_prefix = secrets.token_hex(4)
        self._rid_counter = itertools.count(1)
        self.stages: tuple[Any, ...] = tuple(
            stage(state, self) for stage in STAGES)  # type: ignore[call-arg]
        self.layers: tuple[Layer, ...] = tuple(layer(state, self) for layer in LAYERS)
        self.deliver = Deliver(state, access_log)
        self.fast_lane = FastLane(state, self, self.deliver)

    def request_id(self, given: str | None) -> str:
        if given is not None and REQUEST_ID.match(given):
            return given
        return f"{self._rid_prefix}{next(self._rid_counter) & 0xFFFFFFFF:08x}"

    def handle(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        """The server's handler: the fast lane, else the whole walk. (Not a coroutine
        itself: the walk's is what aiohttp awaits, one frame fewer on every request and
        on every open socket.)"""
        if self.state.cache.ready.answers and (request.method == "GET"
                                               or request.method == "HEAD"):
            return self.fast_lane(request)  # (which walks when it has no answer)
        return self.serve(request)

    async def serve(self, request: Incoming, rid: str | None = None,
                    buffer_limit: int | None = None,
                    trace: Trace | None = None) -> web.StreamResponse:
        """One request, start to end. Batch items come here too, with their own request id
        and a `buffer_limit`: their responses are read whole, never streamed."""
        rt = self.state.runtime
        started = time.perf_counter()
        rt.inflight += 1
        self.inflight += 1
        headers = request.headers
        x = Exchange(request_id=rid or self.request_id(headers.get(rt.rid_header)),
                     route_name="unmatched", params={}, started=started,
                     device=rt.devices.profile(headers),
                     client_ip=rt.clients.client_ip(request.remote,
                                                    headers.get("X-Forwarded-For")),
                     buffer_limit=buffer_limit, request=request, rt=rt, trace=trace)
        answer: Answer | None = None
        try:
            try:
                events = rt.events
                if (events is not None and request.method == "GET" and buffer_limit is None
                        and trace is None
                        and request.raw_path.partition("?")[0] == events.path):
                    # straight to the stream: one frame fewer held by each idle stream
                    x.route_name, x.path = "events", events.path
                    self.state.hub.configure(events)
                    answer = await subscribe(request, self.state.hub, events, rt.topic_rules,
                                             rt.events_auth, x, rt.rid_header)
                else:
                    answer = await self.walk(x)
                    if isinstance(answer[0], Upgraded):
                        # a WebSocket: relayed here, where the stages' frames are gone
                        answer = await answer[0].relay.run(x)
            except Problem as p:
                answer = self.deliver.problem(x, p)
            except Exception:
                answer = self.deliver.crash(x)
            return self.deliver.finish(x, answer)
        finally:
            rt.inflight -= 1
            self.inflight -= 1
            if rt.drained is not None and rt.inflight == 0 and not rt.drained.done():
                rt.drained.set_result(None)
            self.deliver.account(x, answer)

    async def explain(self, method: str, target: str, headers: CIMultiDict[str],
                      body: bytes = b"", remote: str = "127.0.0.1") -> dict[str, Any]:
        """Walk one request through the stages with a Trace, and return the record: what
        each stage decided, in order, and the answer (status, headers, bytes)."""
        return (await self.explained(method, target, headers, body, remote))[0]

    async def explained(self, method: str, target: str, headers: CIMultiDict[str],
                        body: bytes = b"", remote: str = "127.0.0.1"
                        ) -> tuple[dict[str, Any], bytes]:
        """`explain`'s record, and the answer's body as it went on the wire."""
        trace = Trace()
        request = SubRequest(method.upper(), target, headers, body, remote, "http")
        given = headers.get(self.state.runtime.rid_header)
        rid = self.request_id(given) if given is not None else "explain"
        response = await self.serve(request, rid, EXPLAIN_LIMIT, trace)
        raw = getattr(response, "body", None)
        raw = raw if isinstance(raw, bytes) else b""
        return {"request": {"method": request.method, "target": target,
                            "headers": {str(k): v for k, v in headers.items()}},
                "steps": trace.as_json(), "status": response.status,
                "headers": {str(k): v for k, v in response.headers.items()},
                "bytes": len(raw)}, raw

    def plan(self, route: Any) -> tuple[tuple[Any, ...], Inner]:
        """What a route's requests walk after Match: the stages with something to do on
        it (a route without limits has no RateLimit stage), in STAGES order, then its
        chain of layers. Made on the route's first request, kept on the (per-generation)
        compiled route."""
        plan = route.stages
        if plan is None:
            stages = tuple(s for s in self.stages[2:] if s.applies(route))
            plan = route.stages = (stages, self.chain(route))
        return plan  # type: ignore[no-any-return]

    def chain(self, route: Any, trace: Trace | None = None) -> Inner:
        """The route's layers, each bound to those below it (recording, when explained)."""
        inner: Inner = bottom
        for layer in reversed(self.layers):
            if layer.applies(route):
                inner = Link(layer, inner) if trace is None else _Traced(layer, inner, trace)
        return inner

    async def walk(self, x: Exchange) -> Answer:
        trace = x.trace
        if trace is not None:
            return await self._walk_traced(x, trace)
        answer = await self.stages[0](x)  # Endpoints
        if answer is None:
            answer = await self.stages[1](x)  # Match
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        stages, chain = self.plan(x.route)
        for stage in stages:
            answer = await stage(x)
            if answer is not None:
                return answer  # type: ignore[no-any-return]
        return await chain(x)  # type: ignore[return-value]  # Encode's, or a batch's

    async def _walk_traced(self, x: Exchange, trace: Trace) -> Answer:
        """`walk`, explained: every stage speaks (those with nothing to do too), and every
        layer records what it decided."""
        for stage in self.stages:
            answer = await self._step(stage, x, trace)
            if answer is not None:
                return answer
        return await self.chain(x.route, trace)(x)  # type: ignore[return-value]

    @staticmethod
    async def _step(stage: Any, x: Exchange, trace: Trace) -> Answer | None:
        try:
            answer = await stage(x)
        except Problem as p:
            trace.stopped(stage, x, p)
            raise
        trace.passed(stage, x, answer)
        return answer  # type: ignore[no-any-return]


class _Traced(Link):
    """A link that records what its layer decided (after it, on the way up)."""

    __slots__ = ("trace",)

    def __init__(self, layer: Layer, inner: Inner, trace: Trace) -> None:
        super().__init__(layer, inner)
        self.trace = trace

    async def _run(self, x: Exchange) -> Up:
        try:
            out = await self.layer(x, self.inner)
        except Problem as p:
            self.trace.stopped(self.layer, x, p)
            raise
        self.trace.passed(self.layer, x, out)
        return out

    def __call__(self, x: Exchange) -> Any:
        return self._run(x)
