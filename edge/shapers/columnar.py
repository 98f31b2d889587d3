"""Columnar lists: send a list of similar objects as one key row plus value rows.

At each configured path, a list of objects such as

    [{"id": 1, "name": "a"}, {"id": 2, "tag": "x"}]

becomes

    {"_k": ["id", "name", "tag"], "_d": [[1, "a", null], [2, null, "x"]]}

`_k` is the union of the rows' keys in first-seen order; a key missing from a row reads as
null in that row. A client reads it back by zipping the keys with each row:

    rows = [dict(zip(v["_k"], row)) for row in v["_d"]]   # Python
    v._d.map(r => Object.fromEntries(v._k.map((k, i) => [k, r[i]])))   // JavaScript

(a key that was missing comes back as null). Lists shorter than `min_rows`, or holding any
element that is not an object, are left as they are, so a client must accept either shape.
Values inside rows are kept as they are: nested lists are only converted when a path names
them. Paths are slash-separated keys; "" or "." names a top-level list, and a path passes
through lists of objects on the way ("items/history" converts each item's `history`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config.models import EdgeFile, Shape
from ..context import RequestContext
from ..errors import PolicyError, raise_all
from ..inputs import Input

KEYS = "_k"
DATA = "_d"


def parse_path(path: str) -> tuple[str, ...]:
    """'a/b' -> ('a', 'b'); '' or '.' -> () (the document itself)."""
    if not isinstance(path, str):
        raise ValueError(f"columnar path: expected a string, got {path!r}")
    if path in ("", "."):
        return ()
    segments = tuple(path.split("/"))
    if "" in segments:
        raise ValueError(f"columnar path {path!r}: empty segment "
                         "(write 'a/b'; use '' or '.' for a top-level list)")
    return segments


class Columnar:
    name = "columnar"

    def __init__(self, paths: Sequence[str], min_rows: int = 2) -> None:
        if isinstance(paths, str):
            raise ValueError(f"columnar paths: expected a list of paths, got {paths!r}")
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
            raise ValueError(f"columnar min_rows: expected an integer >= 1, got {min_rows!r}")
        parsed = dict.fromkeys(parse_path(p) for p in paths)  # dedupe, keep order
        # Deepest first, so "items/history" still finds its lists before "items" itself
        # turns into columns.
        self.paths = tuple(sorted(parsed, key=len, reverse=True))
        self.min_rows = min_rows

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Columnar | None:
        if not shape.columnar:
            return None
        errors = []
        for i, path in enumerate(shape.columnar):
            try:
                parse_path(path)
            except ValueError as e:
                errors.append(PolicyError(("columnar", i), f"columnar[{i}]: {e}"))
        raise_all(errors)
        return cls(shape.columnar)

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        # Copy-on-write along each path: containers off the paths are shared, never changed.
        for path in self.paths:
            doc = self._at(doc, path, 0)
        return doc

    def _at(self, doc: Any, path: tuple[str, ...], i: int) -> Any:
        if i == len(path):
            return self._columns(doc) if isinstance(doc, list) else doc
        if isinstance(doc, dict):
            key = path[i]
            if key not in doc:
                return doc
            old = doc[key]
            new = self._at(old, path, i + 1)
            if new is old:
                return doc
            out = dict(doc)
            out[key] = new
            return out
        if isinstance(doc, list):
            items = [self._at(v, path, i) if isinstance(v, dict) else v for v in doc]
            if all(a is b for a, b in zip(items, doc, strict=True)):
                return doc
            return items
        return doc

    def _columns(self, rows: list[Any]) -> Any:
        if len(rows) < self.min_rows:
            return rows
        for r in rows:
            if not isinstance(r, dict):
                return rows
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return {KEYS: keys, DATA: [[r.get(k) for k in keys] for r in rows]}

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset()
