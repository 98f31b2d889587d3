"""RFC 9457 problem details: one exception type, one stable `type` per kind of error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

PROBLEM_JSON = "application/problem+json"

# kind → (status, title). The kind is the stable tail of the problem `type` URI.
KINDS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "bad-path": (400, "Path not allowed"),
    "bad-fields": (400, "Invalid fields selection"),
    "unauthorized": (401, "Authentication required"),
    "invalid-token": (401, "Invalid token"),
    "forbidden": (403, "Forbidden"),
    "not-found": (404, "No route matches this path"),
    "resource-not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "not-acceptable": (406, "No acceptable representation"),
    "idempotency-key-missing": (400, "Idempotency-Key required"),
    "idempotency-conflict": (409, "A request with this Idempotency-Key is in progress"),
    "payload-too-large": (413, "Request body too large"),
    "unsupported-image": (415, "Unsupported image format"),
    "unsupported-media-type": (415, "Unsupported request body encoding"),
    "uri-too-long": (414, "Request path too long"),
    "request-timeout": (408, "Request head not received in time"),
    "header-too-large": (431, "Request header too large"),
    "too-many-connections": (503, "Too many connections from this address"),
    "idempotency-key-reused": (422, "Idempotency-Key reused for a different request"),
    "bad-image": (422, "Image can't be processed"),
    "rate-limited": (429, "Too many requests"),
    "too-many-streams": (429, "Too many event streams"),
    "too-many-sockets": (429, "Too many WebSockets"),
    "upgrade-required": (426, "WebSocket upgrade required"),
    "not-idempotent": (422, "Route does not take idempotent replays"),
    "upstream-unreachable": (502, "Upstream service unreachable"),
    "upstream-bad-response": (502, "Upstream service sent a bad response"),
    "response-too-large": (502, "Response too large to embed"),
    "circuit-open": (503, "Upstream service temporarily unavailable"),
    "backend-unavailable": (503, "Shared state temporarily unavailable"),
    "service-unavailable": (503, "Temporarily unavailable"),
    "upstream-timeout": (504, "Upstream service timed out"),
    "not-cached": (504, "Not in the cache"),
    "internal": (500, "Internal error"),
}


class Problem(Exception):
    """Raise anywhere in a request; the edge answers it as problem+json."""

    def __init__(self, kind: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None, **extra: object) -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.status, self.title = KINDS[kind]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class PolicyError(ValueError):
    """A policy block that can't be compiled: found at load time, never per request.

    `path` leads from the block to the bad node (`("fields", "phone")`); with `key` the
    problem is the mapping key there rather than its value. The message begins with its
    place in the block, so the loader prints it after the block's name: `shape.` +
    `fields: 'toaster' is not ...`.
    """

    def __init__(self, path: tuple[str | int, ...], message: str, *, key: bool = False
                 ) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.key = key


def raise_all(errors: Sequence[PolicyError]) -> None:
    """Raise every problem found in a block at once, so `edge check` can report them all:
    one as itself, several as an ExceptionGroup (catch both with `except* PolicyError`)."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup(f"{len(errors)} policy errors", list(errors))


def policy_errors(group: BaseExceptionGroup[PolicyError]) -> list[PolicyError]:
    """What `except* PolicyError` caught, flattened."""
    out: list[PolicyError] = []
    for e in group.exceptions:
        out.extend(policy_errors(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def problem_response(problem: Problem, *, type_base: str, request_id: str,
                     instance: str | None = None,
                     wrap: Callable[[dict[str, Any]], Any] | None = None) -> web.Response:
    body: dict[str, Any] = {
        "type": type_base + problem.kind,
        "title": problem.title,
        "status": problem.status,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    body["request_id"] = request_id
    body.update(problem.extra)
    # An app that asked for the envelope reads `error` from it: plain JSON, same status.
    resp = web.Response(body=orjson.dumps(wrap(body) if wrap else body), status=problem.status,
                        content_type="application/json" if wrap else PROBLEM_JSON,
                        headers=problem.headers)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def os_reason(e: OSError) -> str:
    """An OS error as a person reads it: `address already in use`."""
    reason = e.strerror or str(e)
    if "address already in use" in str(e).lower():
        reason = "address already in use"
    return reason[:1].lower() + reason[1:]
