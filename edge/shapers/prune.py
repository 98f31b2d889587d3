"""Pruning: drop null, empty-string and empty-collection values, at any depth."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

from ..config.models import EdgeFile, PruneKind, Shape
from ..context import RequestContext
from ..inputs import Input

ALL_KINDS: tuple[str, ...] = get_args(PruneKind)


class Prune:
    name = "prune"

    def __init__(self, kinds: Iterable[str]) -> None:
        kinds = set(kinds)
        self.kinds = frozenset(kinds)
        # Values compared by identity/equality with these are dropped.
        self._null = "null" in kinds
        self._str = "empty_string" in kinds
        self._list = "empty_list" in kinds
        self._obj = "empty_object" in kinds

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Prune | None:
        if not shape.prune:
            return None
        return cls(ALL_KINDS if shape.prune is True else shape.prune)

    def _drop(self, v: Any) -> bool:
        if v is None:
            return self._null
        if v == "" and isinstance(v, str):
            return self._str
        if isinstance(v, list) and not v:
            return self._list
        if isinstance(v, dict) and not v:
            return self._obj
        return False

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        return self._prune(doc)

    def _prune(self, doc: Any) -> Any:
        if isinstance(doc, dict):
            out = {}
            for k, v in doc.items():
                if isinstance(v, dict | list):
                    v = self._prune(v)  # children first: {"a": {"b": null}} → {}
                if not self._drop(v):
                    out[k] = v
            return out
        if isinstance(doc, list):
            # list elements keep their positions (they may be columns or tuples) except
            # nested containers, which are pruned inside
            return [self._prune(v) if isinstance(v, dict | list) else v for v in doc]
        return doc

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset()
