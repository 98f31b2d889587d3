"""Field projection per device/network class, narrowed by the client's `?fields=`."""

from __future__ import annotations

from typing import Any

from ..context import NETWORK_CLASSES, RequestContext
from ..errors import Problem
from ..inputs import Input
from .projection import ALL, FieldsError, Selection, intersect, parse_fields, project


class Fields:
    name = "fields"

    def __init__(self, variants: dict[str, Selection], *, client_fields: bool,
                 max_length: int) -> None:
        self.variants = variants
        self.client_fields = client_fields
        self.max_length = max_length
        keys = [k for k in variants if k != "default"]
        self.by_network = any(k in NETWORK_CLASSES or "/" in k for k in keys)
        self.by_device = any(k not in NETWORK_CLASSES for k in keys)

    @classmethod
    def from_policy(cls, fields: str | dict[str, str] | None, *, client_fields: bool,
                    max_length: int) -> Fields:
        texts = {"default": fields} if isinstance(fields, str) else dict(fields or {})
        variants = {k: parse_fields(v, max_length=65536) for k, v in texts.items()}
        return cls(variants, client_fields=client_fields, max_length=max_length)

    def select(self, ctx: RequestContext) -> Selection:
        device, network = ctx.device.device, ctx.device.network
        v = self.variants
        return (v.get(f"{device}/{network}") or v.get(network) or v.get(device)
                or v.get("default") or ALL)

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        sel = self.select(ctx)
        asked = ctx.fields_param
        if asked is not None and self.client_fields:
            try:
                sel = intersect(sel, parse_fields(asked, max_length=self.max_length))
            except FieldsError as e:
                raise Problem("bad-fields", str(e), position=e.position) from None
        if sel is ALL:
            return doc
        return project(doc, sel)

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset({*((Input.DEVICE,) if self.by_device else ()),
                          *((Input.NETWORK,) if self.by_network else ()),
                          *((Input.FIELDS,) if self.client_fields else ())})
