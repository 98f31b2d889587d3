"""What `edge explain` (and the admin explain endpoint) show: the pipeline's own record of
one request, stage by stage. Stages describe what they decided; the shaping steps add the
size of the document after each one."""

from __future__ import annotations

from typing import Any

from ..context import Exchange
from ..errors import Problem


class Trace:
    """A recorder the pipeline fills in as a request walks it."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self._seen: Problem | None = None

    def note(self, stage: str, **facts: Any) -> None:
        self.steps.append({"stage": stage, **facts})

    def passed(self, stage: Any, x: Exchange, answer: Any) -> None:
        facts = stage.describe(x)
        if facts is not None:
            self.note(stage.name, **facts)

    def stopped(self, stage: Any, x: Exchange, problem: Problem) -> None:
        if problem is self._seen:  # on its way up through the layers: said where it began
            return
        self._seen = problem
        self.note(stage.name, stopped=problem.status, problem=problem.kind,
                  detail=problem.detail)

    def as_json(self) -> list[dict[str, Any]]:
        return self.steps
