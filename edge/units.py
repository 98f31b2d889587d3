"""Human units in YAML: durations (``250ms``, ``30s``, ``10m``) and sizes (``64KiB``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
    "GB": 1000**3, "GiB": 1024**3,
}


def parse_duration(value: Any) -> float:
    """``'250ms'`` → 0.25 (seconds). Bare numbers are refused: the unit is the point."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    raise ValueError(f"expected a duration like '250ms', '30s' or '10m', got {value!r}")


def parse_size(value: Any) -> int:
    """``'64KiB'`` → 65536 (bytes); a bare integer is bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    raise ValueError(f"expected a size like '64KiB', '10MB' or a number of bytes, got {value!r}")


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds % 3600 == 0 and seconds:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _DURATION.pattern,
                    "examples": ["250ms", "30s", "10m"]}),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": _SIZE.pattern}],
                    "examples": ["64KiB", "10MB"]}),
]


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
               "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(value: Any) -> tuple[int, float]:
    """``'60/min'`` → (60, 60.0): that many requests per that many seconds."""
    if isinstance(value, str):
        m = _RATE.match(value)
        if m and int(m.group(1)) > 0:
            return int(m.group(1)), float(int(m.group(2) or 1) * _RATE_UNITS[m.group(3)])
    if isinstance(value, tuple | list) and len(value) == 2:
        return int(value[0]), float(value[1])
    raise ValueError(f"expected a rate like '60/min', '10/s' or '1000/h', got {value!r}")


def _show_rate(value: tuple[int, float]) -> str:
    count, period = value
    for unit, seconds in (("day", 86400), ("h", 3600), ("min", 60)):
        if period % seconds == 0:
            n = int(period // seconds)
            return f"{count}/{n if n > 1 else ''}{unit}"
    return f"{count}/{int(period) if period != 1 else ''}s"


Rate = Annotated[
    tuple[int, float],
    BeforeValidator(parse_rate),
    PlainSerializer(_show_rate),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d+\s*/\s*\d*\s*[a-z]+\s*$",
                    "examples": ["60/min", "10/s", "1000/h"]}),
]
