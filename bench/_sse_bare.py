"""A bare aiohttp-sse server: the reference bench/sse.py measures the edge's streams against.

Usage: python bench/_sse_bare.py PORT

    GET  /events?…   an event stream: `retry: 3000` first (as the edge sends), then the
                     broadcasts and aiohttp-sse's `: ping` every 15 s (the edge's heartbeat)
    POST /publish    {"topic", "event", "data"}: sent to every open stream, then 202 {"id"}
    GET  /count      {"streams": open streams}
    GET  /health     200

What an aiohttp-sse tutorial writes: a `web.Application`, one handler per stream doing
`async with sse_response(request) as resp: await resp.wait()` (so a stream is aiohttp's
request handler task, the response and aiohttp-sse's ping task), and a publish handler that
loops over the open responses and awaits `resp.send(...)` on each in turn, the same
`id`/`event`/`data` lines as the edge (`data: {"topic": …, "data": …}`). No per-client
queue, no auth, no topics, no limits. Served like the edge: uvloop when installed, access
log off, the edge's listen backlog and GC settings.
"""

from __future__ import annotations

import json
import sys

from _common import run_helper, serve_until_stopped
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

STREAMS: web.AppKey[set[EventSourceResponse]] = web.AppKey("streams", set)
LAST_ID: web.AppKey[list[int]] = web.AppKey("last_id", list)


async def events(request: web.Request) -> web.StreamResponse:
    streams = request.app[STREAMS]
    async with sse_response(request) as resp:
        await resp.write(b"retry: 3000\n\n")
        streams.add(resp)
        try:
            await resp.wait()
        finally:
            streams.discard(resp)
    return resp


async def publish(request: web.Request) -> web.Response:
    doc = await request.json()
    last = request.app[LAST_ID]
    last[0] += 1
    text = json.dumps({"topic": doc["topic"], "data": doc["data"]}, separators=(",", ":"))
    for resp in list(request.app[STREAMS]):
        try:
            await resp.send(text, id=str(last[0]), event=doc.get("event", "message"))
        except (ConnectionResetError, RuntimeError, TimeoutError):
            pass
    return web.json_response({"id": last[0]}, status=202)


async def count(request: web.Request) -> web.Response:
    return web.json_response({"streams": len(request.app[STREAMS])})


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def stop_streams(app: web.Application) -> None:
    for resp in list(app[STREAMS]):
        resp.stop_streaming()


async def serve(port: int) -> None:
    app = web.Application()
    app[STREAMS] = set()
    app[LAST_ID] = [0]
    app.router.add_get("/events", events)
    app.router.add_post("/publish", publish)
    app.router.add_get("/count", count)
    app.router.add_get("/health", health)
    app.on_shutdown.append(stop_streams)
    await serve_until_stopped(
        web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0), port,
        shutdown_timeout=1.0)


def main() -> None:
    run_helper(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
