"""Negotiate: for a shaped route, the representation (JSON or MessagePack, by Accept) and
the content coding (br or gzip, by Accept-Encoding), plus the client's `fields=` and keymap
opt-out. After auth and limits, so a refused caller learns nothing of the formats."""

from __future__ import annotations

from typing import Any

from ..context import Exchange
from ..inputs import KEYMAP_HEADER
from .stage import Answer, Stage


class Negotiate(Stage):
    name = "negotiate"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        if x.route.shape is None:
            return None
        return {"format": x.fmt, "coding": x.coding or "identity",
                "fields": x.fields_param, "keymap": "off" if x.keymap_off else "on"}

    @staticmethod
    def applies(route: Any) -> bool:
        return route.shape is not None

    async def __call__(self, x: Exchange) -> Answer | None:
        shaped = x.route.shape
        if shaped is None or (x.route.image is not None
                              and x.request.method in ("GET", "HEAD")):
            return None
        request = x.request
        x.fmt, x.coding = shaped.negotiate(request.headers)
        query = request.query
        x.fields_param = query.get("fields")
        if shaped.fields is not None:
            shaped.fields.asked(x)  # a bad `fields=` is a 400 here, not after the call
        x.keymap_off = (query.get("keymap") == "none"
                        or request.headers.get(KEYMAP_HEADER) == "none")
        if request.method in ("GET", "HEAD"):
            x.conditional = request.headers  # the edge answers conditionals on its shape
        return None
