"""edge.shapers.projection: the fields language, projection and intersection."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edge.shapers.projection import (
    ALL,
    EMPTY,
    FieldsError,
    Selection,
    _intersect_cached,
    _parse_cached,
    intersect,
    parse_fields,
    project,
)

CLAIM: dict[str, Any] = {
    "id": "CLM-000086",
    "claim_number": "KLM/2026/03/000086",
    "status": "processing",
    "total_amount": 1120000,
    "approved_amount": None,
    "provider": {
        "id": "PRV-011",
        "name": "RSU Pelita",
        "location": {"city": "Makassar", "lat": -5.1516, "lng": 119.397665},
    },
    "diagnosis": {"code": "K02.9", "description": "Dental caries"},
    "items": [
        {"benefit_code": "PHA-BRD", "amount": 283000, "quantity": 3},
        {"benefit_code": "MAT-ANC", "amount": 271000, "quantity": 1},
    ],
    "codes": ["K02.9", "J06.9"],
    "pages": [[{"id": "DOC-1", "kind": "invoice"}], [], [{"id": "DOC-2", "kind": "receipt"}]],
}

# ------------------------------------------------------------------------ parse_fields

VALID = [
    ("id", "id"),
    ("status,id", "id,status"),
    ("id, status", "id,status"),
    ("id,  status,claim_number", "claim_number,id,status"),
    ("id,id", "id"),
    ("provider(name)", "provider(name)"),
    ("provider/name", "provider(name)"),
    ("provider/location/city", "provider(location(city))"),
    ("provider/location(city,lat),id", "id,provider(location(city,lat))"),
    ("provider(location/city)", "provider(location(city))"),
    ("items(amount),items(quantity)", "items(amount,quantity)"),
    ("provider/name,provider/id", "provider(id,name)"),
    ("provider,provider(name)", "provider"),
    ("provider(name),provider", "provider"),
    ("provider(location(city)),provider(location(*))", "provider(location)"),
    ("*", "*"),
    ("*,id", "*"),
    ("id,*", "*"),
    ("provider(*)", "provider"),
    ("provider/*", "provider"),
    ("items(*,amount)", "items"),
    ("*,items(amount)", "*,items(amount)"),
    ("items(amount),*,items(quantity)", "*,items(amount,quantity)"),
    ("*,items(amount),items", "*"),
    ("*,provider(*,location(city))", "*,provider(*,location(city))"),
    ("@id,$ref,claim-number,_x,X9", "$ref,@id,X9,_x,claim-number"),
    ("a/" * 15 + "a", "a(" * 15 + "a" + ")" * 15),
    ("a," * 511 + "aa", "a,aa"),  # exactly 1024 characters
]


@pytest.mark.parametrize(("text", "rendered"), VALID)
def test_parse_renders_canonically(text: str, rendered: str) -> None:
    sel = parse_fields(text)
    assert sel.render() == rendered
    assert parse_fields(rendered) == sel


INVALID = [
    ("", "fields: empty field name at position 0", 0),
    (",id", "fields: empty field name at position 0", 0),
    ("id,", "fields: empty field name at position 3", 3),
    ("id,,status", "fields: empty field name at position 3", 3),
    ("id, ", "fields: empty field name at position 4", 4),
    ("provider()", "fields: empty field name at position 9", 9),
    ("provider(", "fields: empty field name at position 9", 9),
    ("provider/", "fields: empty field name at position 9", 9),
    ("/name", "fields: empty field name at position 0", 0),
    ("provider(name", "fields: unclosed '(' opened at position 8", 8),
    ("items(provider(name)", "fields: unclosed '(' opened at position 5", 5),
    ("id)", "fields: unexpected ')' at position 2", 2),
    ("provider(name))", "fields: unexpected ')' at position 14", 14),
    ("provider(name)id", "fields: unexpected 'i' at position 14", 14),
    ("provider(name)(id)", "fields: unexpected '(' at position 14", 14),
    ("provider(name)/id", "fields: unexpected '/' at position 14", 14),
    ("*(id)", "fields: unexpected '(' at position 1", 1),
    ("*/id", "fields: unexpected '/' at position 1", 1),
    ("provider/*/name", "fields: unexpected '/' at position 10", 10),
    ("**", "fields: unexpected '*' at position 1", 1),
    ("id*", "fields: unexpected '*' at position 2", 2),
    (" id", "fields: unexpected ' ' at position 0", 0),
    ("id ,status", "fields: unexpected ' ' at position 2", 2),
    ("id status", "fields: unexpected ' ' at position 2", 2),
    ("provider( name)", "fields: unexpected ' ' at position 9", 9),
    ("id,\tstatus", "fields: unexpected '\\t' at position 3", 3),
    ("claim.number", "fields: unexpected '.' at position 5", 5),
    ("nomor_klaim_ñ", "fields: unexpected 'ñ' at position 12", 12),
    ("a" * 1025, "fields: selection is longer than 1024 characters", 1024),
    ("a/" * 16 + "a", "fields: nesting deeper than 16 levels at position 31", 31),
    ("a(" * 16 + "a" + ")" * 16, "fields: nesting deeper than 16 levels at position 31", 31),
]


@pytest.mark.parametrize(("text", "message", "position"), INVALID)
def test_parse_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(FieldsError) as info:
        parse_fields(text)
    assert str(info.value) == message
    assert info.value.position == position
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "limits", "message"),
    [
        ("id,status", {"max_length": 5}, "fields: selection is longer than 5 characters"),
        ("provider/location/city", {"max_depth": 2},
         "fields: nesting deeper than 2 levels at position 17"),
        ("provider(location(city))", {"max_depth": 2},
         "fields: nesting deeper than 2 levels at position 17"),
    ],
)
def test_parse_limits(text: str, limits: dict[str, int], message: str) -> None:
    with pytest.raises(FieldsError, match=r"^fields: ") as info:
        parse_fields(text, **limits)
    assert str(info.value) == message


def test_error_reason() -> None:
    with pytest.raises(FieldsError) as info:
        parse_fields("provider(name")
    assert info.value.reason == "unclosed '(' opened"


def test_parse_is_cached_and_bounded() -> None:
    assert parse_fields("id,provider(name)") is parse_fields("id,provider(name)")
    assert parse_fields("id", max_depth=16) is parse_fields("id")
    for i in range(1100):
        parse_fields(f"f{i}")
    info = _parse_cached.cache_info()
    assert info.maxsize == 1024
    assert info.currsize <= 1024


# ------------------------------------------------------------------------ Selection


def test_selection_value_semantics() -> None:
    a, b = parse_fields("status,id"), parse_fields("id, status")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != parse_fields("id") and a != "id,status"
    assert Selection({"id": ALL, "status": ALL}) == a
    assert Selection({"id": ALL}, star=True) == ALL
    assert Selection({"id": EMPTY}) == EMPTY
    assert a.names == frozenset({"id", "status"})
    assert ALL.is_all and not ALL.is_empty and EMPTY.is_empty and not EMPTY.is_all
    assert (ALL.render(), EMPTY.render()) == ("*", "")
    assert repr(parse_fields("provider/name")) == "Selection('provider(name)')"


def test_selection_is_immutable() -> None:
    sel = parse_fields("provider(name)")
    with pytest.raises(AttributeError):
        sel.star = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        sel.fields["id"] = ALL  # type: ignore[index]
    assert sel.render() == "provider(name)"


# ------------------------------------------------------------------------ project

PROJECTIONS: list[tuple[Any, str, Any]] = [
    (CLAIM, "id,status", {"id": "CLM-000086", "status": "processing"}),
    (CLAIM, "id,rejection_reason", {"id": "CLM-000086"}),
    (CLAIM, "approved_amount", {"approved_amount": None}),
    (CLAIM, "provider(name,location(city))",
     {"provider": {"name": "RSU Pelita", "location": {"city": "Makassar"}}}),
    (CLAIM, "provider/location/city", {"provider": {"location": {"city": "Makassar"}}}),
    (CLAIM, "provider/missing", {"provider": {}}),
    (CLAIM, "provider(*)", {"provider": CLAIM["provider"]}),
    (CLAIM, "items(amount)", {"items": [{"amount": 283000}, {"amount": 271000}]}),
    (CLAIM, "items/benefit_code,id", {"id": "CLM-000086",
                                      "items": [{"benefit_code": "PHA-BRD"},
                                                {"benefit_code": "MAT-ANC"}]}),
    (CLAIM, "pages(id)", {"pages": [[{"id": "DOC-1"}], [], [{"id": "DOC-2"}]]}),
    # a sub-selection on a scalar (or a list of scalars, or null) keeps it as it is
    (CLAIM, "status(code),total_amount/value",
     {"status": "processing", "total_amount": 1120000}),
    (CLAIM, "codes(code)", {"codes": ["K02.9", "J06.9"]}),
    (CLAIM, "approved_amount(value)", {"approved_amount": None}),
    (CLAIM, "*", CLAIM),
    (CLAIM, "*,provider(name)", {**CLAIM, "provider": {"name": "RSU Pelita"}}),
    (CLAIM, "*,items(amount),diagnosis(code)",
     {**CLAIM, "items": [{"amount": 283000}, {"amount": 271000}],
      "diagnosis": {"code": "K02.9"}}),
    (CLAIM, "provider(*,location(city))",
     {"provider": {"id": "PRV-011", "name": "RSU Pelita", "location": {"city": "Makassar"}}}),
    ([CLAIM, {"id": "CLM-2", "status": "paid", "x": 1}], "id,status",
     [{"id": "CLM-000086", "status": "processing"}, {"id": "CLM-2", "status": "paid"}]),
    ({"items": [CLAIM]}, "items(claim_number,provider/name)",
     {"items": [{"claim_number": "KLM/2026/03/000086", "provider": {"name": "RSU Pelita"}}]}),
    ([{"id": 1, "x": 2}, "CLM-3", None, [{"id": 3, "x": 4}]], "id",
     [{"id": 1}, "CLM-3", None, [{"id": 3}]]),
    ((CLAIM, CLAIM), "id", [{"id": "CLM-000086"}, {"id": "CLM-000086"}]),
    (1120000, "total_amount", 1120000),
    ({}, "id", {}),
]


@pytest.mark.parametrize(("doc", "fields", "expected"), PROJECTIONS)
def test_project(doc: Any, fields: str, expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert project(doc, parse_fields(fields)) == expected
    assert doc == before


def test_project_all_returns_the_document() -> None:
    assert project(CLAIM, ALL) is CLAIM
    assert project(CLAIM, parse_fields("*,id")) is CLAIM


def test_project_key_order() -> None:
    # sorted without "*" (whatever order the upstream used), the document's own with it
    doc = {"total_amount": 1, "status": "paid", "id": "CLM-1", "extra": 0}
    assert list(project(doc, parse_fields("total_amount,id"))) == ["id", "total_amount"]
    assert list(project(doc, parse_fields("*,extra(x)"))) == list(doc)


def test_project_empty_selection() -> None:
    assert project(CLAIM, EMPTY) == {}
    assert project([CLAIM, CLAIM], EMPTY) == [{}, {}]
    assert project("CLM-1", EMPTY) == "CLM-1"


def test_project_never_mutates() -> None:
    doc = {"items": [copy.deepcopy(CLAIM) for _ in range(3)]}
    before = copy.deepcopy(doc)
    for fields in ("items(id)", "*,items(provider(name))", "items(*,items(amount))", "*"):
        out = project(doc, parse_fields(fields))
        if fields != "*":
            out["added"] = 1
            out["items"][0].clear()
    assert doc == before


# ------------------------------------------------------------------------ intersect

INTERSECTIONS = [
    # (allowed, requested, result)
    ("*", "id,status", "id,status"),
    ("id,status", "*", "id,status"),
    ("id,status", "id,status", "id,status"),
    ("id,status", "id,total_amount", "id"),
    ("id,provider(name)", "provider", "provider(name)"),
    ("id,provider(name)", "provider(name,location)", "provider(name)"),
    ("id,provider(name)", "provider(*)", "provider(name)"),
    ("provider(name,location(city))", "provider/location", "provider(location(city))"),
    ("provider(name,location(city))", "provider/location/lat", ""),
    ("*,provider(name)", "provider", "provider(name)"),
    ("*,provider(name)", "*", "*,provider(name)"),
    ("*,provider(name)", "*,provider(name,id)", "*,provider(name)"),
    # each side narrows provider differently: it is left out altogether
    ("*,provider(name)", "*,provider(id)", "*,provider()"),
    ("*,provider(name)", "id,provider(id)", "id"),
    ("*,items(amount)", "*,items(*)", "*,items(amount)"),
    ("*,items(amount)", "*,diagnosis(code)", "*,diagnosis(code),items(amount)"),
    ("items(amount)", "items(amount,quantity),id", "items(amount)"),
    ("id", "provider(name)", ""),
]


@pytest.mark.parametrize(("allowed", "requested", "result"), INTERSECTIONS)
def test_intersect(allowed: str, requested: str, result: str) -> None:
    a, r = parse_fields(allowed), parse_fields(requested)
    got = intersect(a, r)
    assert got.render() == result
    assert intersect(r, a) == got
    shown = project(CLAIM, got)
    assert _within(shown, project(CLAIM, a)) and _within(shown, project(CLAIM, r))


def test_intersect_is_cached_and_bounded() -> None:
    a, r = parse_fields("*,provider(name)"), parse_fields("id,provider")
    assert intersect(a, r) is intersect(a, r)
    assert _intersect_cached.cache_info().maxsize == 1024


def test_intersect_empty() -> None:
    got = intersect(parse_fields("id"), parse_fields("provider(name)"))
    assert got == EMPTY and got.is_empty
    assert project(CLAIM, got) == {}


def test_intersect_exclusion_hides_the_field() -> None:
    got = intersect(parse_fields("*,provider(name)"), parse_fields("*,provider(id)"))
    assert project(CLAIM, got) == {k: v for k, v in CLAIM.items() if k != "provider"}


def _within(small: Any, big: Any) -> bool:
    """``small`` shows nothing that ``big`` doesn't."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and _within(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(
            _within(s, b) for s, b in zip(small, big, strict=True))
    return bool(small == big)
