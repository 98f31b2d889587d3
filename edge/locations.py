"""`Location` and `Content-Location` from a backend, turned into the edge's own paths.

A backend names what it created by its own address and paths (`/claims/CLM-1`, or
`http://claims.internal:8001/claims/CLM-1`); an app can only reach it through the edge's
routes (`/api/v1/claims/CLM-1`). The value is matched against the source paths of the
service's GET routes and rebuilt from the matching route's template, with the query and
fragment kept, as a path-absolute reference the client resolves against the edge's own
address (RFC 9110 §10.2.2). A value that points at another host, or at no GET route,
passes unchanged: the edge rewrites what it knows and guesses at nothing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .routing import (
    BadPath,
    PathBuilder,
    RouteTable,
    Template,
    TemplateError,
    parse_template,
    split_path,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
HEADERS = ("Location", "Content-Location")


class LocationRewriter:
    """One service's paths → the edge routes that read them."""

    def __init__(self, base_url: str) -> None:
        base = urlsplit(base_url)
        self.origin = (base.scheme, base.hostname, base.port or _DEFAULT_PORTS.get(base.scheme))
        self.base_path = base.path.rstrip("/")
        self.table: RouteTable[PathBuilder] = RouteTable()
        self.routes = 0

    def add(self, source_path: str, edge_template: Template) -> None:
        """A GET route reading `source_path` from this service; the first one wins."""
        builder = PathBuilder.compile(source_path)
        if builder.refs:
            return  # reads another source's body: can't be matched back
        try:
            template = parse_template(source_path.partition("?")[0])
        except TemplateError:
            return
        if set(template.params) != set(edge_template.params):
            return  # one path's parameters are not the other's: no way back
        if self.table.find("GET", template) is None:
            self.table.add("GET", template, PathBuilder.compile(edge_template.text))
            self.routes += 1

    def __call__(self, value: str) -> str:
        try:
            url = urlsplit(value)
            if url.scheme or url.netloc:
                port = url.port or _DEFAULT_PORTS.get(url.scheme)
                if (url.scheme, url.hostname, port) != self.origin:
                    return value
            elif not url.path.startswith("/"):
                return value  # relative to the upstream request's path: left as sent
            path = url.path
            if self.base_path:
                if not path.startswith(self.base_path + "/"):
                    return value
                path = path[len(self.base_path):]
            match = self.table.match("GET", split_path(path))
        except (ValueError, BadPath):
            return value
        if match.route is None:
            return value
        out = match.route.build(match.params)
        if url.query:
            out += "?" + url.query
        if url.fragment:
            out += "#" + url.fragment
        return out
