"""An unsafe request with an Idempotency-Key (policies/idempotency.py): the upstream sees it
at most once; a retry gets the first answer back, replayed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp
from multidict import CIMultiDict

from ..context import Exchange
from ..policies.idempotency import IdempotencyPolicy, caller, fingerprint, parse_key
from ..representation import Answer
from ..wire import BufferedReply, buffer_reply, read_request_body, timing_header
from .calls import call_upstream, expect, invalidate, send

if TYPE_CHECKING:
    from ..runtime import State



async def idempotent(state: State, x: Exchange, path: str, headers: CIMultiDict[str],
                     policy: IdempotencyPolicy, raw_key: str) -> Answer:
    route, request = x.route, x.request
    key = parse_key(raw_key)
    await expect(request)
    body = await read_request_body(request, route.max_body, x.bytes_in, decode=route.decode)
    if route.body_rules is not None:
        body = route.body_rules.apply(body, x)
    live: list[aiohttp.ClientResponse] = []

    async def call() -> BufferedReply:
        resp = await call_upstream(x, request.method, path, headers, body or None)
        live.append(resp)
        await invalidate(state, x, resp.status)
        reply = resp if route.owner is None else await route.owner.release(resp, x)
        return await buffer_reply(reply, policy.max_response)

    t0 = time.perf_counter()
    try:
        reply, replayed = await policy.run(
            state.backend, caller(x.identity, x.client_ip), key,
            fingerprint(request.method, request.raw_path, body), call)
        upstream_time = time.perf_counter() - t0
        extra = {x.rt.rid_header: x.request_id}
        if replayed:
            x.replayed = True
            extra["Idempotent-Replayed"] = "true"
        else:
            x.timings["upstream"] = upstream_time
            extra["Server-Timing"] = timing_header(upstream_time)
        return await send(x, reply, extra)
    finally:
        for resp in live:
            resp.release()
