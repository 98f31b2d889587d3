"""Profile: who and what is asking, as far as the answer's shape goes. The device and
network class and the client address are worked out when the exchange starts (metrics and
the log need them for every answer); here, whether the answer goes in the envelope —
decided before auth, so a 401 or 403 comes in the envelope too."""

from __future__ import annotations

from typing import Any

from ..context import Exchange
from ..inputs import ENVELOPE_HEADER
from .stage import Answer, Stage


class Profile(Stage):
    name = "profile"

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        d = x.device
        return {"device": d.device, "network": d.network,
                "from": list(d.used_headers) or "defaults",
                "network_by": list(d.network_by) or "no hints (unknown)",
                "client_ip": x.client_ip, "envelope": x.envelope}

    @staticmethod
    def applies(route: Any) -> bool:
        return route.shape is not None and route.shape.envelope is not None

    async def __call__(self, x: Exchange) -> Answer | None:
        shape = x.route.shape
        if shape is not None and shape.envelope is not None:
            request = x.request
            x.envelope = shape.envelope.wanted(request.query.get("envelope"),
                                               request.headers.get(ENVELOPE_HEADER))
        return None
