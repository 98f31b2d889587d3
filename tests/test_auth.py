"""JWT verification and per-route access rules, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import JWT_SECRET, headers_echo_app, services_yaml

AUTH = """
auth:
  jwt:
    algorithms: [HS256]
    secret_env: EDGE_JWT_SECRET
    issuer: https://id.example
    audience: edge
  identity_headers: {X-Edge-Subject: sub, X-Edge-Roles: roles}
"""

ROUTES = {"r.yaml": """
routes:
  - route: GET /members/{member_id}
    source: {service: svc, path: "/members/{member_id}"}
    auth:
      jwt: required
      allow:
        - {claim: sub, equals: "{member_id}"}
        - {claim: roles, contains: admin}
  - route: GET /scoped
    source: {service: svc, path: /scoped}
    auth:
      jwt: required
      allow: [{claim: scope, contains: "claims:read"}]
  - route: GET /optional
    source: {service: svc, path: /optional}
  - route: GET /open
    source: {service: svc, path: /open}
    auth: {jwt: "off"}
  - route: GET /forward
    source: {service: svc, path: /forward}
    auth: {jwt: required, forward_token: true}
"""}


def token(secret: str = JWT_SECRET, alg: str = "HS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "1001", "roles": ["member"], "iss": "https://id.example", "aud": "edge",
              "iat": now, "exp": now + 300}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, secret, algorithm=alg)


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(headers_echo_app())
    return await make_edge(services_yaml({"svc": url}, AUTH), ROUTES)


async def problem(resp: Any) -> dict[str, Any]:
    assert resp.headers["Content-Type"] == "application/problem+json"
    return dict(await resp.json(content_type=None))


async def test_valid_token_passes_identity_to_upstream(edge: Any) -> None:
    resp = await edge.get("/members/1001", headers={**bearer(token()),
                                                   "X-Edge-Subject": "forged"})
    assert resp.status == 200
    h = (await resp.json())["headers"]
    assert h["X-Edge-Subject"] == "1001"
    assert h["X-Edge-Roles"] == "member"
    assert "Authorization" not in h  # not forwarded unless the route says so


async def test_missing_token_is_401_with_challenge(edge: Any) -> None:
    resp = await edge.get("/members/1001")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await problem(resp))["type"] == "urn:edge:problem:unauthorized"


@pytest.mark.parametrize("make_token, detail", [
    (lambda: token(exp=int(time.time()) - 120), "token expired"),
    (lambda: token(nbf=int(time.time()) + 600), "token not yet valid"),
    (lambda: token(secret="another-secret-another-secret-xx"), "bad signature"),
    (lambda: token(iss="https://evil.example"), "token issuer not accepted"),
    (lambda: token(aud="other"), "token audience not accepted"),
    (lambda: token(exp=None), "token lacks the 'exp' claim"),
    (lambda: token(sub=None), "token lacks the 'sub' claim"),
    (lambda: token(alg="HS512"), "algorithm 'HS512' is not accepted"),
    (lambda: "not.a.jwt", "malformed token"),
])
async def test_bad_tokens_are_401(edge: Any, make_token: Any, detail: str) -> None:
    resp = await edge.get("/members/1001", headers=bearer(make_token()))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    p = await problem(resp)
    assert p["type"] == "urn:edge:problem:invalid-token"
    assert p["detail"] == detail


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims)}."


async def test_alg_none_is_rejected(edge: Any) -> None:
    claims = jwt.decode(token(), options={"verify_signature": False})
    resp = await edge.get("/members/1001", headers=bearer(unsigned(claims)))
    assert resp.status == 401
    assert (await problem(resp))["detail"] == "algorithm 'none' is not accepted"


async def test_malformed_authorization_header(edge: Any) -> None:
    resp = await edge.get("/members/1001", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert resp.status == 401


async def test_allow_rules_give_403_not_401(edge: Any) -> None:
    resp = await edge.get("/members/1002", headers=bearer(token()))
    assert resp.status == 403
    assert (await problem(resp))["type"] == "urn:edge:problem:forbidden"
    admin = token(sub="ops-7", roles=["admin"])
    assert (await edge.get("/members/1002", headers=bearer(admin))).status == 200
    scoped = token(scope="profile claims:read")
    assert (await edge.get("/scoped", headers=bearer(scoped))).status == 200
    assert (await edge.get("/scoped", headers=bearer(token(scope="claims:readx")))).status == 403


async def test_optional_and_off(edge: Any) -> None:
    assert (await edge.get("/optional")).status == 200
    resp = await edge.get("/optional", headers=bearer(token(exp=1)))
    assert resp.status == 401  # a token, if sent, must be valid
    ok = await edge.get("/optional", headers=bearer(token()))
    assert (await ok.json())["headers"]["X-Edge-Subject"] == "1001"
    off = await edge.get("/open", headers={**bearer("garbage"), "X-Edge-Subject": "forged"})
    assert off.status == 200
    assert "X-Edge-Subject" not in (await off.json())["headers"]


async def test_forward_token_when_route_says_so(edge: Any) -> None:
    t = token()
    h = (await (await edge.get("/forward", headers=bearer(t))).json())["headers"]
    assert h["Authorization"] == f"Bearer {t}"


def rsa_pair(tmp: Path, name: str) -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp / name).write_bytes(pem)
    return key, pem.decode()


async def test_rs256_and_algorithm_confusion(make_edge: Any, upstream: Any,
                                             tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    key, pub_pem = rsa_pair(root, "pub.pem")
    url = await upstream(headers_echo_app())
    client = await make_edge(services_yaml({"svc": url}, """
        auth:
          jwt:
            algorithms: [RS256, HS256]
            secret_env: EDGE_JWT_SECRET
            public_key_files: [pub.pem]
        """), ROUTES, root=root)
    good = token(secret=key, alg="RS256", iss=None, aud=None)
    assert (await client.get("/members/1001", headers=bearer(good))).status == 200
    # HS256 signed with the RSA *public key* as the HMAC secret: the classic confusion.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    now = int(time.time())
    body = base64.urlsafe_b64encode(json.dumps(
        {"sub": "1001", "exp": now + 60}).encode()).rstrip(b"=")
    sig = hmac.new(pub_pem.encode(), header + b"." + body, hashlib.sha256).digest()
    forged = b".".join([header, body, base64.urlsafe_b64encode(sig).rstrip(b"=")]).decode()
    resp = await client.get("/members/1001", headers=bearer(forged))
    assert resp.status == 401


async def test_jwks_file_by_kid(make_edge: Any, upstream: Any, tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    k2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {"keys": []}
    for kid, k in (("old", k1), ("new", k2)):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
        jwk.update(kid=kid, alg="RS256", use="sig")
        jwks["keys"].append(jwk)
    (root / "jwks.json").write_text(json.dumps(jwks))
    url = await upstream(headers_echo_app())
    client = await make_edge(services_yaml({"svc": url}, """
        auth:
          jwt: {algorithms: [RS256], jwks_file: jwks.json}
        """), ROUTES, root=root)
    now = int(time.time())
    for kid, k in (("old", k1), ("new", k2)):
        t = jwt.encode({"sub": "1001", "exp": now + 60}, k, algorithm="RS256",
                       headers={"kid": kid})
        assert (await client.get("/members/1001", headers=bearer(t))).status == 200
    wrong = jwt.encode({"sub": "1001", "exp": now + 60}, k1, algorithm="RS256",
                       headers={"kid": "new"})
    assert (await client.get("/members/1001", headers=bearer(wrong))).status == 401


async def test_token_from_cookie(make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    client = await make_edge(services_yaml({"svc": url}, """
        auth:
          jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET, cookie: edge_token}
        """), ROUTES)
    t = token(iss=None, aud=None)
    resp = await client.get("/members/1001", cookies={"edge_token": t})
    assert resp.status == 200


async def test_claims_cannot_inject_header_lines(edge: Any) -> None:
    t = token(sub="1001\r\nX-Evil: 1", roles=["admin"])
    resp = await edge.get("/optional", headers=bearer(t))
    assert resp.status == 200
    h = (await resp.json())["headers"]
    assert "X-Edge-Subject" not in h and "X-Evil" not in h
    assert h["X-Edge-Roles"] == "admin"


async def test_verified_tokens_are_cached_only_until_they_expire(make_edge: Any,
                                                                 upstream: Any) -> None:
    import asyncio

    url = await upstream(headers_echo_app())
    client = await make_edge(services_yaml({"svc": url}, """
        auth:
          jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET, leeway: 0s}
        """), ROUTES)
    short = token(iss=None, aud=None, exp=int(time.time()) + 2)
    for _ in range(3):
        assert (await client.get("/members/1001", headers=bearer(short))).status == 200
    verifier = client.edge.state.runtime.verifier
    assert short in verifier._verified
    await asyncio.sleep(max(0.0, jwt.decode(short, options={"verify_signature": False})["exp"]
                            - time.time()) + 0.1)
    resp = await client.get("/members/1001", headers=bearer(short))
    assert resp.status == 401
    assert (await problem(resp))["detail"] == "token expired"
