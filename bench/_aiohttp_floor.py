"""The aiohttp floor: the cheapest answer aiohttp can give, one fixed body and headers.

Usage: python bench/_aiohttp_floor.py PORT ANSWER_JSON

ANSWER_JSON holds `{"headers": [[name, value], ...], "body": "<base64>"}` (bench/cache.py
writes the edge's cached identity answer there), and optionally `"etag": "<ETag>"` with
`"not_modified_headers": [[name, value], ...]` (the edge's 304 for that ETag). Every request,
whatever its method or path, gets that body with those headers, except, when the file has an
"etag", one whose If-None-Match is exactly that ETag (a plain string comparison, no list or
weak matching), which gets a 304 with the not_modified_headers and no body. aiohttp adds
Content-Length (not on the 304), Date and Server itself.

Served like the edge (edge/cli.py): a low-level `web.Server` (no router, no middlewares),
access log off, uvloop when installed, the same listen backlog and the same GC settings, so
what remains is aiohttp's HTTP parsing, response writing and the socket I/O. aiohttp can't
send one `web.Response` twice (it remembers it was sent), so each request gets a new one
built from the prebuilt body and headers: the least work an aiohttp handler can do. Without
an "etag" the handler doesn't look at the request at all; with one, it looks up one header.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from _common import run_helper, serve_until_stopped
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

Handler = Callable[[web.BaseRequest], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    headers: CIMultiDictProxy[str]
    etag: str | None = None  # with it, not_modified: the 304's headers
    not_modified: CIMultiDictProxy[str] | None = None


def _headers(pairs: list[list[str]]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def load(path: Path) -> Answer:
    spec = json.loads(path.read_text())
    body, headers = base64.b64decode(spec["body"]), _headers(spec["headers"])
    if spec.get("etag") is None:
        return Answer(body, headers)
    return Answer(body, headers, spec["etag"], _headers(spec.get("not_modified_headers", [])))


def handler(answer: Answer) -> Handler:
    """The request handler: the cheapest one for what `answer` holds."""
    body, headers, etag, not_modified = (answer.body, answer.headers, answer.etag,
                                         answer.not_modified)
    if etag is None:
        async def handle(_request: web.BaseRequest) -> web.Response:
            return web.Response(body=body, headers=headers)
        return handle

    async def handle_conditional(request: web.BaseRequest) -> web.Response:
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=not_modified)
        return web.Response(body=body, headers=headers)
    return handle_conditional


async def serve(port: int, answer: Answer) -> None:
    await serve_until_stopped(
        web.ServerRunner(web.Server(handler(answer), access_log=None), handle_signals=False),
        port)


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    run_helper(serve(port, load(path)))


if __name__ == "__main__":
    main()
