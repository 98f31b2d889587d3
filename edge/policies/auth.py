"""JWT bearer verification (process-wide) and per-route access rules.

Security notes:
- The algorithm allowlist comes from config, never from the token; 'none' is not in it.
- Keys are chosen by the algorithm *family*: an HMAC secret is only ever used for HS*, a
  public key only for asymmetric algorithms, so a token signed with HS256 using the RSA
  public key as secret (algorithm confusion) fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet

from ..config import AllowRule, Auth, Jwt, RouteAuth
from ..context import Incoming
from ..errors import Problem
from ..stores import StoreSize

_BEARER = re.compile(r"^Bearer\s+([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)\s*$",
                     re.IGNORECASE)
MAX_TOKEN_LENGTH = 8192
VERIFIED_CACHE_SIZE = 10_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _invalid(detail: str) -> Problem:
    return Problem("invalid-token", detail,
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class Verifier:
    """Built once per config from `auth.jwt`; `verify(token)` returns the claims."""

    def __init__(self, cfg: Jwt, root: Path, env: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.hmac_algs = [a for a in cfg.algorithms if a.startswith("HS")]
        self.asym_algs = [a for a in cfg.algorithms if not a.startswith("HS")]
        self.secret: bytes | None = None
        if self.hmac_algs and cfg.secret_env:
            value = env.get(cfg.secret_env)
            if not value:
                raise ValueError(f"auth.jwt.secret_env: env var {cfg.secret_env} is not set")
            if len(value.encode()) < 32:
                raise ValueError(f"auth.jwt.secret_env: {cfg.secret_env} holds fewer than 32 "
                                 "bytes; HMAC secrets must be at least as long as the hash")
            self.secret = value.encode()
        self.keys: list[Any] = []
        self.by_kid: dict[str, Any] = {}
        for f in cfg.public_key_files:
            self.keys.append((root / f).read_bytes())
        if cfg.jwks_file:
            jwks = PyJWKSet.from_dict(json.loads((root / cfg.jwks_file).read_text()))
            for k in jwks.keys:
                if k.key_id:
                    self.by_kid[k.key_id] = k
                else:
                    self.keys.append(k)
        self.options = {"require": list(cfg.required_claims)}
        # Verified tokens, so an app's every request doesn't pay for a signature check.
        # An entry is only trusted until the token's `exp`; the cache is bounded.
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}
        self.max_verified = VERIFIED_CACHE_SIZE
        self.evictions = 0

    def size(self) -> StoreSize:
        return StoreSize(len(self._verified), self.max_verified, evictions=self.evictions)

    def verify(self, token: str) -> dict[str, Any]:
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() < hit[0]:
                return hit[1]
            del self._verified[token]
        claims = self._verify(token)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            if len(self._verified) >= self.max_verified:
                self.evictions += len(self._verified)
                self._verified.clear()
            self._verified[token] = (float(exp) + self.cfg.leeway, claims)
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        alg = header.get("alg")
        if alg not in self.cfg.algorithms:
            raise _invalid(f"algorithm {alg!r} is not accepted")
        if alg.startswith("HS"):
            candidates: list[Any] = [self.secret] if self.secret else []
        elif header.get("kid") in self.by_kid:
            candidates = [self.by_kid[header["kid"]]]
        else:
            candidates = list(self.keys)
        last: Exception | None = None
        for key in candidates:
            if isinstance(key, PyJWK):
                key = key.key
            try:
                return jwt.decode(token, key, algorithms=[alg], audience=self.cfg.audience,
                                  issuer=self.cfg.issuer, leeway=self.cfg.leeway,
                                  options=self.options)  # type: ignore[arg-type]
            except jwt.InvalidSignatureError as e:
                last = e
            except jwt.ExpiredSignatureError:
                raise _invalid("token expired") from None
            except jwt.ImmatureSignatureError:
                raise _invalid("token not yet valid") from None
            except jwt.MissingRequiredClaimError as e:
                raise _invalid(f"token lacks the '{e.claim}' claim") from None
            except jwt.InvalidAudienceError:
                raise _invalid("token audience not accepted") from None
            except jwt.InvalidIssuerError:
                raise _invalid("token issuer not accepted") from None
            except (jwt.PyJWTError, ValueError, TypeError) as e:
                last = e
        raise _invalid("bad signature" if isinstance(last, jwt.InvalidSignatureError)
                       or last is None else "token rejected")


@dataclass(frozen=True, slots=True)
class _Rule:
    claim: str
    value: str
    op: str  # "equals" | "contains"
    params: tuple[str, ...]

    def holds(self, claims: Mapping[str, Any], path_params: Mapping[str, str]) -> bool:
        want = self.value
        for p in self.params:
            want = want.replace("{" + p + "}", path_params[p])
        got = claims.get(self.claim)
        if got is None:
            return False
        if self.op == "equals":
            return not isinstance(got, list | dict) and str(got) == want
        if isinstance(got, list):
            return want in (str(x) for x in got)
        return isinstance(got, str) and want in got.split()


def compile_rules(rules: Sequence[AllowRule]) -> tuple[_Rule, ...]:
    return tuple(
        _Rule(r.claim, (r.equals if r.equals is not None else r.contains) or "",
              "equals" if r.equals is not None else "contains",
              tuple(re.findall(r"\{([^}]*)\}", (r.equals or r.contains) or "")))
        for r in rules)


class RouteAuthPolicy:
    """A route's `auth` block, compiled: who may call it and what reaches the upstream."""

    def __init__(self, cfg: RouteAuth, verifier: Verifier | None, token_cookie: str | None,
                 identity_headers: Mapping[str, str], *, in_subprotocol: bool = False
                 ) -> None:
        self.mode = cfg.jwt if verifier is not None else "off"
        self.verifier = verifier
        self.cookie = token_cookie
        # a WebSocket route: browsers can't set Authorization, so the token may come as
        # the subprotocol `bearer.<jwt>` (never in the URL, where logs would keep it)
        self.in_subprotocol = in_subprotocol
        self.forward_token = cfg.forward_token
        self.identity_headers = dict(identity_headers)
        self.rules = compile_rules(cfg.allow)

    def token(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        raw = headers.get("Authorization")
        if raw is not None:
            if len(raw) > MAX_TOKEN_LENGTH:
                raise _invalid("token too long")
            m = _BEARER.match(raw)
            if not m:
                raise _invalid("expected 'Authorization: Bearer <jwt>'")
            return m.group(1)
        if self.cookie and self.cookie in cookies:
            return cookies[self.cookie]
        if self.in_subprotocol:
            return subprotocol_token(headers)
        return None

    def check(self, request: Incoming,
              path_params: Mapping[str, str]) -> dict[str, Any] | None:
        """Returns the verified claims (or None); raises Problem 401/403."""
        if self.mode == "off":
            return None
        headers = request.headers
        if "Authorization" not in headers and not (self.cookie and "Cookie" in headers) \
                and not (self.in_subprotocol and "Sec-WebSocket-Protocol" in headers):
            if self.mode == "required":
                raise Problem("unauthorized", "this route needs a bearer token",
                              headers={"WWW-Authenticate": "Bearer"})
            return None
        token = self.token(headers, request.cookies)
        if token is None:
            if self.mode == "required":
                raise Problem("unauthorized", "this route needs a bearer token",
                              headers={"WWW-Authenticate": "Bearer"})
            return None
        assert self.verifier is not None
        claims = self.verifier.verify(token)
        if self.rules and not any(r.holds(claims, path_params) for r in self.rules):
            raise Problem("forbidden", "the token does not grant access to this resource")
        return claims

    def upstream_identity(self, claims: Mapping[str, Any] | None) -> dict[str, str]:
        if not claims:
            return {}
        out = {}
        for header, claim in self.identity_headers.items():
            value = claims.get(claim)
            if value is None:
                continue
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            text = str(value)
            if _CONTROL.search(text):  # never let a claim smuggle a header line
                continue
            out[header] = text
        return out


TOKEN_PROTOCOL = "bearer."  # `Sec-WebSocket-Protocol: bearer, bearer.<jwt>`


def offered_protocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols a WebSocket handshake offers, in order."""
    raw = headers.get("Sec-WebSocket-Protocol", "")[:MAX_TOKEN_LENGTH + 1024]
    return [p.strip() for p in raw.split(",") if p.strip()][:32]


def subprotocol_token(headers: Mapping[str, str]) -> str | None:
    for offered in offered_protocols(headers):
        if offered.startswith(TOKEN_PROTOCOL):
            token = offered[len(TOKEN_PROTOCOL):]
            if len(token) > MAX_TOKEN_LENGTH:
                raise _invalid("token too long")
            return token
    return None


def build_verifier(cfg: Auth, root: Path, env: Mapping[str, str]) -> Verifier | None:
    return Verifier(cfg.jwt, root, env) if cfg.jwt is not None else None
