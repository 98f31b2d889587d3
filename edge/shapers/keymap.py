"""Key shortening: rename object keys through a named, versioned table, at any depth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config.models import EdgeFile, Shape
from ..context import RequestContext
from ..errors import PolicyError
from ..inputs import Input


class KeyMap:
    name = "keymap"

    def __init__(self, table_name: str, table: Mapping[str, str]) -> None:
        self.table_name = table_name
        self.table = dict(table)

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> KeyMap | None:
        name = shape.keymap
        if name is None:
            return None
        if name not in edge.keymaps:
            known = ", ".join(sorted(edge.keymaps)) or "none defined"
            raise PolicyError(("keymap",), f"keymap: unknown keymap '{name}' (keymaps: "
                              f"{known})")
        return cls(name, edge.keymaps[name])

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        if ctx.keymap_off:
            return doc
        return _rename(doc, self.table)

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {"X-Edge-Keymap": "none" if ctx.keymap_off else self.table_name}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset({Input.KEYMAP})


def _rename(doc: Any, table: dict[str, str]) -> Any:
    if isinstance(doc, dict):
        get = table.get
        return {get(k, k): _rename(v, table) if isinstance(v, dict | list) else v
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_rename(v, table) if isinstance(v, dict | list) else v for v in doc]
    return doc
