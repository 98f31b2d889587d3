"""Reading a config directory: YAML with positions → typed models → checked routes.

Every problem found is reported at once, as ``file:line:col: error: path: message``;
warnings (``file:line:col: warning: ...``) don't stop the load, ``edge check`` shows them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import yamlpos
from ..errors import PolicyError, policy_errors
from ..routing import METHODS, PathBuilder, TemplateError, parse_template
from ..yamlpos import dotted
from . import checks
from .checks import PlacedKey
from .models import (
    ROUTE_KINDS,
    ApiKeys,
    ApiKeysFile,
    Config,
    EdgeFile,
    Route,
    RoutesFile,
    RouteSpec,
)


class ConfigError(Exception):
    """All problems found in a config directory, each as `file:line:col: error: ...`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "missing required key"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] in ("literal_error", "enum") or "input" not in err:
        return f"{msg}, got {err.get('input')!r}" if "input" in err else msg
    if err["type"].endswith("_type") or err["type"].endswith("_parsing"):
        return f"{msg}, got {err['input']!r}"
    return msg


def _validation_problems(e: ValidationError, pos: yamlpos.Positions,
                         prefix: tuple[Any, ...] = ()) -> list[str]:
    problems = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        loc = tuple("pass" if p == "pass_" else p for p in loc)
        path = prefix + loc
        where = pos.where(path, key=err["type"] == "extra_forbidden")
        problems.append(f"{where}: error: {dotted(loc)}: {_message(err)}")
    return problems


def _read(path: Path, problems: list[str]) -> tuple[Any, yamlpos.Positions] | None:
    try:
        return yamlpos.load(path.read_text(encoding="utf-8"), str(path))
    except yamlpos.YamlError as e:
        problems.append(f"{e.file}:{e.line}:{e.col}: error: {e.message}")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}:1:1: error: cannot read: {e}")
    return None


def load_config(root: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    """Load and check ``root/edge.yaml`` and ``root/routes/*.yaml``; raises ConfigError."""
    root = Path(root)
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    edge_path = root / "edge.yaml"
    edge = EdgeFile()
    edge_ok = True
    keys: list[PlacedKey] = []
    if edge_path.exists():
        loaded = _read(edge_path, problems)
        if loaded is not None:
            data, pos = loaded
            if data is None:
                data = {}
            if not isinstance(data, dict):
                problems.append(f"{pos.where(())}: error: expected a mapping at the top level")
            else:
                try:
                    edge = EdgeFile.model_validate(data)
                except ValidationError as e:
                    problems.extend(_validation_problems(e, pos))
                    edge_ok = False
                else:
                    problems.extend(checks.check_edge(edge, pos, root))
                    if edge.auth.api_keys is not None:
                        keys = _load_api_keys(edge.auth.api_keys, pos, root, problems)
                        problems.extend(checks.check_keys(keys, edge.auth.api_keys))
        else:
            edge_ok = False
    elif not (root / "routes").is_dir():
        raise ConfigError([f"{root}:1:1: error: no edge.yaml or routes/ directory here"])

    routes: list[RouteSpec] = []
    route_files = sorted((root / "routes").glob("*.yaml")) + sorted(
        (root / "routes").glob("*.yml"))
    for path in route_files:
        loaded = _read(path, problems)
        if loaded is None:
            continue
        data, pos = loaded
        if data is None:
            continue
        if isinstance(data, dict) and "routes" in data:
            try:
                models = RoutesFile.model_validate(data).routes
            except ValidationError as e:
                problems.extend(_validation_problems(e, pos))
                continue
            paths: list[tuple[Any, ...]] = [("routes", i) for i in range(len(models))]
        elif isinstance(data, dict):
            try:
                models = [Route.model_validate(data)]
            except ValidationError as e:
                problems.extend(_validation_problems(e, pos))
                continue
            paths = [()]
        else:
            problems.append(f"{pos.where(())}: error: expected a route mapping "
                            "(with 'route:') or a 'routes:' list")
            continue
        for model, p in zip(models, paths, strict=True):
            spec = _route(model, p, pos, edge if edge_ok else None, problems)
            if spec is not None:
                routes.append(spec)
    problems.extend(checks.check_collisions(routes))
    warnings = [p for p in problems if ": warning: " in p]
    problems = [p for p in problems if ": warning: " not in p]
    if not problems:  # with routes missing, every key's `routes` would look wrong
        problems.extend(checks.check_key_routes(keys, routes))
    if problems:
        raise ConfigError(problems)
    return Config(root=root, edge=edge, routes=tuple(routes), env=env,
                  warnings=tuple(warnings), api_keys=tuple(k.key for k in keys))


def _load_api_keys(cfg: ApiKeys, pos: yamlpos.Positions, root: Path,
                   problems: list[str]) -> list[PlacedKey]:
    """auth.api_keys.keys, then the keys of its `file`."""
    placed = [PlacedKey(k, pos, ("auth", "api_keys", "keys", i))
              for i, k in enumerate(cfg.keys)]
    if cfg.file is not None:
        where = pos.where(("auth", "api_keys", "file"))
        path = root / cfg.file
        if path.resolve().parent == (root / "routes").resolve():
            problems.append(f"{where}: error: auth.api_keys.file: keep it out of routes/ "
                            "(every file there is read as routes)")
        elif not path.is_file():
            problems.append(f"{where}: error: auth.api_keys.file: no such file {cfg.file!r}")
        elif (loaded := _read(path, problems)) is not None and loaded[0] is not None:
            data, fpos = loaded
            if not isinstance(data, dict):
                problems.append(f"{fpos.where(())}: error: expected a mapping with `keys:`")
            else:
                try:
                    more = ApiKeysFile.model_validate(data).keys
                except ValidationError as e:
                    problems.extend(_validation_problems(e, fpos))
                else:
                    placed += [PlacedKey(k, fpos, ("keys", i)) for i, k in enumerate(more)]
    return placed


def _route(model: Route, p: tuple[Any, ...], pos: yamlpos.Positions, edge: EdgeFile | None,
           problems: list[str]) -> RouteSpec | None:
    """Parse a route's `route:` line, check the route against itself and edge.yaml, and
    build its shapers (skipped if edge.yaml itself failed)."""
    label = dotted(p)
    label = f"{label}." if label else ""
    where = pos.where((*p, "route"))
    method, _, path = model.route.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if (method not in METHODS and method != "*") or not path:
        problems.append(f"{where}: error: {label}route: expected 'METHOD /path' with METHOD "
                        f"one of {', '.join(METHODS)} or *, got {model.route!r}")
        return None
    if model.methods is not None and (method != "*" or not model.methods):
        problems.append(f"{pos.where((*p, 'methods'), key=True)}: error: {label}methods: "
                        "a list of methods, for a route that says `* /path`")
        return None
    try:
        template = parse_template(path)
    except TemplateError as e:
        problems.append(f"{where}: error: {label}route: {e}")
        return None
    kinds = [k for k in ROUTE_KINDS if getattr(model, k) is not None]
    if len(kinds) != 1:
        problems.append(f"{where}: error: {method} {template.text}: give exactly one of "
                        "`source` (one upstream), `sources` (several, composed), `batch` or "
                        "`offline_queue`" + (f", not {' and '.join(kinds)}" if kinds else ""))
        return None
    ok = checks.check_route(model, kinds[0], method, template, p, pos, edge, problems)
    builder = PathBuilder.compile(model.source.path) if model.source is not None else None
    spec = RouteSpec(model, method, template, builder, pos.file, pos.of((*p, "route"))[0])
    if edge is None:
        return spec if ok else None
    shapers = _shapers(spec, p, pos, edge, problems)
    return replace(spec, shapers=shapers) if ok and shapers is not None else None


def _shapers(spec: RouteSpec, p: tuple[Any, ...], pos: yamlpos.Positions, edge: EdgeFile,
             problems: list[str]) -> tuple[Any, ...] | None:
    """The route's shape steps, built once, here: each shaper checks its own block
    (`from_policy`). None, with the problems noted, when a block is refused."""
    # Late: the shapers import these models, so config can't import them first.
    from ..shapers import build_shapers

    shape, m = spec.shape, spec.model
    if shape is None:
        return ()
    if m.sources is not None:
        made_of = tuple(m.sources)
    else:
        assert m.source is not None  # a shaped route has one or the other
        made_of = (m.source.service,)
    try:
        return tuple(build_shapers(shape, edge, made_of))
    except* PolicyError as group:
        for e in policy_errors(group):
            where = pos.where((*p, "shape", *e.path), key=e.key)
            problems.append(f"{where}: error: {spec.name}: shape.{e.message}")
    return None
