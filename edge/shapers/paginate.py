"""Pagination for list routes: page/size (or a cursor) to the upstream, `hasMore`/`next`
and RFC 8288 `Link` headers back to the client, page size clamped by device class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ..config.models import EdgeFile, PagePolicy, Shape
from ..context import RequestContext
from ..errors import PolicyError, raise_all
from ..inputs import Input
from .pointer import lookup


class Paginator:
    name = "paginate"

    def __init__(self, policy: PagePolicy) -> None:
        p = policy
        self.style = p.style
        self.page_param, self.size_param, self.cursor_param = (p.page_param, p.size_param,
                                                               p.cursor_param)
        self.up_page = p.upstream.get("page", p.page_param)
        self.up_size = p.upstream.get("size", p.size_param)
        self.up_cursor = p.upstream.get("cursor", p.cursor_param)
        self.default_size, self.max_size = p.default_size, p.max_size
        self.max_by_device = dict(p.max_by_device)
        self.items = tuple(k for k in p.items.split("/") if k)
        self.total = tuple(p.total.split("/")) if p.total else None
        self.has_more = tuple(p.has_more.split("/")) if p.has_more else None
        self.next_cursor = tuple(p.next_cursor.split("/")) if p.next_cursor else None

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Paginator | None:
        p = shape.paginate
        if p is None:
            return None
        errors = [PolicyError(("paginate", "max_by_device", device),
                              f"paginate.max_by_device: '{device}' is not a device class",
                              key=True)
                  for device in p.max_by_device if device not in edge.devices.classes]
        if p.style == "cursor" and p.next_cursor is None:
            errors.append(PolicyError(("paginate",), "paginate: cursor style needs "
                                      "`next_cursor` (where the next cursor is)"))
        raise_all(errors)
        return cls(p)

    @property
    def params(self) -> frozenset[str]:
        """Client parameters the pager owns (not forwarded as they came)."""
        return frozenset({self.page_param, self.size_param, self.cursor_param})

    def upstream_params(self, query: Mapping[str, str], ctx: RequestContext
                        ) -> list[tuple[str, str]]:
        """Clamp what the client asked for; remember it for the response."""
        cap = min(self.max_size, self.max_by_device.get(ctx.device.device, self.max_size))
        size = _int(query.get(self.size_param), self.default_size)
        size = max(1, min(size, cap))
        if self.style == "cursor":
            cursor = query.get(self.cursor_param)
            ctx.page = {"size": size, "cursor": cursor}
            out = [(self.up_size, str(size))]
            if cursor:
                out.append((self.up_cursor, cursor[:512]))
            return out
        page = max(1, _int(query.get(self.page_param), 1))
        ctx.page = {"size": size, "page": page}
        return [(self.up_page, str(page)), (self.up_size, str(size))]

    def read(self, doc: Any, ctx: RequestContext) -> None:
        """Before the other shapers run (they may drop the fields this needs)."""
        info = ctx.page
        if info is None:
            return
        if self.style == "cursor":
            nxt = lookup(doc, self.next_cursor) if self.next_cursor else None
            # "" (and false) is how many APIs say "last page": not one more page to ask for
            usable = isinstance(nxt, str | int) and not isinstance(nxt, bool) and nxt != ""
            info["next_cursor"] = nxt if usable else None
            info["has_more"] = info["next_cursor"] is not None
            return
        more = lookup(doc, self.has_more) if self.has_more else None
        if isinstance(more, bool):
            info["has_more"] = more
        elif self.total is not None and isinstance(lookup(doc, self.total), int):
            info["has_more"] = info["page"] * info["size"] < lookup(doc, self.total)
        else:
            items = lookup(doc, self.items) if self.items else doc
            info["has_more"] = isinstance(items, list) and len(items) >= info["size"]

    def _link(self, ctx: RequestContext, **change: Any) -> str:
        owned = (self.page_param, self.cursor_param, self.size_param)
        # ctx.query: the client parameters a link may carry (the source's QueryMapper chose
        # them); a list of pairs, so a repeated one (?tag=a&tag=b) keeps every value
        query = [(k, v) for k, v in (ctx.query or {}).items() if k not in owned]
        query.append((self.size_param, str(ctx.page["size"]) if ctx.page else ""))
        query.extend((k, str(v)) for k, v in change.items())
        return f"{ctx.path}?{urlencode(query)}"

    def _next(self, ctx: RequestContext) -> str | None:
        info = ctx.page
        if not info or not info.get("has_more"):
            return None
        if self.style == "cursor":
            return self._link(ctx, **{self.cursor_param: info["next_cursor"]})
        return self._link(ctx, **{self.page_param: info["page"] + 1})

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        if ctx.page is None or not isinstance(doc, dict):
            return doc
        return {**doc, "hasMore": bool(ctx.page.get("has_more")), "next": self._next(ctx)}

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        info = ctx.page
        if not info:
            return {}
        links = []
        nxt = self._next(ctx)
        if nxt:
            links.append(f'<{nxt}>; rel="next"')
        if self.style == "page":
            links.append(f'<{self._link(ctx, **{self.page_param: 1})}>; rel="first"')
            if info["page"] > 1:
                prev = self._link(ctx, **{self.page_param: info["page"] - 1})
                links.append(f'<{prev}>; rel="prev"')
        return {"Link": ", ".join(links)} if links else {}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset({Input.DEVICE}) if self.max_by_device else frozenset()


def _int(raw: str | None, default: int) -> int:
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return default
    return int(raw)
