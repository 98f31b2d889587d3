"""Document transforms. Each is built once from its YAML block and applied per request.

The order is fixed in code, not in YAML: SHAPERS runs them in config's SHAPE_STEPS order.
So field selections, prune and round rules are written with the upstream's own key names
(they run before the keymap), and columnar key lists carry the short names (after it).
"""

from __future__ import annotations

from typing import Any, Protocol, Self

from ..config.models import SHAPE_STEPS, EdgeFile, Shape
from ..context import RequestContext
from ..errors import PolicyError, policy_errors, raise_all
from ..inputs import Input
from .columnar import Columnar
from .envelope import Envelope
from .fields import Fields
from .keymap import KeyMap
from .paginate import Paginator
from .prune import Prune
from .rounding import Rounding


class Shaper(Protocol):
    name: str  # its key in `shape`

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Self | None:
        """Check and precompile its block of `shape` (None: the block is absent); raises
        PolicyError, with paths from the `shape` block, or several in an ExceptionGroup.
        `sources` names what the answer is made from (for the envelope's metadata)."""
        ...

    def apply(self, doc: Any, ctx: RequestContext) -> Any: ...
    def headers(self, ctx: RequestContext) -> dict[str, str]: ...
    @property
    def reads(self) -> frozenset[Input]: ...  # the request inputs its output depends on


_ALL: tuple[type[Shaper], ...] = (Columnar, Envelope, Fields, KeyMap, Paginator, Prune,
                                  Rounding)
_BY_KEY = {s.name: s for s in _ALL}
SHAPERS: dict[str, type[Shaper]] = {step: _BY_KEY[step] for step in SHAPE_STEPS}
"""Every shaper by its key in `shape`, in the order they run: config's SHAPE_STEPS, which
the `shape` docs quote, so the order is written down once."""


def build_shapers(shape: Shape, edge: EdgeFile, sources: tuple[str, ...] = ()
                  ) -> list[Shaper]:
    """The steps `shape` asks for, in order. Raises every PolicyError the blocks have, at
    once (see errors.raise_all)."""
    out: list[Shaper] = []
    errors: list[PolicyError] = []
    for step in SHAPERS.values():
        shaper = None
        try:
            shaper = step.from_policy(shape, edge, sources)
        except* PolicyError as group:
            errors += policy_errors(group)
        if shaper is not None:
            out.append(shaper)
    raise_all(errors)
    return out
