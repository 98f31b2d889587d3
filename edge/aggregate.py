"""Several upstream calls → one document.

Each source starts as soon as the sources its path refers to have answered, so
independent sources run in parallel and a chain (`member` → `/providers/{member.pid}`)
runs in order. A failing source yields its fallback and is reported degraded, unless it
is `required`, which fails the whole request with a problem naming it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from .config import AggregateSource, source_deps
from .context import RequestContext
from .encoding import DecodeError, TooLarge, decode
from .errors import Problem
from .routing import _PCHAR_SAFE, _QUERY_SAFE
from .upstream import Upstream

_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_-]+)*)\}")


class _Failed(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(doc, dict):
            doc = doc.get(key)
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return None
    return doc


@dataclass
class SourcePlan:
    name: str
    upstream: Upstream
    parts: list[tuple[str, str, tuple[str, ...], bool]]  # (literal, ref, tail, in_query)
    deps: frozenset[str]
    cfg: AggregateSource
    timeout: aiohttp.ClientTimeout
    pick: tuple[str, ...] | None

    def path(self, params: Mapping[str, str], results: Mapping[str, Any]) -> str:
        out = []
        for literal, ref, tail, in_query in self.parts:
            out.append(literal)
            if not ref:
                continue
            if ref in results and (tail or ref not in params):
                value = _lookup(results[ref], tail)
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    shown = ".".join((ref, *tail))
                    raise _Failed(Problem("upstream-bad-response",
                                          f"source '{self.name}': '{{{shown}}}' has no "
                                          "usable value"))
                value = str(value)
            else:
                value = params[ref]
            out.append(quote(value, safe=_QUERY_SAFE if in_query else _PCHAR_SAFE))
        return "".join(out)


def _compile_parts(path: str) -> list[tuple[str, str, tuple[str, ...], bool]]:
    parts = []
    pos = 0
    qmark = path.find("?")
    for m in _REF.finditer(path):
        tail = tuple(t for t in m.group(2).split(".") if t)
        parts.append((path[pos: m.start()], m.group(1), tail, qmark != -1 and m.start() > qmark))
        pos = m.end()
    parts.append((path[pos:], "", (), False))
    return parts


class AggregatePlan:
    """A route's `sources`, compiled at load time."""

    def __init__(self, sources: Mapping[str, AggregateSource],
                 upstreams: Mapping[str, Upstream]) -> None:
        deps = source_deps(dict(sources))
        self.sources = [
            SourcePlan(name=n, upstream=upstreams[s.service], parts=_compile_parts(s.path),
                       deps=frozenset(d for d in deps[n] if d in sources), cfg=s,
                       timeout=upstreams[s.service].timeout(s.timeout),
                       pick=tuple(s.pick.split("/")[1:]) if s.pick else None)
            for n, s in sources.items()]
        self.names = tuple(sources)

    async def gather(self, ctx: RequestContext, headers: Mapping[str, str], max_body: int
                     ) -> tuple[dict[str, Any], list[str]]:
        """The composed document and the names of the sources that degraded."""
        loop = asyncio.get_running_loop()
        done: dict[str, asyncio.Future[tuple[bool, Any]]] = {
            s.name: loop.create_future() for s in self.sources}
        results: dict[str, Any] = {}
        degraded: list[str] = []

        async def run(src: SourcePlan) -> None:
            ok = True
            for dep in src.deps:
                dep_ok, _ = await done[dep]
                ok = ok and dep_ok
            try:
                if not ok:
                    raise _Failed(Problem("upstream-bad-response",
                                          f"source '{src.name}' depends on a failed source"))
                value = await self._fetch(src, ctx, headers, results, max_body)
            except _Failed as failed:
                if src.cfg.required:
                    raise failed.problem from None
                degraded.append(src.name)
                results[src.name] = src.cfg.fallback
                done[src.name].set_result((False, src.cfg.fallback))
                return
            results[src.name] = value
            done[src.name].set_result((True, value))

        try:
            async with asyncio.TaskGroup() as tg:
                for src in self.sources:
                    tg.create_task(run(src))
        except* Problem as group:
            raise group.exceptions[0] from None
        return self._compose(results), sorted(degraded, key=self.names.index)

    async def _fetch(self, src: SourcePlan, ctx: RequestContext, headers: Mapping[str, str],
                     results: Mapping[str, Any], max_body: int) -> Any:
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
            if resp.content_length is not None and resp.content_length > max_body:
                raise _Failed(Problem("upstream-bad-response",
                                      f"source '{src.name}' sent too large a body",
                                      source=src.name))
            chunks, size = [], 0
            async for chunk in resp.content.iter_any():
                size += len(chunk)
                if size > max_body:
                    raise _Failed(Problem("upstream-bad-response",
                                          f"source '{src.name}' sent too large a body",
                                          source=src.name))
                chunks.append(chunk)
            raw = b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError):
            raise _Failed(Problem("upstream-bad-response",
                                  f"source '{src.name}': the response was cut short",
                                  source=src.name)) from None
        finally:
            resp.release()
        try:
            value = _parse(raw, resp.headers.get("Content-Encoding"), max_body)
        except (DecodeError, TooLarge, ValueError, RecursionError):
            raise _Failed(Problem("upstream-bad-response",
                                  f"source '{src.name}' sent malformed JSON",
                                  source=src.name)) from None
        if src.pick is not None:
            value = _lookup(value, src.pick)
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


def _parse(raw: bytes, content_encoding: str | None, max_body: int) -> Any:
    return orjson.loads(decode(raw, content_encoding, max_size=max_body))
