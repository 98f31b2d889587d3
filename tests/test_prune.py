"""edge.shapers.prune: null, empty-string and empty-collection values dropped, at any depth."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from edge.config.models import EdgeFile, Shape
from edge.context import DeviceProfile, RequestContext
from edge.shapers import SHAPERS
from edge.shapers.prune import ALL_KINDS, Prune

from .conftest import types_of

CTX = RequestContext(request_id="t", route_name="r", params={},
                     device=DeviceProfile("phone", "fast"), client_ip="127.0.0.1")
EDGE = EdgeFile.model_validate({})


def build(prune: Any) -> Prune | None:
    return SHAPERS["prune"].from_policy(Shape.model_validate({"prune": prune}), EDGE, ())


# one of each empty kind, plus values that look empty and are not
MIXED = {"n": None, "s": "", "l": [], "o": {}, "zero": 0, "f": 0.0, "no": False,
         "sp": " ", "zs": "0", "x": 1}
KEPT = {"zero": 0, "f": 0.0, "no": False, "sp": " ", "zs": "0", "x": 1}

CASES: list[tuple[str, Any, Any, Any]] = [
    ("null", ["null"], MIXED, {**KEPT, "s": "", "l": [], "o": {}}),
    ("empty_string", ["empty_string"], MIXED, {**KEPT, "n": None, "l": [], "o": {}}),
    ("empty_list", ["empty_list"], MIXED, {**KEPT, "n": None, "s": "", "o": {}}),
    ("empty_object", ["empty_object"], MIXED, {**KEPT, "n": None, "s": "", "l": []}),
    ("two kinds", ["null", "empty_list"], MIXED, {**KEPT, "s": "", "o": {}}),
    ("every kind listed", list(ALL_KINDS), MIXED, KEPT),
    ("true is every kind", True, MIXED, KEPT),
    ("kind listed twice", ["null", "null"], {"a": None, "b": ""}, {"b": ""}),
    ("key order kept", True, {"c": 1, "b": None, "a": 2}, {"c": 1, "a": 2}),
    ("nested", ["null"], {"a": {"b": None, "c": 1}, "d": {"e": {"f": None}}},
     {"a": {"c": 1}, "d": {"e": {}}}),
    ("a parent emptied by pruning goes too", ["null", "empty_object"],
     {"a": {"b": None}, "c": 1}, {"c": 1}),
    ("emptied parents go, all the way up", True,
     {"a": {"b": {"c": {"d": None, "e": ""}}}, "keep": {"x": {"y": []}, "z": 1}},
     {"keep": {"z": 1}}),
    ("an emptied parent stays when its kind is not pruned", ["null"],
     {"a": {"b": None}, "l": [None]}, {"a": {}, "l": [None]}),
    ("an emptied object stays under empty_list alone", ["null", "empty_list"],
     {"a": {"b": None}}, {"a": {}}),
    ("list elements keep their positions", True,
     {"row": [1, None, "", 2]}, {"row": [1, None, "", 2]}),
    ("empty elements in a list are kept", True,
     {"l": [[], {}, None]}, {"l": [[], {}, None]}),
    ("objects in lists are pruned inside", True,
     {"items": [{"id": 1, "note": None}, {"id": 2, "tags": []}]},
     {"items": [{"id": 1}, {"id": 2}]}),
    ("an object emptied inside a list stays in it", True,
     {"items": [{"note": None}, {"id": 2}]}, {"items": [{}, {"id": 2}]}),
    ("lists of lists", True, {"m": [[{"a": None, "b": [[{}]]}]]},
     {"m": [[{"b": [[{}]]}]]}),
    ("a list is not emptied by pruning inside it", True,
     {"l": [{"a": None}]}, {"l": [{}]}),
    ("top-level list", True, [None, "", {"a": None, "b": 1}, []],
     [None, "", {"b": 1}, []]),
    ("top-level object may end empty", True, {"a": None, "b": {"c": ""}}, {}),
    ("empty document", True, {}, {}),
    ("null document", True, None, None),
    ("scalar document", True, "", ""),
    ("nothing to prune", True, {"a": [1, {"b": "x"}]}, {"a": [1, {"b": "x"}]}),
]


@pytest.mark.parametrize(("policy", "doc", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_apply(policy: Any, doc: Any, expected: Any) -> None:
    shaper = build(policy)
    assert shaper is not None
    before = copy.deepcopy(doc)
    out = shaper.apply(doc, CTX)
    assert out == expected
    assert types_of(out) == types_of(expected)  # False stays False, 0.0 stays a float
    assert doc == before  # input not mutated



@pytest.mark.parametrize(("policy", "kinds"), [
    (True, set(ALL_KINDS)),
    (["null"], {"null"}),
    (["empty_object", "empty_string"], {"empty_object", "empty_string"}),
])
def test_kinds(policy: Any, kinds: set[str]) -> None:
    shaper = build(policy)
    assert shaper is not None and shaper.kinds == kinds


def test_all_kinds_are_the_config_s() -> None:
    assert ALL_KINDS == ("null", "empty_string", "empty_list", "empty_object")


@pytest.mark.parametrize("policy", [False, []])
def test_off_builds_nothing(policy: Any) -> None:
    assert build(policy) is None


def test_absent_block_builds_nothing() -> None:
    assert SHAPERS["prune"].from_policy(Shape.model_validate({}), EDGE, ()) is None


@pytest.mark.parametrize("policy", [["nulls"], ["empty"], "null", [None], {"null": True}])
def test_unknown_kinds_are_refused_by_the_model(policy: Any) -> None:
    # prune has no checks of its own: the model's PruneKind refuses anything else
    with pytest.raises(ValidationError):
        Shape.model_validate({"prune": policy})


def test_shaper_protocol() -> None:
    shaper = build(True)
    assert shaper is not None
    assert shaper.name == "prune"
    assert shaper.headers(CTX) == {}
    assert shaper.reads == frozenset()
