"""Server-sent events: memory per idle stream and broadcast latency, 10,000 streams.

    .venv/bin/python bench/sse.py [--connections 10000] [--broadcasts 5] [--interval 1.5]
                                  [--clients 1] [--no-bare] [--quick] [--json]

Starts, each in its own process on 127.0.0.1: `edge serve` on a temp config (one service
nobody listens on, no routes, an `events:` block with a public topic, a publisher key, 15 s
heartbeat, access log off) and, as a reference, bench/_sse_bare.py (a bare aiohttp-sse
server). For each target in turn, client process(es) (bench/_sse_client.py: raw asyncio
sockets, its own HTTP/1.1 GET and SSE parser) open `--connections` streams on
`/events?topic=public`:

1. warm-up: the first W = min(50, N/20) streams open and one broadcast reaches them; they
   stay open, so one-off costs (first stream, first event, label children…) are in
   the baseline and nothing freed is waiting to be reused by the measured streams;
2. RSS before (VmRSS of the server process), then the other N - W streams open;
3. after `--idle` s (2): RSS after; per stream = (after - before) / (N - W); the streams the
   server says it holds (edge: `edge_sse_streams` on /metrics; bare: /count);
4. `--broadcasts` (5) events, one every `--interval` s: the bench takes time.monotonic()
   (CLOCK_MONOTONIC, shared by every process on the machine) just before it POSTs
   `{"topic": "public", "event": "bench", "data": {"seq": k}}`, and each client process
   notes when each stream received that event; latency = arrival - publish time, over all N
   streams: p50, p99 and max per broadcast; the medians over broadcasts are reported, and
   the worst max.

Goals (issue): 10,000 streams held by one edge process; RSS per stream <= 15 KB; a
broadcast reaches every stream, p99 <= 500 ms. The exit code is 0 even when one is missed
(2 when the edge is not installed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import secrets
import select
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import EDGE_BIN, preflight, raise_nofile
from proxy import fmt_row, free_port, process, stop, write_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENT = HERE / "_sse_client.py"
BARE = HERE / "_sse_bare.py"
TARGET_CONNECTIONS = 10_000
TARGET_KB_PER_STREAM = 15.0
TARGET_P99_MS = 500.0
OPEN_CONCURRENCY = 200  # connecting at once, per client process (listen backlog: 2048)
FD_SPARE = 200  # descriptors a process needs besides the streams
KB = 1024  # /proc reports kB = KiB; KB here means 1024 bytes too

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


# ------------------------------------------------------------------------- processes


_LOG_TROUBLE = re.compile(r"Traceback|Task was destroyed|Error|ERROR|WARNING")


def log_trouble(log: Path) -> str | None:
    """The first worrying line a stopped server wrote to stderr, if any."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if _LOG_TROUBLE.search(line)]
    return f"{len(lines)} line(s), first: {lines[0][:200]}" if lines else None


class ClientProc:
    """One bench/_sse_client.py process, driven line by line over its stdin/stdout."""

    def __init__(self, host: str, port: int, path: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CLIENT), host, str(port), path], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True)
        self.buf = b""
        hello = self.read(10)
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
                raise RuntimeError(f"SSE client {self.proc.pid}: no answer in {timeout:g}s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"SSE client exited ({self.proc.poll()}):\n{tail}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop(self.proc)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Clients:
    """The client processes of one target; every command goes to all of them at once."""

    def __init__(self, procs: list[ClientProc]) -> None:
        self.procs = procs

    def ask(self, cmds: Sequence[str], timeout: float) -> list[dict[str, Any]]:
        for p, cmd in zip(self.procs, cmds, strict=True):
            p.send(cmd)
        return [p.read(timeout) for p in self.procs]

    def open(self, n: int) -> dict[str, Any]:
        shares = split(n, len(self.procs))
        got = self.ask([f"open {k} {OPEN_CONCURRENCY}" for k in shares], 60 + n / 200)
        errors: dict[str, int] = {}
        for g in got:
            for k, v in g["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {"opened": sum(g["opened"] for g in got), "failed": sum(g["failed"] for g in got),
                "errors": errors, "secs": max(g["secs"] for g in got)}

    def wait(self, seq: int, timeout: float) -> tuple[list[float], int, int]:
        got = self.ask([f"wait {seq} {timeout}"] * len(self.procs), timeout + 30)
        return ([t for g in got for t in g["times"]], sum(g["open"] for g in got),
                sum(g["missing"] for g in got))

    def open_count(self) -> int:
        return sum(g["open"] for g in self.ask(["status"] * len(self.procs), 10))

    def close(self) -> None:
        for p in self.procs:
            p.close()


@contextmanager
def clients(k: int, port: int, path: str, tmp: Path, tag: str) -> Iterator[Clients]:
    procs: list[ClientProc] = []
    try:
        for i in range(k):
            procs.append(ClientProc("127.0.0.1", port, path, tmp / f"{tag}-client{i}.err"))
        yield Clients(procs)
    finally:
        for p in procs:
            p.close()


def split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def rss_kb(pid: int) -> int:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    if not m:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return int(m[1])


def get(url: str) -> bytes:
    with _HTTP.open(url, timeout=10) as r:
        body: bytes = r.read()
        return body


def post(url: str, doc: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with _HTTP.open(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


# ---------------------------------------------------------------------------- targets


@dataclass(slots=True)
class Target:
    key: str
    label: str
    events_url: str  # path + query the clients GET
    publish_url: str
    publish_headers: dict[str, str]
    count: Callable[[], int]  # streams the server says it holds


def edge_config(root: Path, n: int) -> Path:
    # no routes (`edge serve` accepts an empty dir); one service is required: nothing
    # listens there and no route uses it
    return write_config(root, {"none": f"http://127.0.0.1:{free_port()}"}, extra=(
        "events:\n"
        "  topics:\n"
        "    - {topic: public, public: true}\n"
        "  publisher_keys_env: [PUBKEY]\n"
        "  heartbeat: 15s\n"
        f"  max_connections: {max(12_000, n + 100)}\n"
        # every bench stream comes from 127.0.0.1 without a token: one identity (the IP),
        # one client address (the listener's per-address cap)
        "  max_per_identity: 20000\n"
        f"limits: {{max_connections_per_ip: {2 * n + 1000}}}\n"))


def edge_streams(base: str) -> int:
    m = re.search(r"^edge_sse_streams (\S+)$", get(f"{base}/metrics").decode(), re.M)
    if not m:
        raise RuntimeError("no edge_sse_streams gauge on /metrics")
    return int(float(m[1]))


def bare_streams(base: str) -> int:
    count: int = json.loads(get(f"{base}/count"))["streams"]
    return count


# ---------------------------------------------------------------------------- measure


@dataclass(slots=True)
class Broadcast:
    seq: int
    received: int
    expected: int  # streams still open at the clients
    p50_ms: float
    p99_ms: float
    max_ms: float
    ack_ms: float  # the publish answer (202) arrived after


@dataclass(slots=True)
class Result:
    connections: int = 0
    warmup: int = 0
    open_secs: float = 0.0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    rss_after_broadcasts_kb: int = 0
    held_by_server: int = 0
    held_by_clients: int = 0
    broadcasts: list[Broadcast] = field(default_factory=list)

    @property
    def kb_per_stream(self) -> float:
        measured = self.connections - self.warmup
        return (self.rss_after_kb - self.rss_before_kb) / measured if measured > 0 else math.nan

    def median(self, attr: str) -> float:
        vals = [getattr(b, attr) for b in self.broadcasts]
        return float(statistics.median(vals)) if vals else math.nan

    @property
    def all_received(self) -> bool:
        return bool(self.broadcasts) and all(b.received >= self.connections
                                             for b in self.broadcasts)

    def summary(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "warmup": self.warmup,
            "open_secs": round(self.open_secs, 2), "open_failed": self.failed,
            "open_errors": self.errors,
            "held_by_server": self.held_by_server, "held_by_clients": self.held_by_clients,
            "rss_before_kb": self.rss_before_kb, "rss_after_kb": self.rss_after_kb,
            "rss_after_broadcasts_kb": self.rss_after_broadcasts_kb,
            "kb_per_stream": round(self.kb_per_stream, 2),
            "latency_ms": {"p50": self.median("p50_ms"), "p99": self.median("p99_ms"),
                           "max": self.median("max_ms"),
                           "worst_max": max((b.max_ms for b in self.broadcasts),
                                            default=math.nan),
                           "worst_p99": max((b.p99_ms for b in self.broadcasts),
                                            default=math.nan),
                           "publish_ack": self.median("ack_ms")},
            "broadcasts": [{"seq": b.seq, "received": b.received, "expected": b.expected,
                            "p50_ms": b.p50_ms, "p99_ms": b.p99_ms, "max_ms": b.max_ms,
                            "ack_ms": b.ack_ms} for b in self.broadcasts],
        }


def pct(sorted_vals: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return math.nan
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def broadcast(t: Target, cl: Clients, seq: int, timeout: float) -> Broadcast:
    t0 = time.monotonic()
    status, body = post(t.publish_url, {"topic": "public", "event": "bench",
                                        "data": {"seq": seq}}, t.publish_headers)
    ack = time.monotonic() - t0
    if status != 202:
        raise RuntimeError(f"{t.label}: publish -> {status} {body[:300]!r}")
    times, expected, _missing = cl.wait(seq, timeout)
    lat = sorted((x - t0) * 1000 for x in times)
    return Broadcast(seq, len(lat), expected, round(pct(lat, 0.50), 2),
                     round(pct(lat, 0.99), 2), round(lat[-1], 2) if lat else math.nan,
                     round(ack * 1000, 2))


def measure(t: Target, proc: subprocess.Popen[bytes], port: int, args: argparse.Namespace,
            tmp: Path) -> Result:
    n = args.connections
    res = Result(connections=n, warmup=min(50, n // 20))
    note = lambda msg: print(f"  {t.label}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    with clients(args.clients, port, t.events_url, tmp, t.key) as cl:
        got = cl.open(res.warmup)
        if got["opened"] != res.warmup:
            raise RuntimeError(f"{t.label}: warm-up opened {got['opened']}/{res.warmup}: "
                               f"{got['errors']}")
        warm = broadcast(t, cl, 0, 5.0)
        if warm.received != res.warmup:
            raise RuntimeError(f"{t.label}: warm-up event reached {warm.received}/{res.warmup}")
        time.sleep(1.0)
        res.rss_before_kb = rss_kb(proc.pid)
        note(f"{res.warmup} warm-up streams, RSS {res.rss_before_kb / KB:.1f} MB; "
             f"opening {n - res.warmup:,} more")
        got = cl.open(n - res.warmup)
        res.open_secs, res.failed, res.errors = got["secs"], got["failed"], got["errors"]
        if res.failed:
            note(f"{res.failed} streams failed to open: {res.errors}")
        time.sleep(args.idle)
        res.rss_after_kb = rss_kb(proc.pid)
        res.held_by_server = t.count()
        res.held_by_clients = cl.open_count()
        note(f"{res.held_by_clients:,} streams open in {res.open_secs:.1f}s, server holds "
             f"{res.held_by_server:,}, RSS {res.rss_after_kb / KB:.1f} MB "
             f"({res.kb_per_stream:.2f} KB/stream)")
        for seq in range(1, args.broadcasts + 1):
            time.sleep(args.interval)
            b = broadcast(t, cl, seq, args.timeout)
            res.broadcasts.append(b)
            note(f"broadcast {seq}/{args.broadcasts}: {b.received:,}/{b.expected:,} received, "
                 f"p50 {b.p50_ms:.1f} ms, p99 {b.p99_ms:.1f} ms, max {b.max_ms:.1f} ms "
                 f"(202 after {b.ack_ms:.1f} ms)")
        res.rss_after_broadcasts_kb = rss_kb(proc.pid)
    return res


# ------------------------------------------------------------------------------ report


def report(results: dict[str, Result], labels: dict[str, str]) -> list[str]:
    head = ["target", "streams held", "RSS before", "RSS after", "KB/stream", "p50 ms",
            "p99 ms", "max ms", "worst max", "received", "202 after", "open in"]
    rows = [head]
    for key, r in results.items():
        rx = (f"{min(b.received for b in r.broadcasts):,}/{r.connections:,}"
              if r.broadcasts else "-")
        rows.append([labels[key], f"{r.held_by_server:,}", f"{r.rss_before_kb / KB:.1f} MB",
                     f"{r.rss_after_kb / KB:.1f} MB", f"{r.kb_per_stream:.2f}",
                     f"{r.median('p50_ms'):.1f}", f"{r.median('p99_ms'):.1f}",
                     f"{r.median('max_ms'):.1f}",
                     f"{max((b.max_ms for b in r.broadcasts), default=math.nan):.1f}", rx,
                     f"{r.median('ack_ms'):.1f} ms", f"{r.open_secs:.1f}s"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return [fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths),
            *(fmt_row(row, widths) for row in rows[1:])]


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=TARGET_CONNECTIONS,
                    help=f"streams held at once (default {TARGET_CONNECTIONS:,})")
    ap.add_argument("--broadcasts", type=int, default=5, help="events published (default 5)")
    ap.add_argument("--interval", type=float, default=1.5,
                    help="seconds before each broadcast (default 1.5)")
    ap.add_argument("--idle", type=float, default=2.0,
                    help="seconds the streams stay idle before RSS after (default 2)")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds a broadcast may take to reach every stream (default 10)")
    ap.add_argument("--clients", type=int, default=1,
                    help="client processes sharing the streams (default 1)")
    ap.add_argument("--no-bare", action="store_true",
                    help="skip the bare aiohttp-sse reference server")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 streams, 2 events")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.connections, args.broadcasts = 1_000, 2
    if args.connections < 20 or args.broadcasts < 1 or args.clients < 1:
        ap.error("--connections >= 20, --broadcasts >= 1, --clients >= 1")
    if (code := preflight("sse.py", wrk=False)) is not None:
        return code
    nofile = raise_nofile()
    if args.connections + FD_SPARE > nofile:
        ap.error(f"a server process may open {nofile:,} files: at most "
                 f"{nofile - FD_SPARE:,} streams")
    if math.ceil(args.connections / args.clients) + FD_SPARE > nofile:
        ap.error(f"{nofile:,} open files per process: use --clients "
                 f"{math.ceil(args.connections / (nofile - FD_SPARE))} or more")

    key = secrets.token_urlsafe(24)
    edge_port, bare_port = free_port(), free_port()
    edge_base, bare_base = f"http://127.0.0.1:{edge_port}", f"http://127.0.0.1:{bare_port}"
    targets = [Target("edge", "edge", "/events?topic=public", f"{edge_base}/_edge/publish",
                      {"Authorization": f"Bearer {key}"}, lambda: edge_streams(edge_base))]
    if not args.no_bare:
        targets.append(Target("bare", "bare aiohttp-sse", "/events?topic=public",
                              f"{bare_base}/publish", {}, lambda: bare_streams(bare_base)))
    labels = {t.key: t.label for t in targets}
    results: dict[str, Result] = {}
    warnings: list[str] = []
    started = time.monotonic()
    print(f"SSE benchmark: {args.connections:,} idle streams on one server process, "
          f"{args.clients} client process(es), {args.broadcasts} broadcast(s) "
          f"{args.interval:g}s apart; {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, open files {nofile:,}/process", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="edge-sse-") as tmp_name:
            tmp = Path(tmp_name)
            for t in targets:  # one server at a time, so they don't share the CPUs
                with ExitStack() as stack:
                    if t.key == "edge":
                        cfg = edge_config(tmp / "config", args.connections)
                        proc, _ = stack.enter_context(process(
                            [str(EDGE_BIN), "serve", "--config", str(cfg), "--host",
                             "127.0.0.1", "--port", str(edge_port)], f"{edge_base}/health",
                            tmp / "edge.err", env={**os.environ, "PUBKEY": key}))
                        port = edge_port
                    else:
                        proc, _ = stack.enter_context(process(
                            [sys.executable, str(BARE), str(bare_port)],
                            f"{bare_base}/health", tmp / "bare.err"))
                        port = bare_port
                    results[t.key] = measure(t, proc, port, args, tmp)
                # stopped: did the server or a client complain on its way?
                for log in [tmp / f"{t.key}.err", *sorted(tmp.glob(f"{t.key}-client*.err"))]:
                    if trouble := log_trouble(log):
                        warnings.append(f"{log.name}: {trouble}")
    except KeyboardInterrupt:
        print("interrupted; servers and clients stopped", file=sys.stderr)
        return 130

    e = results["edge"]
    full = args.connections >= TARGET_CONNECTIONS
    ok_held = (e.held_by_server == e.held_by_clients == args.connections) if full else None
    ok_mem = e.kb_per_stream <= TARGET_KB_PER_STREAM
    ok_lat = e.all_received and e.median("p99_ms") <= TARGET_P99_MS
    lines = ["", *report(results, labels), ""]
    lines += [
        "RSS after the broadcasts: " + ", ".join(
            f"{labels[k]} {r.rss_after_broadcasts_kb / KB:.1f} MB" for k, r in results.items()),
        f"streams held by one edge process: {e.held_by_server:,} (edge_sse_streams), "
        f"{e.held_by_clients:,} open at the clients (target: all of >= "
        f"{TARGET_CONNECTIONS:,}): "
        + ("PASS" if ok_held else "FAIL" if full else
           f"SKIPPED (--connections {args.connections:,})"),
        f"edge RSS per stream: {e.kb_per_stream:.2f} KB (target <= "
        f"{TARGET_KB_PER_STREAM:g} KB): {'PASS' if ok_mem else 'FAIL'}",
        f"edge broadcast: reached {min((b.received for b in e.broadcasts), default=0):,}/"
        f"{e.connections:,} streams at worst, p99 {e.median('p99_ms'):.1f} ms (median of "
        f"{len(e.broadcasts)}; target: all, p99 <= {TARGET_P99_MS:g} ms): "
        f"{'PASS' if ok_lat else 'FAIL'}",
    ]
    if "bare" in results:
        b = results["bare"]
        lines.append(f"edge vs bare aiohttp-sse (informational): "
                     f"{e.kb_per_stream / b.kb_per_stream:.2f}x its RSS per stream, "
                     f"{e.median('p99_ms') / b.median('p99_ms'):.2f}x its broadcast p99")
    lines += ["KB = 1024 B; RSS per stream = (RSS after - RSS before) / streams opened after "
              "the warm-up; latencies: medians over the broadcasts, publish -> received by "
              "the client process", f"total {time.monotonic() - started:.0f}s"]
    print("\n".join(lines))
    for w in warnings:
        print(f"WARNING: {w}")
    if args.json:
        print(json.dumps({
            "connections": args.connections, "clients": args.clients,
            "broadcasts": args.broadcasts, "interval_s": args.interval,
            "targets": {k: r.summary() for k, r in results.items()},
            "warnings": warnings,
            "pass": {"connections": ok_held, "kb_per_stream": ok_mem,
                     "broadcast_p99": ok_lat},
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
