"""Batch requests and the offline queue: many requests in one round trip.

Each item becomes a `SubRequest` — shaped like the aiohttp request the pipeline reads —
and runs through its own route exactly as if it had arrived alone (auth with the batch's
credentials, rate limits, shaping, idempotency), except that its response is read whole
(bounded) instead of streamed. One item failing never fails the batch.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from .config import BatchPolicy, OfflineQueuePolicy
from .encoding import DecodeError, TooLarge, decode
from .errors import Problem
from .headers import canonical, is_token, one_line
from .policies.idempotency import HEADER as IDEMPOTENCY_KEY
from .routing import METHODS
from .shapers.pointer import lookup
from .wire import HOP_BY_HOP, REQUEST_DROP

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Headers of the batch request that are about the batch itself, not its items.
_NOT_INHERITED = HOP_BY_HOP | {
    "content-type", "content-length", "content-encoding", "expect", "accept",
    "accept-encoding", "idempotency-key", "if-match", "if-none-match", "if-modified-since",
    "if-unmodified-since", "if-range", "range", "x-request-id",
}
# Headers an item may not set, as canonical names: the batch's credentials and framing are
# the items' too, and the edge sets the rest itself on the way up.
_ITEM_FORBIDDEN = frozenset(canonical(n) for n in REQUEST_DROP | {
    "authorization", "cookie", "content-encoding", "accept-encoding"})
# An item's own headers become request lines: bounded like a sane client's.
MAX_ITEM_HEADERS = 32
MAX_NAME = 128
MAX_VALUE = 4096
# Left out of an item's answer: framing that the batch's own response replaces.
_ANSWER_DROP = HOP_BY_HOP | {"content-length", "content-encoding", "vary", "date", "server"}
ORDERS = ("auto", "parallel", "sequential")


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), n):
            yield self.body[i:i + n]


class SubRequest:
    """One item of a batch, with what the pipeline reads from an aiohttp request."""

    def __init__(self, method: str, raw_path: str, headers: CIMultiDict[str], body: bytes,
                 remote: str | None, scheme: str, *, offline: bool = False) -> None:
        self.method = method
        self.raw_path = raw_path
        self._url = URL(raw_path, encoded=True)
        self.path = self._url.path
        self.headers = CIMultiDictProxy(headers)
        self.remote, self.scheme = remote, scheme
        self.content_length: int | None = len(body)
        self.body_exists = bool(body)
        self.content = _Body(body)
        self.offline = offline  # unsafe methods must land on an idempotent route

    @property
    def query(self) -> MultiDictProxy[str]:
        return self._url.query

    @property
    def cookies(self) -> dict[str, str]:
        raw = self.headers.get("Cookie")
        if not raw:
            return {}
        try:
            return {k: m.value for k, m in SimpleCookie(raw).items()}
        except CookieError:
            return {}


Run = Callable[[SubRequest, str], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Item:
    """A parsed batch item: a request to run, or the problem that keeps it from running."""

    id: Any
    request: SubRequest | None
    problem: Problem | None = None


def _inherited(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in _NOT_INHERITED:
            out.add(name, value)
    return out


def _owned(identity: Iterable[str] | None) -> frozenset[str] | None:
    return None if identity is None else frozenset(canonical(n) for n in identity)


def _check_header(name: str, value: Any, refused: frozenset[str], underscores: bool) -> None:
    """Raises Problem('bad-request') unless an item may send this header as it is."""
    if len(name) > MAX_NAME:
        raise Problem("bad-request", f"header name {name[:32]!r}... is longer than {MAX_NAME} "
                      "characters")
    if canonical(name) in refused:
        raise Problem("bad-request", f"header {name!r} is set by the edge or comes from the "
                      "batch request itself; an item can't set it")
    if not underscores and "_" in name:
        raise Problem("bad-request", f"header {name!r}: upstreams may read '_' as '-', so it "
                      "could stand for a header the edge sets; use '-'")
    if not is_token(name):
        raise Problem("bad-request", f"{name!r} is not a valid header name (letters, digits "
                      "and !#$%&'*+-.^_`|~ only)")
    if not isinstance(value, str) or not one_line(value):
        raise Problem("bad-request", f"header {name!r} must be a one-line string without "
                      "control characters")
    if len(value) > MAX_VALUE:
        raise Problem("bad-request", f"header {name!r} is longer than {MAX_VALUE} characters")


def _item_request(raw: Any, base: CIMultiDictProxy[str], remote: str | None, scheme: str,
                  *, offline: bool, owned: frozenset[str] | None,
                  extra: dict[str, str] | None = None) -> SubRequest:
    """Build one sub-request from its JSON; raises Problem('bad-request') for that item.

    `owned` are the identity headers' canonical names; None when unknown, and then no name
    with '_' is taken, since it might stand for one of them."""
    method = raw.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise Problem("bad-request", f"method must be one of {', '.join(METHODS)}")
    method = method.upper()
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise Problem("bad-request", "path must be a string starting with '/'")
    if any(c in path for c in " \r\n\t#"):
        raise Problem("bad-request", "path must be percent-encoded (no spaces, no '#')")
    headers = _inherited(base)
    item_headers = raw.get("headers") or {}
    if not isinstance(item_headers, dict):
        raise Problem("bad-request", "headers must be an object of strings")
    if len(item_headers) > MAX_ITEM_HEADERS:
        raise Problem("bad-request", f"at most {MAX_ITEM_HEADERS} headers per item, got "
                      f"{len(item_headers)}")
    # what the edge adds for this item (an offline operation's key and stamp) is its own too
    refused = _ITEM_FORBIDDEN | (owned or set()) | {canonical(n) for n in extra or ()}
    for name, value in item_headers.items():
        _check_header(name, value, refused, underscores=owned is not None)
        headers[name] = value
    headers.update(extra or {})
    headers.setdefault("Accept", "application/json")
    headers["Accept-Encoding"] = "identity"
    body = b""
    if "body" in raw and raw["body"] is not None:
        value = raw["body"]
        ctype = headers.get("Content-Type", "application/json").lower()
        if isinstance(value, str) and "json" not in ctype:
            body = value.encode()
        else:
            body = orjson.dumps(value)
            headers.setdefault("Content-Type", "application/json")
    return SubRequest(method, path, headers, body, remote, scheme, offline=offline)


def _answer_body(resp: web.Response) -> tuple[Any, bool]:
    """The item's body as JSON (value, False), or as base64 text (str, True)."""
    raw = resp.body
    if not raw:
        return None, False
    assert isinstance(raw, bytes)
    ce = resp.headers.get("Content-Encoding")
    if ce:
        try:
            raw = decode(raw, ce, max_size=max(len(raw) * 64, 1 << 20))
        except (DecodeError, TooLarge):
            return base64.b64encode(raw).decode(), True
    ctype = (resp.content_type or "").lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            return orjson.loads(raw), False
        except orjson.JSONDecodeError:
            pass
    if ctype.startswith("text/") or ctype.endswith("json") or ctype.endswith("xml"):
        try:
            return raw.decode(), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode(), True


def answer(resp: web.StreamResponse) -> dict[str, Any]:
    """A sub-request's response as `{status, headers, body}`."""
    headers: dict[str, str] = {}
    for key, value in resp.headers.items():
        name = str(key)  # multidict's istr is a str subclass, which orjson refuses as a key
        if name.lower() in _ANSWER_DROP:
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    out: dict[str, Any] = {"status": resp.status, "headers": headers}
    if isinstance(resp, web.Response):
        out["body"], b64 = _answer_body(resp)
        if b64:
            out["body_encoding"] = "base64"
    else:  # never for a batch item: they are buffered
        out["body"] = None
    return out


def _problem_answer(p: Problem, type_base: str, rid: str) -> dict[str, Any]:
    body = {"type": type_base + p.kind, "title": p.title, "status": p.status,
            "detail": p.detail, "request_id": rid}
    return {"status": p.status, "headers": {"Content-Type": "application/problem+json"},
            "body": body}


def _parse(raw: bytes, list_key: str, limit: int, noun: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Problem("bad-request", f"the body is not JSON: {e}") from None
    options: dict[str, Any] = {}
    if isinstance(doc, dict):
        options = doc
        doc = doc.get(list_key)
    if not isinstance(doc, list):
        raise Problem("bad-request", f"expected a JSON list of {noun} (or "
                      f"{{\"{list_key}\": [...]}})")
    if len(doc) > limit:
        raise Problem("payload-too-large", f"at most {limit} {noun} at once, got {len(doc)}")
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise Problem("bad-request", f"{noun}[{i}] must be an object")
    return doc, options


async def _run_one(run: Run, item: Item, rid: str, deadline: float,
                   type_base: str) -> dict[str, Any]:
    if item.problem is not None or item.request is None:
        assert item.problem is not None
        return _problem_answer(item.problem, type_base, rid)
    left = deadline - time.monotonic()
    if left <= 0:
        return _problem_answer(Problem("upstream-timeout", "the batch ran out of time before "
                                       "this item could run"), type_base, rid)
    try:
        resp = await asyncio.wait_for(run(item.request, rid), left)
    except TimeoutError:
        return _problem_answer(Problem("upstream-timeout", "the batch ran out of time while "
                                       "this item ran"), type_base, rid)
    return answer(resp)


class BatchRunner:
    """A `batch` route, compiled. `identity`: auth.identity_headers' names (see _item_request)."""

    def __init__(self, cfg: BatchPolicy, type_base: str,
                 identity: Iterable[str] | None = None) -> None:
        self.cfg = cfg
        self.type_base = type_base
        self.owned = _owned(identity)

    async def run(self, raw: bytes, headers: CIMultiDictProxy[str], remote: str | None,
                  scheme: str, rid: str, run: Run) -> list[dict[str, Any]]:
        docs, options = _parse(raw, "requests", self.cfg.max_items, "requests")
        order = options.get("order", "auto")
        if order not in ORDERS:
            raise Problem("bad-request", f"order must be one of {', '.join(ORDERS)}")
        items: list[Item] = []
        seen: set[Any] = set()
        for i, doc in enumerate(docs):
            item_id = doc.get("id", i)
            if not isinstance(item_id, str | int) or isinstance(item_id, bool):
                raise Problem("bad-request", f"requests[{i}].id must be a string or a number")
            if item_id in seen:
                raise Problem("bad-request", f"requests[{i}].id {item_id!r} is used twice")
            seen.add(item_id)
            try:
                items.append(Item(item_id, _item_request(doc, headers, remote, scheme,
                                                         offline=False, owned=self.owned)))
            except Problem as p:
                items.append(Item(item_id, None, p))
        deadline = time.monotonic() + self.cfg.timeout
        results: list[dict[str, Any] | None] = [None] * len(items)
        gate = asyncio.Semaphore(self.cfg.concurrency)

        async def one(i: int) -> None:
            async with gate:
                results[i] = await _run_one(run, items[i], f"{rid}.{i + 1}", deadline,
                                            self.type_base)

        async def in_order(indexes: Sequence[int]) -> None:
            for i in indexes:
                await one(i)

        def safe(i: int) -> bool:
            req = items[i].request
            return req is None or req.method in SAFE_METHODS

        everything = range(len(items))
        async with asyncio.TaskGroup() as tg:
            if order == "sequential":
                tg.create_task(in_order(everything))
            else:
                for i in everything:
                    if order == "parallel" or safe(i):
                        tg.create_task(one(i))
                if order == "auto":
                    tg.create_task(in_order([i for i in everything if not safe(i)]))
        return [{"id": items[i].id, **r} for i, r in enumerate(results) if r is not None]


class OfflineQueue:
    """An `offline_queue` route, compiled. `identity` as for BatchRunner."""

    def __init__(self, cfg: OfflineQueuePolicy, type_base: str,
                 identity: Iterable[str] | None = None) -> None:
        self.cfg = cfg
        self.type_base = type_base
        self.owned = _owned(identity)
        self.server_id = tuple(cfg.server_id.split("."))

    async def run(self, raw: bytes, headers: CIMultiDictProxy[str], remote: str | None,
                  scheme: str, rid: str, run: Run) -> dict[str, Any]:
        docs, options = _parse(raw, "operations", self.cfg.max_operations, "operations")
        on_error = options.get("on_error", "continue")
        if on_error not in ("continue", "stop"):
            raise Problem("bad-request", "on_error must be 'continue' or 'stop'")
        deadline = time.monotonic() + self.cfg.timeout
        results: list[dict[str, Any]] = []
        failed = False
        for i, doc in enumerate(docs):
            local_id = doc.get("local_id")
            if isinstance(local_id, int) and not isinstance(local_id, bool):
                local_id = str(local_id)
            if not isinstance(local_id, str) or not local_id:
                raise Problem("bad-request", f"operations[{i}].local_id must be a non-empty "
                              "string")
            if failed and on_error == "stop":
                results.append({"local_id": local_id, "status": 424, "error": {
                    "title": "Skipped", "detail": "an earlier operation failed"}})
                continue
            extra = {IDEMPOTENCY_KEY: local_id}
            stamp = doc.get("timestamp")
            if isinstance(stamp, str | int | float) and not isinstance(stamp, bool):
                extra["X-Edge-Queued-At"] = str(stamp)[:64]
            op_rid = f"{rid}.{i + 1}"
            try:
                item = Item(local_id, _item_request(doc, headers, remote, scheme, offline=True,
                                                    owned=self.owned, extra=extra))
            except Problem as p:
                item = Item(local_id, None, p)
            result = self._result(local_id, await _run_one(run, item, op_rid, deadline,
                                                           self.type_base))
            failed = failed or result["status"] >= 400
            results.append(result)
        return {"results": results}

    def _result(self, local_id: str, ans: dict[str, Any]) -> dict[str, Any]:
        status, body, headers = ans["status"], ans.get("body"), ans["headers"]
        out: dict[str, Any] = {"local_id": local_id, "status": status}
        if headers.get("Idempotent-Replayed") == "true":
            out["replayed"] = True
        if status < 400:
            sid = lookup(body, self.server_id)
            if sid is None and "Location" in headers:
                sid = headers["Location"].rstrip("/").rpartition("/")[2] or None
            if isinstance(sid, str | int) and not isinstance(sid, bool):
                out["server_id"] = sid
            return out
        if isinstance(body, dict) and ("title" in body or "detail" in body):
            out["error"] = {k: body[k] for k in ("type", "title", "detail") if k in body}
        else:
            out["error"] = {"title": _phrase(status)}
            if body is not None:
                out["error"]["body"] = body  # the upstream's own words
        return out


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
