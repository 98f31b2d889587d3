"""What every stage is: built once per process over the shared state, told whether it has
anything to do on a route, called with the exchange, and able to say what it decided."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..context import Exchange
from ..representation import Answer

if TYPE_CHECKING:
    from ..runtime import State



class Stage:
    name = "stage"

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

    async def __call__(self, x: Exchange) -> Answer | None:
        raise NotImplementedError
