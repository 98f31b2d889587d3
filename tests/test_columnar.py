"""edge.shapers.columnar: lists of objects as keys plus value rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edge.context import DeviceProfile, RequestContext
from edge.shapers.columnar import Columnar, parse_path

CTX = RequestContext(request_id="t", route_name="r", params={},
                     device=DeviceProfile("phone", "fast"), client_ip="127.0.0.1")

A = {"id": 1, "name": "a"}
B = {"id": 2, "tag": "x"}


def cols(keys: list[str], *rows: list[Any]) -> dict[str, Any]:
    return {"_k": keys, "_d": list(rows)}


CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("basic", {"paths": ["items"]},
     {"items": [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}], "total": 2},
     {"items": cols(["id", "n"], [1, "a"], [2, "b"]), "total": 2}),
    ("missing keys are null, union in first-seen order", {"paths": ["items"]},
     {"items": [A, B]},
     {"items": cols(["id", "name", "tag"], [1, "a", None], [2, None, "x"])}),
    ("explicit null kept", {"paths": ["items"]},
     {"items": [{"a": None}, {"a": 1}]},
     {"items": cols(["a"], [None], [1])}),
    ("top-level list, empty path", {"paths": [""]}, [A, B],
     cols(["id", "name", "tag"], [1, "a", None], [2, None, "x"])),
    ("top-level list, dot path", {"paths": ["."]}, [A, A],
     cols(["id", "name"], [1, "a"], [1, "a"])),
    ("nested path", {"paths": ["member/dependents"]},
     {"member": {"id": 9, "dependents": [{"n": "x"}, {"n": "y"}]}},
     {"member": {"id": 9, "dependents": cols(["n"], ["x"], ["y"])}}),
    ("path through a list of objects", {"paths": ["items/history"]},
     {"items": [{"id": 1, "history": [{"s": "a"}, {"s": "b"}]},
                {"id": 2, "history": [{"s": "c"}]},
                {"id": 3},
                "not-an-object"]},
     {"items": [{"id": 1, "history": cols(["s"], ["a"], ["b"])},
                {"id": 2, "history": [{"s": "c"}]},
                {"id": 3},
                "not-an-object"]}),
    ("parent and child paths both convert", {"paths": ["items", "items/history"]},
     {"items": [{"id": 1, "history": [{"s": "a"}, {"s": "b"}]}, {"id": 2}]},
     {"items": cols(["id", "history"], [1, cols(["s"], ["a"], ["b"])], [2, None])}),
    ("below min_rows left alone", {"paths": ["items"]},
     {"items": [A]}, {"items": [A]}),
    ("empty list left alone", {"paths": ["items"]}, {"items": []}, {"items": []}),
    ("min_rows 1 converts a single row", {"paths": ["items"], "min_rows": 1},
     {"items": [A]}, {"items": cols(["id", "name"], [1, "a"])}),
    ("min_rows 3", {"paths": ["items"], "min_rows": 3},
     {"items": [A, B]}, {"items": [A, B]}),
    ("mixed list left alone", {"paths": ["items"]},
     {"items": [A, 1, B]}, {"items": [A, 1, B]}),
    ("list with null left alone", {"paths": ["items"]},
     {"items": [A, None]}, {"items": [A, None]}),
    ("list of lists left alone", {"paths": ["items"]},
     {"items": [[1], [2]]}, {"items": [[1], [2]]}),
    ("rows not recursed into", {"paths": ["items"]},
     {"items": [{"h": [{"s": 1}, {"s": 2}]}, {"h": []}]},
     {"items": cols(["h"], [[{"s": 1}, {"s": 2}]], [[]])}),
    ("missing path is a no-op", {"paths": ["nope", "a/b/c"]},
     {"items": [A, B], "a": 1}, {"items": [A, B], "a": 1}),
    ("path to a non-list is a no-op", {"paths": ["items"]},
     {"items": {"id": 1}}, {"items": {"id": 1}}),
    ("scalar document", {"paths": ["items"]}, 3, 3),
    ("all-empty objects", {"paths": ["items"]},
     {"items": [{}, {}]}, {"items": cols([], [], [])}),
]


@pytest.mark.parametrize(("policy", "doc", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_apply(policy: dict[str, Any], doc: Any, expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert Columnar(**policy).apply(doc, CTX) == expected
    assert doc == before  # input not mutated


def test_readback_zips_keys_with_rows() -> None:
    doc = {"items": [A, B]}
    out = Columnar(["items"]).apply(doc, CTX)["items"]
    back = [dict(zip(out["_k"], row, strict=True)) for row in out["_d"]]
    assert back == [{"id": 1, "name": "a", "tag": None}, {"id": 2, "name": None, "tag": "x"}]


@pytest.mark.parametrize(("path", "expected"), [
    ("", ()),
    (".", ()),
    ("items", ("items",)),
    ("member/dependents", ("member", "dependents")),
    ("a.b/c", ("a.b", "c")),
])
def test_parse_path(path: str, expected: tuple[str, ...]) -> None:
    assert parse_path(path) == expected


EMPTY_SEGMENT = "empty segment (write 'a/b'; use '' or '.' for a top-level list)"


@pytest.mark.parametrize(("path", "message"), [
    ("a//b", f"columnar path 'a//b': {EMPTY_SEGMENT}"),
    ("/a", f"columnar path '/a': {EMPTY_SEGMENT}"),
    ("a/", f"columnar path 'a/': {EMPTY_SEGMENT}"),
    ("/", f"columnar path '/': {EMPTY_SEGMENT}"),
])
def test_parse_path_errors(path: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_path(path)
    assert str(err.value) == message


@pytest.mark.parametrize(("policy", "message"), [
    ({"paths": ["a//b"]}, f"columnar path 'a//b': {EMPTY_SEGMENT}"),
    ({"paths": "items"}, "columnar paths: expected a list of paths, got 'items'"),
    ({"paths": [1]}, "columnar path: expected a string, got 1"),
    ({"paths": ["items"], "min_rows": 0}, "columnar min_rows: expected an integer >= 1, got 0"),
    ({"paths": ["items"], "min_rows": True},
     "columnar min_rows: expected an integer >= 1, got True"),
])
def test_policy_errors(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Columnar(**policy)
    assert str(err.value) == message


def test_shaper_protocol() -> None:
    shaper = Columnar(["items"])
    assert shaper.name == "columnar"
    assert shaper.headers(CTX) == {}
    assert shaper.reads == frozenset()
