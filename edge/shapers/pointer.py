"""Reading a value at a key path (`("items", "0", "id")`) in a parsed JSON document."""

from __future__ import annotations

from typing import Any


def lookup(doc: Any, keys: tuple[str, ...]) -> Any:
    """The value at `keys` (digits index lists), or None when the path isn't there."""
    for key in keys:
        if isinstance(doc, dict):
            doc = doc.get(key)
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return None
    return doc
