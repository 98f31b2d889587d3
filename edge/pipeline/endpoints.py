"""The edge's own endpoints, before any route: /health, /ready and /metrics (`admin`),
the published keymaps, cache purges and event publishing. Each answers, or is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from ..backends.tiers import ALL as ALL_TAG
from ..context import Exchange, Incoming
from ..errors import Problem
from ..headers import is_token, one_line
from ..playground import PREFIX as PLAYGROUND
from ..playground import Playground
from ..push.endpoint import push_endpoint
from ..shaping import keymap_document
from ..sse.endpoint import publish
from ..wire import read_request_body
from .limits import charge_ip
from .stage import Answer, Stage

if TYPE_CHECKING:
    from ..runtime import Runtime, State

KEYMAPS_PREFIX = "/_edge/keymaps/"
EXPLAIN_PATH = "/_edge/explain"


class Endpoints(Stage):
    name = "endpoints"

    def __init__(self, state: State, pipeline: Any) -> None:
        super().__init__(state, pipeline)
        self.metrics = state.metrics
        self.playground = Playground(state, pipeline)

    async def __call__(self, x: Exchange) -> Answer | None:
        request, rt = x.request, x.rt
        raw_path = request.raw_path
        if len(raw_path) > rt.max_path:
            raise Problem("uri-too-long", f"paths are limited to {rt.max_path} characters")
        path, _, x.raw_query = raw_path.partition("?")
        x.path = path
        method = request.method
        admin = rt.admin.get(path)
        if admin is not None and method in ("GET", "HEAD"):
            x.route_name = "admin"
            return await self._admin(admin, request, rt)
        if rt.push_paths and path.startswith(rt.push_paths):
            await charge_ip(self.state, x)
            answer = await push_endpoint(self.state, x)
            if answer is not None:
                return answer
        events = rt.events
        if events is not None and (path == events.path or path == events.publish_path):
            hub = self.state.hub
            hub.configure(events)
            if path == events.path and method == "GET":
                # a client's GET never gets here (serve takes it straight to the stream)
                raise Problem("bad-request", "an event stream can't be a batch item")
            if path == events.publish_path and method == "POST":
                x.route_name = "publish"
                await charge_ip(self.state, x)
                return await publish(request, hub, events, rt.publisher_keys,
                                     rt.events_auth, x.bytes_in, self.state.push)
            allow = "GET" if path == events.path else "POST"
            raise Problem("method-not-allowed", f"allowed: {allow}", headers={"Allow": allow})
        if path == rt.purge_path and method == "POST":
            x.route_name = "purge"
            await charge_ip(self.state, x)
            return await self._purge(request, rt, x.bytes_in)
        if path == EXPLAIN_PATH and method == "POST":
            x.route_name = "explain"
            await charge_ip(self.state, x)
            return await self._explain(x)
        if path.startswith(PLAYGROUND) and (len(path) == len(PLAYGROUND)
                                            or path[len(PLAYGROUND)] == "/"):
            if rt.config.edge.admin.playground:
                await charge_ip(self.state, x)
                return await self.playground(x)
        if path.startswith(KEYMAPS_PREFIX) and method in ("GET", "HEAD"):
            x.route_name = "keymaps"
            return self._keymap(path[len(KEYMAPS_PREFIX):], rt)
        return None

    async def _purge(self, request: Incoming, rt: Runtime,
                     bytes_in: list[int]) -> tuple[web.StreamResponse, int]:
        """POST {"tags": [...]} | {"route": "GET /x"} | {"all": true}: empty the edge cache
        of those entries, on every instance. Needs a token with the purge role."""
        staff(request, rt, "purging")
        raw = await read_request_body(request, 64 * 1024, bytes_in)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        tags: list[str] = []
        if isinstance(doc, dict) and doc.get("all") is True:
            tags = [ALL_TAG]
        elif isinstance(doc, dict) and isinstance(doc.get("route"), str):
            name = " ".join(doc["route"].split())
            if not any(r.name == name for r in rt.routes):
                raise Problem("not-found", f"no route named {name[:200]!r}")
            tags = [f"route:{name}"]
        elif isinstance(doc, dict) and isinstance(doc.get("tags"), list) and doc["tags"] and \
                all(isinstance(t, str) and 0 < len(t) <= 256 for t in doc["tags"][:1000]):
            tags = doc["tags"][:1000]
        else:
            raise Problem("bad-request", 'expected {"tags": ["member:1001", ...]}, '
                          '{"route": "GET /api/v1/x/{id}"} or {"all": true}')
        event = await self.state.cache.purge(tags)
        body = orjson.dumps({"purged": tags, "at": event["at"]})
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"}), len(body)

    async def _explain(self, x: Exchange) -> Answer:
        """POST {"method": "GET", "path": "/api/v1/...", "headers": {...}}: the pipeline's
        record of that request (what `edge explain` prints), as JSON. Staff only, and only
        for reads: the request is really served (limits charged, upstreams called)."""
        request, rt = x.request, x.rt
        staff(request, rt, "explaining")
        raw = await read_request_body(request, 64 * 1024, x.bytes_in)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("path"), str) \
                or not doc["path"].startswith("/"):
            raise Problem("bad-request", 'expected {"method": "GET", "path": "/api/v1/...", '
                          '"headers": {"Name": "value"}}')
        method = str(doc.get("method", "GET")).upper()
        if method not in ("GET", "HEAD"):
            raise Problem("bad-request", "only GET and HEAD requests are explained here: "
                          "the request is served for real")
        given = doc.get("headers") or {}
        if not isinstance(given, dict) or len(given) > 64 or not all(
                isinstance(k, str) and isinstance(v, str) and is_token(k) and one_line(v)
                for k, v in given.items()):
            raise Problem("bad-request", "headers: an object of at most 64 names and values")
        headers: CIMultiDict[str] = CIMultiDict(given)
        record = await self.pipeline.explain(method, doc["path"], headers,
                                             remote=x.client_ip)
        body = orjson.dumps(record)
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"}), len(body)

    def _keymap(self, name: str, rt: Runtime) -> tuple[web.StreamResponse, int]:
        table = rt.keymaps.get(name)
        if table is None:
            raise Problem("not-found", f"no keymap named {name[:64]!r}")
        body = orjson.dumps(keymap_document(name, table))
        # A published keymap version never changes, so it may be cached for good.
        return web.Response(body=body, content_type="application/json", headers={
            "Cache-Control": "public, max-age=31536000, immutable"}), len(body)

    async def _admin(self, kind: str, request: Incoming,
                     rt: Runtime) -> tuple[web.StreamResponse, int]:
        if kind == "health":
            body = b'{"status":"ok"}'
        elif kind == "ready":
            backend = self.state.backend
            ok = await backend.ping()
            reloader = self.state.reloader
            body = orjson.dumps({
                "status": "ready" if ok else "unavailable",
                "config_generation": rt.generation, "routes": len(rt.routes),
                "backend": {"kind": backend.name, "reachable": ok},
                "last_reload_error": reloader.last_error,
            })
            if not ok:
                return web.Response(body=body, status=503, content_type="application/json",
                                    headers={"Cache-Control": "no-store"}), len(body)
        else:
            if not rt.metrics_allow.is_trusted(request.remote):
                raise Problem("forbidden", "metrics are only served to allowed networks")
            body = self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": self.metrics.content_type,
                                                    "Cache-Control": "no-store"}), len(body)
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store"}), len(body)


def staff(request: Incoming, rt: Runtime, doing: str) -> None:
    """Only a token with the admin role (admin.purge_role) may purge or explain."""
    if rt.verifier is None:
        raise Problem("forbidden", f"{doing} needs auth.jwt in edge.yaml")
    token = rt.purge_auth.token(request.headers, request.cookies)
    if token is None:
        raise Problem("unauthorized", f"{doing} needs a bearer token",
                      headers={"WWW-Authenticate": "Bearer"})
    roles = rt.verifier.verify(token).get("roles")
    if not (roles == rt.purge_role or isinstance(roles, list) and rt.purge_role in roles):
        raise Problem("forbidden", f"{doing} needs the '{rt.purge_role}' role")
