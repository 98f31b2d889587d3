"""Several upstream calls → one document.

Each source starts as soon as the sources its path refers to have answered, so
independent sources run in parallel and a chain (`member` → `/providers/{member.pid}`)
runs in order. A failing source yields its fallback and is reported degraded, unless it
is `required`, which fails the whole request with a problem naming it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from .config import AggregateSource, source_deps
from .context import Exchange
from .encoding import DecodeError, TooLarge
from .errors import Problem
from .routing import PathBuilder
from .shapers.pointer import lookup
from .shaping import parse_json
from .upstream import Upstream
from .wire import OverCap, read_capped


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


class _Failed(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


@dataclass
class SourcePlan:
    name: str
    upstream: Upstream
    builder: PathBuilder
    deps: frozenset[str]
    cfg: AggregateSource
    timeout: aiohttp.ClientTimeout
    pick: tuple[str, ...] | None

    def path(self, params: Mapping[str, str], results: Mapping[str, Any]) -> str:
        def resolve(source: str, keys: tuple[str, ...]) -> str:
            value = lookup(results.get(source), keys)
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                shown = ".".join((source, *keys))
                raise _Failed(Problem("upstream-bad-response", f"source '{self.name}': "
                                      f"'{{{shown}}}' has no usable value"))
            return str(value)

        return self.builder.build(params, resolve)


class AggregatePlan:
    """A route's `sources`, compiled at load time."""

    def __init__(self, sources: Mapping[str, AggregateSource],
                 upstreams: Mapping[str, Upstream]) -> None:
        deps = source_deps(sources)
        self.sources = [
            SourcePlan(name=n, upstream=upstreams[s.service],
                       builder=PathBuilder.compile(s.path), deps=frozenset(deps[n]), cfg=s,
                       timeout=upstreams[s.service].timeout(s.timeout),
                       pick=tuple(s.pick.split("/")[1:]) if s.pick else None)
            for n, s in sources.items()]
        self.names = tuple(sources)

    async def gather(self, ctx: Exchange, headers: Mapping[str, str], max_body: int,
                     max_depth: int) -> tuple[dict[str, Any], list[str]]:
        """The composed document and the names of the sources that degraded."""
        loop = asyncio.get_running_loop()
        done: dict[str, asyncio.Future[tuple[bool, Any]]] = {
            s.name: loop.create_future() for s in self.sources}
        results: dict[str, Any] = {}
        degraded: list[str] = []
        # explained: when each source started and ended (ms since the request came)
        timeline: dict[str, dict[str, Any]] | None = {} if ctx.trace is not None else None

        async def run(src: SourcePlan) -> None:
            ok = True
            for dep in src.deps:
                dep_ok, _ = await done[dep]
                ok = ok and dep_ok
            if timeline is not None:
                timeline[src.name] = {"source": src.name, "after": sorted(src.deps),
                                      "start_ms": _ms_since(ctx.started), "ok": False}
            try:
                if not ok:
                    raise _Failed(Problem("upstream-bad-response",
                                          f"source '{src.name}' depends on a failed source"))
                value = await self._fetch(src, ctx, headers, results, max_body, max_depth)
            except _Failed as failed:
                if src.cfg.required:
                    raise failed.problem from None
                degraded.append(src.name)
                results[src.name] = src.cfg.fallback
                done[src.name].set_result((False, src.cfg.fallback))
                return
            finally:
                if timeline is not None:
                    timeline[src.name]["end_ms"] = _ms_since(ctx.started)
            results[src.name] = value
            if timeline is not None:
                timeline[src.name]["ok"] = True
            done[src.name].set_result((True, value))

        try:
            async with asyncio.TaskGroup() as tg:
                for src in self.sources:
                    tg.create_task(run(src))
        except* Problem as group:
            raise group.exceptions[0] from None
        finally:
            if timeline is not None:
                ctx.trace.note("sources", timeline=[timeline[n] for n in self.names
                                                    if n in timeline])
        return self._compose(results), sorted(degraded, key=self.names.index)

    async def _fetch(self, src: SourcePlan, ctx: Exchange, headers: Mapping[str, str],
                     results: Mapping[str, Any], max_body: int, max_depth: int) -> Any:
        path = src.path(ctx.params, results)
        try:
            resp = await src.upstream.request("GET", path, headers, None, src.timeout)
        except Problem as p:
            raise _Failed(Problem(p.kind, f"source '{src.name}': {p.detail}",
                                  headers=p.headers, source=src.name)) from None
        try:
            if not 200 <= resp.status < 300:
                raise _Failed(Problem("upstream-bad-response",
                                      f"source '{src.name}' answered {resp.status}",
                                      source=src.name))
            raw = await read_capped(resp, max_body)
            # for the bytes-saved metrics: what the sources sent vs what the app gets
            ctx.timings["upstream_bytes"] = ctx.timings.get("upstream_bytes", 0) + len(raw)
            value = parse_json(raw, resp.headers.get("Content-Encoding"), max_size=max_body,
                               max_depth=max_depth)
        except OverCap:
            raise _Failed(Problem("upstream-bad-response",
                                  f"source '{src.name}' sent too large a body",
                                  source=src.name)) from None
        except (aiohttp.ClientError, TimeoutError):
            raise _Failed(Problem("upstream-bad-response",
                                  f"source '{src.name}': the response was cut short",
                                  source=src.name)) from None
        except (DecodeError, TooLarge, orjson.JSONDecodeError, RecursionError):
            raise _Failed(Problem("upstream-bad-response",
                                  f"source '{src.name}' sent malformed JSON",
                                  source=src.name)) from None
        finally:
            resp.release()
        if src.pick is not None:
            value = lookup(value, src.pick)
        if src.cfg.first:
            value = value[0] if isinstance(value, list) and value else None
        return value

    def _compose(self, results: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for src in self.sources:
            key = src.cfg.key or src.name
            target = results.get(src.cfg.into) if src.cfg.into else None
            if src.cfg.into is None:
                doc[key] = results[src.name]
            elif isinstance(target, dict):
                target[key] = results[src.name]
            # a source nested into one that failed (not an object) is left out
        return doc

