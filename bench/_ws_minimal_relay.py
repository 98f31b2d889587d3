"""The baseline: the plainest reasonable aiohttp WebSocket relay.

Usage: python bench/_ws_minimal_relay.py PORT UPSTREAM_URL   (UPSTREAM_URL: ws://host:port)

Every GET but /health is a WebSocket: the handler opens the upstream's socket (the same path
and query) with `session.ws_connect` on one shared `ClientSession` (no connection limit, so
thousands of sockets can be open), upgrades the client with `web.WebSocketResponse`, and runs
two pump tasks (`async for msg in src: await dst.send_*(msg.data)`) until either side
closes, then closes both. No auth, no limits, no heartbeat, no compression (the edge's bench
route has it off too). What bench/_minimal_proxy.py is for HTTP: uvloop when installed,
access log off, aiohttp's `run_app`.
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections.abc import AsyncIterator

import aiohttp
from _common import new_loop
from aiohttp import WSMsgType, web

SESSION = web.AppKey("session", aiohttp.ClientSession)


async def pump(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
               dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for msg in src:
        if msg.type is WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        else:  # an error
            break


def build_app(upstream: str) -> web.Application:
    upstream = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    async def relay(request: web.Request) -> web.WebSocketResponse:
        async with request.app[SESSION].ws_connect(upstream + request.path_qs) as up:
            client = web.WebSocketResponse(compress=False)
            await client.prepare(request)
            tasks = [asyncio.ensure_future(pump(client, up)),
                     asyncio.ensure_future(pump(up, client))]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await client.close()
        return client

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/health", health)
    app.router.add_get("/{tail:.*}", relay)
    return app


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, upstream = int(sys.argv[1]), sys.argv[2]
    web.run_app(build_app(upstream), host="127.0.0.1", port=port, access_log=None,
                print=None, loop=new_loop(), backlog=2048, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
