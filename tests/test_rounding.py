"""edge.shapers.rounding: floats to decimals, ISO-8601 timestamps to a precision."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from edge.context import DeviceProfile, RequestContext
from edge.shapers.rounding import Rounding

from .conftest import types_of

CTX = RequestContext(request_id="t", route_name="r", params={},
                     device=DeviceProfile("phone", "fast"), client_ip="127.0.0.1")

TS = "2026-03-14T09:21:07.123456+07:00"

CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("floats", {"floats": 2},
     {"lat": -5.151634, "n": 3, "ok": True, "s": "1.2345", "z": None},
     {"lat": -5.15, "n": 3, "ok": True, "s": "1.2345", "z": None}),
    ("floats 0 stay floats", {"floats": 0}, {"a": 2.7, "b": 1.0}, {"a": 3.0, "b": 1.0}),
    ("bools are not floats", {"floats": 0}, [True, False, 1, 1.4], [True, False, 1, 1.0]),
    ("nested lists", {"floats": 1}, {"m": [[1.26, [2.34]], {"x": 3.15}]},
     {"m": [[1.3, [2.3]], {"x": 3.1}]}),
    ("scalar document", {"floats": 1}, 1.26, 1.3),
    ("timestamp second", {"timestamps": "second"},
     {"a": TS, "b": "2026-03-14T09:21:07Z", "c": "2026-03-14 09:21:07.5"},
     {"a": "2026-03-14T09:21:07+07:00", "b": "2026-03-14T09:21:07Z",
      "c": "2026-03-14 09:21:07"}),
    ("timestamp minute", {"timestamps": "minute"},
     {"a": TS, "b": "2026-03-14T09:21:07Z", "c": "2026-03-14 09:21:07"},
     {"a": "2026-03-14T09:21+07:00", "b": "2026-03-14T09:21Z", "c": "2026-03-14 09:21"}),
    ("timestamp date", {"timestamps": "date"},
     {"a": TS, "b": "2026-03-14T09:21:07Z", "c": "2026-03-14 09:21:07"},
     {"a": "2026-03-14", "b": "2026-03-14", "c": "2026-03-14"}),
    ("other zone forms", {"timestamps": "minute"},
     ["2026-03-14T09:21:07,5-0300", "2026-03-14T09:21:07+07"],
     ["2026-03-14T09:21-0300", "2026-03-14T09:21+07"]),
    ("minute precision already", {"timestamps": "second"},
     ["2026-03-14T09:21Z"], ["2026-03-14T09:21Z"]),
    ("not timestamps left alone", {"timestamps": "date"},
     ["2026-03-14", "2026-03-14T09", "2026-03-14T09:21:07 and more", "x" * 40,
      "2026-03-14X09:21:07Z", "2026-13-14T09:21:07Z", "2026-03-14T09:21.5Z", "", "abc", 20260314],
     ["2026-03-14", "2026-03-14T09", "2026-03-14T09:21:07 and more", "x" * 40,
      "2026-03-14X09:21:07Z", "2026-13-14T09:21:07Z", "2026-03-14T09:21.5Z", "", "abc", 20260314]),
    ("timestamps only: floats untouched", {"timestamps": "date"},
     {"a": 1.23456, "t": TS}, {"a": 1.23456, "t": "2026-03-14"}),
    ("floats only: timestamps untouched", {"floats": 1},
     {"a": 1.23456, "t": TS}, {"a": 1.2, "t": TS}),
    ("keys: only under those names, at any depth", {"floats": 1, "keys": ["lat", "lng"]},
     {"lat": 1.26, "amount": 2.26, "p": {"loc": {"lat": 3.33, "lng": 4.44, "alt": 5.55}},
      "pts": [{"lat": 6.66}, 7.77]},
     {"lat": 1.3, "amount": 2.26, "p": {"loc": {"lat": 3.3, "lng": 4.4, "alt": 5.55}},
      "pts": [{"lat": 6.7}, 7.77]}),
    ("keys: everything below a named key", {"floats": 1, "timestamps": "date",
                                            "keys": ["geo", "times"]},
     {"geo": {"lat": 1.26, "pts": [[2.26, 3.36]]}, "times": [TS], "other": [1.26, TS]},
     {"geo": {"lat": 1.3, "pts": [[2.3, 3.4]]}, "times": ["2026-03-14"],
      "other": [1.26, TS]}),
    ("keys do not match list positions or values", {"floats": 1, "keys": ["x"]},
     ["x", 1.26, {"y": "x", "z": 2.26}], ["x", 1.26, {"y": "x", "z": 2.26}]),
    ("nan and inf survive", {"floats": 2}, [math.inf, -math.inf], [math.inf, -math.inf]),
]


@pytest.mark.parametrize(("policy", "doc", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_apply(policy: dict[str, Any], doc: Any, expected: Any) -> None:
    before = copy.deepcopy(doc)
    out = Rounding(**policy).apply(doc, CTX)
    assert out == expected
    assert types_of(out) == types_of(expected)  # 1.0 stays a float, True stays a bool
    assert doc == before  # input not mutated



def test_nan_stays_nan() -> None:
    assert math.isnan(Rounding(floats=1).apply([math.nan], CTX)[0])


@pytest.mark.parametrize(("policy", "message"), [
    ({"floats": -1}, "round.floats: expected a number of decimals >= 0, got -1"),
    ({"floats": 1.5}, "round.floats: expected a number of decimals >= 0, got 1.5"),
    ({"floats": True}, "round.floats: expected a number of decimals >= 0, got True"),
    ({"timestamps": "hour"},
     "round.timestamps: expected one of 'date', 'minute', 'second', got 'hour'"),
    ({}, "round: set floats, timestamps or both"),
    ({"floats": 2, "keys": "lat"}, "round.keys: expected a list of key names, got 'lat'"),
    ({"floats": 2, "keys": []}, "round.keys: expected at least one key name"),
])
def test_policy_errors(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Rounding(**policy)
    assert str(err.value) == message


def test_shaper_protocol() -> None:
    shaper = Rounding(floats=2)
    assert shaper.name == "round"
    assert shaper.headers(CTX) == {}
    assert shaper.reads == frozenset()
