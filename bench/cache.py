"""The edge cache: hits, 304s and deltas, against the uncached route and nginx's proxy_cache.

    .venv/bin/python bench/cache.py [--rounds 3] [--duration 5] [--connections 64]
                                    [--quick] [--json] [--baseline DIR]

Load (wrk -t1, `--connections` 64, rotating rounds as in bench/proxy.py, whose helpers this
reuses). Starts, each in its own process on 127.0.0.1: the demo upstream services (the claims
service's /claims?member_id=1001&size=10 is 9.7 KB of JSON), `edge serve` on a temp config
(access log off, no reload watcher) with two routes onto that resource and one pass-through
route onto bench/_files_upstream.py (binary files of 10,000 and 1,000,000 random bytes, from
a fixed seed, application/octet-stream, `Cache-Control: public, max-age=600`, a strong ETag),

    GET /cached         shape: {}, cache: {scope: public, ttl: 10m}
    GET /uncached       shape: {} (the same route without cache:)
    GET /files/{name}   no shape, cache: {} (kept as the origin sent it, fresh for its max-age)

and nginx (`worker_processes 1`, proxy_cache in a temp dir, proxy_cache_valid 200 10m) in
front of the same resource, and of the files (its `location /files/` keeps them as their
Cache-Control says), warmed so that every request is a hit. Targets:

    edge hit (br)          /cached, Accept-Encoding: br (the stored br variant, ~1.8 KB)
    edge 304 (br)          /cached, Accept-Encoding: br, If-None-Match: its current ETag
    edge uncached (br)     /uncached, Accept-Encoding: br (upstream call, re-serialize, br)
    edge hit (identity)    /cached, Accept-Encoding: identity: the 9.7 KB body
    aiohttp floor (identity)  bench/_aiohttp_floor.py: a bare aiohttp handler answering the
                           edge's cached identity answer (same body, same headers) every time
    nginx hit (identity)   the same 9.7 KB body from nginx's cache
    edge 304 (identity)    /cached, Accept-Encoding: identity, If-None-Match: the identity
                           answer's ETag
    aiohttp floor 304      the same request to the floor, which answers it (If-None-Match
                           equal to that ETag) with the edge's identity 304 (same headers)
    edge pass hit (10 KB)  /files/10k, Accept-Encoding: identity: a pass-through hit, 10,000 B
    aiohttp floor (10 KB)  bench/_aiohttp_floor.py (a process of its own) answering that hit
                           (same body, same headers) every time
    nginx hit (10 KB)      the same 10,000 B from nginx's cache
    edge pass hit (1 MB), aiohttp floor (1 MB), nginx hit (1 MB): the same for /files/1m,
                           1,000,000 B (under the edge's default cache.max_entry, 1 MiB)

Each pass-through URL is warmed with two requests (an answer over 64 KiB is stored while it
streams to the first client, a few ms after that answer completes), then asked until its
Cache-Status starts with "edge; hit" (2 s at most, else the bench fails) before any load.

The floor is what aiohttp's HTTP handling and the socket write cost on this machine, which
no cache hit served by the edge can beat. The identity floor is handed the edge's identity
200 and its 304 (each fetched once from the edge after warming) and checked, before and
after the load, to send them as the edge does (same body, same headers but Date; the 304's
fields also against a fresh 304 from the edge, whose per-answer values aren't compared).
Without an nginx binary the nginx target is skipped with a note (the exit code stays 0).

--baseline DIR also runs DIR's edge on the same config, warmed and checked the same way, its
targets loaded as "(baseline)" twins in the same rounds (its 304s with its own ETags; its
ratios against its own targets and the shared floors and nginx), and reports new/baseline
req/s per edge target. A baseline that can't cache a pass-through route (`edge check`
refuses `cache` without `shape`, or its warmed /files answers aren't hits) runs on the
config without /files, and its pass-through twins are skipped with a note. The deltas below
are measured on the new edge only.

Deltas: runs `edge demo` on a copy of config/ (bench/payload.py's start_demo), fetches the
member dashboard (member 1001's token) with identity and with br, moves one of its claims
to another status through the admin status route (which purges the member's tags), then asks
again as an app holding the old version (`If-None-Match: <old ETag>`, `A-IM: json-patch`,
expecting 226) and plainly, and checks that the patch turns the old body into the new one.

Goals (issue; medians of same-round ratios): hit req/s >= 5x uncached; 304 req/s >= hit
req/s (both br); the shaped hit (edge hit (identity)) >= 0.5x one nginx worker (same 9.7 KB
identity body) and >= 0.9x the aiohttp floor (identity); the edge's 304 (identity) >= 0.95x
the aiohttp floor 304; a dashboard delta <= 10% of the full body's bytes; for each file
size, the edge's pass-through hit >= 0.5x nginx's proxy_cache hit and >= 0.9x the aiohttp
floor.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from email.message import Message
from pathlib import Path
from typing import Any

import brotli
import jsonpatch
from _common import (
    Baseline,
    baseline_arg,
    open_baseline,
    preflight,
    round_args,
    settle_rounds,
)
from _files_upstream import FILES, file_bytes, file_headers
from payload import MEMBER, start_demo
from proxy import (
    BASELINE,
    Series,
    Target,
    baseline_report,
    edge_server,
    find_nginx,
    fmt_row,
    free_port,
    load_rounds,
    nginx_command,
    per_round,
    server,
    table,
    with_twins,
    write_config,
)
from shaped import RESOURCE, header_script, port_base

from edge.cli import DEMO_SECRET, make_token

TARGET_HIT_VS_UNCACHED = 5.0
TARGET_304_VS_HIT = 1.0
TARGET_VS_NGINX = 0.5
TARGET_HIT_VS_FLOOR = 0.9  # the shaped hit (identity) vs the aiohttp floor (identity)
TARGET_304_VS_FLOOR = 0.95  # the edge's 304 (identity) vs the aiohttp floor 304
TARGET_DELTA = 0.10
TARGET_PASS_VS_NGINX = 0.5
TARGET_PASS_VS_FLOOR = 0.9
PASS_LABELS = {"10k": "10 KB", "1m": "1 MB"}  # FILES' names, as the table says them
DASHBOARD = f"/api/v1/members/{MEMBER}/dashboard"

BR = {"Accept-Encoding": "br"}
IDENTITY = {"Accept-Encoding": "identity"}
# set by aiohttp on each answer (or by the connection), not part of the floor's answer file
_FLOOR_DROP = frozenset({"content-length", "date", "server", "connection", "keep-alive",
                         "transfer-encoding"})
# the edge sets these per answer (or per second): a floor answer, a copy of one earlier edge
# answer, is compared with a fresh edge answer on their names only
_PER_ANSWER = frozenset({"date", "age", "cache-status", "x-request-id", "server-timing"})
FLOOR_SCRIPT = Path(__file__).resolve().parent / "_aiohttp_floor.py"
FILES_SCRIPT = Path(__file__).resolve().parent / "_files_upstream.py"
HIT_WAIT = 2.0  # seconds a warmed pass-through URL may take to become a hit

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


def call(url: str, headers: dict[str, str], data: bytes | None = None
         ) -> tuple[int, Message, bytes]:
    """Status, headers and the body as sent (urllib doesn't decode it); 3xx/4xx/5xx too."""
    req = urllib.request.Request(url, data=data, headers=headers,
                                 method="POST" if data is not None else "GET")
    try:
        with _HTTP.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:  # 304 and errors: still a response
        with e:
            return e.code, e.headers, e.read()


def expect(what: str, got: object, want: object) -> None:
    if got != want:
        raise RuntimeError(f"{what}: got {got!r}, expected {want!r}")


def edge_config(root: Path, upstream: str, files: str | None) -> Path:
    """/cached and /uncached onto the claims resource; with `files` (the files origin's
    URL), also the cached pass-through route /files/{name}."""
    src = f'source: {{service: claims, path: "{RESOURCE}"}}'
    routes = (
        "routes:\n"
        f"  - route: GET /cached\n    {src}\n    auth: {{jwt: off}}\n    shape: {{}}\n"
        "    cache: {scope: public, ttl: 10m}\n"
        f"  - route: GET /uncached\n    {src}\n    auth: {{jwt: off}}\n    shape: {{}}\n")
    services = {"claims": upstream}
    if files:
        services["files"] = files
        routes += ("  - route: GET /files/{name}\n"
                   '    source: {service: files, path: "/files/{name}"}\n'
                   "    auth: {jwt: off}\n    cache: {}\n")
    return write_config(root, services, routes)


def baseline_config(baseline: Baseline, cfg: Path, legacy: Path) -> tuple[Path, str]:
    """The config the baseline's edge runs on: `cfg` when its `edge check` accepts it, else
    `legacy` (no /files route) and why (the first problem it printed)."""
    proc = subprocess.run(baseline.command("check", str(cfg)), cwd=baseline.root,
                          env=baseline.env, capture_output=True, text=True, timeout=60,
                          check=False)
    if proc.returncode == 0:
        return cfg, ""
    said = (proc.stdout.strip() or proc.stderr.strip() or f"exit {proc.returncode}")
    said = said.splitlines()[0].replace(f"{cfg}/", "")  # the temp dir is gone by the report
    return legacy, f"its `edge check` refuses the /files route: {said}"


def nginx_http(port: int, upstream: str, files: str) -> str:
    """nginx caching every 200 of `upstream` for 10 minutes, and `files`'s /files/ as their
    Cache-Control says (nginx_command's http block)."""
    return (
        "  proxy_cache_path {root}/cache levels=1:2 keys_zone=bench:1m max_size=64m\n"
        "                   inactive=1h use_temp_path=off;\n"
        f"  upstream up {{ server {upstream.removeprefix('http://')}; keepalive 8; }}\n"
        f"  upstream files {{ server {files.removeprefix('http://')}; keepalive 8; }}\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    location /files/ {\n"
        "      proxy_pass http://files;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "      proxy_cache bench;\n"
        "      proxy_cache_valid 200 10m;\n"  # the origin's max-age=600 comes first
        "      proxy_cache_lock on;\n"
        "      add_header X-Cache-Status $upstream_cache_status always;\n"
        "    }\n"
        "    location / {\n"
        "      proxy_pass http://up;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "      proxy_cache bench;\n"
        "      proxy_cache_valid 200 10m;\n"
        "      proxy_cache_lock on;\n"
        "      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;\n"
        "      add_header X-Cache-Status $upstream_cache_status always;\n"
        "    }\n"
        "  }\n")


def check_hit(label: str, url: str, headers: dict[str, str], header: str, prefix: str
              ) -> tuple[Message, bytes]:
    status, h, body = call(url, headers)
    expect(f"{label}: status", status, 200)
    if not (h.get(header) or "").startswith(prefix):
        raise RuntimeError(f"{label}: {header}: {h.get(header)!r}, expected {prefix!r}...")
    return h, body


def warm_hit(label: str, url: str, header: str, prefix: str) -> tuple[Message, bytes]:
    """Two requests (the first stores; an answer over 64 KiB is kept a few ms after it has
    streamed whole to its client), then asked until `header` starts with `prefix` (a hit),
    HIT_WAIT seconds at most, else RuntimeError; then one more hit, whose answer (the
    edge's fast lane's, as under load) is returned."""
    for _ in range(2):
        status, _, _ = call(url, IDENTITY)
        expect(f"{label}: warming: status", status, 200)
    deadline = time.monotonic() + HIT_WAIT
    while not ((got := call(url, IDENTITY)[1].get(header)) or "").startswith(prefix):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: not a hit after warming ({HIT_WAIT:g} s): "
                               f"{header}: {got!r}, expected {prefix!r}...")
        time.sleep(0.05)
    return check_hit(label, url, IDENTITY, header, prefix)


def warm_pass(edge: str, tag: str = "") -> dict[str, tuple[Message, bytes]]:
    """Each /files/{name} on `edge` warmed into a hit and checked against the origin's file
    (body, ETag, Cache-Control). Returns name -> the hit's headers and body."""
    out = {}
    for name in FILES:
        label = f"edge pass hit ({PASS_LABELS[name]}){tag}"
        h, body = warm_hit(label, f"{edge}/files/{name}", "Cache-Status", "edge; hit")
        want = file_bytes(name)
        expect(f"{label}: body = the origin's file", (len(body), body == want),
               (len(want), True))
        for field, value in file_headers(want).items():
            expect(f"{label}: {field}", h.get(field), value)
        out[name] = h, body
    return out


def warm_edge(edge: str, raw: bytes, tag: str = "") -> tuple[str, Message, bytes, bytes]:
    """The first requests store /cached (br and identity), the next are hits with the
    upstream's data. Returns the br ETag, the identity hit's headers and body, the br body."""
    for hdrs in (BR, IDENTITY):
        status, h, _ = call(f"{edge}/cached", hdrs)
        expect(f"first /cached{tag}: status", status, 200)
    h, body_br = check_hit(f"edge hit (br){tag}", f"{edge}/cached", BR, "Cache-Status",
                           "edge; hit")
    etag_br = h["ETag"]
    expect(f"br ETag suffix{tag}", etag_br.endswith('-br"'), True)
    h, body_id = check_hit(f"edge hit (identity){tag}", f"{edge}/cached", IDENTITY,
                           "Cache-Status", "edge; hit")
    expect(f"identity body{tag}", json.loads(body_id), json.loads(raw))
    expect(f"br body{tag}", json.loads(brotli.decompress(body_br)), json.loads(raw))
    return etag_br, h, body_id, body_br


def edge_304(edge: str, etag: str, encoding: str, tag: str = "") -> Message:
    """The edge's 304 for /cached with `Accept-Encoding: encoding` and `If-None-Match: etag`
    (checked: 304, no body, a hit); its headers."""
    label = f"edge 304 ({encoding}){tag}"
    status, h, body = call(f"{edge}/cached",
                           {"Accept-Encoding": encoding, "If-None-Match": etag})
    expect(f"{label}: status", status, 304)
    expect(f"{label}: body", body, b"")
    expect(f"{label}: Cache-Status", (h.get("Cache-Status") or "")[:9], "edge; hit")
    return h


def check_edge(edge: str, etag_br: str, etag_id: str, tag: str = "") -> None:
    """The hits are hits, the 304s (br and identity) are 304s, uncached isn't."""
    cached = f"{edge}/cached"
    check_hit(f"edge hit (br){tag}", cached, BR, "Cache-Status", "edge; hit")
    check_hit(f"edge hit (identity){tag}", cached, IDENTITY, "Cache-Status", "edge; hit")
    edge_304(edge, etag_br, "br", tag)
    edge_304(edge, etag_id, "identity", tag)
    status, h, _ = call(f"{edge}/uncached", BR)
    expect(f"edge uncached{tag}: status", status, 200)
    expect(f"edge uncached{tag}: Cache-Status", h.get("Cache-Status"), None)


def check_targets(urls: dict[str, str], etags: dict[str, tuple[str, str]],
                  pass_checks: dict[str, tuple[str, str, str]], floor_nm: Message) -> None:
    """Before and after the load: `check_edge` on each edge (origin → its br and identity
    ETags), the floor and nginx's hits are hits, the floor's 304 is the edge's identity 304
    (`floor_nm`, the one it was handed; `check_floor_304`, against a fresh one too), and each
    pass-through target is a hit (label → URL, the header saying so and how it starts)."""
    for i, (edge, (etag_br, etag_id)) in enumerate(etags.items()):
        check_edge(edge, etag_br, etag_id, " (baseline)" if i else "")
    check_hit("aiohttp floor", urls["floor"], IDENTITY, "Cache-Status", "edge; hit")
    edge, (_, etag_id) = next(iter(etags.items()))
    check_floor_304(urls["floor"], etag_id, floor_nm, edge_304(edge, etag_id, "identity"))
    if "nginx" in urls:
        check_hit("nginx", urls["nginx"], IDENTITY, "X-Cache-Status", "HIT")
    for label, (url, header, prefix) in pass_checks.items():
        check_hit(label, url, IDENTITY, header, prefix)


def floor_answer(path: Path, h: Message, body: bytes,
                 not_modified: tuple[str, Message] | None = None) -> Path:
    """An edge answer as bench/_aiohttp_floor.py reads it; with `not_modified` (an ETag and
    the edge's 304 for it), the floor answers that 304 to a request holding that ETag."""
    def fields(m: Message) -> list[list[str]]:
        return [[k, v] for k, v in m.items() if k.lower() not in _FLOOR_DROP]

    spec: dict[str, Any] = {"headers": fields(h), "body": base64.b64encode(body).decode()}
    if not_modified is not None:
        spec |= {"etag": not_modified[0], "not_modified_headers": fields(not_modified[1])}
    path.write_text(json.dumps(spec))
    return path


def _norm(m: Message, names_only: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """A response's fields but Date, sorted, lower-case names; those in `names_only`
    without their values."""
    return sorted((k.lower(), "" if k.lower() in names_only else v) for k, v in m.items()
                  if k.lower() != "date")


def check_floor(url: str, edge_h: Message, edge_body: bytes, what: str = "identity") -> None:
    """The floor sends the edge's answer: same body, same headers (but Date)."""
    status, h, body = call(url, IDENTITY)
    expect(f"aiohttp floor ({what}): status", status, 200)
    expect(f"aiohttp floor ({what}): body = edge {what} body", body == edge_body, True)
    expect(f"aiohttp floor ({what}): headers = edge {what} headers", _norm(h), _norm(edge_h))


def check_floor_304(url: str, etag: str, edge_nm: Message, fresh: Message) -> None:
    """Asked with `If-None-Match: etag`, the floor sends the edge's identity 304 it was
    handed (`edge_nm`): no body, same headers (but Date), and the same fields as `fresh`
    (the edge's 304 now; the per-answer ones by name only); asked with another ETag, its
    200."""
    status, h, body = call(url, {**IDENTITY, "If-None-Match": etag})
    expect("aiohttp floor 304: status", status, 304)
    expect("aiohttp floor 304: body", body, b"")
    expect("aiohttp floor 304: headers = edge 304 (identity) headers", _norm(h), _norm(edge_nm))
    expect("aiohttp floor 304: fields = a fresh edge 304 (identity)'s",
           _norm(h, _PER_ANSWER), _norm(fresh, _PER_ANSWER))
    status, _, _ = call(url, {**IDENTITY, "If-None-Match": '"not-' + etag.strip('"') + '"'})
    expect("aiohttp floor, another ETag: status", status, 200)


# ----------------------------------------------------------------------------- deltas


def decoded(h: Message, body: bytes) -> bytes:
    return brotli.decompress(body) if h.get("Content-Encoding") == "br" else body


def measure_delta() -> dict[str, Any]:
    """Bytes of the member dashboard before/after one claim changes: full vs 226 delta."""
    member = {"Authorization": f"Bearer {make_token(DEMO_SECRET, MEMBER, ['member'], 3600)}"}
    admin = {"Authorization": f"Bearer {make_token(DEMO_SECRET, 'ops-1', ['admin'], 3600)}",
             "Content-Type": "application/json"}
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        edge, _ = start_demo(stack, "edge-cache-delta-")
        url = edge + DASHBOARD
        before: dict[str, tuple[str, bytes, int]] = {}  # encoding -> (etag, body, wire bytes)
        for enc in ("identity", "br"):
            status, h, raw = call(url, {**member, "Accept-Encoding": enc})
            expect(f"dashboard ({enc}): status", status, 200)
            before[enc] = (h["ETag"], decoded(h, raw), len(raw))
        old = json.loads(before["identity"][1])
        claims = old.get("claims") or []
        if not claims:
            raise RuntimeError(f"no claims in the dashboard: {before['identity'][1][:300]!r}")
        claim = next((c for c in claims if c.get("status", c.get("st")) != "paid"), claims[0])
        new_status = "paid" if claim.get("status", claim.get("st")) != "paid" else "processing"
        status, _, body = call(f"{edge}/api/v1/members/{MEMBER}/claims/{claim['id']}/status",
                               admin, json.dumps({"status": new_status}).encode())
        if status != 200:
            raise RuntimeError(f"status change of {claim['id']}: {status} {body[:300]!r}")
        out["claim"] = f"{claim['id']} -> {new_status}"
        for enc in ("identity", "br"):
            etag, old_body, old_bytes = before[enc]
            # as an app holding the old version asks first, then a plain full fetch
            d_status, dh, d_raw = call(url, {**member, "Accept-Encoding": enc,
                                             "If-None-Match": etag, "A-IM": "json-patch"})
            f_status, fh, f_raw = call(url, {**member, "Accept-Encoding": enc})
            expect(f"dashboard after the change ({enc}): status", f_status, 200)
            new_body = decoded(fh, f_raw)
            if new_body == old_body:
                raise RuntimeError(f"the dashboard ({enc}) did not change after {out['claim']}")
            applies = False
            ops = 0
            if d_status == 226:
                patch = json.loads(decoded(dh, d_raw))
                ops = len(patch)
                applied = jsonpatch.apply_patch(json.loads(old_body), patch)
                applies = applied == json.loads(new_body)
                # the ETag the app holds after patching is the full answer's identity ETag
                applies &= (dh.get("ETag") or "").strip('"') in (fh.get("ETag") or "")
            out[enc] = {"before_bytes": old_bytes, "full_bytes": len(f_raw),
                        "delta_status": d_status, "delta_bytes": len(d_raw),
                        "delta_encoding": dh.get("Content-Encoding", "identity"),
                        "delta_ratio": len(d_raw) / len(f_raw), "patch_ops": ops,
                        "patch_applies": applies}
    return out


def delta_lines(d: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    head = ["Accept-Encoding", "before", "full after", "delta", "delta/full", "patch ops",
            "patch applies"]
    rows = [head]
    for enc in ("identity", "br"):
        r = d[enc]
        rows.append([enc, f"{r['before_bytes']:,} B", f"{r['full_bytes']:,} B",
                     f"{r['delta_bytes']:,} B ({r['delta_status']}, {r['delta_encoding']})",
                     f"{r['delta_ratio'] * 100:.1f}%", str(r["patch_ops"]),
                     "yes" if r["patch_applies"] else "NO"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["", f"dashboard delta: GET {DASHBOARD} (member token, default profile) before "
             f"and after claim {d['claim']}; bytes = body as received, headers excluded",
             fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths),
             *(fmt_row(row, widths) for row in rows[1:])]
    passed: dict[str, bool] = {}
    for enc in ("identity", "br"):
        r = d[enc]
        ok = r["delta_status"] == 226 and r["patch_applies"] and r["delta_ratio"] <= TARGET_DELTA
        passed[enc] = ok
        lines.append(f"dashboard delta ({enc}): {r['delta_ratio'] * 100:.1f}% of the full "
                     f"body (226: {'yes' if r['delta_status'] == 226 else 'NO'}, patch "
                     f"applies: {'yes' if r['patch_applies'] else 'NO'}; target <= "
                     f"{TARGET_DELTA * 100:.0f}%): {'PASS' if ok else 'FAIL'}")
    return lines, passed


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    round_args(ap, connections_help="connections (default 64)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    baseline_arg(ap)
    args = ap.parse_args(argv)
    settle_rounds(ap, args)
    if (code := preflight("cache.py", wrk=True)) is not None:
        return code
    baseline = open_baseline(ap, args.baseline)
    nginx_bin = find_nginx()
    if nginx_bin is None:
        print("note: no nginx binary (`apt-get install nginx-light`): skipping the nginx "
              "comparison", file=sys.stderr)
    os.environ.pop("EDGE_REDIS_URL", None)
    base, port, nginx_port, floor_port = port_base(), free_port(), free_port(), free_port()
    up = f"http://127.0.0.1:{base + 2}"
    files_up = f"http://127.0.0.1:{free_port()}"
    edge = f"http://127.0.0.1:{port}"
    nginx = f"http://127.0.0.1:{nginx_port}"
    urls = {"upstream": f"{up}{RESOURCE}", "cached": f"{edge}/cached",
            "uncached": f"{edge}/uncached", "floor": f"http://127.0.0.1:{floor_port}/cached"}
    if nginx_bin:
        urls["nginx"] = f"{nginx}{RESOURCE}"
    targets = [
        Target("hit", "edge hit (br)", urls["cached"]),
        Target("not_modified", "edge 304 (br)", urls["cached"]),
        Target("uncached", "edge uncached (br)", urls["uncached"]),
        Target("hit_identity", "edge hit (identity)", urls["cached"]),
        Target("floor", "aiohttp floor (identity)", urls["floor"]),
    ]
    if nginx_bin:
        targets.append(Target("nginx", "nginx hit (identity), 1 worker", urls["nginx"]))
    targets += [  # the identity 304: the edge's, and the floor answering it
        Target("not_modified_identity", "edge 304 (identity)", urls["cached"]),
        Target("floor_304", "aiohttp floor 304", urls["floor"]),
    ]
    # the pass-through hits, per file: edge, its floor (a process of its own), nginx
    pass_floor_ports = {name: free_port() for name in FILES}
    for name, size in PASS_LABELS.items():
        targets += [
            Target(f"pass_hit_{name}", f"edge pass hit ({size})", f"{edge}/files/{name}"),
            Target(f"pass_floor_{name}", f"aiohttp floor ({size})",
                   f"http://127.0.0.1:{pass_floor_ports[name]}/files/{name}")]
        if nginx_bin:
            targets.append(Target(f"pass_nginx_{name}", f"nginx hit ({size}), 1 worker",
                                  f"{nginx}/files/{name}"))
    urls |= {t.key: t.url for t in targets if t.key.startswith("pass_")}
    base_port = free_port() if baseline else 0
    base_edge = f"http://127.0.0.1:{base_port}"
    targets = with_twins(targets, {edge: base_edge} if baseline else {})
    series = {t.key: Series() for t in targets}
    sizes: dict[str, str] = {}
    base_pass_note = ""  # why the baseline's pass-through twins are skipped, if they are
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-cache-")))
            raw = stack.enter_context(server(
                [sys.executable, "-m", "edge.demo.upstreams", "--port-base", str(base)],
                urls["upstream"], tmp / "upstreams.err"))
            stack.enter_context(server(
                [sys.executable, str(FILES_SCRIPT), files_up.rsplit(":", 1)[1]],
                f"{files_up}/files/10k", tmp / "files.err"))
            cfg = edge_config(tmp / "config", up, files_up)
            base_cfg = cfg
            if baseline:  # an older edge may refuse `cache` on a pass-through route
                base_cfg, base_pass_note = baseline_config(
                    baseline, cfg, edge_config(tmp / "config-legacy", up, None))
            for name, p, c, b in (("edge", port, cfg, None),
                                  ("edge_baseline", base_port, base_cfg, baseline)):
                if p:  # the baseline's edge: on the same config (if it can)
                    stack.enter_context(edge_server(
                        ["--config", str(c), "--host", "127.0.0.1", "--port", str(p)],
                        f"http://127.0.0.1:{p}/health", tmp / f"{name}.err", b))
            if nginx_bin:
                stack.enter_context(server(
                    nginx_command(nginx_bin, tmp, nginx_http(nginx_port, up, files_up)),
                    urls["nginx"], tmp / "nginx.err"))

            # warm: the first request stores, the second is a hit; learn the ETags
            etag_br, h, body_id, body_br = warm_edge(edge, raw)
            etag_id = h["ETag"]
            etags = {edge: (etag_br, etag_id)}
            nm_h = edge_304(edge, etag_id, "identity")  # what the floor's 304 sends
            passes = warm_pass(edge)  # name -> the hit's headers and body
            if baseline:
                b_etag, b_h, b_id, b_br = warm_edge(base_edge, raw, " (baseline)")
                if not base_pass_note:
                    try:
                        warm_pass(base_edge, " (baseline)")
                    except RuntimeError as e:
                        base_pass_note = f"its /files answers aren't hits: {e}"
                if base_pass_note:
                    print(f"note: baseline {baseline.root}: {base_pass_note}; skipping the "
                          "baseline twins of the pass-through targets", file=sys.stderr,
                          flush=True)
                    targets = [t for t in targets if not t.twin_of.startswith("pass_")]
                    series = {t.key: series[t.key] for t in targets}
                else:
                    sizes |= {f"pass_hit_{name}" + BASELINE: f"{len(file_bytes(name)):,} B "
                              "octet-stream" for name in FILES}
                etags[base_edge] = (b_etag, b_h["ETag"])
                sizes |= {"hit" + BASELINE: f"{len(b_br):,} B br",
                          "not_modified" + BASELINE: "0 B (304)",
                          "not_modified_identity" + BASELINE: "0 B (304)",
                          "hit_identity" + BASELINE: f"{len(b_id):,} B identity"}
                _, bh, body = call(f"{base_edge}/uncached", BR)
                sizes["uncached" + BASELINE] = (f"{len(body):,} B "
                                                f"{bh.get('Content-Encoding', 'identity')}")
            # the floor answers exactly what the edge's hit just sent, and its 304 for the
            # identity ETag
            stack.enter_context(server(
                [sys.executable, str(FLOOR_SCRIPT), str(floor_port),
                 str(floor_answer(tmp / "floor.json", h, body_id, (etag_id, nm_h)))],
                urls["floor"], tmp / "floor.err"))
            check_floor(urls["floor"], h, body_id)
            for name, (ph, pbody) in passes.items():  # one floor per file, the same way
                key = f"pass_floor_{name}"
                stack.enter_context(server(
                    [sys.executable, str(FLOOR_SCRIPT), str(pass_floor_ports[name]),
                     str(floor_answer(tmp / f"{key}.json", ph, pbody))],
                    urls[key], tmp / f"{key}.err"))
                check_floor(urls[key], ph, pbody, PASS_LABELS[name])
                sizes |= {f"pass_{kind}_{name}": f"{len(pbody):,} B octet-stream"
                          for kind in ("hit", "floor", "nginx")}
                if nginx_bin:
                    nh, nbody = warm_hit(f"nginx hit ({PASS_LABELS[name]})",
                                         urls[f"pass_nginx_{name}"], "X-Cache-Status", "HIT")
                    expect(f"nginx ({PASS_LABELS[name]}) body = edge pass hit body",
                           nbody == pbody, True)
                    expect(f"nginx ({PASS_LABELS[name]}) ETag", nh.get("ETag"), ph.get("ETag"))
            # every load's answer is a hit: the edges', the floors' (the edge's hit answer)
            # and nginx's
            pass_checks = {t.label: (t.url, "X-Cache-Status", "HIT")
                           if t.key.startswith("pass_nginx_")
                           else (t.url, "Cache-Status", "edge; hit")
                           for t in targets if (t.twin_of or t.key).startswith("pass_")}
            sizes |= {"hit": f"{len(body_br):,} B br", "not_modified": "0 B (304)",
                      "hit_identity": f"{len(body_id):,} B identity",
                      "floor": f"{len(body_id):,} B identity",
                      "not_modified_identity": "0 B (304)", "floor_304": "0 B (304)"}
            _, h, body = call(urls["uncached"], BR)
            sizes["uncached"] = f"{len(body):,} B {h.get('Content-Encoding', 'identity')}"
            if nginx_bin:
                _, body_ngx = check_hit("nginx", urls["nginx"], IDENTITY, "X-Cache-Status",
                                        "HIT")
                expect("nginx body = edge identity body", body_ngx, body_id)
                sizes["nginx"] = f"{len(body_ngx):,} B identity"
            check_targets(urls, etags, pass_checks, nm_h)
            nm_id = {**IDENTITY, "If-None-Match": etag_id}
            headers = {"hit": BR, "not_modified": {**BR, "If-None-Match": etag_br},
                       "uncached": BR, "hit_identity": IDENTITY, "floor": IDENTITY,
                       "nginx": IDENTITY, "not_modified_identity": nm_id, "floor_304": nm_id}
            headers |= {t.key: IDENTITY for t in targets if t.key.startswith("pass_")}
            headers |= {t.key: headers[t.twin_of] for t in targets if t.twin_of}
            if baseline:  # its own ETags
                b_etag_br, b_etag_id = etags[base_edge]
                headers["not_modified" + BASELINE] = {**BR, "If-None-Match": b_etag_br}
                headers["not_modified_identity" + BASELINE] = {**IDENTITY,
                                                               "If-None-Match": b_etag_id}
            scripts = {k: header_script(tmp / f"{k}.lua", {
                name: value.replace('"', '\\"') for name, value in h.items()})
                for k, h in headers.items()}

            print(f"edge cache benchmark: upstream {RESOURCE} = {len(raw):,} B JSON, "
                  f"edge /cached and /uncached with shape {{}}, "
                  f"ETags {etag_br} (br), {etag_id} (identity); "
                  "pass-through /files/{name} (cache: {}): "
                  + ", ".join(f"{name} = {len(b):,} B application/octet-stream"
                              for name, (_, b) in passes.items())
                  + f"; wrk -t1 -c{args.connections}, {args.rounds} round(s) x "
                  f"{args.duration:g}s per target, {os.cpu_count()} CPUs, "
                  f"Python {platform.python_version()}", flush=True)
            if baseline:
                print(f"{baseline.describe()}; its ETags {b_etag_br} (br), {b_etag_id} "
                      "(identity)", flush=True)
                if base_pass_note:
                    print(f"baseline: no pass-through twins ({base_pass_note})", flush=True)
            load_rounds(targets, series, scripts, args.connections, args.warmup, args.duration,
                        args.rounds, max(30, *(len(t.label) for t in targets)))
            check_targets(urls, etags, pass_checks, nm_h)  # still hits and 304s after the load

        print("dashboard delta: starting `edge demo`", file=sys.stderr, flush=True)
        delta = measure_delta()
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    def edge_ratios(sfx: str) -> tuple[dict[str, float], dict[str, str]]:
        """One edge's same-round ratios and their column (sfx: "" or, the baseline's,
        BASELINE), against its own targets and the shared floor and nginx."""
        def r(a: str, b: str) -> float:
            return per_round(series[a], series[b], "rps", "ratio")

        ratio = {"hit": r("hit" + sfx, "uncached" + sfx),
                 "not_modified": r("not_modified" + sfx, "hit" + sfx),
                 "hit_vs_floor": r("hit_identity" + sfx, "floor"),
                 "not_modified_identity_vs_floor_304": r("not_modified_identity" + sfx,
                                                         "floor_304")}
        vs = {"hit": f"{ratio['hit']:.2f}x uncached",
              "not_modified": f"{ratio['not_modified']:.2f}x hit (br)",
              "hit_identity": f"{ratio['hit_vs_floor']:.2f}x floor",
              "not_modified_identity":
                  f"{ratio['not_modified_identity_vs_floor_304']:.2f}x floor 304"}
        if nginx_bin:
            ratio["hit_identity"] = r("hit_identity" + sfx, "nginx")
            vs["hit_identity"] = f"{ratio['hit_identity']:.2f}x nginx, {vs['hit_identity']}"
        for name in FILES:  # the pass-through hits, against the same file's floor and nginx
            hit = f"pass_hit_{name}"
            if hit + sfx not in series:
                continue
            ratio[f"{hit}_vs_floor"] = r(hit + sfx, f"pass_floor_{name}")
            vs[hit] = f"{ratio[f'{hit}_vs_floor']:.2f}x floor"
            if nginx_bin:
                ratio[f"{hit}_vs_nginx"] = r(hit + sfx, f"pass_nginx_{name}")
                vs[hit] = f"{ratio[f'{hit}_vs_nginx']:.2f}x nginx, {vs[hit]}"
        return ratio, {k + sfx: v for k, v in vs.items()}

    ratio, vs = edge_ratios("")
    if nginx_bin:
        ratio["floor_vs_nginx"] = per_round(series["floor"], series["nginx"], "rps", "ratio")
        vs["floor"] = f"{ratio['floor_vs_nginx']:.2f}x nginx"
        for name in FILES:
            floor = f"pass_floor_{name}"
            ratio[f"{floor}_vs_nginx"] = per_round(series[floor], series[f"pass_nginx_{name}"],
                                                   "rps", "ratio")
            vs[floor] = f"{ratio[f'{floor}_vs_nginx']:.2f}x nginx"
    base_ratio: dict[str, float] = {}
    if baseline:
        base_ratio, base_vs = edge_ratios(BASELINE)
        vs |= base_vs
    lines = [""]
    lines += table(f"{args.connections} connections (medians)", targets, series,
                   ["ratio (same-round pairs)", "body on the wire"],
                   {t.key: [vs.get(t.key, "-"), sizes[t.key]] for t in targets})
    ok_hit = ratio["hit"] >= TARGET_HIT_VS_UNCACHED
    ok_304 = ratio["not_modified"] >= TARGET_304_VS_HIT
    lines += [
        "",
        f"hit req/s vs uncached: {ratio['hit']:.2f}x (target >= {TARGET_HIT_VS_UNCACHED:g}x): "
        f"{'PASS' if ok_hit else 'FAIL'}",
        f"304 req/s vs hit: {ratio['not_modified']:.2f}x (target >= {TARGET_304_VS_HIT:g}x): "
        f"{'PASS' if ok_304 else 'FAIL'}",
    ]
    ok_nginx: bool | None = None
    if nginx_bin:
        ok_nginx = ratio["hit_identity"] >= TARGET_VS_NGINX
        lines.append(f"edge hit vs nginx proxy_cache (1 worker, same {len(body_id):,} B "
                     f"body): {ratio['hit_identity']:.2f}x (target >= {TARGET_VS_NGINX:g}x): "
                     f"{'PASS' if ok_nginx else 'FAIL'}")
    else:
        lines.append("edge hit vs nginx: SKIPPED (no nginx binary)")
    ok_floor = ratio["hit_vs_floor"] >= TARGET_HIT_VS_FLOOR
    lines.append(f"edge hit vs aiohttp floor (identity: a bare aiohttp handler sending the same "
                 f"{len(body_id):,} B answer): {ratio['hit_vs_floor']:.2f}x "
                 f"(target >= {TARGET_HIT_VS_FLOOR:g}x): {'PASS' if ok_floor else 'FAIL'}")
    got_304 = ratio["not_modified_identity_vs_floor_304"]
    ok_floor_304 = got_304 >= TARGET_304_VS_FLOOR
    lines.append(f"edge 304 vs aiohttp floor 304: {got_304:.2f}x "
                 f"(target >= {TARGET_304_VS_FLOOR:g}x): {'PASS' if ok_floor_304 else 'FAIL'}")
    if nginx_bin:
        lines.append(f"aiohttp floor vs nginx: {ratio['floor_vs_nginx']:.2f}x (informational)")
    else:
        lines.append("aiohttp floor vs nginx: SKIPPED (no nginx binary)")
    ok_pass: dict[str, bool | None] = {}  # goal -> passed (None: skipped)
    for name, size in PASS_LABELS.items():
        hit, n = f"pass_hit_{name}", len(passes[name][1])
        if nginx_bin:
            got = ratio[f"{hit}_vs_nginx"]
            ok = ok_pass[f"{hit}_vs_nginx"] = got >= TARGET_PASS_VS_NGINX
            lines.append(f"edge pass hit vs nginx proxy_cache ({size}: 1 worker, same {n:,} B "
                         f"body): {got:.2f}x (target >= {TARGET_PASS_VS_NGINX:g}x): "
                         f"{'PASS' if ok else 'FAIL'}")
        else:
            ok_pass[f"{hit}_vs_nginx"] = None
            lines.append(f"edge pass hit vs nginx ({size}): SKIPPED (no nginx binary)")
        got = ratio[f"{hit}_vs_floor"]
        ok = ok_pass[f"{hit}_vs_floor"] = got >= TARGET_PASS_VS_FLOOR
        lines.append(f"edge pass hit vs aiohttp floor ({size}: the same {n:,} B answer): "
                     f"{got:.2f}x (target >= {TARGET_PASS_VS_FLOOR:g}x): "
                     f"{'PASS' if ok else 'FAIL'}")
        if nginx_bin:
            lines.append(f"aiohttp floor vs nginx ({size}): "
                         f"{ratio[f'pass_floor_{name}_vs_nginx']:.2f}x (informational)")
    lines += ["ratios are medians of same-round pairs; spread = half the min-max range of "
              "req/s; p99 is at this (saturating) load"]
    pass_ratio_keys = [f"pass_hit_{name}_vs_{other}" for name in FILES
                       for other in ("nginx", "floor")]
    base_lines, base_json = baseline_report(baseline, targets, series, extra={"ratios": {
        "hit_vs_uncached": base_ratio.get("hit"),
        "not_modified_vs_hit": base_ratio.get("not_modified"),
        "hit_vs_nginx": base_ratio.get("hit_identity"),
        "hit_vs_floor": base_ratio.get("hit_vs_floor"),
        "not_modified_identity_vs_floor_304": base_ratio.get(
            "not_modified_identity_vs_floor_304"),
        **{k: base_ratio.get(k) for k in pass_ratio_keys}},
        "pass_through_skipped": base_pass_note or None})
    if base_lines and base_pass_note:
        base_lines.append(f"pass-through targets: no baseline twins ({base_pass_note})")
    lines += base_lines
    dl, ok_delta = delta_lines(delta)
    lines += dl
    lines.append(f"total {time.monotonic() - started:.0f}s")
    print("\n".join(lines))
    errors = sum(s.errors for s in series.values())
    if errors:
        print(f"WARNING: {errors} socket errors / non-2xx/3xx responses (see 'errors')")
    if args.json:
        print(json.dumps({
            "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
            "upstream_bytes": len(raw),
            "pass_bytes": {name: len(b) for name, (_, b) in passes.items()},
            "targets": {k: {"rps": s.median("rps"), "p50_ms": s.median("p50_ms"),
                            "p99_ms": s.median("p99_ms"), "errors": s.errors}
                        for k, s in series.items()},
            "ratios": {"hit_vs_uncached": ratio["hit"],
                       "not_modified_vs_hit": ratio["not_modified"],
                       "hit_vs_nginx": ratio.get("hit_identity"),
                       "hit_vs_floor": ratio["hit_vs_floor"],
                       "not_modified_identity_vs_floor_304":
                           ratio["not_modified_identity_vs_floor_304"],
                       "floor_vs_nginx": ratio.get("floor_vs_nginx"),
                       **{k: ratio.get(k) for k in pass_ratio_keys},
                       **{f"pass_floor_{name}_vs_nginx": ratio.get(f"pass_floor_{name}_vs_nginx")
                          for name in FILES}},
            "delta": delta,
            "pass": {"hit_vs_uncached": ok_hit, "not_modified_vs_hit": ok_304,
                     "hit_vs_nginx": ok_nginx, "hit_vs_floor": ok_floor,
                     "not_modified_identity_vs_floor_304": ok_floor_304,
                     "delta_identity": ok_delta["identity"],
                     "delta_br": ok_delta["br"], **ok_pass},
            **base_json,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
