"""Cost of shaping: a shaped ~10 KB JSON route vs pass-through of the same resource.

    .venv/bin/python bench/shaped.py [--rounds 3] [--duration 5] [--connections 64]
                                     [--quick] [--json] [--baseline DIR]

Starts, each in its own process on 127.0.0.1: the demo upstream services
(`python -m edge.demo.upstreams --port-base N`; the claims service on N+2 serves
/claims?member_id=1001&size=10, about 10 KB of JSON) and `edge serve` on a temp config
(access log off, no reload watcher) with three routes onto that one resource:

    GET /plain       pass-through (the edge still brotli-compresses it as it streams)
    GET /shaped      shape: fields "items(id,claim_number,status,total_amount,provider(name)),
                     page,has_more", prune, keymap k1 {claim_number: cn, total_amount: ta}
    GET /compressed  shape: {} (buffered, re-serialized and compressed, no projection),
                     requested with X-Device-Type: desktop

wrk (`-t1`, every request with `Accept-Encoding: br`) loads each in turn, the order rotating
every round; the table shows medians, ratios are medians of same-round pairs (as in
bench/proxy.py, whose helpers this reuses). The upstream alone is measured for reference.
--baseline DIR also runs DIR's edge on the same config, its three routes loaded as
"(baseline)" twins in the same rounds (their ratios are against its own pass-through), and
reports new/baseline req/s per route.

Goal (issue): shaped req/s >= 50% of pass-through's at 64 connections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from _common import baseline_arg, open_baseline, preflight, round_args, settle_rounds
from proxy import (
    BASELINE,
    Series,
    Target,
    baseline_report,
    edge_server,
    free_port,
    load_rounds,
    per_round,
    server,
    table,
    with_twins,
    write_config,
)

TARGET_RATIO = 0.50
RESOURCE = "/claims?member_id=1001&size=10"
SHAPED_FIELDS = "items(id,claim_number,status,total_amount,provider(name)),page,has_more"

# target key -> request headers (wrk gets them from a generated Lua script)
HEADERS: dict[str, dict[str, str]] = {
    "upstream": {"Accept-Encoding": "br"},
    "plain": {"Accept-Encoding": "br"},
    "shaped": {"Accept-Encoding": "br"},
    "compressed": {"Accept-Encoding": "br", "X-Device-Type": "desktop"},
}

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


def get(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """Status, Content-Encoding and the body as sent (urllib doesn't decode it)."""
    with _HTTP.open(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return r.status, r.headers.get("Content-Encoding", "identity"), r.read()


def port_base() -> int:
    """N such that N+1..N+9 (the demo services' ports) are free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 10)
        try:
            for p in range(base + 1, base + 10):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError("no free run of 9 ports found")


def edge_config(root: Path, upstream: str) -> Path:
    src = f'source: {{service: claims, path: "{RESOURCE}"}}'
    return write_config(root, {"claims": upstream}, extra=(
        "keymaps:\n  k1: {claim_number: cn, total_amount: ta}\n"), routes=(
        "routes:\n"
        f"  - route: GET /plain\n    {src}\n"
        f"  - route: GET /shaped\n    {src}\n"
        f'    shape: {{fields: "{SHAPED_FIELDS}", prune: true, keymap: k1}}\n'
        f"  - route: GET /compressed\n    {src}\n"
        "    shape: {}\n"))


def header_script(path: Path, headers: dict[str, str]) -> Path:
    path.write_text("".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items()))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    round_args(ap, connections_help="connections (default 64)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    baseline_arg(ap)
    args = ap.parse_args(argv)
    settle_rounds(ap, args)
    if (code := preflight("shaped.py", wrk=True)) is not None:
        return code
    baseline = open_baseline(ap, args.baseline)
    os.environ.pop("EDGE_REDIS_URL", None)
    base, port = port_base(), free_port()
    up = f"http://127.0.0.1:{base + 2}"
    edge = f"http://127.0.0.1:{port}"
    targets = [
        Target("upstream", "upstream alone (identity)", f"{up}{RESOURCE}"),
        Target("plain", "edge pass-through", f"{edge}/plain"),
        Target("shaped", "edge shaped", f"{edge}/shaped"),
        Target("compressed", "edge shape {} (desktop)", f"{edge}/compressed"),
    ]
    base_port = free_port() if baseline else 0
    base_edge = f"http://127.0.0.1:{base_port}"
    targets = with_twins(targets, {edge: base_edge} if baseline else {})
    series = {t.key: Series() for t in targets}
    sizes: dict[str, str] = {}
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-shaped-")))
            raw = stack.enter_context(server(
                [sys.executable, "-m", "edge.demo.upstreams", "--port-base", str(base)],
                targets[0].url, tmp / "upstreams.err"))
            cfg = edge_config(tmp / "config", up)
            for name, p, b in (("edge", port, None), ("edge_baseline", base_port, baseline)):
                if p:  # the baseline's edge: on the same config
                    stack.enter_context(edge_server(
                        ["--config", str(cfg), "--host", "127.0.0.1", "--port", str(p)],
                        f"http://127.0.0.1:{p}/health", tmp / f"{name}.err", b))
            scripts = {k: header_script(tmp / f"{k}.lua", h) for k, h in HEADERS.items()}
            scripts |= {t.key: scripts[t.twin_of] for t in targets if t.twin_of}
            for t in targets:
                status, enc, body = get(t.url, HEADERS[t.twin_of or t.key])
                if status != 200:
                    raise RuntimeError(f"{t.label}: {status}")
                sizes[t.key] = f"{len(body):,} B {enc}"
            for origin in [base_edge] * bool(baseline) + [edge]:  # the new edge's is printed
                _, _, shaped_plain = get(f"{origin}/shaped", {"Accept-Encoding": "identity"})
                if b'"cn"' not in shaped_plain or b'"claim_number"' in shaped_plain:
                    raise RuntimeError(f"{origin}/shaped not shaped as expected: "
                                       f"{shaped_plain[:200]!r}")

            print(f"edge shaping benchmark: upstream {RESOURCE} = {len(raw):,} B JSON "
                  f"(shaped, identity: {len(shaped_plain):,} B); wrk -t1 "
                  f"-c{args.connections}, Accept-Encoding: br, {args.rounds} round(s) x "
                  f"{args.duration:g}s per target, {os.cpu_count()} CPUs, "
                  f"Python {platform.python_version()}", flush=True)
            if baseline:
                print(baseline.describe(), flush=True)
            load_rounds(targets, series, scripts, args.connections, args.warmup, args.duration,
                        args.rounds, max(26, *(len(t.label) for t in targets)))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    # a baseline twin against the baseline's own pass-through
    ratio = {t.key: per_round(series[t.key], series["plain" + (BASELINE if t.twin_of else "")],
                              "rps", "ratio") for t in targets}
    lines = [""]
    lines += table(f"{args.connections} connections (medians)", targets, series,
                   ["vs pass-through", "body on the wire"],
                   {k: ["-" if k == "upstream" else f"{ratio[k] * 100:.1f}%", sizes[k]]
                    for k in ratio})
    ok = ratio["shaped"] >= TARGET_RATIO
    base_lines, base_json = baseline_report(baseline, targets, series)
    lines += [
        "",
        f"shaped req/s vs pass-through: {ratio['shaped'] * 100:.1f}% "
        f"(target >= {TARGET_RATIO * 100:.0f}%): {'PASS' if ok else 'FAIL'}",
        f"shape {{}} (compression only) vs pass-through: {ratio['compressed'] * 100:.1f}%",
        "ratios are medians of same-round pairs; spread = half the min-max range of req/s",
        *base_lines,
        f"total {time.monotonic() - started:.0f}s",
    ]
    print("\n".join(lines))
    errors = sum(s.errors for s in series.values())
    if errors:
        print(f"WARNING: {errors} socket errors / non-2xx responses (see 'errors')")
    if args.json:
        print(json.dumps({
            "rounds": args.rounds, "duration_s": args.duration, "upstream_bytes": len(raw),
            "targets": {k: {"rps": s.median("rps"), "p50_ms": s.median("p50_ms"),
                            "p99_ms": s.median("p99_ms"), "errors": s.errors,
                            "rps_vs_passthrough": ratio[k]} for k, s in series.items()},
            "pass": ok,
            **base_json,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
