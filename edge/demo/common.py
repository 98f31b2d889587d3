"""What every demo service shares: JSON responses and errors, paging, validators,
the latency knob, /healthz, and the app factory that wires them together."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn

import orjson
from aiohttp import web

from edge.demo.data import Json, get_dataset

_log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LATENCY_ENV = "EDGE_DEMO_LATENCY_MS"
SERVICE_NAME = web.AppKey("service_name", str)
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` serialized with orjson as ``application/json``."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    """Stop the handler with ``{"error": message, ...}`` and ``status``."""
    body = orjson.dumps({"error": message, **extra}).decode()
    exc = web.HTTPException(text=body, content_type="application/json")
    exc.set_status(status)
    raise exc


def int_param(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """Query parameter ``name`` as an int in ``[minimum, maximum]`` (422 when not an int)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(422, f"{name} must be an integer", value=raw)
    if value < minimum:
        fail(422, f"{name} must be at least {minimum}", value=raw)
    return value if maximum is None else min(value, maximum)


def paginate(request: web.Request, items: Sequence[Json]) -> Json:
    """The ``page``/``size`` slice of ``items`` with paging fields (size capped at 100)."""
    page = int_param(request, "page", 1, minimum=1)
    size = int_param(request, "size", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    start = (page - 1) * size
    return {
        "items": list(items[start : start + size]),
        "page": page,
        "size": size,
        "total": len(items),
        "has_more": start + size < len(items),
    }


def not_modified(request: web.Request, etag: str, last_modified: datetime) -> bool:
    """Whether the request's validators still match (If-None-Match wins over If-Modified-Since)."""
    if_none_match = request.if_none_match
    if if_none_match is not None:
        return any(candidate.value in (etag, "*") for candidate in if_none_match)
    since = request.if_modified_since
    return since is not None and last_modified.replace(microsecond=0) <= since


def with_validators(
    response: web.Response, etag: str, last_modified: datetime, cache_control: str
) -> web.Response:
    """Set ETag, Last-Modified and Cache-Control on ``response``."""
    response.etag = etag
    response.last_modified = last_modified
    response.headers["Cache-Control"] = cache_control
    return response


def latency_from_env() -> float:
    """The extra per-request delay in seconds from ``EDGE_DEMO_LATENCY_MS`` (default 0)."""
    raw = os.environ.get(LATENCY_ENV, "").strip() or "0"
    try:
        millis = float(raw)
    except ValueError:
        raise ValueError(f"{LATENCY_ENV} must be a number of milliseconds, got {raw!r}") from None
    if millis < 0:
        raise ValueError(f"{LATENCY_ENV} must not be negative, got {raw!r}")
    return millis / 1000


def _latency_middleware(delay: float) -> Any:
    @web.middleware
    async def latency(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthz" and not request.path.startswith("/_"):
            await asyncio.sleep(delay)
        return await handler(request)

    return latency


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text errors (unknown route, wrong method, crash) into JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        skip = ("Content-Type", "Content-Length")
        headers = {k: v for k, v in exc.headers.items() if k not in skip}
        return json_response({"error": exc.reason.lower()}, status=exc.status, headers=headers)
    except ConnectionError:
        raise  # the client went away, possibly mid-body: nothing to answer
    except Exception:
        _log.exception("error handling %s %s", request.method, request.path)
        return json_response({"error": "internal server error"}, status=500)


async def _warm_dataset(app: web.Application) -> None:
    # Generating takes a fraction of a second of CPU: do it off the event loop.
    await asyncio.to_thread(get_dataset)


def make_app(name: str, routes: Sequence[web.RouteDef]) -> web.Application:
    """A service app: its routes plus /healthz, JSON errors and the latency knob."""
    middlewares = [_json_errors]
    delay = latency_from_env()
    if delay:
        middlewares.append(_latency_middleware(delay))
    app = web.Application(middlewares=middlewares)
    app[SERVICE_NAME] = name

    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "service": name})

    app.router.add_get("/healthz", healthz)
    app.add_routes(routes)
    app.on_startup.append(_warm_dataset)
    return app
