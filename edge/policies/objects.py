"""Object-level access (OWASP API1): whose object an answer or a request body is.

A path template often holds no owner (`/claims/{claim_id}`), so path-based `allow` rules
can't tell member 1001's claim from member 1002's. These rules look inside instead:
`auth.owner` at a field of the upstream's answer, `auth.body` at fields of the request's
JSON body. Both fail closed: what can't be checked is not released.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from ..config import BodyRule, OwnerRule
from ..context import Exchange
from ..encoding import DecodeError, TooLarge
from ..errors import Problem
from ..shapers.pointer import lookup
from ..shaping import parse_json
from ..wire import BufferedReply, OverCap, Reply, read_capped
from .auth import compile_rules

_MISSING = object()


def pointer_keys(pointer: str) -> tuple[str, ...]:
    """RFC 6901: `/a/b~1c` → ("a", "b/c")."""
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:])


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    return str(value)


def hidden() -> Problem:
    return Problem("resource-not-found", "no such resource")


class OwnerCheck:
    """`auth.owner`, compiled."""

    def __init__(self, cfg: OwnerRule, max_body: int, max_depth: int) -> None:
        self.keys = pointer_keys(cfg.field)
        self.claim, self.param = cfg.claim, cfg.param
        self.unless = compile_rules(cfg.unless)
        self.max_body, self.max_depth = max_body, max_depth

    def wanted(self, ctx: Exchange) -> str | None:
        """The owner value this caller may see; None when they skip the check."""
        claims = ctx.identity or {}
        if self.unless and any(r.holds(claims, ctx.params) for r in self.unless):
            return None
        value = (ctx.params.get(self.param) if self.param is not None
                 else _scalar(claims.get(self.claim or "")))
        return value if value is not None else "\0no owner"  # matches nothing

    async def release(self, resp: Reply, ctx: Exchange) -> Reply:
        """The upstream's answer if it is the caller's; Problem 404 otherwise. The answer
        comes back buffered (the edge had to read it) and `ctx.owner` is set."""
        want = self.wanted(ctx)
        if want is None:
            return resp
        status = resp.status
        if status in (403, 404):  # indistinguishable from "exists, not yours"
            resp.release()
            raise hidden()
        if not 200 <= status < 300:
            return resp
        try:
            raw = await read_capped(resp, self.max_body)
            doc = parse_json(raw, resp.headers.get("Content-Encoding"),
                             max_size=self.max_body, max_depth=self.max_depth)
        except OverCap:
            resp.release()
            raise Problem("upstream-bad-response", "the answer is too large to check whose "
                          "it is (limits.max_shaped_body)") from None
        except (aiohttp.ClientError, TimeoutError):
            raise Problem("upstream-bad-response",
                          "the upstream response was cut short") from None
        except (DecodeError, TooLarge, orjson.JSONDecodeError, RecursionError):
            raise Problem("upstream-bad-response",
                          "the answer is not JSON the edge can check") from None
        if _scalar(lookup(doc, self.keys)) != want:
            raise hidden()
        ctx.owner = want
        return BufferedReply(status, resp.headers.items(), raw)

    def check_held(self, owner: str | None, ctx: Exchange) -> None:
        """A cached answer, kept with the owner it was released to: still the caller's?"""
        want = self.wanted(ctx)
        if want is not None and owner != want:
            raise hidden()


class BodyCheck:
    """`auth.body`, compiled: every rule checked (or filled in) on the parsed body."""

    def __init__(self, rules: Sequence[BodyRule]) -> None:
        self.rules = [(pointer_keys(r.field), r.field, r.claim, r.set, compile_rules(r.unless))
                      for r in rules]

    def apply(self, raw: bytes, ctx: Exchange) -> bytes:
        """The body to send upstream: the caller's own, re-serialized (so a duplicate key
        can't mean one thing here and another upstream). Raises 400/403 problems."""
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as e:
            raise Problem("bad-request", f"the body is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise Problem("bad-request", "this route takes a JSON object body")
        claims = ctx.identity or {}
        for keys, field, claim, fill, unless in self.rules:
            if unless and any(r.holds(claims, ctx.params) for r in unless):
                continue
            want = _scalar(claims.get(claim))
            parent = lookup(doc, keys[:-1]) if len(keys) > 1 else doc
            value = parent.get(keys[-1], _MISSING) if isinstance(parent, dict) else None
            if value is _MISSING and fill and want is not None and isinstance(parent, dict):
                parent[keys[-1]] = claims[claim]
                continue
            if want is None or value is _MISSING or _scalar(value) != want:
                raise Problem("forbidden", f"{field} must be your own ({claim})")
        return orjson.dumps(doc)
