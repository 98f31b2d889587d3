"""Checks across a config: what one model can't see by itself.

Device classes, keymaps, `auth.jwt`, allow-rule parameters, the source DAG, cache tags,
app keys and route collisions. Each check appends `file:line:col: error: ...` (or
`warning`) lines and says whether the route may be kept. Blocks that compile into
shapers are checked by the shapers themselves (their `from_policy`, called by the loader);
nothing here builds one.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import yamlpos
from ..routing import PLACEHOLDER, BadPath, PathBuilder, RouteTable, Template, split_path
from ..yamlpos import dotted
from .models import (
    UNSAFE_METHODS,
    AggregateSource,
    AllowRule,
    ApiKey,
    ApiKeys,
    EdgeFile,
    RateLimit,
    Route,
    RouteSpec,
    Source,
)

_KEYMAP_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def check_edge(edge: EdgeFile, pos: yamlpos.Positions, root: Path) -> list[str]:
    problems = []
    keys = edge.auth.api_keys
    if keys is not None and keys.header.lower() != edge.rate_limits.api_key_header.lower():
        # one header carries the app key: the limiter must count the one the edge verifies
        key_at = ("rate_limits", "api_key_header") \
            if "api_key_header" in edge.rate_limits.model_fields_set else ("auth", "api_keys")
        problems.append(f"{pos.where(key_at)}: error: {dotted(key_at)}: the key check reads "
                        f"'{keys.header}' (auth.api_keys.header) but the rate limits read "
                        f"'{edge.rate_limits.api_key_header}' (rate_limits.api_key_header); "
                        "set them alike")
    push = edge.push
    if push is not None:
        if edge.events is None:
            problems.append(f"{pos.where(('push',), key=True)}: error: push: delivers "
                            "events published to topics: it needs `events`")
        if push.webpush is None and push.apns is None and push.fcm is None:
            problems.append(f"{pos.where(('push',), key=True)}: error: push: give at least "
                            "one of webpush, apns, fcm")
        for device in push.by_device:
            if device not in edge.devices.classes:
                problems.append(f"{pos.where(('push', 'by_device', device), key=True)}: "
                                f"error: push.by_device: '{device}' is not one of "
                                "devices.classes")
        for kind in ("webpush", "apns", "fcm"):
            block = getattr(push, kind)
            if block is None:
                continue
            env_key, file_key = block.KEY
            if not getattr(block, env_key) and not getattr(block, file_key):
                problems.append(f"{pos.where(('push', kind), key=True)}: error: push.{kind}: "
                                f"give {env_key} (an env var's name) or {file_key}")
    if edge.devices.default not in edge.devices.classes:
        problems.append(f"{pos.where(('devices', 'default'))}: error: devices.default: "
                        f"'{edge.devices.default}' is not one of devices.classes")
    for i, rule in enumerate(edge.devices.user_agent):
        if rule.device not in edge.devices.classes:
            problems.append(
                f"{pos.where(('devices', 'user_agent', i, 'device'))}: error: "
                f"devices.user_agent[{i}].device: '{rule.device}' is not one of "
                "devices.classes")
    for name, table in edge.keymaps.items():
        where = pos.where(("keymaps", name), key=True)
        if not _KEYMAP_NAME.match(name):
            problems.append(f"{where}: error: keymaps.{name}: a keymap name is lower-case "
                            "letters, digits, '.', '_' or '-', e.g. 'claims-v1'")
        seen: dict[str, str] = {}
        for long, short in table.items():
            at = f"{pos.where(('keymaps', name, long), key=True)}: error: keymaps.{name}:"
            if short in seen:
                problems.append(f"{at} '{long}' and '{seen[short]}' both shorten to '{short}'")
            elif short in table and table[short] != short and short != long:
                problems.append(f"{at} '{long}' shortens to '{short}', which is itself a key "
                                "being shortened (expanding would be ambiguous)")
            seen[short] = long
    _check_limits(edge.rate_limits.defaults, ("rate_limits", "defaults"), "", pos, edge,
                  problems)
    jwt = edge.auth.jwt
    if jwt is not None:
        needs_secret = any(a.startswith("HS") for a in jwt.algorithms)
        needs_keys = any(not a.startswith("HS") for a in jwt.algorithms)
        if needs_secret and not jwt.secret_env:
            problems.append(f"{pos.where(('auth', 'jwt', 'algorithms'))}: error: "
                            "auth.jwt: HS* algorithms need `secret_env` (an env var name)")
        if needs_keys and not (jwt.public_key_files or jwt.jwks_file):
            problems.append(f"{pos.where(('auth', 'jwt', 'algorithms'))}: error: auth.jwt: "
                            "RS*/ES*/PS*/EdDSA need `public_key_files` or `jwks_file`")
        files: list[tuple[tuple[Any, ...], str]] = [(("auth", "jwt", "public_key_files", i), f)
                 for i, f in enumerate(jwt.public_key_files)]
        if jwt.jwks_file:
            files.append((("auth", "jwt", "jwks_file"), jwt.jwks_file))
        for p, f in files:
            if not (root / f).is_file():
                problems.append(f"{pos.where(p)}: error: {dotted(p)}: no such file {f!r}")
    return problems


@dataclass(frozen=True)
class PlacedKey:
    """A loaded app key and where it was written."""

    key: ApiKey
    pos: yamlpos.Positions
    path: tuple[Any, ...]

    def where(self, *sub: Any) -> str:
        return self.pos.where((*self.path, *sub))

    @property
    def label(self) -> str:
        return dotted(self.path)


def check_keys(placed: list[PlacedKey], cfg: ApiKeys) -> list[str]:
    """App keys: unique names and hashes, known tiers, a validity window that isn't empty."""
    problems: list[str] = []
    names: dict[str, PlacedKey] = {}
    hashes: dict[str, PlacedKey] = {}
    tiers = ", ".join(cfg.tiers) or "none defined"
    for p in placed:
        k = p.key
        if k.name in names:
            problems.append(f"{p.where('name')}: error: {p.label}.name: '{k.name}' is already "
                            f"the name of the key at {names[k.name].where('name')}")
        if k.hash in hashes:
            problems.append(f"{p.where('hash')}: error: {p.label}.hash: the same key as "
                            f"'{hashes[k.hash].key.name}' ({hashes[k.hash].where('hash')})")
        names.setdefault(k.name, p)
        hashes.setdefault(k.hash, p)
        if k.tier is not None and k.tier not in cfg.tiers:
            problems.append(f"{p.where('tier')}: error: {p.label}.tier: '{k.tier}' is not one "
                            f"of auth.api_keys.tiers ({tiers})")
        if k.not_before and k.expires and k.expires <= k.not_before:
            problems.append(f"{p.where('expires')}: error: {p.label}.expires: must be after "
                            "not_before")
    return problems


def check_key_routes(keys: list[PlacedKey], routes: list[RouteSpec]) -> list[str]:
    problems = []
    names = [r.name for r in routes]
    for p in keys:
        for i, pattern in enumerate(p.key.routes):
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                problems.append(f"{p.where('routes', i)}: error: {p.label}.routes[{i}]: "
                                f"'{pattern}' matches no route")
    return problems


def check_route(model: Route, kind: str, method: str, template: Template, p: tuple[Any, ...],
                pos: yamlpos.Positions, edge: EdgeFile | None, problems: list[str]) -> bool:
    """A route against itself and edge.yaml (`edge` is None when edge.yaml failed);
    `kind` is which of ROUTE_KINDS it is."""
    name = f"{method} {template.text}"
    ok = True
    if model.example is not None and not _example_matches(model.example, template):
        problems.append(f"{pos.where((*p, 'example'))}: error: {name}: example "
                        f"{model.example!r} is not a path this route answers")
        ok = False
    if model.batch is not None or model.offline_queue is not None:
        ok = _check_batch(model, kind, method, name, template, p, pos, problems)
    elif model.source is not None:
        ok = _check_source(model.source, (*p, "source"), "source", name, template, None,
                           pos, edge, problems)
    else:
        assert model.sources is not None
        ok = _check_sources(model, method, name, template, p, pos, edge, problems)
    if edge is not None and model.auth.jwt != "off" and edge.auth.jwt is None:
        if model.auth.jwt == "required" or model.auth.allow:
            problems.append(f"{pos.where((*p, 'auth', 'jwt'))}: error: {name}: auth needs "
                            "`auth.jwt` in edge.yaml")
            ok = False
    if edge is not None and model.auth.api_key != "off" and edge.auth.api_keys is None:
        problems.append(f"{pos.where((*p, 'auth', 'api_key'))}: error: {name}: auth.api_key "
                        "needs `auth.api_keys` in edge.yaml")
        ok = False
    ok = _check_rules(model.auth.allow, (*p, "auth", "allow"), name, template, pos,
                      problems) and ok
    if model.image is not None:
        ip = (*p, "image")
        if method != "GET" or model.source is None:
            problems.append(f"{pos.where(ip, key=True)}: error: {name}: `image` is for GET "
                            "routes with one `source`")
            ok = False
        for other in ("shape", "cache"):
            if other in model.model_fields_set:
                problems.append(f"{pos.where((*p, other), key=True)}: error: {name}: `{other}` "
                                "does not apply to an `image` route")
                ok = False
        if not model.image.widths or sorted(set(model.image.widths)) != model.image.widths:
            problems.append(f"{pos.where((*ip, 'widths'))}: error: {name}: image.widths: "
                            "distinct widths, smallest first")
            ok = False
    if model.republish is not None:
        rp = (*p, "republish")
        if method != "GET" or model.source is None or template.params:
            problems.append(f"{pos.where(rp, key=True)}: error: {name}: `republish` is for "
                            "GET routes with one `source` and no path parameters")
            ok = False
        if edge is not None and edge.events is None:
            problems.append(f"{pos.where(rp)}: error: {name}: republish: needs `events` in "
                            "edge.yaml (the topics apps follow)")
            ok = False
    if model.websocket is not None:
        wp = (*p, "websocket")
        if method != "GET" or model.source is None:
            problems.append(f"{pos.where(wp, key=True)}: error: {name}: `websocket` is for "
                            "GET routes with one `source`")
            ok = False
        for other in ("shape", "cache", "image", "idempotency"):
            if getattr(model, other) is not None:
                problems.append(f"{pos.where((*p, other), key=True)}: error: {name}: "
                                f"`{other}` does not apply to a `websocket` route")
                ok = False
        for i, origin in enumerate(model.websocket.origins):
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                problems.append(f"{pos.where((*wp, 'origins', i))}: error: {name}: "
                                f"websocket.origins: {origin!r} is not an origin like "
                                "'https://app.example.com' (or '*')")
                ok = False
    if model.idempotency is not None and method not in UNSAFE_METHODS:
        problems.append(f"{pos.where((*p, 'idempotency'), key=True)}: error: {name}: "
                        "idempotency is for POST, PUT, PATCH and DELETE routes")
        ok = False
    ok = _check_cache(model, method, name, template, p, pos, problems) and ok
    if model.rate_limit is not None and edge is not None:
        ok = _check_limits(model.rate_limit, (*p, "rate_limit"), name, pos, edge,
                           problems) and ok
    ok = _check_objects(model, method, name, template, p, pos, problems) and ok
    if model.auth.allow and model.auth.jwt != "required":
        problems.append(f"{pos.where((*p, 'auth', 'allow'))}: error: {name}: auth.allow "
                        "needs `jwt: required`")
        ok = False
    return ok


def _check_rules(rules: list[AllowRule], at: tuple[Any, ...], name: str, template: Template,
                 pos: yamlpos.Positions, problems: list[str]) -> bool:
    """Claim rules (`allow`, and the object rules' `unless`): one of equals or contains,
    and only the route's own parameters in them."""
    ok = True
    for i, rule in enumerate(rules):
        rp = (*at, i)
        label = f"{name}: {dotted(rp[at.index('auth'):])}"
        if (rule.equals is None) == (rule.contains is None):
            problems.append(f"{pos.where(rp)}: error: {label}: give exactly one of `equals` "
                            "or `contains`")
            ok = False
        for value in (rule.equals, rule.contains):
            for m in re.finditer(r"\{([^}]*)\}", value or ""):
                if m.group(1) not in template.params:
                    problems.append(f"{pos.where(rp)}: error: {label}: '{{{m.group(1)}}}' is "
                                    "not a parameter of the route")
                    ok = False
    return ok


def _check_objects(model: Route, method: str, name: str, template: Template,
                   p: tuple[Any, ...], pos: yamlpos.Positions, problems: list[str]) -> bool:
    """auth.owner and auth.body, and the warning for a route whose objects anyone with a
    token may reach."""
    auth, ok = model.auth, True
    ap = (*p, "auth")
    rules: list[tuple[tuple[Any, ...], str, str | None, str | None]] = []
    if auth.owner is not None:
        o = auth.owner
        rules.append(((*ap, "owner"), o.field, o.claim, o.param))
        if (o.claim is None) == (o.param is None):
            problems.append(f"{pos.where((*ap, 'owner'))}: error: {name}: auth.owner: give "
                            "exactly one of `claim` or `param`")
            ok = False
        if o.param is not None and o.param not in template.params:
            problems.append(f"{pos.where((*ap, 'owner', 'param'))}: error: {name}: "
                            f"auth.owner.param: {o.param!r} is not a parameter of the route")
            ok = False
        if model.sources is not None or model.image is not None:
            problems.append(f"{pos.where((*ap, 'owner'), key=True)}: error: {name}: "
                            "auth.owner is for routes with one JSON `source`")
            ok = False
    for i, b in enumerate(auth.body):
        rules.append(((*ap, "body", i), b.field, b.claim, None))
        if method not in UNSAFE_METHODS:
            problems.append(f"{pos.where((*ap, 'body', i))}: error: {name}: auth.body is for "
                            "POST, PUT, PATCH and DELETE routes")
            ok = False
    if model.batch is not None or model.offline_queue is not None:
        if rules:
            problems.append(f"{pos.where(ap, key=True)}: error: {name}: object rules go on "
                            "the routes a batch's items reach, not on the batch")
            ok = False
    for rp, pointer, _, _ in rules:
        if not pointer.startswith("/") or pointer == "/":
            problems.append(f"{pos.where((*rp, 'field'))}: error: {name}: a JSON pointer "
                            f"like '/member_id' is expected, got {pointer!r}")
            ok = False
        if auth.jwt != "required":
            problems.append(f"{pos.where(rp)}: error: {name}: object rules need "
                            "`jwt: required`")
            ok = False
    for where, unless in ([((*ap, "owner"), auth.owner.unless)] if auth.owner else []) + \
            [((*ap, "body", i), b.unless) for i, b in enumerate(auth.body)]:
        ok = _check_rules(unless, (*where, "unless"), name, template, pos, problems) and ok
    if (auth.jwt == "required" and template.params and not auth.allow and auth.owner is None
            and not auth.unowned and model.batch is None and model.offline_queue is None):
        problems.append(
            f"{pos.where((*p, 'route'))}: warning: {name}: any caller with a valid token "
            f"reaches every {{{template.params[0]}}}: add `auth.allow` (the path names the "
            "owner) or `auth.owner` (the answer does), or say why not with `auth.unowned`")
    return ok


def _check_limits(limits: list[RateLimit], lp: tuple[Any, ...], name: str,
                  pos: yamlpos.Positions, edge: EdgeFile, problems: list[str]) -> bool:
    ok = True
    seen: set[str] = set()
    for i, limit in enumerate(limits):
        label = f"{name}: rate_limit[{i}]" if name else f"rate_limits.defaults[{i}]"
        if limit.name is not None:
            if limit.name in seen or not re.match(r"^[A-Za-z0-9._:-]{1,64}$", limit.name):
                problems.append(f"{pos.where((*lp, i, 'name'))}: error: {label}: name "
                                f"{limit.name!r} must be unique here and look like "
                                "'per-device' (letters, digits, . _ : -)")
                ok = False
            seen.add(limit.name)
        kinds = limit.key if isinstance(limit.key, list) else [limit.key]
        if not kinds or len(set(kinds)) != len(kinds):
            problems.append(f"{pos.where((*lp, i, 'key'))}: error: {label}: key lists each "
                            "kind once")
            ok = False
        for device in limit.per_device:
            if device not in edge.devices.classes:
                problems.append(f"{pos.where((*lp, i, 'per_device', device), key=True)}: "
                                f"error: {label}: '{device}' is not one of devices.classes "
                                f"({', '.join(edge.devices.classes)})")
                ok = False
        tiers = edge.auth.api_keys.tiers if edge.auth.api_keys else []
        for tier in limit.per_tier:
            if tier not in tiers:
                problems.append(f"{pos.where((*lp, i, 'per_tier', tier), key=True)}: "
                                f"error: {label}: '{tier}' is not one of auth.api_keys.tiers "
                                f"({', '.join(tiers) or 'none defined'})")
                ok = False
    return ok


def _check_tags(tags: list[str], where: str, label: str, name: str, template: Template,
                problems: list[str]) -> bool:
    ok = True
    for tag in tags:
        stripped = PLACEHOLDER.sub("", tag)
        if not tag or any(c in stripped for c in "{} ,\t"):
            problems.append(f"{where}: error: {name}: {label}: {tag!r} is not a tag (no "
                            "spaces, commas or stray braces)")
            ok = False
        for m in PLACEHOLDER.finditer(tag):
            if m.group(1) not in template.params or m.group(2):
                problems.append(f"{where}: error: {name}: {label}: '{m.group(0)}' is not a "
                                "parameter of the route")
                ok = False
    return ok


def _check_cache(model: Route, method: str, name: str, template: Template,
                 p: tuple[Any, ...], pos: yamlpos.Positions, problems: list[str]) -> bool:
    ok = True
    if model.invalidates:
        where = pos.where((*p, "invalidates"))
        if method not in UNSAFE_METHODS and method != "*":
            problems.append(f"{where}: error: {name}: `invalidates` is for POST, PUT, PATCH "
                            "and DELETE routes (a GET changes nothing)")
            ok = False
        ok = _check_tags(model.invalidates, where, "invalidates", name, template,
                         problems) and ok
    cache = model.cache
    if cache is None:
        return ok
    cp = (*p, "cache")
    if method != "GET" and not (method == "*" and "GET" in (model.methods or ("GET",))):
        problems.append(f"{pos.where(cp, key=True)}: error: {name}: only GET routes are "
                        "cached")
        ok = False
    if cache.scope == "public" and model.auth.jwt == "required":
        problems.append(f"{pos.where((*cp, 'scope'))}: error: {name}: cache.scope: a CDN "
                        "would serve a public answer without checking the token; use "
                        "`private` (or make the route's auth `off`)")
        ok = False
    elif model.auth.api_key == "required" and cache.scope == "public":
        problems.append(f"{pos.where((*cp, 'scope'))}: error: {name}: cache.scope: a public "
                        "answer would be served (by the edge's fast lane, and by CDNs) "
                        "without checking the app key; set `scope: private`")
        ok = False
    if cache.ttl is not None and cache.ttl <= 0:
        problems.append(f"{pos.where((*cp, 'ttl'))}: error: {name}: cache.ttl must be more "
                        "than 0")
        ok = False
    return _check_tags(cache.tags, pos.where((*cp, "tags")), "cache.tags", name, template,
                       problems) and ok


def _check_batch(model: Route, kind: str, method: str, name: str, template: Template,
                 p: tuple[Any, ...], pos: yamlpos.Positions, problems: list[str]) -> bool:
    ok = True
    if method != "POST" or template.params:
        problems.append(f"{pos.where((*p, 'route'))}: error: {name}: a `{kind}` route is "
                        "`POST /a/fixed/path`")
        ok = False
    for other in ("query", "shape", "compression", "idempotency", "cache", "invalidates"):
        if other in model.model_fields_set:
            problems.append(f"{pos.where((*p, other), key=True)}: error: {name}: `{other}` "
                            f"does not apply to a `{kind}` route (each sub-request follows "
                            "its own route)")
            ok = False
    return ok


def _check_source(src: Source, sp: tuple[Any, ...], label: str, name: str, template: Template,
                  sources: dict[str, AggregateSource] | None, pos: yamlpos.Positions,
                  edge: EdgeFile | None, problems: list[str]) -> bool:
    ok = True
    where = pos.where((*sp, "path"))
    if edge is not None and src.service not in edge.services:
        known = ", ".join(sorted(edge.services)) or "none defined"
        problems.append(f"{pos.where((*sp, 'service'))}: error: {name}: {label}.service: "
                        f"unknown service '{src.service}' (services: {known})")
        ok = False
    for m in PLACEHOLDER.finditer(src.path):
        ref, dotted = m.group(1), m.group(2) not in ("", "...")
        if sources is not None and (dotted or ref in sources):
            if ref not in sources:
                problems.append(f"{where}: error: {name}: {label}.path uses '{m.group(0)}' "
                                f"but there is no source '{ref}'")
                ok = False
        elif dotted:
            problems.append(f"{where}: error: {name}: {label}.path uses '{m.group(0)}': only "
                            "a route with `sources` can refer to another source's body")
            ok = False
        elif ref not in template.params:
            problems.append(f"{where}: error: {name}: {label}.path uses '{{{ref}}}' but the "
                            "route has no such parameter")
            ok = False
    stripped = PLACEHOLDER.sub("", src.path)
    for raw in ("{", "}"):
        if raw in stripped:
            problems.append(f"{where}: error: {name}: {label}.path has an unbalanced '{raw}'")
            ok = False
            break
    return ok


def source_deps(sources: Mapping[str, AggregateSource]) -> dict[str, set[str]]:
    """Which sources each source waits for: those its path reads (`{claims.0.id}`)."""
    deps = {}
    for n, s in sources.items():
        builder = PathBuilder.compile(s.path)
        deps[n] = {r for r in builder.refs if r in sources} | {
            p for p in builder.params if p in sources and p != n}
    return deps


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt in graph and not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


def _check_sources(model: Route, method: str, name: str, template: Template,
                   p: tuple[Any, ...], pos: yamlpos.Positions, edge: EdgeFile | None,
                   problems: list[str]) -> bool:
    sources = model.sources
    assert sources is not None
    ok = True
    if method not in ("GET", "HEAD"):
        problems.append(f"{pos.where((*p, 'sources'), key=True)}: error: {name}: `sources` "
                        "compose reads; a route with several sources must be GET")
        ok = False
    if not sources:
        problems.append(f"{pos.where((*p, 'sources'))}: error: {name}: `sources` is empty")
        return False
    for src_name, src in sources.items():
        sp = (*p, "sources", src_name)
        ok = _check_source(src, sp, f"sources.{src_name}", name, template, sources, pos, edge,
                           problems) and ok
        if src.into is not None and (src.into not in sources or src.into == src_name):
            problems.append(f"{pos.where((*sp, 'into'))}: error: {name}: sources.{src_name}."
                            f"into: '{src.into}' is not another source of this route")
            ok = False
        if src.pick is not None and src.pick and not src.pick.startswith("/"):
            problems.append(f"{pos.where((*sp, 'pick'))}: error: {name}: sources.{src_name}."
                            f"pick: a JSON pointer starts with '/', got {src.pick!r}")
            ok = False
    deps = {n: {d for d in ds if d in sources} for n, ds in source_deps(sources).items()}
    cycle = _cycle(deps)
    if cycle:
        problems.append(f"{pos.where((*p, 'sources'), key=True)}: error: {name}: sources wait "
                        f"for each other in a cycle: {' -> '.join(cycle)}")
        ok = False
    nesting = {n: {s.into} for n, s in sources.items() if s.into in sources}
    cycle = _cycle(nesting)
    if cycle:
        problems.append(f"{pos.where((*p, 'sources'), key=True)}: error: {name}: sources "
                        f"nest into each other in a cycle: {' -> '.join(cycle)}")
        ok = False
    return ok


def check_collisions(routes: list[RouteSpec]) -> list[str]:
    problems = []
    seen: dict[tuple[str, Any], RouteSpec] = {}
    for spec in routes:
        for method in spec.methods:
            key = (method, spec.template.shape)
            first = seen.get(key)
            if first is not None:
                problems.append(
                    f"{spec.file}:{spec.line}:1: error: route '{spec.name}' collides with "
                    f"'{first.name}' defined at {first.file}:{first.line}")
                break
            seen[key] = spec
    return problems


def _example_matches(example: str, template: Template) -> bool:
    path = example.partition("?")[0].partition("#")[0]
    table: RouteTable[bool] = RouteTable()
    table.add("GET", template, True)
    try:
        return table.match("GET", split_path(path)).route is not None
    except BadPath:
        return False
