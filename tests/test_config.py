"""edge.config.load_config: typed config, every problem reported as file:line:col at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import Config, ConfigError, load_config

from .conftest import services_yaml, write_config

BUNDLED = Path(__file__).resolve().parent.parent / "config"

# Lines 1-3: services / s / url. Extra YAML starts on line 4.
EDGE = services_yaml({"s": "http://127.0.0.1:9001"})
EDGE_JWT = services_yaml({"s": "http://127.0.0.1:9001"}, """\
    auth:
      jwt:
        secret_env: EDGE_JWT_SECRET
    """)


def route(line: str, path: str = "/a", extra: str = "") -> str:
    """A single-route file: `route:` on line 1, `source:` on line 2, `extra` from line 3."""
    return f'route: {line}\nsource: {{service: s, path: "{path}"}}\n{textwrap.dedent(extra)}'


def problems(root: Path, edge_yaml: str, routes: dict[str, str]) -> list[str]:
    write_config(root, edge_yaml, routes)
    with pytest.raises(ConfigError) as exc:
        load_config(root, {})
    assert str(exc.value) == "\n".join(exc.value.problems)
    return [p.replace(f"{root}/", "") for p in exc.value.problems]


def load(root: Path, edge_yaml: str, routes: dict[str, str],
         env: dict[str, str] | None = None) -> Config:
    return load_config(write_config(root, edge_yaml, routes), env or {})


# ---------------------------------------------------------------------------- edge.yaml

EDGE_PROBLEMS = [
    # YAML syntax and structure
    ("listen:\n  port: 1\n   host: x\n",
     "edge.yaml:3:8: error: invalid YAML: mapping values are not allowed here"),
    ("listen:\n  port: 1\n host: x\n",
     "edge.yaml:3:2: error: invalid YAML: expected <block end>, but found "
     "'<block mapping start>'"),
    ("trusted_proxies: [10.0.0.0/8\n",
     "edge.yaml:2:1: error: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("listen: {port: 1\n",
     "edge.yaml:2:1: error: invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ("listen:\n  port: 1\n  host: x\n  port: 2\n",
     "edge.yaml:4:3: error: duplicate key 'port' (first defined at line 2)"),
    ("- listen\n- services\n", "edge.yaml:1:1: error: expected a mapping at the top level"),
    ("hello\n", "edge.yaml:1:1: error: expected a mapping at the top level"),
    # unknown keys, pointing at the key
    ("lisen: {}\n", "edge.yaml:1:1: error: lisen: unknown key"),
    ("listen:\n  host: x\n  prot: 1\n", "edge.yaml:3:3: error: listen.prot: unknown key"),
    ("listen: {host: x, prot: 1}\n", "edge.yaml:1:19: error: listen.prot: unknown key"),
    (EDGE + "    timeouts:\n      conect: 1s\n",
     "edge.yaml:5:7: error: services.s.timeouts.conect: unknown key"),
    ("auth:\n  jwt:\n    secret_env: K\n    algorithm: [HS256]\n",
     "edge.yaml:4:5: error: auth.jwt.algorithm: unknown key"),
    # wrong types
    ("listen:\n  port: abc\n",
     "edge.yaml:2:9: error: listen.port: Input should be a valid integer, unable to parse "
     "string as an integer, got 'abc'"),
    ("listen:\n  port: 70000\n",
     "edge.yaml:2:9: error: listen.port: Input should be less than or equal to 65535"),
    ("listen: [1, 2]\n",
     "edge.yaml:1:9: error: listen: Input should be a valid dictionary or instance of Listen, "
     "got [1, 2]"),
    ("services: [s]\n",
     "edge.yaml:1:11: error: services: Input should be a valid dictionary, got ['s']"),
    ("services:\n  s: {}\n", "edge.yaml:2:6: error: services.s.url: missing required key"),
    ("services:\n  s:\n    url: ftp://x\n",
     "edge.yaml:3:10: error: services.s.url: expected an http(s) base URL without query, "
     "got 'ftp://x'"),
    # durations
    ("drain_timeout: 5 sec\n",
     "edge.yaml:1:16: error: drain_timeout: expected a duration like '250ms', '30s' or '10m', "
     "got '5 sec'"),
    ("drain_timeout: 10\n",
     "edge.yaml:1:16: error: drain_timeout: expected a duration like '250ms', '30s' or '10m', "
     "got 10"),
    ("drain_timeout: -1s\n",
     "edge.yaml:1:16: error: drain_timeout: expected a duration like '250ms', '30s' or '10m', "
     "got '-1s'"),
    ("drain_timeout: .5s\n",
     "edge.yaml:1:16: error: drain_timeout: expected a duration like '250ms', '30s' or '10m', "
     "got '.5s'"),
    ("reload: {interval: 1d}\n",
     "edge.yaml:1:20: error: reload.interval: expected a duration like '250ms', '30s' or "
     "'10m', got '1d'"),
    # sizes
    ("limits:\n  max_request_body: 10 mb\n",
     "edge.yaml:2:21: error: limits.max_request_body: expected a size like '64KiB', '10MB' or "
     "a number of bytes, got '10 mb'"),
    ("limits:\n  max_request_body: -1\n",
     "edge.yaml:2:21: error: limits.max_request_body: expected a size like '64KiB', '10MB' or "
     "a number of bytes, got -1"),
    ("limits:\n  max_header_size: 1.5MB\n",
     "edge.yaml:2:20: error: limits.max_header_size: expected a size like '64KiB', '10MB' or "
     "a number of bytes, got '1.5MB'"),
    ("limits:\n  max_header_size: 8KB/s\n",
     "edge.yaml:2:20: error: limits.max_header_size: expected a size like '64KiB', '10MB' or "
     "a number of bytes, got '8KB/s'"),
    # cross-field checks
    ("devices:\n  default: fridge\n",
     "edge.yaml:2:12: error: devices.default: 'fridge' is not one of devices.classes"),
    ("devices:\n  user_agent:\n    - {pattern: tv, device: tv}\n",
     "edge.yaml:3:29: error: devices.user_agent[0].device: 'tv' is not one of "
     "devices.classes"),
    ("auth:\n  jwt:\n    algorithms: [HS256]\n",
     "edge.yaml:3:17: error: auth.jwt: HS* algorithms need `secret_env` (an env var name)"),
    ("auth:\n  jwt:\n    algorithms: [RS256]\n",
     "edge.yaml:3:17: error: auth.jwt: RS*/ES*/PS*/EdDSA need `public_key_files` or "
     "`jwks_file`"),
    ("auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_files: [keys/nope.pem]\n",
     "edge.yaml:4:24: error: auth.jwt.public_key_files[0]: no such file 'keys/nope.pem'"),
    ("auth:\n  jwt:\n    algorithms: [ES256]\n    jwks_file: jwks.json\n",
     "edge.yaml:4:16: error: auth.jwt.jwks_file: no such file 'jwks.json'"),
    ("auth:\n  jwt:\n    algorithms: [none]\n    secret_env: K\n",
     "edge.yaml:3:18: error: auth.jwt.algorithms[0]: Input should be 'HS256', 'HS384', "
     "'HS512', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', "
     "'PS512' or 'EdDSA', got 'none'"),
    ("auth:\n  jwt:\n    secret_env: edge_secret\n",
     "edge.yaml:3:17: error: auth.jwt.secret_env: String should match pattern "
     "'^[A-Z_][A-Z0-9_]*$'"),
]


@pytest.mark.parametrize(("edge_yaml", "expected"), EDGE_PROBLEMS)
def test_edge_yaml_problem(tmp_path: Path, edge_yaml: str, expected: str) -> None:
    assert problems(tmp_path, edge_yaml, {}) == [expected]


def test_union_reports_each_alternative(tmp_path: Path) -> None:
    assert problems(tmp_path, "trusted_proxies: [10.0.0.1/8]\n", {}) == [
        "edge.yaml:1:19: error: trusted_proxies[0]: Input is not a valid IPv4 network",
        "edge.yaml:1:19: error: trusted_proxies[0]: Input is not a valid IPv6 network",
    ]


def test_hs_and_rs_together_need_both_kinds_of_key(tmp_path: Path) -> None:
    edge_yaml = "auth:\n  jwt:\n    algorithms: [HS256, RS256]\n"
    assert problems(tmp_path, edge_yaml, {}) == [
        "edge.yaml:3:17: error: auth.jwt: HS* algorithms need `secret_env` (an env var name)",
        "edge.yaml:3:17: error: auth.jwt: RS*/ES*/PS*/EdDSA need `public_key_files` or "
        "`jwks_file`",
    ]


def test_rs256_with_an_existing_key_file_loads(tmp_path: Path) -> None:
    edge_yaml = "auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_files: [keys/a.pem]\n"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "a.pem").write_text("-----BEGIN PUBLIC KEY-----\n")
    config = load(tmp_path, edge_yaml, {})
    assert config.edge.auth.jwt is not None
    assert config.edge.auth.jwt.public_key_files == ["keys/a.pem"]


# --------------------------------------------------------------------------- routes/*.yaml

ROUTE_PROBLEMS = [
    # YAML and file structure
    ({"a.yaml": "routes:\n  - route: GET /a\n    source: {service: s, path: /a/{id}}\n"},
     ["routes/a.yaml:3:35: error: invalid YAML: expected ',' or '}', but got '{'"]),
    ({"a.yaml": route("GET /a", extra="source: {}\n")},
     ["routes/a.yaml:3:1: error: duplicate key 'source' (first defined at line 2)"]),
    ({"a.yaml": "- route: GET /a\n"},
     ["routes/a.yaml:1:1: error: expected a route mapping (with 'route:') or a 'routes:' "
      "list"]),
    ({"a.yaml": "routes:\n"},
     ["routes/a.yaml:1:8: error: routes: Input should be a valid list, got None"]),
    ({"a.yaml": "routes: {route: GET /a}\n"},
     ["routes/a.yaml:1:9: error: routes: Input should be a valid list, got "
      "{'route': 'GET /a'}"]),
    # unknown keys at several depths, pointing at the key
    ({"a.yaml": route("GET /a", extra="extra: 1\n")},
     ["routes/a.yaml:3:1: error: extra: unknown key"]),
    ({"a.yaml": "routes:\n  - route: GET /a\n    source: {service: s, path: /a, paht: /b}\n"},
     ["routes/a.yaml:3:36: error: routes[0].source.paht: unknown key"]),
    ({"a.yaml": route("GET /a", extra="auth:\n  jwt: optional\n  alow: []\n")},
     ["routes/a.yaml:5:3: error: auth.alow: unknown key"]),
    ({"a.yaml": route("GET /a/{id}", extra="""\
        auth:
          jwt: required
          allow:
            - claim: sub
              equal: '{id}'
        """)},
     ["routes/a.yaml:7:7: error: auth.allow[0].equal: unknown key"]),
    # missing keys and wrong values
    ({"a.yaml": "routes:\n  - route: GET /a\n    source: {service: s}\n"},
     ["routes/a.yaml:3:13: error: routes[0].source.path: missing required key"]),
    ({"a.yaml": "routes:\n  - source: {service: s, path: /a}\n"},
     ["routes/a.yaml:2:5: error: routes[0].route: missing required key"]),
    ({"a.yaml": route("GET /a", path="a")},
     ["routes/a.yaml:2:28: error: source.path: expected a path starting with '/', got 'a'"]),
    ({"a.yaml": "route: GET /a\nsource: {service: s, path: /a, timeout: 3}\n"},
     ["routes/a.yaml:2:41: error: source.timeout: expected a duration like '250ms', '30s' or "
      "'10m', got 3"]),
    ({"a.yaml": route("POST /a", extra="max_request_body: 5 kb\n")},
     ["routes/a.yaml:3:19: error: max_request_body: expected a size like '64KiB', '10MB' or a "
      "number of bytes, got '5 kb'"]),
    ({"a.yaml": route("GET /a", extra="auth: {jwt: maybe}\n")},
     ["routes/a.yaml:3:13: error: auth.jwt: Input should be 'required', 'optional' or 'off', "
      "got 'maybe'"]),
    # a union field reports why each alternative failed
    ({"a.yaml": route("GET /a", extra="query: {pass: some}\n")},
     ["routes/a.yaml:3:15: error: query.pass: Input should be 'all' or 'none', got 'some'",
      "routes/a.yaml:3:15: error: query.pass: Input should be a valid list, got 'some'"]),
    # checks against the route and edge.yaml
    ({"a.yaml": "routes:\n  - route: GET /a\n    source: {service: t, path: /a}\n"},
     ["routes/a.yaml:3:23: error: GET /a: source.service: unknown service 't' (services: s)"]),
    ({"a.yaml": route("GET /a/{id}", path="/b/{member_id}")},
     ["routes/a.yaml:2:28: error: GET /a/{id}: source.path uses '{member_id}' but the route "
      "has no such parameter"]),
    ({"a.yaml": route("GET /a/{id}", path="/b/{id")},
     ["routes/a.yaml:2:28: error: GET /a/{id}: source.path has an unbalanced '{'"]),
    ({"a.yaml": route("GET /a/{id}", path="/b/id}")},
     ["routes/a.yaml:2:28: error: GET /a/{id}: source.path has an unbalanced '}'"]),
    # bad route strings
    ({"a.yaml": route("FETCH /x")},
     ["routes/a.yaml:1:8: error: route: expected 'METHOD /path' with METHOD one of GET, HEAD, "
      "POST, PUT, PATCH, DELETE, OPTIONS or *, got 'FETCH /x'"]),
    ({"a.yaml": route("GET")},
     ["routes/a.yaml:1:8: error: route: expected 'METHOD /path' with METHOD one of GET, HEAD, "
      "POST, PUT, PATCH, DELETE, OPTIONS or *, got 'GET'"]),
    ({"a.yaml": "routes:\n  - route: FETCH /x\n    source: {service: s, path: /a}\n"},
     ["routes/a.yaml:2:12: error: routes[0].route: expected 'METHOD /path' with METHOD one of "
      "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or *, got 'FETCH /x'"]),
    ({"a.yaml": route("GET x")},
     ["routes/a.yaml:1:8: error: route: path template must start with '/', got 'x'"]),
    ({"a.yaml": route("GET /x/{bad-name}")},
     ["routes/a.yaml:1:8: error: route: bad parameter in segment '{bad-name}': expected "
      "'{name}' with name made of letters, digits and '_'"]),
    ({"a.yaml": route("GET /x/{a}/{a}")},
     ["routes/a.yaml:1:8: error: route: parameter 'a' appears twice in '/x/{a}/{a}'"]),
    ({"a.yaml": route("GET /x/{rest...}/y")},
     ["routes/a.yaml:1:8: error: route: '{rest...}' must be a whole, last segment"]),
    ({"a.yaml": route("GET /x?y=1")},
     ["routes/a.yaml:1:8: error: route: path template must not contain a query or fragment"]),
    # auth
    ({"a.yaml": route("GET /m/{id}", extra="""\
        auth:
          jwt: required
          allow:
            - {claim: sub, equals: '{member}'}
        """)},
     ["routes/a.yaml:6:7: error: GET /m/{id}: auth.allow[0]: '{member}' is not a parameter "
      "of the route"]),
    ({"a.yaml": route("GET /m/{id}", extra="""\
        auth:
          allow:
            - {claim: sub, equals: '{id}'}
        """)},
     ["routes/a.yaml:5:5: error: GET /m/{id}: auth.allow needs `jwt: required`"]),
    ({"a.yaml": route("GET /m/{id}", extra="""\
        auth:
          jwt: 'off'
          allow:
            - {claim: sub, equals: '{id}'}
        """)},
     ["routes/a.yaml:6:5: error: GET /m/{id}: auth.allow needs `jwt: required`"]),
    ({"a.yaml": route("GET /m/{id}", extra="""\
        auth:
          jwt: required
          allow:
            - {claim: sub, equals: '{id}', contains: x}
            - {claim: roles}
        """)},
     ["routes/a.yaml:6:7: error: GET /m/{id}: auth.allow[0]: give exactly one of `equals` or "
      "`contains`",
      "routes/a.yaml:7:7: error: GET /m/{id}: auth.allow[1]: give exactly one of `equals` or "
      "`contains`"]),
]


@pytest.mark.parametrize(("routes", "expected"), ROUTE_PROBLEMS)
def test_route_file_problem(tmp_path: Path, routes: dict[str, str],
                            expected: list[str]) -> None:
    assert problems(tmp_path, EDGE_JWT, routes) == expected


WITHOUT_JWT = [
    (route("GET /m/{id}", extra="auth:\n  jwt: required\n"),
     ["routes/a.yaml:4:8: error: GET /m/{id}: auth needs `auth.jwt` in edge.yaml"]),
    (route("GET /m/{id}", extra="auth:\n  allow: [{claim: sub, equals: '{id}'}]\n"),
     ["routes/a.yaml:4:3: error: GET /m/{id}: auth needs `auth.jwt` in edge.yaml",
      "routes/a.yaml:4:10: error: GET /m/{id}: auth.allow needs `jwt: required`"]),
]


@pytest.mark.parametrize(("text", "expected"), WITHOUT_JWT)
def test_route_auth_needs_jwt_in_edge_yaml(tmp_path: Path, text: str,
                                           expected: list[str]) -> None:
    assert problems(tmp_path, EDGE, {"a.yaml": text}) == expected


@pytest.mark.parametrize("jwt", ["optional", "'off'"])
def test_route_auth_without_jwt_in_edge_yaml(tmp_path: Path, jwt: str) -> None:
    config = load(tmp_path, EDGE, {"a.yaml": route("GET /a", extra=f"auth: {{jwt: {jwt}}}\n")})
    assert [r.name for r in config.routes] == ["GET /a"]


def test_route_auth_jwt_off_unquoted(tmp_path: Path) -> None:
    config = load(tmp_path, EDGE, {"a.yaml": route("GET /a", extra="auth: {jwt: off}\n")})
    assert config.routes[0].model.auth.jwt == "off"


def test_yaml_merge_key_can_be_overridden(tmp_path: Path) -> None:
    text = """\
        routes:
          - &base
            route: GET /a
            source: {service: s, path: /a}
          - <<: *base
            route: GET /b
        """
    config = load(tmp_path, EDGE, {"a.yaml": text})
    assert [r.name for r in config.routes] == ["GET /a", "GET /b"]


COLLISIONS = [
    ({"a.yaml": route("GET /u/{user_id}"),
      "b.yaml": "routes:\n  - route: GET /z\n    source: {service: s, path: /a}\n"
                "  - route: GET /u/{id}\n    source: {service: s, path: /a}\n"},
     ["routes/b.yaml:4:1: error: route 'GET /u/{id}' collides with 'GET /u/{user_id}' defined "
      "at routes/a.yaml:1"]),
    ({"a.yaml": route("GET /p/{a}.jpg"), "b.yaml": route("get  /p/{b}.jpg ")},
     ["routes/b.yaml:1:1: error: route 'GET /p/{b}.jpg' collides with 'GET /p/{a}.jpg' "
      "defined at routes/a.yaml:1"]),
    ({"a.yaml": route("GET /f/{rest...}"), "b.yml": route("GET /f/{path...}")},
     ["routes/b.yml:1:1: error: route 'GET /f/{path...}' collides with 'GET /f/{rest...}' "
      "defined at routes/a.yaml:1"]),
]


@pytest.mark.parametrize(("routes", "expected"), COLLISIONS)
def test_colliding_routes(tmp_path: Path, routes: dict[str, str],
                          expected: list[str]) -> None:
    assert problems(tmp_path, EDGE, routes) == expected


@pytest.mark.parametrize("lines", [
    ("GET /u/{id}", "POST /u/{id}"),
    ("GET /u/{id}", "HEAD /u/{id}"),
    ("GET /u/{id}", "GET /u/{id}.json"),
    ("GET /u/{id}", "GET /u/{rest...}"),
    ("GET /u", "GET /u/"),
])
def test_routes_that_do_not_collide(tmp_path: Path, lines: tuple[str, str]) -> None:
    config = load(tmp_path, EDGE, {"a.yaml": route(lines[0]), "b.yaml": route(lines[1])})
    assert [r.name for r in config.routes] == list(lines)


def test_all_problems_in_all_files_are_reported(tmp_path: Path) -> None:
    edge_yaml = EDGE + "devices:\n  default: fridge\n"
    routes = {
        "a.yaml": "route: [\n",
        "b.yaml": route("GET /b", extra="auth: {jwt: required, allow: [{claim: sub}]}\n"),
        "c.yaml": "routes:\n  - route: GET /c\n    source: {service: nope, path: /c}\n"
                  "  - route: FETCH /c\n    source: {service: s, path: /c}\n",
        "d.yaml": route("GET /d/{x}", extra="extra: 1\n"),
        "e.yaml": route("GET /e/{id}"),
        "f.yaml": route("GET /e/{other}"),
    }
    assert problems(tmp_path, edge_yaml, routes) == [
        "edge.yaml:5:12: error: devices.default: 'fridge' is not one of devices.classes",
        "routes/a.yaml:2:1: error: invalid YAML: expected the node content, but found "
        "'<stream end>'",
        "routes/b.yaml:3:13: error: GET /b: auth needs `auth.jwt` in edge.yaml",
        "routes/b.yaml:3:31: error: GET /b: auth.allow[0]: give exactly one of `equals` or "
        "`contains`",
        "routes/c.yaml:3:23: error: GET /c: source.service: unknown service 'nope' "
        "(services: s)",
        "routes/c.yaml:4:12: error: routes[1].route: expected 'METHOD /path' with METHOD one "
        "of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or *, got 'FETCH /c'",
        "routes/d.yaml:3:1: error: extra: unknown key",
        "routes/f.yaml:1:1: error: route 'GET /e/{other}' collides with 'GET /e/{id}' defined "
        "at routes/e.yaml:1",
    ]


def test_invalid_edge_yaml_skips_checks_that_depend_on_it(tmp_path: Path) -> None:
    # Unknown services aren't reported while edge.yaml itself is broken: they'd be noise.
    routes = {"a.yaml": route("GET /a"), "b.yaml": route("GET /b", extra="extra: 1\n")}
    assert problems(tmp_path, EDGE + "listen: {port: x}\n", routes) == [
        "edge.yaml:4:16: error: listen.port: Input should be a valid integer, unable to parse "
        "string as an integer, got 'x'",
        "routes/b.yaml:3:1: error: extra: unknown key",
    ]


def test_routes_without_edge_yaml_have_no_services(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "a.yaml").write_text(route("GET /a"))
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path, {})
    assert exc.value.problems == [
        f"{tmp_path}/routes/a.yaml:2:19: error: GET /a: source.service: unknown service 's' "
        "(services: none defined)"]


def test_empty_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path, {})
    assert exc.value.problems == [f"{tmp_path}:1:1: error: no edge.yaml or routes/ directory here"]


# ---------------------------------------------------------------------------- loading ok


def test_bundled_config_loads() -> None:
    config = load_config(BUNDLED, {"EDGE_JWT_SECRET": "x"})
    names = [r.name for r in config.routes]
    assert len(names) > 10
    assert len(set(names)) == len(names)
    used = {s.service for r in config.routes
            for s in ([r.model.source] if r.model.source else (r.model.sources or {}).values())}
    assert used <= set(config.edge.services)
    assert "GET /api/v1/members/{member_id}" in names


def test_single_route_and_routes_list(tmp_path: Path) -> None:
    routes = {
        "one.yaml": route("GET /one/{id}", path="/x/{id}"),
        "many.yaml": """\
            routes:
              - route: GET /many
                source: {service: s, path: /m}
              - route: POST /many
                source: {service: s, path: /m}
            """,
    }
    config = load(tmp_path, EDGE, routes)
    got = [(r.name, Path(r.file).name, r.line) for r in config.routes]
    assert got == [("GET /many", "many.yaml", 2), ("POST /many", "many.yaml", 4),
                   ("GET /one/{id}", "one.yaml", 1)]
    assert config.routes[2].upstream_path.build({"id": "7"}) == "/x/7"


@pytest.mark.parametrize("text", ["", "# nothing here yet\n", "---\n"])
def test_empty_route_file_is_ignored(tmp_path: Path, text: str) -> None:
    config = load(tmp_path, EDGE, {"a.yaml": route("GET /a"), "empty.yaml": text})
    assert [r.name for r in config.routes] == ["GET /a"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("1.5s", 1.5), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0),
    ("0s", 0.0), ("0", 0.0), ("0.0", 0.0), ("' 5 s '", 5.0),
])
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    config = load(tmp_path, f"drain_timeout: {text}\n", {})
    assert config.edge.drain_timeout == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("64KiB", 65536), ("10MB", 10_000_000), ("10MiB", 10 * 1024 * 1024), ("1GB", 10**9),
    ("512B", 512), ("512", 512), ("8 KiB", 8192),
])
def test_sizes(tmp_path: Path, text: str, size: int) -> None:
    config = load(tmp_path, f"limits: {{max_request_body: {text}}}\n", {})
    assert config.edge.limits.max_request_body == size


@pytest.mark.parametrize(("edge_yaml", "env", "url"), [
    ("", {}, None),
    ("", {"EDGE_REDIS_URL": ""}, None),
    ("", {"EDGE_REDIS_URL": "redis://r:6379/0"}, "redis://r:6379/0"),
    ("backend: {redis_url_env: MY_REDIS}\n",
     {"MY_REDIS": "redis://mine/1", "EDGE_REDIS_URL": "redis://r/0"}, "redis://mine/1"),
    ("backend: {redis_url_env: MY_REDIS}\n", {"EDGE_REDIS_URL": "redis://r/0"}, None),
    ("backend: {redis_url_env: null}\n", {"EDGE_REDIS_URL": "redis://r/0"}, None),
])
def test_redis_url(tmp_path: Path, edge_yaml: str, env: dict[str, str],
                   url: str | None) -> None:
    assert load(tmp_path, edge_yaml, {}, env).redis_url() == url


# ------------------------------------------------------------------------------- the CLI


def test_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tmp_path, EDGE, {"a.yaml": route("GET /a"), "b.yaml": route("POST /a")})
    assert main(["check", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{tmp_path}: ok (1 services, 2 routes)\n"


def test_check_bundled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--no-env", str(BUNDLED)]) == 0
    assert capsys.readouterr().out.startswith(f"{BUNDLED}: ok (")


def test_check_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tmp_path, "listen:\n  prot: 1\n", {"a.yaml": route("FETCH /a")})
    assert main(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{tmp_path}/edge.yaml:2:3: error: listen.prot: unknown key",
        f"{tmp_path}/routes/a.yaml:1:8: error: route: expected 'METHOD /path' with METHOD one "
        "of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or *, got 'FETCH /a'",
    ]
    assert err == "2 problem(s)\n"


def test_routes_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tmp_path, EDGE_JWT, {
        "a.yaml": route("GET /m/{id}", path="/members/{id}", extra="""\
            auth:
              jwt: required
              allow: [{claim: sub, equals: '{id}'}]
            query: {pass: [page]}
            """),
        "b.yaml": route("POST /a", extra="auth: {jwt: 'off', forward_token: true}\n"),
    })
    assert main(["routes", "--wide", "--config", str(tmp_path)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [cells[:4] for cells in lines] == [
        ["ROUTE", "SOURCE", "AUTH", "QUERY"],
        ["POST", "/a", "s:/a", "off"],
        ["GET", "/m/{id}", "s:/members/{id}", "required"],
    ]
    assert lines[1][4:] == ["+token", "all", "-", lines[1][-1]]
    assert lines[2][4:] == ["allow:1", "page", "-", lines[2][-1]]
    assert lines[1][-1].endswith("routes/b.yaml:1") and lines[2][-1].endswith("routes/a.yaml:1")


def test_routes_with_bad_config_exits_1(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    write_config(tmp_path, "listen:\n  prot: 1\n", {})
    with pytest.raises(SystemExit) as exc:
        main(["routes", "--config", str(tmp_path)])
    assert exc.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path}/edge.yaml:2:3: error: listen.prot: unknown key",
        f"edge: 1 problem(s) in {tmp_path}",
    ]
