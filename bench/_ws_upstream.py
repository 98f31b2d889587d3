"""A WebSocket echo upstream for bench/websocket.py.

Usage: python bench/_ws_upstream.py PORT

    GET /echo     a WebSocket: every text or binary message is sent straight back; a socket
                  that says nothing is just held (the idle-connections measurement)
    GET /count    {"sockets": open WebSockets}
    GET /health   200

A plain aiohttp `WebSocketResponse` per socket, no heartbeat, no compression. Served like
the edge: uvloop when installed, access log off, the edge's listen backlog and GC settings,
the soft open-file limit raised to the hard one.
"""

from __future__ import annotations

import asyncio
import sys

from _common import run_helper, serve_until_stopped
from aiohttp import WSMsgType, web

SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets", set)
MAX_MESSAGE = 4 * 1024 * 1024


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE, autoping=True)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:  # close, error, closed
                break
    finally:
        sockets.discard(ws)
    return ws


async def count(request: web.Request) -> web.Response:
    return web.json_response({"sockets": len(request.app[SOCKETS])})


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def close_sockets(app: web.Application) -> None:
    closing = [asyncio.ensure_future(ws.close()) for ws in app[SOCKETS]]
    if closing:
        await asyncio.wait(closing, timeout=2.0)


async def serve(port: int) -> None:
    app = web.Application()
    app[SOCKETS] = set()
    app.router.add_get("/echo", echo)
    app.router.add_get("/count", count)
    app.router.add_get("/health", health)
    app.on_shutdown.append(close_sockets)
    await serve_until_stopped(
        web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0), port,
        shutdown_timeout=1.0)


def main() -> None:
    run_helper(serve(int(sys.argv[1])), nofile=True)


if __name__ == "__main__":
    main()
