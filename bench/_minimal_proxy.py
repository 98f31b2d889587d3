"""The baseline: the plainest reasonable aiohttp reverse proxy (buffers each body).

Usage: python bench/_minimal_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
from _common import new_loop
from aiohttp import web
from multidict import CIMultiDict

SESSION = web.AppKey("session", aiohttp.ClientSession)
_DROP_REQUEST = frozenset({"host", "connection", "keep-alive", "transfer-encoding"})
_DROP_RESPONSE = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def build_app(upstream: str) -> web.Application:
    upstream = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), auto_decompress=False)
        yield
        await app[SESSION].close()

    async def proxy(request: web.Request) -> web.Response:
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST)
        body = await request.read() if request.body_exists else None
        async with request.app[SESSION].request(
                request.method, upstream + request.path_qs, headers=headers, data=body,
                allow_redirects=False) as r:
            payload = await r.read()
            out = CIMultiDict(
                (k, v) for k, v in r.headers.items() if k.lower() not in _DROP_RESPONSE)
            return web.Response(body=payload, status=r.status, headers=out)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    web.run_app(build_app(upstream), host="127.0.0.1", port=port, access_log=None,
                print=None, loop=new_loop())


if __name__ == "__main__":
    main()
