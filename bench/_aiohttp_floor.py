"""The aiohttp floor: the cheapest answer aiohttp can give, one fixed body and headers.

Usage: python bench/_aiohttp_floor.py PORT ANSWER_JSON

ANSWER_JSON holds `{"headers": [[name, value], ...], "body": "<base64>"}` (bench/cache.py
writes the edge's cached identity answer there). Every request, whatever its method or path,
gets that body with those headers; aiohttp adds Content-Length, Date and Server itself.

Served like the edge (edge/cli.py): a low-level `web.Server` (no router, no middlewares),
access log off, uvloop when installed, the same listen backlog and the same GC settings, so
what remains is aiohttp's HTTP parsing, response writing and the socket I/O. aiohttp can't
send one `web.Response` twice (it remembers it was sent), so each request gets a new one
built from the prebuilt body and headers: the least work an aiohttp handler can do.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from _common import run_helper, serve_until_stopped
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy


def load(path: Path) -> tuple[bytes, CIMultiDictProxy[str]]:
    spec = json.loads(path.read_text())
    return base64.b64decode(spec["body"]), CIMultiDictProxy(CIMultiDict(spec["headers"]))


async def serve(port: int, body: bytes, headers: CIMultiDictProxy[str]) -> None:
    async def handle(_request: web.BaseRequest) -> web.Response:
        return web.Response(body=body, headers=headers)

    await serve_until_stopped(
        web.ServerRunner(web.Server(handle, access_log=None), handle_signals=False), port)


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    body, headers = load(path)
    run_helper(serve(port, body, headers))


if __name__ == "__main__":
    main()
