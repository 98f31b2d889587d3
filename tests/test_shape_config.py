"""Config errors for `shape:` blocks and keymaps, reported as file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, load_config

from .conftest import write_config

EDGE = """\
services:
  s: {url: "http://127.0.0.1:1"}
keymaps:
  claims-v1: {claim_number: cn, total_amount: ta}
"""


def problems(tmp_path: Path, edge: str, route: str) -> list[str]:
    root = write_config(tmp_path / "c", edge, {"r.yaml": route})
    with pytest.raises(ConfigError) as e:
        load_config(root, {})
    return [p.replace(str(root) + "/", "") for p in e.value.problems]


ROUTE = "route: GET /a\nsource: {service: s, path: /a}\nshape:\n"


@pytest.mark.parametrize("shape, expected", [
    ("  keymap: claims-v9\n",
     "routes/r.yaml:4:11: error: GET /a: shape.keymap: unknown keymap 'claims-v9' "
     "(keymaps: claims-v1)"),
    ("  fields: \"id,(\"\n",
     "routes/r.yaml:4:11: error: GET /a: shape.fields: fields: empty field name at "
     "position 3"),
    ("  fields: {phone: id, toaster: id}\n",
     "routes/r.yaml:4:23: error: GET /a: shape.fields: 'toaster' is not 'default', a device "
     "class (desktop, phone, tablet, watch), a network class (fast, medium, slow, unknown) "
     "or 'device/network'"),
    ("  prune: [nulls]\n",
     "routes/r.yaml:4:11: error: shape.prune[0]: Input should be 'null', 'empty_string', "
     "'empty_list' or 'empty_object', got 'nulls'"),
    ("  columnar: [items, a//b]\n",
     "routes/r.yaml:4:21: error: GET /a: shape.columnar[1]: columnar path 'a//b': empty "
     "segment (write 'a/b'; use '' or '.' for a top-level list)"),
    ("  round: {keys: [lat]}\n",
     "routes/r.yaml:4:10: error: GET /a: shape.round: set floats, timestamps or both"),
])
def test_shape_errors(tmp_path: Path, shape: str, expected: str) -> None:
    assert expected in problems(tmp_path, EDGE, ROUTE + shape)


def test_keymap_must_be_bijective_and_unambiguous(tmp_path: Path) -> None:
    edge = """\
services:
  s: {url: "http://127.0.0.1:1"}
keymaps:
  bad-v1: {claim_number: c, claim_status: c, total: t, t: x}
  Bad Name: {a: b}
"""
    found = problems(tmp_path, edge, "route: GET /a\nsource: {service: s, path: /a}\n")
    assert found == [
        "edge.yaml:4:29: error: keymaps.bad-v1: 'claim_status' and 'claim_number' both "
        "shorten to 'c'",
        "edge.yaml:4:46: error: keymaps.bad-v1: 'total' shortens to 't', which is itself a "
        "key being shortened (expanding would be ambiguous)",
        "edge.yaml:5:3: error: keymaps.Bad Name: a keymap name is lower-case letters, digits, "
        "'.', '_' or '-', e.g. 'claims-v1'",
    ]


def test_a_valid_shape_loads(tmp_path: Path) -> None:
    root = write_config(tmp_path / "c", EDGE, {"r.yaml": ROUTE + (
        "  fields: {default: '*', phone: 'id,status', slow: id, phone/slow: id}\n"
        "  keymap: claims-v1\n  prune: true\n")})
    config = load_config(root, {})
    assert config.routes[0].model.shape is not None
