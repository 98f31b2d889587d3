"""YAML → plain Python data, remembering where every key and value came from.

PyYAML's composer gives us nodes with marks; we build dicts/lists ourselves so that
duplicate keys are errors (PyYAML silently keeps the last one) and so that a validator's
error path (``("routes", 0, "source", "service")``) can be turned back into
``file:line:col``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false. In YAML 1.1 `off`, `no`, `on`
    and `yes` are booleans too, which would turn `jwt: off` or `country: no` into False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


class YamlError(Exception):
    """A syntax or structure problem at a position in a file."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{col}: {message}")
        self.file, self.line, self.col, self.message = file, line, col, message


@dataclass
class Positions:
    """Where each value (and each mapping key) of a loaded document sits in its file."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def of(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Best position for ``path``: the exact node, else its nearest ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if not key and p in self.keys:
                return self.keys[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def where(self, path: Path, *, key: bool = False) -> str:
        line, col = self.of(path, key=key)
        return f"{self.file}:{line}:{col}"


def dotted(path: Path) -> str:
    """A path as messages spell it: ``("routes", 0, "source")`` → ``routes[0].source``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document; returns (data, positions). Raises YamlError."""
    pos = Positions(file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"invalid YAML: {e.problem or e}"
        start = e.context_mark
        if e.problem and e.context and e.context.startswith("while scanning") \
                and start is not None and start.line + 1 != line:
            # where an unclosed quote or bracket began, not only where it ran out
            message += f" ({e.context} at line {start.line + 1}, column {start.column + 1})"
        raise YamlError(file, line, col, message) from None
    finally:
        loader.dispose()
    if node is None:
        return None, pos
    return _build(node, (), pos, loader), pos


def _build(node: yaml.Node, path: Path, pos: Positions, loader: _Loader) -> Any:
    pos.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<), putting them first
        merged = len(node.value) - explicit
        out: dict[str, Any] = {}
        from_merge: set[str] = set()
        for i, (key_node, value_node) in enumerate(node.value):
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(pos.file, *where, "mapping keys must be plain strings")
            key = str(loader.construct_object(key_node))
            if key in out and key not in from_merge:
                first = pos.keys[(*path, key)]
                raise YamlError(
                    pos.file, *where,
                    f"duplicate key '{key}' (first defined at line {first[0]})",
                )
            if i < merged:
                from_merge.add(key)  # an explicit key may override it
            else:
                from_merge.discard(key)
            pos.keys[(*path, key)] = where
            out[key] = _build(value_node, (*path, key), pos, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), pos, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
