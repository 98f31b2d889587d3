"""App API keys: which app is calling, checked against the key hashes in config.

Security notes:
- Config holds only `sha256:<hex>` of each key. A fast hash is enough because keys are
  random 256-bit strings (`edge apikey new`): there is nothing to guess, unlike a password,
  so a slow KDF would only cost CPU on every request without making a stolen list easier
  to keep.
- A presented key is hashed and looked up in a dict: no secret bytes are ever compared.
  The lookup's timing depends on the hash of what the client sent, which it can't steer
  towards a stored hash, so it reveals nothing about the stored keys.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import ApiKey, ApiKeys, key_allows
from ..errors import Problem

KEY_PREFIX = "edge_"  # so people and secret scanners can tell what a leaked string is
MIN_KEY_LENGTH = 32
MAX_KEY_LENGTH = 256


def new_key() -> str:
    """A fresh random key: 256 bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What config holds for `key`: `sha256:<64 hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def key_problem(key: str) -> str | None:
    """Why `key` can't be a key (None if it can): `edge apikey hash` refuses these."""
    if not key:
        return "no key given"
    if not key.isascii() or not key.isprintable() or " " in key:
        return "a key is printable ASCII without spaces"
    if len(key) < MIN_KEY_LENGTH:
        return (f"a key needs at least {MIN_KEY_LENGTH} random characters (the edge keeps a "
                "fast hash, which is only safe for random keys): make one with "
                "`edge apikey new`")
    if len(key) > MAX_KEY_LENGTH:
        return f"a key has at most {MAX_KEY_LENGTH} characters"
    return None


@dataclass(frozen=True, slots=True)
class AppKey:
    """A configured key, ready to check (times as epoch seconds)."""

    name: str
    tier: str | None
    routes: tuple[str, ...]
    not_before: float
    expires: float
    revoked: bool


def _unauthorized(detail: str, header: str) -> Problem:
    # `unauthorized`, not `invalid-token`: an app that refreshes its user token on
    # invalid-token would loop, and no token refresh fixes an app key.
    return Problem("unauthorized", detail,
                   headers={"WWW-Authenticate": f'ApiKey header="{header}"'})


class KeyRing:
    """All keys of one config generation, by the SHA-256 of the key."""

    def __init__(self, cfg: ApiKeys | None, keys: Sequence[ApiKey]) -> None:
        cfg = cfg or ApiKeys()
        self.header = cfg.header
        self.identity_header = cfg.identity_header
        self.by_hash: dict[bytes, AppKey] = {
            bytes.fromhex(k.hash.removeprefix("sha256:")): AppKey(
                k.name, k.tier, tuple(k.routes),
                k.not_before.timestamp() if k.not_before else -math.inf,
                k.expires.timestamp() if k.expires else math.inf, k.revoked)
            for k in keys}

    def verify(self, presented: str) -> AppKey:
        """The key `presented` is, if it is valid now; raises Problem 401 otherwise."""
        presented = presented.strip()
        if key_problem(presented) is not None:
            raise _unauthorized("malformed app key", self.header)
        key = self.by_hash.get(hashlib.sha256(presented.encode()).digest())
        if key is None:
            raise _unauthorized("unknown app key", self.header)
        now = time.time()
        if key.revoked:
            raise _unauthorized("app key revoked", self.header)
        if now < key.not_before:
            raise _unauthorized("app key not valid yet", self.header)
        if now >= key.expires:
            raise _unauthorized("app key expired", self.header)
        return key

    def for_route(self, mode: str, route_name: str) -> RouteKeys | None:
        if mode == "off":
            return None
        allowed = frozenset(k.name for k in self.by_hash.values()
                            if key_allows(k.routes, route_name))
        return RouteKeys(self, mode == "required", allowed)


class RouteKeys:
    """A route's `auth.api_key` (required or optional), compiled: the keys allowed here."""

    __slots__ = ("ring", "required", "allowed", "header", "identity_header")

    def __init__(self, ring: KeyRing, required: bool, allowed: frozenset[str]) -> None:
        self.ring, self.required, self.allowed = ring, required, allowed
        self.header, self.identity_header = ring.header, ring.identity_header

    @property
    def mode(self) -> str:
        return "required" if self.required else "optional"

    def check(self, headers: Mapping[str, str]) -> AppKey | None:
        """The verified key (None when optional and absent); raises Problem 401/403."""
        raw = headers.get(self.header)
        if raw is None:
            if self.required:
                raise _unauthorized(f"this route needs an app key ({self.header})",
                                    self.header)
            return None
        key = self.ring.verify(raw)
        if key.name not in self.allowed:
            raise Problem("forbidden", "this app key is not allowed on this route")
        return key
