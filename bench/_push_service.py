"""A Web Push service stand-in for bench/push.py: takes the edge's deliveries, fast.

Usage: python bench/_push_service.py PORT SEED [VERIFY_EVERY]

    POST /push/{name}   a delivery (RFC 8030): the body is read, counted, answered 201
    GET  /count         {"received", "first_at", "last_at", "bytes"} since the last reset
                        (first_at/last_at: time.monotonic() when the first/last delivery's
                        body was read; CLOCK_MONOTONIC, the same in every process on the
                        machine, so the bench compares them with its own), and the run's
                        {"total", "verified", "bad", "bad_reason"}
    POST /reset         zero the counts since the last reset
    GET  /health        200

It does not decrypt what it receives (that would make it the bottleneck), except one
delivery in VERIFY_EVERY (default 1000; 0: none), the first after each reset included: it
checks the RFC 8030/8292 headers are there and decrypts the body (RFC 8291, aes128gcm) with
the subscription's own keys, which it derives from SEED and the endpoint's name as the bench
did (`device_secrets`), and the plaintext must be the event as JSON. A failure is counted
(`bad`, the first reason kept) and still answered 201.

Served like the edge: uvloop when installed, access log off, the edge's listen backlog and
GC settings, the soft open-file limit raised to the hard one.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass

import orjson
from _common import run_helper, serve_until_stopped
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def device_secrets(seed: str, name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A device's subscription keys (the P-256 private key behind p256dh, the 16-byte auth
    secret), derived from the run's seed and the device's name: the bench registers their
    public halves, this stand-in decrypts its samples with them."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=48).digest()
    scalar = int.from_bytes(digest[:32], "big") % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1()), digest[32:]


@dataclass(slots=True)
class Counts:
    seed: str
    verify_every: int
    received: int = 0
    first_at: float | None = None
    last_at: float | None = None
    bytes: int = 0
    total: int = 0
    verified: int = 0
    bad: int = 0
    bad_reason: str | None = None

    def reset(self) -> None:
        self.received, self.first_at, self.last_at, self.bytes = 0, None, None, 0

    def fail(self, reason: str) -> None:
        self.bad += 1
        if self.bad_reason is None:
            self.bad_reason = reason[:300]


COUNTS: web.AppKey[Counts] = web.AppKey("counts", Counts)


def verify(c: Counts, name: str, headers: dict[str, str], body: bytes) -> None:
    import http_ece

    if not headers.get("Authorization", "").startswith("vapid t="):
        return c.fail(f"{name}: no VAPID Authorization header")
    if headers.get("Content-Encoding") != "aes128gcm" or "TTL" not in headers:
        return c.fail(f"{name}: Content-Encoding {headers.get('Content-Encoding')!r}, "
                      f"TTL {headers.get('TTL')!r}")
    key, auth = device_secrets(c.seed, name)
    try:
        plain = http_ece.decrypt(body, private_key=key, auth_secret=auth,
                                 version="aes128gcm")
        doc = orjson.loads(plain)
    except Exception as e:  # any failure to decrypt or parse is the finding
        return c.fail(f"{name}: {type(e).__name__}: {e}")
    if not isinstance(doc, dict) or not {"id", "topic", "event", "data"} <= doc.keys():
        return c.fail(f"{name}: the plaintext is not the event: {plain[:200]!r}")
    c.verified += 1
    return None


async def push(request: web.Request) -> web.Response:
    body = await request.read()
    now = time.monotonic()
    c = request.app[COUNTS]
    if c.first_at is None:
        c.first_at = now
    c.last_at = now
    c.received += 1
    c.bytes += len(body)
    c.total += 1
    if c.verify_every and (c.received - 1) % c.verify_every == 0:
        verify(c, request.match_info["name"], dict(request.headers), body)
    return web.Response(status=201)


async def count(request: web.Request) -> web.Response:
    c = request.app[COUNTS]
    return web.json_response({
        "received": c.received, "first_at": c.first_at, "last_at": c.last_at,
        "bytes": c.bytes, "total": c.total, "verified": c.verified, "bad": c.bad,
        "bad_reason": c.bad_reason})


async def reset(request: web.Request) -> web.Response:
    request.app[COUNTS].reset()
    return web.json_response({"ok": True})


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int, seed: str, verify_every: int) -> None:
    app = web.Application()
    app[COUNTS] = Counts(seed, verify_every)
    app.router.add_post("/push/{name}", push)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    app.router.add_get("/health", health)
    await serve_until_stopped(
        web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0), port,
        shutdown_timeout=1.0)


def main() -> None:
    run_helper(serve(int(sys.argv[1]), sys.argv[2],
                                      int(sys.argv[3]) if len(sys.argv) > 3 else 1000), nofile=True)


if __name__ == "__main__":
    main()
