"""Field projection per device/network class, narrowed by the client's `?fields=`."""

from __future__ import annotations

from typing import Any

from ..config.models import NETWORK_CLASSES, EdgeFile, Shape
from ..context import RequestContext
from ..errors import PolicyError, Problem, raise_all
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
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Fields | None:
        fields = shape.fields
        if fields is None and not shape.client_fields:
            return None
        texts = {"default": fields} if isinstance(fields, str) else dict(fields or {})
        devices = edge.devices.classes
        variants: dict[str, Selection] = {}
        errors: list[PolicyError] = []
        for key, text in texts.items():
            at = ("fields",) if isinstance(fields, str) else ("fields", key)
            device, _, network = key.partition("/")
            if not (key == "default" or key in devices or key in NETWORK_CLASSES
                    or (network and device in devices and network in NETWORK_CLASSES)):
                errors.append(PolicyError(at, (
                    f"fields: '{key}' is not 'default', a device class "
                    f"({', '.join(sorted(devices))}), a network class "
                    f"({', '.join(sorted(NETWORK_CLASSES))}) or 'device/network'"), key=True))
            try:
                variants[key] = parse_fields(text, max_length=65536)
            except FieldsError as e:
                errors.append(PolicyError(at, f"fields: {e}"))
        raise_all(errors)
        return cls(variants, client_fields=shape.client_fields,
                   max_length=edge.limits.max_fields_length)

    def select(self, ctx: RequestContext) -> Selection:
        device, network = ctx.device.device, ctx.device.network
        v = self.variants
        return (v.get(f"{device}/{network}") or v.get(network) or v.get(device)
                or v.get("default") or ALL)

    def asked(self, ctx: RequestContext) -> Selection | None:
        """The client's `?fields=`, parsed (Negotiate asks, before the upstream is
        called: a bad one is a 400 that costs the upstream nothing)."""
        if ctx.fields_param is None or not self.client_fields:
            return None
        if ctx.fields is None:
            try:
                ctx.fields = parse_fields(ctx.fields_param, max_length=self.max_length)
            except FieldsError as e:
                raise Problem("bad-fields", str(e), position=e.position) from None
        return ctx.fields  # type: ignore[no-any-return]

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        sel = self.select(ctx)
        asked = self.asked(ctx)
        if asked is not None:
            sel = intersect(sel, asked)
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
