"""A Web Push subscriber for the demo: what a browser does when a page subscribes, in a
terminal. It makes a subscription (a P-256 key pair and an auth secret), opens its channel
to the demo's push service, registers the subscription with the edge for a member's
topics, and prints every push it gets, decrypted with its own key (RFC 8291). Ctrl-C
unregisters it.

    .venv/bin/python -m edge.demo.pushclient [--edge http://127.0.0.1:8080]
        [--push-service http://127.0.0.1:9107] [--member 1001] [--device laptop-1]
        [--topic member:1001 ...] [--token JWT]

Without --token it mints the member a token with the demo's secret.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import http_ece
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Subscription:
    """One subscriber's keys and channel."""

    def __init__(self, push_service: str) -> None:
        self.push_service = push_service.rstrip("/")
        self.id = secrets.token_urlsafe(12)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def as_json(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives a page."""
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{self.push_service}/push/{self.id}",
                "keys": {"p256dh": _b64url(public), "auth": _b64url(self.auth)}}

    def open(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth,
                                 version="aes128gcm")
        doc: dict[str, Any] = orjson.loads(plain)
        return doc

    async def messages(self, session: aiohttp.ClientSession,
                       ready: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
        """Each push as it arrives on the channel, decrypted (with its Urgency)."""
        url = f"{self.push_service}/subscribe/{self.id}"
        async with session.ws_connect(url) as ws:
            if ready is not None:
                ready.set()
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    continue
                kept = orjson.loads(msg.data)
                doc = self.open(base64.b64decode(kept["body"]))
                doc["_urgency"] = kept["urgency"]
                yield doc


async def register(session: aiohttp.ClientSession, edge: str, token: str,
                   subscription: Subscription, device: str, topics: list[str]) -> str:
    async with session.post(f"{edge}/_edge/push/registrations", json={
            "platform": "webpush", "subscription": subscription.as_json(),
            "device_id": device, "topics": topics},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        doc = await resp.json(content_type=None)
        if resp.status != 201:
            raise SystemExit(f"pushclient: the edge refused the registration: "
                             f"{resp.status} {doc.get('detail', doc)}")
        reg_id: str = doc["id"]
        return reg_id


async def main(args: argparse.Namespace) -> None:
    token = args.token
    if token is None:
        from edge.cli import DEMO_SECRET, make_token

        token = make_token(DEMO_SECRET, args.member, ["member"], 86400)
    topics = args.topic or [f"member:{args.member}"]
    sub = Subscription(args.push_service)
    async with aiohttp.ClientSession() as session:
        ready = asyncio.Event()
        messages = sub.messages(session, ready)
        first = asyncio.ensure_future(messages.__anext__())
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([first, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if first.done():
            first.result()  # the channel could not be opened: say why
        reg_id = await register(session, args.edge, token, sub, args.device, topics)
        print(f"subscribed as device {args.device!r} to {', '.join(topics)} "
              f"(registration {reg_id}); waiting for pushes, Ctrl-C to stop", flush=True)
        try:
            doc = await first
            while True:
                title = f"{doc.get('title', '')}: {doc.get('body', '')}" \
                    if "title" in doc else "(data only)"
                print(f"push {doc['id']} on {doc['topic']} [{doc['event']}, "
                      f"{doc['_urgency']}] {title} {orjson.dumps(doc.get('data')).decode()}",
                      flush=True)
                doc = await messages.__anext__()
        finally:
            async with session.delete(f"{args.edge}/_edge/push/registrations/{reg_id}",
                                      headers={"Authorization": f"Bearer {token}"}):
                pass


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m edge.demo.pushclient",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--edge", default="http://127.0.0.1:8080")
    p.add_argument("--push-service", default="http://127.0.0.1:9107")
    p.add_argument("--member", default="1001")
    p.add_argument("--device", default="laptop-1")
    p.add_argument("--topic", action="append")
    p.add_argument("--token")
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        print("unsubscribed", file=sys.stderr)
    except (aiohttp.ClientError, OSError) as e:
        raise SystemExit(f"pushclient: {e}") from None


if __name__ == "__main__":
    cli()
