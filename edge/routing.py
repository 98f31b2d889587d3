"""Path templates and the route table.

A template is a list of ``/``-separated segments. A segment is a literal (``claims``), a
parameter (``{member_id}``), a parameter with a literal prefix/suffix (``{photo}.jpg``), or,
as the last segment only, a tail (``{rest...}``) that matches one or more segments.

Matching prefers, at every depth, literal over affixed over plain parameter over tail, so
the most specific template wins. Values are percent-decoded exactly once, then checked:
no ``/`` (an encoded ``%2F`` included), no ``.``/``..``, no control characters. That is
what keeps a client from steering the edge to an upstream path outside the template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, unquote

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}")
_BAD_VALUE = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_PARAM_LENGTH = 256
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

T = TypeVar("T")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Segment:
    kind: str  # "lit" | "param" | "affix" | "tail"
    text: str = ""  # literal text
    name: str = ""  # parameter name
    prefix: str = ""
    suffix: str = ""

    @property
    def shape(self) -> tuple[str, str, str, str]:
        """What two templates must share to be the same match (param names don't count)."""
        return (self.kind, self.text, self.prefix, self.suffix)


@dataclass(frozen=True)
class Template:
    text: str
    segments: tuple[Segment, ...]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments if s.kind != "lit")

    @property
    def shape(self) -> tuple[tuple[str, str, str, str], ...]:
        return tuple(s.shape for s in self.segments)


def parse_template(text: str) -> Template:
    if not text.startswith("/"):
        raise TemplateError(f"path template must start with '/', got {text!r}")
    if "?" in text or "#" in text:
        raise TemplateError("path template must not contain a query or fragment")
    parts = text[1:].split("/") if text != "/" else []
    segments: list[Segment] = []
    seen: set[str] = set()
    for i, part in enumerate(parts):
        if part == "" and i != len(parts) - 1:
            raise TemplateError(f"empty segment in path template {text!r}")
        params = list(_PARAM.finditer(part))
        if not params:
            if "{" in part or "}" in part:
                raise TemplateError(
                    f"bad parameter in segment {part!r}: expected '{{name}}' with name "
                    "made of letters, digits and '_'"
                )
            if part in (".", ".."):
                raise TemplateError("path template must not contain '.' or '..' segments")
            segments.append(Segment("lit", text=part))
            continue
        if len(params) > 1:
            raise TemplateError(f"segment {part!r} has more than one parameter")
        m = params[0]
        name, tail = m.group(1), bool(m.group(2))
        if name in seen:
            raise TemplateError(f"parameter '{name}' appears twice in {text!r}")
        seen.add(name)
        prefix, suffix = part[: m.start()], part[m.end():]
        if "{" in prefix + suffix or "}" in prefix + suffix:
            raise TemplateError(f"bad parameter in segment {part!r}")
        if tail:
            if prefix or suffix or i != len(parts) - 1:
                raise TemplateError(f"'{{{name}...}}' must be a whole, last segment")
            segments.append(Segment("tail", name=name))
        elif prefix or suffix:
            segments.append(Segment("affix", name=name, prefix=prefix, suffix=suffix))
        else:
            segments.append(Segment("param", name=name))
    return Template(text, tuple(segments))


class BadPath(ValueError):
    """The request path can't be safely matched (bad encoding, traversal, too long)."""


def split_path(raw_path: str) -> list[str]:
    """Raw (still percent-encoded) path → decoded segments, refusing what is unsafe."""
    if not raw_path.startswith("/"):
        raise BadPath("path must start with '/'")
    raw = raw_path[1:].split("/") if raw_path != "/" else []
    out = []
    for seg in raw:
        value = unquote(seg, errors="strict") if "%" in seg else seg
        if value in (".", "..") or _BAD_VALUE.search(value):
            raise BadPath(f"path segment {seg!r} is not allowed")
        out.append(value)
    return out


@dataclass
class _Node(Generic[T]):
    # Parameter *names* live with each route, not in the tree: two routes may share a
    # node under different names (`/o/{order_id}` and `/o/{id}/items`).
    lit: dict[str, _Node[T]] = field(default_factory=dict)
    affix: list[tuple[Segment, _Node[T]]] = field(default_factory=list)
    param: _Node[T] | None = None
    tail: dict[str, tuple[T, tuple[str, ...]]] = field(default_factory=dict)
    routes: dict[str, tuple[T, tuple[str, ...]]] = field(default_factory=dict)


@dataclass(slots=True)
class Match(Generic[T]):
    route: T | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()  # set when the path matched but not the method


def _safe_value(value: str) -> bool:
    return value not in ("", ".", "..")


# never answered by a `* /path` route: a tunnel, and a method that echoes the request
# (credentials included) back to a script (cross-site tracing)
NEVER_ANY = frozenset({"CONNECT", "TRACE"})


class RouteTable(Generic[T]):
    """Method + template → value. ``add`` raises on a collision; ``match`` never raises."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._owners: dict[tuple[str, Any], T] = {}

    def find(self, method: str, template: Template) -> T | None:
        return self._owners.get((method, template.shape))

    def add(self, method: str, template: Template, value: T) -> None:
        key = (method, template.shape)
        if key in self._owners:
            raise KeyError(key)
        self._owners[key] = value
        entry = (value, template.params)
        node = self._root
        for seg in template.segments:
            if seg.kind == "lit":
                node = node.lit.setdefault(seg.text, _Node())
            elif seg.kind == "affix":
                for other, child in node.affix:
                    if other.shape == seg.shape:
                        node = child
                        break
                else:
                    child = _Node()
                    node.affix.append((seg, child))
                    # longer affixes first: "{id}.thumb.jpg" before "{id}.jpg"
                    node.affix.sort(key=lambda a: -len(a[0].prefix + a[0].suffix))
                    node = child
            elif seg.kind == "param":
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node.tail[method] = entry
                return
        node.routes[method] = entry

    def match(self, method: str, segments: list[str]) -> Match[T]:
        values: list[str] = []
        allowed: set[str] = set()
        lookup = "GET" if method == "HEAD" else method
        star = "*" if method not in NEVER_ANY else ""
        found = self._walk(self._root, segments, 0, method, lookup, star, values, allowed)
        if found is not None:
            route, names = found
            return Match(route, dict(zip(names, values, strict=True)))
        return Match(None, {}, tuple(sorted(allowed)))

    def _walk(self, node: _Node[T], segs: list[str], i: int, method: str, lookup: str,
              star: str, values: list[str], allowed: set[str]
              ) -> tuple[T, tuple[str, ...]] | None:
        if i == len(segs):
            routes = node.routes
            entry = routes.get(method) or routes.get(lookup) or routes.get(star)
            if entry is None and routes:
                allowed.update(node.routes)
            return entry
        seg = segs[i]
        if len(seg) > MAX_PARAM_LENGTH:
            return None
        child = node.lit.get(seg)
        if child is not None:
            found = self._walk(child, segs, i + 1, method, lookup, star, values, allowed)
            if found is not None:
                return found
        for aff, child in node.affix:
            if (len(seg) > len(aff.prefix) + len(aff.suffix) and seg.startswith(aff.prefix)
                    and seg.endswith(aff.suffix)):
                value = seg[len(aff.prefix): len(seg) - len(aff.suffix)]
                if not _safe_value(value):
                    continue
                values.append(value)
                found = self._walk(child, segs, i + 1, method, lookup, star, values, allowed)
                if found is not None:
                    return found
                values.pop()
        if node.param is not None and seg:
            values.append(seg)
            found = self._walk(node.param, segs, i + 1, method, lookup, star, values, allowed)
            if found is not None:
                return found
            values.pop()
        if node.tail and all(segs[i:]):
            entry = node.tail.get(method) or node.tail.get(lookup) or node.tail.get(star)
            if entry is not None:
                values.append("/".join(segs[i:]))
                return entry
            allowed.update(node.tail)
        return None


# Characters left as they are in an upstream path segment (RFC 3986 pchar minus '%').
PCHAR_SAFE = "-._~!$&'()*+,;=:@"
QUERY_SAFE = "-._~!$'()*,;:@/"  # never '&', '=', '+', '#', '%' inside a value

# In a source path: `{name}`, `{name...}` (a tail), or `{source.a.0.b}` (a value taken from
# another source's body, in routes with several `sources`).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.|(?:\.[A-Za-z0-9_-]+)*)\}")

Resolver = Callable[[str, tuple[str, ...]], str]


@dataclass(frozen=True, slots=True)
class _Part:
    text: str  # literal text, or the placeholder's name
    kind: str  # "lit" | "param" | "tail" | "ref"
    in_query: bool = False
    path: tuple[str, ...] = ()  # for "ref": the keys into the other source's body


@dataclass(frozen=True)
class PathBuilder:
    """A source path template (``/claims?member_id={member_id}``) compiled once."""

    parts: tuple[_Part, ...]

    @classmethod
    def compile(cls, text: str) -> PathBuilder:
        parts: list[_Part] = []
        pos = 0
        qmark = text.find("?")
        for m in PLACEHOLDER.finditer(text):
            if m.start() > pos:
                parts.append(_Part(text[pos: m.start()], "lit"))
            in_query = qmark != -1 and m.start() > qmark
            suffix = m.group(2)
            if suffix == "...":
                parts.append(_Part(m.group(1), "tail", in_query))
            elif suffix:
                parts.append(_Part(m.group(1), "ref", in_query, tuple(suffix[1:].split("."))))
            else:
                parts.append(_Part(m.group(1), "param", in_query))
            pos = m.end()
        if pos < len(text):
            parts.append(_Part(text[pos:], "lit"))
        return cls(tuple(parts))

    @property
    def params(self) -> tuple[str, ...]:
        """Names used as `{name}` or `{name...}`."""
        return tuple(p.text for p in self.parts if p.kind in ("param", "tail"))

    @property
    def refs(self) -> tuple[str, ...]:
        """Sources whose body a `{source.key}` placeholder reads."""
        return tuple(p.text for p in self.parts if p.kind == "ref")

    def build(self, params: Mapping[str, str], resolve: Resolver | None = None) -> str:
        """The path with every placeholder encoded so it can't leave its position.

        `resolve(name, keys)` supplies `{source.key}` values, and `{name}` values that
        are not route parameters (another source's whole body).
        """
        out = []
        for part in self.parts:
            if part.kind == "lit":
                out.append(part.text)
                continue
            if part.kind == "ref" or (part.text not in params and resolve is not None):
                assert resolve is not None
                value = resolve(part.text, part.path)
            else:
                value = params[part.text]
            if part.in_query:
                out.append(quote(value, safe=QUERY_SAFE))
            elif part.kind == "tail":
                # a tail keeps its '/' separators; each segment was checked by split_path
                out.append("/".join(quote(s, safe=PCHAR_SAFE) for s in value.split("/")))
            else:
                out.append(quote(value, safe=PCHAR_SAFE))
        return "".join(out)
