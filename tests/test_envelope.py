"""edge.shapers.envelope: `{"success", "data", "metadata"}` around answers and problems."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import orjson
import pytest

from edge.config.models import EdgeFile, Shape
from edge.context import DeviceProfile, RequestContext
from edge.inputs import Input
from edge.shapers import SHAPERS
from edge.shapers.envelope import Envelope

EDGE = EdgeFile.model_validate({})
SOURCES = ("members", "claims")


def ctx(**kw: Any) -> RequestContext:
    kw.setdefault("started", time.perf_counter())
    return RequestContext(request_id="t", route_name="r", params={},
                          device=DeviceProfile("phone", "fast"), client_ip="127.0.0.1", **kw)


def build(block: dict[str, Any] | None = None, sources: tuple[str, ...] = SOURCES
          ) -> Envelope:
    shape = Shape.model_validate({"envelope": {} if block is None else block})
    shaper = SHAPERS["envelope"].from_policy(shape, EDGE, sources)
    assert isinstance(shaper, Envelope)
    return shaper


def meta(cached: bool, api_version: str = "1", sources: tuple[str, ...] = SOURCES,
         **extra: Any) -> dict[str, Any]:
    return {"cached": cached, "data_sources": list(sources), "api_version": api_version,
            **extra}


def timed(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with its metadata's response_time_ms checked and taken out."""
    ms = envelope["metadata"].pop("response_time_ms")
    assert isinstance(ms, float) and 0 <= ms < 60_000
    return envelope


def test_absent_block_builds_nothing() -> None:
    assert SHAPERS["envelope"].from_policy(Shape.model_validate({}), EDGE, SOURCES) is None


# (when, query value, header value, wanted)
WANTED: list[tuple[str, str | None, str | None, bool]] = [
    ("always", None, None, True),
    ("always", "false", "0", True),
    ("always", "", "", True),
    ("on_request", None, None, False),
    ("on_request", "", "", False),
    *[("on_request", v, None, True) for v in ("1", "true", "yes", "on", "TRUE", "True",
                                              "YES", "On")],
    *[("on_request", None, v, True) for v in ("1", "true", "yes", "on", "TRUE")],
    *[("on_request", v, None, False) for v in ("0", "false", "no", "off", "y", "t", "2",
                                               " true", "true ", "enabled")],
    *[("on_request", None, v, False) for v in ("0", "false", "no", "off", "")],
    # a non-empty query value decides, whatever the header says
    ("on_request", "true", "false", True),
    ("on_request", "false", "true", False),
    ("on_request", "0", "1", False),
    # an empty query value (`?envelope=`) is as good as none: the header decides
    ("on_request", "", "true", True),
    ("on_request", "", "false", False),
]


@pytest.mark.parametrize(("when", "query", "header", "wanted"), WANTED)
def test_wanted(when: str, query: str | None, header: str | None, wanted: bool) -> None:
    assert build({"when": when}).wanted(query, header) is wanted


def test_default_is_on_request() -> None:
    assert build().wanted(None, None) is False
    assert build().wanted("true", None) is True


DOCS: list[Any] = [{"id": 1, "tags": ["a"]}, [1, 2, {"x": None}], "text", 3.5, None, {}, []]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("cached", [False, True])
def test_wrap_json(doc: Any, cached: bool) -> None:
    out = build().wrap(orjson.dumps(doc), "json", ctx(), cached)
    assert out.startswith(b'{"success":true,"data":')
    assert timed(orjson.loads(out)) == {"success": True, "data": doc, "metadata": meta(cached)}


@pytest.mark.parametrize("doc", [*DOCS, {"blob": b"\x00\xff"}])
@pytest.mark.parametrize("cached", [False, True])
def test_wrap_msgpack(doc: Any, cached: bool) -> None:
    out = build().wrap(msgpack.packb(doc), "msgpack", ctx(), cached)
    decoded = msgpack.unpackb(out)
    assert list(decoded) == ["success", "data", "metadata"]
    assert timed(decoded) == {"success": True, "data": doc, "metadata": meta(cached)}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_wrap_keeps_the_body_bytes_as_they_are(fmt: str) -> None:
    body = b'{"b":1,"a":2}' if fmt == "json" else msgpack.packb({"b": 1, "a": 2})
    out = build().wrap(body, fmt, ctx(), False)
    assert body in out
    decoded = orjson.loads(out) if fmt == "json" else msgpack.unpackb(out)
    assert list(decoded["data"]) == ["b", "a"]


@pytest.mark.parametrize(("block", "sources", "extra", "expected"), [
    ({"api_version": "2.1"}, SOURCES, {}, meta(False, "2.1")),
    ({}, (), {}, meta(False, sources=())),
    ({}, ("members",), {"degraded": ["claims"]},
     meta(False, sources=("members",), degraded=["claims"])),
    ({}, SOURCES, {"degraded": ["members", "claims"]},
     meta(False, degraded=["members", "claims"])),
    ({}, SOURCES, {"degraded": []}, meta(False)),  # nothing fell back: no key
    ({}, SOURCES, {"envelope": False}, meta(False)),  # wrap doesn't read ctx.envelope
])
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_wrap_metadata(block: dict[str, Any], sources: tuple[str, ...],
                       extra: dict[str, Any], expected: dict[str, Any], fmt: str) -> None:
    body = orjson.dumps([1]) if fmt == "json" else msgpack.packb([1])
    out = build(block, sources).wrap(body, fmt, ctx(**extra), False)
    decoded = orjson.loads(out) if fmt == "json" else msgpack.unpackb(out)
    assert timed(decoded) == {"success": True, "data": [1], "metadata": expected}


def test_response_time_is_this_request_s() -> None:
    out = orjson.loads(build().wrap(b"1", "json", ctx(started=time.perf_counter() - 1.5),
                                    False))
    assert 1500 <= out["metadata"]["response_time_ms"] < 60_000


@pytest.mark.parametrize(("extra", "expected"), [
    ({"envelope": False}, {"id": 1}),
    ({"envelope": True},
     {"success": True, "data": {"id": 1}, "metadata": meta(False)}),
    ({"envelope": True, "degraded": ["claims"]},
     {"success": True, "data": {"id": 1}, "metadata": meta(False, degraded=["claims"])}),
])
def test_apply(extra: dict[str, Any], expected: Any) -> None:
    out = build().apply({"id": 1}, ctx(**extra))
    assert (timed(out) if extra["envelope"] else out) == expected


PROBLEM = {"type": "urn:edge:problem:not-found", "title": "Not found", "status": 404,
           "request_id": "t"}


@pytest.mark.parametrize(("extra", "expected_meta"), [
    ({}, meta(False)),
    ({"degraded": ["claims"]}, meta(False, degraded=["claims"])),
])
def test_error(extra: dict[str, Any], expected_meta: dict[str, Any]) -> None:
    out = build().error(PROBLEM, ctx(**extra))
    assert list(out) == ["success", "error", "metadata"]
    assert timed(out) == {"success": False, "error": PROBLEM, "metadata": expected_meta}
    orjson.dumps(out)  # serializable as it is


@pytest.mark.parametrize(("when", "reads"), [
    ("always", frozenset()),
    ("on_request", frozenset({Input.ENVELOPE})),
])
def test_reads(when: str, reads: frozenset[Input]) -> None:
    assert build({"when": when}).reads == reads


def test_shaper_protocol() -> None:
    shaper = build()
    assert shaper.name == "envelope"
    assert shaper.headers(ctx()) == {}
    assert shaper.headers(ctx(envelope=True)) == {}
