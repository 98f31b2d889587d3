"""Shapers check and compile their own `shape` blocks (`from_policy`), once, at load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edge.config import SHAPE_STEPS, EdgeFile, Shape, json_schemas, load_config
from edge.errors import PolicyError
from edge.shapers import SHAPERS, build_shapers
from edge.shapers.paginate import Paginator

from .conftest import catch_all, services_yaml, write_config
from .test_shape_config import EDGE, ROUTE, problems

EDGE_FILE = EdgeFile.model_validate({"keymaps": {"claims-v1": {"claim_number": "cn"}}})


@pytest.mark.parametrize("shape, expected", [
    # every problem of a block at once, each where it is
    ("  fields: {phone: 'id,(', toaster: id, slow: id}\n", [
        "routes/r.yaml:4:19: error: GET /a: shape.fields: fields: empty field name at "
        "position 3",
        "routes/r.yaml:4:27: error: GET /a: shape.fields: 'toaster' is not 'default', a "
        "device class (desktop, phone, tablet, watch), a network class (fast, medium, slow, "
        "unknown) or 'device/network'"]),
    ("  columnar: [a//b, items, /x]\n", [
        "routes/r.yaml:4:14: error: GET /a: shape.columnar[0]: columnar path 'a//b': empty "
        "segment (write 'a/b'; use '' or '.' for a top-level list)",
        "routes/r.yaml:4:27: error: GET /a: shape.columnar[2]: columnar path '/x': empty "
        "segment (write 'a/b'; use '' or '.' for a top-level list)"]),
    ("  round: {floats: 2, keys: []}\n",
     ["routes/r.yaml:4:10: error: GET /a: shape.round.keys: expected at least one key name"]),
    ("  paginate: {style: cursor, max_by_device: {toaster: 5, phone: 3}}\n", [
        "routes/r.yaml:4:45: error: GET /a: shape.paginate.max_by_device: 'toaster' is not a "
        "device class",
        "routes/r.yaml:4:13: error: GET /a: shape.paginate: cursor style needs `next_cursor` "
        "(where the next cursor is)"]),
    # several blocks: reported in the order the steps run
    ("  keymap: nope\n  columnar: [a//b]\n  fields: {toaster: id}\n", [
        "routes/r.yaml:6:12: error: GET /a: shape.fields: 'toaster' is not 'default', a "
        "device class (desktop, phone, tablet, watch), a network class (fast, medium, slow, "
        "unknown) or 'device/network'",
        "routes/r.yaml:4:11: error: GET /a: shape.keymap: unknown keymap 'nope' (keymaps: "
        "claims-v1)",
        "routes/r.yaml:5:14: error: GET /a: shape.columnar[0]: columnar path 'a//b': empty "
        "segment (write 'a/b'; use '' or '.' for a top-level list)"]),
])
def test_every_problem_of_a_shape_is_reported(tmp_path: Path, shape: str,
                                              expected: list[str]) -> None:
    assert problems(tmp_path, EDGE, ROUTE + shape) == expected


@pytest.mark.parametrize("shape, path, key, message", [
    ({"keymap": "v9"}, ("keymap",), False,
     "keymap: unknown keymap 'v9' (keymaps: claims-v1)"),
    ({"fields": {"toaster": "id"}}, ("fields", "toaster"), True,
     "fields: 'toaster' is not 'default', a device class (desktop, phone, tablet, watch), a "
     "network class (fast, medium, slow, unknown) or 'device/network'"),
    ({"fields": "a("}, ("fields",), False, "fields: fields: empty field name at position 2"),
    ({"round": {}}, ("round",), False, "round: set floats, timestamps or both"),
    ({"paginate": {"style": "cursor"}}, ("paginate",), False,
     "paginate: cursor style needs `next_cursor` (where the next cursor is)"),
])
def test_policy_error_path_is_relative_to_the_shape_block(
        shape: dict[str, object], path: tuple[str, ...], key: bool, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        build_shapers(Shape.model_validate(shape), EDGE_FILE)
    assert (e.value.path, e.value.key, e.value.message) == (path, key, message)


def test_registry_runs_in_the_documented_order() -> None:
    assert tuple(SHAPERS) == SHAPE_STEPS
    assert all(cls.name == key for key, cls in SHAPERS.items())
    described = json_schemas()["route.schema.json"]["$defs"]["Shape"]["description"]
    assert ", ".join(SHAPE_STEPS) in described


def test_the_loader_builds_each_route_s_shapers_once(tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", EDGE, {"r.yaml": ROUTE + (
        "  envelope: {when: always}\n  paginate: {max_size: 10}\n  keymap: claims-v1\n"
        "  prune: true\n  fields: id\n")})
    spec = load_config(root, {}).routes[0]
    assert [s.name for s in spec.shapers] == ["fields", "prune", "keymap", "paginate",
                                              "envelope"]
    pager = spec.shapers[3]
    assert isinstance(pager, Paginator) and pager.max_size == 10


def test_loading_config_imports_no_shaper() -> None:
    code = ("import sys, edge.config; "
            "print(sorted(m for m in sys.modules if m.startswith('edge.shapers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


async def test_a_reload_with_a_refused_shape_keeps_the_last_good_config(
        make_edge: Any, upstream: Any, tmp_path: Path) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"id": 1, "name": "a"})

    url = await upstream(catch_all(handle))
    route = "route: GET /a\nsource: {{service: svc, path: /a}}\nshape: {{fields: '{}'}}\n"
    client = await make_edge(services_yaml({"svc": url}), {"r.yaml": route.format("id")})
    reloader = client.edge.state.reloader
    path = tmp_path / "config" / "routes" / "r.yaml"
    path.write_text(route.format("id,("))
    assert not await reloader.reload()
    assert reloader.last_error == (f"{path}:3:17: error: GET /a: shape.fields: fields: empty "
                                   "field name at position 3")
    assert await (await client.get("/a")).json() == {"id": 1}
    path.write_text(route.format("name"))
    assert await reloader.reload()
    assert await (await client.get("/a")).json() == {"name": "a"}
