"""The policy playground (`admin.playground: true`): a page at /_edge/playground that runs
one route for several device classes side by side through the serving pipeline (the
explain record: what each stage decided and how many bytes it left), and previews an edit
of the route's YAML in a sandbox edge built from the edited config, never the serving one.
Applying an edit stays a file edit.

Served only to `admin.metrics_allow` networks. The page is static (static/: no build step,
nothing fetched from elsewhere, a CSP without inline code, never framed); its JSON calls
(API.md beside this file) need a bearer token with `admin.purge_role` in an Authorization
header, which no cross-site form or image can send, and cross-site requests are refused
besides (`Sec-Fetch-Site`, `Origin`). Claims are minted into tokens only while the edge
verifies tokens with the demo's published secret: there, anyone can mint them anyway.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import io
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from multidict import CIMultiDict

from .. import yamlpos
from ..config import ConfigError, load_config
from ..config.models import NETWORK_CLASSES, RouteSpec
from ..context import Exchange, Incoming
from ..encoding import DecodeError, TooLarge, decode
from ..errors import Problem
from ..headers import is_token, one_line
from ..representation import Answer
from ..shaping import is_json
from ..wire import read_json_object

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..runtime import Runtime, State

PREFIX = "/_edge/playground"
API = PREFIX + "/api/"
STATIC = Path(__file__).parent / "static"
FILES = {PREFIX: ("index.html", "text/html; charset=utf-8"),
         PREFIX + "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         PREFIX + "/app.css": ("app.css", "text/css; charset=utf-8")}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin"}
# the answer's headers shown beside its body
SHOWN = ("Content-Type", "Content-Encoding", "Content-Length", "Cache-Control", "Vary", "ETag",
         "Last-Modified", "Age", "Cache-Status", "RateLimit", "RateLimit-Policy",
         "Retry-After", "X-Edge-Shaped", "X-Edge-Keymap", "X-Edge-Degraded", "Location")
MAX_CALL = 128 * 1024  # a call's JSON body
MAX_YAML = 64 * 1024  # an edited route
MAX_DEVICES = 6
MAX_TEXT = 256 * 1024  # a body shown as text (decoded); longer ones are cut
MAX_IMAGE = 2 * 1024 * 1024  # an image shown inline
MINTED_TTL = 600  # seconds a minted demo token lives
_PROBLEM = re.compile(r"^(?P<file>.*?):(?P<line>\d+):(?P<col>\d+): (?:error|warning): "
                      r"(?P<message>.*)$", re.S)


class Playground:
    """The page, its files and its calls; one per pipeline."""

    def __init__(self, state: State, pipeline: Pipeline) -> None:
        self.state, self.pipeline = state, pipeline
        self._files: dict[str, bytes] = {}
        self._sandboxes = asyncio.Semaphore(2)  # edited configs run at once

    async def __call__(self, x: Exchange) -> Answer | None:
        rt = x.rt
        if not rt.config.edge.admin.playground:
            return None  # not served: a 404 like any unknown path
        request, path, method = x.request, x.path, x.request.method
        x.route_name = "playground"
        if not rt.metrics_allow.is_trusted(request.remote):
            raise Problem("forbidden", "the playground is served to admin networks only "
                          "(admin.metrics_allow)")
        _same_origin(request)
        if path in FILES:
            if method not in ("GET", "HEAD"):
                raise Problem("method-not-allowed", "allowed: GET",
                              headers={"Allow": "GET, HEAD"})
            return await self._file(path)
        calls = {"routes": "GET", "run": "POST", "check": "POST", "demo-token": "POST"}
        name = path[len(API):] if path.startswith(API) else ""
        if name not in calls:
            raise Problem("resource-not-found", "the playground has no such page or call")
        if method != calls[name]:
            raise Problem("method-not-allowed", f"allowed: {calls[name]}",
                          headers={"Allow": calls[name]})
        doc = await _json_body(request, x.bytes_in) if method == "POST" else {}
        result: dict[str, Any]
        if name == "demo-token":
            result = self._demo_token(rt, doc)
        else:
            from ..pipeline.endpoints import staff  # (endpoints imports this module)

            staff(request, rt, "the playground")
            if name == "routes":
                result = await asyncio.to_thread(_routes, rt, _demo_secret(rt) is not None)
            elif name == "check":
                result = await self._check(rt, doc)
            else:
                result = await self._run(x, rt, doc)
        body = orjson.dumps(result)
        return web.Response(body=body, content_type="application/json", headers={
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}), len(body)

    async def _file(self, path: str) -> Answer:
        name, ctype = FILES[path]
        body = self._files.get(name)
        if body is None:
            body = self._files[name] = await asyncio.to_thread((STATIC / name).read_bytes)
        return web.Response(body=body, headers={"Content-Type": ctype, **PAGE_HEADERS}), \
            len(body)

    def _demo_token(self, rt: Runtime, doc: dict[str, Any]) -> dict[str, Any]:
        secret = _demo_secret(rt)
        if secret is None:
            raise Problem("resource-not-found", "tokens are minted here only when the edge "
                          "runs with the demo's secret (edge demo)")
        roles = doc.get("roles", ["admin"])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Problem("bad-request", 'expected {"roles": ["admin"]}')
        return {"token": _mint(secret, {"sub": "playground", "roles": roles[:8]})}

    async def _check(self, rt: Runtime, doc: dict[str, Any]) -> dict[str, Any]:
        spec, text = _edited(rt, doc)
        async with self._sandboxes:
            problems, _ = await asyncio.to_thread(_load_edited, rt, spec, text, False)
        return {"ok": not problems, "problems": problems}

    async def _run(self, x: Exchange, rt: Runtime, doc: dict[str, Any]) -> dict[str, Any]:
        spec = _route(rt, doc.get("route"))
        path = doc.get("path")
        if not isinstance(path, str) or not path.startswith("/") or len(path) > rt.max_path:
            raise Problem("bad-request", "path: the request path and query, from '/'")
        devices = _devices(rt, doc.get("devices"))
        headers = _headers(doc.get("headers"))
        token = _identity(rt, doc.get("identity"))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        device_header = rt.config.edge.devices.header
        keymap = _keymap(rt, spec)

        async def walk(pipeline: Pipeline, device: str) -> dict[str, Any]:
            h = headers.copy()
            h[device_header] = device
            record, raw = await pipeline.explained("GET", path, h, remote=x.client_ip)
            return await _result(device, record, raw, keymap)

        live = [await walk(self.pipeline, d) for d in devices]
        out: dict[str, Any] = {"live": live, "preview": None, "problems": None}
        if doc.get("yaml") is None:
            return out
        spec, text = _edited(rt, doc)
        async with self._sandboxes:
            problems, config = await asyncio.to_thread(_load_edited, rt, spec, text, True)
            if config is None:
                out["problems"] = problems
                return out
            from ..explain import sandbox as make_sandbox  # (it imports the pipeline: us)

            sandbox = make_sandbox(config)
            await sandbox.start()
            try:
                preview = [await walk(sandbox.handler, d) for d in devices]
            finally:
                await sandbox.close()
                await asyncio.to_thread(shutil.rmtree, config.root.parent, True)
        for before, after in zip(live, preview, strict=True):
            after["diff"] = _diff(before, after)
        out["preview"] = preview
        return out


# ------------------------------------------------------------------------------ requests


def _same_origin(request: Incoming) -> None:
    """Refuse what a page on another site makes a browser send: a fetch, form or frame."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Problem("forbidden", "the playground refuses cross-site requests")
    origin = request.headers.get("Origin")
    if origin is not None:
        host = request.headers.get("Host", "").lower()
        if not host or urlsplit(origin).netloc.lower() != host:
            raise Problem("forbidden", "the playground refuses cross-site requests")


async def _json_body(request: Incoming, counter: list[int]) -> dict[str, Any]:
    ctype = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if ctype != "application/json":
        raise Problem("unsupported-media-type", "the playground's calls take "
                      "application/json")
    return await read_json_object(request, MAX_CALL, counter)


def _route(rt: Runtime, name: Any) -> RouteSpec:
    if isinstance(name, str):
        wanted = " ".join(name.split())
        for spec in rt.config.routes:
            if spec.name == wanted:
                return spec
    raise Problem("resource-not-found", "route: no route by that name in the serving "
                  "config (it may have been reloaded)")


def _devices(rt: Runtime, given: Any) -> list[str]:
    classes = rt.config.edge.devices.classes
    if not isinstance(given, list) or not 1 <= len(given) <= MAX_DEVICES or not all(
            d in classes for d in given) or len(set(given)) != len(given):
        raise Problem("bad-request", f"devices: 1 to {MAX_DEVICES} of "
                      f"{', '.join(classes)}, each once")
    return given


def _headers(given: Any) -> CIMultiDict[str]:
    given = {} if given is None else given
    if not isinstance(given, dict) or len(given) > 32 or not all(
            isinstance(k, str) and isinstance(v, str) and is_token(k) and one_line(v)
            for k, v in given.items()):
        raise Problem("bad-request", "headers: an object of at most 32 names and values")
    return CIMultiDict((k, v) for k, v in given.items() if v)


def _identity(rt: Runtime, given: Any) -> str | None:
    if given is None:
        return None
    if isinstance(given, dict) and isinstance(given.get("token"), str):
        token = given["token"].strip()
        if not token or not one_line(token) or len(token) > 8192:
            raise Problem("bad-request", "identity.token: a JWT")
        return token
    if isinstance(given, dict) and isinstance(given.get("claims"), dict):
        secret = _demo_secret(rt)
        if secret is None:
            raise Problem("forbidden", "claims are minted only in the demo: give a token")
        return _mint(secret, given["claims"])
    raise Problem("bad-request", 'identity: {"token": "..."}, {"claims": {...}} or null')


def _demo_secret(rt: Runtime) -> str | None:
    """The JWT secret, when it is the demo's published one (else None)."""
    from ..cli import DEMO_SECRET

    jwt = rt.config.edge.auth.jwt
    if jwt is None or not jwt.secret_env:
        return None
    secret = rt.config.env.get(jwt.secret_env)
    return secret if secret == DEMO_SECRET else None


def _mint(secret: str, claims: dict[str, Any]) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + MINTED_TTL}, secret,
                      algorithm="HS256")


def _keymap(rt: Runtime, spec: RouteSpec) -> dict[str, Any] | None:
    shape = spec.model.shape
    name = shape.keymap if shape is not None else None
    if name is None or name not in rt.keymaps:
        return None
    return {"name": name, "keys": dict(rt.keymaps[name])}


# -------------------------------------------------------------------------------- routes


def _kind(spec: RouteSpec) -> str:
    m = spec.model
    return ("websocket" if m.websocket is not None else "batch" if m.batch is not None
            else "offline-queue" if m.offline_queue is not None
            else "image" if m.image is not None else "composed" if m.sources is not None
            else "shaped" if m.shape is not None else "pass-through")


def _routes(rt: Runtime, demo: bool) -> dict[str, Any]:
    """The serving config's routes, each with its YAML as it is in its file."""
    edge = rt.config.edge
    root = rt.config.root
    texts: dict[str, str] = {}
    routes = []
    for spec in rt.config.routes:
        if spec.file not in texts:
            texts[spec.file] = Path(spec.file).read_text()
        block, first, _ = route_block(texts[spec.file], spec.line)
        kind = _kind(spec)
        reads = spec.method in ("GET", "*") and (spec.model.methods is None
                                                 or "GET" in spec.model.methods)
        routes.append({
            "name": spec.name, "method": spec.method, "path": spec.template.text,
            "params": list(spec.template.params), "kind": kind,
            "where": f"{_rel(spec.file, root)}:{spec.line}", "file": _rel(spec.file, root),
            "auth": spec.model.auth.jwt if edge.auth.jwt is not None else "off",
            "example": spec.model.example, "yaml": block, "yaml_line": first,
            "runnable": reads and kind not in ("websocket", "batch", "offline-queue")})
    return {"generation": rt.generation, "devices": list(edge.devices.classes),
            "default_device": edge.devices.default, "device_header": edge.devices.header,
            "networks": list(NETWORK_CLASSES), "demo": demo, "routes": routes}


def _rel(file: str, root: Path) -> str:
    try:
        return str(Path(file).resolve().relative_to(root.resolve()))
    except ValueError:
        return file


def route_block(text: str, line: int) -> tuple[str, int, int]:
    """The lines of the route whose `route:` key is on `line` (1-based): its list item, or
    the whole file for a file that is one route. Returns (text, first line, the line after
    it)."""
    lines = text.splitlines(keepends=True)
    i = line - 1
    if not 0 <= i < len(lines):
        return text, 1, len(lines) + 1
    head = lines[i]
    indent = len(head) - len(head.lstrip(" "))
    if not head.lstrip(" ").startswith("- "):
        return text, 1, len(lines) + 1  # a file that is one route
    j = i + 1
    while j < len(lines):
        stripped = lines[j].strip()
        if stripped and not stripped.startswith("#") and \
                len(lines[j]) - len(lines[j].lstrip(" ")) <= indent:
            break
        j += 1
    while j > i + 1 and (not lines[j - 1].strip() or (
            lines[j - 1].lstrip().startswith("#")
            and len(lines[j - 1]) - len(lines[j - 1].lstrip(" ")) <= indent)):
        j -= 1  # blank lines and the next item's comments are not this route's
    return "".join(lines[i:j]), i + 1, j + 1


# -------------------------------------------------------------------------------- edits


def _edited(rt: Runtime, doc: dict[str, Any]) -> tuple[RouteSpec, str]:
    spec = _route(rt, doc.get("route"))
    text = doc.get("yaml")
    if not isinstance(text, str) or len(text) > MAX_YAML:
        raise Problem("bad-request", f"yaml: the route's YAML, at most {MAX_YAML} "
                      "characters")
    return spec, text


def _load_edited(rt: Runtime, spec: RouteSpec, text: str, keep: bool
                 ) -> tuple[list[dict[str, Any]], Any]:
    """Check the config with the route's lines replaced by `text`, in a copy of the config
    directory. Returns the problems (lines and columns in `text` where they fall in it)
    and, when `keep` and there are none, the loaded config (its copy is the caller's to
    remove: config.root.parent)."""
    try:  # the edit's own syntax first: its errors are at the editor's lines
        yamlpos.load(text, "edited")
    except yamlpos.YamlError as e:
        return [{"line": e.line, "col": e.col, "message": e.message}], None
    root = rt.config.root
    original = Path(spec.file).read_text()
    _, first, after = route_block(original, spec.line)
    lines = original.splitlines(keepends=True)
    edited = text if text.endswith("\n") or not text else text + "\n"
    new_text = "".join(lines[:first - 1]) + edited + "".join(lines[after - 1:])
    n_lines = edited.count("\n")
    tmp = Path(tempfile.mkdtemp(prefix="edge-playground-"))
    copy = tmp / "config"
    handed = False
    try:
        shutil.copytree(root, copy, symlinks=True)
        rel = Path(spec.file).resolve().relative_to(root.resolve())
        target = copy / rel
        target.write_text(new_text)
        try:
            config = load_config(copy, dict(rt.config.env))
        except ConfigError as e:
            return [_placed(p, target, copy, first, n_lines, after - first)
                    for p in e.problems], None
        handed = keep
        return [], config if keep else None
    finally:
        if not handed:
            shutil.rmtree(tmp, ignore_errors=True)


def _placed(problem: str, target: Path, copy: Path, first: int, n_lines: int,
            n_old: int) -> dict[str, Any]:
    """A loader's `file:line:col: error: message` as a line and column of the editor's
    text, or (line None) with where it is in the files otherwise."""
    m = _PROBLEM.match(problem)
    if m is None:
        return {"line": None, "col": None, "message": problem}
    file, line, col = Path(m["file"]), int(m["line"]), int(m["col"])
    message = m["message"]
    try:
        same = file.resolve() == target.resolve()
        rel = str(file.resolve().relative_to(copy.resolve()))
    except (OSError, ValueError):
        same, rel = False, str(file)
    if same and first <= line < first + max(n_lines, 1):
        return {"line": line - first + 1, "col": col, "message": message}
    if same and line >= first + n_lines:
        line += n_old - n_lines  # after the edit: where it is in the file as it is
    return {"line": None, "col": None, "message": f"{rel}:{line}:{col}: {message}"}


# ------------------------------------------------------------------------------- answers


async def _result(device: str, record: dict[str, Any], raw: bytes,
                  keymap: dict[str, Any] | None) -> dict[str, Any]:
    headers = CIMultiDict(record["headers"])
    shown = {name: headers[name] for name in SHOWN if name in headers}
    stages = [{"stage": s["stage"], "bytes": s["bytes"]} for s in record["steps"]
              if s["stage"] != "deliver" and isinstance(s.get("bytes"), int)]
    stages.append({"stage": "wire", "bytes": record["bytes"]})
    timeline = next((s["timeline"] for s in record["steps"] if s["stage"] == "sources"),
                    None)
    sources = None if timeline is None else [
        {"name": t["source"], "after": t["after"], "start_ms": t["start_ms"],
         "end_ms": t.get("end_ms", t["start_ms"]), "ok": t["ok"]} for t in timeline]
    return {"device": device, "status": record["status"], "bytes": record["bytes"],
            "headers": shown, "body": await _body(raw, headers), "keymap": keymap,
            "stages": stages, "sources": sources, "steps": record["steps"], "diff": None}


async def _body(raw: bytes, headers: CIMultiDict[str]) -> dict[str, Any]:
    if not raw:
        return {"kind": "empty"}
    ctype = headers.get("Content-Type", "")
    media = ctype.partition(";")[0].strip().lower()
    if media.startswith("image/"):
        if len(raw) > MAX_IMAGE:
            return {"kind": "binary"}
        width, height = await asyncio.to_thread(_dimensions, raw)
        return {"kind": "image", "format": media[6:], "width": width, "height": height,
                "data_url": f"data:{media};base64,{base64.b64encode(raw).decode()}"}
    coding = headers.get("Content-Encoding")
    try:
        plain = decode(raw, coding, max_size=MAX_TEXT * 4) if coding else raw
    except (DecodeError, TooLarge):
        return {"kind": "binary"}
    if is_json(ctype) or media == "application/msgpack":
        try:
            doc = orjson.loads(plain) if media != "application/msgpack" else _unpack(plain)
            text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, ValueError):
            text = plain.decode("utf-8", "replace")
        kind = "json"
    elif media.startswith("text/") or media.endswith(("xml", "javascript")):
        text, kind = plain.decode("utf-8", "replace"), "text"
    else:
        return {"kind": "binary"}
    return {"kind": kind, "text": text[:MAX_TEXT], "truncated": len(text) > MAX_TEXT}


def _unpack(raw: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(raw, strict_map_key=False)


def _dimensions(raw: bytes) -> tuple[int | None, int | None]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as im:
            return im.width, im.height
    except Exception:  # a format this Pillow can't read: shown without its size
        return None, None


def _diff(live: dict[str, Any], preview: dict[str, Any]) -> dict[str, Any]:
    before = live["body"].get("text", "").splitlines()
    after = preview["body"].get("text", "").splitlines()
    lines = list(difflib.unified_diff(before, after, "live", "preview", lineterm="", n=2))
    return {"bytes": preview["bytes"] - live["bytes"], "text": "\n".join(lines[:2000])}
