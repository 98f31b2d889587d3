"""edge.shapers.paginate: clamped page/size or cursor upstream; hasMore, next and Link back."""

from __future__ import annotations

import re
from typing import Any

import pytest
from multidict import MultiDict

from edge.config.models import EdgeFile, QueryPolicy, Shape
from edge.context import DeviceProfile, RequestContext
from edge.errors import PolicyError, policy_errors
from edge.inputs import Input
from edge.shapers import SHAPERS
from edge.shapers.paginate import Paginator
from edge.wire import QueryMapper

EDGE = EdgeFile.model_validate({})
CURSOR = {"style": "cursor", "next_cursor": "meta/next"}


def build(block: dict[str, Any], edge: EdgeFile = EDGE) -> Paginator:
    shaper = SHAPERS["paginate"].from_policy(Shape.model_validate({"paginate": block}),
                                             edge, ())
    assert isinstance(shaper, Paginator)
    return shaper


def ctx(device: str = "phone", query: Any = None, page: Any = None) -> RequestContext:
    return RequestContext(request_id="t", route_name="r", params={},
                          device=DeviceProfile(device, "fast"), client_ip="127.0.0.1",
                          path="/claims", query=query, page=page)


def pp(page: int, size: int, names: tuple[str, ...] = ("page", "size")) -> list[Any]:
    return [(names[0], str(page)), (names[1], str(size))]


UP: list[tuple[Any, ...]] = [
    ("defaults", {}, {}, "phone", pp(1, 20)),
    ("max_size caps", {"max_size": 50}, {"size": "500"}, "phone", pp(1, 50)),
    ("0 is 1", {}, {"page": "0", "size": "0"}, "phone", pp(1, 1)),
    ("junk is the default", {}, {"page": "-2", "size": " 5"}, "phone", pp(1, 20)),
    ("over 9 digits is the default, not the cap", {}, {"size": "1" * 10}, "phone", pp(1, 20)),
    ("device cap", {"max_by_device": {"watch": 5}}, {"size": "50"}, "watch", pp(1, 5)),
    ("and the default size", {"max_by_device": {"watch": 5}}, {}, "watch", pp(1, 5)),
    ("other devices", {"max_by_device": {"watch": 5}}, {"size": "50"}, "phone", pp(1, 50)),
    ("max_size caps max_by_device", {"max_size": 30, "max_by_device": {"phone": 80}},
     {"size": "60"}, "phone", pp(1, 30)),
    ("default over the cap", {"default_size": 200}, {}, "phone", pp(1, 100)),
    ("client param names", {"page_param": "p", "size_param": "per_page"},
     {"p": "3", "per_page": "7", "page": "9", "size": "9"}, "phone", pp(3, 7, ("p", "per_page"))),
    ("upstream names", {"upstream": {"page": "pageNo", "size": "limit"}},
     {"page": "2", "size": "9"}, "phone", pp(2, 9, ("pageNo", "limit"))),
]


@pytest.mark.parametrize(("policy", "query", "device", "params"),
                         [c[1:] for c in UP], ids=[c[0] for c in UP])
def test_upstream_params(policy: dict[str, Any], query: dict[str, str], device: str,
                         params: list[tuple[str, str]]) -> None:
    x = ctx(device)
    assert build(policy).upstream_params(query, x) == params
    assert x.page == {"page": int(params[0][1]), "size": int(params[1][1])}


UP_CURSOR: list[tuple[Any, ...]] = [
    ("cursor", CURSOR, {"cursor": "abc", "size": "10", "page": "4"},
     [("size", "10"), ("cursor", "abc")], {"size": 10, "cursor": "abc"}),
    ("no cursor", CURSOR, {}, [("size", "20")], {"size": 20, "cursor": None}),
    ("empty cursor", CURSOR, {"cursor": ""}, [("size", "20")], {"size": 20, "cursor": ""}),
    ("long cursor cut for the upstream", CURSOR, {"cursor": "c" * 600},
     [("size", "20"), ("cursor", "c" * 512)], {"size": 20, "cursor": "c" * 600}),
    ("names", {**CURSOR, "cursor_param": "after", "upstream": {"cursor": "from", "size": "n"},
               "max_by_device": {"phone": 7}},
     {"after": "x", "size": "500"}, [("n", "7"), ("from", "x")], {"size": 7, "cursor": "x"}),
]


@pytest.mark.parametrize(("policy", "query", "params", "page"),
                         [c[1:] for c in UP_CURSOR], ids=[c[0] for c in UP_CURSOR])
def test_upstream_params_cursor(policy: dict[str, Any], query: dict[str, str],
                                params: list[tuple[str, str]], page: dict[str, Any]) -> None:
    x = ctx()
    assert build(policy).upstream_params(query, x) == params
    assert x.page == page


@pytest.mark.parametrize("query", [{"size": "²"}, {"page": "¹"}])
def test_non_ascii_digits_are_junk(query: dict[str, str]) -> None:
    assert build({}).upstream_params(query, ctx()) == [("page", "1"), ("size", "20")]


def page(n: int = 1, size: int = 10) -> dict[str, Any]:
    return {"page": n, "size": size}


TEN = list(range(10))
# (id, policy, upstream document, page number (None: cursor style), has_more)
READ: list[tuple[Any, ...]] = [
    ("full page: more", {}, {"items": TEN}, 1, True),
    ("short page: last", {}, {"items": TEN[:9]}, 1, False),
    ("no items: last", {}, {"other": TEN}, 1, False),
    ("top-level list", {"items": ""}, TEN, 1, True),
    ("nested items", {"items": "data/rows"}, {"data": {"rows": TEN}}, 1, True),
    ("total: more", {"total": "meta/total"}, {"items": [], "meta": {"total": 21}}, 2, True),
    ("total: last", {"total": "meta/total"}, {"items": TEN, "meta": {"total": 20}}, 2, False),
    ("total not an int: fullness", {"total": "t"}, {"items": TEN, "t": "99"}, 1, True),
    ("has_more wins over total", {"has_more": "more", "total": "t"},
     {"items": TEN, "more": False, "t": 99}, 1, False),
    ("has_more true", {"has_more": "more"}, {"items": [], "more": True}, 1, True),
    ("has_more not a bool: total", {"has_more": "more", "total": "t"},
     {"items": [], "more": 1, "t": 99}, 1, True),
    ("has_more missing: fullness", {"has_more": "more"}, {"items": TEN}, 1, True),
    ("cursor string", CURSOR, {"meta": {"next": "abc"}}, None, True),
    ("cursor int", CURSOR, {"meta": {"next": 42}}, None, True),
    ("cursor null", CURSOR, {"meta": {"next": None}}, None, False),
    ("cursor missing", CURSOR, {"items": TEN}, None, False),
    ("cursor an object", CURSOR, {"meta": {"next": {"a": 1}}}, None, False),
]


@pytest.mark.parametrize(("policy", "doc", "n", "more"), [c[1:] for c in READ],
                         ids=[c[0] for c in READ])
def test_read(policy: dict[str, Any], doc: Any, n: int | None, more: bool) -> None:
    x = ctx(page={"size": 10} if n is None else page(n))
    build(policy).read(doc, x)
    assert x.page is not None and x.page["has_more"] is more


@pytest.mark.parametrize("nxt", ["", False])
def test_an_empty_next_cursor_is_the_end(nxt: Any) -> None:
    x = ctx(page={"size": 10})
    build(CURSOR).read({"meta": {"next": nxt}}, x)
    assert x.page is not None and x.page["has_more"] is False


# (id, policy, client query, page state, Link header); the body's `next` is its rel="next"
LINKS: list[tuple[Any, ...]] = [
    ("first page", {}, {"q": "a b"}, {**page(), "has_more": True},
     '</claims?q=a+b&size=10&page=2>; rel="next", </claims?q=a+b&size=10&page=1>; '
     'rel="first"'),
    ("middle page", {}, {}, {**page(3), "has_more": True},
     '</claims?size=10&page=4>; rel="next", </claims?size=10&page=1>; rel="first", '
     '</claims?size=10&page=2>; rel="prev"'),
    ("last page", {}, {"page": "3", "size": "500"}, {**page(3), "has_more": False},
     '</claims?size=10&page=1>; rel="first", </claims?size=10&page=2>; rel="prev"'),
    ("the client's page params replaced", {"page_param": "p", "size_param": "n"},
     {"p": "1", "n": "99", "page": "x"}, {**page(), "has_more": True},
     '</claims?page=x&n=10&p=2>; rel="next", </claims?page=x&n=10&p=1>; rel="first"'),
    ("cursor", CURSOR, {"cursor": "old", "s": "1"},
     {"size": 10, "next_cursor": "n/1", "has_more": True},
     '</claims?s=1&size=10&cursor=n%2F1>; rel="next"'),
    ("cursor, last page", CURSOR, {}, {"size": 10, "next_cursor": None, "has_more": False},
     None),
]


@pytest.mark.parametrize(("policy", "query", "info", "link"), [c[1:] for c in LINKS],
                         ids=[c[0] for c in LINKS])
def test_apply_and_link(policy: dict[str, Any], query: dict[str, str], info: dict[str, Any],
                        link: str | None) -> None:
    x, shaper = ctx(query=query, page=info), build(policy)
    nxt = re.search(r'<([^>]*)>; rel="next"', link or "")
    out = {"items": [], "hasMore": info["has_more"], "next": nxt and nxt[1]}
    assert shaper.apply({"items": []}, x) == out
    assert shaper.headers(x) == ({"Link": link} if link else {})


@pytest.mark.parametrize(("doc", "info"), [([1, 2], page()), ("x", page()), ({"a": 1}, None)])
def test_apply_leaves_alone(doc: Any, info: Any) -> None:
    x = ctx(page=info)
    assert build({}).apply(doc, x) == doc
    if info is None:  # no page state (no upstream_params): no read, no Link either
        build({}).read({"items": TEN}, x)
        assert (x.page, build({}).headers(x)) == (None, {})


@pytest.mark.parametrize(("passed", "nxt"), [
    ("all", "/claims?status=open&junk=1&fields=id&size=10&page=2"),
    (["status"], "/claims?status=open&fields=id&size=10&page=2"),
    ("none", "/claims?fields=id&size=10&page=2"),
])
def test_links_carry_the_parameters_the_route_reads(passed: Any, nxt: str) -> None:
    mapper = QueryMapper(QueryPolicy.model_validate({"pass": passed}),
                         frozenset({"fields", "page", "size"}))
    query = MultiDict({"status": "open", "junk": "1", "fields": "id"})
    x = ctx(query=mapper.linkable(query), page={**page(), "has_more": True})
    assert build({}).apply({}, x)["next"] == nxt


def test_repeated_parameters_survive_in_links() -> None:
    x = ctx(query=MultiDict([("tag", "a"), ("tag", "b")]), page={**page(), "has_more": True})
    assert build({}).apply({}, x)["next"] == "/claims?tag=a&tag=b&size=10&page=2"


NEEDS = (("paginate",), False,
         "paginate: cursor style needs `next_cursor` (where the next cursor is)")


def not_a_class(device: str) -> tuple[tuple[str, ...], bool, str]:
    return (("paginate", "max_by_device", device), True,
            f"paginate.max_by_device: '{device}' is not a device class")


KIOSKS = EdgeFile.model_validate({"devices": {"classes": ["kiosk"], "default": "kiosk"}})
ERRORS: list[tuple[Any, ...]] = [
    ("unknown device", {"max_by_device": {"toaster": 5}}, EDGE, [not_a_class("toaster")]),
    ("class of another config", {"max_by_device": {"phone": 5}}, KIOSKS,
     [not_a_class("phone")]),
    ("cursor without next_cursor", {"style": "cursor"}, EDGE, [NEEDS]),
    ("every problem at once", {"style": "cursor", "max_by_device": {"a": 1, "b": 2}}, EDGE,
     [not_a_class("a"), not_a_class("b"), NEEDS]),
]


@pytest.mark.parametrize(("policy", "edge", "expected"), [c[1:] for c in ERRORS],
                         ids=[c[0] for c in ERRORS])
def test_policy_errors(policy: dict[str, Any], edge: EdgeFile,
                       expected: list[tuple[tuple[str, ...], bool, str]]) -> None:
    with pytest.raises((PolicyError, ExceptionGroup)) as err:
        build(policy, edge)
    found = policy_errors(err.value) if isinstance(err.value, ExceptionGroup) else [err.value]
    assert [(e.path, e.key, e.message) for e in found] == expected


@pytest.mark.parametrize(("policy", "reads"), [
    ({}, frozenset()), ({"max_by_device": {"watch": 5}}, frozenset({Input.DEVICE}))])
def test_shaper_protocol(policy: dict[str, Any], reads: frozenset[Input]) -> None:
    assert SHAPERS["paginate"].from_policy(Shape.model_validate({}), EDGE, ()) is None
    shaper = build(policy)
    assert shaper.name == "paginate" and shaper.reads == reads
    assert shaper.params == {"page", "size", "cursor"}
