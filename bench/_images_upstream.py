"""Image benchmark upstream: GET /photos/{name} answers the same JPEG for every name.

Usage: python bench/_images_upstream.py PORT FILE

Every answer carries validators, as a real image store's do: a strong ETag made from the
name and the image's bytes (so each name is its own image to every cache) and a
Last-Modified (the file's mtime). A GET whose If-None-Match holds that ETag (or, without
If-None-Match, whose If-Modified-Since is not before Last-Modified) gets a 304 with no
body; anything else the whole JPEG, 200. No compression.

GET /count answers JSON: {"200": full answers, "304": not-modified answers} since start, so
the bench can check what every answer it counted cost the upstream; GET /count?prefix=P also
has "names": {name: [200s, 304s]} for every name starting with P that was asked for.
"""

from __future__ import annotations

import hashlib
import json
import sys
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from _common import new_loop
from aiohttp import web


def etag_for(name: str, digest: bytes) -> str:
    return '"' + hashlib.sha256(name.encode() + b"\0" + digest).hexdigest()[:32] + '"'


def matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: the weak comparison (a W/ prefix ignored), or `*`."""
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def unmodified_since(if_modified_since: str, mtime: int) -> bool:
    try:
        return mtime <= parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    body = path.read_bytes()
    digest = hashlib.sha256(body).digest()
    mtime = int(path.stat().st_mtime)
    last_modified = formatdate(mtime, usegmt=True)
    counts = {"200": 0, "304": 0}
    by_name: dict[str, list[int]] = {}

    async def photo(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        etag = etag_for(name, digest)
        headers = {"ETag": etag, "Last-Modified": last_modified}
        inm, ims = request.headers.get("If-None-Match"), request.headers.get(
            "If-Modified-Since")
        fresh = matches(inm, etag) if inm is not None else (
            ims is not None and unmodified_since(ims, mtime))
        seen = by_name.setdefault(name, [0, 0])
        if fresh:
            counts["304"] += 1
            seen[1] += 1
            return web.Response(status=304, headers=headers)
        counts["200"] += 1
        seen[0] += 1
        return web.Response(body=body, content_type="image/jpeg", headers=headers)

    async def count(request: web.Request) -> web.Response:
        out: dict[str, object] = dict(counts)
        prefix = request.query.get("prefix")
        if prefix:
            out["names"] = {n: c for n, c in by_name.items() if n.startswith(prefix)}
        return web.Response(text=json.dumps(out), content_type="application/json")

    app = web.Application()
    app.router.add_get("/photos/{name}", photo)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                loop=new_loop())


if __name__ == "__main__":
    main()
