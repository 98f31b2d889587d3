"""edge.shapers.keymap: object keys renamed through a named edge.yaml table, at any depth."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edge.config.models import EdgeFile, Shape
from edge.context import DeviceProfile, RequestContext
from edge.errors import PolicyError
from edge.inputs import Input
from edge.shapers import SHAPERS
from edge.shapers.keymap import KeyMap

TABLE = {"claim_number": "cn", "claim_status": "cs", "provider": "p", "name": "n"}
EDGE = EdgeFile.model_validate({"keymaps": {"claims-v1": TABLE, "members-v2": {"id": "i"}}})


def ctx(**kw: Any) -> RequestContext:
    return RequestContext(request_id="t", route_name="r", params={},
                          device=DeviceProfile("phone", "fast"), client_ip="127.0.0.1", **kw)


def build(block: dict[str, Any], edge: EdgeFile = EDGE) -> KeyMap | None:
    return SHAPERS["keymap"].from_policy(Shape.model_validate(block), edge, ())


def claims() -> KeyMap:
    shaper = build({"keymap": "claims-v1"})
    assert isinstance(shaper, KeyMap)
    return shaper


CASES: list[tuple[str, Any, Any]] = [
    ("top level", {"claim_number": "C1", "claim_status": "open"},
     {"cn": "C1", "cs": "open"}),
    ("keys not in the table kept", {"claim_number": "C1", "total": 3, "id": 7},
     {"cn": "C1", "total": 3, "id": 7}),
    ("nested objects", {"provider": {"name": "Dr A", "npi": "1"}},
     {"p": {"n": "Dr A", "npi": "1"}}),
    ("deep", {"a": {"b": {"c": {"provider": {"name": "x"}}}}},
     {"a": {"b": {"c": {"p": {"n": "x"}}}}}),
    ("lists of objects", {"items": [{"claim_number": "C1"}, {"claim_number": "C2"}]},
     {"items": [{"cn": "C1"}, {"cn": "C2"}]}),
    ("top-level list", [{"name": "a"}, {"name": "b", "x": 1}],
     [{"n": "a"}, {"n": "b", "x": 1}]),
    ("lists of lists", {"m": [[{"name": "a"}], [[{"provider": 1}]]]},
     {"m": [[{"n": "a"}], [[{"p": 1}]]]}),
    ("mixed list keeps scalars and positions", [1, "name", None, {"name": 2}, True],
     [1, "name", None, {"n": 2}, True]),
    ("values are never renamed", {"status": "claim_number", "tags": ["name", "provider"]},
     {"status": "claim_number", "tags": ["name", "provider"]}),
    ("renamed key's value still recursed",
     {"provider": [{"name": "a", "provider": {"name": "b"}}]},
     {"p": [{"n": "a", "p": {"n": "b"}}]}),
    ("order of keys kept", {"z": 1, "name": 2, "a": 3}, {"z": 1, "n": 2, "a": 3}),
    ("empty containers", {"provider": {}, "name": []}, {"p": {}, "n": []}),
    ("a short name is not renamed again", {"cn": 1, "n": 2}, {"cn": 1, "n": 2}),
    ("scalar document", "claim_number", "claim_number"),
    ("null document", None, None),
    ("empty object", {}, {}),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_apply(doc: Any, expected: Any) -> None:
    before = copy.deepcopy(doc)
    out = claims().apply(doc, ctx())
    assert out == expected
    if isinstance(out, dict):
        assert list(out) == list(expected)  # key order kept
    assert doc == before  # input not mutated


def test_a_key_equal_to_a_short_name_collides_and_the_later_one_wins() -> None:
    # The table only forbids collisions inside itself (config/checks.py); a document that
    # already carries a short name loses one of the two values, silently.
    doc = {"claim_number": "C1", "cn": "other"}
    assert claims().apply(doc, ctx()) == {"cn": "other"}
    assert claims().apply({"cn": "other", "claim_number": "C1"}, ctx()) == {"cn": "C1"}


@pytest.mark.parametrize("doc", [
    {"claim_number": "C1", "provider": {"name": "x"}},
    [{"name": "a"}],
    "scalar",
])
def test_keymap_off_returns_the_document_untouched(doc: Any) -> None:
    assert claims().apply(doc, ctx(keymap_off=True)) is doc


@pytest.mark.parametrize(("name", "keymap_off", "header"), [
    ("claims-v1", False, "claims-v1"),
    ("claims-v1", True, "none"),
    ("members-v2", False, "members-v2"),
    ("members-v2", True, "none"),
])
def test_header_names_the_table_or_none(name: str, keymap_off: bool, header: str) -> None:
    shaper = build({"keymap": name})
    assert shaper is not None
    assert shaper.headers(ctx(keymap_off=keymap_off)) == {"X-Edge-Keymap": header}


def test_the_table_is_the_one_named() -> None:
    shaper = build({"keymap": "members-v2"})
    assert shaper is not None
    assert shaper.apply({"id": 1, "claim_number": 2}, ctx()) == {"i": 1, "claim_number": 2}


def test_the_table_is_copied_at_build() -> None:
    table = {"a": "b"}
    shaper = KeyMap("t-v1", table)
    table["c"] = "d"
    assert shaper.apply({"a": 1, "c": 2}, ctx()) == {"b": 1, "c": 2}


@pytest.mark.parametrize("block", [{}, {"keymap": None}, {"prune": True}])
def test_absent_block_builds_nothing(block: dict[str, Any]) -> None:
    assert build(block) is None


@pytest.mark.parametrize(("block", "edge", "message"), [
    ({"keymap": "claims-v9"}, EDGE,
     "keymap: unknown keymap 'claims-v9' (keymaps: claims-v1, members-v2)"),
    ({"keymap": "Claims-v1"}, EDGE,
     "keymap: unknown keymap 'Claims-v1' (keymaps: claims-v1, members-v2)"),
    ({"keymap": "claims-v1 "}, EDGE,
     "keymap: unknown keymap 'claims-v1 ' (keymaps: claims-v1, members-v2)"),
    ({"keymap": ""}, EDGE, "keymap: unknown keymap '' (keymaps: claims-v1, members-v2)"),
    ({"keymap": "none"}, EDGE,
     "keymap: unknown keymap 'none' (keymaps: claims-v1, members-v2)"),
    ({"keymap": "Bad Name"}, EDGE,
     "keymap: unknown keymap 'Bad Name' (keymaps: claims-v1, members-v2)"),
    ({"keymap": "claims-v1"}, EdgeFile.model_validate({}),
     "keymap: unknown keymap 'claims-v1' (keymaps: none defined)"),
    ({"keymap": "a"}, EdgeFile.model_validate({"keymaps": {"z-v1": {}, "b-v1": {}}}),
     "keymap: unknown keymap 'a' (keymaps: b-v1, z-v1)"),
])
def test_policy_errors(block: dict[str, Any], edge: EdgeFile, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        build(block, edge)
    assert (err.value.path, err.value.key) == (("keymap",), False)
    assert err.value.message == str(err.value) == message


def test_name_syntax_is_left_to_the_config_checks() -> None:
    # A table whose name edge.yaml's checks refuse (config/checks.py) still builds here.
    edge = EdgeFile.model_validate({"keymaps": {"Bad Name": {"a": "b"}}})
    shaper = build({"keymap": "Bad Name"}, edge)
    assert shaper is not None and shaper.apply({"a": 1}, ctx()) == {"b": 1}


def test_shaper_protocol() -> None:
    shaper = claims()
    assert shaper.name == "keymap"
    assert shaper.table_name == "claims-v1"
    assert shaper.reads == frozenset({Input.KEYMAP})
