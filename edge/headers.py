"""Header names and values that arrive as data (a batch item's `headers`) rather than from
an HTTP parser, so nothing has checked them yet."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_token(name: str) -> bool:
    """An RFC 9110 field name: tchar only, so no whitespace, ':' or control character."""
    return _TOKEN.fullmatch(name) is not None


def one_line(value: str) -> bool:
    """No control character but HTAB: nothing that could end the field or the head."""
    return _CONTROL.search(value) is None


def canonical(name: str) -> str:
    """The name as the most lenient upstream reads it: case and surrounding whitespace don't
    count, and `_` is `-` (CGI/WSGI, nginx with underscores_in_headers, Rails)."""
    return name.strip().lower().replace("_", "-")
