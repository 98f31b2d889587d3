"""Object-level access (auth.owner, auth.body), over real HTTP, and `edge check`'s warning
for routes that have neither."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from .conftest import bearer as tok
from .conftest import catch_all, services_yaml, write_config

EDGE = """
auth:
  jwt: {algorithms: [HS256], secret_env: EDGE_JWT_SECRET}
  identity_headers: {X-Edge-Subject: sub}
"""

ROUTES = {"r.yaml": """
routes:
  - route: GET /things/{id}
    source: {service: svc, path: "/things/{id}"}
    auth:
      jwt: required
      owner:
        field: /owner/member_id
        claim: sub
        unless: [{claim: roles, contains: admin}]
    rate_limit: []
  - route: GET /shaped/{id}
    source: {service: svc, path: "/things/{id}"}
    shape: {fields: {default: "id,note"}}
    cache: {ttl: 60s}
    auth:
      jwt: required
      owner:
        field: /owner/member_id
        claim: sub
        unless: [{claim: roles, contains: admin}]
    rate_limit: []
  - route: POST /things
    source: {service: svc, path: /things}
    auth:
      jwt: required
      body:
        - {field: /member_id, claim: sub, set: true,
           unless: [{claim: roles, contains: admin}]}
    idempotency: {}
    rate_limit: []
  - route: POST /offline
    auth: {jwt: required}
    offline_queue: {}
    rate_limit: []
  - route: POST /batch
    auth: {jwt: required}
    batch: {}
    rate_limit: []
"""}

OWNERS = {"A1": "1001", "B2": "1002"}


@pytest.fixture
async def seen() -> list[Any]:
    return []


@pytest.fixture
async def edge(make_edge: Any, upstream: Any, seen: list[Any]) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.read()
            seen.append((dict(request.headers), body))
            return web.json_response({"id": "T-9", **orjson.loads(body)}, status=201)
        thing = request.path.rsplit("/", 1)[1]
        if thing == "text":
            return web.Response(text="member_id 1001")
        if thing not in OWNERS:
            return web.json_response({"error": "no such thing"}, status=404)
        return web.json_response({"id": thing, "note": "private",
                                  "owner": {"member_id": OWNERS[thing]}})

    url = await upstream(catch_all(handler))
    return await make_edge(services_yaml({"svc": url}, EDGE), ROUTES)


@pytest.mark.parametrize("path", ["/things", "/shaped"])
async def test_the_answer_goes_to_its_owner_only(edge: Any, path: str) -> None:
    r = await edge.get(f"{path}/A1", headers=tok("1001"))
    assert r.status == 200 and (await r.json())["id"] == "A1"
    other = await edge.get(f"{path}/B2", headers=tok("1001"))
    missing = await edge.get(f"{path}/ZZ", headers=tok("1001"))
    assert other.status == missing.status == 404
    a, b = await other.json(), await missing.json()
    assert a["type"] == b["type"] == "urn:edge:problem:resource-not-found"
    assert a["detail"] == b["detail"]  # nothing tells "not yours" from "not there"
    assert "private" not in await other.text()
    staff = await edge.get(f"{path}/B2", headers=tok("1001", ["admin"]))
    assert staff.status == 200


async def test_an_answer_that_cant_be_checked_is_not_released(edge: Any) -> None:
    r = await edge.get("/things/text", headers=tok("1001"))
    assert r.status == 502
    assert "member_id" not in await r.text()


async def test_a_cached_answer_is_checked_again_on_every_hit(edge: Any) -> None:
    # staff read B2 (kept with no owner check); then the same subject, no longer staff,
    # asks again: the entry's key is theirs, but the object is not
    r = await edge.get("/shaped/B2", headers=tok("1001", ["admin"]))
    assert r.status == 200
    again = await edge.get("/shaped/B2", headers=tok("1001", ["admin"]))
    assert again.headers["Cache-Status"].startswith("edge; hit")
    r = await edge.get("/shaped/B2", headers=tok("1001"))
    assert r.status == 404


async def test_a_body_must_name_the_caller(edge: Any, seen: list[Any]) -> None:
    r = await edge.post("/things", json={"member_id": "1002", "x": 1}, headers=tok("1001"))
    assert r.status == 403
    assert r.content_type == "application/problem+json"
    r = await edge.post("/things", json={"x": 1}, headers=tok("1001"))  # filled in
    assert r.status == 201 and (await r.json())["member_id"] == "1001"
    r = await edge.post("/things", json={"member_id": "1001"}, headers=tok("1001"))
    assert r.status == 201
    r = await edge.post("/things", json={"member_id": "1002"}, headers=tok("9", ["admin"]))
    assert r.status == 201
    r = await edge.post("/things", data=b"member_id=1002", headers=tok("1001"))
    assert r.status == 400
    assert [orjson.loads(b)["member_id"] for _, b in seen] == ["1001", "1001", "1002"]


async def test_a_duplicate_key_cant_say_one_thing_here_and_another_upstream(
        edge: Any, seen: list[Any]) -> None:
    raw = b'{"member_id": "1002", "member_id": "1001"}'
    r = await edge.post("/things", data=raw, headers={**tok("1001"),
                                                      "Content-Type": "application/json"})
    assert r.status == 201
    [(_, body)] = seen
    assert body == b'{"member_id":"1001"}'  # what was checked is what is sent


async def test_a_compressed_body_is_checked_decoded_and_sent_reframed(
        edge: Any, seen: list[Any]) -> None:
    packed = gzip.compress(b'{"member_id": "1002"}')
    r = await edge.post("/things", data=packed, headers={**tok("1001"),
                                                         "Content-Encoding": "gzip"})
    assert r.status == 403
    packed = gzip.compress(b'{"member_id": "1001", "pad": "' + b"p" * 500 + b'"}')
    r = await edge.post("/things", data=packed, headers={**tok("1001"),
                                                         "Content-Encoding": "gzip"})
    assert r.status == 201
    [(headers, body)] = seen
    assert "Content-Encoding" not in headers
    assert headers["Content-Length"] == str(len(body))


async def test_the_offline_queue_and_batches_cant_write_for_someone_else(
        edge: Any, seen: list[Any]) -> None:
    op = {"local_id": "l1", "method": "POST", "path": "/things",
          "timestamp": "2026-11-20T08:00:00Z", "body": {"member_id": "1001"}}
    r = await edge.post("/offline", json={"operations": [op]}, headers=tok("1002"))
    assert (await r.json())["results"][0]["status"] == 403
    r = await edge.post("/batch", json=[{"id": "w", "method": "POST", "path": "/things",
                                         "body": {"member_id": "1001"}},
                                        {"id": "r", "path": "/things/A1"}],
                        headers=tok("1002"))
    assert [i["status"] for i in await r.json()] == [403, 404]
    assert seen == []


def _check(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", "check", "--no-env", *args, str(root)],
                          capture_output=True, text=True, timeout=60)


ROUTE = """
routes:
  - route: GET /claims/{{claim_id}}
    source: {{service: svc, path: "/claims/{{claim_id}}"}}
    auth:
      jwt: required
{extra}
"""


@pytest.mark.parametrize("extra,warned", [
    ("", True),
    ("      unowned: every member may read every claim in this test", False),
    ("      allow: [{claim: sub, equals: '{claim_id}'}]", False),
    ("      owner: {field: /member_id, claim: sub}", False),
])
def test_check_warns_about_routes_anyone_with_a_token_reaches(tmp_path: Path, extra: str,
                                                              warned: bool) -> None:
    root = write_config(tmp_path / "c", services_yaml({"svc": "http://127.0.0.1:1"}, EDGE),
                        {"r.yaml": textwrap.dedent(ROUTE.format(extra=extra))})
    plain, strict = _check(root), _check(root, "--strict")
    assert plain.returncode == 0
    if warned:
        assert strict.returncode == 1
        assert plain.stdout.splitlines()[0] == (
            f"{root}/routes/r.yaml:3:12: warning: GET /claims/{{claim_id}}: any caller with "
            "a valid token reaches every {claim_id}: add `auth.allow` (the path names the "
            "owner) or `auth.owner` (the answer does), or say why not with `auth.unowned`")
    else:
        assert strict.returncode == 0 and "warning" not in plain.stdout


@pytest.mark.parametrize("rule,message", [
    ("owner: {field: member_id, claim: sub}", "a JSON pointer like '/member_id' is expected"),
    ("owner: {field: /m, claim: sub, param: claim_id}", "give exactly one of `claim` or"),
    ("owner: {field: /m, param: nope}", "'nope' is not a parameter of the route"),
    ("body: [{field: /m, claim: sub}]", "auth.body is for POST, PUT, PATCH and DELETE"),
])
def test_bad_object_rules_are_config_errors(tmp_path: Path, rule: str, message: str) -> None:
    root = write_config(tmp_path / "c", services_yaml({"svc": "http://127.0.0.1:1"}, EDGE),
                        {"r.yaml": textwrap.dedent(ROUTE.format(extra="      " + rule))})
    out = _check(root)
    assert out.returncode == 1
    assert message in out.stdout
    assert out.stdout.startswith(f"{root}/routes/r.yaml:")


def test_unless_rules_are_checked_like_allow_rules(tmp_path: Path) -> None:
    rule = ("owner: {field: /member_id, claim: sub, "
            "unless: [{claim: roles, equals: '{nope}'}, {claim: roles}]}")
    root = write_config(tmp_path / "c", services_yaml({"svc": "http://127.0.0.1:1"}, EDGE),
                        {"r.yaml": textwrap.dedent(ROUTE.format(extra="      " + rule))})
    out = _check(root).stdout
    assert "auth.owner.unless[0]: '{nope}' is not a parameter of the route" in out
    assert "auth.owner.unless[1]: give exactly one of `equals` or `contains`" in out
