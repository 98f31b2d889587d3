"""App API keys over real HTTP: required / optional / off, bad keys, rotation, route
restrictions, the identity the upstream gets, tiers and rate limits, revocation by reload,
config errors and the `edge apikey` commands."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from edge.cli import main
from edge.config import ApiKeysFile, ConfigError, json_schemas, load_config

from .conftest import headers_echo_app, services_yaml, write_config
from .test_auth import bearer, token
from .test_reload import wait_for
from .test_schema import CONFIG, errors, walk

IOS = "edge_ios-app-key-0123456789abcdefghijklmnopq"
WIDGET = "edge_widget-key-0123456789abcdefghijklmnopq"
REVOKED = "edge_revoked-key-0123456789abcdefghijklmnop"
EXPIRED = "edge_expired-key-0123456789abcdefghijklmnop"
FUTURE = "edge_future-key-0123456789abcdefghijklmnopq"
OLD = "edge_old-key-0123456789abcdefghijklmnopqrstu"
NEW = "edge_new-key-0123456789abcdefghijklmnopqrstu"
UNKNOWN = "edge_unknown-key-0123456789abcdefghijklmnop"


def h(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def at(hours: float) -> str:
    t = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


EDGE = f"""
auth:
  jwt: {{algorithms: [HS256], secret_env: EDGE_JWT_SECRET}}
  api_keys:
    tiers: [partner]
    keys:
      - {{name: ios, hash: "{h(IOS)}", tier: partner}}
      - {{name: widget, hash: "{h(WIDGET)}", routes: ["GET /providers*"]}}
      - {{name: gone, hash: "{h(REVOKED)}", revoked: true}}
      - {{name: expired, hash: "{h(EXPIRED)}", expires: {at(-1)}}}
      - {{name: future, hash: "{h(FUTURE)}", not_before: {at(1)}}}
      - {{name: old, hash: "{h(OLD)}", not_before: {at(-48)}, expires: {at(1)}}}
      - {{name: new, hash: "{h(NEW)}", not_before: {at(-1)}}}
"""

ROUTES = {"r.yaml": """
routes:
  - route: GET /app
    source: {service: svc, path: /app}
    auth: {api_key: required}
  - route: GET /providers
    source: {service: svc, path: /providers}
    auth: {api_key: optional}
  - route: GET /providers/{id}
    source: {service: svc, path: "/providers/{id}"}
    auth: {api_key: optional}
  - route: GET /open
    source: {service: svc, path: /open}
"""}
BOTH = {"both.yaml": """
route: GET /both
source: {service: svc, path: /both}
auth: {jwt: required, api_key: required}
"""}


def key(k: str, **more: str) -> dict[str, str]:
    return {"X-API-Key": k, **more}


@pytest.fixture
async def edge(make_edge: Any, upstream: Any) -> Any:
    url = await upstream(headers_echo_app())
    return await make_edge(services_yaml({"svc": url}, EDGE), {**ROUTES, **BOTH})


async def seen_by_upstream(resp: Any) -> dict[str, str]:
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["headers"])


async def problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/problem+json"
    return dict(await resp.json(content_type=None))


async def test_a_required_route_needs_a_key(edge: Any) -> None:
    p = await problem(await edge.get("/app"), 401)
    assert p["type"] == "urn:edge:problem:unauthorized"
    assert p["detail"] == "this route needs an app key (X-API-Key)"
    resp = await edge.get("/app")
    assert resp.headers["WWW-Authenticate"] == 'ApiKey header="X-API-Key"'
    assert (await seen_by_upstream(await edge.get("/app", headers=key(IOS))))[
        "X-Edge-App"] == "ios"


@pytest.mark.parametrize(("presented", "detail"), [
    (UNKNOWN, "unknown app key"),
    (REVOKED, "app key revoked"),
    (EXPIRED, "app key expired"),
    (FUTURE, "app key not valid yet"),
    ("", "malformed app key"),
    ("short", "malformed app key"),
    (IOS[:-1], "unknown app key"),
])
@pytest.mark.parametrize("path", ["/app", "/providers"])
async def test_bad_keys_are_401_on_required_and_optional_routes(
        edge: Any, path: str, presented: str, detail: str) -> None:
    resp = await edge.get(path, headers=key(presented))
    p = await problem(resp, 401)
    assert (p["type"], p["detail"]) == ("urn:edge:problem:unauthorized", detail)
    assert resp.headers["WWW-Authenticate"] == 'ApiKey header="X-API-Key"'


async def test_optional_and_off(edge: Any) -> None:
    anonymous = await seen_by_upstream(await edge.get("/providers"))
    assert "X-Edge-App" not in anonymous
    with_key = await seen_by_upstream(await edge.get("/providers", headers=key(IOS)))
    assert with_key["X-Edge-App"] == "ios"
    # off: keys are not looked at, and the header is the upstream's business
    off = await seen_by_upstream(await edge.get("/open", headers=key("garbage")))
    assert off["X-API-Key"] == "garbage" and "X-Edge-App" not in off


async def test_identity_reaches_the_upstream_and_forged_copies_never_do(edge: Any) -> None:
    forged = {"X-Edge-App": "admin-console"}
    for path in ("/app", "/providers"):
        got = await seen_by_upstream(await edge.get(path, headers=key(IOS, **forged)))
        assert got["X-Edge-App"] == "ios"
        assert "X-API-Key" not in got  # the upstream learns the app, never its key
    for path in ("/providers", "/open"):
        assert "X-Edge-App" not in await seen_by_upstream(await edge.get(path, headers=forged))


async def test_rotation_overlap_both_keys_work(edge: Any) -> None:
    for k, name in ((OLD, "old"), (NEW, "new"), (OLD, "old")):
        got = await seen_by_upstream(await edge.get("/app", headers=key(k)))
        assert got["X-Edge-App"] == name


async def test_a_key_outside_its_routes_is_403(edge: Any) -> None:
    p = await problem(await edge.get("/app", headers=key(WIDGET)), 403)
    assert p["type"] == "urn:edge:problem:forbidden"
    assert p["detail"] == "this app key is not allowed on this route"
    for path in ("/providers", "/providers/7"):  # the glob: GET /providers*
        got = await seen_by_upstream(await edge.get(path, headers=key(WIDGET)))
        assert got["X-Edge-App"] == "widget"


async def test_app_key_and_user_token_both_required(edge: Any) -> None:
    t = bearer(token(iss=None, aud=None))
    assert (await problem(await edge.get("/both", headers=t), 401))["detail"] == (
        "this route needs an app key (X-API-Key)")
    assert (await problem(await edge.get("/both", headers=key(IOS)), 401))["detail"] == (
        "this route needs a bearer token")
    got = await seen_by_upstream(await edge.get("/both", headers={**t, **key(IOS)}))
    assert (got["X-Edge-App"], got["X-Edge-Subject"]) == ("ios", "1001")


async def test_the_access_log_names_the_app(edge: Any) -> None:
    await edge.get("/app", headers=key(IOS))
    edge.edge.access_log.flush()
    line = orjson.loads(edge.edge.access_log.stream.getvalue().splitlines()[-1])
    assert (line["route"], line["app"]) == ("GET /app", "ios")


# ------------------------------------------------------------------------ rate limits

LIMITED = {"r.yaml": """
routes:
  - route: GET /providers
    source: {service: svc, path: /providers}
  - route: GET /per-ip
    source: {service: svc, path: /x}
    auth: {api_key: optional}
    rate_limit:
      - {key: ip, rate: 10/h, burst: 2, per_tier: {partner: {rate: 100/h, burst: 5}}}
  - route: GET /per-app
    source: {service: svc, path: /x}
    auth: {api_key: optional}
    rate_limit: [{key: api_key, rate: 10/h, burst: 2}]
  - route: GET /per-device
    source: {service: svc, path: /x}
    auth: {api_key: optional}
    rate_limit: [{key: device, rate: 10/h, burst: 1}]
  - route: GET /cached
    source: {service: svc, path: /x}
    auth: {api_key: optional}
    shape: {}
    cache: {scope: public, ttl: 1m}
    rate_limit:
      - {name: cached, key: ip, rate: 10/h, burst: 3, per_tier: {partner: {rate: 1000/h}}}
"""}


async def statuses(edge: Any, path: str, n: int, **headers: str) -> list[int]:
    return [(await edge.get(path, headers=headers)).status for _ in range(n)]


async def test_a_keys_tier_selects_its_rate_limit(make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, EDGE + "trusted_proxies: [127.0.0.1/32]\n"),
                           LIMITED)
    assert await statuses(edge, "/per-ip", 3, **{"X-Forwarded-For": "10.0.0.1"}) == [
        200, 200, 429]
    partner = key(IOS, **{"X-Forwarded-For": "10.0.0.2"})
    resp = await edge.get("/per-ip", headers=partner)
    assert resp.headers["RateLimit-Policy"] == '"ip";q=100;w=3600'
    assert await statuses(edge, "/per-ip", 5, **partner) == [200] * 4 + [429]
    # a key without a tier gets the default
    tierless = key(NEW, **{"X-Forwarded-For": "10.0.0.3"})
    assert (await edge.get("/per-ip", headers=tierless)).headers["RateLimit-Policy"] == (
        '"ip";q=10;w=3600')


async def test_the_api_key_limit_counts_by_verified_app(make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, EDGE + "trusted_proxies: [127.0.0.1/32]\n"),
                           LIMITED)
    # one app's budget, from any address; the old and the new key are different apps
    got = [(await edge.get("/per-app", headers=key(OLD, **{"X-Forwarded-For": ip}))).status
           for ip in ("10.0.1.1", "10.0.1.2", "10.0.1.3")]
    assert got == [200, 200, 429]
    assert (await edge.get("/per-app", headers=key(NEW))).status == 200
    # a verified app key is shared by every install: it doesn't make them one device
    for device in ("phone-a", "phone-b"):
        assert (await edge.get("/per-device", headers=key(IOS, **{
            "X-Device-ID": device}))).status == 200
    assert (await edge.get("/per-device", headers=key(IOS, **{
        "X-Device-ID": "phone-a"}))).status == 429


async def test_the_tier_applies_to_cached_public_answers_too(make_edge: Any,
                                                             upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, EDGE + "trusted_proxies: [127.0.0.1/32]\n"),
                           LIMITED)
    anon = {"X-Forwarded-For": "10.0.2.1"}
    first = await edge.get("/cached", headers=anon)
    hit = await edge.get("/cached", headers=anon)  # from the fast lane
    assert hit.headers["Cache-Status"].startswith("edge; hit")
    assert first.headers["RateLimit-Policy"] == hit.headers["RateLimit-Policy"] == (
        '"cached";q=10;w=3600')
    partner = await edge.get("/cached", headers=key(IOS, **anon))
    assert partner.headers["Cache-Status"].startswith("edge; hit")
    assert partner.headers["RateLimit-Policy"] == '"cached";q=1000;w=3600'
    assert (await problem(await edge.get("/cached", headers=key(UNKNOWN, **anon)), 401))[
        "detail"] == "unknown app key"


async def test_private_cache_entries_are_per_app(make_edge: Any, upstream: Any) -> None:
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, EDGE), {"r.yaml": """
        route: GET /catalog
        source: {service: svc, path: /catalog}
        auth: {jwt: "off", api_key: required}
        shape: {}
        cache: {scope: private, ttl: 1m}
        """, "providers.yaml": "route: GET /providers\nsource: {service: svc, path: /p}\n"})
    for k, name in ((OLD, "old"), (NEW, "new"), (OLD, "old"), (NEW, "new")):
        resp = await edge.get("/catalog", headers=key(k))
        assert (await seen_by_upstream(resp))["X-Edge-App"] == name
    assert resp.headers["Cache-Status"].startswith("edge; hit")


# --------------------------------------------------------------------------- reloading


async def test_revoking_a_key_in_its_file_takes_effect_on_reload(make_edge: Any,
                                                                  upstream: Any,
                                                                  tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    keys = root / "api-keys.yaml"
    keys.write_text(f"keys:\n  - {{name: ios, hash: '{h(IOS)}'}}\n")
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, """
        reload: {interval: 100ms}
        auth:
          api_keys: {file: api-keys.yaml}
        """), ROUTES, root=root, watch=True)
    assert (await edge.get("/app", headers=key(IOS))).status == 200
    keys.write_text(f"keys:\n  - {{name: ios, hash: '{h(IOS)}', revoked: true}}\n"
                    f"  - {{name: ios-2, hash: '{h(NEW)}'}}\n")

    async def revoked() -> bool:
        return (await edge.get("/app", headers=key(IOS))).status == 401

    await wait_for(revoked)
    got = await seen_by_upstream(await edge.get("/app", headers=key(NEW)))
    assert got["X-Edge-App"] == "ios-2"
    assert (await (await edge.get("/ready")).json())["config_generation"] == 2


async def test_a_plain_key_pasted_into_the_file_keeps_the_last_good_keys(
        make_edge: Any, upstream: Any, tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    keys = root / "api-keys.yaml"
    keys.write_text(f"keys:\n  - {{name: ios, hash: '{h(IOS)}'}}\n")
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, """
        auth:
          api_keys: {file: api-keys.yaml}
        """), ROUTES, root=root)
    keys.write_text(f"keys:\n  - {{name: ios, hash: '{h(IOS)}'}}\n"
                    f"  - {{name: web, hash: '{NEW}'}}\n")
    assert await edge.edge.state.reloader.reload() is False
    error = edge.edge.state.reloader.last_error
    assert f"{keys}:3:23: error: keys[1].hash: expected 'sha256:<64 hex digits>'" in error
    assert NEW not in error  # the key must not end up in logs
    assert (await edge.get("/app", headers=key(IOS))).status == 200


# ------------------------------------------------------------------------ config errors

KEY_EDGE = services_yaml({"s": "http://127.0.0.1:9001"}, """\
    auth:
      api_keys:
        tiers: [partner]
        file: keys.yaml
        keys:
    """)  # lines 1-3 are the service; keys: is line 8, its items from line 9
ROUTE = "route: GET /a\nsource: {service: s, path: /a}\nauth: {api_key: optional}\n"


def key_problems(tmp_path: Path, inline: str, file: str = "keys: []\n",
                 routes: dict[str, str] | None = None, edge_yaml: str = KEY_EDGE) -> list[str]:
    root = write_config(tmp_path, edge_yaml + textwrap.indent(textwrap.dedent(inline), " " * 6),
                        routes if routes is not None else {"a.yaml": ROUTE})
    (root / "keys.yaml").write_text(textwrap.dedent(file))
    with pytest.raises(ConfigError) as exc:
        load_config(root, {})
    return [p.replace(f"{root}/", "") for p in exc.value.problems]


PLAIN = ("expected 'sha256:<64 hex digits>', the key's hash, never the key itself: "
         "`edge apikey hash` (key on stdin) or `edge apikey new` make one")


@pytest.mark.parametrize(("inline", "file", "expected"), [
    (f"- {{name: a, hash: {IOS}}}\n", "keys: []\n",
     f"edge.yaml:9:25: error: auth.api_keys.keys[0].hash: {PLAIN}"),
    ("- {name: a, hash: 'sha256:abc'}\n", "keys: []\n",
     f"edge.yaml:9:25: error: auth.api_keys.keys[0].hash: {PLAIN}"),
    ("[]\n", f"keys:\n  - name: a\n    hash: {IOS}\n",
     f"keys.yaml:3:11: error: keys[0].hash: {PLAIN}"),
    (f"- {{name: a, hash: '{h(IOS)}'}}\n", f"keys:\n  - {{name: a, hash: '{h(NEW)}'}}\n",
     "keys.yaml:2:12: error: keys[0].name: 'a' is already the name of the key at "
     "edge.yaml:9:16"),
    (f"- {{name: a, hash: '{h(IOS)}'}}\n", f"keys:\n  - {{name: b, hash: '{h(IOS)}'}}\n",
     "keys.yaml:2:21: error: keys[0].hash: the same key as 'a' (edge.yaml:9:25)"),
    (f"- {{name: a, hash: '{h(IOS)}', tier: gold}}\n", "keys: []\n",
     "edge.yaml:9:106: error: auth.api_keys.keys[0].tier: 'gold' is not one of "
     "auth.api_keys.tiers (partner)"),
    (f"- {{name: 'a b', hash: '{h(IOS)}'}}\n", "keys: []\n",
     "edge.yaml:9:16: error: auth.api_keys.keys[0].name: String should match pattern "
     "'^[A-Za-z0-9._:-]{1,64}$'"),
    (f"- {{name: a, hash: '{h(IOS)}', expires: 2026-03-01}}\n", "keys: []\n",
     "edge.yaml:9:109: error: auth.api_keys.keys[0].expires: expected a time with its zone, "
     "like 2026-03-01T00:00:00Z, got 2026-03-01T00:00:00"),
    (f"- {{name: a, hash: '{h(IOS)}', not_before: 2026-03-01T00:00:00Z, "
     "expires: 2026-02-01T00:00:00Z}\n", "keys: []\n",
     "edge.yaml:9:143: error: auth.api_keys.keys[0].expires: must be after not_before"),
    (f"- {{name: a, hash: '{h(IOS)}', routes: ['/a']}}\n", "keys: []\n",
     "edge.yaml:9:109: error: auth.api_keys.keys[0].routes[0]: expected a route name or glob, "
     "'METHOD /path' like 'GET /api/v1/providers*' or '* /api/v1/catalog/*', got '/a'"),
    (f"- {{name: a, hash: '{h(IOS)}', routes: ['GET /b*']}}\n", "keys: []\n",
     "edge.yaml:9:109: error: auth.api_keys.keys[0].routes[0]: 'GET /b*' matches no route"),
    ("[]\n", "- name: a\n", "keys.yaml:1:1: error: expected a mapping with `keys:`"),
    ("[]\n", "keys:\n  - {name: a, hash: 'sha256:x', secret: y}\n",
     f"keys.yaml:2:21: error: keys[0].hash: {PLAIN}"),
])
def test_key_config_problems(tmp_path: Path, inline: str, file: str, expected: str) -> None:
    assert key_problems(tmp_path, inline, file)[:1] == [expected]


def test_a_plain_key_is_never_echoed_in_the_error(tmp_path: Path) -> None:
    got = key_problems(tmp_path, f"- {{name: a, hash: {IOS}}}\n")
    assert not any(IOS in p for p in got)


def test_keys_need_edge_yaml_and_a_public_answer_needs_no_key(tmp_path: Path) -> None:
    root = write_config(tmp_path / "2", services_yaml({"s": "http://127.0.0.1:9001"}),
                        {"a.yaml": ROUTE})
    with pytest.raises(ConfigError) as exc:
        load_config(root, {})
    assert [p.replace(f"{root}/", "") for p in exc.value.problems] == [
        "routes/a.yaml:3:17: error: GET /a: auth.api_key needs `auth.api_keys` in edge.yaml"]
    cached = ("route: GET /a\nsource: {service: s, path: /a}\n"
              "auth: {jwt: 'off', api_key: required}\ncache: {ttl: 1m, scope: public}\n")
    assert key_problems(tmp_path / "3", "[]\n", routes={"a.yaml": cached}) == [
        "routes/a.yaml:4:25: error: GET /a: cache.scope: a public answer would be served (by "
        "the edge's fast lane, and by CDNs) without checking the app key; set "
        "`scope: private`"]
    tiered = ROUTE + "rate_limit: [{key: ip, rate: 1/s, per_tier: {gold: {rate: 2/s}}}]\n"
    assert key_problems(tmp_path / "4", "[]\n", routes={"a.yaml": tiered}) == [
        "routes/a.yaml:4:46: error: GET /a: rate_limit[0]: 'gold' is not one of "
        "auth.api_keys.tiers (partner)"]


def test_keys_file_must_exist_and_stay_out_of_routes(tmp_path: Path) -> None:
    for file, expected in (("nope.yaml", "no such file 'nope.yaml'"),
                           ("routes/keys.yaml", "keep it out of routes/ (every file there is "
                            "read as routes)")):
        edge_yaml = KEY_EDGE.replace("file: keys.yaml", f"file: {file}")
        assert key_problems(tmp_path / file.replace("/", "-"), "[]\n",
                            edge_yaml=edge_yaml)[:1] == [
            f"edge.yaml:7:11: error: auth.api_keys.file: {expected}"]


# ------------------------------------------------------------------------------ the CLI


def run_edge(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "edge", *args], input=stdin,
                          capture_output=True, timeout=30, check=False)


async def test_apikey_new_makes_a_key_the_edge_accepts(make_edge: Any, upstream: Any,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert await asyncio.to_thread(main, ["apikey", "new", "--name", "android"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    new_key = lines[1]
    assert new_key.startswith("edge_") and len(new_key) == 48
    entry = yaml.safe_load("\n".join(lines[3:]))
    assert entry == [{"name": "android", "hash": h(new_key)}]
    url = await upstream(headers_echo_app())
    edge = await make_edge(services_yaml({"svc": url}, f"""
        auth:
          api_keys:
            keys:
              {textwrap.indent(chr(10).join(lines[3:]), " " * 14).lstrip()}
        """), ROUTES)
    assert (await seen_by_upstream(await edge.get("/app", headers=key(new_key))))[
        "X-Edge-App"] == "android"
    assert await asyncio.to_thread(main, ["apikey", "new"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[1] != new_key and again[3].startswith("- name: app-")


def test_apikey_hash_reads_stdin() -> None:
    done = run_edge("apikey", "hash", stdin=IOS.encode() + b"\n")
    assert (done.returncode, done.stdout.decode(), done.stderr) == (0, h(IOS) + "\n", b"")


@pytest.mark.parametrize(("stdin", "message"), [
    (b"", "no key given"),
    (b"hunter2\n", "a key needs at least 32 random characters"),
    (b"two words that are long enough to be a key\n", "printable ASCII without spaces"),
    (b"\xff\xfe" * 20, "printable ASCII without spaces"),
])
def test_apikey_hash_refuses_bad_input_without_a_traceback(stdin: bytes, message: str) -> None:
    done = run_edge("apikey", "hash", stdin=stdin)
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode().startswith("edge apikey hash: ")
    assert message in done.stderr.decode() and b"Traceback" not in done.stderr


def test_apikey_new_refuses_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["apikey", "new", "--name", "my app"])
    assert exc.value.code == 2
    assert "'my app': up to 64 letters, digits" in capsys.readouterr().err


def test_routes_table_shows_the_key_mode(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tmp_path, services_yaml({"svc": "http://127.0.0.1:9"}, EDGE), {**ROUTES, **BOTH})
    assert main(["routes", "--config", str(tmp_path)]) == 0
    rows = {" ".join(line.split()[:2]): line.split()[3:5]
            for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["GET /app"] == ["optional", "key:required"]
    assert rows["GET /both"] == ["required", "key:required"]
    assert rows["GET /open"][1] != "key:optional"


# ---------------------------------------------------------------- the bundled key file


def test_keys_file_schema_has_every_model_key() -> None:
    schema = json_schemas()["api-keys.schema.json"]
    assert walk(ApiKeysFile, schema, schema["$defs"], set()) == []


def test_bundled_keys_file_is_hashes_matching_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = yaml.safe_load((CONFIG / "api-keys.yaml").read_text())
    schema = json_schemas()["api-keys.schema.json"]
    # YAML timestamps load as datetimes; the schema speaks of their JSON strings
    as_json = orjson.loads(orjson.dumps(doc))
    assert errors(jsonschema.Draft202012Validator(schema), as_json) == []
    assert all(k["hash"].startswith("sha256:") for k in doc["keys"])



def test_the_key_header_is_one_header(tmp_path: Path) -> None:
    from edge.config import ConfigError, load_config

    from .conftest import write_config

    root = write_config(tmp_path / "c", "auth:\n  api_keys: {header: X-App-Key}\n", {})
    with pytest.raises(ConfigError) as e:
        load_config(root, {})
    assert "auth.api_keys: the key check reads 'X-App-Key' (auth.api_keys.header) but the " \
        "rate limits read 'X-API-Key' (rate_limits.api_key_header); set them alike" \
        in e.value.problems[0]
    write_config(root, "auth:\n  api_keys: {header: X-App-Key}\n"
                       "rate_limits: {api_key_header: X-App-Key}\n", {})
    load_config(root, {})
