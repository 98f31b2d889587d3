"""Idempotency-Key (IETF httpapi draft): an unsafe request retried with the same key gets
the first response back, and the upstream sees the request once.

Per caller (the token's subject, else the client address) and key, the backend holds
either a *pending* marker — set atomically by whoever comes first, expiring on its own if
that instance dies — or the *done* record with the response. A retry:
  - with a different method, path or body → 422, the key was reused;
  - while the first is pending → waits up to `wait` for its response, then 409;
  - after it is done → the stored response, `Idempotent-Replayed: true`.
Answers that say "try again" (5xx, 408, 425, 429, or the edge's own upstream errors) are
not stored: the marker is dropped so a retry really retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgpack

from ..backends import Backend, BackendError
from ..config import Idempotency
from ..errors import Problem
from ..wire import BufferedReply

log = logging.getLogger("edge.idempotency")
HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII
_RETRYABLE = frozenset({408, 425, 429})
_PENDING, _DONE = "pending", "done"

Call = Callable[[], Awaitable[BufferedReply]]


def parse_key(raw: str) -> str:
    """The key from the header; the draft's quoted sf-string and a bare token both work."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.match(key):
        raise Problem("bad-request", "Idempotency-Key must be 1-255 visible ASCII characters")
    return key


def caller(identity: Mapping[str, Any] | None, client_ip: str) -> str:
    """Whose keys these are: one caller can never replay another's response."""
    if identity and identity.get("sub") is not None:
        return f"sub:{identity.get('iss', '')}:{identity['sub']}"
    return f"ip:{client_ip}"


def fingerprint(method: str, target: str, body: bytes) -> str:
    h = hashlib.sha256(method.encode())
    h.update(b"\0" + target.encode() + b"\0")
    h.update(body)
    return h.hexdigest()[:32]


class IdempotencyPolicy:
    """A route's `idempotency` block, compiled."""

    def __init__(self, cfg: Idempotency, lock_ttl: float) -> None:
        self.ttl = cfg.ttl
        self.required = cfg.required
        self.wait = cfg.wait
        self.max_response = cfg.max_response
        self.lock_ttl = lock_ttl  # a pending marker outlives any request it stands for

    async def run(self, backend: Backend, who: str, key: str, print_: str,
                  call: Call) -> tuple[BufferedReply, bool]:
        """The response for this key: (reply, replayed). `call` runs at most once."""
        record_key = "idem:" + hashlib.sha256(f"{who}\0{key}".encode()).hexdigest()
        token = secrets.token_hex(8)
        pending = msgpack.packb({"s": _PENDING, "fp": print_, "t": token})
        deadline = time.monotonic() + self.wait
        delay = 0.02
        try:
            while not await backend.add(record_key, pending, self.lock_ttl):
                raw = await backend.get(record_key)
                if raw is None:
                    continue  # done with and dropped in between: try to take it
                record = msgpack.unpackb(raw)
                if record["fp"] != print_:
                    raise Problem("idempotency-key-reused", "this Idempotency-Key was used "
                                  "for a request with another method, path or body")
                if record["s"] == _DONE:
                    return BufferedReply(record["st"], record["h"], record["b"],
                                         omitted=record.get("o", False)), True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Problem("idempotency-conflict", "the first request with this "
                                  "Idempotency-Key is still in progress; retry later",
                                  headers={"Retry-After": "1"})
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 0.25)
        except BackendError:
            raise Problem("backend-unavailable", "idempotency records can't be reached; "
                          "retry later", headers={"Retry-After": "1"}) from None
        try:
            reply = await call()
        except BaseException:
            await self._drop(backend, record_key, pending)
            raise
        if reply.status >= 500 or reply.status in _RETRYABLE:
            await self._drop(backend, record_key, pending)
            return reply, False
        done = msgpack.packb({"s": _DONE, "fp": print_, "st": reply.status,
                              "h": list(reply.headers.items()),
                              "b": b"" if reply.omitted else reply.body, "o": reply.omitted})
        try:
            await backend.put(record_key, done, self.ttl)
        except BackendError as e:
            # The write happened and the client has its answer. The pending marker stays
            # until lock_ttl, so a retry meanwhile gets 409 rather than a second write.
            log.warning("idempotency record not stored (%s); retries get 409 for %.0fs",
                        e, self.lock_ttl)
        return reply, False

    @staticmethod
    async def _drop(backend: Backend, record_key: str, pending: bytes) -> None:
        try:
            await asyncio.shield(backend.delete(record_key, only_if=pending))
        except (BackendError, asyncio.CancelledError):
            pass  # the marker expires after lock_ttl
