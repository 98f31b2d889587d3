"""What every stage is: built once per process over the shared state, told whether it has
anything to do on a route, called with the exchange, and able to say what it decided.

Two kinds. A `Stage` works on the way down: it returns an answer (which ends the walk) or
None (go on). A `Layer` wraps the rest of the walk, Envoy-style: it may act on the way
down, calls `inner(x)` for what the layers below make of the request, and acts on that on
its way up. What travels up is one of the `Up` values below, each layer turning what it
knows into something closer to the wire: the upstream's `Reply` → a `Shaped`
representation (or a `Document` before it) → `Held` by the cache → an `Answer`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..context import Exchange
from ..representation import Answer, Entry
from ..shaping import Shaped
from ..wire import Reply

if TYPE_CHECKING:
    from ..runtime import State


@dataclass(slots=True)
class Document:
    """A composed route's document, gathered from its sources, not yet shaped."""

    doc: Any


@dataclass(slots=True)
class Held:
    """A cache entry chosen to answer, and how the cache came by it (Cache-Status)."""

    entry: Entry
    status: str
    policy: bool  # the route's caching headers apply (False: an answer for this caller)


# what a layer gets from the layers below it
Up = Answer | Reply | Document | Shaped | Held
Inner = Callable[[Exchange], Awaitable[Up]]


class Part:
    """What stages and layers share."""

    name = "part"

    def __init__(self, state: State, pipeline: Any) -> None:
        self.state = state
        self.pipeline = pipeline

    @staticmethod
    def applies(route: Any) -> bool:
        """Has this stage anything to do on the route? (If not, its requests skip it.)"""
        return True

    def describe(self, x: Exchange) -> dict[str, Any] | None:
        """What it decided, for explain's record (None: nothing worth a line)."""
        return None


class Stage(Part):
    async def __call__(self, x: Exchange) -> Answer | None:
        raise NotImplementedError


class Layer(Part):
    async def __call__(self, x: Exchange, inner: Inner) -> Up:
        raise NotImplementedError


class Link:
    """One layer bound to the layers below it: a route's chain is built once (per config
    generation), so walking it makes no closures."""

    __slots__ = ("layer", "inner")

    def __init__(self, layer: Layer, inner: Inner) -> None:
        self.layer, self.inner = layer, inner

    def __call__(self, x: Exchange) -> Awaitable[Up]:
        return self.layer(x, self.inner)


async def bottom(x: Exchange) -> Up:
    raise AssertionError("the Source layer never calls inner")
