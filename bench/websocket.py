"""WebSockets through the edge: memory per idle socket, and 1 KB message relay against a bare
aiohttp relay.

    .venv/bin/python bench/websocket.py [--sockets 5000] [--rounds 5] [--duration 4]
                                        [--connections 64] [--size 1024] [--window 1]
                                        [--binary] [--no-bare-idle] [--quick] [--json]

Starts, each in its own process on 127.0.0.1 and for the whole run: a WebSocket echo
upstream (bench/_ws_upstream.py), the bare aiohttp relay (bench/_ws_minimal_relay.py) to it,
and `edge serve` on a temp config whose one route, `GET /ws/echo`, is a WebSocket to the
upstream's /echo (no auth, no rate limit, heartbeat off, no compression, per-caller cap
high; access log off, no reload watcher). The load comes from bench/_ws_client.py (aiohttp's
client, uvloop) in a process of its own. Every process has its soft open-file limit raised
to the hard one (the servers inherit it from the bench; the helpers raise it themselves).

1. Idle sockets: for the edge, then the bare relay (reference), a fresh client process
   opens W = min(50, N/20) sockets, RSS before (VmRSS of the server process), then the
   other N - W (100 handshakes at a time), and after `--idle` s RSS after; per socket =
   (after - before) / (N - W), and each of them is two sockets in the server (the
   client's and the upstream's). Then the sockets close.
2. Relay: `--connections` sockets, each with `--window` messages of `--size` bytes in
   flight (1: send, wait for the echo, send the next), for `--duration` s after 0.5 s of
   ramp, against the upstream alone, the bare relay and the edge in turn, the order
   reversed every other round (the bare relay and the edge always back to back):
   messages/s, round-trip p50/p99, and the server's CPU per message. Ratios are per
   round; the median is reported.

Goals (issue): 5,000 idle WebSockets through one edge process at <= 30 KB RSS each (both
sides' sockets included); edge messages/s >= 0.85x the bare relay's. The exit code is 0 even
when one is missed (2 when the edge is not installed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import EDGE_BIN, cpu_seconds, preflight, settle_rounds
from proxy import fetch, fmt_row, free_port, process, stop
from sse import KB, log_trouble, raise_nofile, rss_kb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENT = HERE / "_ws_client.py"
TARGET_SOCKETS = 5_000
TARGET_KB_PER_SOCKET = 30.0
TARGET_RATIO = 0.85
OPEN_CONCURRENCY = 100  # handshakes at once (listen backlogs: 2048)
FD_SPARE = 200  # descriptors a process needs besides the sockets
RAMP = 0.5  # seconds of load before each measured window (sockets open, first messages)


# ------------------------------------------------------------------------------ client


class WsClient:
    """One bench/_ws_client.py process, driven line by line over its stdin/stdout."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CLIENT)], cwd=ROOT, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.buf = b""
        hello = self.read(20)
        self.pid: int = hello["pid"]
        self.nofile: int = hello["nofile"]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"WebSocket client {self.proc.pid}: no answer in "
                                   f"{timeout:g}s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"WebSocket client exited ({self.proc.poll()}):\n{tail}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def ask(self, line: str, timeout: float) -> dict[str, Any]:
        self.send(line)
        return self.read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop(self.proc)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@contextmanager
def client(log: Path) -> Iterator[WsClient]:
    c = WsClient(log)
    try:
        yield c
    finally:
        c.close()


# --------------------------------------------------------------------------- servers


def edge_config(root: Path, upstream: str, sockets: int) -> Path:
    """One WebSocket route to the upstream's /echo, nothing in its way. What would stop
    thousands of sockets from one address is raised: the listener's connections per client
    address and the route's sockets per caller (both count the bench's 127.0.0.1), and the
    service's pool, which an open WebSocket keeps a connection of."""
    (root / "routes").mkdir(parents=True)
    (root / "edge.yaml").write_text(
        "services:\n"
        "  chat:\n"
        f"    url: {upstream}\n"
        f"    pool: {{size: {min(10_000, max(100, sockets + 100))}}}\n"
        f"limits: {{max_connections_per_ip: {2 * sockets + 1000}}}\n"
        "observability: {access_log: false}\n"
        "reload: {watch: false}\n"
        "drain_timeout: 1s\n")
    (root / "routes" / "r.yaml").write_text(
        "routes:\n"
        "  - route: GET /ws/echo\n"
        "    source: {service: chat, path: /echo}\n"
        '    auth: {jwt: "off"}\n'
        "    rate_limit: []\n"
        "    websocket: {max_per_identity: 1000000, messages_per_second: 1000000000,\n"
        "                burst: 1000000000, heartbeat: 0s, idle_timeout: 3600s,\n"
        "                compress: false}\n")
    return root


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_of(pid: int) -> int:
    m = re.search(r"^Max open files\s+(\d+)", Path(f"/proc/{pid}/limits").read_text(), re.M)
    return int(m[1]) if m else -1


def upstream_sockets(base: str) -> int:
    n: int = json.loads(fetch(f"{base}/count")[1])["sockets"]
    return n


def edge_sockets(base: str) -> int | None:
    """The edge's edge_websockets_open gauge (summed over its labels), if it has one."""
    text = fetch(f"{base}/metrics")[1].decode()
    found = re.findall(r"^edge_websockets_open(?:\{[^}]*\})? (\S+)$", text, re.M)
    return int(sum(float(v) for v in found)) if found else None


def wait_closed(up_base: str, timeout: float = 20.0) -> int:
    """Until the upstream holds no socket (the last phase's are gone); returns how many
    it still holds."""
    deadline = time.monotonic() + timeout
    while (n := upstream_sockets(up_base)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


# --------------------------------------------------------------------------- measure


@dataclass(slots=True)
class Idle:
    sockets: int = 0
    warmup: int = 0
    open_secs: float = 0.0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    fds_before: int = 0
    fds_after: int = 0
    held_by_server: int | None = None  # the edge's gauge (None: the relay has none)
    held_by_upstream: int = 0
    held_by_client: int = 0
    close_secs: float = 0.0

    @property
    def kb_per_socket(self) -> float:
        measured = self.sockets - self.warmup
        return (self.rss_after_kb - self.rss_before_kb) / measured if measured > 0 else math.nan

    @property
    def all_held(self) -> bool:
        return (self.held_by_upstream == self.held_by_client == self.sockets
                and self.held_by_server in (None, self.sockets))

    def summary(self) -> dict[str, Any]:
        return {"sockets": self.sockets, "warmup": self.warmup,
                "open_secs": round(self.open_secs, 2), "open_failed": self.failed,
                "open_errors": self.errors, "rss_before_kb": self.rss_before_kb,
                "rss_after_kb": self.rss_after_kb, "kb_per_socket": self.kb_per_socket,
                "fds_before": self.fds_before, "fds_after": self.fds_after,
                "held_by_server": self.held_by_server,
                "held_by_upstream": self.held_by_upstream,
                "held_by_client": self.held_by_client}


def measure_idle(label: str, pid: int, url: str, n: int, idle: float, up_base: str,
                 gauge: Any, log: Path) -> Idle:
    res = Idle(sockets=n, warmup=min(50, n // 20))

    def note(msg: str) -> None:
        print(f"  idle {label}: {msg}", file=sys.stderr, flush=True)

    with client(log) as cl:
        got = cl.ask(f"open {url} {res.warmup} {OPEN_CONCURRENCY}", 60)
        if got["opened"] != res.warmup:
            raise RuntimeError(f"{label}: warm-up opened {got['opened']}/{res.warmup}: "
                               f"{got['errors']}")
        time.sleep(1.0)
        res.rss_before_kb, res.fds_before = rss_kb(pid), fd_count(pid)
        note(f"{res.warmup} warm-up sockets, RSS {res.rss_before_kb / KB:.1f} MB, "
             f"{res.fds_before} fds; opening {n - res.warmup:,} more")
        got = cl.ask(f"open {url} {n - res.warmup} {OPEN_CONCURRENCY}", 120 + n / 50)
        res.open_secs, res.failed, res.errors = got["secs"], got["failed"], got["errors"]
        if res.failed:
            note(f"{res.failed} sockets failed to open: {res.errors}")
        time.sleep(idle)
        res.rss_after_kb, res.fds_after = rss_kb(pid), fd_count(pid)
        res.held_by_server = gauge()
        res.held_by_upstream = upstream_sockets(up_base)
        res.held_by_client = cl.ask("status", 10)["open"]
        note(f"{res.held_by_client:,} open in {res.open_secs:.1f}s, upstream holds "
             f"{res.held_by_upstream:,}, RSS {res.rss_after_kb / KB:.1f} MB "
             f"({res.kb_per_socket:.2f} KB/socket), {res.fds_after:,} fds")
        res.close_secs = cl.ask("close", 60)["secs"]
    if left := wait_closed(up_base):
        note(f"the upstream still holds {left} sockets 20 s after closing")
    return res


@dataclass(frozen=True, slots=True)
class Load:
    rate: float  # messages/s (echoes received in the window)
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_us: float  # the target's server process: CPU µs per message
    upstream_us: float  # the echo upstream's (for "upstream alone", the same process)
    client_cpu: float  # the client's CPU, share of one core over the window


@dataclass(slots=True)
class Series:
    """All rounds of one target."""

    results: list[Load] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.results))

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)


def ratio_per_round(a: Series, b: Series, attr: str = "rate") -> float:
    """Median over rounds of a's `attr` / b's, same-round pairs."""
    return float(statistics.median(getattr(x, attr) / getattr(y, attr)
                                   for x, y in zip(a.results, b.results, strict=True)))


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    label: str
    url: str
    pid: int  # the server process the client talks to


def run_load(cl: WsClient, t: Target, up_pid: int, args: argparse.Namespace,
             duration: float) -> Load:
    text = "0" if args.binary else "1"
    cl.send(f"load {t.url} {args.connections} {args.size} {args.window} {RAMP} "
            f"{duration} {text}")
    mark = cl.read(60 + RAMP)
    if mark.get("mark") != "start":
        raise RuntimeError(f"{t.label}: expected the start mark, got {mark}")
    s0, u0 = cpu_seconds(t.pid), cpu_seconds(up_pid)
    mark = cl.read(duration + 10)
    s1, u1 = cpu_seconds(t.pid), cpu_seconds(up_pid)
    if mark.get("mark") != "end":
        raise RuntimeError(f"{t.label}: expected the end mark, got {mark}")
    got = cl.read(60)
    msgs = got["messages"]
    if got["errors"] or got["mismatched"] or got["connect_failed"]:
        print(f"  {t.label}: {got['connect_failed']} connects failed, {got['mismatched']} "
              f"echoes mismatched, errors {got['errors']}", file=sys.stderr, flush=True)
    per = 1e6 / msgs if msgs else math.nan
    p50, p99, mx = got["rtt_ms"]
    return Load(msgs / got["secs"], p50, p99, mx,
                got["error_count"] + got["mismatched"] + got["connect_failed"],
                (s1 - s0) * per, (u1 - u0) * per, got["cpu_s"] / got["secs"])


def schedule(targets: list[Target], rnd: int) -> list[Target]:
    """This round's order: (upstream alone, bare relay, edge), reversed every other round,
    so the two compared are always measured back to back and take turns going first."""
    return targets if rnd % 2 == 0 else targets[::-1]


# ---------------------------------------------------------------------------- report


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [fmt_row(rows[0], widths), fmt_row(["-" * w for w in widths], widths),
            *(fmt_row(r, widths) for r in rows[1:])]


def idle_table(results: dict[str, Idle], labels: dict[str, str]) -> list[str]:
    rows = [["target", "sockets held", "RSS before", "RSS after", "KB/socket", "fds after",
             "open in", "failed"]]
    for key, r in results.items():
        held = f"{r.held_by_client:,}"
        if r.held_by_upstream != r.held_by_client:
            held += f" (upstream {r.held_by_upstream:,})"
        rows.append([labels[key], held, f"{r.rss_before_kb / KB:.1f} MB",
                     f"{r.rss_after_kb / KB:.1f} MB", f"{r.kb_per_socket:.2f}",
                     f"{r.fds_after:,}", f"{r.open_secs:.1f}s", str(r.failed)])
    return table(rows)


def load_table(targets: list[Target], series: dict[str, Series], ratio: dict[str, float]
               ) -> list[str]:
    rows = [["target", "msg/s", "spread", "p50 ms", "p99 ms", "vs bare relay",
             "server CPU µs/msg", "upstream µs/msg", "client CPU", "errors"]]
    for t in targets:
        s = series[t.key]
        rates = [r.rate for r in s.results]
        med = statistics.median(rates)
        spread = f"±{(max(rates) - min(rates)) / 2 / med * 100:.0f}%" if med else "-"
        rows.append([t.label, f"{med:,.0f}", spread, f"{s.median('p50_ms'):.2f}",
                     f"{s.median('p99_ms'):.2f}",
                     f"{ratio[t.key]:.2f}x" if t.key in ratio else "",
                     f"{s.median('server_us'):.1f}",
                     "" if t.key == "upstream" else f"{s.median('upstream_us'):.1f}",
                     f"{s.median('client_cpu') * 100:.0f}%", str(s.errors)])
    return table(rows)


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="rotating rounds (default 5)")
    ap.add_argument("--duration", type=float, default=4.0,
                    help="measured seconds per target and round (default 4)")
    ap.add_argument("--connections", type=int, default=64,
                    help="sockets of the relay load (default 64)")
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of relay load per target before the rounds (default 2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 500 idle sockets, 1 relay round of 2 s")
    ap.add_argument("--sockets", type=int, default=TARGET_SOCKETS,
                    help=f"idle sockets held at once (default {TARGET_SOCKETS:,})")
    ap.add_argument("--idle", type=float, default=2.0,
                    help="seconds the sockets stay idle before RSS after (default 2)")
    ap.add_argument("--no-bare-idle", action="store_true",
                    help="skip the bare relay's idle-sockets measurement (reference only)")
    ap.add_argument("--size", type=int, default=1024, help="message bytes (default 1024)")
    ap.add_argument("--window", type=int, default=1,
                    help="messages in flight per socket (default 1: send, wait for the "
                    "echo, send the next)")
    ap.add_argument("--binary", action="store_true",
                    help="binary messages (default: text, as JSON chat messages are)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    settle_rounds(ap, args)
    if args.quick:
        args.sockets = min(args.sockets, 500)
    if args.sockets < 20 or args.connections < 1 or args.size < 1 or args.window < 1:
        ap.error("--sockets >= 20, --connections, --size and --window >= 1")
    if (code := preflight("websocket.py", wrk=False)) is not None:
        return code
    nofile = raise_nofile()
    if 2 * args.sockets + FD_SPARE > nofile:
        ap.error(f"{nofile:,} open files per process, and each socket through the edge is "
                 f"two: at most {(nofile - FD_SPARE) // 2:,} sockets")

    ports = {k: free_port() for k in ("up", "bare", "edge")}
    base = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    ws = {k: "ws" + b[4:] for k, b in base.items()}
    started = time.monotonic()
    idle: dict[str, Idle] = {}
    warnings: list[str] = []
    labels = {"upstream": "upstream alone", "bare": "bare aiohttp relay", "edge": "edge"}
    series: dict[str, Series] = {k: Series() for k in labels}
    try:
        with tempfile.TemporaryDirectory(prefix="edge-ws-") as tmp_name:
            tmp = Path(tmp_name)
            with ExitStack() as stack:
                up, _ = stack.enter_context(process(
                    [sys.executable, str(HERE / "_ws_upstream.py"), str(ports["up"])],
                    f"{base['up']}/health", tmp / "upstream.err"))
                bare, _ = stack.enter_context(process(
                    [sys.executable, str(HERE / "_ws_minimal_relay.py"), str(ports["bare"]),
                     ws["up"]], f"{base['bare']}/health", tmp / "bare.err"))
                cfg = edge_config(tmp / "config", base["up"], args.sockets)
                edge, _ = stack.enter_context(process(
                    [str(EDGE_BIN), "serve", "--config", str(cfg), "--host", "127.0.0.1",
                     "--port", str(ports["edge"])], f"{base['edge']}/health",
                    tmp / "edge.err"))
                pids = {"upstream": up.pid, "bare": bare.pid, "edge": edge.pid}
                limits = {k: nofile_of(p) for k, p in pids.items()}
                print(f"WebSocket benchmark: {args.sockets:,} idle sockets through one "
                      f"process; relay of {args.size:,} B "
                      f"{'binary' if args.binary else 'text'} messages, "
                      f"{args.connections} sockets x window {args.window}, {args.rounds} "
                      f"round(s) x {args.duration:g}s per target; {os.cpu_count()} CPUs, "
                      f"Python {platform.python_version()}, open files "
                      + ", ".join(f"{labels[k]} {v:,}" for k, v in limits.items()),
                      flush=True)

                # 1. idle sockets: the edge, then the bare relay, one at a time
                idle_targets = [("edge", edge.pid, f"{ws['edge']}/ws/echo",
                                 lambda: edge_sockets(base["edge"]))]
                if not args.no_bare_idle:
                    idle_targets.append(("bare", bare.pid, f"{ws['bare']}/echo",
                                         lambda: None))
                for key, pid, url, gauge in idle_targets:
                    idle[key] = measure_idle(labels[key], pid, url, args.sockets, args.idle,
                                             base["up"], gauge, tmp / f"idle-{key}.err")

                # 2. relay throughput, rotating rounds
                targets = [Target("upstream", labels["upstream"], f"{ws['up']}/echo", up.pid),
                           Target("bare", labels["bare"], f"{ws['bare']}/echo", bare.pid),
                           Target("edge", labels["edge"], f"{ws['edge']}/ws/echo", edge.pid)]
                width = max(len(t.label) for t in targets)
                with client(tmp / "load.err") as cl:
                    for t in targets:
                        run_load(cl, t, up.pid, args, args.warmup)
                    for rnd in range(args.rounds):
                        for t in schedule(targets, rnd):
                            res = run_load(cl, t, up.pid, args, args.duration)
                            series[t.key].results.append(res)
                            print(f"  relay round {rnd + 1}/{args.rounds}  {t.label:<{width}} "
                                  f"{res.rate:>9,.0f} msg/s  p50 {res.p50_ms:6.2f} ms  "
                                  f"p99 {res.p99_ms:6.2f} ms  server {res.server_us:5.1f} "
                                  f"µs/msg  client CPU {res.client_cpu * 100:3.0f}%",
                                  file=sys.stderr, flush=True)
            # stopped: did a server or a client complain on its way?
            for log in sorted(tmp.glob("*.err")):
                if trouble := log_trouble(log):
                    warnings.append(f"{log.name}: {trouble}")
    except KeyboardInterrupt:
        print("interrupted; servers and clients stopped", file=sys.stderr)
        return 130

    ratio = {k: ratio_per_round(series[k], series["bare"])
             for k in ("upstream", "edge")}
    ratio["bare"] = 1.0
    cpu_ratio = ratio_per_round(series["edge"], series["bare"], "server_us")
    e = idle["edge"]
    full = args.sockets >= TARGET_SOCKETS
    ok_held = e.all_held if full else None
    ok_mem = e.kb_per_socket <= TARGET_KB_PER_SOCKET
    ok_ratio = ratio["edge"] >= TARGET_RATIO
    lines = ["", f"idle sockets: {args.sockets:,} per server, opened {OPEN_CONCURRENCY} "
             "handshakes at a time", *idle_table(idle, labels), ""]
    lines += [f"relay: {args.connections} sockets x {args.window} message(s) of "
              f"{args.size:,} B in flight (medians over {args.rounds} round(s) of "
              f"{args.duration:g}s)", *load_table(targets, series, ratio), ""]
    server_gauge = "-" if e.held_by_server is None else f"{e.held_by_server:,}"
    lines += [
        f"idle WebSockets held by one edge process: {e.held_by_client:,} open at the client, "
        f"{e.held_by_upstream:,} at the upstream, {server_gauge} by edge_websockets_open, "
        f"{e.fds_after:,} fds in the edge (target: all of >= {TARGET_SOCKETS:,}): "
        + ("PASS" if ok_held else "FAIL" if full else
           f"SKIPPED (--sockets {args.sockets:,})"),
        f"edge RSS per idle WebSocket (client + upstream socket): {e.kb_per_socket:.2f} KB "
        f"(target <= {TARGET_KB_PER_SOCKET:g} KB): {'PASS' if ok_mem else 'FAIL'}",
        f"edge msg/s vs bare aiohttp relay: {ratio['edge']:.2f}x (target >= "
        f"{TARGET_RATIO:.2f}x): {'PASS' if ok_ratio else 'FAIL'}",
        f"edge CPU per message vs bare relay (informational): {cpu_ratio:.2f}x; p99 round "
        f"trip {series['edge'].median('p99_ms'):.2f} ms against "
        f"{series['bare'].median('p99_ms'):.2f} ms",
    ]
    if "bare" in idle:
        b = idle["bare"]
        lines.append(f"edge vs bare relay, idle (informational): "
                     f"{e.kb_per_socket / b.kb_per_socket:.2f}x its RSS per socket")
    lines += ["KB = 1024 B; RSS per socket = (RSS after - RSS before) / sockets opened after "
              "the warm-up; ratios: medians of same-round pairs; spread = half the min-max "
              "range of msg/s; CPU µs/msg: /proc utime+stime over the measured window per "
              "echoed message; client CPU: share of one core",
              f"total {time.monotonic() - started:.0f}s"]
    print("\n".join(lines))
    errors = sum(s.errors for s in series.values())
    if errors:
        warnings.append(f"{errors} relay errors (failed connects, lost or mismatched "
                        "echoes; see 'errors')")
    for w in warnings:
        print(f"WARNING: {w}")
    if args.json:
        print(json.dumps({
            "sockets": args.sockets, "rounds": args.rounds, "duration_s": args.duration,
            "connections": args.connections, "size": args.size, "window": args.window,
            "binary": args.binary,
            "idle": {k: r.summary() for k, r in idle.items()},
            "relay": {k: {"msg_per_s": s.median("rate"), "p50_ms": s.median("p50_ms"),
                          "p99_ms": s.median("p99_ms"), "server_us_per_msg":
                          s.median("server_us"), "upstream_us_per_msg": s.median("upstream_us"),
                          "client_cpu": s.median("client_cpu"), "errors": s.errors}
                      for k, s in series.items()},
            "edge_msg_ratio_vs_bare": ratio["edge"],
            "edge_cpu_per_msg_ratio_vs_bare": cpu_ratio,
            "warnings": warnings,
            "pass": {"sockets": ok_held, "kb_per_socket": ok_mem, "msg_ratio": ok_ratio},
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
