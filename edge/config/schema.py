"""The JSON Schemas for editors (`edge schema` writes them to config/schema/)."""

from __future__ import annotations

from typing import Any

from .models import ApiKeysFile, EdgeFile, Route, RoutesFile


def json_schemas() -> dict[str, dict[str, Any]]:
    """The editor schemas, keyed by file name under config/schema/."""
    route = Route.model_json_schema(by_alias=True)
    routes = RoutesFile.model_json_schema(by_alias=True)
    route_file = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "edge route file",
        "description": "A single route (with `route:`) or a `routes:` list.",
        "anyOf": [{"$ref": "#/$defs/Route"}, {"$ref": "#/$defs/RoutesFile"}],
        "$defs": {**route.pop("$defs", {}), **routes.pop("$defs", {}),
                  "Route": route, "RoutesFile": routes},
    }
    edge = {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **EdgeFile.model_json_schema(by_alias=True)}
    keys = {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **ApiKeysFile.model_json_schema(by_alias=True)}
    return {"edge.schema.json": edge, "route.schema.json": route_file,
            "api-keys.schema.json": keys}
