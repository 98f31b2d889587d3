"""Cost of a rate-limit check: the same route without a limit, limited in memory, and limited
through Redis, side by side.

    .venv/bin/python bench/ratelimit.py [--rounds 8] [--duration 3] [--connections 64]
                                        [--redis-url URL] [--quick] [--json]

Starts, each in its own process on 127.0.0.1: the upstream (nginx serving bench/_upstream.py's
~1 KB JSON body as a static file at /items/42, so it takes little CPU; without an nginx binary
bench/_upstream.py itself), a private Redis (`redis-server --save "" --appendonly no` on a free
port, stopped at the end; `--redis-url` uses an existing one instead) and two `edge serve`
processes on the same temp config (access log off, no reload watcher):

    memory edge   no EDGE_REDIS_URL: rate limits live in the process's memory
    redis edge    EDGE_REDIS_URL=<the Redis>: one GCRA script in Redis per limited request

each with two routes onto the upstream's /items/{id}:

    GET /free/{id}      no limit
    GET /limited/{id}   rate_limit: [{name: bench, key: device, rate: 100000000/s,
                                      burst: 100000000}]

The limit is far above what the machine can send, so every request pays the check and is
answered 200 (wrk's non-2xx count is shown and must be 0). wrk -t1 sends `X-Device-ID` (-H),
so the limit's device key is used (unverified: "ip=127.0.0.1/d=<id>"). wrk loads the four
targets in turn; every round the two edges swap places and each edge's /free and /limited
swap order, so a limited run always sits next to its baseline. Each limited variant is
compared with /free *of the same edge process*, per round (same-round pairs), and the table
shows medians, as in bench/proxy.py, whose helpers this reuses. The ratios of runs seconds
apart are noisy on a 2-core machine, hence more, shorter rounds than the other benches. `--pin`
gives the edges CPU 0 and wrk, the upstream and Redis CPU 1 (sched_setaffinity); on these
VMs it did not make the figures steadier, so the scheduler is left alone by default.

Before the load one request per target checks the body, that /limited answers with
RateLimit and RateLimit-Policy headers and /free with neither, and that the redis edge's
bucket is in Redis (and the memory edge's is not); after it, /metrics must show no limited
decision and the redis edge not degraded to memory.

To see where a check's time goes, the CPU time (/proc) of the edge process under test and of
redis-server is divided by the requests of each run, and Redis's own INFO commandstats give
the EVALSHA calls and the microseconds spent running the script.

Goals (issue): memory limiter <= 10% fewer req/s than no limit; Redis limiter <= 25%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from _common import EDGE_BIN, cpu_seconds, preflight, round_args, settle_rounds
from proxy import (
    Series,
    Target,
    WrkResult,
    find_nginx,
    free_port,
    nginx_command,
    parse_wrk,
    per_round,
    process,
    progress,
    stop,
    table,
    write_config,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOAL_MEMORY = 0.10  # at most this many fewer req/s than no limit
GOAL_REDIS = 0.25
DEFAULT_ROUNDS, DEFAULT_DURATION = 12, 2.0
DEVICE = "bench-device-1"
DEVICE_HEADER = "X-Device-ID"
LIMIT_NAME = "bench"
# what the redis edge stores for that device (edge/policies/ratelimit.py, backends/redis.py)
REDIS_KEY = f"edge:rl:n:{LIMIT_NAME}|ip=127.0.0.1/d={DEVICE}"

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


@dataclass(slots=True)
class Extra:
    """What wrk's summary line and /proc say about each run of one target."""

    non2xx: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    edge_us: list[float] = field(default_factory=list)  # edge CPU per request
    redis_us: list[float] = field(default_factory=list)  # redis-server CPU per request
    script_calls: list[int] = field(default_factory=list)  # EVALSHA/EVAL calls in Redis
    script_us: list[float] = field(default_factory=list)  # µs in the script, per call

    @staticmethod
    def med(values: Sequence[float]) -> float | None:
        return float(statistics.median(values)) if values else None


# ------------------------------------------------------------------------------- wrk


def run_wrk(url: str, connections: int, duration: float) -> tuple[WrkResult, int, int]:
    """wrk -t1 with the device header: the result, non-2xx/3xx responses, requests."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "--timeout", "5s", "-H", f"{DEVICE_HEADER}: {DEVICE}", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", proc.stdout)
    total = re.search(r"^\s*(\d+) requests in", proc.stdout, re.M)
    return (parse_wrk(proc.stdout), int(non2xx[1]) if non2xx else 0,
            int(total[1]) if total else 0)


# ------------------------------------------------------------------------- processes


@contextmanager
def redis_server(binary: str, port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A throw-away Redis: no persistence, only on 127.0.0.1, stopped on the way out."""
    import redis

    workdir.mkdir()
    log = workdir / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} not ready after 10s")
            time.sleep(0.05)
        client.close()
        yield proc
    finally:
        stop(proc)


def script_stats(client: Any) -> tuple[int, float]:
    """Lua script calls (EVALSHA + EVAL) and the µs Redis spent in them so far."""
    stats = client.info("commandstats")
    calls, usec = 0, 0.0
    for cmd in ("cmdstat_evalsha", "cmdstat_eval"):
        s = stats.get(cmd) or {}
        calls += int(s.get("calls", 0))
        usec += float(s.get("usec", 0))
    return calls, usec


def nginx_static(tmp: Path, port: int, body: bytes) -> str:
    """nginx_command's http block answering GET /items/42 with `body` (application/json)
    from a file in its state dir."""
    (tmp / "nginx" / "items").mkdir(parents=True)
    (tmp / "nginx" / "items" / "42").write_bytes(body)
    return ("  default_type application/json;\n"
            f"  server {{ listen 127.0.0.1:{port}; root {{root}}; location /items/ {{ }} }}\n")


def edge_config(root: Path, upstream: str) -> Path:
    return write_config(root, {"up": upstream}, (
        "routes:\n"
        "  - route: GET /free/{id}\n"
        '    source: {service: up, path: "/items/{id}"}\n'
        "  - route: GET /limited/{id}\n"
        '    source: {service: up, path: "/items/{id}"}\n'
        f"    rate_limit: [{{name: {LIMIT_NAME}, key: device, rate: 100000000/s, "
        "burst: 100000000}]\n"))


# ---------------------------------------------------------------------------- checks


def call(url: str, headers: Mapping[str, str]) -> tuple[int, Message, bytes]:
    req = urllib.request.Request(url, headers=dict(headers))
    try:
        with _HTTP.open(req, timeout=5) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def check_target(t: Target, body: bytes) -> dict[str, str]:
    """One request: 200, the upstream's body, limit headers only on /limited."""
    status, h, got = call(t.url, {DEVICE_HEADER: DEVICE})
    if status != 200 or got != body:
        raise RuntimeError(f"{t.label}: {status}, {len(got)} bytes (expected 200, "
                           f"{len(body)} bytes): {got[:300]!r}")
    limit_headers = {k: h[k] for k in ("RateLimit", "RateLimit-Policy") if h.get(k)}
    if "/limited/" in t.url:
        if len(limit_headers) != 2 or f'"{LIMIT_NAME}"' not in limit_headers["RateLimit"]:
            raise RuntimeError(f"{t.label}: expected RateLimit and RateLimit-Policy for "
                               f'"{LIMIT_NAME}", got {limit_headers}')
    elif limit_headers:
        raise RuntimeError(f"{t.label}: unexpected rate-limit headers {limit_headers}")
    return limit_headers


_DECISION = re.compile(r'^edge_ratelimit_decisions_total\{(?P<labels>.*)\} (?P<n>\S+)$',
                       re.M)


def limit_metrics(edge: str) -> tuple[dict[str, int], float | None]:
    """/limited's decisions by result, and edge_ratelimit_degraded, from /metrics."""
    status, _, raw = call(f"{edge}/metrics", {})
    if status != 200:
        raise RuntimeError(f"{edge}/metrics: {status}")
    text = raw.decode()
    out: dict[str, int] = {}
    for m in _DECISION.finditer(text):
        labels = m["labels"]
        if "/limited/" not in labels:
            continue
        result = re.search(r'result="([^"]*)"', labels)
        key = result[1] if result else "?"
        out[key] = out.get(key, 0) + int(float(m["n"]))
    degraded = re.search(r"^edge_ratelimit_degraded (\S+)$", text, re.M)
    return out, float(degraded[1]) if degraded else None


_CHECK = re.compile(r'^edge_ratelimit_check_duration_seconds_(sum|count)\{store="(\w+)"\} (\S+)$',
                    re.M)


def check_time(edge: str, store: str) -> tuple[float, float]:
    """(checks, seconds spent deciding them) so far, from /metrics."""
    status, _, raw = call(f"{edge}/metrics", {})
    if status != 200:
        raise RuntimeError(f"{edge}/metrics: {status}")
    got = {m[1]: float(m[3]) for m in _CHECK.finditer(raw.decode()) if m[2] == store}
    return got.get("count", 0.0), got.get("sum", 0.0)


def round_order(targets: Sequence[Target], rnd: int) -> list[Target]:
    """This round's order: the edges' pairs (/free, /limited) rotate and each pair's order
    flips every round, so a limited run is always next to its baseline and neither always
    runs first."""
    pairs = [list(targets[i:i + 2]) for i in range(0, len(targets), 2)]
    pairs = pairs[rnd % len(pairs):] + pairs[:rnd % len(pairs)]
    return [t for pair in pairs for t in (pair[::-1] if rnd % 2 else pair)]


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    round_args(ap, connections_help="connections (default 64)")
    # more, shorter rounds than the other benches: the pairs' ratios are noisy on 2 cores
    ap.set_defaults(rounds=DEFAULT_ROUNDS, duration=DEFAULT_DURATION)
    for action in ap._actions:
        if action.dest == "rounds":
            action.help = f"rounds (default {DEFAULT_ROUNDS})"
        elif action.dest == "duration":
            action.help = f"seconds per wrk run (default {DEFAULT_DURATION:g})"
    ap.add_argument("--redis-url", help="use this Redis (e.g. redis://127.0.0.1:6379/0) "
                    "instead of starting a private redis-server")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--pin", action="store_true",
                    help="give the edges CPU 0 and wrk, the upstream and Redis CPU 1")
    ap.add_argument("--python-upstream", action="store_true",
                    help="bench/_upstream.py as the upstream even when nginx is installed")
    args = ap.parse_args(argv)
    settle_rounds(ap, args)
    if (code := preflight("ratelimit.py", wrk=True)) is not None:
        return code
    redis_bin = shutil.which("redis-server")
    use_redis = bool(args.redis_url or redis_bin)
    if not use_redis:
        print("note: no redis-server binary (`apt-get install redis-server`) and no "
              "--redis-url: skipping the Redis limiter", file=sys.stderr)

    nginx_bin = None if args.python_upstream else find_nginx()
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cpus) >= 2
    if pin:  # wrk, the upstream and Redis inherit this; the edges move to cpus[0] below
        os.sched_setaffinity(0, {cpus[1]})
    py = sys.executable
    env = {k: v for k, v in os.environ.items() if k != "EDGE_REDIS_URL"}
    ports = {k: free_port() for k in ("up", "mem", "redis_edge", "redis")}
    up = f"http://127.0.0.1:{ports['up']}"
    mem = f"http://127.0.0.1:{ports['mem']}"
    red = f"http://127.0.0.1:{ports['redis_edge']}"
    redis_url = args.redis_url or f"redis://127.0.0.1:{ports['redis']}/0"
    targets = [
        Target("mem_free", "memory edge /free (no limit)", f"{mem}/free/42"),
        Target("mem_limited", "memory edge /limited", f"{mem}/limited/42"),
    ]
    if use_redis:
        targets += [
            Target("redis_free", "redis edge /free (no limit)", f"{red}/free/42"),
            Target("redis_limited", "redis edge /limited", f"{red}/limited/42"),
        ]
    baseline = {"mem_limited": "mem_free", "redis_limited": "redis_free"}
    series = {t.key: Series() for t in targets}
    extra = {t.key: Extra() for t in targets}
    headers_seen: dict[str, dict[str, str]] = {}
    decisions: dict[str, dict[str, int]] = {}
    degraded: float | None = None
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-rl-")))
            if nginx_bin:
                sys.path.insert(0, str(HERE))
                from _upstream import BODY

                upstream = stack.enter_context(process(
                    nginx_command(nginx_bin, tmp, nginx_static(tmp, ports["up"], BODY)),
                    f"{up}/items/42", tmp / "nginx.err", env))[0]
            else:
                upstream = stack.enter_context(process(
                    [py, str(HERE / "_upstream.py"), str(ports["up"])], f"{up}/items/42",
                    tmp / "upstream.err", env))[0]
            _, _, body = call(f"{up}/items/42", {})
            cfg = edge_config(tmp / "config", up)
            pids: dict[str, int | None] = {"up": upstream.pid, "redis": None}
            edge_cmd = [str(EDGE_BIN), "serve", "--config", str(cfg), "--host", "127.0.0.1",
                        "--port"]
            mem_edge = stack.enter_context(process(
                [*edge_cmd, str(ports["mem"])], f"{mem}/health", tmp / "mem.err", env))[0]
            pids["mem"] = mem_edge.pid
            if pin:
                os.sched_setaffinity(mem_edge.pid, {cpus[0]})
            client: Any = None
            if use_redis:
                import redis

                if not args.redis_url:
                    assert redis_bin is not None
                    pids["redis"] = stack.enter_context(redis_server(
                        redis_bin, ports["redis"], tmp / "redis")).pid
                client = redis.Redis.from_url(redis_url, socket_timeout=2)
                stack.callback(client.close)
                client.ping()
                redis_edge = stack.enter_context(process(
                    [*edge_cmd, str(ports["redis_edge"])], f"{red}/health",
                    tmp / "redis_edge.err", {**env, "EDGE_REDIS_URL": redis_url}))[0]
                pids["redis_edge"] = redis_edge.pid
                if pin:
                    os.sched_setaffinity(redis_edge.pid, {cpus[0]})

            for t in targets:
                calls_before = script_stats(client)[0] if client is not None else 0
                headers_seen[t.key] = check_target(t, body)
                if t.key == "redis_limited":  # the check ran in Redis, not in memory
                    if not client.exists(REDIS_KEY):
                        raise RuntimeError(f"the redis edge left no {REDIS_KEY!r} in Redis")
                if client is not None:
                    made = script_stats(client)[0] - calls_before
                    if (t.key == "redis_limited") != (made > 0) and not args.redis_url:
                        raise RuntimeError(f"{t.label}: {made} Lua script calls in Redis")

            print(f"edge rate-limit benchmark: upstream "
                  f"{'nginx (static file)' if nginx_bin else 'bench/_upstream.py'} "
                  f"/items/42 = {len(body):,} B JSON; "
                  f"wrk -t1 -c{args.connections} -H '{DEVICE_HEADER}: {DEVICE}', "
                  f"{args.rounds} round(s) x {args.duration:g}s per target; Redis "
                  f"{redis_url if use_redis else 'skipped'}"
                  f"{' (private)' if use_redis and not args.redis_url else ''}; "
                  f"{os.cpu_count()} CPUs"
                  f"{f' (edges on CPU {cpus[0]}, the rest on CPU {cpus[1]})' if pin else ''}, "
                  f"Python {platform.python_version()}", flush=True)
            lim = headers_seen["mem_limited"]
            print(f"  /limited answers: RateLimit-Policy: {lim['RateLimit-Policy']}  "
                  f"RateLimit: {lim['RateLimit']}  (/free: none)", flush=True)

            def measure(t: Target, duration: float, record: bool) -> WrkResult:
                edge_pid = pids["mem" if t.key.startswith("mem") else "redis_edge"]
                c0 = (cpu_seconds(edge_pid), cpu_seconds(pids["redis"]))
                s0 = script_stats(client) if client is not None else (0, 0.0)
                res, non2xx, n = run_wrk(t.url, args.connections, duration)
                c1 = (cpu_seconds(edge_pid), cpu_seconds(pids["redis"]))
                s1 = script_stats(client) if client is not None else (0, 0.0)
                if record:
                    x = extra[t.key]
                    x.non2xx.append(non2xx)
                    x.requests.append(n)
                    if n:
                        x.edge_us.append((c1[0] - c0[0]) * 1e6 / n)
                        if pids["redis"] is not None:
                            x.redis_us.append((c1[1] - c0[1]) * 1e6 / n)
                    if client is not None:
                        calls = s1[0] - s0[0]
                        x.script_calls.append(calls)
                        if calls:
                            x.script_us.append((s1[1] - s0[1]) / calls)
                return res

            for t in targets:
                measure(t, args.warmup, record=False)
            timed0 = {"mem": check_time(mem, "memory")}
            if use_redis:
                timed0["redis"] = check_time(red, "redis")
            for rnd in range(args.rounds):
                for t in round_order(targets, rnd):
                    res = measure(t, args.duration, record=True)
                    series[t.key].results.append(res)
                    progress("", rnd, args.rounds, t.label, res, 28)

            timed = {"mem": check_time(mem, "memory")}
            if use_redis:
                timed["redis"] = check_time(red, "redis")
            decisions["mem"], _ = limit_metrics(mem)
            if use_redis:
                decisions["redis"], degraded = limit_metrics(red)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    # ---------------------------------------------------------------------- report
    cost = {k: 1 - per_round(series[k], series[b], "rps", "ratio")
            for k, b in baseline.items() if k in series}
    # the edge's CPU per request, limited minus /free of the same edge, same-round pairs
    cpu_added = {k: statistics.median(
        a - b for a, b in zip(extra[k].edge_us, extra[base].edge_us, strict=True))
        for k, base in baseline.items() if k in series and extra[k].edge_us}
    cpu_ratio = {k: statistics.median(
        a / b for a, b in zip(extra[k].edge_us, extra[base].edge_us, strict=True))
        for k, base in baseline.items() if k in cpu_added}
    cols = ["non-2xx", "vs /free same edge", "edge CPU µs/req", "redis CPU µs/req"]
    cells: dict[str, Sequence[str]] = {}
    for t in targets:
        x = extra[t.key]
        e, r = x.med(x.edge_us), x.med(x.redis_us)
        cells[t.key] = [str(sum(x.non2xx)),
                        f"{-cost[t.key] * 100:+.1f}%" if t.key in cost else "-",
                        f"{e:.0f}" if e is not None else "-",
                        f"{r:.1f}" if r is not None else "-"]
    lines = [""]
    lines += table(f"{args.connections} connections (medians)", targets, series, cols, cells)
    non2xx = sum(sum(x.non2xx) for x in extra.values())
    passed: dict[str, bool | None] = {}
    check_us: dict[str, float] = {}
    lines.append("")
    for key, what, goal in (("mem_limited", "memory", GOAL_MEMORY),
                            ("redis_limited", "redis", GOAL_REDIS)):
        if key not in cost:
            lines.append(f"{what} limiter: SKIPPED (no Redis)")
            passed[what] = None
            continue
        passed[what] = cost[key] <= goal
        lines.append(f"{what} limiter: {cost[key] * 100:.1f}% fewer req/s than no limit "
                     f"(goal <= {goal * 100:.0f}%): {'PASS' if passed[what] else 'FAIL'}")
        if key in cpu_added:
            lines.append(f"  edge CPU per request {cpu_added[key]:+.0f} µs "
                         f"({(cpu_ratio[key] - 1) * 100:+.0f}%) vs /free of the same edge")
        edge_key = "mem" if key == "mem_limited" else "redis"
        n_checks = timed[edge_key][0] - timed0[edge_key][0]
        if n_checks:
            spent = timed[edge_key][1] - timed0[edge_key][1]
            x = extra[key]
            cpu_s = sum(us * n for us, n in zip(x.edge_us, x.requests, strict=True)) / 1e6
            check_us[what] = spent / n_checks * 1e6
            share = spent / cpu_s if cpu_s else 0.0
            lines.append(
                f"  the check itself (edge_ratelimit_check_duration_seconds): "
                f"{check_us[what]:.1f} µs mean over {n_checks:,.0f} checks"
                + (f" = {share * 100:.1f}% of the edge's CPU time on /limited (in-process "
                   "timing, free of the run-to-run noise of the req/s ratios)"
                   if key == "mem_limited" else
                   " from queueing to answer: the round trip and, at this saturating load, "
                   "the wait for the busy event loop (which serves other requests meanwhile)"))
    breakdown: dict[str, Any] = {}
    if "redis_limited" in extra:
        x = extra["redis_limited"]
        r_l, s_us = x.med(x.redis_us), x.med(x.script_us)
        calls, reqs = sum(x.script_calls), sum(x.requests)
        breakdown = {"edge_cpu_us_per_req_added": cpu_added.get("redis_limited"),
                     "redis_cpu_us_per_req": r_l, "script_us_per_call": s_us,
                     "script_calls": calls, "limited_requests": reqs}
        parts = []
        if r_l is not None:
            parts.append(f"redis-server {r_l:.1f} µs CPU per request")
        if s_us is not None:
            parts.append(f"the GCRA script {s_us:.1f} µs per call inside Redis (commandstats)")
        parts.append(f"{calls:,} script calls in Redis for {reqs:,} requests on /limited"
                     + (" (shared Redis: others' calls count too)" if args.redis_url else ""))
        lines.append("  " + "; ".join(parts))
    lines.append(f"non-2xx responses during the load: {non2xx}"
                 + ("" if non2xx == 0 else "  (the limit rejected or failed: figures invalid)"))
    for name, d in decisions.items():
        bad = d.get("limited", 0)
        lines.append(f"{name} edge /metrics, /limited decisions: {d.get('allowed', 0):,} "
                     f"allowed, {bad:,} limited" + ("  (the limit rejected: figures invalid)"
                                                   if bad else "")
                     + (f"; degraded to memory: {'no' if degraded == 0 else degraded}"
                        if name == "redis" else ""))
    lines += ["ratios and CPU deltas are medians of same-round pairs; spread = half the "
              "min-max range of req/s; CPU µs/req = the process's user+system time during a "
              "run / the run's requests; p99 is at this saturating load",
              f"total {time.monotonic() - started:.0f}s"]
    print("\n".join(lines))
    if args.json:
        print(json.dumps({
            "rounds": args.rounds, "duration_s": args.duration,
            "connections": args.connections, "body_bytes": len(body),
            "redis": (redis_url if args.redis_url else "private") if use_redis else None,
            "targets": {k: {"rps": s.median("rps"), "p50_ms": s.median("p50_ms"),
                            "p99_ms": s.median("p99_ms"), "errors": s.errors,
                            "non2xx": sum(extra[k].non2xx),
                            "requests": sum(extra[k].requests),
                            "edge_cpu_us_per_req": extra[k].med(extra[k].edge_us),
                            "redis_cpu_us_per_req": extra[k].med(extra[k].redis_us)}
                        for k, s in series.items()},
            "cost": {"memory": cost.get("mem_limited"), "redis": cost.get("redis_limited")},
            "edge_cpu_us_added": {"memory": cpu_added.get("mem_limited"),
                                  "redis": cpu_added.get("redis_limited")},
            "redis_breakdown": breakdown or None,
            "check_us_mean": check_us,
            "decisions": decisions, "non2xx": non2xx,
            "pass": passed,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
