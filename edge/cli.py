"""edge — serve · check · routes · demo · schema · token · apikey."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import allocator
from .aio import stop as stop_task
from .config import Config, ConfigError, Route, json_schemas, load_config
from .config.env import env_problems
from .errors import os_reason

DEFAULT_CONFIG = "config"
if TYPE_CHECKING:
    from .app import EdgeApp

DEMO_IMAGE_KEY = "demo-image-signing-key-change-me-0123456789"
DEMO_PUBLISHER_KEY = "demo-publisher-key-change-me"
DEMO_SECRET = "edge-demo-secret-not-for-production"
# The demo's VAPID key (Web Push): published here, so it signs nothing anyone should trust.
DEMO_VAPID_KEY = "qF1VfNqvmWcX4G2XzvZ0fZ2n6k2mQ2O3w8Hq6N0GZ9Y"
# The demo's app keys (config/api-keys.yaml holds only their hashes). Never publish a real one.
DEMO_APP_KEY = "edge_demo-app-key-not-a-secret-0123456789"
DEMO_WIDGET_KEY = "edge_demo-widget-key-not-a-secret-012345"


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# Exit codes (the README's table): what a script or an orchestrator can act on.
EXIT_OK = 0
EXIT_CONFIG = 1  # the config, or the environment it needs: file:line:col lines say what
EXIT_USAGE = 2  # the command line
EXIT_LISTEN = 3  # the address can't be listened on (in use, not allowed, not this host's)
EXIT_BACKEND = 4  # Redis did not answer at start and `backend.at_start: refuse`
EXIT_INTERNAL = 70  # a bug: one line here, the traceback with EDGE_DEBUG=1
EXIT_INTERRUPTED = 130  # Ctrl-C before the edge was serving


class Refused(Exception):
    """The edge can't serve, for a reason a person can act on: one line, one exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _load_or_exit(config_dir: str, *, check_env: bool = True) -> Config:
    """The config, or exit 1 with its problems (and, for commands that serve, those of
    the environment it needs: secrets set and long enough, files readable)."""
    try:
        config = load_config(config_dir)
    except ConfigError as e:
        problems = e.problems
    else:
        problems = env_problems(config) if check_env else []
        if not problems:
            return config
    for p in problems:
        print(p, file=sys.stderr)
    print(f"edge: {len(problems)} problem(s) in {config_dir}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


async def _serve(config: Config, host: str, port: int, *, reuse_port: bool = False,
                 before: Callable[[], Awaitable[object]] | None = None,
                 announce: Callable[[str], None] | None = None,
                 on_start: Callable[[EdgeApp], asyncio.Task[None] | None] | None = None
                 ) -> None:
    """Serve until SIGTERM or SIGINT. `on_start(edge)` may start a task of its own: it is
    stopped before the edge closes."""
    from aiohttp import web

    from .app import EdgeApp, setup_logging

    setup_logging()
    log = logging.getLogger("edge")
    allocator.tune()  # before edge.start() starts threads (allocator.py says why)
    edge = EdgeApp(config)
    await edge.start()
    runner = web.ServerRunner(edge.make_server(), handle_signals=False,
                              shutdown_timeout=config.edge.drain_timeout)
    try:
        await _backend_at_start(edge, config)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048,
                           shutdown_timeout=config.edge.drain_timeout)
        try:
            await site.start()
        except OSError as e:
            raise Refused(EXIT_LISTEN, f"cannot listen on {host}:{port}: "
                          f"{_why(e)} (listen: in edge.yaml, or --host/--port)") from None
    except BaseException:
        await runner.cleanup()
        await edge.close()
        raise
    # Everything loaded so far (config models, libraries) lives as long as the process:
    # keep it out of the cyclic GC's scans, and collect young objects less often. The
    # request path allocates heavily but rarely makes cycles, so this is cheap in memory
    # and worth ~10% of throughput.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    trimmer = allocator.Trimmer()
    trimmer.start()
    url = f"http://{host}:{runner.addresses[0][1]}"  # the port bound, when asked for 0
    log.info("edge %d listening on %s (%d routes)", os.getpid(), url, len(config.routes))
    extra = on_start(edge) if on_start else None
    if announce:
        announce(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, edge.state.reloader.trigger)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    try:
        await stop.wait()
    finally:
        log.info("edge %d draining (up to %gs)", os.getpid(), config.edge.drain_timeout)
        edge.drain_streams()  # event streams end now (their clients reconnect elsewhere)
        await stop_task(extra)
        await trimmer.close()
        # WebSockets get the drain to end on their own, then 1001 (going away) while the
        # server still holds their connections (it cuts what is left at the deadline)
        going_away = asyncio.ensure_future(
            _close_sockets_after(edge, config.edge.drain_timeout - 0.5))
        await runner.cleanup()
        await stop_task(going_away)
        await edge.close()


_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


async def _close_sockets_after(edge: EdgeApp, seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))
    await edge.state.sockets.close()


_why = os_reason


async def _backend_at_start(edge: EdgeApp, config: Config) -> None:
    """With a Redis URL set: does Redis answer? If not, serve degraded and say so once
    (limits per instance, cache in memory, no fan-out, until it answers), or refuse,
    as `backend.at_start` says."""
    url = config.redis_url()
    if url is None:
        return
    try:
        async with asyncio.timeout(3):
            answered = await edge.state.backend.ping()
    except TimeoutError:
        answered = False
    if answered:
        return
    from .backends import redacted

    where = redacted(url)
    if config.edge.backend.at_start == "refuse":
        raise Refused(EXIT_BACKEND, f"Redis at {where} did not answer at start "
                      "(backend.at_start: refuse)")
    logging.getLogger("edge").warning(
        "Redis at %s did not answer at start: serving degraded (rate limits per instance "
        "as rate_limits.on_backend_failure says, cache misses, no cross-instance events) "
        "until it does", where)


def _worker(config_dir: str, host: str, port: int) -> None:
    # A signal that arrives while the worker starts waits until its handlers are in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    _install_uvloop()
    config = _load_or_exit(config_dir)
    try:
        asyncio.run(_serve(config, host, port, reuse_port=True))
    except Refused as e:
        print(f"edge: {e}", file=sys.stderr)
        raise SystemExit(e.code) from None


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    host = args.host or config.edge.listen.host
    port = config.edge.listen.port if args.port is None else args.port
    if args.workers <= 1:
        _install_uvloop()
        asyncio.run(_serve(config, host, port))
        return EXIT_OK
    if port == 0:
        print("edge: --workers needs a fixed port", file=sys.stderr)
        return EXIT_USAGE
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(args.config, host, port), daemon=False)
             for _ in range(args.workers)]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.pid and p.is_alive():
                os.kill(p.pid, signum)

    for s in _SIGNALS:
        signal.signal(s, forward)
    for p in procs:
        p.start()
    code = 0
    for p in procs:
        p.join()
        code = code or (p.exitcode or 0)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        problems = [] if args.no_env else env_problems(config)
    except ConfigError as e:
        problems = e.problems
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_CONFIG
    for w in config.warnings:
        print(w)
    print(f"{args.config}: ok ({len(config.edge.services)} services, "
          f"{len(config.routes)} routes" + (f", {len(config.warnings)} warning(s)"
                                           if config.warnings else "") + ")")
    return 1 if config.warnings and args.strict else 0


ROUTES_WIDTH = 100  # `edge routes` fits a 100-column terminal unless --wide


def cmd_routes(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config, check_env=False)
    rows: list[dict[str, Any]] = []
    for r in sorted(config.routes, key=lambda r: (r.template.text, r.method)):
        m = r.model
        auth = m.auth.jwt + (f" allow:{len(m.auth.allow)}" if m.auth.allow else "")
        if m.auth.forward_token:
            auth += " +token"
        if m.auth.api_key != "off":
            auth += f" key:{m.auth.api_key}"
        q = m.query.pass_
        query = q if isinstance(q, str) else ",".join(q)
        if m.query.rename or m.query.set:
            query += " (mapped)"
        if m.source is not None:
            timeout = f" ({m.source.timeout:g}s)" if m.source.timeout else ""
            source = f"{m.source.service}:{m.source.path}{timeout}"
        elif m.sources is not None:
            source = " + ".join(f"{n}={s.service}" for n, s in m.sources.items())
        else:
            source = "(batch)" if m.batch is not None else "(offline queue)"
        rows.append({"route": r.name, "source": source, "auth": auth, "query": query,
                     "cache": _cache_cell(m), "file": f"{os.path.relpath(r.file)}:{r.line}",
                     "kind": ("shaped" if r.shape is not None else "image" if m.image
                              else "pass-through") if m.source or m.sources else "batch",
                     "description": " ".join((m.description or "").split()),
                     "example": m.example})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    columns = ["route", "source", "auth", "query", "cache", "file"] if args.wide \
        else ["route", "source", "auth", "cache"]
    table = [[c.upper() for c in columns], *([row[c] for c in columns] for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    if not args.wide:
        widths = _fit(widths, ROUTES_WIDTH)
    for row in table:
        cells = [_clip(cell, w).ljust(w) for cell, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())
    return EXIT_OK


def _fit(widths: list[int], total: int) -> list[int]:
    """Narrow the widest columns until the row (with two spaces between) fits `total`:
    the others down to 20 characters, then the first (the route) down to 36, then the
    others down to 12, then anything."""
    widths = list(widths)
    for floor, start, stop in ((20, 1, None), (36, 0, 1), (12, 1, None), (8, 0, None)):
        while sum(widths) + 2 * (len(widths) - 1) > total:
            some = widths[start:stop]
            widest = max(some)
            if widest <= floor:
                break
            widths[start + some.index(widest)] -= 1
    return widths


def _clip(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[:width - 1] + "…"


def _cache_cell(m: Route) -> str:
    """What `edge routes` says about a route's caching (and anything overriding safety)."""
    parts = []
    c = m.cache
    if c is not None:
        scope = c.scope or ("private" if "required" in (m.auth.jwt, m.auth.api_key)
                            else "public/private")  # (anonymous / with credentials)
        parts.append(f"{scope} {c.ttl:g}s" if c.ttl is not None else f"{scope} origin")
        if c.stale_while_revalidate:
            parts.append(f"swr {c.stale_while_revalidate:g}s")
        if c.stale_if_error:
            parts.append(f"sie {c.stale_if_error:g}s")
        if c.override_upstream:
            parts.append("OVERRIDES upstream no-store/private/Set-Cookie")
    if m.image is not None:
        parts.append(f"image {'/'.join(m.image.formats)} {m.image.ttl:g}s")
    if m.invalidates:
        parts.append("purges " + ",".join(m.invalidates))
    if m.idempotency is not None:
        parts.append(f"idempotent {m.idempotency.ttl:g}s")
    return " ".join(parts) or "-"


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain

    config = _load_or_exit(args.config, check_env=False)
    jwt_cfg = config.edge.auth.jwt
    if jwt_cfg and jwt_cfg.secret_env and not os.environ.get(jwt_cfg.secret_env):
        # without the secret no token verifies (401, as the server would say); --demo
        # uses the demo's, like `edge token --demo`
        secret = DEMO_SECRET if args.demo else "x" * 32
        config = load_config(args.config, {**os.environ, jwt_cfg.secret_env: secret})
    return asyncio.run(explain(config, args.method, args.path, args.headers))


def cmd_schema(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(out / name)
    return 0


def make_token(secret: str, sub: str, roles: list[str], ttl: float) -> str:
    import jwt

    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


def cmd_token(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config, check_env=False)
    jwt_cfg = config.edge.auth.jwt
    if jwt_cfg is None or not jwt_cfg.secret_env:
        print("auth.jwt.secret_env is not configured", file=sys.stderr)
        return 2
    secret = os.environ.get(jwt_cfg.secret_env) or (DEMO_SECRET if args.demo else None)
    if not secret:
        print(f"set {jwt_cfg.secret_env} (or pass --demo for the demo's secret)",
              file=sys.stderr)
        return 2
    print(make_token(secret, args.sub, args.roles.split(",") if args.roles else [],
                     args.ttl))
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    from .policies.apikey import hash_key, key_problem, new_key

    if args.action == "new":
        import secrets

        key = new_key()
        print(f"""# the key, for the app (the edge keeps only its hash; don't commit it):
{key}
# paste under `keys:` (auth.api_keys in edge.yaml, or its file):
- name: {args.name or "app-" + secrets.token_hex(3)}
  hash: {hash_key(key)}""")
        return 0
    if sys.stdin.isatty():
        import getpass

        key = getpass.getpass("key (not echoed): ")
    else:
        key = sys.stdin.buffer.read().decode("utf-8", "replace")
    key = key.strip()
    problem = key_problem(key)
    if problem is not None:
        print(f"edge apikey hash: {problem}", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from yarl import URL

    from .demo.services import SERVICES

    config = _load_or_exit(args.config, check_env=False)
    jwt_cfg = config.edge.auth.jwt
    env_name = jwt_cfg.secret_env if jwt_cfg and jwt_cfg.secret_env else None
    if env_name and not os.environ.get(env_name):
        os.environ[env_name] = DEMO_SECRET
        config = _load_or_exit(args.config, check_env=False)
    ports = {name: URL(svc.url).port or 80 for name, svc in config.edge.services.items()
             if name in SERVICES}
    host = args.host or config.edge.listen.host
    port = config.edge.listen.port if args.port is None else args.port
    secret = os.environ.get(env_name, "") if env_name else ""
    key_header = config.edge.auth.api_keys.header if config.edge.auth.api_keys else "X-API-Key"
    events = config.edge.events
    pub_env = events.publisher_keys_env[0] if events and events.publisher_keys_env else None
    if pub_env and not os.environ.get(pub_env):
        os.environ[pub_env] = DEMO_PUBLISHER_KEY
        config = _load_or_exit(args.config, check_env=False)
    push = config.edge.push
    vapid_env = push.webpush.vapid_private_key_env if push and push.webpush else None
    if vapid_env and not os.environ.get(vapid_env):
        os.environ[vapid_env] = DEMO_VAPID_KEY
        config = _load_or_exit(args.config, check_env=False)
    if not os.environ.get("EDGE_IMAGE_KEY"):
        os.environ["EDGE_IMAGE_KEY"] = DEMO_IMAGE_KEY  # so signed image URLs can be tried
        config = _load_or_exit(args.config)
    from images import sign

    signed_photo = "/img/providers/PRV-001/photos/1.jpg?w=300&h=300&fit=cover"
    signed_photo += "&sig=" + sign(signed_photo, os.environ["EDGE_IMAGE_KEY"].encode())
    def tick(edge: EdgeApp) -> asyncio.Task[None] | None:
        """The demo's heartbeat of news: an event on `public` every 5 seconds."""
        if config.edge.events is None:
            return None

        async def run() -> None:
            n = 0
            while True:
                await asyncio.sleep(5)
                n += 1
                try:
                    await edge.state.hub.publish(["public"], "tick", {
                        "n": n, "message": "the demo is alive",
                        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                except Exception as e:  # the demo goes on
                    logging.getLogger("edge").warning("demo tick not published: %s", e)

        return asyncio.get_running_loop().create_task(run())

    def announce(url: str) -> None:
        member = make_token(secret, "1001", ["member"], 86400) if secret else ""
        admin = make_token(secret, "ops-1", ["admin"], 86400) if secret else ""
        playground = (f"\n  policy playground (a browser): {url}/_edge/playground"
                      if config.edge.admin.playground else "")
        pub_key = os.environ.get(pub_env or "", "")
        push_demo = f"""\
  .venv/bin/python -m edge.demo.pushclient --edge {url}   # a device without a stream
  curl -s -H "Authorization: Bearer {pub_key}" {url}/_edge/publish \\
       -d '{{"topic": "member:1001", "data": {{"n": 1}}, "push": {{"title": "Claim paid"}}}}'
""" if config.edge.push is not None and config.edge.push.webpush is not None else ""
        print(f"""
edge demo is up: {url}
  upstreams: {", ".join(f"{n}=:{p}" for n, p in ports.items())}{playground}

Try:
  curl -i "{url}/api/v1/providers?city=Jakarta&size=2"
  export TOKEN={member}
  curl -i -H "Authorization: Bearer $TOKEN" {url}/api/v1/members/1001
  curl -i -H "Authorization: Bearer $TOKEN" {url}/api/v1/members/1002      # 403
  curl -i {url}/api/v1/members/1001                                        # 401
  curl -i -H "Authorization: Bearer $TOKEN" {url}/api/v1/claims/CLM-000197
                       # 404: member 1002's claim (auth.owner reads the answer's member_id)
  curl -i -H "Authorization: Bearer $TOKEN" {url}/api/v1/benefits/check \
       -d '{{"member_id":"1002","benefit_code":"CONS-GP","amount":1}}'   # 403: auth.body
  curl -s -H "Authorization: Bearer $TOKEN" -H "X-Device-Type: phone" \\
       --compressed "{url}/api/v1/members/1001/claims?size=5"
  curl -s {url}/_edge/keymaps/claims-v1
  curl -s -H "Authorization: Bearer $TOKEN" -H "X-Device-Type: phone" \\
       "{url}/api/v1/members/1001/dashboard?envelope=true"     # 5 upstream calls, 1 answer
  curl -s -D - -o /dev/null "{url}/api/v1/providers?city=Jakarta&size=2" | grep -i cache-status
                                               # twice: miss, then hit (then try If-None-Match)
  for i in $(seq 25); do curl -s -o /dev/null -w '%{{http_code}} ' -H "X-Device-ID: me" \\
       -H "Authorization: Bearer $TOKEN" {url}/api/v1/members/1001/benefits; done; echo
                                               # 20 at once, then 100/min per device: 429s
  curl -s -H "Authorization: Bearer $TOKEN" {url}/batch \
       -d '[{{"id":"me","path":"/api/v1/members/1001"}},{{"id":"x","path":"/api/v1/members/1002"}}]'
  curl -s -H "Authorization: Bearer $TOKEN" {url}/offline/queue -d '{{"operations":[{{"local_id":
       "q1","method":"POST","path":"/api/v1/claims","body":{{"member_id":"1001","provider_id":
       "PRV-001","service_date":"2026-03-14","items":[{{"benefit_code":"CONS-GP","amount":1}}]}}}}]}}'
                                               # again: same server_id, "replayed": true
  curl -i -H "X-Device-Type: phone" {url}/demo/echo
  export APP_KEY={DEMO_APP_KEY}
  curl -s -D - -o /dev/null -H "{key_header}: $APP_KEY" \\
       "{url}/api/v1/providers?city=Jakarta&size=2" | grep -i ratelimit-policy
                                               # the app key's `partner` tier: a bigger budget
  curl -i {url}/demo/app                       # 401: this route needs an app key
  curl -s -H "{key_header}: $APP_KEY" {url}/demo/app   # the backend sees X-Edge-App, not the key
  curl -i -H "{key_header}: {DEMO_WIDGET_KEY}" {url}/demo/app
                                               # 403: the widget's key is for providers only
  curl -s "{url}/demo/big?mb=200" -o /dev/null -w '%{{size_download}} bytes\\n'
  curl -N "{url}/demo/drip?chunks=5&interval=500"
  curl -i {url}/demo/flaky                     # fails every other call; the retry hides it
  for i in 1 2 3 4; do curl -s {url}/demo/status/503; echo; done   # circuit opens
  curl -i "{url}/demo/slow?seconds=5"          # 504 after the 2s read timeout
  curl -s {url}/metrics | grep edge_requests
  curl -s -o /dev/null -w '%{{content_type}} %{{size_download}} B\\n' -H "User-Agent: iPhone" \\
       -H "Accept: image/avif,image/webp" {url}/img/providers/PRV-001/photos/1.jpg
                                               # also try Save-Data: on, iPad, Sec-CH-DPR: 3
  curl -s -o square.jpg "{url}{signed_photo}"   # any size: signed URLs only
  curl -N "{url}/events?topic=public"         # a tick every 5 s (server-sent events)
  curl -N -H "Authorization: Bearer $TOKEN" "{url}/events?topic=member:1001"   # your own
  curl -s -H "Authorization: Bearer {os.environ.get(pub_env or '', '')}" {url}/_edge/publish \\
       -d '{{"topic": "member:1001", "event": "claim-update", "data": {{"claim": "CLM-000062"}}}}'
{push_demo}  admin token (any member): {admin}
Edit config/routes/*.yaml while it runs: valid edits apply within a second,
broken ones are reported and the last good config keeps serving.
""", flush=True)

    async def main() -> None:
        upstreams = await _demo_upstreams(ports, _demo_push_port(config))
        try:
            await _serve(config, host, port, announce=announce, on_start=tick)
        finally:
            await _stop_child(upstreams)

    _install_uvloop()
    asyncio.run(main())
    return 0


def _demo_push_port(config: Config) -> int | None:
    """The port of the demo's Web Push service: the loopback origin push.webpush.endpoints
    names (edge/demo/pushservice.py); None when the config has none."""
    import re

    push = config.edge.push
    if push is None or push.webpush is None:
        return None
    for origin in push.webpush.endpoints:
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", origin)
        if m:
            return int(m[1])
    return None


async def _demo_upstreams(ports: dict[str, int], push_port: int | None
                          ) -> asyncio.subprocess.Process:
    """The demo's upstreams (and push service) in a process of their own, once every port
    is bound; Refused (exit 3) with its reason when one can't be."""
    args = ["--ports", ",".join(f"{n}={p}" for n, p in ports.items()), "--child"]
    if push_port is not None:
        args += ["--push-port", str(push_port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.demo.upstreams", *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    said = b""
    try:
        async with asyncio.timeout(120):  # the demo data is made first: a few seconds
            while said.strip() != b"ready":
                said = await proc.stdout.readline()
                if not said:  # it ended: why is its last word
                    break
                if said.startswith(b"error: "):
                    break
    except TimeoutError:
        said = b"error: not ready after 120 s"
    if said.strip() != b"ready":
        await _stop_child(proc)
        why = said.decode(errors="replace").strip().removeprefix("error: ") or \
            f"exited with {proc.returncode}"
        raise Refused(EXIT_LISTEN, f"cannot start the demo's upstreams: {why} (their "
                      "ports: services and push.webpush.endpoints in edge.yaml)")
    return proc


async def _stop_child(proc: asyncio.subprocess.Process) -> None:
    """Close its stdin (its cue to stop), then wait; SIGKILL if it lingers."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(10):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _key_name(value: str) -> str:
    import re

    from .config import KEY_NAME

    if not re.match(KEY_NAME, value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: up to 64 letters, digits, '.', '_', ':' or '-'")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge", description="Edge reverse proxy / backend-for-frontend driven by YAML.")
    parser.add_argument("--version", action="version",
                        version=f"edge {version()} (Python {sys.version.split()[0]})")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the routes in a config dir")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="config dir (default: config)")
    p.add_argument("--host", help="override listen.host")
    p.add_argument("--port", type=int, help="override listen.port")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the port with SO_REUSEPORT (default 1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a config dir; exit 1 with file:line:col errors")
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--no-env", action="store_true",
                   help="skip what only the serving environment can tell (secrets set and "
                   "long enough, key files readable): for CI without the secrets")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("routes", help="table of routes, their sources and policies")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--wide", action="store_true",
                       help="every column (query, file), nothing cut short")
    shown.add_argument("--json", action="store_true", help="one JSON object per route")
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("demo", help="run the bundled demo upstreams and the edge on them")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("explain", help="show what the edge does with one request, step by "
                       "step, against the configured upstreams")
    p.add_argument("method")
    p.add_argument("path", help="path and query, e.g. '/api/v1/claims/CLM-000001?fields=id'")
    p.add_argument("-H", "--header", action="append", default=[], dest="headers",
                   help="request header 'Name: value' (repeatable)")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--demo", action="store_true",
                   help="verify tokens with the demo's secret when none is set")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("schema", help="write the JSON Schemas for editors")
    p.add_argument("--out", default=os.path.join(DEFAULT_CONFIG, "schema"))
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("apikey", help="make app API keys and the hashes config holds")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("new", help="print a new random key and the YAML lines for config")
    k.add_argument("--name", type=_key_name, default=None,
                   help="the key's name in config (default: app-<random>)")
    keys.add_parser("hash", help="print the sha256:<hex> hash of a key read from stdin")
    p.set_defaults(func=cmd_apikey)

    p = sub.add_parser("token", help="sign a test JWT with the configured HS secret")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--sub", required=True)
    p.add_argument("--roles", default="", help="comma-separated")
    p.add_argument("--ttl", type=float, default=3600, help="seconds")
    p.add_argument("--demo", action="store_true", help="use the demo secret if unset")
    p.set_defaults(func=cmd_token)

    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except Refused as e:
        print(f"edge: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `edge routes | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (SystemExit, GeneratorExit):
        raise
    except Exception as e:  # a bug: never a traceback, unless asked for
        if os.environ.get("EDGE_DEBUG"):
            raise
        print(f"edge: internal error: {type(e).__name__}: {str(e)[:300]} (EDGE_DEBUG=1 "
              "shows the traceback; please report it)", file=sys.stderr)
        return EXIT_INTERNAL
    return result


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("edge")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
