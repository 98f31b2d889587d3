"""Rounding: cut floats to a number of decimals and ISO-8601 timestamps to a precision.

`floats: 2` rounds every float with Python's round() (ints and bools are left alone; a
float stays a float, so 1.0 stays 1.0). `timestamps` is one of "date", "minute",
"second": "2026-03-14T09:21:07.123+07:00" becomes "2026-03-14", "2026-03-14T09:21+07:00"
or "2026-03-14T09:21:07+07:00". Only strings that are a whole date-and-time are touched,
never plain dates or other text; the zone designator is kept (dropped for "date"). With
`keys`, only values under those key names (at any depth, including everything nested
below them) are changed; otherwise the whole document is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..config.models import EdgeFile, Shape
from ..context import RequestContext
from ..errors import PolicyError
from ..inputs import Input

TIMESTAMP_MODES = ("date", "minute", "second")

_TIMESTAMP = re.compile(
    r"(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]))"  # 1 date
    r"([Tt ](?:[01]\d|2[0-3]):[0-5]\d)"  # 2 separator, hours and minutes
    r"(?:(:(?:[0-5]\d|60))(?:[.,]\d+)?)?"  # 3 seconds (60: leap), then any fraction
    r"([Zz]|[+-][0-2]\d(?::?[0-5]\d)?)?"  # 4 zone
)
_SEP = frozenset("Tt ")


class Rounding:
    name = "round"

    def __init__(self, floats: int | None = None, timestamps: str | None = None,
                 keys: Sequence[str] | None = None) -> None:
        if floats is not None and (isinstance(floats, bool) or not isinstance(floats, int)
                                   or floats < 0):
            raise ValueError(f"round.floats: expected a number of decimals >= 0, "
                             f"got {floats!r}")
        if timestamps is not None and timestamps not in TIMESTAMP_MODES:
            raise ValueError("round.timestamps: expected one of 'date', 'minute', "
                             f"'second', got {timestamps!r}")
        if floats is None and timestamps is None:
            raise ValueError("round: set floats, timestamps or both")
        if keys is not None:
            if isinstance(keys, str):
                raise ValueError(f"round.keys: expected a list of key names, got {keys!r}")
            if not keys:
                raise ValueError("round.keys: expected at least one key name")
        self.floats = floats
        self.timestamps = timestamps
        self.keys = None if keys is None else frozenset(keys)

    @classmethod
    def from_policy(cls, shape: Shape, edge: EdgeFile, sources: tuple[str, ...]
                    ) -> Rounding | None:
        r = shape.round
        if r is None:
            return None
        try:
            return cls(r.floats, r.timestamps, r.keys)
        except ValueError as e:  # its messages already say where: `round.keys: ...`
            raise PolicyError(("round",), str(e)) from None

    def apply(self, doc: Any, ctx: RequestContext) -> Any:
        return self._walk(doc, self.keys is None)

    def _walk(self, doc: Any, on: bool) -> Any:
        if isinstance(doc, dict):
            keys = self.keys
            out = {}
            for k, v in doc.items():
                here = on or (keys is not None and k in keys)
                if isinstance(v, dict | list):
                    v = self._walk(v, here)
                elif here:
                    v = self._value(v)
                out[k] = v
            return out
        if isinstance(doc, list):
            if on:
                return [self._walk(v, True) if isinstance(v, dict | list) else self._value(v)
                        for v in doc]
            return [self._walk(v, False) if isinstance(v, dict | list) else v for v in doc]
        return self._value(doc) if on else doc

    def _value(self, v: Any) -> Any:
        if isinstance(v, float):
            return v if self.floats is None else round(v, self.floats)
        if isinstance(v, str) and self.timestamps is not None:
            return self._timestamp(v)
        return v

    def _timestamp(self, s: str) -> str:
        # Cheap shape check first: most strings fail here without touching the regex.
        if len(s) < 16 or s[4] != "-" or s[10] not in _SEP or s[13] != ":":
            return s
        m = _TIMESTAMP.fullmatch(s)
        if m is None:
            return s
        date, hm, sec, zone = m.groups()
        if self.timestamps == "date":
            return date
        if self.timestamps == "minute":
            return date + hm + (zone or "")
        return date + hm + (sec or "") + (zone or "")

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {}

    @property
    def reads(self) -> frozenset[Input]:
        return frozenset()
