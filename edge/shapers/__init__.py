"""Document transforms. Each is built once from its YAML block and applied per request.

The order is fixed here, not in YAML: select fields, prune, round, shorten keys, make
lists columnar, and wrap in the envelope. Field selections, prune and round rules are so
written with the upstream's own key names, and columnar key lists carry the short names.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..config import EdgeFile, Shape
from ..context import RequestContext
from ..inputs import Input
from .envelope import Envelope
from .paginate import Paginator


class Shaper(Protocol):
    name: str

    def apply(self, doc: Any, ctx: RequestContext) -> Any: ...
    def headers(self, ctx: RequestContext) -> dict[str, str]: ...
    @property
    def reads(self) -> frozenset[Input]: ...  # the request inputs its output depends on


def build_shapers(shape: Shape, edge: EdgeFile, sources: tuple[str, ...] = ()
                  ) -> list[Shaper]:
    from .columnar import Columnar
    from .fields import Fields
    from .keymap import KeyMap
    from .prune import ALL_KINDS, Prune
    from .rounding import Rounding

    out: list[Shaper] = []
    if shape.fields is not None or shape.client_fields:
        out.append(Fields.from_policy(shape.fields, client_fields=shape.client_fields,
                                      max_length=edge.limits.max_fields_length))
    if shape.prune:
        out.append(Prune(ALL_KINDS if shape.prune is True else shape.prune))
    if shape.round is not None:
        r = shape.round
        out.append(Rounding(r.floats, r.timestamps, r.keys))
    if shape.keymap is not None:
        out.append(KeyMap(shape.keymap, edge.keymaps[shape.keymap]))
    if shape.columnar:
        out.append(Columnar(shape.columnar))
    if shape.paginate is not None:
        out.append(paginator_of(shape))
    # the envelope is not a step here: its metadata is per request, so it is put on at
    # delivery, after the cache (shaping.wrap)
    return out


def paginator_of(shape: Shape) -> Paginator:
    p = shape.paginate
    assert p is not None
    return Paginator(style=p.style, page_param=p.page_param, size_param=p.size_param,
                     cursor_param=p.cursor_param,
                     upstream={str(k): v for k, v in p.upstream.items()},
                     default_size=p.default_size, max_size=p.max_size,
                     max_by_device=p.max_by_device, items=p.items, total=p.total,
                     has_more=p.has_more, next_cursor=p.next_cursor)


def envelope_of(shape: Shape, sources: tuple[str, ...]) -> Envelope:
    assert shape.envelope is not None
    return Envelope(shape.envelope.when, shape.envelope.api_version, sources)
