"""`edge explain METHOD PATH`: what the edge does with one request, step by step.

It is the server's own pipeline (edge/pipeline) walked once in-process, with a recorder:
the same route, auth, limits, cache, sources, shaping and encoding, against the configured
upstreams, on in-memory backends. So it answers what the server answers (a 401 without a
token, a 403 for someone else's record), follows composed, image and cached routes, and
shows the Vary, ETag and envelope the client would get. The request really reaches the
upstreams: explain a write only where that is fine.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from multidict import CIMultiDict

from .app import EdgeApp
from .config import Config

SIZED = ("parsed", "fields", "prune", "round", "keymap", "columnar", "paginate", "json",
         "msgpack")


def parse_headers(raw_headers: list[str]) -> CIMultiDict[str] | str:
    headers: CIMultiDict[str] = CIMultiDict()
    for h in raw_headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            return f"bad header {h!r}: expected 'Name: value'"
        headers.add(name.strip(), value.strip())
    return headers


async def explain(config: Config, method: str, target: str, raw_headers: list[str],
                  out: Callable[[str], None] = print, body: bytes = b"") -> int:
    """Print the walk; 0 when the answer is a success, 1 when it is refused or fails."""
    headers = parse_headers(raw_headers)
    if isinstance(headers, str):
        out(headers)
        return 2
    edge = sandbox(config)
    await edge.start()
    try:
        record = await edge.handler.explain(method, target, headers, body)
    finally:
        await edge.close()
    for line in render(record):
        out(line)
    return 0 if record["status"] < 400 else 1


def sandbox(config: Config) -> EdgeApp:
    """An edge that only explains (this command, the playground's previews): on memory
    backends whatever the environment says (it must not touch shared state), no reload
    watcher, no republished streams, its access log kept to itself. `start()` it."""
    shared = config.edge.backend.redis_url_env
    config = replace(config, env={k: v for k, v in config.env.items() if k != shared})
    return EdgeApp(config, env=config.env, watch=False, access_log=io.BytesIO(),
                   republish=False)


def render(record: dict[str, Any]) -> list[str]:
    """The record as lines an operator reads: one per stage or step, sizes aligned."""
    lines: list[str] = []
    upstream = 0
    size: int | None = None
    for step in record["steps"]:
        stage = step["stage"]
        if "stopped" in step:
            lines.append(f"{stage:<11}{step['stopped']} {step['problem']}: {step['detail']}")
            continue
        if stage == "match":
            lines.append(f"route      {step['route']}   ({step['where']})")
            lines.append(f"params     {step['params']}")
        elif stage == "profile":
            src = step["from"] if isinstance(step["from"], str) else ", ".join(step["from"])
            lines.append(f"device     {step['device']} / network {step['network']}"
                         f"   (from {src})" + ("   envelope" if step["envelope"] else ""))
            by = step.get("network_by")
            if isinstance(by, list) and by:
                lines.append(f"network    {step['network']}: the slowest of {'; '.join(by)}")
        elif stage == "upstream":
            upstream = step["bytes"]
            lines.append(f"upstream   {step['status']} {step['type']}, {upstream:,} bytes")
        elif stage in SIZED:
            new = step["bytes"]
            delta = f"  ({new - size:+,})" if size is not None and stage != "parsed" else ""
            lines.append(f"{stage:<11}{new:>9,} bytes{delta}")
            size = new
        elif stage == "deliver":
            lines.extend(_delivered(step, size, upstream))
        elif stage == "sources":  # a composed route's calls, when each ran
            for src in step["timeline"]:
                after = f"  after {', '.join(src['after'])}" if src["after"] else ""
                end = src.get("end_ms", src["start_ms"])
                lines.append(f"{'source':<11}{src['source']}: {src['start_ms']:.1f} → "
                             f"{end:.1f} ms{after}" + ("" if src["ok"] else "  (failed)"))
        else:
            facts = ", ".join(f"{k} {_shown(v)}" for k, v in step.items() if k != "stage")
            lines.append(f"{stage:<11}{facts}")
    return lines


def _delivered(step: dict[str, Any], size: int | None, upstream: int) -> list[str]:
    headers = {k.lower(): v for k, v in step["headers"].items()}
    sent = step["bytes"]
    coding = headers.get("content-encoding")
    lines = []
    if size is not None:
        if coding:
            lines.append(f"{coding:<11}{sent:>9,} bytes")
        else:
            lines.append(f"{'identity':<11}{sent:>9,} bytes  (not compressed)")
    lines.append(f"status     {step['status']}")
    for name in ("content-type", "cache-control", "etag", "vary", "cache-status",
                 "ratelimit", "x-edge-shaped", "server-timing"):
        if name in headers:
            lines.append(f"  {name}: {headers[name]}")
    if upstream:
        saved = 1 - sent / upstream
        lines.append(f"on the wire {sent:,} of {upstream:,} upstream bytes ({saved:.1%} fewer)")
    else:
        lines.append(f"on the wire {sent:,} bytes")
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
