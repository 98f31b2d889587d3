"""The committed JSON Schemas (config/schema/) are generated from the models and stay in sync."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from edge.cli import main
from edge.config import EdgeFile, Route, RoutesFile, json_schemas

CONFIG = Path(__file__).resolve().parent.parent / "config"
SCHEMA_DIR = CONFIG / "schema"
STALE = "config/schema/{name} is out of date with edge/config.py: run `edge schema`"


def serialize(schema: dict[str, Any]) -> str:
    """Exactly what `edge schema` (edge/cli.py cmd_schema) writes."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_committed_schema_is_up_to_date(name: str) -> None:
    committed = (SCHEMA_DIR / name).read_text() if (SCHEMA_DIR / name).exists() else ""
    assert committed == serialize(json_schemas()[name]), STALE.format(name=name)


def test_no_stale_schema_files() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(json_schemas()), (
        "config/schema/ holds files `edge schema` doesn't write")


def test_edge_schema_command_writes_the_committed_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / n) for n in json_schemas()]
    for name in json_schemas():
        assert (tmp_path / name).read_text() == (SCHEMA_DIR / name).read_text(), (
            STALE.format(name=name))


# ------------------------------------------------------- every model key is in the schema


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (list[X], dict[str, X], X | None, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def walk(model: type[BaseModel], schema: dict[str, Any], defs: dict[str, Any],
         seen: set[str]) -> list[str]:
    """Mismatches between the model's keys and the schema's properties, recursively."""
    seen.add(model.__name__)
    keys = {f.alias or name for name, f in model.model_fields.items()}
    props = set(schema.get("properties", {}))
    out = []
    if keys != props:
        out.append(f"{model.__name__}: model {sorted(keys)} != schema {sorted(props)}")
    if schema.get("additionalProperties") is not False:
        out.append(f"{model.__name__}: schema allows unknown keys")
    for f in model.model_fields.values():
        for sub in models_in(f.annotation):
            if sub.__name__ not in seen:
                if sub.__name__ not in defs:
                    out.append(f"{model.__name__}: no $defs entry for {sub.__name__}")
                    continue
                out.extend(walk(sub, defs[sub.__name__], defs, seen))
    return out


def test_edge_schema_has_every_model_key() -> None:
    schema = json_schemas()["edge.schema.json"]
    seen: set[str] = set()
    assert walk(EdgeFile, schema, schema["$defs"], seen) == []
    assert {"Listen", "Service", "Timeouts", "Jwt", "UserAgentRule"} <= seen


def test_route_schema_has_every_model_key() -> None:
    schema = json_schemas()["route.schema.json"]
    defs = schema["$defs"]
    assert schema["anyOf"] == [{"$ref": "#/$defs/Route"}, {"$ref": "#/$defs/RoutesFile"}]
    seen: set[str] = set()
    assert walk(RoutesFile, defs["RoutesFile"], defs, seen) == []
    assert walk(Route, defs["Route"], defs, seen) == []
    assert {"Route", "Source", "QueryPolicy", "RouteAuth", "AllowRule"} <= seen
    assert "pass" in defs["QueryPolicy"]["properties"]  # the YAML key, not `pass_`


# ----------------------------------------------- the bundled config validates (optional)

ROUTE_FILES = sorted(p.name for p in (CONFIG / "routes").glob("*.yaml"))


@pytest.fixture
def validators() -> dict[str, Any]:
    jsonschema = pytest.importorskip("jsonschema")
    out = {}
    for name, schema in json_schemas().items():
        jsonschema.Draft202012Validator.check_schema(schema)
        out[name] = jsonschema.Draft202012Validator(schema)
    return out


def errors(validator: Any, doc: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(doc)]


def test_bundled_edge_yaml_matches_schema(validators: dict[str, Any]) -> None:
    doc = yaml.safe_load((CONFIG / "edge.yaml").read_text())
    assert errors(validators["edge.schema.json"], doc) == []


@pytest.mark.parametrize("name", ROUTE_FILES)
def test_bundled_route_file_matches_schema(validators: dict[str, Any], name: str) -> None:
    doc = yaml.safe_load((CONFIG / "routes" / name).read_text())
    assert errors(validators["route.schema.json"], doc) == []


ROUTE = {"route": "GET /a", "source": {"service": "s", "path": "/a"}}


@pytest.mark.parametrize(("schema", "doc"), [
    ("edge.schema.json", {"listen": {"prot": 1}}),
    ("edge.schema.json", {"drain_timeout": "5 sec"}),
    ("edge.schema.json", {"limits": {"max_request_body": "10 mb"}}),
    ("route.schema.json", {**ROUTE, "extra": 1}),
    ("route.schema.json", {"routes": [{**ROUTE, "auth": {"jwt": "maybe"}}]}),
    ("route.schema.json", {"route": "GET /a"}),
])
def test_schema_refuses_what_the_loader_refuses(validators: dict[str, Any], schema: str,
                                                doc: dict[str, Any]) -> None:
    assert errors(validators[schema], doc) != []
