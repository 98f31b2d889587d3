"""`edge explain METHOD PATH`: what the edge would do with one request, step by step.

It matches the route, derives the device profile from the given headers, calls the real
upstream, and prints the size of the document after every shaper, then after encoding and
compression. Auth is described, not enforced: this is an operator's tool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgpack
import orjson
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from .config import Config
from .context import Exchange
from .encoding import NotAcceptable, choose_coding, choose_format, compress, decode
from .metrics import Metrics
from .proxy import join_query
from .routing import BadPath, split_path
from .runtime import build_runtime


class _Query:
    def __init__(self, query: Any) -> None:
        self.query = query


async def explain(config: Config, method: str, target: str, raw_headers: list[str],
                  out: Callable[[str], None] = print) -> int:
    headers: CIMultiDict[str] = CIMultiDict()
    for h in raw_headers:
        name, sep, value = h.partition(":")
        if not sep:
            out(f"bad header {h!r}: expected 'Name: value'")
            return 2
        headers.add(name.strip(), value.strip())
    view = CIMultiDictProxy(headers)
    runtime, _ = build_runtime(config, None, Metrics(), 1)
    try:
        return await _explain(runtime, method.upper(), target, view, out)
    finally:
        for up in runtime.upstreams.values():
            await up.close()


async def _explain(rt: Any, method: str, target: str, headers: CIMultiDictProxy[str],
                   out: Callable[[str], None]) -> int:
    path, _, query = target.partition("?")
    try:
        match = rt.table.match(method, split_path(path))
    except BadPath as e:
        out(f"path refused: {e}")
        return 1
    route = match.route
    if route is None:
        out(f"no route for {method} {path}" + (f" (allowed: {', '.join(match.allowed)})"
                                               if match.allowed else ""))
        return 1
    spec = route.spec
    device = rt.devices.profile(headers)
    out(f"route      {route.name}   ({spec.file}:{spec.line})")
    out(f"params     {match.params}")
    out(f"device     {device.device} / network {device.network}"
        f"   (from {', '.join(device.used_headers) or 'defaults'})")
    out(f"auth       jwt {route.auth.mode}" + (f", {len(route.auth.rules)} allow rule(s)"
                                               if route.auth.rules else "")
        + (f", app key {route.api_key.mode}" if route.api_key is not None else ""))
    if route.batch is not None:
        out(f"{'batch' if spec.model.batch else 'offline'}      each item follows its own route;"
            " explain one of their paths")
        return 0
    if spec.upstream_path is None:
        out("sources    " + ", ".join(f"{n} ({s.service} {s.path})"
                                      for n, s in (spec.model.sources or {}).items()))
        out("           (explain follows single-source routes; try one of these paths)")
        return 0
    upstream_path = spec.upstream_path.build(match.params)
    query_params: MultiDict[str] = MultiDict(parse_qsl(query, keep_blank_values=True))
    ctx = Exchange(request_id="explain", route_name=route.name, params=match.params,
                         device=device, client_ip="127.0.0.1", path=path,
                         started=time.perf_counter(), route=route, query=query_params)
    plan = route.shape
    extra = ""
    if plan is not None:
        ctx.fields_param = query_params.get("fields")
        ctx.keymap_off = query_params.get("keymap") == "none"
        if plan.pager is not None:
            extra = urlencode(plan.pager.upstream_params(query_params, ctx))
    full = join_query(join_query(upstream_path, route.query.map(_Query(query_params), query)),
                      extra)
    assert route.upstream is not None
    out(f"upstream   {route.upstream.name} {method} {route.upstream.base}{full}")
    t0 = time.perf_counter()
    resp = await route.upstream.request(method, full, {"Accept-Encoding": "identity"},
                                        None, route.timeout)
    try:
        raw = await resp.read()
    finally:
        resp.release()
    out(f"           {resp.status} {resp.content_type}, {len(raw):,} bytes in "
        f"{(time.perf_counter() - t0) * 1000:.1f} ms")
    if plan is None:
        out("shaping    none: the body streams through as the upstream sent it")
        return 0
    doc = orjson.loads(decode(raw, resp.headers.get("Content-Encoding"),
                              max_size=plan.max_body))
    size = len(orjson.dumps(doc))
    out(f"{'parsed':<11}{size:>9,} bytes")
    if plan.pager is not None:
        plan.pager.read(doc, ctx)
    for shaper in plan.shapers:
        doc = shaper.apply(doc, ctx)
        new = len(orjson.dumps(doc))
        out(f"{shaper.name:<11}{new:>9,} bytes  ({new - size:+,})")
        size = new
    try:
        fmt = choose_format(headers.get("Accept"))
        coding = choose_coding(headers.get("Accept-Encoding"))
    except NotAcceptable as e:
        out(f"406        {e}")
        return 1
    body = msgpack.packb(doc, use_bin_type=True) if fmt == "msgpack" else orjson.dumps(doc)
    out(f"{fmt:<11}{len(body):>9,} bytes")
    if coding is not None and len(body) >= plan.compression.min_size:
        t1 = time.perf_counter()
        packed = compress(body, coding, quality=plan.quality[coding])
        out(f"{coding:<11}{len(packed):>9,} bytes  ({(time.perf_counter() - t1) * 1000:.2f} ms)")
        body = packed
    else:
        out(f"{'identity':<11}{len(body):>9,} bytes  (no compression: "
            f"{'not asked' if coding is None else 'under min_size'})")
    saved = 1 - len(body) / len(raw) if raw else 0.0
    out(f"on the wire {len(body):,} of {len(raw):,} upstream bytes ({saved:.1%} fewer)")
    return 0
