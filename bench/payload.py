"""Bytes per screen: raw upstream JSON vs what the edge puts on the wire, per device profile.

    .venv/bin/python bench/payload.py [--json]

Runs `edge demo` on a copy of config/ (every port moved to a free one, EDGE_JWT_SECRET unset
so the demo secret applies) and fetches, for two screens, every resource the screen needs:
once straight from the demo upstream services (identity encoding), then through the edge
for each profile, with `Accept-Encoding: br` and with identity. Sizes are response bodies as
received (compressed when compressed), headers excluded. Takes a few seconds.

Goal (issue): the phone profile moves >= 85% fewer bytes than the raw upstream JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from _common import EDGE_BIN, preflight
from proxy import ROOT, fmt_row, free_port, server

from edge.cli import DEMO_SECRET, make_token

TARGET_REDUCTION = 0.85
MEMBER = "1001"


@dataclass(frozen=True, slots=True)
class Resource:
    edge_path: str  # path on the edge
    service: str  # demo service name in edge.yaml
    upstream_path: str  # the same resource on that service


@dataclass(frozen=True, slots=True)
class Screen:
    name: str
    resources: tuple[Resource, ...]


SCREENS = (
    Screen("member dashboard", (
        Resource(f"/api/v1/members/{MEMBER}", "members", f"/members/{MEMBER}"),
        Resource(f"/api/v1/members/{MEMBER}/claims?size=5", "claims",
                 f"/claims?member_id={MEMBER}&size=5"),
        Resource(f"/api/v1/members/{MEMBER}/benefits", "benefits",
                 f"/benefits/{MEMBER}/summary"),
        Resource(f"/api/v1/members/{MEMBER}/notifications", "notifications",
                 f"/notifications?member_id={MEMBER}"),
    )),
    Screen("claims list", (
        Resource(f"/api/v1/members/{MEMBER}/claims?size=20", "claims",
                 f"/claims?member_id={MEMBER}&size=20"),
    )),
)

# label -> request headers (besides Authorization / Accept-Encoding)
PROFILES: dict[str, dict[str, str]] = {
    "desktop": {"X-Device-Type": "desktop"},
    "tablet": {"X-Device-Type": "tablet"},
    "phone": {"X-Device-Type": "phone"},
    "phone+Save-Data": {"X-Device-Type": "phone", "Save-Data": "on"},
    "watch": {"X-Device-Type": "watch"},
}
ENCODINGS = ("br", "identity")

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env


def body_bytes(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """Size of the body as sent (urllib never decodes Content-Encoding) and its encoding."""
    req = urllib.request.Request(url, headers=headers)
    with _HTTP.open(req, timeout=10) as r:
        if r.status != 200:
            raise RuntimeError(f"GET {url}: {r.status}")
        return len(r.read()), r.headers.get("Content-Encoding", "identity")


def demo_config(src: Path, dst: Path) -> tuple[Path, dict[str, str]]:
    """Copy config/ to `dst` with every 91xx port moved; returns it and service -> base URL."""
    shutil.copytree(src, dst)
    edge_yaml = dst / "edge.yaml"
    text = re.sub(r"127\.0\.0\.1:91\d\d", lambda _m: f"127.0.0.1:{free_port()}",
                  edge_yaml.read_text())
    text = text.replace("watch: true", "watch: false")  # no reload poller during the run
    # the demo's per-device rate limits would cut a benchmark short: loopback is exempt
    text = re.sub(r"^(  allow: )\[\]", r"\g<1>[127.0.0.0/8]", text, count=1, flags=re.M)
    edge_yaml.write_text(text)
    services = dict(re.findall(r"^  (\w+):\n    url: (http://127\.0\.0\.1:\d+)", text, re.M))
    return dst, services


def start_demo(stack: ExitStack, prefix: str) -> tuple[str, dict[str, str]]:
    """`edge demo` on a copy of config/ with free ports, stopped with `stack`; returns the
    edge's base URL and service -> upstream base URL."""
    for name in ("EDGE_JWT_SECRET", "EDGE_REDIS_URL", "EDGE_DEMO_LATENCY_MS"):
        os.environ.pop(name, None)  # the demo secret, in-process state, no added latency
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    cfg, services = demo_config(ROOT / "config", tmp / "config")
    port = free_port()
    edge = f"http://127.0.0.1:{port}"
    stack.enter_context(server(
        [str(EDGE_BIN), "demo", "--config", str(cfg), "--host", "127.0.0.1",
         "--port", str(port)], f"{edge}/ready", tmp / "edge.err"))
    return edge, services


def pct(raw: int, got: int) -> str:
    return f"{(1 - got / raw) * 100:.1f}%" if raw else "-"



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    if (code := preflight("payload.py", wrk=False)) is not None:
        return code
    token = make_token(DEMO_SECRET, MEMBER, ["member"], 3600)
    auth = {"Authorization": f"Bearer {token}"}

    # screen -> column -> bytes; columns: "raw", then "<profile> <encoding>"
    sizes: dict[str, dict[str, int]] = {s.name: {} for s in SCREENS}
    # (screen, profile, encoding, edge path) -> (bytes, Content-Encoding received)
    per_res: dict[tuple[str, str, str, str], tuple[int, str]] = {}
    raw_res: dict[str, int] = {}
    try:
        with ExitStack() as stack:
            edge, services = start_demo(stack, "edge-payload-")
            for screen in SCREENS:
                row = sizes[screen.name]
                for r in screen.resources:
                    raw_res[r.edge_path] = body_bytes(services[r.service] + r.upstream_path,
                                                      {"Accept-Encoding": "identity"})[0]
                row["raw"] = sum(raw_res[r.edge_path] for r in screen.resources)
                for prof, hdrs in PROFILES.items():
                    for enc in ENCODINGS:
                        total = 0
                        for r in screen.resources:
                            n, got = body_bytes(edge + r.edge_path,
                                                {**auth, **hdrs, "Accept-Encoding": enc})
                            total += n
                            per_res[(screen.name, prof, enc, r.edge_path)] = (n, got)
                        row[f"{prof} {enc}"] = total
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130

    lines = ["edge payload benchmark: response body bytes per screen (headers excluded), "
             f"member {MEMBER}, `edge demo` on a copy of config/"]
    for screen in SCREENS:
        row = sizes[screen.name]
        raw = row["raw"]
        paths = ", ".join(r.edge_path for r in screen.resources)
        head = ["profile", "br bytes", "vs raw", "identity bytes", "vs raw", "br'd"]
        rows = [head, ["raw upstream JSON", "-", "", f"{raw:,}", "", ""]]
        for prof in PROFILES:
            br, ident = row[f"{prof} br"], row[f"{prof} identity"]
            brd = sum(per_res[(screen.name, prof, "br", r.edge_path)][1] == "br"
                      for r in screen.resources)
            rows.append([f"edge {prof}", f"{br:,}", pct(raw, br), f"{ident:,}",
                         pct(raw, ident), f"{brd}/{len(screen.resources)}"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["", f"{screen.name}: {paths}", fmt_row(head, widths),
                  fmt_row(["-" * w for w in widths], widths)]
        lines += [fmt_row(r, widths) for r in rows[1:]]
        if len(screen.resources) > 1:
            lines.append("  per resource, raw -> phone br: " + ", ".join(
                f"{r.edge_path.rsplit('/', 1)[-1]} {raw_res[r.edge_path]:,} -> "
                f"{per_res[(screen.name, 'phone', 'br', r.edge_path)][0]:,}"
                for r in screen.resources))
    lines.append("")
    ok_all = True
    for screen in SCREENS:
        row = sizes[screen.name]
        red = 1 - row["phone br"] / row["raw"]
        ok = red >= TARGET_REDUCTION
        ok_all &= ok
        lines.append(f"{screen.name}: phone (br) moves {red * 100:.1f}% fewer bytes than the "
                     f"raw upstream JSON (target >= {TARGET_REDUCTION * 100:.0f}%): "
                     f"{'PASS' if ok else 'FAIL'}")
    lines.append("vs raw = 1 - edge/raw; br'd = resources the edge answered with br when asked "
                 "(bodies under compression.min_size go out uncompressed)")
    print("\n".join(lines))
    if args.json:
        print(json.dumps({"sizes": sizes, "pass": ok_all}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
