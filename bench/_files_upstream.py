"""Benchmark origin for cached pass-through: GET /files/{name} answers a fixed binary file.

Usage: python bench/_files_upstream.py PORT

The files (FILES: name → size) are random bytes from a fixed seed, so incompressible and the
same in every process that imports this module. Each answer is application/octet-stream with
`Cache-Control: public, max-age=600`, a strong ETag and Last-Modified, so a shared cache may
keep it for 10 minutes and revalidate it. Served like bench/_upstream.py (aiohttp, uvloop when
installed, access log off); HEAD is answered by aiohttp's GET handler.
"""

from __future__ import annotations

import hashlib
import random
import sys

from _common import new_loop
from aiohttp import web

FILES = {"10k": 10_000, "1m": 1_000_000}  # "1 MB": under the edge's default max_entry (1 MiB)
SEED = 20240514
CACHE_CONTROL = "public, max-age=600"
LAST_MODIFIED = "Tue, 14 May 2024 09:21:07 GMT"


def file_bytes(name: str) -> bytes:
    """The file `name`'s bytes: the same in every process (a seeded generator per file)."""
    return random.Random(f"{SEED}:{name}").randbytes(FILES[name])


def file_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/octet-stream", "Cache-Control": CACHE_CONTROL,
            "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
            "Last-Modified": LAST_MODIFIED}


def main() -> None:
    port = int(sys.argv[1])
    answers = {name: (body, file_headers(body)) for name in FILES
               for body in (file_bytes(name),)}

    async def get_file(request: web.Request) -> web.Response:
        got = answers.get(request.match_info["name"])
        if got is None:
            raise web.HTTPNotFound()
        body, headers = got
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/files/{name}", get_file)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                loop=new_loop())


if __name__ == "__main__":
    main()
