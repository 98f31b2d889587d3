"""Match: the route for the method and path, and its parameters (routing.py)."""

from __future__ import annotations

from typing import Any

from ..context import Exchange
from ..errors import Problem
from ..routing import BadPath, split_path
from .limits import charge_ip
from .stage import Answer, Stage


class Match(Stage):
    name = "match"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        spec = x.route.spec
        return {"route": x.route.name, "params": x.params, "where": f"{spec.file}:{spec.line}"}

    async def __call__(self, x: Exchange) -> Answer | None:
        request = x.request
        try:
            segments = split_path(x.path)
        except (BadPath, UnicodeDecodeError) as e:
            raise Problem("bad-path", str(e) if isinstance(e, BadPath) else
                          "path is not valid UTF-8") from None
        match = x.rt.table.match(request.method, segments)
        route = match.route
        if route is None:
            await charge_ip(self.state, x)
            if match.allowed:
                allow = ", ".join(sorted({*match.allowed, *(
                    ("HEAD",) if "GET" in match.allowed else ())}))
                raise Problem("method-not-allowed", f"allowed: {allow}",
                              headers={"Allow": allow})
            raise Problem("not-found", f"no route for {request.method} {request.path}")
        x.route_name = route.name
        x.route = route
        x.params = match.params
        return None
