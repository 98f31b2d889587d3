"""The chaos service: deliberately slow, flaky, broken and huge endpoints, plus /echo,
for trying the proxy's timeouts, retries, breakers and streaming."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from dataclasses import dataclass

import orjson
from aiohttp import web

from edge.demo.clock import utc_now
from edge.demo.common import fail, int_param, json_response, make_app

MAX_SLOW_SECONDS = 30.0
MAX_BIG_MB = 2048
CHUNK_SIZE = 64 * 1024
MIB = 1024 * 1024
#: Bodies up to this size are echoed back as text; larger ones only by length and digest.
ECHO_BODY_LIMIT = 64 * 1024
_BLOCK = random.Random(20260314).randbytes(CHUNK_SIZE)
_MALFORMED = b'{"id": "CLM-000001", "status": "approved", "items": [{"benefit_code": "CONS-GP", "am'


@dataclass
class _Counters:
    flaky_calls: int = 0


COUNTERS = web.AppKey("chaos_counters", _Counters)


async def slow(request: web.Request) -> web.Response:
    """Sleep ``seconds`` (default 3, at most 30), then answer."""
    raw = request.query.get("seconds", "3")
    try:
        seconds = float(raw)
    except ValueError:
        fail(422, "seconds must be a number", value=raw)
    if not 0 <= seconds < float("inf"):
        fail(422, "seconds must not be negative", value=raw)
    seconds = min(seconds, MAX_SLOW_SECONDS)
    await asyncio.sleep(seconds)
    return json_response({"status": "ok", "slept_seconds": seconds})


async def flaky(request: web.Request) -> web.Response:
    """Fail with 500 on odd-numbered calls (1st, 3rd, ...) and succeed on even ones."""
    counters = request.app[COUNTERS]
    counters.flaky_calls += 1
    attempt = counters.flaky_calls
    if attempt % 2:
        return json_response({"error": "flaky upstream failure", "attempt": attempt}, status=500)
    return json_response({"status": "ok", "attempt": attempt})


async def malformed(request: web.Request) -> web.Response:
    """200 with a JSON content type and a truncated JSON body."""
    return web.Response(body=_MALFORMED, content_type="application/json")


async def drop(request: web.Request) -> web.StreamResponse:
    """Send headers and the start of a chunked body, then close the connection."""
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b'{"items": [{"id": "CLM-000001", "status": "paid"}, {"id": "CLM-0')
    if request.transport is not None:
        # close() flushes what was written, then ends the connection without the final
        # zero-length chunk; aiohttp then fails write_eof() quietly (ConnectionError).
        request.transport.close()
    return response


async def big(request: web.Request) -> web.StreamResponse:
    """``mb`` MiB (default 1, at most 2048) of bytes in 64 KiB chunks, with Content-Length."""
    mb = int_param(request, "mb", 1, minimum=0, maximum=MAX_BIG_MB)
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    response.content_length = mb * MIB
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away: just stop
        for _ in range(mb * MIB // CHUNK_SIZE):
            await response.write(_BLOCK)
    return response


async def drip(request: web.Request) -> web.StreamResponse:
    """``chunks`` NDJSON lines (default 5), one per chunk, ``interval`` ms apart (default 100)."""
    chunks = int_param(request, "chunks", 5, minimum=1, maximum=10_000)
    interval = int_param(request, "interval", 100, minimum=0, maximum=60_000) / 1000
    response = web.StreamResponse()
    response.content_type = "application/x-ndjson"
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        for seq in range(chunks):
            if seq:
                await asyncio.sleep(interval)
            line = {"seq": seq, "of": chunks, "at": utc_now()}
            await response.write(orjson.dumps(line) + b"\n")
    return response


async def echo(request: web.Request) -> web.Response:
    """What arrived: method, path, query, headers, and the body's length and SHA-256.

    The body is read in chunks, so uploads of any size work; it is echoed as text only
    when it is small and UTF-8.
    """
    digest, length, head = hashlib.sha256(), 0, bytearray()
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        digest.update(chunk)
        length += len(chunk)
        if len(head) <= ECHO_BODY_LIMIT:
            head += chunk[: ECHO_BODY_LIMIT + 1 - len(head)]
    text = None
    if len(head) <= ECHO_BODY_LIMIT:
        try:
            text = head.decode()
        except UnicodeDecodeError:
            text = None
    headers: dict[str, str] = {}
    header_list = [[str(name), value] for name, value in request.headers.items()]
    for name, value in header_list:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return json_response(
        {
            "method": request.method,
            "path": request.path,
            "query_string": request.query_string,
            "query": {str(key): request.query.getall(key) for key in request.query.keys()},
            "headers": headers,
            "header_list": header_list,
            "body_length": length,
            "body_sha256": digest.hexdigest(),
            "body": text,
        }
    )


async def status(request: web.Request) -> web.Response:
    """Answer with the status code in the path (200-599) and a small JSON body."""
    code = int(request.match_info["code"])
    if not 200 <= code <= 599:
        fail(422, "status code must be between 200 and 599", value=code)
    if code in (204, 304):
        return web.Response(status=code)
    return json_response({"status": code, "at": utc_now()}, status=code)


def chaos_app() -> web.Application:
    """/slow, /flaky, /malformed, /drop, /big, /drip, /echo, /status/{code}."""
    app = make_app(
        "chaos",
        [
            web.get("/slow", slow),
            web.get("/flaky", flaky),
            web.get("/malformed", malformed),
            web.get("/drop", drop),
            web.get("/big", big),
            web.get("/drip", drip),
            web.route("*", "/echo", echo),
            web.route("*", "/echo/{tail:.*}", echo),
            web.route("*", r"/status/{code:\d+}", status),
        ],
    )
    app[COUNTERS] = _Counters()
    return app
