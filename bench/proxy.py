"""Pass-through overhead of the edge, measured side by side with a minimal aiohttp proxy.

    .venv/bin/python bench/proxy.py [--rounds 3] [--duration 5] [--connections 64]
                                    [--quick] [--json] [--baseline DIR]

Starts, each in its own process on 127.0.0.1: a tiny upstream (bench/_upstream.py), the
minimal aiohttp proxy (bench/_minimal_proxy.py), the edge in pass-through with the access
log off, and again with it on (the default). wrk loads each in turn, rotating the order every
round, and the table shows medians over the rounds. Ratios are computed per round (targets
measured minutes apart on a noisy machine are not compared) and their median is reported.

--baseline DIR (another checkout of the repo) also runs DIR's edge, as a "(baseline)" twin
of each edge target in the same rounds, and reports new/baseline req/s (see _common.py).

Targets (issue): edge req/s >= 85% of the minimal proxy's at 64 connections; added p99 vs the
upstream alone < 2 ms at moderate load (8 connections; wrk2's fixed rate is not available);
the access log on costs <= 5%: req/s with it on >= 0.95x off, and (the figure machine noise
moves least) the edge process's CPU per request, read from /proc around each wrk run, on
<= 1/0.95 of off's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from _common import (
    EDGE_BIN,
    Baseline,
    baseline_arg,
    cpu_seconds,
    open_baseline,
    preflight,
    round_args,
    settle_rounds,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODERATE_CONNECTIONS = 8
TARGET_RATIO = 0.85
TARGET_ADDED_P99_MS = 2.0
TARGET_LOG_RATIO = 0.95  # the edge with its access log on vs off


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    label: str
    url: str
    twin_of: str = ""  # a baseline twin: the key of the target it repeats on the baseline


BASELINE = "_baseline"  # a twin's key is its target's key + this


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx/3xx responses
    cpu_us: float = 0.0  # the server process's CPU per request (0: not measured)


@dataclass(slots=True)
class Series:
    """All rounds of one target under one load."""

    results: list[WrkResult] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.results))

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)


# ------------------------------------------------------------------------------- wrk

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(m[1]) * _UNITS_MS[m[2]]


def parse_wrk(out: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    return WrkResult(float(rps[1]), _ms(p50[1]), _ms(p99[1]), errors)


def pacing_script(path: Path, connections: int, rate: float) -> Path:
    """A wrk script that pauses each connection between requests for ~`rate` req/s in all.

    wrk's delay() is in whole milliseconds and starts the latency clock after the pause, so
    this paces the load (roughly: the achieved rate is shown) without counting the pause.
    The pause is random (uniform, same mean) so the connections don't fire in lockstep.
    """
    mean_ms = max(1, round(connections * 1000 / rate))
    path.write_text(f"function delay()\n  return math.random(0, {2 * mean_ms})\nend\n")
    return path


def run_wrk(url: str, connections: int, duration: float,
            script: Path | None = None) -> WrkResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "--timeout", "5s", *(["-s", str(script)] if script else []), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return parse_wrk(proc.stdout)


# ------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with _HTTP.open(url, timeout=timeout) as r:
        status: int = r.status
        return status, r.read()


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 20.0) -> bytes:
    """Poll `url` until it answers 200; returns the body. Fails if the process dies."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while starting")
        try:
            status, body = fetch(url, timeout=2)
            if status == 200:
                return body
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout:g}s ({last})")


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it lingers past 5 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def process(cmd: Sequence[str], ready_url: str, log: Path,
            env: Mapping[str, str] | None = None, cwd: Path | None = None
            ) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    """Run one server process (own session, so Ctrl-C reaches only us) in `cwd` (default:
    the repo); always stop it. Yields the process and the ready URL's body.

    stdout (the edge's access log) goes to /dev/null, stderr to `log`, shown on failure.
    """
    with log.open("wb") as err:
        proc = subprocess.Popen(list(cmd), cwd=cwd or ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env=dict(env) if env is not None else None)
    try:
        try:
            body = wait_ready(proc, ready_url)
        except RuntimeError:
            sys.stderr.write(log.read_text(errors="replace")[-3000:])
            raise
        yield proc, body
    finally:
        stop(proc)


@contextmanager
def server(cmd: Sequence[str], ready_url: str, log: Path,
           env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Iterator[bytes]:
    """`process`, for callers that only want the ready URL's body."""
    with process(cmd, ready_url, log, env, cwd) as (_, body):
        yield body


def edge_server(args: Sequence[str], ready_url: str, log: Path,
                baseline: Baseline | None = None) -> AbstractContextManager[bytes]:
    """`server` running `edge serve ARGS`: the installed edge, or with `baseline` that
    checkout's (`python -m edge serve ARGS` in its dir with PYTHONPATH=its dir)."""
    if baseline is None:
        return server([str(EDGE_BIN), "serve", *args], ready_url, log)
    return server(baseline.command("serve", *args), ready_url, log, baseline.env,
                  baseline.root)


@contextmanager
def edge_process(args: Sequence[str], ready_url: str, log: Path,
                 baseline: Baseline | None = None
                 ) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    """`edge_server`, yielding the process too (its CPU time is read from /proc)."""
    if baseline is None:
        with process([str(EDGE_BIN), "serve", *args], ready_url, log) as running:
            yield running
    else:
        with process(baseline.command("serve", *args), ready_url, log, baseline.env,
                     baseline.root) as running:
            yield running


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
        None)


def nginx_command(nginx: str, tmp: Path, http: str) -> list[str]:
    """The command running one nginx worker in the foreground, its state in `tmp`/nginx, with
    `http` inside its http block after the common part: no access log, sendfile and
    tcp_nopush as in Debian's nginx.conf, keepalive_requests raised from nginx's 1000 so it
    never closes keep-alive connections mid-run, and the temp paths. `{root}` in `http` is
    that state dir."""
    if os.geteuid() == 0:  # root's nginx workers run as nobody: let them in
        tmp.chmod(0o755)
    root = tmp / "nginx"
    root.mkdir(parents=True, exist_ok=True)
    temps = "".join(f"  {k}_temp_path {root / k};\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\n"
        f"error_log {root / 'error.log'} warn;\n"
        f"pid {root / 'nginx.pid'};\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n"
        "  sendfile on;\n"
        "  tcp_nopush on;\n"
        "  keepalive_requests 1000000;\n"
        f"{temps}"
        + http.replace("{root}", str(root))
        + "}\n")
    return [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log"),
            "-g", "daemon off;"]


def write_config(root: Path, services: Mapping[str, str], routes: str = "", *,
                 extra: str = "", access_log: bool = False) -> Path:
    """A bench edge's config dir: edge.yaml with `services` (name → URL), `extra` YAML, the
    access log as asked, no reload watcher and a 1 s drain; `routes` as routes/r.yaml."""
    (root / "routes").mkdir(parents=True)
    (root / "edge.yaml").write_text(
        "services:\n" + "".join(f"  {name}:\n    url: {url}\n"
                                for name, url in services.items())
        + extra
        + f"observability: {{access_log: {'true' if access_log else 'false'}}}\n"
        "reload: {watch: false}\n"
        "drain_timeout: 1s\n")
    if routes:
        (root / "routes" / "r.yaml").write_text(routes)
    return root


def edge_config(root: Path, upstream: str, *, access_log: bool) -> Path:
    return write_config(root, {"svc": upstream},
                        "routes:\n  - route: GET /api/items/{item_id}\n"
                        '    source: {service: svc, path: "/items/{item_id}"}\n',
                        access_log=access_log)


# ---------------------------------------------------------------------------- report


def fmt_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return "  ".join([first.ljust(widths[0]),
                      *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]).rstrip()


def table(title: str, targets: Sequence[Target], series: dict[str, Series],
          extra_cols: Sequence[str], extra: dict[str, Sequence[str]]) -> list[str]:
    head = ["target", "req/s", "spread", "p50 ms", "p99 ms", "errors", *extra_cols]
    rows = [head]
    for t in targets:
        s = series[t.key]
        rps = [r.rps for r in s.results]
        med = statistics.median(rps)
        spread = f"±{(max(rps) - min(rps)) / 2 / med * 100:.0f}%" if med else "-"
        rows.append([t.label, f"{med:,.0f}", spread, f"{s.median('p50_ms'):.2f}",
                     f"{s.median('p99_ms'):.2f}", str(s.errors),
                     *extra.get(t.key, [""] * len(extra_cols))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [title, fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths)]
    lines += [fmt_row(r, widths) for r in rows[1:]]
    return lines


T = TypeVar("T")


def rotated(targets: Sequence[T], rnd: int) -> list[T]:
    """This round's order: the start rotates, so no target always runs first."""
    k = rnd % len(targets)
    return [*targets[k:], *targets[:k]]


def with_twins(targets: Sequence[Target], origins: Mapping[str, str]) -> list[Target]:
    """`targets`, each one whose URL is on an origin in `origins` (a new edge's
    scheme://host:port) followed by its baseline twin: the same request to the baseline edge
    at `origins[origin]`, key + BASELINE, label + " (baseline)". No origins: `targets`."""
    out: list[Target] = []
    for t in targets:
        out.append(t)
        for new, base in origins.items():
            if t.url.startswith(new + "/"):
                out.append(Target(t.key + BASELINE, f"{t.label} (baseline)",
                                  base + t.url[len(new):], t.key))
    return out


def schedule(targets: Sequence[Target], rnd: int) -> list[Target]:
    """This round's order: `rotated`, except that a baseline twin stays right after or before
    its target (the pair rotates as one), the two swapping places every other round. Without
    twins, `rotated(targets, rnd)`."""
    units: list[list[Target]] = []
    for t in targets:
        if t.twin_of and units and units[-1][0].key == t.twin_of:
            units[-1].append(t)
        else:
            units.append([t])
    return [t for u in rotated(units, rnd) for t in (u[::-1] if rnd % 2 else u)]


def progress(tag: str, rnd: int, rounds: int, label: str, res: WrkResult, width: int) -> None:
    print(f"  {tag}round {rnd + 1}/{rounds}  {label:<{width}} {res.rps:>9,.0f} req/s  "
          f"p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms", file=sys.stderr, flush=True)


def load_rounds(targets: Sequence[Target], series: Mapping[str, Series], scripts: Mapping[
        str, Path | None], connections: int, warmup: float, duration: float, rounds: int,
                width: int) -> None:
    """A warm-up run of each target, then `rounds` rotated rounds of wrk runs (each target
    with its own script), every result into its target's Series, progress on stderr."""
    for t in targets:
        run_wrk(t.url, connections, warmup, scripts[t.key])
    for rnd in range(rounds):
        for t in schedule(targets, rnd):
            res = run_wrk(t.url, connections, duration, scripts[t.key])
            series[t.key].results.append(res)
            progress("", rnd, rounds, t.label, res, width)


def per_round(a: Series, b: Series, attr: str, op: str) -> float:
    """Median over rounds of a/b (op 'ratio') or a-b (op 'diff'), same-round pairs."""
    vals = []
    for ra, rb in zip(a.results, b.results, strict=True):
        x, y = getattr(ra, attr), getattr(rb, attr)
        vals.append(x / y if op == "ratio" else x - y)
    return float(statistics.median(vals))


def baseline_report(baseline: Baseline | None, targets: Sequence[Target],
                    series: Mapping[str, Series], where: str = "",
                    extra: Mapping[str, Any] | None = None
                    ) -> tuple[list[str], dict[str, Any]]:
    """Per target with a baseline twin: new/baseline req/s, the median of same-round ratios.
    The report's lines and the JSON's "baseline" entry, with `extra` ({} without a
    baseline)."""
    if baseline is None:
        return [], {}
    labels = {t.key: t.label for t in targets}
    ratios = {t.twin_of: per_round(series[t.twin_of], series[t.key], "rps", "ratio")
              for t in targets if t.twin_of}
    width = max(len(labels[k]) for k in ratios) + 1
    lines = ["", f"new vs baseline ({baseline.root} at {baseline.commit}){where}; "
             "> 1.00: the new edge serves more"]
    lines += [f"{labels[k] + ':':<{width}} new/baseline req/s = {r:.2f} "
              "(median of per-round ratios)" for k, r in ratios.items()]
    return lines, {"baseline": baseline.as_json(rps_ratio_new_vs_baseline=ratios,
                                                **(extra or {}))}


# ------------------------------------------------------------------------------ main


def log_cost(hi: dict[str, Series], off: str, on: str) -> list[str]:
    """The access log's cost: req/s with it on / off, and CPU per request on / off (both
    medians of same-round pairs), against the goal: on >= 0.95x off."""
    if on not in hi or not hi[on].results:
        return []
    rps = per_round(hi[on], hi[off], "rps", "ratio")
    cpu = per_round(hi[on], hi[off], "cpu_us", "ratio")
    return [f"access log on vs off: {rps:.2f}x the req/s (target >= {TARGET_LOG_RATIO}): "
            f"{'PASS' if rps >= TARGET_LOG_RATIO else 'FAIL'}; {cpu:.3f}x the CPU per "
            f"request (target <= {1 / TARGET_LOG_RATIO:.3f}): "
            f"{'PASS' if cpu <= 1 / TARGET_LOG_RATIO else 'FAIL'}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    round_args(ap, connections_help="high-load connections (64)")
    ap.add_argument("--moderate-rate", type=float, default=2000,
                    help=f"total req/s of the moderate-load pass ({MODERATE_CONNECTIONS} "
                    "connections, paced with wrk's delay()); 0 = unpaced (default 2000)")
    ap.add_argument("--no-access-log-variant", action="store_true",
                    help="skip the edge with its access log on")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    baseline_arg(ap)
    args = ap.parse_args(argv)
    settle_rounds(ap, args)
    if (code := preflight("proxy.py", wrk=True)) is not None:
        return code
    baseline = open_baseline(ap, args.baseline)
    py = sys.executable
    ports = {k: free_port() for k in ("up", "min", "edge", "edge_log")}
    up = f"http://127.0.0.1:{ports['up']}"
    targets = [
        Target("upstream", "upstream alone", f"{up}/items/42"),
        Target("minimal", "minimal aiohttp proxy", f"http://127.0.0.1:{ports['min']}/items/42"),
        Target("edge", "edge (access log off)",
               f"http://127.0.0.1:{ports['edge']}/api/items/42"),
        Target("edge_log", "edge (access log on)",
               f"http://127.0.0.1:{ports['edge_log']}/api/items/42"),
    ]
    if args.no_access_log_variant:
        targets.pop()
    origins: dict[str, str] = {}
    if baseline:
        for k in ("edge", "edge_log"):
            ports[k + BASELINE] = free_port()
            origins[f"http://127.0.0.1:{ports[k]}"] = f"http://127.0.0.1:{ports[k + BASELINE]}"
    targets = with_twins(targets, origins)
    width = max(22, *(len(t.label) for t in targets))
    loads = [args.connections, MODERATE_CONNECTIONS]
    results: dict[int, dict[str, Series]] = {c: {t.key: Series() for t in targets}
                                             for c in loads}
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-bench-")))
            body = stack.enter_context(server(
                [py, str(HERE / "_upstream.py"), str(ports["up"])], targets[0].url,
                tmp / "upstream.err"))
            stack.enter_context(server(
                [py, str(HERE / "_minimal_proxy.py"), str(ports["min"]), up], targets[1].url,
                tmp / "minimal.err"))
            pids: dict[str, int] = {}
            for t in targets:  # the edges, and their baseline twins
                if not t.key.startswith("edge"):
                    continue
                key, port = t.key, ports[t.key]
                cfg = edge_config(tmp / key, up, access_log=(t.twin_of or key) == "edge_log")
                proc, _ = stack.enter_context(edge_process(
                    ["--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)],
                    f"http://127.0.0.1:{port}/health", tmp / f"{key}.err",
                    baseline if t.twin_of else None))
                pids[key] = proc.pid
            for t in targets:  # same body everywhere, or the comparison is meaningless
                status, got = fetch(t.url)
                if status != 200 or got != body:
                    raise RuntimeError(f"{t.label}: {status}, {len(got)} bytes "
                                       f"(expected 200, {len(body)} bytes)")

            print(f"edge pass-through benchmark: {len(body)} B JSON body, wrk -t1, "
                  f"{args.rounds} round(s) x {args.duration:g}s per target and load, "
                  f"{os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
            if baseline:
                print(baseline.describe(), flush=True)
            paced = (pacing_script(tmp / "pace.lua", MODERATE_CONNECTIONS, args.moderate_rate)
                     if args.moderate_rate > 0 else None)
            for t in targets:
                run_wrk(t.url, args.connections, args.warmup)
            for c in loads:
                script = paced if c == MODERATE_CONNECTIONS else None
                for rnd in range(args.rounds):
                    for t in schedule(targets, rnd):
                        pid = pids.get(t.key)
                        cpu = cpu_seconds(pid) if pid else 0.0
                        res = run_wrk(t.url, c, args.duration, script)
                        if pid and res.rps:
                            used = cpu_seconds(pid) - cpu
                            res = replace(res, cpu_us=used / (res.rps * round(
                                max(1, args.duration))) * 1e6)
                        results[c][t.key].results.append(res)
                        progress(f"c={c:<3} ", rnd, args.rounds, t.label, res, width)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    hi, mod = results[args.connections], results[MODERATE_CONNECTIONS]
    edge_keys = [t.key for t in targets if t.key.startswith("edge")]
    ratio = {k: per_round(hi[k], hi["minimal"], "rps", "ratio") for k in edge_keys}
    ratio["minimal"] = 1.0
    add_hi = {k: per_round(hi[k], hi["upstream"], "p99_ms", "diff")
              for k in ("minimal", *edge_keys)}
    add50 = {k: per_round(mod[k], mod["upstream"], "p50_ms", "diff")
             for k in ("minimal", *edge_keys)}
    add99 = {k: per_round(mod[k], mod["upstream"], "p99_ms", "diff")
             for k in ("minimal", *edge_keys)}

    cpu = {k: hi[k].median("cpu_us") for k in edge_keys}
    lines = [""]
    lines += table(f"high load: {args.connections} connections (medians)", targets, hi,
                   ["vs minimal", "+p99 vs upstream", "edge CPU/req"],
                   {k: [f"{ratio[k] * 100:.1f}%", f"{add_hi[k]:+.2f} ms",
                        f"{cpu[k]:.0f} µs" if k in cpu else ""] for k in add_hi})
    lines.append("")
    pace = f", paced to ~{args.moderate_rate:,.0f} req/s" if args.moderate_rate > 0 else ""
    lines += table(f"moderate load: {MODERATE_CONNECTIONS} connections{pace} (medians)",
                   targets, mod,
                   ["+p50 vs upstream", "+p99 vs upstream"],
                   {k: [f"{add50[k]:+.2f} ms", f"{add99[k]:+.2f} ms"] for k in add99})
    ok_ratio = ratio["edge"] >= TARGET_RATIO
    ok_p99 = add99["edge"] < TARGET_ADDED_P99_MS
    base_lines, base_json = baseline_report(baseline, targets, hi,
                                            f", {args.connections} connections")
    lines += [
        "",
        f"edge req/s vs minimal proxy: {ratio['edge'] * 100:.1f}% "
        f"(target >= {TARGET_RATIO * 100:.0f}%): {'PASS' if ok_ratio else 'FAIL'}",
        f"edge added p99 at {MODERATE_CONNECTIONS} connections: {add99['edge']:+.2f} ms "
        f"(target < {TARGET_ADDED_P99_MS:g} ms): {'PASS' if ok_p99 else 'FAIL'}; "
        f"the minimal proxy adds {add99['minimal']:+.2f} ms",
        *log_cost(hi, "edge", "edge_log"),
        "ratios and added latencies are medians of same-round pairs; spread = half the "
        "min-max range of req/s; CPU/req: the edge process's user+system time over the "
        "run / its requests",
        *base_lines,
        f"total {time.monotonic() - started:.0f}s",
    ]
    print("\n".join(lines))
    errors = sum(s.errors for by in results.values() for s in by.values())
    if errors:
        print(f"WARNING: {errors} socket errors / non-2xx responses (see 'errors')")
    if args.json:
        print(json.dumps({
            "rounds": args.rounds, "duration_s": args.duration, "body_bytes": len(body),
            "moderate_rate": args.moderate_rate,
            "loads": {str(c): {k: {"rps": s.median("rps"), "p50_ms": s.median("p50_ms"),
                                   "p99_ms": s.median("p99_ms"), "errors": s.errors}
                               for k, s in by.items()} for c, by in results.items()},
            "edge_rps_ratio_vs_minimal": {k: ratio[k] for k in edge_keys},
            "edge_cpu_us_per_request": cpu,
            "added_p99_ms_moderate": add99, "added_p50_ms_moderate": add50,
            "pass": {"rps_ratio": ok_ratio, "added_p99": ok_p99},
            **base_json,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
