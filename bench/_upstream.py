"""Benchmark upstream: GET /items/{id} answers a fixed ~1 KB claim-like JSON body.

Usage: python bench/_upstream.py PORT
"""

from __future__ import annotations

import json
import sys

from _common import new_loop
from aiohttp import web

_CLAIM = {
    "id": "CLM-2024-000042",
    "member_id": "1001",
    "status": "in_review",
    "submitted_at": "2024-05-14T09:21:07Z",
    "updated_at": "2024-05-16T13:02:44Z",
    "currency": "EUR",
    "total": 1284.5,
    "provider": {"id": "PRV-3321", "name": "Klinik Sehat Sentosa", "city": "Jakarta"},
    "items": [
        {"code": "CONS-01", "description": "General consultation", "amount": 85.0},
        {"code": "LAB-114", "description": "Full blood count", "amount": 42.5},
        {"code": "IMG-220", "description": "Chest X-ray, two views", "amount": 157.0},
        {"code": "PHA-007", "description": "Prescription, 14 days", "amount": 1000.0},
    ],
    "history": [
        {"at": "2024-05-14T09:21:07Z", "status": "submitted", "by": "member"},
        {"at": "2024-05-15T08:00:12Z", "status": "received", "by": "system"},
        {"at": "2024-05-16T13:02:44Z", "status": "in_review", "by": "adjuster:77"},
    ],
    "documents": [
        {"id": "DOC-9001", "kind": "invoice", "pages": 2},
        {"id": "DOC-9002", "kind": "prescription", "pages": 1},
    ],
    "notes": "Awaiting the provider's itemised invoice for the pharmacy line.",
}
BODY = json.dumps(_CLAIM, separators=(",", ":")).encode()


async def item(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/items/{id}", item)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                loop=new_loop())


if __name__ == "__main__":
    main()
