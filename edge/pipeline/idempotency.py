"""Idempotency: an unsafe request with an Idempotency-Key (policies/idempotency.py) reaches
the upstream at most once; a retry gets the first answer back, replayed. It wraps Source:
the request body is read first (the key's fingerprint covers it), and what comes up is the
upstream's answer read into memory, stored, then shaped or relayed like any other."""

from __future__ import annotations

from typing import Any

from ..config import UNSAFE_METHODS
from ..context import Exchange
from ..errors import Problem
from ..policies.idempotency import HEADER, caller, fingerprint, parse_key
from ..wire import BufferedReply, Reply, buffer_reply, read_request_body
from .calls import expect
from .stage import Inner, Layer, Up


class Idempotency(Layer):
    name = "idempotency"

    @staticmethod
    def applies(route: Any) -> bool:
        return (route.spec.method in UNSAFE_METHODS and route.batch is None
                and route.aggregate is None)

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        if x.route.idempotency is None:
            return None
        return {"key": x.request.headers.get(HEADER), "replayed": x.replayed}

    async def __call__(self, x: Exchange, inner: Inner) -> Up:
        route, request = x.route, x.request
        if request.method not in UNSAFE_METHODS:
            return await inner(x)
        policy = route.idempotency
        raw_key = request.headers.get(HEADER)
        if policy is None:
            if getattr(request, "offline", False):
                raise Problem("not-idempotent", f"{route.name} has no `idempotency`, so "
                              "a replayed offline operation could write twice")
            return await inner(x)
        if raw_key is None:
            if policy.required:
                raise Problem("idempotency-key-missing",
                              f"{route.name} needs an Idempotency-Key header")
            return await inner(x)
        key = parse_key(raw_key)
        await expect(request)
        body = await read_request_body(request, route.max_body, x.bytes_in,
                                       decode=route.decode)
        if route.body_rules is not None:
            body = route.body_rules.apply(body, x)
        x.body = body

        async def call() -> BufferedReply:
            resp: Reply = await inner(x)  # type: ignore[assignment]  # Source's Reply
            return await buffer_reply(resp, policy.max_response)

        reply, replayed = await policy.run(
            self.state.backend, caller(x.identity, x.client_ip), key,
            fingerprint(request.method, request.raw_path, body), call)
        if replayed:
            x.replayed = True
            x.response_headers = {**(x.response_headers or {}), "Idempotent-Replayed": "true"}
        return reply
