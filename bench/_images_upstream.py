"""Image benchmark upstream: GET /photos/{name} answers the same JPEG for every name.

Usage: python bench/_images_upstream.py PORT FILE

No ETag or Last-Modified (so nothing downstream can revalidate instead of fetching), no
compression. GET /count answers how many photos were served, so the bench can check that
every answer it counted cost one fetch of the source.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import new_loop
from aiohttp import web


def main() -> None:
    port, body = int(sys.argv[1]), Path(sys.argv[2]).read_bytes()
    served = [0]

    async def photo(_request: web.Request) -> web.Response:
        served[0] += 1
        return web.Response(body=body, content_type="image/jpeg")

    async def count(_request: web.Request) -> web.Response:
        return web.Response(text=str(served[0]))

    app = web.Application()
    app.router.add_get("/photos/{name}", photo)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                loop=new_loop())


if __name__ == "__main__":
    main()
